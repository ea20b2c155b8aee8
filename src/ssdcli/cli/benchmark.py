"""`ssd benchmark`: the checkpoint and its exports side by side (size, speed, accuracy)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ssdcli.config import BenchmarkConfig

from .command import DataFormat
from .progress import BenchmarkProgress
from .render import JsonOutput, as_flags, stderr_console, stdout_console

if TYPE_CHECKING:
    from ssdcli.engine.benchmark import BenchmarkResult

D = BenchmarkConfig  # the defaults below are the dataclass's, written once


def _number(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _change(value: float | None) -> str:
    return "" if value is None else f"{round(value, 3) + 0.0:+.3f}"  # + 0.0: no "-0.000"


def render_notes(result: BenchmarkResult) -> list[str]:
    """One line per form left out of the measurements, saying why (under the table, where no width cuts it)."""
    return [f"{row.format}: {escape(as_flags(row.note))}" for row in result.rows if row.note]


def render_table(result: BenchmarkResult) -> Table:
    table = Table(title=f"ssd benchmark: {result.split} ({result.images} images), {result.device}")
    table.add_column("format", no_wrap=True)
    for name in ("MB", "ms b1", f"ms b{result.batch_size}", "mAP50", "Δ", "AP", "Δ"):
        table.add_column(name, justify="right", no_wrap=True)
    for row in result.rows:
        size = None if row.size_bytes is None else row.size_bytes / 1e6
        table.add_row(
            row.format, _number(size, 2), _number(row.ms_batch1, 2), _number(row.ms_batch, 2), _number(row.map50, 4),
            _change(row.map50_change), _number(row.coco_ap, 4), _change(row.coco_ap_change),
        )  # fmt: skip
    table.caption = (
        "MB: size on disk; ms bN: median milliseconds per image at batch N (CPU); mAP50: VOC07 11-point at IoU 0.5; "
        "AP: COCO AP@[.5:.95]; Δ: against the checkpoint"
    )
    return table


def benchmark_command(
    checkpoint: Annotated[Path, typer.Option(help="A checkpoint written by 'ssd train'.")],
    data: Annotated[Path, typer.Option(help="The data set to evaluate on (VOC root, COCO root or instances JSON, YOLO root or data.yaml); its training split calibrates INT8.")],
    split: Annotated[str | None, typer.Option(help="The split to evaluate on (default: test; a COCO JSON file is its own split).")] = None,
    data_format: Annotated[DataFormat, typer.Option("--format", help="The layout of --data (auto: detected from the files).")] = DataFormat(D.data_format),
    train_split: Annotated[str, typer.Option(help="The split whose images calibrate the INT8 export.")] = D.train_split,
    batch_size: Annotated[int, typer.Option(help="The larger batch timed (batch 1 is always timed).")] = D.batch_size,
    runs: Annotated[int, typer.Option(help="Timed runs per batch size (their median is shown), after --warmup runs.")] = D.runs,
    warmup: Annotated[int, typer.Option(help="Untimed runs before timing.")] = D.warmup,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the table as JSON to this file ('-': only the JSON, on stdout).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --json file.")] = False,
) -> None:
    """Export a checkpoint to every target whose packages are installed (TorchScript, ONNX, ONNX INT8, OpenVINO),
    then time and evaluate each form on a data set split, in one table.

    Examples:

        ssd benchmark --checkpoint runs/train/1/best.pt --data VOCdevkit/VOC2007 --split test

        ssd benchmark --checkpoint best.pt --data data/synth --split val --json benchmark.json
    """
    from ssdcli.engine.benchmark import run_benchmark

    json_output = JsonOutput(json_out, force)
    config = BenchmarkConfig(
        checkpoint=checkpoint,
        data=data,
        split=split,
        data_format=data_format.value,
        train_split=train_split,
        batch_size=batch_size,
        runs=runs,
        warmup=warmup,
    )
    quiet = json_output.to_stdout
    with BenchmarkProgress(stderr_console() if quiet else stdout_console()) as progress:
        result = run_benchmark(config, progress)
    written = json_output.write(result.as_dict())
    if quiet:
        return
    stdout_console().print(render_table(result))
    for line in render_notes(result):
        stdout_console().print(line, soft_wrap=True)
    if written is not None:
        stdout_console().print(f"table: {written}")

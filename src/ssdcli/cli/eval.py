"""`ssd eval`: COCO metrics (pycocotools) and PASCAL VOC AP (devkit rules) of a results file."""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ssdcli.data.files import check_new_file
from ssdcli.errors import UsageError

from .render import print_warning, stderr_console, stdout_console

if TYPE_CHECKING:
    from ssdcli.metrics.coco import CocoResult
    from ssdcli.metrics.voc import VocResult


class VocMetric(str, Enum):
    voc07 = "voc07"
    voc12 = "voc12"


class CocoBackend(str, Enum):
    pycocotools = "pycocotools"
    faster_coco_eval = "faster-coco-eval"


VOC_METRIC_TITLES = {"voc07": "VOC2007 11-point", "voc12": "VOC2010+ area under the precision envelope"}


def _fmt(value: float) -> str:
    return "—" if math.isnan(value) or value < 0 else f"{value:.4f}"


def _emit_json(payload: dict, json_out: str) -> None:
    from ssdcli.data.results_io import json_text, write_json

    if json_out == "-":
        typer.echo(json_text(payload), nl=False)
    else:
        write_json(json_out, payload)


def _render_coco(result: CocoResult) -> None:
    from ssdcli.metrics.coco import COCO_METRIC_FIELDS

    console = stdout_console()
    table = Table(title=f"COCO bbox metrics ({result.backend})")
    table.add_column("metric")
    table.add_column("setting")
    table.add_column("value", justify="right")
    for key, name, setting in COCO_METRIC_FIELDS:
        table.add_row(key, setting, _fmt(getattr(result.metrics, name)))
    table.caption = f"{result.num_images} images, {result.num_detections} detections; — = no ground truth"
    console.print(table)
    if result.per_class:
        classes = Table(title="AP per category (IoU 0.50:0.95, all areas, 100 dets)")
        classes.add_column("id", justify="right")
        classes.add_column("category")
        classes.add_column("GT", justify="right")
        classes.add_column("AP", justify="right")
        for c in result.per_class:
            classes.add_row(str(c.category_id), c.name, str(c.num_gt), _fmt(c.ap))
        console.print(classes)


def _render_voc(result: VocResult) -> None:
    console = stdout_console()
    table = Table(title=f"PASCAL VOC AP ({VOC_METRIC_TITLES[result.metric]}, IoU >= {result.iou_threshold:g})")
    table.add_column("class")
    table.add_column("GT", justify="right")
    table.add_column("detections", justify="right")
    table.add_column("TP", justify="right")
    table.add_column("recall", justify="right")
    table.add_column("AP", justify="right")
    for c in result.per_class:
        table.add_row(c.name, str(c.num_gt), str(c.num_detections), str(c.num_tp), _fmt(c.recall), _fmt(c.ap))
    table.add_section()
    table.add_row("mAP", "", str(result.num_detections), "", "", _fmt(result.mean_ap))
    table.caption = f"{result.num_images} images; GT excludes difficult objects; — = no ground truth"
    console.print(table)


def _reject(given: dict[str, object], mode: str) -> None:
    for option, value in given.items():
        if value is not None and value is not False:
            raise UsageError(f"{option} does not apply to {mode}")


_RESULTS_HELP = "Detections: a COCO results JSON, or (--voc) a folder of devkit files comp4_det_<split>_<class>.txt."
_CLASSES_HELP = "--voc: comma-separated classes; category_id i is the i-th (default: sorted names in the split)."
_BACKEND_HELP = "--coco: pycocotools, or faster-coco-eval if installed (default: pycocotools)."
_JSON_HELP = "Also write the metrics as JSON to this file ('-': only the JSON, on stdout)."


def eval_command(
    coco: Annotated[bool, typer.Option("--coco", help="COCO metrics, pycocotools (needs --gt, --results).")] = False,
    voc: Annotated[bool, typer.Option("--voc", help="PASCAL VOC AP, devkit rules (needs --data, --results).")] = False,
    results: Annotated[Path | None, typer.Option(help=_RESULTS_HELP)] = None,
    gt: Annotated[Path | None, typer.Option(help="--coco: the ground-truth instances JSON.")] = None,
    data: Annotated[Path | None, typer.Option(help="--voc: the VOC root (Annotations/, ImageSets/Main/).")] = None,
    split: Annotated[
        str | None,
        typer.Option(help="--voc, --checkpoint: the split to evaluate on (default: test; a COCO JSON file is its own split)."),
    ] = None,
    metric: Annotated[
        VocMetric | None, typer.Option(help="--voc: voc07 (11-point) or voc12 (area, VOC2010+) (default: voc07).")
    ] = None,
    iou: Annotated[float | None, typer.Option(help="--voc: IoU threshold for a true positive (default: 0.5).")] = None,
    classes: Annotated[str | None, typer.Option(help=_CLASSES_HELP)] = None,
    per_class: Annotated[bool, typer.Option("--per-class", help="--coco: also show AP per category.")] = False,
    backend: Annotated[CocoBackend | None, typer.Option(help=_BACKEND_HELP)] = None,
    json_out: Annotated[str | None, typer.Option("--json", help=_JSON_HELP)] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Run this checkpoint over --data/--split, write its detections, evaluate (VOC and COCO). Also torchvision's COCO detector (weights name or state dict file, as for 'ssd predict'), with its own thresholds."),
    ] = None,
    onnx: Annotated[
        Path | None,
        typer.Option(help="As --checkpoint, for a file from 'ssd export --format onnx' (with or without --with-nms)."),
    ] = None,
    torchscript: Annotated[
        Path | None, typer.Option(help="As --checkpoint, for a file from 'ssd export --format torchscript'.")
    ] = None,
    data_format: Annotated[str, typer.Option("--format", help="--checkpoint: auto, voc, coco or yolo.")] = "auto",
    out: Annotated[Path, typer.Option(help="--checkpoint: parent of the fresh run folder for detections.")] = Path(
        "runs/eval"
    ),
    batch_size: Annotated[int, typer.Option(min=1, help="--checkpoint: images per batch.")] = 16,
    device: Annotated[str, typer.Option(help="--checkpoint: auto, cpu, cuda or cuda:N.")] = "auto",
    plots: Annotated[
        Path | None, typer.Option(help="--checkpoint: write precision-recall curves and a confusion summary (PNG) here.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --json file and --plots images.")] = False,
) -> None:
    """Evaluate detections against ground truth: COCO metrics or PASCAL VOC AP.

    Examples:

        ssd eval --coco --gt instances_val2017.json --results detections.json --per-class

        ssd eval --voc --data VOCdevkit/VOC2007 --split test --results dets/ --metric voc07

        ssd eval --voc --data VOCdevkit/VOC2007 --results detections.json --json metrics.json

        ssd eval --checkpoint runs/train/1/best.pt --data VOCdevkit/VOC2007 --split test

        ssd eval --onnx model.onnx --data VOCdevkit/VOC2007 --split test     # the export keeps the mAP?
    """
    if json_out is not None and json_out != "-":
        check_new_file(json_out, force)
    models = {"--checkpoint": (checkpoint, "checkpoint"), "--onnx": (onnx, "onnx"), "--torchscript": (torchscript, "torchscript")}
    given = [(flag, path, kind) for flag, (path, kind) in models.items() if path is not None]
    if len(given) > 1:
        raise UsageError(f"give one model: {' and '.join(flag for flag, _, _ in given)} were given")
    if given:
        flag, model_path, model_format = given[0]
        _reject({"--results": results, "--gt": gt, "--backend": backend}, flag)
        if data is None:
            raise UsageError(f"{flag} needs --data (the data set to evaluate on)")
        _evaluate_checkpoint(
            model_path, data, split, data_format, out, metric, iou, per_class, batch_size, device, json_out, plots,
            model_format, force,
        )
        return
    if coco == voc:
        raise UsageError("choose one of --coco or --voc (see 'ssd eval --help')")
    if results is None:
        raise UsageError("--results is required (a results JSON, or a folder of devkit files with --voc)")
    from ssdcli.engine.evaluate import results as evaluate

    if coco:
        _reject({"--data": data, "--split": split, "--metric": metric, "--iou": iou, "--classes": classes}, "--coco")
        if gt is None:
            raise UsageError("--coco needs --gt (the ground-truth instances JSON)")
        coco_result = evaluate.evaluate_coco_files(
            gt, results, per_class=per_class, backend=(backend or CocoBackend.pycocotools).value
        )
        if json_out is not None:
            _emit_json(coco_result.metrics.as_dict(), json_out)
        if json_out != "-":
            _render_coco(coco_result)
        return

    _reject({"--gt": gt, "--per-class": per_class, "--backend": backend}, "--voc")
    if data is None:
        raise UsageError("--voc needs --data (the VOC root folder)")
    threshold = 0.5 if iou is None else iou
    if not 0.0 < threshold <= 1.0:
        raise UsageError(f"--iou must be in (0, 1], got {threshold}")
    class_list = None
    if classes is not None:
        class_list = [name.strip() for name in classes.split(",") if name.strip()]
        if not class_list or len(set(class_list)) != len(class_list):
            raise UsageError(f"--classes must list distinct class names, got {classes!r}")
    voc_result = evaluate.evaluate_voc_files(
        data,
        split or "test",
        results,
        classes=class_list,
        iou_threshold=threshold,
        metric=(metric or VocMetric.voc07).value,  # type: ignore[arg-type]
    )
    for warning in voc_result.warnings:
        print_warning(warning)
    if json_out is not None:
        _emit_json({"mAP": voc_result.mean_ap, "per_class": voc_result.ap_by_class()}, json_out)
    if json_out != "-":
        _render_voc(voc_result)


def _evaluate_checkpoint(
    checkpoint: Path,
    data: Path,
    split: str | None,
    data_format: str,
    out: Path,
    metric: VocMetric | None,
    iou: float | None,
    per_class: bool,
    batch_size: int,
    device: str,
    json_out: str | None,
    plots: Path | None,
    model_format: str,
    force: bool,
) -> None:
    from ssdcli.engine.evaluate.model import evaluate_checkpoint

    from .progress import EvalProgressBar

    quiet = json_out == "-"
    with EvalProgressBar(stderr_console() if quiet else stdout_console(), "detect") as progress:
        result = evaluate_checkpoint(
            checkpoint,
            data,
            split,
            data_format,
            out,
            (metric or VocMetric.voc07).value,
            0.5 if iou is None else iou,
            batch_size,
            device,
            per_class,
            plots,
            emit=progress,
            model_format=model_format,
            force=force,
        )
    voc, coco = result.evaluation.voc, result.evaluation.coco
    if json_out is not None:
        _emit_json({"mAP": voc.mean_ap, "per_class": voc.ap_by_class(), "coco": coco.metrics.as_dict()}, json_out)
    if not quiet:
        _render_voc(voc)
        _render_coco(coco)
        where = f"detections: {result.results_json}"
        if result.devkit_dir is not None:
            where += f"\ndevkit files: {result.devkit_dir}"
        if result.plots:
            where += f"\nplots: {result.plots[0].parent} ({len(result.plots)} PNG files)"
        stdout_console().print(where)

"""`ssd eval`: COCO metrics (pycocotools) and PASCAL VOC AP (devkit rules) of a results file."""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ssdcli.config import (
    COCO_BACKENDS,
    DEFAULT_COCO_BACKEND,
    DEFAULT_VOC_IOU,
    DEFAULT_VOC_METRIC,
    VOC_METRICS,
    EvalConfig,
)
from ssdcli.errors import UsageError

from .command import FLIP_HELP, OVERLAP_HELP, TILE_HELP, DataFormat
from .render import JsonOutput, print_warning, stderr_console, stdout_console

if TYPE_CHECKING:
    from ssdcli.metrics.coco import CocoResult
    from ssdcli.metrics.voc import VocResult


#: ``--metric`` and ``--backend``: the choices of :class:`EvalConfig`.
VocMetric = Enum("VocMetric", {name: name for name in VOC_METRICS}, type=str)  # type: ignore[misc]
CocoBackend = Enum("CocoBackend", {name.replace("-", "_"): name for name in COCO_BACKENDS}, type=str)  # type: ignore[misc]


VOC_METRIC_TITLES = {"voc07": "VOC2007 11-point", "voc12": "VOC2010+ area under the precision envelope"}


def _fmt(value: float) -> str:
    return "—" if math.isnan(value) or value < 0 else f"{value:.4f}"


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


_RESULTS_HELP = "Detections: a COCO results JSON, or (--voc) a folder of devkit files comp4_det_<split>_<class>.txt."
_CLASSES_HELP = (
    "--voc: comma-separated classes to evaluate; a plain results list's category_id i is the i-th (default: the data"
    " set's sorted class names; results that carry their classes are matched by name)."
)
_BACKEND_HELP = f"--coco: pycocotools, or faster-coco-eval if installed (default: {DEFAULT_COCO_BACKEND})."
_JSON_HELP = "Also write the metrics as JSON to this file ('-': only the JSON, on stdout)."


def eval_command(
    coco: Annotated[bool, typer.Option("--coco", help="COCO metrics, pycocotools (needs --gt, --results).")] = False,
    voc: Annotated[bool, typer.Option("--voc", help="PASCAL VOC AP, devkit rules (needs --data, --results).")] = False,
    results: Annotated[Path | None, typer.Option(help=_RESULTS_HELP)] = None,
    gt: Annotated[Path | None, typer.Option(help="--coco: the ground-truth instances JSON.")] = None,
    data: Annotated[Path | None, typer.Option(help="--voc: the VOC root (Annotations/, ImageSets/Main/); --checkpoint, --onnx, --torchscript, --openvino: the data set to run the model on (VOC root, COCO root or instances JSON, YOLO root or data.yaml).")] = None,
    split: Annotated[
        str | None,
        typer.Option(help="--voc, --checkpoint, --onnx, --torchscript, --openvino: the split to evaluate on (default: test; a COCO JSON file is its own split)."),
    ] = None,
    metric: Annotated[
        VocMetric | None, typer.Option(help=f"--voc: voc07 (11-point) or voc12 (area, VOC2010+) (default: {DEFAULT_VOC_METRIC}).")
    ] = None,
    iou: Annotated[float | None, typer.Option(help=f"--voc: IoU threshold for a true positive (default: {DEFAULT_VOC_IOU:g}).")] = None,
    classes: Annotated[str | None, typer.Option(help=_CLASSES_HELP)] = None,
    per_class: Annotated[bool, typer.Option("--per-class", help="--coco: also show AP per category.")] = False,
    backend: Annotated[CocoBackend | None, typer.Option(help=_BACKEND_HELP)] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help=_JSON_HELP)] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Run this checkpoint over --data/--split, write its detections, evaluate (VOC and COCO). Also torchvision's COCO detector (weights name or state dict file, as for 'ssd predict'), with its own thresholds."),
    ] = None,
    onnx: Annotated[
        Path | None,
        typer.Option(help="As --checkpoint, for a file from 'ssd export --to onnx' (with or without 'ssd export --with-nms')."),
    ] = None,
    torchscript: Annotated[
        Path | None, typer.Option(help="As --checkpoint, for a file from 'ssd export --to torchscript'.")
    ] = None,
    openvino: Annotated[
        Path | None, typer.Option(help="As --checkpoint, for the folder (or its model.xml) from 'ssd export --to openvino'.")
    ] = None,
    data_format: Annotated[DataFormat, typer.Option("--format", help="--checkpoint, --onnx, --torchscript, --openvino: the layout of --data (auto: detected from the files).")] = DataFormat(EvalConfig.data_format),
    out: Annotated[Path, typer.Option(help="--checkpoint, --onnx, --torchscript, --openvino: parent of the fresh run folder for detections.")] = EvalConfig.out,
    batch_size: Annotated[int, typer.Option(help="--checkpoint, --onnx, --torchscript, --openvino: images per batch.")] = EvalConfig.batch_size,
    device: Annotated[str, typer.Option(help="--checkpoint, --onnx, --torchscript, --openvino: auto, cpu, cuda or cuda:N.")] = EvalConfig.device,
    plots: Annotated[
        Path | None, typer.Option(help="--checkpoint, --onnx, --torchscript, --openvino: write precision-recall curves and a confusion summary (PNG) here.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --json file and --plots images.")] = False,
    tile: Annotated[int | None, typer.Option(help="--checkpoint, --onnx, --torchscript, --openvino: " + TILE_HELP)] = EvalConfig.tile,
    overlap: Annotated[float, typer.Option(help=OVERLAP_HELP)] = EvalConfig.tile_overlap,
    flip: Annotated[bool, typer.Option("--flip", help="--checkpoint, --onnx, --torchscript, --openvino: " + FLIP_HELP)] = EvalConfig.flip,
) -> None:
    """Evaluate detections against ground truth: COCO metrics or PASCAL VOC AP.

    Examples:

        ssd eval --coco --gt instances_val2017.json --results detections.json --per-class

        ssd eval --voc --data VOCdevkit/VOC2007 --split test --results dets/ --metric voc07

        ssd eval --voc --data VOCdevkit/VOC2007 --results detections.json --json metrics.json

        ssd eval --checkpoint runs/train/1/best.pt --data VOCdevkit/VOC2007 --split test

        ssd eval --onnx model.onnx --data VOCdevkit/VOC2007 --split test     # the export keeps the mAP?

        ssd eval --checkpoint best.pt --data hardhat --split test --tile 512   # small objects, sliced
    """
    json_output = JsonOutput(json_out, force)
    models = {"checkpoint": checkpoint, "onnx": onnx, "torchscript": torchscript, "openvino": openvino}
    given = [(kind, path) for kind, path in models.items() if path is not None]
    if len(given) > 1:
        raise UsageError(f"give one model: {' and '.join(f'`{kind}`' for kind, _ in given)} were given")
    if not given and coco == voc:
        raise UsageError(
            "give a model to run over --data (--checkpoint, --onnx, --torchscript or --openvino) or a results file to score "
            "(--coco or --voc) (see 'ssd eval --help')"
        )
    model_format, model = given[0] if given else ("checkpoint", None)
    config = EvalConfig(
        mode="model" if given else ("coco" if coco else "voc"),
        results=results,
        gt=gt,
        data=data,
        split=split,
        metric=metric.value if metric is not None else None,
        iou_threshold=iou,
        classes=tuple(name.strip() for name in classes.split(",") if name.strip()) if classes is not None else None,
        per_class=per_class,
        backend=backend.value if backend is not None else None,
        model=model,
        model_format=model_format,
        data_format=data_format.value,
        out=out,
        batch_size=batch_size,
        device=device,
        plots=plots,
        force=force,
        tile=tile,
        tile_overlap=overlap,
        flip=flip,
    )
    from ssdcli.engine.evaluate.run import run_eval

    quiet = json_output.to_stdout
    if config.mode == "model":
        from .progress import EvalProgressBar

        with EvalProgressBar(stderr_console() if quiet else stdout_console(), "detect") as progress:
            outcome = run_eval(config, progress)
    else:
        outcome = run_eval(config)
    for warning in outcome.warnings:
        print_warning(warning)
    json_output.write(outcome.metrics())
    if quiet:
        return
    if outcome.voc is not None:
        _render_voc(outcome.voc)
    if outcome.coco is not None:
        _render_coco(outcome.coco)
    if outcome.model_run is not None:
        run = outcome.model_run
        where = f"detections: {run.results_json}"
        if run.devkit_dir is not None:
            where += f"\ndevkit files: {run.devkit_dir}"
        if run.plots:
            where += f"\nplots: {run.plots[0].parent} ({len(run.plots)} PNG files)"
        stdout_console().print(where)

"""`ssd predict`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .progress import EvalProgressBar
from .render import print_warning, stderr_console, stdout_console


def predict_command(
    sources: Annotated[Optional[list[str]], typer.Argument(metavar="SOURCES", help="Image files, folders, glob patterns or video files (or --data).", show_default=False)] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="A checkpoint written by 'ssd train', or torchvision's COCO detector: SSD300_VGG16_Weights.COCO_V1, SSDLite320_MobileNet_V3_Large_Weights.COCO_V1 (from the torch hub cache) or its state dict file.")] = None,
    onnx: Annotated[Optional[Path], typer.Option(help="A model exported by 'ssd export --format onnx'.")] = None,
    out: Annotated[Path, typer.Option(help="Parent folder; each run goes to a fresh numbered folder.")] = Path("runs/predict"),
    json_files: Annotated[bool, typer.Option("--json", help="Also write results.json (COCO style) and one JSON per image; '--json -' prints the JSON to stdout and nothing else.")] = False,
    json_stdout: Annotated[bool, typer.Option("--json-stdout", hidden=True)] = False,
    conf: Annotated[float, typer.Option(min=0.0, max=1.0, help="Score threshold.")] = 0.25,
    iou: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="NMS IoU threshold (default: the model's; 0.45, torchvision's SSDLite 0.55).")] = None,
    classes: Annotated[Optional[str], typer.Option(help="Only these classes (comma-separated names).")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    img_size: Annotated[Optional[int], typer.Option(help="Input size; must match the model's.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Predict on a data set's split instead (VOC root, COCO root or JSON); results.json then carries its image and category ids, for 'ssd eval'.")] = None,
    split: Annotated[Optional[str], typer.Option(help="--data: the split (default: test; a COCO JSON file is its own split).")] = None,
    data_format: Annotated[str, typer.Option("--format", help="--data: auto, voc or coco.")] = "auto",
) -> int:
    """Detect objects in images, folders, globs and videos; writes annotated copies and optional JSON.

    Examples:

        ssd predict photo.jpg --checkpoint runs/train/1/best.pt

        ssd predict images/ clip.mp4 --checkpoint best.pt --json --conf 0.4

        ssd predict 'data/*.png' --onnx model.onnx --json -

        ssd predict --data coco/annotations/instances_val.json --checkpoint best.pt --json --conf 0.01
        ssd eval --coco --gt coco/annotations/instances_val.json --results runs/predict/1/results.json
        ssd predict street.jpg --checkpoint SSD300_VGG16_Weights.COCO_V1
    """
    from ssdcli.engine.device import resolve_device
    from ssdcli.engine.inference.predict import dataset_images, run_predict
    from ssdcli.engine.inference.detectors import load_predictor
    from ssdcli.errors import UsageError

    if (checkpoint is None) == (onnx is None):
        raise UsageError("give exactly one of --checkpoint or --onnx")
    if bool(sources) == (data is not None):
        raise UsageError("give images to predict on (SOURCES) or --data, one of the two")
    if data is None and split is not None:
        raise UsageError("--split applies to --data")
    to_stdout = json_stdout
    names = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
    predictor = load_predictor(
        checkpoint or onnx, resolve_device(device), conf_threshold=conf, iou_threshold=iou, classes=names
    )
    size = predictor.info.layout.image_size
    if img_size is not None and img_size != size:
        raise UsageError(f"--img-size {img_size}: the model was trained at {size} px")
    dataset = dataset_images(data, split, data_format, predictor.info.class_names) if data is not None else None
    status = stderr_console() if to_stdout else stdout_console()
    with EvalProgressBar(status, "predict") as progress:
        result = run_predict(
            predictor, sources or [], None if to_stdout else out, batch_size, json_files, progress, dataset
        )
    if to_stdout:
        typer.echo(json.dumps({"results": result.results, "images": result.per_image}))
    else:
        status.print(f"{result.images_done} image(s), {result.frames_done} video frame(s) -> {result.run_dir}")
    if result.failed:
        print_warning(f"{len(result.failed)} input(s) skipped")
    return 0

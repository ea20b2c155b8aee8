"""`ssd predict`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ssdcli.config import PredictConfig
from ssdcli.errors import UsageError

from .progress import EvalProgressBar
from .render import print_warning, stderr_console, stdout_console


def predict_command(
    sources: Annotated[Optional[list[str]], typer.Argument(metavar="SOURCES", help="Image files, folders, glob patterns or video files (or --data).", show_default=False)] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="A checkpoint written by 'ssd train', or torchvision's COCO detector: SSD300_VGG16_Weights.COCO_V1, SSDLite320_MobileNet_V3_Large_Weights.COCO_V1 (from the torch hub cache) or its state dict file.")] = None,
    onnx: Annotated[Optional[Path], typer.Option(help="A model exported by 'ssd export --to onnx'.")] = None,
    out: Annotated[Path, typer.Option(help="Parent folder; each run goes to a fresh numbered folder.")] = PredictConfig.out,  # type: ignore[assignment]
    json_files: Annotated[bool, typer.Option("--json", help="Also write results.json (COCO style) and one JSON per image; '--json -' prints the JSON to stdout and nothing else.")] = False,
    json_stdout: Annotated[bool, typer.Option("--json-stdout", hidden=True)] = False,
    conf: Annotated[float, typer.Option(help="Score threshold.")] = PredictConfig.conf_threshold,
    iou: Annotated[Optional[float], typer.Option(help="NMS IoU threshold (default: the model's; 0.45, torchvision's SSDLite 0.55).")] = None,
    classes: Annotated[Optional[str], typer.Option(help="Only these classes (comma-separated names).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = PredictConfig.batch_size,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = PredictConfig.device,
    img_size: Annotated[Optional[int], typer.Option(help="Input size; must match the model's.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Predict on a data set's split instead (VOC root, COCO root or JSON); results.json then carries its image and category ids, for 'ssd eval'.")] = None,
    split: Annotated[Optional[str], typer.Option(help="--data: the split (default: test; a COCO JSON file is its own split).")] = None,
    data_format: Annotated[str, typer.Option("--format", help="--data: auto, voc, coco or yolo.")] = PredictConfig.data_format,
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
    from ssdcli.engine.inference.predict import predict

    if (checkpoint is None) == (onnx is None):
        raise UsageError("give exactly one of --checkpoint or --onnx")
    to_stdout = json_stdout
    config = PredictConfig(
        model=checkpoint or onnx,  # type: ignore[arg-type]  # one of the two, checked above
        sources=tuple(sources or ()),
        data=data,
        split=split,
        data_format=data_format,
        out=None if to_stdout else out,
        write_json=json_files,
        conf_threshold=conf,
        iou_threshold=iou,
        classes=tuple(c.strip() for c in classes.split(",") if c.strip()) if classes else None,
        batch_size=batch_size,
        device=device,
        img_size=img_size,
    )
    status = stderr_console() if to_stdout else stdout_console()
    with EvalProgressBar(status, "predict") as progress:
        result = predict(config, progress)
    if to_stdout:
        typer.echo(json.dumps({"results": result.results, "images": result.per_image}))
    else:
        status.print(f"{result.images_done} image(s), {result.frames_done} video frame(s) -> {result.run_dir}")
    if result.failed:
        print_warning(f"{len(result.failed)} input(s) skipped")
    return 0

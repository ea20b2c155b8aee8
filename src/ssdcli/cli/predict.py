"""`ssd predict`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ssdcli.config import PredictConfig
from ssdcli.errors import UsageError

from .command import DataFormat
from .progress import EvalProgressBar
from .render import JsonOutput, print_warning, stderr_console, stdout_console


def predict_command(
    sources: Annotated[Optional[list[str]], typer.Argument(metavar="SOURCES", help="Image files, folders, glob patterns or video files (or --data).", show_default=False)] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="A checkpoint written by 'ssd train', or torchvision's COCO detector: SSD300_VGG16_Weights.COCO_V1, SSDLite320_MobileNet_V3_Large_Weights.COCO_V1 (from the torch hub cache) or its state dict file.")] = None,
    onnx: Annotated[Optional[Path], typer.Option(help="A model exported by 'ssd export --to onnx'.")] = None,
    out: Annotated[Path, typer.Option(help="Parent folder; each run goes to a fresh numbered folder.")] = PredictConfig.out,  # type: ignore[assignment]
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the detections as JSON to this file: COCO results (what 'ssd eval --results' reads) and each image's boxes ('-': stdout, nothing else printed, no pictures).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --json file.")] = False,
    conf: Annotated[float, typer.Option(help="Score threshold.")] = PredictConfig.conf_threshold,
    iou: Annotated[Optional[float], typer.Option(help="NMS IoU threshold (default: the model's; 0.45, torchvision's SSDLite 0.55).")] = None,
    classes: Annotated[Optional[str], typer.Option(help="Only these classes (comma-separated names).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = PredictConfig.batch_size,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = PredictConfig.device,
    img_size: Annotated[Optional[int], typer.Option(help="Input size; must match the model's.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Predict on a data set's split instead (VOC root, COCO root or instances JSON, YOLO root or data.yaml); the --json file then carries its image and category ids, for 'ssd eval --results'.")] = None,
    split: Annotated[Optional[str], typer.Option(help="--data: the split (default: test; a COCO JSON file is its own split).")] = None,
    data_format: Annotated[DataFormat, typer.Option("--format", help="--data: the data set layout (auto: detected from the files).")] = DataFormat(PredictConfig.data_format),
) -> int:
    """Detect objects in images, folders, globs and videos; writes annotated copies and optional JSON.

    Examples:

        ssd predict photo.jpg --checkpoint runs/train/1/best.pt

        ssd predict images/ clip.mp4 --checkpoint best.pt --json detections.json --conf 0.4

        ssd predict 'data/*.png' --onnx model.onnx --json -

        ssd predict --data coco/annotations/instances_val.json --checkpoint best.pt --json val.json --conf 0.01

        (and then: ssd eval --coco --gt coco/annotations/instances_val.json --results val.json)

        ssd predict street.jpg --checkpoint SSD300_VGG16_Weights.COCO_V1
    """
    from ssdcli.engine.inference.predict import predict

    if (checkpoint is None) == (onnx is None):
        raise UsageError("give exactly one of --checkpoint or --onnx")
    json_output = JsonOutput(json_out, force)
    to_stdout = json_output.to_stdout
    config = PredictConfig(
        model=checkpoint or onnx,  # type: ignore[arg-type]  # one of the two, checked above
        sources=tuple(sources or ()),
        data=data,
        split=split,
        data_format=data_format.value,
        out=None if to_stdout else out,
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
    written = json_output.write(result.report())
    if not to_stdout:
        status.print(f"{result.images_done} image(s), {result.frames_done} video frame(s) -> {result.run_dir}")
    if written is not None:
        status.print(f"detections: {written}")
    if result.failed:
        print_warning(f"{len(result.failed)} input(s) skipped")
    return 0

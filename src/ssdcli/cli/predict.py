"""`ssd predict`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ssdcli.config import PredictConfig
from ssdcli.data.files import check_new_file, write_atomic
from ssdcli.errors import Interrupted, UsageError

from .command import FLIP_HELP, OVERLAP_HELP, TILE_HELP, DataFormat
from .progress import EvalProgressBar
from .render import JsonOutput, print_warning, stderr_console, stdout_console

if TYPE_CHECKING:
    from ssdcli.engine.predict.run import PredictResult


def predict_command(
    sources: Annotated[list[str] | None, typer.Argument(metavar="SOURCES", help="Image files, folders, glob patterns, video files, camera indices (0) or rtsp/http(s) stream URLs (or --data).", show_default=False)] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="A checkpoint written by 'ssd train', or torchvision's COCO detector: SSD300_VGG16_Weights.COCO_V1, SSDLite320_MobileNet_V3_Large_Weights.COCO_V1 (from the torch hub cache) or its state dict file.")] = None,
    onnx: Annotated[Path | None, typer.Option(help="A model exported by 'ssd export --to onnx'.")] = None,
    openvino: Annotated[Path | None, typer.Option(help="A model exported by 'ssd export --to openvino' (its folder or model.xml).")] = None,
    out: Annotated[Path, typer.Option(help="Parent folder; each run goes to a fresh numbered folder.")] = PredictConfig.out,  # type: ignore[assignment]
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the detections as JSON to this file: COCO results (what 'ssd eval --results' reads) and each image's boxes ('-': stdout, nothing else printed, no pictures).")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Also write one CSV row per box to this file: image, frame, class, score, x1 y1 x2 y2 in pixels.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --json or --csv file.")] = False,
    conf: Annotated[float, typer.Option(help="Score threshold.")] = PredictConfig.conf_threshold,
    iou: Annotated[float | None, typer.Option(help="NMS IoU threshold (default: the model's; 0.45, torchvision's SSDLite 0.55).")] = None,
    classes: Annotated[str | None, typer.Option(help="Only these classes (comma-separated names).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = PredictConfig.batch_size,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = PredictConfig.device,
    img_size: Annotated[int | None, typer.Option(help="Input size; must match the model's.")] = None,
    data: Annotated[Path | None, typer.Option(help="Predict on a data set's split instead (VOC root, COCO root or instances JSON, YOLO root or data.yaml); the --json file then carries its image and category ids, for 'ssd eval --results'.")] = None,
    split: Annotated[str | None, typer.Option(help="--data: the split (default: test; a COCO JSON file is its own split).")] = None,
    data_format: Annotated[DataFormat, typer.Option("--format", help="--data: the data set layout (auto: detected from the files).")] = DataFormat(PredictConfig.data_format),
    save_txt: Annotated[bool, typer.Option("--save-txt", help="Also write YOLO labels (labels/), the images they describe (images/) and data.yaml into the run folder: a data set 'ssd data check' reads.")] = PredictConfig.save_txt,
    save_conf: Annotated[bool, typer.Option("--save-conf", help="--save-txt: end each label line with the score.")] = PredictConfig.save_conf,
    save_crop: Annotated[bool, typer.Option("--save-crop", help="Also write each detection as a picture: crops/<class>/<image>_<k>.jpg.")] = PredictConfig.save_crop,
    max_frames: Annotated[int | None, typer.Option(help="Videos and streams: predict at most this many frames of each (default: until it ends; a camera until Ctrl-C).")] = PredictConfig.max_frames,
    vid_stride: Annotated[int, typer.Option(help="Videos and streams: predict every k-th frame.")] = PredictConfig.vid_stride,
    tile: Annotated[int | None, typer.Option(help=TILE_HELP)] = PredictConfig.tile,
    overlap: Annotated[float, typer.Option(help=OVERLAP_HELP)] = PredictConfig.tile_overlap,
    flip: Annotated[bool, typer.Option("--flip", help=FLIP_HELP)] = PredictConfig.flip,
) -> int:
    """Detect objects in images, folders, globs and videos; writes annotated copies and optional JSON.

    Examples:

        ssd predict photo.jpg --checkpoint runs/train/1/best.pt

        ssd predict images/ clip.mp4 --checkpoint best.pt --json detections.json --conf 0.4

        ssd predict 'data/*.png' --onnx model.onnx --json -

        ssd predict --data coco/annotations/instances_val.json --checkpoint best.pt --json val.json --conf 0.01

        (and then: ssd eval --coco --gt coco/annotations/instances_val.json --results val.json)

        ssd predict street.jpg --checkpoint SSD300_VGG16_Weights.COCO_V1

        ssd predict unlabelled/ --checkpoint best.pt --save-txt --save-conf --csv boxes.csv

        ssd predict 0 --checkpoint best.pt --max-frames 300 --vid-stride 2

        ssd predict drone.jpg --checkpoint best.pt --tile 512 --overlap 0.2
    """
    from ssdcli.engine.predict.outputs import detections_csv
    from ssdcli.engine.predict.run import PredictInterrupted, predict

    models = [model for model in (checkpoint, onnx, openvino) if model is not None]
    if len(models) != 1:
        raise UsageError("give exactly one of --checkpoint, --onnx or --openvino")
    json_output = JsonOutput(json_out, force)
    to_stdout = json_output.to_stdout
    if csv_out is not None:
        check_new_file(csv_out, force)
    config = PredictConfig(
        model=models[0],
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
        save_txt=save_txt,
        save_conf=save_conf,
        save_crop=save_crop,
        max_frames=max_frames,
        vid_stride=vid_stride,
        tile=tile,
        tile_overlap=overlap,
        flip=flip,
    )
    status = stderr_console() if to_stdout else stdout_console()
    try:
        with EvalProgressBar(status, "predict") as progress:
            result = predict(config, progress)
    except PredictInterrupted as stopped:
        raise Interrupted(interrupted_line(stopped.result, json_output, csv_out)) from None
    written = json_output.write(result.report())
    if not to_stdout:
        status.print(f"{result.images_done} image(s), {result.frames_done} video frame(s) -> {result.run_dir}")
    if written is not None:
        status.print(f"detections: {written}")
    if csv_out is not None:
        status.print(f"boxes: {write_atomic(csv_out, detections_csv(result.per_image))}")
    if result.video_codec is not None:
        status.print(f"annotated videos: {result.video_codec}")
    if result.failed:
        print_warning(f"{len(result.failed)} input(s) skipped")
    return 0


def interrupted_line(result: PredictResult, json_output: JsonOutput, csv_out: Path | None = None) -> str:
    """What Ctrl-C kept: how far predict got, the --json file of the detections so far (written here, never to
    stdout, where it could pass for a complete answer), the --csv file of their boxes and the folder of the
    pictures."""
    done = f"{result.images_done} of {result.images_planned} image(s)"
    if result.frames_done:
        done += f" and {result.frames_done} video frame(s)"
    parts = [f"interrupted: {done} predicted"]
    if json_output.to_stdout or (json_output.target is not None and not result.per_image):
        parts.append("no JSON written")
    elif json_output.target is not None:
        parts.append(f"detections of those in {json_output.write(result.report())}")
    if csv_out is not None and result.per_image:
        from ssdcli.engine.predict.outputs import detections_csv

        parts.append(f"their boxes in {write_atomic(csv_out, detections_csv(result.per_image))}")
    if result.outputs:
        parts.append(f"{len(result.outputs)} picture(s) in {result.run_dir}")
    elif not json_output.to_stdout:
        parts.append("no pictures written")
    return "; ".join(parts)

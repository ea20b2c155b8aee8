"""`ssd export`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ssdcli.config import ExportConfig

from .command import ExportTarget
from .render import stdout_console

D = ExportConfig  # the defaults below are the dataclass's, written once


def export_command(
    checkpoint: Annotated[Path, typer.Option(help="A checkpoint written by 'ssd train', or torchvision's COCO detector (weights name or state dict file, as for 'ssd predict').")],
    to: Annotated[ExportTarget, typer.Option("--to", "-t", help="The file to write (as 'ssd data convert --to' names the target).")] = ExportTarget(D.target),
    out: Annotated[Path | None, typer.Option(help="Output file (default: beside the checkpoint); for --to openvino, a folder (default: <checkpoint stem>_openvino/ holding model.xml and model.bin).")] = D.out,
    opset: Annotated[int, typer.Option(help="ONNX opset (18 or later: the network goes through PyTorch's current exporter).")] = D.opset,
    dynamic_batch: Annotated[bool, typer.Option(help="ONNX: a dynamic batch axis.")] = D.dynamic_batch,
    with_nms: Annotated[bool, typer.Option(help="ONNX: decode and NMS inside the graph.")] = D.with_nms,
    force: Annotated[bool, typer.Option(help="Replace an existing output file.")] = D.force,
    with_preprocess: Annotated[bool, typer.Option(help="ONNX: take uint8 RGB pixels [B, S, S, 3] at the model's input size and normalise inside the graph (with --with-nms, boxes in those pixels).")] = D.with_preprocess,
    int8: Annotated[bool, typer.Option("--int8", help="ONNX: quantise to INT8 (static, QDQ) for fast CPU inference.")] = D.int8,
    calibration: Annotated[Path | None, typer.Option(help="--int8: a folder of images like those the model will see (default: the checkpoint's training split).")] = D.calibration,
) -> None:
    """Export a checkpoint to ONNX, TorchScript or OpenVINO and verify it against PyTorch (fails if they differ).

    Examples:

        ssd export --checkpoint runs/train/1/best.pt --to onnx --out model.onnx

        ssd export --checkpoint best.pt --to onnx --with-nms --out model_nms.onnx

        ssd export --checkpoint best.pt --to torchscript

        ssd export --checkpoint best.pt --to openvino --out model_openvino/

        ssd export --checkpoint best.pt --to onnx --int8 --calibration data/VOC2007/JPEGImages --out model_int8.onnx
    """
    from ssdcli.engine.export.exporter import run_export

    config = ExportConfig(
        checkpoint=checkpoint,
        target=to.value,
        out=out,
        opset=opset,
        dynamic_batch=dynamic_batch,
        with_nms=with_nms,
        with_preprocess=with_preprocess,
        int8=int8,
        calibration=calibration,
        force=force,
    )
    result = run_export(config)
    if result.int8 is not None:
        check = result.int8
        stdout_console().print(
            f"wrote {result.path} (ONNX, INT8 with the {check.fp32_convolutions} last head convolutions in FP32; "
            f"outputs {', '.join(result.outputs)}); its detections match FP32's to AP@0.5 {check.agreement:.3f} >= "
            f"{check.minimum:.2f} on {check.check_images} images held back from calibration (calibrated on "
            f"{check.calibration_images}; raw-output cosine {check.cosine:.4f}); measure its mAP with "
            f"'ssd eval --onnx {result.path}'",
            soft_wrap=True,
        )
        return
    stdout_console().print(
        f"wrote {result.path} ({result.format}; outputs {', '.join(result.outputs)}); "
        f"max difference to PyTorch {result.max_difference:.2e} <= {result.tolerance:.0e}"
    )

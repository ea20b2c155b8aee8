"""INT8 ONNX models: ONNX Runtime's static quantisation (QDQ) of an exported FP32 file, calibrated on real images.

``ssd export --to onnx --int8 --calibration DIR`` exports and checks the FP32 file as usual, then quantises
its convolutions (weights per channel, activations per tensor, both signed 8-bit, calibration by min/max over a
few hundred images), and checks the result against the FP32 file on held-back calibration images: quantisation
changes every output a little, so the check is that the outputs still agree as a whole (cosine similarity of the
class scores and of the box offsets), not a 1e-3 tolerance. Its mAP against the FP32 file is measured with
``ssd eval --onnx`` (docs/results.md).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssdcli.data.images import read_image_rgb
from ssdcli.errors import DataError, SsdcliError, UsageError

from ssdcli.engine.export.parity import ExportFailed, check_finite
from ssdcli.engine.inference.preprocess import network_input

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
#: Calibration images used at most (ONNX Runtime keeps every activation of every image in memory).
MAX_CALIBRATION_IMAGES = 200
#: Images held back from calibration to check the quantised file.
CHECK_IMAGES = 8
#: Lowest cosine similarity between INT8 and FP32 outputs (conf and loc, flattened) accepted.
MIN_AGREEMENT = 0.98


class QuantizationFailed(SsdcliError):
    """The quantised file does not reproduce the FP32 one closely enough."""


@dataclass(frozen=True)
class QuantizeResult:
    path: Path
    calibration_images: int
    agreement: float  # the lower of the two cosine similarities (conf, loc) on held-back images


def calibration_images(source: Path, limit: int = MAX_CALIBRATION_IMAGES, seed: int = 0) -> list[Path]:
    """Up to ``limit`` image files of a folder (searched recursively), a random sample if there are more."""
    if not source.is_dir():
        raise DataError("calibration images: expected a folder of images", path=source)
    found = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if len(found) < CHECK_IMAGES + 1:
        raise DataError(f"calibration needs at least {CHECK_IMAGES + 1} images, found {len(found)}", path=source)
    if len(found) > limit:
        found = sorted(random.Random(seed).sample(found, limit))
    return found


def _inputs(paths: Sequence[Path], size: int, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Network inputs [N, 3, S, S] float32 of image files, prepared as prediction prepares them."""
    tensors = [
        network_input(torch.from_numpy(read_image_rgb(p)).permute(2, 0, 1), size, tuple(mean), tuple(std))
        for p in paths
    ]
    return torch.stack(tensors).numpy()


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over prepared images, one image per call."""

    def __init__(self, images: np.ndarray, input_name: str) -> None:
        self.images, self.input_name, self.next = images, input_name, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.next >= len(self.images):
            return None
        self.next += 1
        return {self.input_name: self.images[self.next - 1 : self.next]}

    def rewind(self) -> None:
        self.next = 0


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def quantize_onnx(
    fp32: Path, out: Path, images: Sequence[Path], size: int, mean: Sequence[float], std: Sequence[float]
) -> QuantizeResult:
    """Quantise the network of the FP32 file ``fp32`` (outputs ``conf`` and ``loc``) into ``out``, calibrated on
    the image files ``images`` (the last :data:`CHECK_IMAGES` held back for the check). Metadata is carried over."""
    return quantize_prepared(fp32, out, _inputs(images, size, mean, std))


def quantize_prepared(fp32: Path, out: Path, prepared: np.ndarray) -> QuantizeResult:
    """:func:`quantize_onnx` on network inputs already prepared: [N, 3, S, S] float32, normalised."""
    try:
        import onnx
        import onnxruntime
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise UsageError("INT8 export needs the optional packages onnx and onnxruntime: pip install 'ssdcli[onnx]'") from None
    if len(prepared) < CHECK_IMAGES + 1:
        raise DataError(f"calibration needs at least {CHECK_IMAGES + 1} images, got {len(prepared)}")
    calibration, check = prepared[:-CHECK_IMAGES], prepared[-CHECK_IMAGES:]
    staged = out.with_name(f".{out.name}.pre.onnx")
    try:
        quant_pre_process(str(fp32), str(staged), skip_symbolic_shape=True)
        quantize_static(
            str(staged),
            str(out),
            _Reader(calibration, "images"),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"],
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    finally:
        staged.unlink(missing_ok=True)
    model = onnx.load(str(out))
    original = onnx.load(str(fp32), load_external_data=False)
    del model.metadata_props[:]
    for entry in original.metadata_props:
        model.metadata_props.add(key=entry.key, value=entry.value)
    onnx.save(model, str(out))
    options = {"providers": ["CPUExecutionProvider"]}
    expected = _run(onnxruntime.InferenceSession(str(fp32), **options), check)
    got = _run(onnxruntime.InferenceSession(str(out), **options), check)
    try:
        check_finite(expected, "the FP32 file", fp32)
        check_finite(got, "the INT8 file", out)
    except ExportFailed:
        out.unlink(missing_ok=True)
        raise
    agreement = min(_cosine(_softmax(expected[0]), _softmax(got[0])), _cosine(expected[1], got[1]))
    if not agreement >= MIN_AGREEMENT:
        out.unlink(missing_ok=True)
        raise QuantizationFailed(
            f"INT8 outputs agree with FP32 only to cosine {agreement:.3f} (< {MIN_AGREEMENT}); "
            "calibrate on more images of the data the model will see; file not written",
            path=out,
        )
    return QuantizeResult(out, len(calibration), agreement)


def _run(session: Any, images: np.ndarray) -> list[np.ndarray]:
    """conf, loc of a network-only session, one image at a time (works for fixed and dynamic batch axes)."""
    runs = [session.run(["conf", "loc"], {"images": images[i : i + 1]}) for i in range(len(images))]
    return [np.concatenate([r[k] for r in runs]) for k in range(2)]

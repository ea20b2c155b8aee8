"""INT8 ONNX models: ONNX Runtime's static quantisation (QDQ) of an exported FP32 file, calibrated on real images,
judged by its detections.

``ssd export --to onnx --int8 --calibration DIR`` exports and checks the FP32 file as usual, then quantises its
convolutions as :class:`QuantRecipe` says (docs/results.md has the measurements behind the default), and checks
the result against the FP32 file on images held back from calibration by what a user judges a detector by: its
detections. Both files' outputs are decoded and put through NMS with the model's own settings; the FP32 file's
confident detections are the ground truth of a VOC AP@0.5 of the INT8 file's detections (:func:`compare_detections`).
A cosine over all raw outputs is no such judge: it is dominated by background logits and by default boxes far
from any object, so it passes files whose detections are wrong and refuses files whose detections are right.
"""

from __future__ import annotations

import contextlib
import io
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssdcli.core.anchors import default_boxes
from ssdcli.core.detections import Detections
from ssdcli.core.postprocess import postprocess
from ssdcli.data.images import IMAGE_SUFFIXES, read_image_rgb
from ssdcli.engine.export.parity import ExportFailed, check_finite
from ssdcli.engine.inference.preprocess import prepare
from ssdcli.errors import DataError, SsdcliError, UsageError
from ssdcli.metrics.voc import VocImageGT, voc_evaluate
from ssdcli.models.spec import ModelSpec

#: Calibration images used at most (ONNX Runtime keeps every activation of every image in memory).
MAX_CALIBRATION_IMAGES = 200
#: Images held back from calibration to check the quantised file: this share of those given, at least
#: MIN_CHECK_IMAGES and at most MAX_CHECK_IMAGES.
CHECK_SHARE = 0.2
MIN_CHECK_IMAGES = 8
MAX_CHECK_IMAGES = 40
#: The FP32 detections taken as ground truth: those scoring at least REFERENCE_SCORE, or, on an image with none,
#: its REFERENCE_TOP best (an undertrained model's best guesses are still what its user looks at).
REFERENCE_SCORE = 0.3
REFERENCE_TOP = 3
#: Detections thinner or lower than this share of the input side are left out of the comparison on both sides: an
#: undertrained model's slivers (a box offset far outside the trained range, clipped to the image) show nothing,
#: and a move of one pixel takes their IoU with themselves to 0.
MIN_BOX_SIDE = 0.01
#: FP32 box offsets above this (coder units: a side scaled e^4 = 55 times) mark an undertrained model in the
#: failure message; trained models' offsets stay within a few units.
UNTRAINED_OFFSET = 20.0
#: Lowest AP@0.5 (VOC, area under the curve) of the INT8 detections against the FP32 ones accepted: at 0.9 about
#: a tenth of the FP32 file's confident detections at most are lost, moved or out of order. The INT8 files measured
#: at 0.94 and above kept VOC07 mAP within 0.002 of FP32 (docs/results.md, "INT8 export").
MIN_DETECTION_AP = 0.9


class QuantizationFailed(SsdcliError):
    """The quantised file does not reproduce the FP32 one closely enough."""


@dataclass(frozen=True)
class QuantRecipe:
    """How the convolutions are quantised (ONNX Runtime static QDQ, signed 8-bit weights and activations).

    Attributes:
        calibration: activation ranges from "minmax" (every value), "percentile" (the central ``percentile`` %
            of the values) or "entropy" (the range that keeps the histogram's information).
        percentile: for "percentile".
        per_channel: one weight scale per output channel (else one per tensor).
        symmetric_activations: activation ranges centred on zero (else asymmetric, with a zero point).
        fp32_head: keep the last convolution of every class-score and box-offset predictor in FP32.
    """

    calibration: str = "percentile"
    percentile: float = 99.999
    per_channel: bool = True
    symmetric_activations: bool = False
    fp32_head: bool = True

    def __post_init__(self) -> None:
        if self.calibration not in ("minmax", "percentile", "entropy"):
            raise ValueError(f"calibration: expected minmax, percentile or entropy, got {self.calibration!r}")


DEFAULT_RECIPE = QuantRecipe()


@dataclass(frozen=True)
class DetectionCheck:
    """The INT8 file's outputs against the FP32 file's on held-back images.

    Attributes:
        ap: AP@0.5 of the INT8 detections with the FP32 reference detections as ground truth (1: the same).
        ap_scores_only: the same with the INT8 class scores and the FP32 box offsets (how much the scores cost).
        ap_boxes_only: the same with the FP32 class scores and the INT8 box offsets (how much the boxes cost).
        cosine: the lower cosine similarity of the raw outputs (conf as softmax, loc), all default boxes.
        drift: (output name, relative error) per predictor ("conf 32x32", "loc 8x8", ...), largest first.
        images: held-back images; reference: FP32 detections taken as ground truth.
        max_offset: the largest FP32 box offset (coder units; a trained model's stay within a few).
        confident: reference detections that score at least :data:`REFERENCE_SCORE` (the rest are an image's best
            few below it: an undertrained model's near-equal guesses, whose order rounding may change).
    """

    ap: float
    ap_scores_only: float
    ap_boxes_only: float
    cosine: float
    drift: tuple[tuple[str, float], ...]
    images: int
    reference: int
    max_offset: float
    confident: int = 0

    @property
    def passed(self) -> bool:
        return self.ap >= MIN_DETECTION_AP


@dataclass(frozen=True)
class QuantizeResult:
    path: Path
    calibration_images: int
    check: DetectionCheck
    fp32_nodes: tuple[str, ...]  # convolutions left in FP32


def check_count(images: int) -> int:
    """How many of ``images`` are held back from calibration for the check."""
    return min(MAX_CHECK_IMAGES, max(MIN_CHECK_IMAGES, round(CHECK_SHARE * images)))


def calibration_images(source: Path, limit: int = MAX_CALIBRATION_IMAGES, seed: int = 0) -> list[Path]:
    """Up to ``limit`` image files of a folder (searched recursively), a random sample if there are more."""
    if not source.is_dir():
        raise DataError("calibration images: expected a folder of images", path=source)
    found = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if len(found) < MIN_CHECK_IMAGES + 1:
        raise DataError(f"calibration needs at least {MIN_CHECK_IMAGES + 1} images, found {len(found)}", path=source)
    if len(found) > limit:
        found = sorted(random.Random(seed).sample(found, limit))
    return found


def _inputs(paths: Sequence[Path], spec: ModelSpec) -> np.ndarray:
    """Network inputs [N, 3, S, S] float32 of image files, prepared as prediction prepares them."""
    tensors = [prepare(torch.from_numpy(read_image_rgb(p)).permute(2, 0, 1), spec) for p in paths]
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


def _onnx_modules() -> tuple[Any, Any, Any]:
    try:
        import onnx
        import onnxruntime
        import onnxruntime.quantization as quantization
        import onnxruntime.quantization.shape_inference
    except ImportError:
        raise UsageError("INT8 export needs the optional packages onnx and onnxruntime: pip install 'ssdcli[onnx]'") from None
    return onnx, onnxruntime, quantization


def head_convolutions(model: Any, outputs: Sequence[str] = ("conf", "loc")) -> list[str]:
    """Names of the Conv nodes of an ONNX graph whose results reach the graph outputs ``outputs`` through no other
    Conv: the last convolution of every predictor of an SSD head."""
    producer = {name: node for node in model.graph.node for name in node.output}
    found: list[str] = []
    pending, seen = list(outputs), set()
    while pending:
        tensor = pending.pop()
        node = producer.get(tensor)
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type == "Conv":
            found.append(node.name)
        else:
            pending.extend(node.input)
    return sorted(found)


def quantize_file(
    fp32: Path, out: Path, calibration: np.ndarray, recipe: QuantRecipe = DEFAULT_RECIPE
) -> tuple[str, ...]:
    """Quantise the FP32 ONNX file ``fp32`` (input ``images``, outputs ``conf`` and ``loc``) into ``out`` as
    ``recipe`` says, calibrated on ``calibration`` [N, 3, S, S] (prepared network inputs), metadata carried over.
    Nothing is checked here (see :func:`quantize_prepared`). Returns the names of the convolutions left in FP32."""
    onnx, _, quantization = _onnx_modules()
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {
        "minmax": quantization.CalibrationMethod.MinMax,
        "percentile": quantization.CalibrationMethod.Percentile,
        "entropy": quantization.CalibrationMethod.Entropy,
    }
    staged = out.with_name(f".{out.name}.pre.onnx")
    try:
        quant_pre_process(str(fp32), str(staged), skip_symbolic_shape=True)
        excluded = head_convolutions(onnx.load(str(staged))) if recipe.fp32_head else []
        options: dict[str, Any] = {
            "ActivationSymmetric": recipe.symmetric_activations,
            "WeightSymmetric": True,
            "CalibTensorRangeSymmetric": recipe.symmetric_activations,
        }
        if recipe.calibration == "percentile":
            options["CalibPercentile"] = recipe.percentile
        with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print their progress
            quantization.quantize_static(
                str(staged),
                str(out),
                _Reader(calibration, "images"),
                quant_format=quantization.QuantFormat.QDQ,
                op_types_to_quantize=["Conv"],
                per_channel=recipe.per_channel,
                activation_type=quantization.QuantType.QInt8,
                weight_type=quantization.QuantType.QInt8,
                calibrate_method=methods[recipe.calibration],
                nodes_to_exclude=excluded,
                extra_options=options,
            )
    finally:
        staged.unlink(missing_ok=True)
    model = onnx.load(str(out))
    original = onnx.load(str(fp32), load_external_data=False)
    del model.metadata_props[:]
    for entry in original.metadata_props:
        model.metadata_props.add(key=entry.key, value=entry.value)
    onnx.save(model, str(out))
    return tuple(excluded)


def quantize_onnx(
    fp32: Path, out: Path, images: Sequence[Path], spec: ModelSpec, recipe: QuantRecipe = DEFAULT_RECIPE
) -> QuantizeResult:
    """Quantise the network of the FP32 file ``fp32`` (outputs ``conf`` and ``loc``) of the model ``spec`` into
    ``out``, calibrated on the image files ``images`` (the last :func:`check_count` held back for the check)."""
    return quantize_prepared(fp32, out, _inputs(images, spec), spec, recipe)


def quantize_prepared(
    fp32: Path, out: Path, prepared: np.ndarray, spec: ModelSpec, recipe: QuantRecipe = DEFAULT_RECIPE
) -> QuantizeResult:
    """:func:`quantize_onnx` on network inputs already prepared: [N, 3, S, S] float32, normalised. The file is
    removed and :class:`QuantizationFailed` raised when its detections on the held-back images fail
    :func:`compare_detections`."""
    _, onnxruntime, _ = _onnx_modules()
    if len(prepared) < MIN_CHECK_IMAGES + 1:
        raise DataError(f"calibration needs at least {MIN_CHECK_IMAGES + 1} images, got {len(prepared)}")
    held_back = check_count(len(prepared))
    calibration, check_images = prepared[:-held_back], prepared[-held_back:]
    fp32_nodes = quantize_file(fp32, out, calibration, recipe)
    options = {"providers": ["CPUExecutionProvider"]}
    expected = run_network(onnxruntime.InferenceSession(str(fp32), **options), check_images)
    got = run_network(onnxruntime.InferenceSession(str(out), **options), check_images)
    try:
        check_finite(expected, "the FP32 file", fp32)
        check_finite(got, "the INT8 file", out)
    except ExportFailed:
        out.unlink(missing_ok=True)
        raise
    check = compare_detections(expected, got, spec)
    if not check.passed:
        out.unlink(missing_ok=True)
        raise QuantizationFailed(failure_message(check))
    return QuantizeResult(out, len(calibration), check, fp32_nodes)


def run_network(session: Any, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """conf [N, A, C], loc [N, A, 4] of a network-only session, one image at a time (fixed and dynamic batch axes)."""
    runs = [session.run(["conf", "loc"], {"images": images[i : i + 1]}) for i in range(len(images))]
    return np.concatenate([r[0] for r in runs]), np.concatenate([r[1] for r in runs])


def _detections(conf: np.ndarray, loc: np.ndarray, spec: ModelSpec) -> list[Detections]:
    """Detections of raw outputs conf [N, A, C], loc [N, A, 4], decoded and NMS'd with the model's settings,
    boxes in pixels of the network input, those thinner than :data:`MIN_BOX_SIDE` left out."""
    size = spec.layout.image_size
    found = postprocess(
        torch.from_numpy(conf).float(), torch.from_numpy(loc).float(), default_boxes(spec.layout), spec.postprocess
    )
    detections = [
        Detections((d["boxes"] * size).numpy(), d["scores"].numpy(), d["labels"].numpy(), image_id=i)
        for i, d in enumerate(found)
    ]
    return [d.select(np.minimum(*_sides(d.boxes)) >= MIN_BOX_SIDE * size) for d in detections]


def _sides(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Widths and heights [K] of xyxy boxes [K, 4]."""
    return boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]


def _reference(detections: Detections, spec: ModelSpec) -> VocImageGT:
    """The FP32 detections of one image taken as its ground truth (see :data:`REFERENCE_SCORE`)."""
    keep = detections.scores >= REFERENCE_SCORE
    if not keep.any():
        keep = np.arange(len(detections)) < REFERENCE_TOP  # detections come by decreasing score
    names = tuple(spec.class_names[int(label)] for label in detections.labels[keep])
    return VocImageGT(detections.boxes[keep], names)


def _agreement(reference: dict[int, VocImageGT], detections: list[Detections], spec: ModelSpec) -> float:
    """AP@0.5 (area under the curve) of ``detections`` against ``reference``, mean over the classes it holds;
    without any reference detection, 1 if ``detections`` are none either, else 0."""
    result = voc_evaluate(reference, detections, spec.class_names[1:], 0.5, "voc12")  # type: ignore[arg-type]  # int ids
    if np.isnan(result.mean_ap):
        return 0.0 if any(len(d) for d in detections) else 1.0
    return result.mean_ap


def _drift(
    expected: tuple[np.ndarray, np.ndarray], got: tuple[np.ndarray, np.ndarray], spec: ModelSpec
) -> tuple[tuple[str, float], ...]:
    """Relative error ||got - expected|| / ||expected|| of each predictor's outputs (class scores as softmax),
    largest first."""
    layout = spec.layout
    counts = [size * size * k for size, k in zip(layout.feature_maps, layout.boxes_per_cell)]
    bounds = np.cumsum([0, *counts])
    found = []
    for name, (e, g) in zip(("conf", "loc"), ((_softmax(expected[0]), _softmax(got[0])), (expected[1], got[1]))):
        for size, start, stop in zip(layout.feature_maps, bounds[:-1], bounds[1:]):
            part_e, part_g = e[:, start:stop].astype(np.float64), g[:, start:stop].astype(np.float64)
            error = float(np.linalg.norm(part_g - part_e) / max(np.linalg.norm(part_e), 1e-12))
            found.append((f"{name} {size}x{size}", error))
    return tuple(sorted(found, key=lambda item: -item[1]))


def compare_detections(
    expected: tuple[np.ndarray, np.ndarray], got: tuple[np.ndarray, np.ndarray], spec: ModelSpec
) -> DetectionCheck:
    """Judge raw outputs ``got`` (conf [N, A, C] logits, loc [N, A, 4]) of a quantised file against the FP32 file's
    ``expected`` by their detections (decoded and NMS'd with ``spec``'s settings): AP@0.5 of the INT8 detections
    with the FP32 detections that matter (:data:`REFERENCE_SCORE`) as ground truth; the same with only the class
    scores or only the box offsets quantised, which names what drifts."""
    fp32 = _detections(*expected, spec)
    reference = {i: _reference(d, spec) for i, d in enumerate(fp32)}
    confident = sum(int((d.scores >= REFERENCE_SCORE).sum()) for d in fp32)
    ap = _agreement(reference, _detections(*got, spec), spec)
    scores_only = _agreement(reference, _detections(got[0], expected[1], spec), spec)
    boxes_only = _agreement(reference, _detections(expected[0], got[1], spec), spec)
    cosine = min(_cosine(_softmax(expected[0]), _softmax(got[0])), _cosine(expected[1], got[1]))
    count = sum(len(gt.class_names) for gt in reference.values())
    drift, largest_offset = _drift(expected, got, spec), float(np.abs(expected[1]).max())
    return DetectionCheck(
        ap, scores_only, boxes_only, cosine, drift, len(expected[0]), count, largest_offset, confident
    )


def failure_message(check: DetectionCheck) -> str:
    """One line: how far the INT8 detections are from the FP32 ones, what drifts, where, and what helps."""
    scores, boxes = f"{check.ap_scores_only:.2f}", f"{check.ap_boxes_only:.2f}"
    if check.ap_scores_only <= check.ap_boxes_only:
        what = f"the class scores drift (AP {scores} with FP32 boxes, {boxes} with FP32 scores)"
    else:
        what = f"the box offsets drift (AP {boxes} with FP32 scores, {scores} with FP32 boxes)"
    worst = ", ".join(f"{name} {error:.2f}" for name, error in check.drift[:3])
    if check.max_offset > UNTRAINED_OFFSET:
        cause = (
            f"the model's box offsets reach {check.max_offset:.0f} (a trained model's stay within a few units), so "
            "rounding moves its boxes by many pixels: train longer and export again, or export FP32 (without `int8`)"
        )
    elif check.confident < check.reference / 2:
        cause = (
            f"only {check.confident} of the {check.reference} FP32 reference detections score {REFERENCE_SCORE} or "
            "more: the model is not yet sure of what it detects, and rounding reorders its near-equal guesses, so "
            "more calibration images will not help: train longer and export again, or export FP32 (without `int8`)"
        )
    else:
        cause = "calibrate on images like those the model will see (`calibration`), or export FP32 (without `int8`)"
    return (
        f"INT8 detections match the FP32 file's only to AP@0.5 {check.ap:.3f} (< {MIN_DETECTION_AP}) on "
        f"{check.images} held-back images ({check.reference} FP32 detections as reference): {what}; most changed "
        f"outputs (relative error): {worst}; raw-output cosine {check.cosine:.4f}; {cause}; file not written"
    )

"""One model through every backend of the one inference stack (checkpoint, TorchScript, ONNX with raw outputs, ONNX
with NMS in the graph, OpenVINO) and through ``ssd eval``'s path over a data set: the same detections everywhere,
within each export's float precision, and exactly the checkpoint's on the eval path."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import ssdcli
from conftest import model_checkpoint, sharpen_class_head
from ssdcli.cli.app import main
from ssdcli.core.detections import Detections
from ssdcli.data.dataset import open_index
from ssdcli.data.records import DatasetIndex
from ssdcli.data.synth import SYNTH_CLASSES, write_synth
from ssdcli.engine.checkpoint import save_checkpoint
from ssdcli.engine.inference.batched import detect_index_with
from ssdcli.engine.inference.detectors import load_detector
from ssdcli.engine.inference.options import DetectOptions
from ssdcli.models.build import build_model
from ssdcli.models.spec import default_config

#: Each export's known precision against PyTorch on the CPU (boxes in image pixels, scores): TorchScript runs the
#: same kernels; ONNX Runtime and OpenVINO at float32 reorder sums (the parity checks of ``ssd export`` allow 1e-4
#: on raw outputs).
TOLERANCE = {
    "torchscript": (1e-4, 1e-6),
    "onnx": (1e-2, 1e-4),
    "onnx-nms": (1e-2, 1e-4),
    "openvino": (1e-2, 1e-4),
}
#: The packages each export needs beyond torch.
NEEDS = {"torchscript": (), "onnx": ("onnx", "onnxruntime"), "onnx-nms": ("onnx", "onnxruntime"),
         "openvino": ("onnx", "onnxruntime", "openvino")}  # fmt: skip
EXPORT_ARGS = {
    "torchscript": ("model.ts", ["--to", "torchscript"]),
    "onnx": ("model.onnx", ["--to", "onnx"]),
    "onnx-nms": ("model-nms.onnx", ["--to", "onnx", "--with-nms"]),
    "openvino": ("model_openvino", ["--to", "openvino"]),
}


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DatasetIndex]:
    """An ssd_tiny checkpoint whose class scores are spread apart (its class head scaled up: detections rank and
    suppress each other by clear margins, without saturating at 1) and a few synthetic images."""
    root = tmp_path_factory.mktemp("backends")
    write_synth(root / "data", format="voc", images=12, seed=1)
    torch.manual_seed(0)
    model = build_model(default_config("ssd_tiny", num_classes=len(SYNTH_CLASSES) + 1))
    sharpen_class_head(model, 5.0)
    path = save_checkpoint(model_checkpoint(model, ("background", *SYNTH_CLASSES)), root / "m.pt")
    return path, open_index(root / "data", "train")


#: The score threshold of the comparison: the scores that matter, far above the 0.01 an ONNX graph with NMS drops.
CONF = 0.3


def _eval_path(checkpoint: Path, index: DatasetIndex) -> list[Detections]:
    """The detections ``ssd eval --checkpoint`` computes, one image per batch, in the index's order."""
    detector = load_detector(checkpoint, "checkpoint", options=DetectOptions(CONF))
    return detect_index_with(detector.detect_batch, index, detector.spec, batch_size=1)


def _per_image(path: Path, index: DatasetIndex) -> list[Detections]:
    """``ssdcli.load(path)``'s per-image entry on every image of ``index``."""
    detector = ssdcli.load(path, conf_threshold=CONF)
    return [detector.detect(record.path) for record in index.records]


def _by_label(found: Detections) -> Detections:
    """``found`` ordered by label, then by decreasing score (the order of equal scores is each runtime's own)."""
    order = np.lexsort((-found.scores, found.labels))
    return dataclasses.replace(found, boxes=found.boxes[order], scores=found.scores[order], labels=found.labels[order])


def _assert_same(expected: list[Detections], got: list[Detections], box_atol: float, score_atol: float) -> None:
    assert sum(len(found) for found in expected) > 0, "no detections: the comparison would mean nothing"
    for image, (want, have) in enumerate(zip(map(_by_label, expected), map(_by_label, got), strict=True)):
        assert len(have) == len(want), f"image {image}: {len(have)} detections, expected {len(want)}"
        np.testing.assert_array_equal(have.labels, want.labels)
        np.testing.assert_allclose(have.boxes, want.boxes, rtol=0, atol=box_atol)
        np.testing.assert_allclose(have.scores, want.scores, rtol=0, atol=score_atol)


def test_the_checkpoint_gives_the_eval_paths_detections_exactly(model_and_data: tuple[Path, DatasetIndex]) -> None:
    checkpoint, index = model_and_data
    expected = _eval_path(checkpoint, index)
    got = _per_image(checkpoint, index)
    _assert_same(expected, got, 0.0, 0.0)
    assert all(have.image_size == want.image_size for have, want in zip(got, expected, strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("form", list(EXPORT_ARGS))
def test_every_export_gives_the_checkpoints_detections(
    model_and_data: tuple[Path, DatasetIndex], tmp_path: Path, form: str
) -> None:
    missing = [name for name in NEEDS[form] if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"{form} needs the optional package(s) {', '.join(missing)}")
    checkpoint, index = model_and_data
    name, args = EXPORT_ARGS[form]
    out = tmp_path / name
    assert main(["export", "--checkpoint", str(checkpoint), *args, "--out", str(out)]) == 0
    assert load_detector(out).format == form.removesuffix("-nms")
    box_atol, score_atol = TOLERANCE[form]
    _assert_same(_eval_path(checkpoint, index), _per_image(out, index), box_atol, score_atol)

"""`ssd export --int8`: ONNX Runtime static quantisation, calibrated on real images, checked against FP32."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import model_checkpoint
from ssdcli.cli.app import main
from ssdcli.core.anchors import default_boxes
from ssdcli.core.postprocess import EVAL_SETTINGS
from ssdcli.data.synth import SYNTH_CLASSES, write_synth
from ssdcli.engine.checkpoint import save_checkpoint
from ssdcli.engine.export.exporter import separated_head_outputs
from ssdcli.engine.export.quantize import compare_detections, failure_message, head_convolutions
from ssdcli.models.build import build_model
from ssdcli.models.spec import ModelSpec, default_config
from ssdcli.models.ssd import SSD

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")


def _last_conv(module: torch.nn.Module) -> torch.nn.Conv2d:
    return [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)][-1]


def _decisive(model: SSD) -> SSD:
    """``model`` with class scores that do not depend on the image: the class predictors' weights zero, their
    biases making the first default box of every cell of the three coarsest maps a "circle" (score 0.98) and
    every other default box background. Its detections are decided by margins 8-bit rounding cannot cross, so
    the detection check must pass (the boxes still come from the quantised network)."""
    with torch.no_grad():
        for level, predictor in enumerate(model.head.conf):
            conv = _last_conv(predictor)
            conv.weight.zero_()
            bias = conv.bias.view(-1, len(SYNTH_CLASSES) + 1)
            bias.zero_()
            bias[:, 0] = 5.0
            if level >= 2:
                bias[0, 1] = 9.0
    return model


def _save(model: SSD, data: Path, path: Path) -> Path:
    state = {"config": {"data": {"data": str(data), "train_split": "train", "data_format": "auto"}}}
    checkpoint = replace(model_checkpoint(model, ("background", *SYNTH_CLASSES)), train_state=state)
    return save_checkpoint(checkpoint, path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("int8")
    data = root / "data"
    write_synth(data, format="voc", images=30, seed=0)
    torch.manual_seed(0)
    model = _decisive(build_model(default_config("ssd_tiny", num_classes=4)))
    return root, _save(model, data, root / "m.pt")


def _ops(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


@pytest.mark.parametrize("calibration", ["folder", "training split"])
def test_int8_export_is_quantised_and_keeps_metadata(
    setup: tuple[Path, Path], calibration: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root, checkpoint = setup
    fp32, int8 = root / f"fp32-{calibration}.onnx", root / f"int8-{calibration}.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--to", "onnx", "--out", str(fp32)]) == 0
    args = ["export", "--checkpoint", str(checkpoint), "--to", "onnx", "--int8", "--out", str(int8)]
    if calibration == "folder":
        args += ["--calibration", str(root / "data" / "JPEGImages")]
    assert main(args) == 0
    summary = capsys.readouterr().out
    assert "last head convolutions in FP32" in summary and "its detections match FP32's to AP@0.5" in summary
    assert "Collecting tensor data" not in summary  # ONNX Runtime's own progress lines stay out
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(int8) and "QuantizeLinear" not in _ops(fp32)
    assert int8.stat().st_size < 0.5 * fp32.stat().st_size  # 8-bit weights
    # The last convolution of each of the 5 class and 5 box predictors stays FP32, every other one is INT8.
    graph = onnx.load(str(int8)).graph
    dequantized = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert sum(node.input[1] not in dequantized for node in convs) == 10 < len(convs)
    assert sorted(node.name for node in convs if node.input[1] not in dequantized) == head_convolutions(onnx.load(str(fp32)))
    meta = {p.key: p.value for p in onnx.load(str(int8)).metadata_props}
    assert json.loads(meta["ssdcli"])["class_names"] == ["background", *SYNTH_CLASSES]
    # Outputs close to the FP32 file's on an image it was not calibrated on (an independent ONNX Runtime run).
    image = np.random.default_rng(5).normal(size=(1, 3, 160, 160)).astype(np.float32)
    runs = [onnxruntime.InferenceSession(str(p)).run(["loc"], {"images": image})[0] for p in (fp32, int8)]
    assert np.corrcoef(runs[0].ravel(), runs[1].ravel())[0, 1] > 0.95
    assert not list(root.glob(".*.tmp")) and not list(root.glob(".*.onnx"))
    # It runs wherever an exported file runs.
    args = ["eval", "--onnx", str(int8), "--data", str(root / "data"), "--split", "val", "--out", str(root / "eval")]
    assert main(args + ["--json", str(root / f"{calibration}.json")]) == 0


def test_int8_export_refuses_a_file_whose_detections_drift(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An untrained network scores thousands of default boxes alike, with class logits scaled up so that every
    rounding reorders them: the former cosine check accepted such files; their detections are not FP32's."""
    root, _ = setup
    torch.manual_seed(0)
    model = build_model(default_config("ssd_tiny", num_classes=4))
    with torch.no_grad():
        for predictor in model.head.conf:
            _last_conv(predictor).weight.mul_(30.0)
    checkpoint = _save(model, root / "data", tmp_path / "untrained.pt")
    out = tmp_path / "q.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--to", "onnx", "--int8", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{out}: INT8 detections match the FP32 file's only to AP@0.5" in err and "drift" in err
    assert "file not written" in err and not out.exists() and not list(tmp_path.glob(".*"))


def test_int8_usage_errors(setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root, checkpoint = setup
    base = ["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "q.onnx")]
    assert main(base + ["--to", "torchscript", "--int8"]) == 2
    assert main(base + ["--to", "onnx", "--int8", "--with-nms"]) == 2
    assert main(base + ["--to", "onnx", "--calibration", str(root)]) == 2
    (tmp_path / "few").mkdir()
    assert main(base + ["--to", "onnx", "--int8", "--calibration", str(tmp_path / "few")]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 4 and "at least" in err
    assert not (tmp_path / "q.onnx").exists()


def _tiny_spec() -> ModelSpec:
    names = ("background", *SYNTH_CLASSES)
    return ModelSpec(default_config("ssd_tiny", num_classes=len(names)), names, tuple(range(len(names))))


def _fp32_outputs(spec: ModelSpec, images: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outputs of a confident detector: conf [N, A, C], loc [N, A, 4] with a few detections per image and class
    scoring about 0.9 and every other default box background; and which default boxes detect [N, A] (bool)."""
    anchors = default_boxes(spec.layout)
    conf, loc = separated_head_outputs(anchors, spec.config.num_classes, images, EVAL_SETTINGS.iou_threshold)
    detecting = conf[:, :, 1:].amax(dim=2) > conf[:, :, 0]
    return conf.numpy(), loc.numpy(), detecting.numpy()


def test_detection_check_refuses_wrong_classes_the_cosine_passed() -> None:
    spec = _tiny_spec()
    conf, loc, detecting = _fp32_outputs(spec)
    drifted = conf.copy()
    foreground = drifted[:, :, 1:]
    foreground[detecting] = np.roll(foreground[detecting], 1, axis=1)  # each detection takes the next class
    check = compare_detections((conf, loc), (drifted, loc), spec)
    assert check.cosine >= 0.98  # the former check's figure and threshold: it accepted this file
    assert check.ap < 0.05 and not check.passed
    assert check.ap_boxes_only == 1.0 and check.ap_scores_only < 0.05
    message = failure_message(check)
    assert "class scores drift" in message and "conf " in message and "cosine" in message


def test_detection_check_refuses_moved_boxes() -> None:
    spec = _tiny_spec()
    conf, loc, detecting = _fp32_outputs(spec)
    moved = loc.copy()
    moved[detecting, 0] += 6.0  # centres move by 0.6 of a default box's width: IoU below 0.5
    check = compare_detections((conf, loc), (conf, moved), spec)
    assert not check.passed and check.ap_scores_only == 1.0 and check.ap_boxes_only < 0.5
    assert "box offsets drift" in failure_message(check)


def test_detection_check_passes_noise_far_from_objects_the_cosine_refused() -> None:
    spec = _tiny_spec()
    conf, loc, detecting = _fp32_outputs(spec)
    rng = np.random.default_rng(0)
    noisy_conf, noisy_loc = conf.copy(), loc.copy()
    noisy_loc[~detecting] += rng.normal(0.0, 2.0, size=noisy_loc[~detecting].shape).astype(np.float32)
    noisy_conf[~detecting, 0] += rng.normal(0.0, 1.0, size=int((~detecting).sum())).astype(np.float32)
    check = compare_detections((conf, loc), (noisy_conf, noisy_loc), spec)
    assert check.cosine < 0.98  # the former check refused this file
    assert check.ap == 1.0 and check.passed


def test_detection_check_tolerates_small_drift_of_every_output() -> None:
    spec = _tiny_spec()
    conf, loc, _ = _fp32_outputs(spec)
    rng = np.random.default_rng(1)
    got = tuple(x + rng.normal(0, 0.05, x.shape).astype(np.float32) for x in (conf, loc))
    assert compare_detections((conf, loc), got, spec).passed  # type: ignore[arg-type]


def test_detection_check_without_fp32_detections() -> None:
    """A file that detects nothing agrees with one that detects nothing, and not with one that detects."""
    spec = _tiny_spec()
    conf, loc, _ = _fp32_outputs(spec)
    silent = conf.copy()
    silent[:, :, 0], silent[:, :, 1:] = 20.0, 0.0  # every default box background with certainty
    assert compare_detections((silent, loc), (silent, loc), spec).passed
    check = compare_detections((silent, loc), (conf, loc), spec)
    assert check.reference == 0 and check.ap == 0.0 and not check.passed


def test_an_unsure_model_is_told_to_train_longer_not_to_calibrate_more() -> None:
    """A model that scores nothing above the reference score (an undertrained one): its best guesses are near-equal,
    rounding reorders them, and more calibration images cannot help; the refusal says so."""
    spec = _tiny_spec()
    _, loc, _ = _fp32_outputs(spec)
    rng = np.random.default_rng(0)
    unsure = rng.normal(0.0, 0.05, size=(*loc.shape[:2], spec.config.num_classes)).astype(np.float32)
    rounded = unsure + rng.normal(0.0, 0.05, size=unsure.shape).astype(np.float32)
    check = compare_detections((unsure, loc), (rounded, loc), spec)
    assert check.reference > 0 and check.confident < check.reference / 2 and not check.passed
    message = failure_message(check)
    assert "train longer" in message and "calibrate on images" not in message

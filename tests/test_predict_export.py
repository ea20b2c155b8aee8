"""`ssd predict` and `ssd export` on a checkpoint made here: ONNX/TorchScript parity, video, JSON, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

import ssdcli
from conftest import model_checkpoint
from ssdcli.cli.app import main
from ssdcli.engine.checkpoint import save_checkpoint
from ssdcli.models.build import build_model
from ssdcli.models.spec import default_config

CLASSES = ("background", "circle", "square", "triangle")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(120, 160), (200, 150), (160, 160)]):
        image = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
        cv2.rectangle(image, (20, 30), (90, 100), (0, 0, 255), -1)
        cv2.imwrite(str(folder / f"img{i}.png"), image)
    return folder


def _same_detections(a, b) -> None:  # two Detections of one image
    """Every detection of ``a`` has one in ``b`` with the same label, IoU > 0.99 and the same score."""
    assert len(a) == len(b) > 0
    for label in np.unique(a.labels):
        mine, theirs = a.labels == label, b.labels == label
        assert mine.sum() == theirs.sum()
        iou = box_iou(torch.from_numpy(a.boxes[mine]), torch.from_numpy(b.boxes[theirs]))
        best = iou.max(dim=1)
        assert bool((best.values > 0.99).all())
        assert np.allclose(a.scores[mine], b.scores[theirs][best.indices.numpy()], atol=1e-4)


@pytest.mark.parametrize("with_nms", [False, True])
def test_onnx_export_gives_the_same_detections(checkpoint: Path, images: Path, tmp_path: Path, with_nms: bool) -> None:
    onnx_path = tmp_path / "model.onnx"
    args = ["export", "--checkpoint", str(checkpoint), "--to", "onnx", "--out", str(onnx_path)]
    assert main(args + (["--with-nms"] if with_nms else [])) == 0
    paths = sorted(images.iterdir())
    from_torch = ssdcli.load(str(checkpoint), conf_threshold=0.2)(paths)
    from_onnx = ssdcli.load(str(onnx_path), conf_threshold=0.2)(paths)
    for a, b in zip(from_torch, from_onnx):
        _same_detections(a, b)
        assert a.image_size == b.image_size


@pytest.mark.parametrize("with_nms", [False, True])
def test_fixed_batch_onnx_predicts_any_number_of_images(checkpoint: Path, images: Path, tmp_path: Path, with_nms: bool) -> None:
    """--no-dynamic-batch fixes the batch axis at 1; predict feeds it one image at a time."""
    onnx_path = tmp_path / "fixed.onnx"
    args = ["export", "--checkpoint", str(checkpoint), "--to", "onnx", "--no-dynamic-batch", "--out", str(onnx_path)]
    assert main(args + (["--with-nms"] if with_nms else [])) == 0
    paths = sorted(images.iterdir())
    assert len(paths) == 3
    from_torch = ssdcli.load(str(checkpoint), conf_threshold=0.2)(paths)
    from_onnx = ssdcli.load(str(onnx_path), conf_threshold=0.2)(paths, batch_size=2)
    for a, b in zip(from_torch, from_onnx, strict=True):
        _same_detections(a, b)


def test_export_refuses_to_overwrite(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "mine.onnx"
    target.write_text("a user's file")
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(target)]) == 2
    assert target.read_text() == "a user's file"
    assert str(target) in capsys.readouterr().err


def test_torchscript_export_matches(checkpoint: Path, tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    assert main(["export", "--checkpoint", str(checkpoint), "--to", "torchscript", "--out", str(target)]) == 0
    scripted = torch.jit.load(str(target))
    loaded = ssdcli.engine.inference.loading.load_model(checkpoint)  # type: ignore[attr-defined]
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        for got, want in zip(scripted(x), loaded.model(x)):
            assert torch.allclose(got, want, atol=1e-4)


def test_predict_accepts_paths_arrays_and_tensors(checkpoint: Path, images: Path) -> None:
    predictor = ssdcli.load(str(checkpoint), conf_threshold=0.2)
    path = sorted(images.iterdir())[0]
    bgr = cv2.imread(str(path))
    rgb = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1)
    by_path, by_array, by_tensor = predictor([path, bgr, rgb])
    for other in (by_array, by_tensor):
        _same_detections(by_path, other)
    assert by_path.image_size == bgr.shape[:2]
    assert by_path.boxes[:, [0, 2]].max() <= bgr.shape[1] + 1e-3 and by_path.boxes[:, [1, 3]].max() <= bgr.shape[0] + 1e-3


def test_predict_cli_writes_images_and_json(checkpoint: Path, images: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    report = tmp_path / "detections.json"
    args = ["predict", str(images), str(broken), "--checkpoint", str(checkpoint), "--out", str(out), "--json", str(report)]
    assert main(args + ["--conf", "0.2", "--device", "cpu"]) == 0
    run = out / "1"
    assert sorted(p.name for p in run.iterdir()) == ["img0.jpg", "img1.jpg", "img2.jpg"]  # pictures only
    document = json.loads(report.read_text())
    assert document["results"] and set(document["results"][0]) >= {"image_id", "category_id", "bbox", "score"}
    per_image = {Path(image["file"]).stem: image for image in document["images"]}
    assert sorted(per_image) == ["img0", "img1", "img2"]  # the broken file is left out
    assert (per_image["img1"]["height"], per_image["img1"]["width"]) == (200, 150)


def test_predict_json_wants_a_target_and_keeps_an_existing_file(
    checkpoint: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs"
    assert main(["predict", str(images), "--checkpoint", str(checkpoint), "--out", str(out), "--json"]) == 2
    assert "--json" in capsys.readouterr().err
    report = tmp_path / "mine.json"
    report.write_text("mine")
    args = ["predict", str(images), "--checkpoint", str(checkpoint), "--out", str(out), "--json", str(report)]
    assert main(args) == 2
    assert report.read_text() == "mine" and not out.exists()  # refused before any work
    assert main([*args, "--force", "--device", "cpu"]) == 0
    assert set(json.loads(report.read_text())) == {"categories", "results", "images"}


def test_predict_json_to_stdout_prints_only_json(checkpoint: Path, images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(images), "--checkpoint", str(checkpoint), "--json", "-", "--device", "cpu"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert len(document["images"]) == 3


def test_video_round_trip(checkpoint: Path, tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    for i in range(7):
        frame = np.full((64, 96, 3), 30 * i % 255, dtype=np.uint8)
        writer.write(frame)
    writer.release()
    out = tmp_path / "runs"
    assert main(["predict", str(video), "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu"]) == 0
    written = cv2.VideoCapture(str(out / "1" / "clip.mp4"))
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == 7


def test_an_interrupted_video_leaves_no_partial_file(checkpoint: Path, tmp_path: Path) -> None:
    from ssdcli.engine.predict.run import run_predict

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    for i in range(6):
        writer.write(np.full((64, 96, 3), 40 * i, dtype=np.uint8))
    writer.release()
    predictor = ssdcli.load(checkpoint, "cpu")
    predict_rgb, calls = predictor.predict_rgb, []

    def interrupted_on_the_second_batch(images):
        calls.append(len(images))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return predict_rgb(images)

    predictor.predict_rgb = interrupted_on_the_second_batch
    with pytest.raises(KeyboardInterrupt):
        run_predict(predictor, [str(video)], tmp_path / "runs", batch_size=2)
    assert calls == [2, 2] and not (tmp_path / "runs" / "1").exists()  # no clip.mp4, no temporary file, no folder


def test_ctrl_c_in_predict_writes_the_json_of_what_was_done_and_says_so(
    checkpoint: Path, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ssdcli.engine.inference.detectors import Detector

    predict_rgb, calls = Detector.predict_rgb, []

    def ctrl_c_on_the_second_batch(self, images):
        calls.append(len(images))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return predict_rgb(self, images)

    monkeypatch.setattr(Detector, "predict_rgb", ctrl_c_on_the_second_batch)
    out, report = tmp_path / "runs", tmp_path / "t.json"
    args = ["predict", str(images), "--checkpoint", str(checkpoint), "--out", str(out), "--json", str(report)]
    assert main([*args, "--batch-size", "1", "--device", "cpu"]) == 130
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == [f"interrupted: 1 of 3 image(s) predicted; detections of those in {report}; 1 picture(s) in {out / '1'}"]
    assert [image["file"] for image in json.loads(report.read_text())["images"]] == [str(images / "img0.png")]
    assert [p.name for p in (out / "1").iterdir()] == ["img0.jpg"]


def test_ctrl_c_in_predict_before_any_picture_leaves_no_run_folder(
    checkpoint: Path, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ssdcli.engine.inference.detectors import Detector

    def ctrl_c(self, images):
        raise KeyboardInterrupt

    monkeypatch.setattr(Detector, "predict_rgb", ctrl_c)
    out, report = tmp_path / "runs", tmp_path / "t.json"
    args = ["predict", str(images), "--checkpoint", str(checkpoint), "--out", str(out), "--json", str(report)]
    assert main([*args, "--device", "cpu"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted: 0 of 3 image(s) predicted; no JSON written; no pictures written"
    assert list(out.iterdir()) == [] and not report.exists()


def test_every_input_failing_is_an_error(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "a.png"
    broken.write_bytes(b"garbage")
    code = main(["predict", str(broken), str(tmp_path / "missing.jpg"), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_checkpoint_of_another_model_is_rejected(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    payload = torch.load(checkpoint, weights_only=True)
    payload["model_config"]["num_classes"] = 7
    payload["class_names"] = ["background"] + [f"c{i}" for i in range(6)]
    other = tmp_path / "other.pt"
    torch.save(payload, other)
    assert main(["predict", str(tmp_path), "--checkpoint", str(other)]) == 2
    assert str(other) in capsys.readouterr().err


def test_a_checkpoint_whose_layout_does_not_fit_its_architecture_is_named(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = torch.load(checkpoint, weights_only=True)
    payload["model_config"]["layout"]["image_size"] = 300  # ssd_tiny's maps at 300 px are not the stored ones
    other = tmp_path / "other.pt"
    torch.save(payload, other)
    assert main(["predict", str(tmp_path), "--checkpoint", str(other), "--json", "-"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: {other}: the ssd_tiny backbone gives feature maps") and "\n" not in error


@pytest.fixture(scope="module")
def outside_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model that ignores its input: the first default box of every cell is pushed wholly above the image and
    scores highest for class 1; the other default boxes stay where they are, with a lower score."""
    torch.manual_seed(0)
    model = build_model(default_config("ssd_tiny", num_classes=len(CLASSES)))
    with torch.no_grad():
        for conf, loc, k in zip(model.head.conf, model.head.loc, model.head.boxes_per_cell):
            conf_conv, loc_conv = (
                [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)][-1] for module in (conf, loc)
            )
            conf_conv.weight.zero_()
            loc_conv.weight.zero_()
            conf_bias = torch.zeros(k, len(CLASSES))
            conf_bias[:, 1] = torch.linspace(4.0, 3.0, k)  # box 0 of a cell scores highest
            conf_conv.bias.copy_(conf_bias.reshape(-1))
            loc_bias = torch.zeros(k, 4)
            loc_bias[0, 1] = -40.0  # t_cy: 4 box heights above its default box
            loc_conv.bias.copy_(loc_bias.reshape(-1))
    path = tmp_path_factory.mktemp("outside") / "best.pt"
    save_checkpoint(model_checkpoint(model, CLASSES), path)
    return path


def test_boxes_outside_the_image_are_no_detections(outside_checkpoint: Path, images: Path, tmp_path: Path) -> None:
    """Boxes decoded above the image clip to zero height; they were reported ("bbox": [190.88, 0.0, 103.12, 0.0]).
    Now neither the PyTorch postprocessing nor the exported ONNX graph (--with-nms) reports them, and they take
    no candidate place from the boxes inside the image."""
    onnx_path = tmp_path / "model.onnx"
    args = ["export", "--checkpoint", str(outside_checkpoint), "--to", "onnx", "--with-nms", "--out", str(onnx_path)]
    assert main(args) == 0
    paths = sorted(images.iterdir())
    for model in (outside_checkpoint, onnx_path):
        found = ssdcli.load(str(model), conf_threshold=0.01)(paths)
        for detections in found:
            assert len(detections) > 0
            boxes = detections.boxes
            assert bool((boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()), model.name


@pytest.mark.parametrize("new_exporter", [True, False])
def test_network_exporter_choice_is_recorded_and_both_pass_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_exporter: bool
) -> None:
    """The network goes through PyTorch's current exporter (dynamo) when onnxscript is installed, else the
    TorchScript-based one; the metadata names it and either file passes the parity check against PyTorch."""
    import json
    import sys

    import onnx

    from ssdcli.engine.export.exporter import export_onnx
    from ssdcli.engine.inference.loading import LoadedModel
    from ssdcli.models.build import build_model
    from ssdcli.models.spec import ModelSpec, default_config

    if new_exporter:
        pytest.importorskip("onnxscript")
    else:
        monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if it were not installed
    torch.manual_seed(0)
    model = build_model(default_config("ssd_tiny", num_classes=3)).eval()
    loaded = LoadedModel(model, ModelSpec(model.config, ("background", "a", "b"), (0, 1, 2)), tmp_path / "m.pt")
    result = export_onnx(loaded, tmp_path / "m.onnx", 18, True, True)
    assert result.max_difference <= result.tolerance
    meta = json.loads({p.key: p.value for p in onnx.load(str(result.path)).metadata_props}["ssdcli"])
    assert meta["exporter"] == ("dynamo" if new_exporter else "torchscript")


def test_a_failure_of_the_dynamo_exporter_is_reported_before_the_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """When PyTorch's current exporter fails, the TorchScript-based one exports the network, and a warning of the
    ``ssdcli`` logger names what failed (the type and first line of the error)."""
    import json
    import logging
    import sys
    import types

    import onnx

    from ssdcli.engine.export.exporter import export_onnx
    from ssdcli.engine.inference.loading import LoadedModel
    from ssdcli.models.build import build_model
    from ssdcli.models.spec import ModelSpec, default_config

    monkeypatch.setitem(sys.modules, "onnxscript", types.ModuleType("onnxscript"))  # the new exporter is tried
    export = torch.onnx.export

    def failing_dynamo(*args: object, **kwargs: object) -> object:
        if kwargs.get("dynamo"):
            raise RuntimeError("unsupported operator aten::foo\n(pages of the exporter's report)")
        return export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", failing_dynamo)
    model = build_model(default_config("ssd_tiny", num_classes=3)).eval()
    loaded = LoadedModel(model, ModelSpec(model.config, ("background", "a", "b"), (0, 1, 2)), tmp_path / "m.pt")
    with caplog.at_level(logging.WARNING, logger="ssdcli"):
        result = export_onnx(loaded, tmp_path / "m.onnx", 18, False, False)
    meta = json.loads({p.key: p.value for p in onnx.load(str(result.path)).metadata_props}["ssdcli"])
    assert meta["exporter"] == "torchscript"
    assert [record.getMessage() for record in caplog.records if record.name == "ssdcli"] == [
        "ONNX: PyTorch's dynamo exporter failed (RuntimeError: unsupported operator aten::foo); the network is "
        "exported with the TorchScript-based one"
    ]


@pytest.mark.parametrize(
    ("options", "named", "flag"),
    [
        ({"target": "tflite"}, "target: expected one of onnx, torchscript, openvino", "Invalid value for '--to'"),  # a choice: refused by the parser
        ({"target": "torchscript", "with_nms": True}, "with_nms applies to target onnx only", "--with-nms applies to --to"),
        ({"calibration": Path("images")}, "calibration applies to int8 only", "--calibration applies to --int8"),
        ({"int8": True, "with_preprocess": True}, "with_preprocess applies", "--with-preprocess applies"),
        ({"opset": 17}, "opset: expected 18 or later", "--opset: expected 18"),
    ],
)
def test_export_settings_are_checked_when_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: dict, named: str, flag: str
) -> None:
    """ExportConfig refuses combinations that cannot be exported, naming its fields; the CLI names the flags,
    before any file is read."""
    from ssdcli.config import ExportConfig
    from ssdcli.errors import UsageError

    with pytest.raises(UsageError) as raised:
        ExportConfig(checkpoint=tmp_path / "missing.pt", **options)
    assert named in str(raised.value)
    args = ["export", "--checkpoint", str(tmp_path / "missing.pt")]
    for key, value in options.items():
        args += [{"target": "--to"}.get(key, f"--{key.replace('_', '-')}")] + ([] if value is True else [str(value)])
    assert main(args) == 2
    assert flag in capsys.readouterr().err


def test_every_form_of_a_model_carries_the_same_spec(checkpoint: Path, tmp_path: Path) -> None:
    """One ModelSpec: what the checkpoint holds, what loading it gives, what an exported ONNX file's metadata
    and a TorchScript file's extra file read back as, and what the predictor of each uses."""
    from ssdcli.engine.checkpoint import load_checkpoint
    from ssdcli.engine.inference.detectors import load_detector
    from ssdcli.engine.inference.loading import load_model

    expected = load_checkpoint(checkpoint).spec
    assert load_model(checkpoint).spec == expected
    assert expected.class_names[0] == "background" and len(expected.category_ids) == len(expected.class_names)
    onnx_file, script_file = tmp_path / "m.onnx", tmp_path / "m.torchscript.pt"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(onnx_file)]) == 0
    assert main(["export", "--checkpoint", str(checkpoint), "--to", "torchscript", "--out", str(script_file)]) == 0
    for path, form in ((checkpoint, "checkpoint"), (onnx_file, "onnx"), (script_file, "torchscript")):
        assert load_detector(path, form, torch.device("cpu")).spec == expected, form
    assert ssdcli.load(str(onnx_file)).spec == expected


def test_export_takes_no_format_option(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--format` names the data format in every other command; `ssd export` names its target with `--to` only."""
    out = tmp_path / "m.torchscript.pt"
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "torchscript", "--out", str(out)]) == 2
    assert "--format" in capsys.readouterr().err and not out.exists()


def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def test_predict_whose_inputs_all_fail_leaves_no_run_folder_and_names_each_failure_once(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from messy_files import undecodable_jpeg

    first, second = undecodable_jpeg(tmp_path / "a.jpg"), undecodable_jpeg(tmp_path / "b.jpg")
    out = tmp_path / "runs"
    assert main(["predict", str(first), str(second), "--checkpoint", str(checkpoint), "--out", str(out)]) == 2
    lines = _lines(capsys.readouterr().err)
    assert [sum(str(path) in line for line in lines) for path in (first, second)] == [1, 1], lines
    assert lines[-1] == "error: every input failed (2; each named above)"
    assert list(out.iterdir()) == []
    assert main(["predict", str(first), "--checkpoint", str(checkpoint), "--out", str(out)]) == 2
    assert _lines(capsys.readouterr().err) == [f"error: {first}: cannot decode image (corrupt or not an image)"]
    assert main(["predict", str(tmp_path / "missing.jpg"), "--checkpoint", str(checkpoint), "--out", str(out)]) == 2
    assert _lines(capsys.readouterr().err) == [f"error: no usable input: {tmp_path / 'missing.jpg'}: file not found"]
    assert list(out.iterdir()) == []


def test_predict_warns_about_a_truncated_jpeg(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from messy_files import smooth_rgb, truncate, write_jpeg

    cut = truncate(write_jpeg(tmp_path / "cut.jpg", smooth_rgb(240, 320)))
    whole = write_jpeg(tmp_path / "whole.jpg", smooth_rgb(240, 320, seed=1))
    assert main(["predict", str(cut), str(whole), "--checkpoint", str(checkpoint), "--json", "-"]) == 0
    assert _lines(capsys.readouterr().err) == ["warning: 1 truncated images decoded as far as their data goes (cut.jpg)"]


def test_predict_takes_gif_files_in_a_folder_and_names_the_files_it_leaves_out(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.full((60, 80, 3), 200, dtype=np.uint8)).save(folder / "anim.gif")
    (folder / "notes.txt").write_text("not an image")
    (folder / ".DS_Store").write_bytes(b"\0")
    assert main(["predict", str(folder), "--checkpoint", str(checkpoint), "--json", "-"]) == 0
    captured = capsys.readouterr()
    assert [image["file"] for image in json.loads(captured.out)["images"]] == [str(folder / "anim.gif")]
    assert _lines(captured.err) == [f"warning: {folder}: 1 file(s) that are neither images nor videos left out (notes.txt)"]


def test_torchscript_export_and_loading_print_no_torch_future_warning(checkpoint: Path, tmp_path: Path) -> None:
    import warnings

    from ssdcli.engine.inference.detectors import load_detector

    target = tmp_path / "m.pt"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["export", "--checkpoint", str(checkpoint), "--to", "torchscript", "--out", str(target)]) == 0
        load_detector(target, "torchscript")
    assert [str(w.message) for w in caught if issubclass(w.category, FutureWarning)] == []


def test_a_torchscript_file_given_as_checkpoint_is_one_line(
    checkpoint: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "m.pt"
    assert main(["export", "--checkpoint", str(checkpoint), "--to", "torchscript", "--out", str(target)]) == 0
    capsys.readouterr()
    assert main(["predict", str(images), "--checkpoint", str(target), "--json", "-"]) == 2
    captured = capsys.readouterr()
    assert _lines(captured.err) == [f"error: {target}: a TorchScript file, not a checkpoint written by 'ssd train'"]


@pytest.mark.slow
def test_ffmpeg_moov_atom_not_found_does_not_reach_the_terminal(checkpoint: Path, images: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    broken = tmp_path / "clip.mp4"
    broken.write_bytes(b"\0\0\0\x18ftypmp42" + bytes(range(256)) * 12)  # an MP4 header, then no moov atom
    source = str(Path(ssdcli.__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}
    done = subprocess.run(
        [sys.executable, "-m", "ssdcli", "predict", str(images / "img0.png"), str(broken), "--checkpoint", str(checkpoint)]
        + ["--json", "-", "--device", "cpu"],
        capture_output=True, text=True, env={**env, "PYTHONPATH": source}, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert _lines(done.stderr) == [f"warning: {broken}: not a readable video", "warning: 1 input(s) skipped"]


def test_predict_on_a_far_larger_photo_gives_boxes_in_its_stored_pixels(checkpoint: Path, tmp_path: Path) -> None:
    from messy_files import smooth_rgb, write_jpeg
    from ssdcli.data.images import decode_image
    from ssdcli.engine.predict.run import run_predict

    photo = write_jpeg(tmp_path / "photo.jpg", smooth_rgb(1920, 2560))  # ssd_tiny: 160 px; decoded at 1/4
    predictor = ssdcli.load(checkpoint, "cpu", conf_threshold=0.01)
    result = run_predict(predictor, [str(photo)], tmp_path / "runs")
    [image] = result.per_image
    assert (image["width"], image["height"]) == (2560, 1920)
    full = predictor.predict_rgb([torch.from_numpy(decode_image(photo).pixels).permute(2, 0, 1).contiguous()])[0]
    boxes = torch.tensor([d["box_xyxy"] for d in image["detections"]], dtype=torch.float64)
    assert len(full) > 5 and len(boxes) > 5
    best = torch.from_numpy(full.boxes[np.argsort(-full.scores)[:5]]).double()  # the full decoding's top 5
    assert box_iou(best, boxes).max(dim=1).values.min() > 0.9
    assert cv2.imread(str(result.outputs[0])).shape == (480, 640, 3)  # the picture at the decoded size


def test_ssd_export_shows_the_exporters_fallback(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The engine's warning reaches the command line user once (the library itself logs to no handler), and a
    warning rendered from an event is not printed a second time by the same route."""
    import logging
    import sys
    import types

    from ssdcli.engine.events import Message, log_event

    monkeypatch.setitem(sys.modules, "onnxscript", types.ModuleType("onnxscript"))  # the new exporter is tried
    export = torch.onnx.export

    def failing_dynamo(*args: object, **kwargs: object) -> object:
        if kwargs.get("dynamo"):
            raise RuntimeError("unsupported operator aten::foo\n(pages of the exporter's report)")
        return export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", failing_dynamo)
    assert main(["export", "--checkpoint", str(checkpoint), "--to", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "dynamo exporter failed (RuntimeError: unsupported operator aten::foo)" in err
    assert not logging.getLogger("ssdcli").handlers[1:], "the command's handler is removed when it ends"

    from ssdcli.cli.render import engine_warnings_shown

    with engine_warnings_shown():
        log_event(Message("rendered by the command already", "warning"))
        logging.getLogger("ssdcli").warning("an engine warning")
    err = capsys.readouterr().err
    assert "rendered by the command already" not in err and err.count("warning: an engine warning") == 1

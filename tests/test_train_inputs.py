"""`ssd train` on messy data and bad options: every problem is found before the first step, and every input error
leaves --out as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import ssdcli.data.verify as verify
from messy_files import set_voc_size, smooth_rgb, truncate, undecodable_jpeg, write_jpeg
from ssdcli.cli.app import main
from ssdcli.core.layouts import get_layout
from ssdcli.data.dataset import open_index
from ssdcli.data.synth import write_synth
from ssdcli.engine.checkpoint import load_checkpoint
from ssdcli.models.build import build_model
from ssdcli.models.spec import default_config

QUICK = ["--epochs", "1", "--batch-size", "4", "--max-steps-per-epoch", "2", "--device", "cpu", "--eval-every", "1"]


def _voc(root: Path, images: int = 40) -> Path:
    write_synth(root, format="voc", images=images, seed=0, image_size=160)
    return root


def _messy_voc(root: Path) -> dict[str, Path]:
    """A VOC set whose train split holds a truncated JPEG, an undecodable file, an EXIF-rotated photo and an image
    whose <size> is wrong."""
    _voc(root)
    records = open_index(root, "train").records
    broken = {
        "truncated": truncate(records[0].path, cut=1024),
        "undecodable": undecodable_jpeg(records[1].path),
        "rotated": write_jpeg(records[2].path, smooth_rgb(160, 160, seed=2), orientation=6),
        "resized": records[3].path,
    }
    set_voc_size(root / "Annotations" / f"{records[3].source_id}.xml", 200, 150)
    return broken


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_messy_set_trains_to_the_end_with_counted_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = _messy_voc(tmp_path / "voc")
    out = tmp_path / "runs"
    assert main(["train", "--data", str(tmp_path / "voc"), "--out", str(out), "--workers", "2", *QUICK]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    text = " ".join(warnings)
    assert "1 truncated images decoded" in text and broken["truncated"].name in text
    assert "1 images that do not decode left out" in text and broken["undecodable"].name in text
    assert "1 image sizes taken from the pixels" in text and broken["resized"].name in text
    assert "1 images with an EXIF orientation tag used as stored" in text and broken["rotated"].name in text
    assert "Traceback" not in captured.err and not _error_lines(captured.err)
    # The warnings come before the first step is reported.
    assert captured.out.index("epoch 1") > 0
    checkpoint = load_checkpoint(out / "1" / "last.pt")
    assert checkpoint.epoch == 1

    # A second run over the same files decodes nothing: the checks are cached under --out.
    calls: list[Path] = []
    original = verify.check_image
    monkeypatch.setattr(verify, "check_image", lambda path: calls.append(path) or original(path))
    assert main(["train", "--data", str(tmp_path / "voc"), "--out", str(out), "--workers", "0", *QUICK]) == 0
    assert calls == []
    # ... until a file changes.
    truncate(broken["rotated"], cut=1024)
    assert main(["train", "--data", str(tmp_path / "voc"), "--out", str(out), "--workers", "0", *QUICK]) == 0
    assert calls == [broken["rotated"].resolve()]
    assert "2 truncated images" in capsys.readouterr().err


def test_strict_stops_before_anything_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = _messy_voc(tmp_path / "voc")
    out = tmp_path / "runs"
    assert main(["train", "--data", str(tmp_path / "voc"), "--out", str(out), "--strict", *QUICK]) == 2
    errors = _error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and str(broken["undecodable"]) in errors[0] and "decode" in errors[0]
    assert not out.exists()


def test_a_file_that_breaks_during_the_run_is_one_line_and_keeps_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the checks before training, an image that does not decode surfaces in a DataLoader worker: one line
    naming the file (not "Caught DataError in DataLoader worker process"), exit 2, last.pt written."""
    data = _voc(tmp_path / "voc")
    broken = {"undecodable": undecodable_jpeg(open_index(data, "train").records[5].path)}
    out = tmp_path / "runs"
    args = ["train", "--data", str(data), "--out", str(out), "--no-verify-images", "--workers", "2"]
    args += ["--epochs", "1", "--batch-size", "4", "--device", "cpu", "--eval-every", "0"]
    assert main(args) == 2
    err = capsys.readouterr().err
    errors = _error_lines(err)
    assert len(errors) == 1 and str(broken["undecodable"]) in errors[0], err
    assert "Caught" not in err and "Traceback" not in err and "worker" not in err
    assert (out / "1" / "last.pt").is_file()


def test_print_error_keeps_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from ssdcli.cli.render import print_error

    print_error("first line\nTraceback (most recent call last):\n  File ...")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "first line" in err and "--debug for details" in err and "Traceback" not in err


def test_a_broken_validation_split_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _voc(tmp_path / "voc")
    out = tmp_path / "runs"
    args = ["train", "--data", str(data), "--out", str(out), "--val-split", "nosuch", *QUICK]
    assert main(args) == 2
    errors = _error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "nosuch" in errors[0]
    assert not out.exists()
    # Turning validation off on purpose trains.
    assert main(args[:-2] + ["--eval-every", "0"]) == 0
    assert (out / "1" / "last.pt").is_file()


def _resume_checkpoint(tmp_path: Path) -> Path:
    """A last.pt of an unfinished run whose data set has since lost a class (its classes differ from the data's)."""
    data = _voc(tmp_path / "other")
    out = tmp_path / "earlier"
    args = ["train", "--data", str(data), "--out", str(out), "--eval-every", "0", "--epochs", "3", *QUICK[2:-2]]
    assert main(args) == 0
    checkpoint = out / "1" / "last.pt"
    for xml in (data / "Annotations").glob("*.xml"):
        xml.write_text(xml.read_text().replace("<name>triangle</name>", "<name>circle</name>"))
    return checkpoint


@pytest.mark.parametrize(
    "option",
    [
        ["--model", "ssd_nope"],
        ["--optimizer", "adam_nope"],
        ["--anchors", "{tmp}/missing.json"],
        ["--anchors", "{tmp}/bad.json"],
        ["--backbone-weights", "{tmp}/missing.pt"],
        ["--img-size", "300"],
        ["--batch-size", "64"],
        ["--batch-size", "1"],
        ["--resume", "{resume}", "--epochs", "5"],  # extends the finished run: its data is read again
    ],
    ids=["model", "optimizer", "anchors-missing", "anchors-bad", "backbone", "img-size", "batch", "bn-batch-1", "resume"],
)
def test_input_errors_leave_out_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str]
) -> None:
    data = _voc(tmp_path / "voc")
    (tmp_path / "bad.json").write_text(json.dumps({"image_size": 160}))
    resume = _resume_checkpoint(tmp_path) if "--resume" in option else None
    option = [o.format(tmp=tmp_path, resume=resume) for o in option]
    out = tmp_path / "runs"
    args = ["train", "--data", str(data), "--out", str(out), "--workers", "0", "--device", "cpu"]
    args += ["--max-steps-per-epoch", "1"] + (["--epochs", "1"] if "--epochs" not in option else [])
    args += ["--batch-size", "4"] if "--batch-size" not in option else []
    capsys.readouterr()
    assert main(args + option) == 2
    err = capsys.readouterr().err
    assert len(_error_lines(err)) == 1 and "Traceback" not in err, err
    assert not out.exists(), f"{option}: --out was written: {sorted(p.name for p in out.rglob('*'))}"


def test_input_errors_without_data_leave_out_unchanged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    for option in (["--model", "ssd_nope"], ["--batch-size", "1"], ["--img-size", "300"]):
        assert main(["train", "--out", str(out), "--synth-images", "16", "--device", "cpu", *option]) == 2
        assert len(_error_lines(capsys.readouterr().err)) == 1
        assert not out.exists(), option


def test_anchors_auto_fits_the_layout_to_the_training_boxes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Objects far smaller than the default boxes: the fitted layout covers more of them, says so in one line with
    both figures, and travels in the checkpoint."""
    import re

    from ssdcli.data.dataset import open_index
    from ssdcli.engine.encode.coverage import coverage_of, gt_best_iou, gt_set_from_index
    from ssdcli.models.spec import default_config

    data = _voc(tmp_path / "voc")
    for xml in (data / "Annotations").glob("*.xml"):  # shrink every box to a quarter of its side, around its centre
        text = xml.read_text()
        def shrink(m: re.Match[str]) -> str:
            x1, y1, x2, y2 = (int(v) for v in m.groups())
            cx, cy, w, h = (x1 + x2) // 2, (y1 + y2) // 2, max(2, (x2 - x1) // 4), max(2, (y2 - y1) // 4)
            return (f"<xmin>{cx - w // 2}</xmin><ymin>{cy - h // 2}</ymin>"
                    f"<xmax>{cx + w // 2}</xmax><ymax>{cy + h // 2}</ymax>")
        text = re.sub(r"<xmin>(\d+)</xmin>\s*<ymin>(\d+)</ymin>\s*<xmax>(\d+)</xmax>\s*<ymax>(\d+)</ymax>", shrink, text)
        xml.write_text(text)
    out = tmp_path / "runs"
    args = ["train", "--data", str(data), "--out", str(out), "--anchors", "auto", "--model", "ssd_tiny"]
    assert main(args + ["--workers", "0", "--eval-every", "0", *QUICK[:8]]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "anchors fitted" in line]
    assert len(lines) == 1, lines
    before, after = (float(v) for v in re.findall(r"([\d.]+)%", lines[0])[:2])
    layout = load_checkpoint(out / "1" / "last.pt").spec.layout
    default = default_config("ssd_tiny", 4).layout
    assert layout != default and after > before
    # The figures are the coverage of the two layouts on the training boxes, measured independently.
    gts = gt_set_from_index(open_index(data, "train"))
    start_cov = coverage_of(gt_best_iou(gts, default), 0.5)[0]
    fitted_cov = coverage_of(gt_best_iou(gts, layout), 0.5)[0]
    assert before == pytest.approx(100 * start_cov, abs=0.06) and after == pytest.approx(100 * fitted_cov, abs=0.06)


def test_validating_on_the_training_split_warns(tmp_path: Path) -> None:
    from ssdcli.config import DataSettings, RuntimeSettings, TrainConfig
    from ssdcli.engine.train.inputs import open_data

    data = _voc(tmp_path / "voc", images=16)
    config = TrainConfig(
        data=DataSettings(data=data, train_split="train", val_split="train", verify_images=False),
        runtime=RuntimeSettings(out=tmp_path / "runs"),
    )
    notes = [note for note in open_data(config, data, lambda event: None).notes if "images too" in note]
    size = len(open_index(data, "train"))
    assert tuple(notes) == (
        f"{size} of {size} validation images ('train') are training images too: the validation figures and "
        "best.pt measure the training set (choose a split apart)",
    )
    apart = TrainConfig(data=DataSettings(data=data, verify_images=False), runtime=RuntimeSettings(out=tmp_path))
    assert not [note for note in open_data(apart, data, lambda event: None).notes if "images too" in note]


def test_train_errors_name_the_data_path_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data", "empty", "--epochs", "1"]) == 2
    assert capsys.readouterr().err.startswith("error: empty: cannot tell the data set format")


def _one_error_line(capsys: pytest.CaptureFixture[str], path: Path) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.strip().splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


def test_an_anchor_layout_file_for_another_backbone_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    anchors = tmp_path / "ssd300.json"
    anchors.write_text(json.dumps(get_layout("ssd300").to_dict()))
    out = tmp_path / "runs"
    args = ["train", "--data", str(_voc(tmp_path / "voc", 12)), "--model", "ssd_tiny", "--anchors", str(anchors)]
    assert main([*args, "--out", str(out), "--workers", "0", *QUICK]) == 2
    assert "feature maps" in _one_error_line(capsys, anchors)
    assert not out.exists()


def test_resuming_a_checkpoint_of_another_model_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    voc, out = _voc(tmp_path / "voc", 12), tmp_path / "runs"
    assert main(["train", "--data", str(voc), "--model", "ssd_tiny", "--out", str(out), "--workers", "0", *QUICK]) == 0
    last = out / "1" / "last.pt"
    payload = torch.load(last, weights_only=False)
    other = build_model(default_config("ssd_tiny", num_classes=4, layout=None)).state_dict()
    other = {key: torch.zeros(value.shape[0] + 1, *value.shape[1:]) if key.endswith("bias") else value
             for key, value in other.items()}  # fmt: skip
    payload["train_state"]["model"] = other
    torch.save(payload, last)
    capsys.readouterr()
    assert main(["train", "--resume", str(last), "--out", str(out), "--workers", "0", *QUICK[:-4], "--epochs", "2"]) == 2
    assert "does not match" in _one_error_line(capsys, last)

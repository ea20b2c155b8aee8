"""Nothing a user made is overwritten: existing output files stop a command (exit 2, one line) unless --force,
predict keeps every image's own JSON, and concurrent runs get their own numbered folders."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import model_checkpoint
from ssdcli.cli.app import main
from ssdcli.data.files import fresh_run_dir
from ssdcli.data.synth import SYNTH_CLASSES, write_synth
from ssdcli.engine.checkpoint import save_checkpoint
from ssdcli.models.build import build_model
from ssdcli.models.spec import default_config

MINE = "a user's file"


def refused(capsys: pytest.CaptureFixture[str], path: Path) -> None:
    """One ``error: <path>: exists; ... --force ...`` line on stderr, and ``path`` as the user left it."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"error: {path}: exists;") and "--force" in err[0], err
    assert path.read_text() == MINE


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "data"
    write_synth(root, images=12, seed=0, image_size=96)
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    names = ("background", *SYNTH_CLASSES)
    model = build_model(default_config("ssd_tiny", num_classes=len(names)))
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    save_checkpoint(model_checkpoint(model, names), path)
    return path


@pytest.fixture
def coco_pair(tmp_path: Path) -> tuple[Path, Path]:
    gt = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "thing"}],
    }
    results = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.9}]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "results.json").write_text(json.dumps(results))
    return tmp_path / "gt.json", tmp_path / "results.json"


def test_eval_json_is_not_overwritten_without_force(
    coco_pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt, results = coco_pair
    target = tmp_path / "m.json"
    target.write_text(MINE)
    args = ["eval", "--coco", "--gt", str(gt), "--results", str(results), "--json", str(target)]
    assert main(args) == 2
    refused(capsys, target)
    assert main([*args, "--force"]) == 0
    assert json.loads(target.read_text())["AP50"] == pytest.approx(1.0)


def test_eval_json_to_stdout_needs_no_force(coco_pair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    gt, results = coco_pair
    assert main(["eval", "--coco", "--gt", str(gt), "--results", str(results), "--json", "-"]) == 0
    assert "AP50" in json.loads(capsys.readouterr().out)


def test_eval_plots_are_not_overwritten_without_force(
    synth: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plots = tmp_path / "plots"
    plots.mkdir()
    target = plots / "confusion.png"
    target.write_text(MINE)
    args = ["eval", "--checkpoint", str(checkpoint), "--data", str(synth), "--split", "test"]
    args += ["--plots", str(plots), "--out", str(tmp_path / "runs"), "--device", "cpu"]
    assert main(args) == 2
    refused(capsys, target)
    assert not (tmp_path / "runs").exists()  # stopped before any detection was written
    assert main([*args, "--force"]) == 0
    assert target.read_bytes().startswith(b"\x89PNG")


def test_encode_json_and_picture_are_not_overwritten_without_force(
    synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = sorted((synth / "JPEGImages").iterdir())[0]
    report, picture = tmp_path / "r.json", tmp_path / "p.png"
    for target, option in ((report, "--json"), (picture, "--visualize")):
        target.write_text(MINE)
        args = ["encode", str(image), option, str(target)]
        assert main(args) == 2
        refused(capsys, target)
        assert main([*args, "--force"]) == 0
        assert target.read_bytes() != MINE.encode()
    report.write_text(MINE)
    assert main(["encode", "--data", str(synth), "--json", str(report)]) == 2  # data-set mode: refused before the work
    refused(capsys, report)


def test_predict_names_each_picture_apart_when_stems_repeat(checkpoint: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("results.jpg", "results.png", "other.jpg"):
        cv2.imwrite(str(inputs / name), rng.integers(0, 255, size=(64, 80, 3), dtype=np.uint8))
    out = tmp_path / "runs"
    args = ["predict", str(inputs), "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu"]
    assert main([*args, "--conf", "0.01"]) == 0
    assert sorted(p.name for p in (out / "1").iterdir()) == ["other.jpg", "results.jpg", "results_2.jpg"]


def _claim(base: str, barrier: multiprocessing.synchronize.Barrier, count: int, queue: multiprocessing.Queue) -> None:
    barrier.wait()
    queue.put([fresh_run_dir(base).name for _ in range(count)])


def test_racing_processes_get_different_run_folders(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_claim, args=(str(tmp_path), barrier, 20, queue)) for _ in range(2)]
    for worker in workers:
        worker.start()
    names = [name for _ in workers for name in queue.get(timeout=120)]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert len(names) == len(set(names)) == 40
    assert sorted(int(n) for n in names) == list(range(1, 41))


def test_data_check_json_is_refused_before_the_work_and_replaced_with_force(
    synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report.json"
    report.write_text(MINE)
    assert main(["data", "check", str(synth), "--json", str(report)]) == 2
    refused(capsys, report)
    assert main(["data", "check", str(synth), "--json", str(report), "--force"]) == 0
    assert sum(split["images"] for split in json.loads(report.read_text())["splits"]) > 0


@pytest.mark.parametrize("command", ["data check", "encode image", "encode data", "eval"])
def test_json_dash_is_the_json_alone_on_stdout(
    command: str, synth: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--json -` means one thing in every command: the JSON alone on stdout, parseable as a whole."""
    image = sorted((synth / "JPEGImages").iterdir())[0]
    args = {
        "data check": ["data", "check", str(synth)],
        "encode image": ["encode", str(image)],
        "encode data": ["encode", "--data", str(synth)],
        "eval": ["eval", "--checkpoint", str(checkpoint), "--data", str(synth), "--split", "train",
                 "--out", str(tmp_path / "eval")],  # fmt: skip
    }[command]
    capsys.readouterr()
    assert main([*args, "--json", "-"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), dict)
    assert not (Path.cwd() / "-").exists()


def test_a_folder_named_superscript_two_under_out_does_not_break_run_numbering(tmp_path: Path) -> None:
    for name in ("²", "1", "٣"):  # str.isdigit() holds for all three; only ASCII digits are run numbers
        (tmp_path / name).mkdir()
    assert fresh_run_dir(tmp_path) == tmp_path / "2"

"""Ctrl-C (SIGINT to a real ``python -m ssdcli`` process): exit code 130, one line saying so, nothing run after."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ssdcli

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX only")

SRC = str(Path(ssdcli.__file__).resolve().parents[1])


def default_sigint() -> None:
    """In the child: SIGINT's default disposition, as in a terminal. A shell starts background jobs with SIGINT
    ignored, and Python installs its Ctrl-C handler only where SIGINT is not ignored at start-up."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-m", "ssdcli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=default_sigint,
    )  # fmt: skip


def interrupt_when(process: subprocess.Popen[str], marker: Path, timeout: float = 240.0) -> tuple[int, str]:
    """Wait for ``marker`` to appear, send SIGINT, return the exit code and stdout + stderr."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            out, err = process.communicate()
            pytest.fail(f"{marker} never appeared (exit {process.returncode}): {out}{err}")
        time.sleep(0.05)
    # Python drops a SIGINT that arrives inside os.fork() (DataLoader workers start at each epoch): like a user,
    # press Ctrl-C again when nothing happens.
    for _ in range(3):
        process.send_signal(signal.SIGINT)
        try:
            out, err = process.communicate(timeout=30)
            return process.returncode, out + err
        except subprocess.TimeoutExpired:
            continue
    process.kill()
    out, err = process.communicate()
    pytest.fail(f"still running 90 s after SIGINT: {out}{err}")


def interrupted_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "interrupted" in line]


@pytest.mark.slow
def test_train_stops_on_sigint_with_exit_code_130(tmp_path: Path) -> None:
    process = start(
        ["train", "--synth-images", "24", "--batch-size", "4", "--epochs", "50", "--workers", "0", "--device", "cpu"]
        + ["--out", str(tmp_path)]
    )
    code, output = interrupt_when(process, tmp_path / "1" / "last.pt")  # after the first epoch
    assert code == 130, output
    assert len(interrupted_lines(output)) == 1, output
    assert "unexpected" not in output  # e.g. torch.save's RuntimeError when Ctrl-C hits a checkpoint write


@pytest.mark.slow
def test_demo_stops_on_sigint_and_evaluates_nothing(tmp_path: Path) -> None:
    process = start(["demo", "--out", str(tmp_path), "--images", "16", "--epochs", "200", "--device", "cpu"])
    code, output = interrupt_when(process, tmp_path / "1" / "train" / "1" / "last.pt")  # training is under way
    assert code == 130, output
    assert len(interrupted_lines(output)) == 1, output
    assert "unexpected" not in output
    assert not (tmp_path / "1" / "eval").exists() and not (tmp_path / "1" / "predict").exists()
    assert "PASCAL VOC AP" not in output and "IoU 0.50:0.95" not in output  # no evaluation table


def test_a_checkpoint_being_written_is_finished_before_ctrl_c_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGINT inside the write: the file is complete and loadable, then KeyboardInterrupt (not torch's RuntimeError)."""
    import torch

    from ssdcli.engine.checkpoint import atomic_torch_save

    target = tmp_path / "last.pt"
    original = torch.save

    def save_after_ctrl_c(payload: object, stream: object) -> None:
        signal.raise_signal(signal.SIGINT)  # Ctrl-C arrives in this thread while the file is being written
        original(payload, stream)

    monkeypatch.setattr(torch, "save", save_after_ctrl_c)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own Ctrl-C, whatever ran before
    try:
        with pytest.raises(KeyboardInterrupt):
            atomic_torch_save({"weights": torch.arange(10)}, target)
    finally:
        signal.signal(signal.SIGINT, previous)
    monkeypatch.undo()
    assert torch.equal(torch.load(target, weights_only=True)["weights"], torch.arange(10))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


@pytest.mark.slow
def test_predict_on_sigint_writes_the_json_of_what_it_did_and_says_where(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    from conftest import model_checkpoint
    from ssdcli.data.synth import SYNTH_CLASSES
    from ssdcli.engine.checkpoint import save_checkpoint
    from ssdcli.models.build import build_model
    from ssdcli.models.spec import default_config

    classes = ("background", *SYNTH_CLASSES)
    model = build_model(default_config("ssd_tiny", num_classes=len(classes)))
    save_checkpoint(model_checkpoint(model, classes), tmp_path / "best.pt")
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(200):
        cv2.imwrite(str(images / f"{i:03d}.png"), rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8))
    out, report = tmp_path / "runs", tmp_path / "t.json"
    process = start(
        ["predict", str(images), "--checkpoint", str(tmp_path / "best.pt"), "--out", str(out), "--json", str(report)]
        + ["--batch-size", "1", "--device", "cpu"]
    )
    code, output = interrupt_when(process, out / "1" / "000.jpg")
    assert code == 130, output
    assert len(interrupted_lines(output)) == 1, output
    pictures = sorted(p.name for p in (out / "1").iterdir())
    done = json.loads(report.read_text())["images"]
    assert [Path(image["file"]).stem for image in done] == [Path(name).stem for name in pictures]
    assert f"interrupted: {len(done)} of 200 image(s) predicted; detections of those in {report}" in output
    assert f"{len(pictures)} picture(s) in {out / '1'}" in output


@pytest.mark.slow
def test_train_interrupted_before_its_first_step_leaves_no_run_folder(tmp_path: Path) -> None:
    process = start(
        ["train", "--synth-images", "300", "--batch-size", "4", "--epochs", "1", "--workers", "0", "--device", "cpu"]
        + ["--out", str(tmp_path)]
    )
    code, output = interrupt_when(process, tmp_path / "1")  # the run folder, while its synthetic data is generated
    assert code == 130, output
    assert interrupted_lines(output) == [
        "interrupted before the first training step; nothing written, no run folder left"
    ], output
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_in_a_command_without_partial_work_says_nothing_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ssdcli.cli.app import main
    from ssdcli.engine.export import exporter

    def ctrl_c(config: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(exporter, "run_export", ctrl_c)
    assert main(["export", "--checkpoint", str(tmp_path / "best.pt"), "--out", str(tmp_path / "m.onnx")]) == 130
    assert capsys.readouterr().err.strip() == "interrupted; nothing written"


@pytest.mark.parametrize("wrote_data", [False, True])
def test_ctrl_c_in_the_demo_outside_training_says_where_its_files_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], wrote_data: bool
) -> None:
    from ssdcli.cli.app import main
    from ssdcli.engine import demo

    def ctrl_c_while_generating(folder: Path, **options: object) -> None:
        if wrote_data:
            folder.mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "write_synth", ctrl_c_while_generating)
    assert main(["demo", "--out", str(tmp_path), "--device", "cpu"]) == 130
    captured = capsys.readouterr()
    lines = captured.out.splitlines() + captured.err.splitlines()
    if wrote_data:
        assert f"interrupted: what the demo did so far is in {tmp_path / '1'}" in lines
    else:
        assert "interrupted; nothing written" in lines and list(tmp_path.iterdir()) == []

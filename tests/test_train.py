"""`ssd train` end to end on tiny generated data: outputs, checkpoints, exact resume, DDP on gloo."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ssdcli.cli.app import main
from ssdcli.config import RuntimeSettings, TrainConfig
from ssdcli.engine.checkpoint import load_checkpoint
from ssdcli.engine.events import Event, StepDone
from ssdcli.engine.inference.loading import load_model
from ssdcli.engine.train.loop import train

QUICK = dict(batch_size=4, synth_images=16, workers=0, device="cpu")


@pytest.mark.slow
def test_train_cli_writes_checkpoints_and_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "--out", str(tmp_path), "--epochs", "2", "--batch-size", "4", "--synth-images", "16"]
    args += ["--workers", "0", "--device", "cpu", "--max-steps-per-epoch", "2"]
    assert main(args) == 0
    run = tmp_path / "1"
    assert (run / "last.pt").is_file() and (run / "best.pt").is_file()
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(0.0 <= float(r["map50"]) <= 1.0 for r in rows)
    loaded = load_model(run / "last.pt")
    assert loaded.spec.class_names[0] == "background" and len(loaded.spec.class_names) == loaded.spec.config.num_classes
    images = torch.zeros(1, 3, loaded.spec.layout.image_size, loaded.spec.layout.image_size)
    conf, loc = loaded.model(images)
    assert conf.shape == (1, loaded.spec.layout.num_anchors, loaded.spec.config.num_classes)
    assert not list(run.glob("*.tmp")), "temporary checkpoint files left behind"

    # Evaluating the checkpoint gives the same VOC numbers as evaluating the devkit files it writes.
    evaluated = tmp_path / "eval"
    metrics_json = tmp_path / "from_checkpoint.json"
    args = ["eval", "--checkpoint", str(run / "last.pt"), "--data", str(run / "data"), "--split", "val"]
    assert main(args + ["--out", str(evaluated), "--json", str(metrics_json), "--device", "cpu"]) == 0
    devkit = evaluated / "1" / "devkit"
    assert sorted(p.name for p in devkit.iterdir()) == [f"comp4_det_val_{c}.txt" for c in ("circle", "square", "triangle")]
    files_json = tmp_path / "from_files.json"
    args = ["eval", "--voc", "--data", str(run / "data"), "--split", "val", "--results", str(devkit)]
    assert main(args + ["--json", str(files_json)]) == 0
    from_checkpoint, from_files = json.loads(metrics_json.read_text()), json.loads(files_json.read_text())
    assert from_checkpoint["mAP"] == pytest.approx(from_files["mAP"], abs=1e-9)
    assert set(from_checkpoint["coco"]) >= {"AP", "AP50", "ARl"}


class _StopAt:
    """Collects step losses and raises KeyboardInterrupt (as Ctrl-C would) after a given step."""

    def __init__(self, epoch: int | None = None, step: int | None = None) -> None:
        self.stop = (epoch, step)
        self.losses: dict[tuple[int, int], tuple[float | None, float | None]] = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, StepDone):  # the losses: on checked steps (every few and each epoch's last)
            self.losses[(event.epoch, event.step)] = (event.loss_conf, event.loss_loc)
            if (event.epoch, event.step) == self.stop:
                raise KeyboardInterrupt


@pytest.mark.slow
def test_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    config = TrainConfig().updated(out=tmp_path / "a", epochs=2, max_steps_per_epoch=3, eval_every=0, **QUICK)
    straight = _StopAt()
    train(config, straight)
    interrupted = _StopAt(epoch=2, step=1)
    first = train(config.updated(out=tmp_path / "b"), interrupted)
    assert first.interrupted and first.last_checkpoint is not None
    saved = load_checkpoint(first.last_checkpoint)
    assert (saved.epoch, saved.step_in_epoch) == (1, 1)
    assert saved.train_state is not None and saved.train_state["ema"]["updates"] == 4
    resumed = _StopAt()
    resume = RuntimeSettings(out=tmp_path / "c", resume=first.last_checkpoint, workers=0, device="cpu")
    again = train(TrainConfig(runtime=resume), resumed)
    assert sorted(resumed.losses) == [(2, 2), (2, 3)]
    assert resumed.losses[(2, 3)][0] is not None
    for key, loss in resumed.losses.items():
        if loss[0] is None:
            assert straight.losses[key] == (None, None)
        else:
            assert loss == pytest.approx(straight.losses[key], abs=1e-5, rel=0)
    # the weight average continues too: the saved (EMA) weights match those of the uninterrupted run
    assert again.last_checkpoint is not None
    ended = load_checkpoint(again.last_checkpoint)
    reference = load_checkpoint(tmp_path / "a" / "1" / "last.pt")
    assert ended.train_state is not None and ended.train_state["ema"]["updates"] == 6
    for name, value in reference.model_state.items():
        torch.testing.assert_close(ended.model_state[name], value, atol=1e-5, rtol=0)
    assert not torch.equal(ended.model_state["head.conf.0.weight"], ended.train_state["model"]["head.conf.0.weight"])


def test_missing_data_folder_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope"
    assert main(["train", "--data", str(missing), "--out", str(tmp_path / "runs"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_resume_from_a_file_that_is_not_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "last.pt"
    bogus.write_bytes(b"not a checkpoint")
    assert main(["train", "--resume", str(bogus), "--out", str(tmp_path / "runs")]) == 2
    assert str(bogus) in capsys.readouterr().err


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_ddp_two_processes_on_gloo(tmp_path: Path) -> None:
    """Two processes: one run folder, validation sharded over both and gathered (the metrics row is the whole
    split's), and the run checks at the end that both processes hold the same weights (it fails otherwise)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    port = str(_free_port())
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    command += ["-m", "ssdcli", "train", "--out", str(tmp_path), "--epochs", "2", "--batch-size", "2"]
    command += ["--synth-images", "24", "--workers", "0", "--device", "cpu", "--max-steps-per-epoch", "2"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(runs) == 1, "every rank must write into the same run folder"
    assert (runs[0] / "last.pt").is_file()
    rows = list(csv.DictReader((runs[0] / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and all(r["map50"] != "" for r in rows)
    # The gathered validation equals a single process's evaluation of the same weights on the whole split.
    loaded = load_model(runs[0] / "last.pt")
    from ssdcli import default_boxes
    from ssdcli.data.dataset import open_index
    from ssdcli.engine.evaluate.validation import detect_for_validation, evaluate_detections

    index = open_index(runs[0] / "data", "val", classes=loaded.spec.class_names[1:])
    detections = detect_for_validation(loaded.model, index, default_boxes(loaded.spec.layout), torch.device("cpu"), 2)
    metrics = evaluate_detections(index, detections).training_metrics()
    assert float(rows[-1]["map50"]) == pytest.approx(metrics["map50"], abs=1e-9)


# torchrun runs this instead of `-m ssdcli`: the real command, with the loss made to raise on one process at its
# second training step (the other process is then inside the step's gradient exchange, waiting for it).
FAILING_RANK_ENTRY = """
import os, sys
import ssdcli.engine.train.loop as train_module
from ssdcli.cli.app import main

real_loss, calls = train_module.ssd_loss, []

def failing_loss(*args, **kwargs):
    calls.append(1)
    if os.environ["RANK"] == os.environ["FAILING_RANK"] and len(calls) == 2:
        raise RuntimeError("disk vanished under the loss")
    return real_loss(*args, **kwargs)

train_module.ssd_loss = failing_loss
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("failing_rank", [0, 1])
def test_an_error_on_one_process_ends_every_process_with_one_line(tmp_path: Path, failing_rank: int) -> None:
    entry = tmp_path / "entry.py"
    entry.write_text(FAILING_RANK_ENTRY)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FAILING_RANK": str(failing_rank)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port"]
    command += [str(_free_port()), str(entry), "train", "--out", str(tmp_path / "runs"), "--epochs", "2"]
    command += ["--batch-size", "2", "--synth-images", "24", "--workers", "0", "--device", "cpu"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode != 0
    ours = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert sum("disk vanished under the loss" in line for line in ours) == 1, done.stderr[-3000:]
    assert sum(f"process {1 - failing_rank} of 2 stopped: another process" in line for line in ours) == 1, ours
    assert len(ours) == 2, ours
    # torchrun prints its own summary; no traceback comes from ssdcli's code
    assert "ssdcli" not in "".join(line for line in done.stderr.splitlines() if line.lstrip().startswith("File "))
    if failing_rank == 1:  # the first process kept the step it had completed
        (run,) = (tmp_path / "runs").iterdir()
        from ssdcli.engine.checkpoint import load_checkpoint

        saved = load_checkpoint(run / "last.pt")
        assert (saved.epoch, saved.step_in_epoch) == (0, 1)

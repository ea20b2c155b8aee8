"""Files as a user expects them: the umask's permissions on everything written, output places checked before the
work (one line, exit 2), a full disk named as such, and metrics.csv rows only for epochs whose checkpoint exists."""

from __future__ import annotations

import csv
import errno
import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ssdcli.cli.app import main
from ssdcli.config import TrainConfig
from ssdcli.data.files import (
    atomic_path,
    check_new_file,
    check_output_folder,
    current_umask,
    fresh_run_dir,
    write_atomic,
    write_json,
)
from ssdcli.data.images import write_image
from ssdcli.engine.checkpoint import atomic_torch_save
from ssdcli.engine.train.loop import train
from ssdcli.errors import DataError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """The process umask set to the parameter for the test, restored after."""
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def test_umask_is_read_as_set(umask: int) -> None:
    assert current_umask() == umask


def test_every_writer_gives_the_umask_mode(umask: int, tmp_path: Path) -> None:
    file_mode, folder_mode = 0o666 & ~umask, 0o777 & ~umask  # 0644 / 0755 under 022, 0600 / 0700 under 077
    run = fresh_run_dir(tmp_path / "runs")
    with atomic_path(run / "export.onnx") as temporary:
        temporary.write_bytes(b"graph")  # what an exporter writing to a path does
    written = [
        write_atomic(run / "notes.txt", "text"),
        write_json(run / "config.json", {"a": 1}),
        atomic_torch_save({"w": torch.zeros(2)}, run / "last.pt"),
        write_image(run / "picture.jpg", np.zeros((8, 8, 3), dtype=np.uint8)),
        run / "export.onnx",
    ]
    assert {path.name: mode(path) for path in written} == {path.name: file_mode for path in written}
    assert mode(run) == folder_mode and mode(tmp_path / "runs") == folder_mode


def test_a_replaced_file_keeps_its_own_mode(tmp_path: Path) -> None:
    path = tmp_path / "shared.json"
    path.write_text("{}")
    path.chmod(0o640)
    write_json(path, {"b": 2})
    assert mode(path) == 0o640


def test_cli_outputs_follow_the_umask(umask: int, checkpoint: Path, tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    write_image(image, np.full((40, 50, 3), 90, dtype=np.uint8))
    out, detections = tmp_path / "pictures", tmp_path / "detections.json"
    args = ["predict", str(image), "--checkpoint", str(checkpoint), "--out", str(out), "--json", str(detections)]
    assert main(args + ["--device", "cpu"]) == 0
    exported = tmp_path / "model.torchscript.pt"
    assert main(["export", "--checkpoint", str(checkpoint), "--to", "torchscript", "--out", str(exported)]) == 0
    expected = 0o666 & ~umask
    assert mode(out / "1" / "photo.jpg") == expected and mode(detections) == expected and mode(exported) == expected


# --- output places checked before the work ---------------------------------------------------------------------


@pytest.fixture
def blocked(tmp_path: Path) -> Path:
    """A path under a regular file: no one, root included, can write there."""
    plain = tmp_path / "plain-file"
    plain.write_text("not a folder")
    return plain / "inside"


@pytest.fixture
def no_model_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading any model fails the test: the refusal must come first."""
    import ssdcli.engine.evaluate.run as eval_run
    import ssdcli.engine.predict.run as predict_run

    def forbidden(*args: Any, **kwargs: Any) -> None:
        pytest.fail("a model was loaded before the output place was checked")

    monkeypatch.setattr(predict_run, "load_detector", forbidden)
    monkeypatch.setattr(eval_run, "load_detector", forbidden)


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize(
    "command",
    [
        ["predict", "{image}", "--checkpoint", "{ckpt}", "--json", "{blocked}/x.json"],
        ["predict", "{image}", "--checkpoint", "{ckpt}", "--out", "{blocked}"],
        ["eval", "--checkpoint", "{ckpt}", "--data", "{image}", "--json", "{blocked}/m.json"],
        ["eval", "--checkpoint", "{ckpt}", "--data", "{image}", "--out", "{blocked}"],
        ["eval", "--checkpoint", "{ckpt}", "--data", "{image}", "--plots", "{blocked}"],
        ["export", "--checkpoint", "{ckpt}", "--to", "onnx", "--out", "{blocked}/m.onnx"],
        ["train", "--synth-images", "16", "--epochs", "1", "--out", "{blocked}"],
    ],
    ids=["predict-json", "predict-out", "eval-json", "eval-out", "eval-plots", "export-out", "train-out"],
)
def test_an_unwritable_output_is_refused_before_the_work(
    command: list[str], checkpoint: Path, blocked: Path, no_model_loading: None, capsys: pytest.CaptureFixture[str]
) -> None:
    values = {"image": str(blocked.parent), "ckpt": str(checkpoint), "blocked": str(blocked)}
    assert main([part.format(**values) for part in command]) == 2
    line = one_error_line(capsys)
    assert str(blocked) in line and f"cannot write: {blocked.parent} is not a folder" in line


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write in any folder")
def test_a_folder_without_write_permission_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(DataError, match="no permission to write in"):
            check_new_file(locked / "x.json")
        with pytest.raises(DataError, match="no permission to write in"):
            check_output_folder(locked / "runs")
    finally:
        locked.chmod(0o700)


def test_missing_folders_that_can_be_made_are_accepted(tmp_path: Path) -> None:
    assert check_output_folder(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert check_new_file(tmp_path / "c" / "d.json") == tmp_path / "c" / "d.json"
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()  # nothing made by the check


# --- a full disk ------------------------------------------------------------------------------------------------


class FullDisk(io.RawIOBase):
    """A file on a disk that fills after ``room`` bytes: a later write raises ENOSPC."""

    def __init__(self, stream: Any, room: int) -> None:
        self.stream, self.room = stream, room

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.stream.write(data)

    def fileno(self) -> int:
        return self.stream.fileno()

    def close(self) -> None:
        self.stream.close()
        super().close()


def fill_disk_for(monkeypatch: pytest.MonkeyPatch, name: str, after: int = 0) -> None:
    """Writes to the temporary file of ``name`` fail with ENOSPC, from the ``after``+1-th such file on."""
    opened = Path.open
    count = [0]

    def open_on_full_disk(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        stream = opened(self, mode, *args, **kwargs)
        if "w" in mode and self.name.startswith(f".{name}."):
            count[0] += 1
            if count[0] > after:
                return FullDisk(stream, room=100)
        return stream

    monkeypatch.setattr(Path, "open", open_on_full_disk)


def test_a_full_disk_while_saving_a_checkpoint_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fill_disk_for(monkeypatch, "last.pt")
    target = tmp_path / "last.pt"
    with pytest.raises(DataError) as caught:  # torch.save turns the failed write into a RuntimeError
        atomic_torch_save({"w": torch.zeros(10_000)}, target)
    assert str(caught.value) == f"{target}: cannot write: disk full (no space left on the device)"
    assert list(tmp_path.iterdir()) == []  # no file, no temporary


def test_a_full_disk_inside_an_export_says_so(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    with pytest.raises(DataError, match="disk full"), atomic_path(target):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert list(tmp_path.iterdir()) == []


def test_metrics_hold_no_row_for_an_epoch_whose_checkpoint_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill_disk_for(monkeypatch, "last.pt", after=1)  # epoch 1's last.pt is written, epoch 2's fails
    config = TrainConfig.from_dict(
        {"optim": {"epochs": 3, "batch_size": 4},
         "data": {"synth_images": 16},
         "runtime": {"out": str(tmp_path), "workers": 0, "device": "cpu", "eval_every": 0, "max_steps_per_epoch": 1}}
    )  # fmt: skip
    with pytest.raises(DataError, match="disk full"):
        train(config)
    rows = list(csv.DictReader((tmp_path / "1" / "metrics.csv").open()))
    assert [int(row["epoch"]) for row in rows] == [1]
    assert torch.load(tmp_path / "1" / "last.pt", weights_only=True)["epoch"] == 1

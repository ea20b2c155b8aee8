"""The command line: global options, error format and exit codes, run through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ssdcli.cli.app import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert "ssdcli" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["train", "encode", "eval", "predict", "export", "data", "demo"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    assert "Usage" in capsys.readouterr().out


def test_unknown_command_is_a_one_line_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-command"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")


def test_bad_option_value_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--seed", "x"]) == 2
    assert capsys.readouterr().err.startswith("error:")


@pytest.mark.slow
def test_demo_runs_every_stage_into_a_fresh_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["demo", "--out", str(tmp_path), "--images", "40", "--epochs", "1", "--device", "cpu"]
    assert main(args) == 0
    run = tmp_path / "1"
    assert (run / "train" / "1" / "best.pt").is_file()
    assert (run / "eval" / "1" / "detections.json").is_file()
    assert len(list((run / "predict" / "1").glob("*.jpg"))) == 6  # 15 % of 40 images are the test split
    predictions = json.loads((run / "predict" / "1" / "predictions.json").read_text())
    assert len(predictions["images"]) == 6
    assert "mAP" in capsys.readouterr().out


def test_demo_output_folder_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("mine")
    assert main(["demo", "--out", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert str(blocker) in err and "Traceback" not in err
    assert blocker.read_text() == "mine"


def test_python_dash_m_entry_point_no_traceback() -> None:
    done = subprocess.run([sys.executable, "-m", "ssdcli", "export", "--checkpoint", "missing.pt"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.startswith("error:")


def test_engine_errors_name_parameters_and_the_cli_names_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ssdcli.config import OptimSettings, RuntimeSettings, TrainConfig
    from ssdcli.engine.train.loop import train
    from ssdcli.errors import UsageError

    with pytest.raises(UsageError) as raised:
        train(
            TrainConfig(optim=OptimSettings(epochs=5, time_budget=60.0), runtime=RuntimeSettings(out=tmp_path / "runs"))
        )
    assert str(raised.value) == "epochs and time_budget both given; choose one"
    assert main(["train", "--epochs", "5", "--time", "1m", "--out", str(tmp_path / "runs")]) == 2
    assert "error: --epochs and --time both given; choose one" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("batch_size", 0, "--batch-size"),
        ("epochs", 0, "--epochs"),
        ("workers", -1, "--workers"),
        ("zoom_out", 0.5, "--zoom-out"),
        ("warmup_steps", -3, "--warmup-steps"),
        ("lr", -0.1, "--lr"),
        ("data_format", "pascal", "--format"),
    ],
)
def test_train_settings_are_checked_where_they_are_defined(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: object, flag: str
) -> None:
    """The part of TrainConfig that holds the field refuses a bad value naming the field; the CLI, which takes its
    defaults from those parts, names the flag; nothing is written."""
    from ssdcli.config import TrainConfig
    from ssdcli.errors import UsageError

    with pytest.raises(UsageError) as raised:
        TrainConfig().updated(**{field: value})
    assert str(raised.value).startswith(f"{field}: ")
    out = tmp_path / "runs"
    assert main(["train", flag, str(value), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith((f"error: {flag}: ", f"error: Invalid value for '{flag}'")), err  # a choice: refused by the parser
    assert not out.exists()


def test_the_cli_defaults_are_the_configs() -> None:
    """Each default is written once: `ssd train`'s options default to the fields of TrainConfig's parts."""
    import inspect

    from ssdcli.cli.train import train_command
    from ssdcli.config import TrainConfig

    defaults = TrainConfig().values()
    renamed = {"model": "arch", "time": "time_budget"}
    for name, parameter in inspect.signature(train_command).parameters.items():
        field = renamed.get(name, name)
        if field in defaults and name not in {"classes", "time"}:
            assert parameter.default == defaults[field], name

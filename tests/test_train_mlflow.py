"""`ssd train --mlflow`: the run's settings as MLflow parameters, metrics.csv's figures as metrics with their epoch
as step, best.pt and the pictures as artifacts, and a resumed run logged into the same MLflow run; the engine's
events as standard `logging` records of the `ssdcli` logger."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest

from ssdcli.cli.app import main
from ssdcli.engine.events import EpochDone, Message, log_event

QUICK = ["--batch-size", "4", "--synth-images", "16", "--workers", "0", "--device", "cpu", "--max-steps-per-epoch", "1"]


@pytest.mark.slow
def test_a_run_and_its_resume_are_logged_into_one_mlflow_run(tmp_path: Path) -> None:
    pytest.importorskip("mlflow", reason="the optional package mlflow is not installed")
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    out = tmp_path / "runs"
    assert main(["train", *QUICK, "--epochs", "2", "--out", str(out), "--mlflow-uri", uri]) == 0
    client = MlflowClient(tracking_uri=uri)
    run_id = json.loads((out / "1" / "mlflow.json").read_text())["run_id"]
    run = client.get_run(run_id)
    assert run.data.params["optim.epochs"] == "2" and run.data.params["optim.batch_size"] == "4"
    rows = list(csv.DictReader((out / "1" / "metrics.csv").open()))
    for name in ("loss", "loss_conf", "loss_loc", "lr", "map50", "coco_ap", "seconds"):
        history = client.get_metric_history(run_id, name)
        assert [(m.step, m.value) for m in history] == [(int(r["epoch"]), pytest.approx(float(r[name]))) for r in rows]
    assert {a.path for a in client.list_artifacts(run_id)} >= {"best.pt", "curves.png", "val_predictions.png"}

    assert main(["train", "--resume", str(out / "1" / "last.pt"), "--epochs", "3", "--out", str(out),
                 "--mlflow-uri", uri]) == 0  # fmt: skip
    assert json.loads((out / "2" / "mlflow.json").read_text())["run_id"] == run_id
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [1, 2, 3]
    experiment = client.get_run(run_id).info.experiment_id
    assert len(client.search_runs([experiment])) == 1
    assert client.get_run(run_id).info.status == "FINISHED"


def test_without_mlflow_installed_the_option_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_mlflow(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("mlflow"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    assert main(["train", *QUICK, "--epochs", "1", "--out", str(tmp_path / "runs"), "--mlflow"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --mlflow needs the optional package mlflow: pip install 'ssdcli[mlflow]'"
    )


def test_events_are_logging_records_of_the_ssdcli_logger(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ssdcli"):
        log_event(Message("`patience` ran out", "warning"))
        log_event(EpochDone(3, {"epoch": 3, "loss": 1.25, "map50": 0.5}))
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("ssdcli", logging.WARNING, "patience ran out"),
        ("ssdcli", logging.INFO, "epoch 3: loss 1.25, map50 0.5"),
    ]

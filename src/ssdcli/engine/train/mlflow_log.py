"""Optional MLflow tracking of a training run (``ssd train --mlflow [URI]``), as an event handler beside the one
that renders progress: the run's settings as parameters, every column of metrics.csv as metrics (step: the epoch),
and ``best.pt``, ``curves.png`` and ``val_predictions.png`` as artifacts when the run ends. A resumed run continues
the MLflow run of the run it resumes (its id is kept in the run folder's ``mlflow.json``)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from ssdcli.config import DEFAULT_TRACKING
from ssdcli.data.files import read_json, write_json
from ssdcli.engine.events import EpochDone, Event, RunStarted
from ssdcli.errors import UsageError

#: The file in a run folder that names its MLflow run.
MLFLOW_FILE = "mlflow.json"
ARTIFACTS = ("best.pt", "curves.png", "val_predictions.png")
EXPERIMENT = "ssdcli"


def tracking_uri(setting: str, run_dir: Path) -> str:
    """Where runs are tracked: ``setting`` itself, or for :data:`DEFAULT_TRACKING` the ``MLFLOW_TRACKING_URI``
    environment variable, else a local ``mlruns`` folder beside the run folder."""
    if setting != DEFAULT_TRACKING:
        return setting
    return os.environ.get("MLFLOW_TRACKING_URI") or (run_dir.resolve().parent / "mlruns").as_uri()


def flat_params(config: dict[str, dict[str, Any]]) -> dict[str, str]:
    """A saved config (``TrainConfig.to_dict()``) as MLflow parameters: ``optim.lr`` -> ``"0.002"``."""
    return {f"{part}.{name}": str(value) for part, values in config.items() for name, value in values.items()}


class MlflowLog:
    """Logs a run to MLflow as its events come (see the module's text). Needs the optional package mlflow (or
    mlflow-skinny); the check happens on construction, before any training starts."""

    def __init__(self, setting: str) -> None:
        try:
            from mlflow.entities import Param
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise UsageError("`mlflow` needs the optional package mlflow: pip install 'ssdcli[mlflow]'") from None
        self._client_class, self._param_class = MlflowClient, Param
        self.setting = setting
        self._client: Any = None
        self.run_id: str | None = None
        self._run_dir: Path | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._start(event.run_dir)
        elif isinstance(event, EpochDone) and self._client is not None:
            for name, value in event.metrics.items():
                if name != "epoch" and math.isfinite(value):
                    self._client.log_metric(self.run_id, name, float(value), step=event.epoch)

    def _start(self, run_dir: Path) -> None:
        self.close()
        uri = tracking_uri(self.setting, run_dir)
        if uri.startswith("file:") or "://" not in uri:
            # MLflow 3 keeps its local folder store only on request; a local folder is what `mlflow` asks for here
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            self._open(run_dir, uri)
        except Exception as error:  # noqa: BLE001 - MLflow raises many kinds (store, network, permissions)
            text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UsageError(f"`mlflow` {uri}: {text}") from None

    def _open(self, run_dir: Path, uri: str) -> None:
        """Start the MLflow run of ``run_dir``, or continue the one of the run it resumes."""
        config = read_json(run_dir / "config.json", "run config")
        client = self._client_class(tracking_uri=uri)
        resumed = config["runtime"].get("resume")
        earlier = Path(resumed).parent / MLFLOW_FILE if resumed else None
        if earlier is not None and earlier.is_file():
            self.run_id = read_json(earlier, "MLflow run file")["run_id"]
            client.update_run(self.run_id, status="RUNNING")
        else:
            experiment = client.get_experiment_by_name(EXPERIMENT)
            experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
            self.run_id = client.create_run(experiment_id, run_name=f"{run_dir.parent.name}/{run_dir.name}").info.run_id
            params = [self._param_class(key, value) for key, value in flat_params(config).items()]
            client.log_batch(self.run_id, params=params)
        write_json(run_dir / MLFLOW_FILE, {"run_id": self.run_id, "tracking_uri": uri})
        self._client, self._run_dir = client, run_dir

    def close(self) -> None:
        """Upload the run's pictures and best checkpoint, and mark the MLflow run finished."""
        if self._client is None or self._run_dir is None:
            return
        for name in ARTIFACTS:
            if (self._run_dir / name).is_file():
                self._client.log_artifact(self.run_id, str(self._run_dir / name))
        self._client.set_terminated(self.run_id, "FINISHED")
        self._client = None

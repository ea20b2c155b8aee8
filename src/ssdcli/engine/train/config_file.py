"""The settings of an earlier run, to start a new one with (``ssd train --config``): a run folder's config.json,
or the config a checkpoint of ``ssd train`` holds (last.pt, best.pt)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ssdcli.config import TrainConfig
from ssdcli.data.files import read_json
from ssdcli.errors import CheckpointError, UsageError, name_parameters

#: Suffixes read as a config file; anything else is read as a checkpoint.
JSON_SUFFIXES = (".json",)


def read_train_config(path: str | Path) -> TrainConfig:
    """The training settings saved in ``path``: a run's ``config.json`` (nested, or the flat form of older runs) or
    a checkpoint written by ``ssd train``. An entry that is no setting, or a value of the wrong type or range, is
    an error naming the file and the entry. The settings are returned as saved, ``resume`` included."""
    path = Path(path)
    if path.suffix.lower() in JSON_SUFFIXES:
        values = read_json(path, "training config")
    else:
        from ssdcli.engine.checkpoint import load_checkpoint

        state = load_checkpoint(path).train_state or {}
        values = state.get("config")
        if values is None:
            raise CheckpointError("holds no training settings (was it exported for inference?)", path)
    if not isinstance(values, dict):
        raise UsageError(f"expected an object of settings, got {type(values).__name__}", path)
    try:
        return TrainConfig.from_dict(values, strict=True)
    except UsageError as error:
        # the entry as the file names it, not as a flag
        raise UsageError(name_parameters(error.message, lambda name: repr(name)), path) from None


def reproduced(config: TrainConfig) -> TrainConfig:
    """The settings of a run read back to start a new run with: the same, except that it resumes nothing."""
    return replace(config, runtime=replace(config.runtime, resume=None))

"""Checkpoints: written atomically, holding everything later commands need (the model's spec: config, classes,
anchors; its weights; the training position)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ssdcli.data.files import write_atomic
from ssdcli.errors import CheckpointError
from ssdcli.models.spec import ModelSpec

CHECKPOINT_FORMAT = "ssdcli-checkpoint"
CHECKPOINT_VERSION = 1
#: Characters of PyTorch's reason kept in the one-line error of a checkpoint that does not fit the run.
REASON_CHARS = 200


def atomic_torch_save(payload: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place (never a half-written file;
    a Ctrl-C meanwhile waits until the file is in place)."""
    return write_atomic(path, lambda stream: torch.save(payload, stream))


@dataclass(frozen=True)
class Checkpoint:
    """The content of a checkpoint file: the model apart from its weights (``spec``), its weights, and where
    training stands."""

    spec: ModelSpec
    model_state: dict[str, Any]
    epoch: int = 0  # epochs fully done
    step_in_epoch: int = 0  # steps done in the next epoch (interrupted runs)
    global_step: int = 0
    best_metric: float | None = None
    train_state: dict[str, Any] | None = None  # optimizer, scheduler, scaler, train config

    def to_payload(self) -> dict[str, Any]:
        """The dict written to the file: ``model_config``, ``class_names``, ``category_ids`` and ``postprocess``
        at the top level (``ModelSpec.to_dict()``), beside the weights and the training position."""
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            **self.spec.to_dict(),
            "model": self.model_state,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "best_metric": self.best_metric,
            "train_state": self.train_state,
        }


def save_checkpoint(checkpoint: Checkpoint, path: str | Path) -> Path:
    return atomic_torch_save(checkpoint.to_payload(), path)


def read_payload(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """What ``torch.load(weights_only=True)`` reads from ``path``; CheckpointError naming the file if it is missing
    or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint not found", path=path)
    try:
        with warnings.catch_warnings(record=True) as caught:  # torch's warnings become this one line
            warnings.simplefilter("always")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many kinds for a corrupt file
        if any("TorchScript" in str(warning.message) for warning in caught):
            raise CheckpointError("a TorchScript file, not a checkpoint written by 'ssd train'", path=path) from None
        # torch's own text is several sentences (and for a foreign pickle suggests loading it unsafely): name the
        # kind of failure only.
        raise CheckpointError(
            f"not a readable checkpoint: corrupt, or not a file written by 'ssd train' ({type(error).__name__})",
            path=path,
        ) from None
    return payload


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint; :class:`CheckpointError` naming the file if it is missing, corrupt or not ours."""
    return checkpoint_from_payload(read_payload(path, map_location), path)


def checkpoint_from_payload(payload: Any, path: str | Path) -> Checkpoint:
    """The checkpoint in a payload read from ``path``; CheckpointError naming the file if it is not ours."""
    path = Path(path)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError("not an ssdcli checkpoint (no 'format: ssdcli-checkpoint' entry)", path=path)
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint version {payload.get('version')} is not supported", path=path)
    spec = _spec_from_payload(payload, path)
    try:
        return Checkpoint(
            spec=spec,
            model_state=payload["model"],
            epoch=int(payload["epoch"]),
            step_in_epoch=int(payload.get("step_in_epoch", 0)),
            global_step=int(payload["global_step"]),
            best_metric=payload.get("best_metric"),
            train_state=payload.get("train_state"),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint is missing or has a bad entry: {error}", path=path) from None


def _spec_from_payload(payload: dict[str, Any], path: Path) -> ModelSpec:
    """The model spec a checkpoint holds (files without ``postprocess``: ssdcli's evaluation settings);
    CheckpointError naming the file when its model config, classes or category ids are missing or disagree."""
    try:
        return ModelSpec.from_dict(payload)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"bad model description (model_config, class_names, category_ids): {error}", path=path
        ) from None


@contextmanager
def restoring(path: str | Path | None) -> Iterator[None]:
    """Saved states of the checkpoint ``path`` loaded into a run's model, optimizer or schedule: PyTorch's errors
    (another architecture, other classes or another anchor layout than the file's spec) as one
    :class:`CheckpointError` line naming ``path``."""
    try:
        yield
    except (RuntimeError, ValueError, KeyError) as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = " ".join(lines[:2])[:REASON_CHARS] or type(error).__name__
        raise CheckpointError(
            f"does not match the run (another architecture, other classes or another anchor layout): {reason}", path
        ) from None

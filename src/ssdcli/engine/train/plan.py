"""What a training run will do, settled before anything is written (:func:`plan_training`): the settings in force
(a resumed run's own), its length, the checkpoint it resumes, the data splits, the class names, the default-box
layout and the model with its starting weights. :func:`ssdcli.engine.train.run.build_run` consumes the plan."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ssdcli.config import TrainConfig
from ssdcli.core.layouts import AnchorLayout
from ssdcli.data.records import BACKGROUND
from ssdcli.data.synth import SYNTH_CLASSES
from ssdcli.engine.checkpoint import Checkpoint
from ssdcli.engine.device import cpu_threads
from ssdcli.engine.events import EventHandler, Message
from ssdcli.engine.train.budget import Patience
from ssdcli.engine.train.finetune import start_from_detector
from ssdcli.engine.train.freeze import freeze
from ssdcli.engine.train.inputs import (
    TrainData,
    check_batch_norm,
    check_options,
    check_split_size,
    fit_anchors,
    is_auto_anchors,
    model_config_for,
    open_data,
    resolve_length,
    resolve_resume,
    resume_ignored,
)
from ssdcli.engine.train.recipe_rule import apply_recipe
from ssdcli.errors import UsageError
from ssdcli.models.build import build_model
from ssdcli.models.ssd import SSD


@dataclass(frozen=True)
class TrainingPlan:
    """A run's inputs, every one checked.

    ``config``: the settings in force (a resumed run's own, the length settled, the architecture of ``weights``);
    ``data`` in it is the path as given (messages name it so). ``train_data``: the verified splits; None when the
    run trains on the synthetic data set, generated into the run folder once it exists. ``layout``: the anchor
    layout of ``anchors`` (a file, or fitted to the training boxes with ``auto``); None: the architecture's or
    the resumed checkpoint's. ``model``: built, with its starting weights (``weights``, ImageNet backbone weights,
    or none for a resumed run, whose weights are restored with the rest of its state); ``frozen``: its stages kept
    as they are. ``notes``: lines for the user once the run has started (the weights taken, the fitted anchors).
    """

    config: TrainConfig
    checkpoint: Checkpoint | None
    length_line: str
    train_data: TrainData | None
    class_names: tuple[str, ...]
    layout: AnchorLayout | None
    model: SSD
    frozen: tuple[torch.nn.Module, ...]
    notes: tuple[str, ...]


def plan_training(
    given: TrainConfig, device: torch.device, processes: int, emit: EventHandler
) -> TrainingPlan | None:
    """Check everything the user gave and settle what the run will do; None: a resumed run with nothing left to
    train. Nothing is written. ``processes``: the number of training processes (each takes a batch per step).

    The process's CPU threads (on a CPU ``device``) and torch's global seed (the model's initial weights) are set
    here, as the run's own, before the model is built."""
    config, checkpoint = resolve_resume(given)
    if checkpoint is not None and _nothing_left(given, config, checkpoint, emit):
        return None
    if config.data.data is None and config.data.val_data is not None:
        raise UsageError("`val_data` needs `data` (the training data it validates)")
    config, length_line = resolve_length(config)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(config.runtime.threads, config.runtime.workers))
    torch.manual_seed(config.runtime.seed)
    layout = check_options(config)
    data = config.data.data
    train_data = open_data(config, data, emit) if data is not None else None
    config, recipe_note = apply_recipe(config, train_data.train) if train_data is not None else (config, None)
    class_names = train_data.train.class_names if train_data is not None else (BACKGROUND, *SYNTH_CLASSES)
    anchors_note = None
    if checkpoint is None and is_auto_anchors(config.model.anchors) and train_data is not None:
        layout, anchors_note = fit_anchors(config, train_data.train)
    weights_note = None
    if checkpoint is None and config.model.weights is not None:
        model, weights_note = start_from_detector(config.model, class_names)
        config = config.updated(arch=model.config.arch)
    else:
        model = build_model(
            model_config_for(config, class_names, layout, checkpoint),
            None if checkpoint else config.model.backbone_weights,
        )
    check_batch_norm(config, model)
    frozen = freeze(model, config.model.freeze)
    if train_data is not None and data is not None:
        check_split_size(config, train_data.train, processes, data)
    notes = tuple(note for note in (recipe_note, weights_note, anchors_note) if note is not None)
    return TrainingPlan(config, checkpoint, length_line, train_data, class_names, layout, model, frozen, notes)


def saved_patience(config: TrainConfig, checkpoint: Checkpoint) -> Patience:
    """The patience count where ``checkpoint`` left it."""
    return Patience(config.optim.patience, int((checkpoint.train_state or {}).get("stale_validations", 0)))


def _nothing_left(given: TrainConfig, config: TrainConfig, checkpoint: Checkpoint, emit: EventHandler) -> bool:
    """What a resume changes said (settings ignored, a schedule rebuilt); True when the resumed run has finished
    (its epochs, or stopped early by ``patience``), said too."""
    ignored = resume_ignored(given, config)
    if ignored:
        emit(Message(f"resuming keeps the run's own settings; ignored: {', '.join(ignored)}", "warning"))
    saved_epochs = TrainConfig.from_dict((checkpoint.train_state or {})["config"]).optim.epochs
    epochs = config.optim.epochs
    if epochs is not None and saved_epochs is not None and epochs != saved_epochs:
        emit(Message(f"the schedule is rebuilt for {epochs} epochs (the run had {saved_epochs})"))
    if epochs is not None and checkpoint.epoch >= epochs and checkpoint.step_in_epoch == 0:
        emit(Message(f"the run has finished its {checkpoint.epoch} epochs; nothing to do (ask for more epochs to "
                     "train on)"))  # fmt: skip
        return True
    if saved_patience(config, checkpoint).exhausted and checkpoint.step_in_epoch == 0:
        emit(Message(f"the run stopped early after epoch {checkpoint.epoch} (`patience` "
                     f"{config.optim.patience}); nothing to do"))  # fmt: skip
        return True
    return False

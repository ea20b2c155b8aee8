"""Frozen configuration dataclasses that the CLI builds and the engine consumes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``ssd train`` needs. ``data=None`` trains on the built-in synthetic set, generated in the run."""

    data: Path | None = None
    data_format: str = "auto"
    train_split: str | None = None  # None: "train" of a data set root, or the split a COCO file holds
    val_split: str | None = None  # None: "val" of a data set root (of val_data if given)
    val_data: Path | None = None  # validation data apart from ``data`` (a COCO file of another split)
    classes: tuple[str, ...] | None = None
    arch: str = "ssd_tiny256"
    anchors: Path | None = None
    backbone_weights: str | None = None
    weights: str | None = None  # a torchvision COCO detector to start from (weights name or state dict file)
    img_size: int | None = None  # must agree with the anchor layout
    epochs: int | None = None  # None with time_budget None: the default budget (engine/train/budget.py)
    time_budget: float | None = None  # seconds of wall clock; the schedule is fitted to the measured speed
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float | None = None  # None: the default of the model and optimizer (engine/train/schedule.py)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_steps: int = 100
    zoom_out: float = 2.0  # largest zoom-out canvas (DESIGN 1.6: 4); 1 turns zoom-out off
    iou_crop: bool = True  # the min-IoU random crop (DESIGN 1.6)
    ema: bool = True  # validate and save an exponential moving average of the weights (engine/train/ema.py)
    ema_decay: float = 0.995
    ema_tau: float = 100.0  # optimizer steps over which the EMA decay ramps up
    workers: int = 2
    threads: int | None = None  # CPU threads of the main process; None: the cores the workers leave free (>= 1)
    device: str = "auto"
    amp: bool = False
    seed: int = 0
    eval_every: int = 1
    out: Path = Path("runs/train")
    resume: Path | None = None
    synth_images: int = 400
    max_steps_per_epoch: int | None = None  # cap for quick runs and tests
    verify_images: bool = True  # decode every image once before the first step (data/verify.py)
    strict: bool = False  # an image that does not decode is an error instead of being left out
    tensorboard: bool = False  # also write TensorBoard event files into the run folder (optional package)

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

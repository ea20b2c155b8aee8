"""The default recipe fitted to the data by one rule: before training, the boxes of the training split choose the
input size of the default model (more resolution when many objects would be too small at its own size, within
what the time budget affords) and whether its default boxes are fitted to the data (``anchors`` "auto") when the
boxes fall outside the range the built-in ones match.

:func:`choose_recipe` is the rule, a pure function of the boxes' statistics (``ssd encode --data``'s measure:
sqrt(area) at the network input), the budget and the settings; :func:`apply_recipe` applies it to the settings
the user left unset. Given settings always win: the rule chooses only ``img_size`` while None and ``anchors``
while None, for the default architecture, and not at all with ``auto_recipe`` off, a detector to fine-tune or a
run to resume. The settings it returns hold the choices that differ from the model's defaults, so a run's
config.json holds them and ``ssd train --config`` reproduces them (settings the file leaves unset are the rule's
again, on the same boxes the same choice).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ssdcli.config import ModelSettings, TrainConfig
from ssdcli.data.records import DatasetIndex
from ssdcli.engine.encode.coverage import gt_set_from_index
from ssdcli.engine.train.budget import format_duration
from ssdcli.engine.train.inputs import AUTO_ANCHORS, is_auto_anchors, open_split, resolve_length
from ssdcli.models.spec import default_layout


@dataclass(frozen=True)
class RecipeRule:
    """The thresholds of :func:`choose_recipe`, the same for every data set.

    Attributes:
        small_px: an object whose sqrt(area) at the input is under this many pixels is small: the first feature
            map (stride 8) sees it in about two cells.
        too_many_small: a larger input when more than this share of the boxes is small at the model's own size.
        enough_small: the input grows (through ``sizes``) until at most this share is small.
        sizes: the larger inputs tried, in order.
        seconds_per_image: training time of one image at the model's own size (ssd_tiny256 on 2 CPU cores:
            BCCD's and Raccoon's 10-minute runs, 0.028-0.031 s); the cost grows with the input's area.
        min_epochs: a larger input is affordable when the time budget still gives at least this many epochs (the
            accuracy suite, docs/results.md: on HardHat 25 epochs at 384 px scored 0.08-0.12 against 0.125 for
            60 epochs at 256 px, so fewer epochs at a larger input did not pay).
        outside_share: fitted default boxes when more than this share of the boxes lies outside the sizes the
            built-in ones match at IoU 0.5.
    """

    small_px: float = 16.0
    too_many_small: float = 0.2
    enough_small: float = 0.1
    sizes: tuple[int, ...] = (320, 384, 448, 512)
    seconds_per_image: float = 0.03
    min_epochs: float = 50.0
    outside_share: float = 0.1


@dataclass(frozen=True)
class BoxStats:
    """The training boxes as the rule reads them.

    Attributes:
        sides: [M] sqrt(w * h) of each training box as a share of its image's side (on an S px input: S * side px).
        images: the training images.
    """

    sides: torch.Tensor
    images: int

    @classmethod
    def of_index(cls, index: DatasetIndex) -> BoxStats:
        """The statistics of a split's annotations (``ssd encode --data``'s ground truth; no image decoded)."""
        return cls(gt_set_from_index(index, str(index.root), index.split).relative_sides(), len(index.records))

    def share_under(self, px: float, image_size: int) -> float:
        """The share of the boxes under ``px`` pixels (sqrt(area)) on an ``image_size`` input."""
        return float((self.sides * image_size < px).double().mean()) if self.sides.numel() else 0.0

    def share_outside(self, low: float, high: float) -> float:
        """The share of the boxes whose side share is under ``low`` or over ``high``."""
        if not self.sides.numel():
            return 0.0
        return float(((self.sides < low) | (self.sides > high)).double().mean())


@dataclass(frozen=True)
class RecipeChoice:
    """What the rule chose, each with its reason; None: not the rule's to choose (given, or another model).
    ``base_size``: the model's own input size (a choice of it changes no setting)."""

    img_size: int | None
    img_size_reason: str
    auto_anchors: bool | None
    anchors_reason: str
    base_size: int | None = None

    @property
    def chose(self) -> bool:
        return self.img_size is not None or self.auto_anchors is not None

    def changes(self) -> dict[str, int | Path]:
        """The settings to update (``TrainConfig.updated``): an input size other than the model's own, and
        ``anchors`` when fitted (the default recipe changes nothing)."""
        changes: dict[str, int | Path] = {}
        if self.img_size is not None and self.img_size != self.base_size:
            changes["img_size"] = self.img_size
        if self.auto_anchors:
            changes["anchors"] = Path(AUTO_ANCHORS)
        return changes

    def line(self) -> str:
        """One line for the run's start, e.g. ``recipe: input 384 px (...); default boxes: built-in (...)``."""
        parts = []
        if self.img_size is not None:
            parts.append(f"input {self.img_size} px ({self.img_size_reason})")
        if self.auto_anchors is not None:
            kind = "fitted to the training boxes (`anchors` auto)" if self.auto_anchors else "built-in"
            parts.append(f"default boxes: {kind} ({self.anchors_reason})")
        return "recipe: " + "; ".join(parts)


def _percent(share: float) -> str:
    return f"{100 * share:.0f} %"


def rule_applies(config: TrainConfig) -> bool:
    """Whether the rule chooses anything: on, for the default architecture trained from scratch, not a resume."""
    model = config.model
    return (
        model.auto_recipe
        and model.arch == ModelSettings.arch
        and model.weights is None
        and config.runtime.resume is None
    )


def affordable_epochs(stats: BoxStats, budget: float, image_size: int, base_size: int, rule: RecipeRule) -> float:
    """Epochs a ``budget`` of seconds buys on an ``image_size`` input: the cost per image grows with its area."""
    per_image = rule.seconds_per_image * (image_size / base_size) ** 2
    return budget / (max(stats.images, 1) * per_image)


def choose_input_size(stats: BoxStats, budget: float | None, base_size: int, rule: RecipeRule) -> tuple[int, str]:
    """The input size and why: ``base_size`` unless more than ``too_many_small`` of the boxes would be small
    there; then the first of ``rule.sizes`` where at most ``enough_small`` are, among those the budget affords
    (None: a number of epochs was given, every size is)."""
    small = stats.share_under(rule.small_px, base_size)
    under = f"{_percent(small)} of training boxes would be under {rule.small_px:g} px at {base_size} px"
    if small <= rule.too_many_small:
        return base_size, under
    larger = [size for size in rule.sizes if size > base_size]
    affordable = [
        size
        for size in larger
        if budget is None or affordable_epochs(stats, budget, size, base_size, rule) >= rule.min_epochs
    ]
    if not affordable:
        if budget is None or not larger:
            return base_size, under
        epochs = affordable_epochs(stats, budget, larger[0], base_size, rule)
        afforded = f"the {format_duration(budget)} budget affords about {epochs:.0f} epochs at {larger[0]} px"
        return base_size, f"{under}, but {afforded}"
    fitting = [size for size in affordable if stats.share_under(rule.small_px, size) <= rule.enough_small]
    size = fitting[0] if fitting else affordable[-1]
    reason = f"{under}, {_percent(stats.share_under(rule.small_px, size))} at {size} px"
    if not fitting and budget is not None and affordable[-1] != larger[-1]:
        epochs = affordable_epochs(stats, budget, size, base_size, rule)
        reason += f"; the {format_duration(budget)} budget affords about {epochs:.0f} epochs there"
    return size, reason


def choose_anchors(stats: BoxStats, arch: str, rule: RecipeRule) -> tuple[bool, str]:
    """Whether to fit the default boxes, and why: when more than ``outside_share`` of the boxes are smaller than
    the smallest built-in box or larger than the largest can match at IoU 0.5 (a square box of side b within one
    of side a has IoU b^2 / a^2, so sides from a / sqrt(2) to a * sqrt(2) match). Shares of the side: the same at
    every input size, whose layout is scaled."""
    layout = default_layout(arch)
    low = layout.sizes[0] / layout.image_size / math.sqrt(2)
    high = layout.sizes[-1] / layout.image_size * math.sqrt(2)
    outside = stats.share_outside(low, high)
    reason = (
        f"{_percent(outside)} of training boxes are outside the {100 * low:.1f}-{100 * min(high, 1.0):.0f} % of the "
        "side the built-in boxes match"
    )
    return outside > rule.outside_share, reason


def choose_recipe(
    stats: BoxStats, budget: float | None, config: TrainConfig, rule: RecipeRule = RecipeRule()
) -> RecipeChoice:
    """The rule: what the boxes of the training split ``stats`` choose for the settings of ``config`` left unset
    (``img_size`` None, unless an anchor layout file fixes it; ``anchors`` None), with a reason each. ``budget``:
    the run's time budget in seconds, None when a number of epochs is given."""
    if not rule_applies(config):
        return RecipeChoice(None, "", None, "")
    model = config.model
    base_size = default_layout(model.arch).image_size
    size, size_reason = None, ""
    if model.img_size is None and (model.anchors is None or is_auto_anchors(model.anchors)):
        size, size_reason = choose_input_size(stats, budget, base_size, rule)
    auto, anchors_reason = None, ""
    if model.anchors is None:
        auto, anchors_reason = choose_anchors(stats, model.arch, rule)
    return RecipeChoice(size, size_reason, auto, anchors_reason, base_size)


def tiling_line(index: DatasetIndex, input_size: int, rule: RecipeRule = RecipeRule()) -> str | None:
    """A line for the run's summary when the data would gain from detection in windows (``--tile``): more than
    ``too_many_small`` of the training boxes are small on the ``input_size`` input, and windows of ``input_size``
    px of the full-size images (no shrinking) would leave at most half as many small. None otherwise."""
    resized, native = [], []  # sqrt(w * h) of each training target on the input, and in its image's own pixels
    for record in index.records:
        wh = record.boxes[~record.ignore, 2:] - record.boxes[~record.ignore, :2]  # [G, 2] pixels
        area = np.clip(wh[:, 0], 0, None) * np.clip(wh[:, 1], 0, None)
        native.append(np.sqrt(area))
        resized.append(np.sqrt(area / (record.width * record.height)) * input_size)
    if not native:
        return None
    on_input, in_windows = np.concatenate(resized), np.maximum(np.concatenate(native), np.concatenate(resized))
    if not on_input.size:
        return None
    small = float((on_input < rule.small_px).mean())
    tiled = float((in_windows < rule.small_px).mean())
    if small <= rule.too_many_small or tiled > small / 2:
        return None
    return (
        f"tiling: {_percent(small)} of training boxes are under {rule.small_px:g} px on the {input_size} px input, "
        f"{_percent(tiled)} in windows of {input_size} px of the full-size images: evaluate and predict with "
        f"`tile` {input_size} (ssd eval, ssd predict)"
    )


def apply_recipe(config: TrainConfig, index: DatasetIndex) -> tuple[TrainConfig, str | None]:
    """``config`` with the rule's choices for the training split ``index`` applied, and the line that says them
    (None when the rule chose nothing)."""
    if not rule_applies(config):
        return config, None
    budget = resolve_length(config)[0].optim.time_budget
    choice = choose_recipe(BoxStats.of_index(index), budget, config)
    if not choice.chose:
        return config, None
    return config.updated(**choice.changes()), choice.line()


def planned_config(config: TrainConfig) -> tuple[TrainConfig, str | None]:
    """The settings a run of ``config`` would use after the rule (``ssd train --print-config``): the training
    split's annotations are read, no image is decoded. Synthetic data (no ``data``) is left as it is."""
    if config.data.data is None or not rule_applies(config):
        return config, None
    settings = config.data
    index = open_split(settings, config.data.data, settings.train_split, settings.classes)
    return apply_recipe(config, index)

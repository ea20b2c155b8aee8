"""The checkpoint file format: one ModelSpec inside, files written before it (no ``postprocess`` entry) still read,
and a model description that does not hold together refused when the file is read, naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from ssdcli.core.postprocess import EVAL_SETTINGS, PostprocessSettings
from ssdcli.engine.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, Checkpoint, load_checkpoint, save_checkpoint
from ssdcli.engine.inference.loading import load_model
from ssdcli.errors import CheckpointError
from ssdcli.models.build import build_model
from ssdcli.models.spec import ModelSpec, default_config

NAMES = ("background", "cat", "dog")
CATEGORY_IDS = (0, 7, 3)


def _old_payload(model_state: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A checkpoint payload as files written before checkpoints held a ModelSpec look: no ``postprocess``."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_config": default_config("ssd_tiny", num_classes=len(NAMES)).to_dict(),
        "class_names": list(NAMES),
        "category_ids": list(CATEGORY_IDS),
        "model": model_state,
        "epoch": 3,
        "step_in_epoch": 0,
        "global_step": 120,
        "best_metric": 0.25,
        "train_state": None,
    }
    return {**payload, **changes}


def test_a_checkpoint_in_the_earlier_format_reads_as_one_spec(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(default_config("ssd_tiny", num_classes=len(NAMES)))
    path = tmp_path / "old.pt"
    torch.save(_old_payload(model.state_dict()), path)
    checkpoint = load_checkpoint(path)
    expected = ModelSpec(default_config("ssd_tiny", num_classes=len(NAMES)), NAMES, CATEGORY_IDS, EVAL_SETTINGS)
    assert checkpoint.spec == expected
    assert (checkpoint.epoch, checkpoint.global_step, checkpoint.best_metric) == (3, 120, 0.25)
    loaded = load_model(path)
    assert loaded.spec == expected and loaded.path == path


def test_written_files_keep_the_earlier_keys_and_read_back_the_same(tmp_path: Path) -> None:
    """A reader of the earlier format finds what it looks for; ``postprocess`` is written beside it."""
    settings = PostprocessSettings(score_threshold=0.05, iou_threshold=0.5, top_k=100, pre_nms_top_k=300)
    spec = ModelSpec(default_config("ssd_tiny", num_classes=len(NAMES)), NAMES, CATEGORY_IDS, settings)
    path = save_checkpoint(Checkpoint(spec, {}, epoch=1, global_step=5), tmp_path / "new.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["model_config"] == spec.config.to_dict()
    assert payload["class_names"] == list(NAMES) and payload["category_ids"] == list(CATEGORY_IDS)
    assert load_checkpoint(path) == Checkpoint(spec, {}, epoch=1, global_step=5)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"class_names": ["background", "cat"], "category_ids": [0, 7]}, "2 class names for a model with 3 classes"),
        ({"category_ids": [0, 7]}, "3 class names but 2 category ids"),
        ({"model_config": {"arch": "ssd_tiny"}}, "missing keys"),
        ({"model_config": "ssd_tiny"}, "expected a mapping"),
        ({"postprocess": {"score": 0.1}}, "score"),
    ],
)
def test_a_model_description_that_does_not_hold_together_is_refused_when_read(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    path = tmp_path / "bad.pt"
    torch.save(_old_payload({}, **changes), path)
    with pytest.raises(CheckpointError, match=message) as caught:
        load_checkpoint(path)
    assert caught.value.path == str(path)


def test_a_missing_model_description_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bare.pt"
    payload = _old_payload({})
    del payload["class_names"]
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="class_names") as caught:
        load_checkpoint(path)
    assert caught.value.path == str(path)

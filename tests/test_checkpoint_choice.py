"""How ``best.pt`` is chosen when validation has few objects of a class: the class's AP then swings by chance (one
object found or missed), so the choice uses the classes with at least ``MIN_VALIDATION_OBJECTS`` objects, and the
run says so before it starts."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest

from ssdcli.config import MIN_VALIDATION_OBJECTS
from ssdcli.core.detections import Detections
from ssdcli.data.dataset import open_index
from ssdcli.data.synth import write_synth
from ssdcli.engine.train.checkpoints import CheckpointPolicy
from ssdcli.engine.train.inputs import few_objects_note, validation_notes
from ssdcli.metrics.voc import VocImageGT, voc_evaluate


def _one_box(image_id: str, name: str) -> tuple[str, VocImageGT]:
    return image_id, VocImageGT(np.array([[10.0, 10.0, 50.0, 50.0]]), (name,))


def test_a_class_with_few_objects_does_not_choose_the_checkpoint() -> None:
    # "many": 12 objects, each found exactly (AP 1 by the devkit's rules); "few": 1 object, missed (AP 0).
    ground_truth = dict(_one_box(f"m{i}", "many") for i in range(12))
    ground_truth.update([_one_box("f0", "few")])
    found = [
        Detections(np.array([[10.0, 10.0, 50.0, 50.0]]), np.array([0.9]), np.array([1]), image_id=f"m{i}")
        for i in range(12)
    ]
    result = voc_evaluate(ground_truth, found, ["many", "few"])
    assert result.ap_by_class() == pytest.approx({"many": 1.0, "few": 0.0})
    assert result.mean_ap == pytest.approx(0.5)  # what the run reports
    assert result.mean_ap_of_classes_with(MIN_VALIDATION_OBJECTS) == pytest.approx(1.0)  # what chooses best.pt
    # No class with enough objects: the mean over every class, as before.
    assert result.mean_ap_of_classes_with(13) == pytest.approx(0.5)


def _policy(best: float | None) -> CheckpointPolicy:
    run = SimpleNamespace(val_index=object(), best=best)
    return CheckpointPolicy(cast(Any, run), lambda event: None)


def test_best_pt_follows_the_selection_figure_not_the_mean() -> None:
    policy = _policy(best=0.6)
    # The mean rose (a one-object class found by chance) while the measured classes fell: not a new best.
    assert not policy.improved({"map50": 0.8, "select_map50": 0.5})
    assert policy.improved({"map50": 0.4, "select_map50": 0.7}) and policy.run.best == 0.7
    assert not policy.improved({"map50": 0.9, "select_map50": float("nan")})


def _counts_from_xml(root: Path, split: str) -> Counter[str]:
    """Objects per class of a VOC split, read from the XML files directly (difficult ones left out)."""
    counts: Counter[str] = Counter()
    for image_id in (root / "ImageSets" / "Main" / f"{split}.txt").read_text().split():
        for obj in ET.parse(root / "Annotations" / f"{image_id}.xml").getroot().iter("object"):
            if obj.findtext("difficult", "0").strip() != "1":
                counts[obj.findtext("name", "").strip()] += 1
    return counts


def test_the_run_names_the_classes_validation_cannot_measure(tmp_path: Path) -> None:
    root = tmp_path / "voc"
    write_synth(root, format="voc", images=40, seed=0, image_size=160)
    index = open_index(root, "val")
    counts = _counts_from_xml(root, "val")
    least = sorted(counts.values())[len(counts) // 2]  # a threshold that some classes meet and some do not
    few = {name: n for name, n in counts.items() if n < least}
    kept = [name for name in index.class_names[1:] if name not in few]
    assert few and kept
    (note,) = few_objects_note(index, least)
    for name, count in few.items():
        assert f"{name} {count}" in note
    assert f"chosen by the mAP of {', '.join(kept)}" in note
    # Every class under the threshold: the note says the choice follows chance.
    (note,) = few_objects_note(index, max(counts.values()) + 1)
    assert "best.pt may follow that chance" in note
    # Every class at or above it: nothing to say.
    assert few_objects_note(index, min(counts.values())) == []


@pytest.mark.skipif(not Path("../shared/data/roadsign/RoadSign").is_dir(), reason="needs ../shared/data")
def test_road_sign_validation_split_is_named_too_small() -> None:
    root = Path("../shared/data/roadsign/RoadSign")
    counts = _counts_from_xml(root, "val")
    (note,) = validation_notes(open_index(root, "val", check_images=False))
    for name, count in counts.items():
        assert (f"{name} {count}" in note) == (count < MIN_VALIDATION_OBJECTS)

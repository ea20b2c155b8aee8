"""The synthetic data set: determinism, annotation correctness, the task's constraints, both layouts, output safety."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from ssdcli.data import synth
from ssdcli.data.formats.coco import load_coco
from ssdcli.data.formats.voc import load_voc
from ssdcli.data.synth import SYNTH_CLASSES, render_scene, split_assignment, write_synth
from ssdcli.errors import UsageError

SIZE = 160


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_files(tmp_path: Path) -> None:
    first = _files(write_synth(tmp_path / "a", "voc", images=12, seed=5).root)
    second = _files(write_synth(tmp_path / "b", "voc", images=12, seed=5).root)
    other = _files(write_synth(tmp_path / "c", "voc", images=12, seed=6).root)
    assert len(first) == 12 * 2 + 4
    assert first == second
    assert first["JPEGImages/000000.jpg"] != other["JPEGImages/000000.jpg"]
    coco_a = _files(write_synth(tmp_path / "d", "coco", images=12, seed=5).root)
    coco_b = _files(write_synth(tmp_path / "e", "coco", images=12, seed=5).root)
    assert coco_a == coco_b


@pytest.mark.parametrize("seed", range(40))
def test_drawn_pixels_lie_in_the_boxes(seed: int) -> None:
    scene = render_scene([3, seed], SIZE)
    changed = (scene.image != scene.background).any(axis=2)  # [H, W]
    ys, xs = np.nonzero(changed)
    inside = np.zeros(len(xs), dtype=bool)
    for x1, y1, x2, y2 in scene.boxes:
        # Pixel (x, y) covers [x, x + 1] x [y, y + 1]; 0-based continuous boxes.
        inside |= (xs >= x1) & (xs + 1 <= x2) & (ys >= y1) & (ys + 1 <= y2)
    assert inside.all(), f"{(~inside).sum()} changed pixels outside every box"
    # Each box is tight: the changed pixels inside it reach each of its sides (within 1 px).
    for k, (x1, y1, x2, y2) in enumerate(scene.boxes.astype(int)):
        later = scene.boxes[k + 1 :]
        if len(later) and (
            (later[:, 0] < x2) & (later[:, 2] > x1) & (later[:, 1] < y2) & (later[:, 3] > y1)
        ).any():
            continue  # partly covered by a later shape
        sub = changed[y1:y2, x1:x2]
        rows, cols = np.nonzero(sub)
        assert rows.min() <= 1 and cols.min() <= 1
        assert rows.max() >= sub.shape[0] - 2 and cols.max() >= sub.shape[1] - 2


def test_scene_constraints() -> None:
    counts, sides, labels = [], [], []
    for seed in range(150):
        scene = render_scene([11, seed], SIZE)
        counts.append(len(scene.labels))
        boxes = scene.boxes
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= SIZE).all()
        sides += list(np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])) / SIZE)
        labels += scene.labels.tolist()
    assert min(counts) >= 1 and max(counts) <= 4 and len(set(counts)) == 4
    assert 0.1 < min(sides) and max(sides) < 0.6
    assert set(labels) == {1, 2, 3}


def test_colour_does_not_tell_the_class() -> None:
    """Object colours come from one distribution for every class: the class means are close, the spread wide."""
    colours: dict[int, list[np.ndarray]] = {1: [], 2: [], 3: []}
    for seed in range(200):
        scene = render_scene([21, seed], SIZE)
        for k, ((x1, y1, x2, y2), label) in enumerate(zip(scene.boxes, scene.labels)):
            cx, cy = int((x1 + x2) / 2), int((y1 + y2) / 2)
            later = scene.boxes[k + 1 :]
            near_x = (later[:, 0] <= cx + 2) & (later[:, 2] >= cx - 1)
            if (near_x & (later[:, 1] <= cy + 2) & (later[:, 3] >= cy - 1)).any():
                continue  # the centre may be covered by a shape drawn later
            colours[int(label)].append(scene.image[cy - 1 : cy + 2, cx - 1 : cx + 2].reshape(-1, 3).mean(axis=0))
    means = {k: np.mean(v, axis=0) for k, v in colours.items()}
    for k, values in colours.items():
        assert len(values) > 100
        assert np.std(values, axis=0).min() > 55, k  # uniform 0..255 has 74
    for a in means:
        for b in means:
            assert np.abs(means[a] - means[b]).max() < 40  # about 5 standard errors


def test_both_layouts_hold_the_rendered_boxes(tmp_path: Path) -> None:
    images, seed = 20, 4
    voc = write_synth(tmp_path / "voc", "voc", images=images, seed=seed)
    coco = write_synth(tmp_path / "coco", "coco", images=images, seed=seed)
    splits = split_assignment(images, seed)
    assert sorted(sum(splits.values(), [])) == list(range(images))
    assert voc.split_sizes == {"train": 14, "val": 3, "test": 3, "trainval": 17}
    assert coco.split_sizes == {"train": 14, "val": 3, "test": 3}
    for split in ("train", "val", "test"):
        from_voc = load_voc(voc.root, split)
        from_coco = load_coco(coco.root / "annotations" / f"instances_{split}.json", coco.root / split)
        assert from_voc.class_names == from_coco.class_names == ("background", *SYNTH_CLASSES)
        assert from_coco.category_ids == (0, 1, 2, 3)
        assert from_voc.warnings.total == from_coco.warnings.total == 0
        for i, a, b in zip(splits[split], from_voc.records, from_coco.records):
            scene = render_scene([seed, i], SIZE)
            assert a.source_id == f"{i:06d}" and b.source_id == i + 1
            np.testing.assert_array_equal(a.boxes, scene.boxes)
            np.testing.assert_array_equal(b.boxes, scene.boxes)
            assert a.labels.tolist() == b.labels.tolist() == scene.labels.tolist()
            assert (a.width, a.height) == (b.width, b.height) == (SIZE, SIZE)
    trainval = load_voc(voc.root, "trainval")
    assert sorted(r.source_id for r in trainval.records) == sorted(f"{i:06d}" for i in splits["train"] + splits["val"])


def test_three_hundred_images_take_seconds(tmp_path: Path) -> None:
    start = time.perf_counter()
    result = write_synth(tmp_path / "big", "voc", images=300, seed=0)
    elapsed = time.perf_counter() - start
    assert result.images == 300 and result.objects > 300
    assert elapsed < 20, f"{elapsed:.1f} s"


def test_never_writes_into_a_non_empty_folder(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep")
    with pytest.raises(UsageError) as caught:
        write_synth(taken, images=5)
    assert caught.value.path == str(taken)
    assert [p.name for p in taken.iterdir()] == ["mine.txt"] and (taken / "mine.txt").read_text() == "keep"
    blocker = tmp_path / "file"
    blocker.write_text("keep")
    with pytest.raises(UsageError):
        write_synth(blocker, images=5)
    assert blocker.read_text() == "keep"
    empty = tmp_path / "empty"
    empty.mkdir()
    write_synth(empty, images=5)
    assert (empty / "ImageSets" / "Main" / "test.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file", "taken"]  # no staging folder left


@pytest.mark.parametrize(
    ("kwargs", "words"), [({"images": 2}, "at least 3"), ({"format": "yolo"}, "yolo"), ({"image_size": 8}, "32")]
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, words: str) -> None:
    with pytest.raises(UsageError) as caught:
        write_synth(tmp_path / "out", **kwargs)
    assert words in caught.value.message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("existing", [False, True])
def test_interrupted_synth_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bool) -> None:
    out = tmp_path / "new" / "shapes"
    if existing:
        out.mkdir(parents=True)
    encode = synth._encode_jpeg
    calls = []

    def interrupted(image: np.ndarray, path: Path) -> None:
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C after two images were written
        encode(image, path)

    monkeypatch.setattr(synth, "_encode_jpeg", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_synth(out, images=6)
    assert len(calls) == 3
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left == (["new", "new/shapes"] if existing else [])

"""The engine of ``ssd encode``: the per-GT report against the core engine and torchvision, the picture, data-set
statistics with answers known by construction, and the anchor suggestion."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchvision.ops import box_convert, box_iou

import ssdcli
from ssdcli.config import ModelSettings
from ssdcli.core.layouts import AnchorLayout, get_layout
from ssdcli.data.formats.coco import load_coco
from ssdcli.engine.checkpoint import Checkpoint, save_checkpoint
from ssdcli.engine.encode import (
    NamedLayout,
    best_iou_nearest_cells,
    coverage_of,
    dataset_coverage,
    draw_image_report,
    encode_image_file,
    gt_best_iou,
    gt_set_from_index,
    resolve_layout,
    save_png,
    suggest_layout,
    write_layout,
)
from ssdcli.engine.encode import coverage as coverage_module
from ssdcli.engine.encode.layouts import load_layout_file
from ssdcli.errors import CheckpointError, DataError, UsageError
from ssdcli.models.spec import ModelConfig, ModelSpec
from ssdcli.viz.colours import FLAGGED, bgr, class_colour

BCCD = Path(__file__).resolve().parents[2] / "shared" / "data" / "bccd" / "BCCD"

WIDTH, HEIGHT = 400, 300
# (name, VOC xmin, ymin, xmax, ymax (1-based inclusive), difficult). 0-based continuous: (xmin - 1, ymin - 1, xmax, ymax).
OBJECTS = [
    ("cat", 11, 21, 130, 140, False),  # 120 x 120 px
    ("dog", 201, 51, 380, 120, False),  # 180 x 70 px, wide
    ("bird", 301, 201, 310, 210, False),  # 10 x 10 px: no default box above 0.5
    ("cat", 151, 161, 260, 290, True),  # difficult: shown, not matched
]


def write_image(path: Path, width: int = WIDTH, height: int = HEIGHT) -> Path:
    rng = np.random.default_rng(0)
    assert cv2.imwrite(str(path), rng.integers(60, 120, size=(height, width, 3), dtype=np.uint8))
    return path


def write_voc_xml(path: Path, objects=OBJECTS, width: int = WIDTH, height: int = HEIGHT, filename: str = "a.png") -> Path:
    parts = [f"<annotation><filename>{filename}</filename><size><width>{width}</width><height>{height}</height></size>"]
    for name, x1, y1, x2, y2, difficult in objects:
        parts.append(
            f"<object><name>{name}</name><difficult>{int(difficult)}</difficult><bndbox><xmin>{x1}</xmin>"
            f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        )
    path.write_text("".join(parts) + "</annotation>")
    return path


def write_coco_json(path: Path, file_name: str = "a.png", image_id: int = 7) -> Path:
    names = sorted({o[0] for o in OBJECTS})
    annotations = [
        {
            "id": n + 1,
            "image_id": image_id,
            "category_id": 10 + names.index(name),
            "bbox": [x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1],
            "iscrowd": int(flag),
            "area": 1.0,
        }
        for n, (name, x1, y1, x2, y2, flag) in enumerate(OBJECTS)
    ]
    data = {
        "images": [{"id": 3, "file_name": "other.png", "width": 10, "height": 10},
                   {"id": image_id, "file_name": file_name, "width": WIDTH, "height": HEIGHT}],
        "annotations": annotations,
        "categories": [{"id": 10 + k, "name": name} for k, name in enumerate(names)],
    }
    path.write_text(json.dumps(data))
    return path


def gt_pixels() -> torch.Tensor:
    """[G, 4] float64 xyxy 0-based pixels of OBJECTS."""
    return torch.tensor([[x1 - 1, y1 - 1, x2, y2] for _, x1, y1, x2, y2, _ in OBJECTS], dtype=torch.float64)


@pytest.fixture()
def voc_image(tmp_path: Path) -> tuple[Path, Path]:
    return write_image(tmp_path / "a.png"), write_voc_xml(tmp_path / "a.xml")


SSD300 = NamedLayout("ssd300", get_layout("ssd300"))


@pytest.mark.parametrize("best_anchor", [True, False])
def test_image_report_equals_core_engine_and_torchvision(voc_image: tuple[Path, Path], best_anchor: bool) -> None:
    image, xml = voc_image
    report = encode_image_file(image, xml, SSD300, threshold=0.5, best_anchor=best_anchor)
    layout = SSD300.layout
    anchors = ssdcli.default_boxes("ssd300")  # [A, 4] cxcywh
    anchors_xyxy = box_convert(anchors.double(), "cxcywh", "xyxy")
    scale = torch.tensor([WIDTH, HEIGHT, WIDTH, HEIGHT], dtype=torch.float64)
    boxes = (gt_pixels() / scale).float()  # [G, 4] normalised by the original size
    iou = box_iou(boxes.double(), anchors_xyxy)  # [G, A], torchvision
    classes = torch.tensor([1, 2, 3, -1])  # the difficult GT goes in as padding
    matched = ssdcli.match(boxes[None], classes[None], anchors, 0.5, best_anchor)
    targets = ssdcli.encode(boxes[None], classes[None], anchors, 0.5, best_anchor)
    layer_of = layout.layer_index()

    assert [gt.class_name for gt in report.gts] == [o[0] for o in OBJECTS]
    assert [gt.flag for gt in report.gts] == ["", "", "", "difficult"]
    assert report.positives == int((targets.labels > 0).sum())
    assert report.negatives == 8732 - report.positives
    for g, gt in enumerate(report.gts):
        assert gt.box_xyxy == tuple(gt_pixels()[g].tolist())
        assert gt.best_iou == pytest.approx(float(iou[g].max()), abs=1e-6)
        assert gt.above_threshold == (float(iou[g].max()) > 0.5)
        mine = matched.gt_index[0] == g
        assert gt.matches_per_layer == tuple(torch.bincount(layer_of[mine], minlength=6).tolist())
        if gt.flag:
            assert gt.num_matches == 0 and gt.best_match is None and gt.offsets is None
            continue
        assert gt.num_matches > 0 or not best_anchor
        if gt.num_matches == 0:
            assert gt.best_match is None and gt.offsets is None
            continue
        candidates = torch.nonzero(mine).flatten()
        best = int(candidates[iou[g, candidates].argmax()])
        assert gt.best_match.anchor == best
        assert gt.best_match.iou == pytest.approx(float(iou[g, best]), abs=1e-6)
        # The offsets: the core engine's, and the formula of DESIGN.md 1.3.4 by hand.
        torch.testing.assert_close(torch.tensor(gt.offsets), targets.offsets[0, best], rtol=0, atol=1e-6)
        d = anchors[best].double()
        x1, y1, x2, y2 = (gt_pixels()[g] / scale).tolist()
        by_hand = [
            ((x1 + x2) / 2 - d[0]) / d[2] / 0.1,
            ((y1 + y2) / 2 - d[1]) / d[3] / 0.1,
            math.log((x2 - x1) / d[2]) / 0.2,
            math.log((y2 - y1) / d[3]) / 0.2,
        ]
        assert gt.offsets == pytest.approx([float(v) for v in by_hand], abs=1e-4)
        # Where the best match sits: layer, row, column, box within the cell, and its box in image pixels.
        m = gt.best_match
        start = sum(layout.anchors_per_layer[: m.layer])
        f, k = layout.feature_maps[m.layer], layout.boxes_per_cell[m.layer]
        assert start + (m.row * f + m.col) * k + m.box == best
        assert m.box_xyxy == pytest.approx((anchors_xyxy[best] * scale).tolist(), abs=1e-3)
    # The 10 x 10 px bird (6.7 x 10 px at the 300 px input): smallest default box 21 x 21 px -> IoU < 0.5.
    assert report.below_threshold == 1 and not report.gts[2].above_threshold
    assert report.unmatched == (0 if best_anchor else 1)
    assert report.gts[2].num_matches == (1 if best_anchor else 0)
    assert report.gts[0].size_wh == (120.0, 120.0)
    assert report.gts[0].input_size_wh == pytest.approx((90.0, 120.0))
    assert report.gts[0].size_bucket == "64-128"  # sqrt(90 * 120) = 103.9


def test_coco_json_gives_the_same_report(voc_image: tuple[Path, Path], tmp_path: Path) -> None:
    image, xml = voc_image
    coco = write_coco_json(tmp_path / "instances.json")
    from_voc = encode_image_file(image, xml, SSD300)
    by_id = encode_image_file(image, coco, SSD300, image_id=7)
    by_name = encode_image_file(image, coco, SSD300)  # found by file name
    for report in (by_id, by_name):
        assert [gt.flag for gt in report.gts] == ["", "", "", "crowd"]
        assert [gt.box_xyxy for gt in report.gts] == [gt.box_xyxy for gt in from_voc.gts]
        assert [gt.matches_per_layer for gt in report.gts] == [gt.matches_per_layer for gt in from_voc.gts]
        assert [gt.offsets for gt in report.gts] == [gt.offsets for gt in from_voc.gts]
        assert report.positives == from_voc.positives


def test_coco_boxes_are_the_ones_training_reads(voc_image: tuple[Path, Path], tmp_path: Path) -> None:
    """`ssd encode` and the training index read one COCO file the same way: a box reaching outside the image is
    clipped alike, a zero-width box is what training drops (encode shows it flagged), and a malformed annotation
    of another image is refused by both."""
    image, _ = voc_image
    coco = write_coco_json(tmp_path / "instances.json")
    data = json.loads(coco.read_text())
    data["annotations"][0]["bbox"] = [-20.0, 5.0, 60.0, 40.0]  # reaches past the left edge
    data["annotations"][1]["bbox"] = [30.0, 30.0, 0.0, 25.0]  # no width
    coco.write_text(json.dumps(data))
    report = encode_image_file(image, coco, SSD300, image_id=7)
    index = load_coco(coco, image.parent, check_images=False)
    record = next(r for r in index.records if r.source_id == 7)
    shown = [gt for gt in report.gts if gt.flag != "empty"]
    assert [gt.flag for gt in report.gts].count("empty") == 1
    np.testing.assert_allclose([gt.box_xyxy for gt in shown], record.boxes, atol=1e-4)
    assert [gt.flag == "crowd" for gt in shown] == record.ignore.tolist()
    data["annotations"].append({"id": 99, "image_id": 3, "category_id": 10, "bbox": [1, 2, -3, 4]})
    coco.write_text(json.dumps(data))
    for read in (lambda: encode_image_file(image, coco, SSD300, image_id=7), lambda: load_coco(coco, image.parent)):
        with pytest.raises(DataError, match=r"annotations\[4\]: box with negative width"):
            read()


def test_default_annotation_in_voc_layout(tmp_path: Path) -> None:
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "Annotations").mkdir()
    image = write_image(tmp_path / "JPEGImages" / "x1.png")
    write_voc_xml(tmp_path / "Annotations" / "x1.xml")
    assert len(encode_image_file(image, None, SSD300).gts) == 4


def test_boxes_outside_the_image_are_clipped_and_noted(tmp_path: Path) -> None:
    image = write_image(tmp_path / "a.png")
    xml = write_voc_xml(tmp_path / "a.xml", [("cat", 351, 201, 450, 330, False), ("cat", 500, 10, 520, 30, False)])
    report = encode_image_file(image, xml, SSD300)
    assert report.gts[0].box_xyxy == (350.0, 200.0, 400.0, 300.0)
    assert report.gts[1].flag == "empty" and report.gts[1].num_matches == 0
    assert any("clipped" in n for n in report.notes) and any("no area" in n for n in report.notes)


@pytest.mark.parametrize(
    "case",
    ["missing image", "corrupt image", "missing xml", "malformed xml", "malformed json", "unknown id", "bad suffix"],
)
def test_bad_input_is_a_data_error_naming_the_file(tmp_path: Path, case: str) -> None:
    image = write_image(tmp_path / "a.png")
    xml = write_voc_xml(tmp_path / "a.xml")
    annotation, image_id, named = xml, None, None
    if case == "missing image":
        image = named = tmp_path / "none.png"
    elif case == "corrupt image":
        image = named = tmp_path / "bad.jpg"
        image.write_bytes(b"\xff\xd8\xff garbage")
    elif case == "missing xml":
        annotation = named = tmp_path / "none.xml"
    elif case == "malformed xml":
        annotation = named = tmp_path / "b.xml"
        annotation.write_text("<annotation><object>")
    elif case == "malformed json":
        annotation = named = tmp_path / "b.json"
        annotation.write_text("{not json")
    elif case == "unknown id":
        annotation = named = write_coco_json(tmp_path / "c.json")
        image_id = 999
    elif case == "bad suffix":
        annotation = named = tmp_path / "b.txt"
        annotation.write_text("x")
    with pytest.raises(DataError) as caught:
        encode_image_file(image, annotation, SSD300, image_id=image_id)
    assert caught.value.path == str(named)


def test_layouts_from_names_files_and_checkpoints(tmp_path: Path) -> None:
    assert resolve_layout().layout == resolve_layout(ModelSettings.arch).layout  # what `ssd train` trains by default
    assert resolve_layout().layout != get_layout("ssd300")
    assert resolve_layout("ssd512").layout == get_layout("ssd512")
    assert resolve_layout("ssdlite320_mobilenet_v3_large").layout == get_layout("ssdlite320")
    assert resolve_layout("ssd_tiny").layout.image_size == 160
    custom = replace(get_layout("ssd300"), sizes=(20, 40, 90, 150, 200, 260, 310))
    path = tmp_path / "layout.json"
    path.write_text(json.dumps(custom.to_dict()))
    assert resolve_layout(anchors=path).layout == custom
    checkpoint = tmp_path / "model.pt"
    config = ModelConfig(arch="ssd300_vgg16", num_classes=3, layout=custom)
    saved = Checkpoint(ModelSpec(config, ("background", "a", "b"), (0, 1, 2)), {})
    save_checkpoint(saved, checkpoint)
    assert resolve_layout(checkpoint=checkpoint).layout == custom
    with pytest.raises(UsageError, match="did you mean 'ssd300'"):
        resolve_layout("ssd30")
    with pytest.raises(UsageError, match="only one"):
        resolve_layout("ssd300", anchors=path)
    not_layout = tmp_path / "other.json"
    not_layout.write_text(json.dumps({"image_size": 300}))
    with pytest.raises(DataError) as caught:
        resolve_layout(anchors=not_layout)
    assert caught.value.path == str(not_layout)
    torch.save({**saved.to_payload(), "model_config": {"arch": "ssd300_vgg16"}}, checkpoint)
    with pytest.raises(CheckpointError, match="model config") as caught:
        resolve_layout(checkpoint=checkpoint)
    assert caught.value.path == str(checkpoint)


def test_picture_has_the_expected_size_and_class_colours_on_the_gt_edges(voc_image: tuple[Path, Path], tmp_path: Path) -> None:
    image, xml = voc_image
    report = encode_image_file(image, xml, SSD300)
    figure = draw_image_report(report, cv2.imread(str(image)))
    path = save_png(tmp_path / "out.png", figure.image)
    picture = cv2.imread(str(path))
    # 7 panels (GTs + 6 feature maps) of 400 x 300 (longer side 400), 4 per row, 8 px gaps, 26 px titles, 34 px header.
    assert picture.shape == (34 + 8 + 2 * (26 + 300 + 8), 8 + 4 * (400 + 8), 3)
    assert len(figure.panels) == 7
    x0, y0 = 8, 34 + 8 + 26  # first panel (the GTs): image scale 1.0 here
    assert (figure.panels[0].x, figure.panels[0].y, figure.panels[0].width, figure.panels[0].height) == (x0, y0, 400, 300)
    second = figure.panels[5]  # second row, second column
    assert (second.x, second.y) == (8 + 408, y0 + 300 + 8 + 26)
    for gt, (x1, y1, x2, y2) in zip(report.gts, gt_pixels().round().int().tolist()):
        colour = bgr(FLAGGED if gt.flag else class_colour(gt.class_name))
        # The GT panel, and the panels of the feature maps where the GT has matches (GTs are drawn on top).
        panels = [figure.panels[0]] + [figure.panels[1 + k] for k, n in enumerate(gt.matches_per_layer) if n]
        assert len(panels) > 1 or gt.flag
        for panel in panels:
            ym = (y1 + y2) // 2
            for x, y in ((x1, ym), (x2, ym), ((x1 + x2) // 2, y2)):  # left, right and bottom edge midpoints
                assert tuple(picture[panel.y + y, panel.x + x]) == colour, (gt.index, x, y)


def test_picture_must_be_png(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        save_png(tmp_path / "x.jpg", np.zeros((4, 4, 3), np.uint8))


# --------------------------------------------------------------------------------------------------- data sets


@dataclass(frozen=True)
class FakeRecord:
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray


@dataclass(frozen=True)
class FakeIndex:
    class_names: tuple[str, ...]
    records: tuple[FakeRecord, ...]


def fake_index(per_image: list[list[tuple[float, float, float, float, int, bool]]], size: tuple[int, int] = (300, 300)) -> FakeIndex:
    """Records from (x1, y1, x2, y2, label, ignore) pixel boxes; classes a, b."""
    records = []
    for objects in per_image:
        array = np.array([o[:4] for o in objects], dtype=np.float32).reshape(-1, 4)
        labels = np.array([o[4] for o in objects], dtype=np.int64)
        ignore = np.array([o[5] for o in objects], dtype=bool)
        records.append(FakeRecord(size[0], size[1], array, labels, ignore))
    return FakeIndex(("background", "a", "b"), tuple(records))


def centred_boxes(side: float, step: float, cells: list[tuple[int, int]], label: int) -> list:
    """Boxes of ``side`` px centred on the cell centres ((j + 0.5) * step, (i + 0.5) * step) of a feature map."""
    out = []
    for i, j in cells:
        cx, cy = (j + 0.5) * step, (i + 0.5) * step
        out.append((cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2, label, False))
    return out


def test_tiny_boxes_have_no_default_box_above_half(tmp_path: Path) -> None:
    # 10 x 10 px boxes on the 38 x 38 map's centres: inside SSD300's smallest default boxes (21 x 21 px and the
    # 2:1, 1:2 boxes of area 441 px^2), so the best IoU is 100 / 441 < 0.5 for every one of them.
    images = [centred_boxes(10, 8, [(3, 3), (10, 20), (30, 5)], 1), centred_boxes(10, 8, [(20, 20)], 2), []]
    gts = gt_set_from_index(fake_index(images))
    report = dataset_coverage(gts, SSD300, threshold=0.5)
    assert report.images == 3 and report.gts == 4
    assert report.below_threshold == 4 and report.coverage == 0.0
    assert report.mean_best_iou == pytest.approx(100 / 441, abs=1e-5)
    assert {g.name: (g.gts, g.below_threshold) for g in report.by_size}["<16"] == (4, 4)
    assert [(g.name, g.gts, g.below_threshold) for g in report.by_class] == [("a", 3, 3), ("b", 1, 1)]
    assert report.unmatched == 0  # the best-anchor rule still gives each its best default box
    assert (report.positives_min, report.positives_max) == (0, 3)
    assert report.positives_mean == pytest.approx(4 / 3)
    assert report.layers[0].best_layer_gts == 4
    assert report.iou_histogram[2] == 4  # 0.227 falls in [0.2, 0.3)
    reference = dataset_coverage(gts, SSD300, threshold=0.5, best_anchor=False)
    assert reference.unmatched == 4 and reference.positives_max == 0


def test_boxes_equal_to_default_boxes_are_all_covered() -> None:
    # 45 x 45 px squares centred on the 19 x 19 map's cells (step 16): equal to that map's first default box.
    images = [centred_boxes(45, 16, [(2, 3), (9, 9)], 1), centred_boxes(45, 16, [(15, 0)], 2)]
    gts = gt_set_from_index(fake_index(images))
    report = dataset_coverage(gts, SSD300, threshold=0.5)
    assert report.below_threshold == 0 and report.coverage == 1.0
    assert report.mean_best_iou == pytest.approx(1.0, abs=1e-6)
    assert [g.gts for g in report.by_size] == [0, 0, 3, 0, 0, 0]  # sqrt(45 * 45) = 45: the 32-64 bucket
    assert report.layers[1].best_layer_gts == 3
    assert report.iou_histogram[9] == 3


def test_ignored_gts_are_left_out_and_boxes_normalised_by_each_image_size() -> None:
    # A 600 x 300 image: a 90 x 45 px box becomes 45 x 45 px at the 300 x 300 input (equal to a default box).
    # Cell (2, 2) of the 19 x 19 map (step 16): centre (40, 40) px at the input, (80, 40) px in the image.
    index = fake_index([[(35, 17.5, 125, 62.5, 1, False), (0, 0, 50, 50, 2, True)]], (600, 300))
    gts = gt_set_from_index(index)
    torch.testing.assert_close(gts.boxes[0, 0], torch.tensor([35 / 600, 17.5 / 300, 125 / 600, 62.5 / 300]))
    report = dataset_coverage(gts, SSD300)
    assert (report.gts, report.ignored) == (1, 1)
    assert report.mean_best_iou == pytest.approx(1.0, abs=1e-6)
    assert [g.gts for g in report.by_class] == [1, 0]


def random_index(seed: int, images: int = 23) -> FakeIndex:
    rng = np.random.default_rng(seed)
    per_image = []
    for _ in range(images):
        objects = []
        for _ in range(int(rng.integers(0, 9))):
            w, h = rng.uniform(4, 250, size=2)
            x, y = rng.uniform(0, 480 - w), rng.uniform(0, 360 - h)
            objects.append((x, y, x + w, y + h, int(rng.integers(1, 3)), bool(rng.random() < 0.1)))
        per_image.append(objects)
    return fake_index(per_image, (480, 360))


def test_batched_statistics_equal_a_per_image_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coverage_module, "CHUNK_IMAGES", 4)
    index = random_index(1)
    gts = gt_set_from_index(index)
    report = dataset_coverage(gts, SSD300, threshold=0.5)
    anchors = ssdcli.default_boxes("ssd300")
    layer_of = SSD300.layout.layer_index()
    positives, per_layer, best, matched = [], torch.zeros(6, dtype=torch.int64), [], []
    for record in index.records:  # the reference: one image at a time, torchvision IoU
        keep = ~record.ignore
        boxes = torch.from_numpy(record.boxes[keep]) / torch.tensor([480, 360, 480, 360])
        labels = torch.from_numpy(record.labels[keep])
        result = ssdcli.match(boxes[None], labels[None], anchors)
        positives.append(int((result.gt_index >= 0).sum()))
        per_layer += torch.bincount(layer_of[result.gt_index[0] >= 0], minlength=6)
        if len(boxes):
            best += box_iou(boxes, box_convert(anchors, "cxcywh", "xyxy")).max(dim=1).values.tolist()
            matched += [int((result.gt_index[0] == g).sum()) for g in range(len(boxes))]
    assert report.gts == len(best)
    assert report.ignored == sum(int(r.ignore.sum()) for r in index.records)
    assert report.positives_mean == pytest.approx(np.mean(positives))
    assert (report.positives_min, report.positives_max) == (min(positives), max(positives))
    assert [layer.matches for layer in report.layers] == per_layer.tolist()
    assert report.below_threshold == sum(b <= 0.5 for b in best)
    assert report.unmatched == sum(m == 0 for m in matched)
    assert report.mean_best_iou == pytest.approx(float(np.mean(best)), abs=1e-6)


@pytest.mark.parametrize("name", ["ssd300", "ssd512", "ssdlite320", "tiny"])
def test_nearest_cell_best_iou_equals_all_default_boxes(name: str) -> None:
    layout = get_layout(name) if name != "tiny" else AnchorLayout(160, (20, 10, 5, 3, 1), None, (16, 32, 56, 80, 112, 144), ((2, 0.5),) * 5)
    generator = torch.Generator().manual_seed(3)
    centre = torch.rand(1000, 2, generator=generator) * 1.2 - 0.1
    size = torch.rand(1000, 2, generator=generator) ** 2 + 1e-3
    boxes = torch.cat((centre - size / 2, centre + size / 2), dim=1)
    anchors = box_convert(ssdcli.default_boxes(layout), "cxcywh", "xyxy")
    expected = box_iou(boxes, anchors).max(dim=1).values
    torch.testing.assert_close(best_iou_nearest_cells(boxes, layout), expected, rtol=0, atol=1e-6)


def test_suggestion_fits_tiny_boxes(tmp_path: Path) -> None:
    images = [centred_boxes(10, 8, [(3, 3), (10, 20), (30, 5), (7, 7)], 1), centred_boxes(12, 8, [(20, 20)], 2)]
    gts = gt_set_from_index(fake_index(images))
    suggestion = suggest_layout(gts, get_layout("ssd300"), k=1, threshold=0.5)
    assert suggestion.start_coverage == 0.0
    assert suggestion.coverage == 1.0 and suggestion.accepted
    assert suggestion.layout.feature_maps == get_layout("ssd300").feature_maps
    assert suggestion.layout.steps == get_layout("ssd300").steps
    assert suggestion.layout.image_size == 300
    assert suggestion.ratio_source == "start" or all(len(r) == 1 for r in suggestion.layout.aspect_ratios)
    path = write_layout(suggestion.layout, tmp_path / "anchors.json")
    assert load_layout_file(path) == suggestion.layout
    with pytest.raises(UsageError) as caught:
        write_layout(suggestion.layout, path)
    assert caught.value.path == str(path)
    write_layout(get_layout("ssd300"), path, force=True)
    assert load_layout_file(path) == get_layout("ssd300")


def test_suggestion_is_never_worse_than_the_start() -> None:
    gts = gt_set_from_index(random_index(2, images=12))
    for k in (1, 3):
        suggestion = suggest_layout(gts, get_layout("ssdlite320"), k=k)
        assert suggestion.coverage >= suggestion.start_coverage
        assert suggestion.accepted


def bccd_gts(split: str):
    if not (BCCD / "Annotations").is_dir():
        pytest.skip(f"BCCD data set not found at {BCCD}")
    from ssdcli.engine.encode import load_gt_set

    return load_gt_set(BCCD, split)


@pytest.mark.slow
def test_suggestion_raises_coverage_on_bccd(tmp_path: Path) -> None:
    gts = bccd_gts("test")
    start = get_layout("ssdlite320")
    report = dataset_coverage(gts, NamedLayout("ssdlite320", start), threshold=0.5)
    suggestion = suggest_layout(gts, start, k=3, threshold=0.5)
    assert suggestion.start_coverage == pytest.approx(report.coverage)
    assert suggestion.coverage > suggestion.start_coverage + 0.02
    path = write_layout(suggestion.layout, tmp_path / "bccd.json")
    loaded = load_layout_file(path)
    assert loaded.feature_maps == start.feature_maps and loaded.image_size == start.image_size
    # The written layout's coverage, recomputed over every default box with torchvision.
    valid_boxes = gts.boxes[gts.valid]
    anchors = box_convert(ssdcli.default_boxes(loaded), "cxcywh", "xyxy")
    best = torch.cat([box_iou(valid_boxes[i : i + 1000], anchors).max(dim=1).values for i in range(0, len(valid_boxes), 1000)])
    assert float((best > 0.5).double().mean()) == pytest.approx(suggestion.coverage, abs=1e-9)
    assert coverage_of(gt_best_iou(gts, loaded), 0.5)[0] == suggestion.coverage

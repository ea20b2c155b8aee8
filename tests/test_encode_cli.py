"""`ssd encode` through the real entry point: per-image report and picture, data-set mode, --suggest, errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchvision.ops import box_convert, box_iou

import ssdcli
from ssdcli.cli.app import main
from ssdcli.core.layouts import get_layout
from ssdcli.engine.encode.layouts import load_layout_file

SIDE = 300


def write_voc_set(root: Path, images: list[list[tuple[str, int, int, int, int]]], split: str = "train") -> Path:
    """A VOC-layout data set of SIDE x SIDE images; objects as (name, xmin, ymin, xmax, ymax) 1-based inclusive."""
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    ids = []
    for n, objects in enumerate(images):
        image_id = f"img{n:03d}"
        ids.append(image_id)
        cv2.imwrite(str(root / "JPEGImages" / f"{image_id}.png"), np.full((SIDE, SIDE, 3), 100, np.uint8))
        parts = [
            f"<annotation><filename>{image_id}.png</filename>"
            f"<size><width>{SIDE}</width><height>{SIDE}</height><depth>3</depth></size>"
        ]
        for name, x1, y1, x2, y2 in objects:
            parts.append(
                f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
                f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
            )
        (root / "Annotations" / f"{image_id}.xml").write_text("".join(parts) + "</annotation>")
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


# Per image: a 40 x 40 px square, a 120 x 60 px box, and a 10 x 10 px square (below 0.5 with any SSD300 box).
OBJECTS = [("big", 21, 31, 60, 70), ("wide", 101, 151, 220, 210), ("small", 251, 251, 260, 260)]


@pytest.fixture()
def voc_set(tmp_path: Path) -> Path:
    return write_voc_set(tmp_path / "voc", [OBJECTS, OBJECTS[:2], [OBJECTS[2]]])


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    return err[0]


def test_image_report_json_equals_the_core_engine(voc_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = voc_set / "JPEGImages" / "img000.png"
    out = tmp_path / "report.json"
    assert main(["encode", str(image), "--annotation", str(voc_set / "Annotations" / "img000.xml"), "--json", str(out), "--model", "ssd300"]) == 0
    text = capsys.readouterr().out
    assert "positives" in text and "GTs with no default box above 0.5: 1" in text
    data = json.loads(out.read_text())["image"]
    boxes = torch.tensor([[x1 - 1, y1 - 1, x2, y2] for _, x1, y1, x2, y2 in OBJECTS], dtype=torch.float32) / SIDE
    anchors = ssdcli.default_boxes("ssd300")
    iou = box_iou(boxes, box_convert(anchors, "cxcywh", "xyxy"))  # [G, A]
    classes = torch.tensor([[1, 3, 2]])
    targets = ssdcli.encode(boxes[None], classes, anchors)
    matched = ssdcli.match(boxes[None], classes, anchors)
    assert data["positives"] == int((targets.labels > 0).sum())
    assert data["below_threshold"] == 1 and data["layout"] == get_layout("ssd300").to_dict()
    for g, gt in enumerate(data["gts"]):
        assert gt["best_iou"] == pytest.approx(float(iou[g].max()), abs=1e-6)
        mine = torch.nonzero(matched.gt_index[0] == g).flatten()
        assert sum(gt["matches_per_layer"]) == len(mine)
        best = int(mine[iou[g, mine].argmax()])
        assert gt["best_match"]["anchor"] == best
        assert gt["offsets"] == pytest.approx(targets.offsets[0, best].tolist(), abs=1e-6)


def test_reference_leaves_the_small_box_unmatched(voc_set: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    image = voc_set / "JPEGImages" / "img002.png"  # only the 10 x 10 px box; annotation found in ../Annotations
    out = tmp_path / "r.json"
    assert main(["encode", str(image), "--reference", "--json", str(out), "--model", "ssd300"]) == 0
    data = json.loads(out.read_text())["image"]
    assert data["positives"] == 0 and data["unmatched"] == 1 and data["best_anchor"] is False
    assert "no default box" in capsys.readouterr().out


def test_visualize_writes_a_png(voc_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pics" / "m.png"
    image = voc_set / "JPEGImages" / "img000.png"
    assert main(["encode", str(image), "--model", "ssdlite320", "--visualize", str(out)]) == 0
    picture = cv2.imread(str(out))
    # 7 panels (GTs + 6 maps) of 400 x 400 px, 4 per row: 8 + 4 * 408 wide, 34 + 8 + 2 * (26 + 400 + 8) high.
    assert picture is not None and picture.shape == (34 + 8 + 2 * 434, 8 + 4 * 408, 3)


def test_data_set_mode_json_and_summary_picture(voc_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, picture = tmp_path / "c.json", tmp_path / "c.png"
    assert main(["encode", "--data", str(voc_set), "--json", str(out), "--visualize", str(picture)]) == 0
    data = json.loads(out.read_text())["coverage"]
    assert data["images"] == 3 and data["gts"] == 6
    assert data["below_threshold"] == 2  # the two 10 x 10 px boxes
    sizes = {g["name"]: (g["gts"], g["below_threshold"]) for g in data["by_size"]}
    # At the input: 40 x 40 (sqrt 40) -> 32-64, 120 x 60 (sqrt 84.9) -> 64-128, 10 x 10 -> <16.
    assert sizes == {"<16": (2, 2), "16-32": (0, 0), "32-64": (2, 0), "64-128": (2, 0), "128-256": (0, 0), ">=256": (0, 0)}
    classes = {g["name"]: (g["gts"], g["below_threshold"]) for g in data["by_class"]}
    assert classes == {"big": (2, 0), "small": (2, 2), "wide": (2, 0)}
    assert cv2.imread(str(picture)).shape == (34 + 8 + 2 * (26 + 330 + 8), 8 + 2 * (560 + 8), 3)
    assert "Anchor coverage" in capsys.readouterr().out


def test_coco_data_set_gives_the_same_statistics(voc_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "coco"
    folder.mkdir()
    images, annotations = [], []
    names = sorted({o[0] for o in OBJECTS})
    for n, objects in enumerate([OBJECTS, OBJECTS[:2], [OBJECTS[2]]]):
        cv2.imwrite(str(folder / f"{n}.png"), np.full((SIDE, SIDE, 3), 100, np.uint8))
        images.append({"id": 100 + n, "file_name": f"{n}.png", "width": SIDE, "height": SIDE})
        for name, x1, y1, x2, y2 in objects:
            box = [x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1]
            annotations.append(
                {"id": len(annotations) + 1, "image_id": 100 + n, "category_id": 1 + names.index(name), "bbox": box,
                 "area": box[2] * box[3], "iscrowd": 0}
            )
    # One crowd region: ignored, as training ignores it.
    annotations.append({"id": 99, "image_id": 100, "category_id": 1, "bbox": [0, 0, 50, 50], "area": 2500, "iscrowd": 1})
    categories = [{"id": 1 + k, "name": name} for k, name in enumerate(names)]
    instances = folder / "instances_train.json"
    instances.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    from_coco, from_voc = tmp_path / "coco.json", tmp_path / "voc.json"
    assert main(["encode", "--data", str(instances), "--format", "coco", "--json", str(from_coco)]) == 0
    assert main(["encode", "--data", str(voc_set), "--json", str(from_voc)]) == 0
    coco, voc = json.loads(from_coco.read_text())["coverage"], json.loads(from_voc.read_text())["coverage"]
    assert coco["ignored"] == 1 and voc["ignored"] == 0
    for key in ("images", "gts", "below_threshold", "unmatched", "positives_min", "positives_max", "by_size", "by_class", "layers"):
        assert coco[key] == voc[key], key
    assert coco["mean_best_iou"] == pytest.approx(voc["mean_best_iou"], abs=1e-6)


def test_suggest_writes_a_loadable_layout_and_refuses_to_overwrite(
    voc_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "anchors.json"
    args = ["encode", "--data", str(voc_set), "--suggest", "2", "--out", str(out), "--model", "ssd300"]
    assert main(args) == 0
    layout = load_layout_file(out)
    assert layout.feature_maps == get_layout("ssd300").feature_maps and layout.steps == get_layout("ssd300").steps
    assert "coverage" in capsys.readouterr().out
    out.write_text("mine")
    assert main(args) == 2
    assert str(out) in one_line_error(capsys) and out.read_text() == "mine"
    assert main([*args, "--force"]) == 0
    assert load_layout_file(out).image_size == 300
    # The written layout is usable as --anchors.
    capsys.readouterr()
    assert main(["encode", "--data", str(voc_set), "--anchors", str(out)]) == 0


@pytest.mark.parametrize(
    "case",
    ["missing image", "corrupt image", "malformed xml", "malformed json", "unknown image id", "not a layout", "no annotation"],
)
def test_bad_input_is_one_line_naming_the_file(
    voc_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    image = voc_set / "JPEGImages" / "img000.png"
    xml = voc_set / "Annotations" / "img000.xml"
    args = ["encode", str(image), "--annotation", str(xml)]
    named = None
    if case == "missing image":
        named = tmp_path / "none.jpg"
        args[1] = str(named)
    elif case == "corrupt image":
        named = tmp_path / "bad.png"
        named.write_bytes(b"\x89PNG\r\n\x1a\n broken")
        args[1] = str(named)
    elif case == "malformed xml":
        named = tmp_path / "bad.xml"
        named.write_text("<annotation>")
        args[3] = str(named)
    elif case == "malformed json":
        named = tmp_path / "bad.json"
        named.write_text("[1, 2")
        args[3] = str(named)
    elif case == "unknown image id":
        named = tmp_path / "coco.json"
        named.write_text(json.dumps({"images": [{"id": 1, "file_name": "img000.png"}], "annotations": [], "categories": []}))
        args[3:] = [str(named), "--image-id", "5"]
    elif case == "not a layout":
        named = tmp_path / "layout.json"
        named.write_text(json.dumps({"feature_maps": [1]}))
        args += ["--anchors", str(named)]
    elif case == "no annotation":
        loose = tmp_path / "loose.png"
        cv2.imwrite(str(loose), np.zeros((8, 8, 3), np.uint8))
        args, named = ["encode", str(loose)], loose
    assert main(args) == 2
    line = one_line_error(capsys)
    assert str(named) in line and "Traceback" not in line


@pytest.mark.parametrize(
    "args",
    [
        ["encode"],
        ["encode", "x.png", "--data", "d"],
        ["encode", "--data", "d", "--suggest", "3"],
        ["encode", "x.png", "--suggest", "3", "--out", "o.json"],
        ["encode", "x.png", "--model", "ssd300", "--anchors", "a.json"],
        ["encode", "x.png", "--model", "ssd301"],
        ["encode", "x.png", "--threshold", "1.5"],
    ],
)
def test_bad_usage_is_a_one_line_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    one_line_error(capsys)


def test_missing_data_set_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["encode", "--data", str(tmp_path / "nothing")]) == 2
    assert str(tmp_path / "nothing") in one_line_error(capsys)

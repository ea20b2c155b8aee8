"""`ssd predict` on real BCCD test images (640x480 blood smears) from a checkpoint and from its ONNX exports.

A randomly initialised ssd_tiny with the BCCD classes stands in for a trained model: the checks are about the
inference path (pixels, JSON, class filter, sources), not accuracy. Reference detections are computed here with
torchvision's box decoder and per-class NMS and scaled to pixels by hand.
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime
import pytest
import torch
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import box_convert, box_iou, nms

import ssdcli
from conftest import model_checkpoint
from ssdcli.cli.app import main
from ssdcli.core.anchors import default_boxes
from ssdcli.core.coder import encode_offsets
from ssdcli.engine.checkpoint import save_checkpoint
from ssdcli.engine.export.exporter import DecodedDetector
from ssdcli.engine.inference.loading import load_model
from ssdcli.engine.inference.preprocess import prepare
from ssdcli.models.build import build_model
from ssdcli.models.spec import default_config

BCCD = Path(__file__).resolve().parents[2] / "shared" / "data" / "bccd" / "BCCD"
CLASSES = ("background", "Platelets", "RBC", "WBC")
CATEGORY_IDS = (0, 4, 6, 9)  # non-contiguous data set ids, as a COCO data set has: results.json must use these
WIDTH, HEIGHT = 640, 480
# A random model scores all classes near 1/4; at 0.34 each image keeps 50-80 detections of all three classes, well
# below the 200 per image, so no cut at the top-k boundary can differ between runtimes.
CONF = "0.34"
NUM_IMAGES = 4


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Copies of the first BCCD test images (plus a file that is not an image) in a folder of their own."""
    split = BCCD / "ImageSets" / "Main" / "test.txt"
    if not split.is_file():
        pytest.skip(f"BCCD data set not found at {BCCD}")
    folder = tmp_path_factory.mktemp("bccd")
    names = split.read_text().split()[:NUM_IMAGES]
    for name in names:
        shutil.copy(BCCD / "JPEGImages" / f"{name}.jpg", folder / f"{name}.jpg")
    (folder / "notes.txt").write_text("not an image")
    return [folder / f"{name}.jpg" for name in names]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model(default_config("ssd_tiny", num_classes=len(CLASSES)))
    path = tmp_path_factory.mktemp("ckpt") / "bccd_tiny.pt"
    save_checkpoint(model_checkpoint(model, CLASSES, CATEGORY_IDS), path)
    return path


@pytest.fixture(scope="module")
def onnx_files(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("onnx")
    files = {"raw": folder / "raw.onnx", "nms": folder / "nms.onnx"}
    base = ["export", "--checkpoint", str(checkpoint), "--to", "onnx"]
    assert main(base + ["--out", str(files["raw"])]) == 0
    assert main(base + ["--with-nms", "--out", str(files["nms"])]) == 0
    return files


def reference_detections(checkpoint: Path, path: Path, conf: float) -> dict[str, np.ndarray]:
    """Detections of one image computed without ssdcli's decoder and NMS: torchvision's ``BoxCoder`` (weights
    10, 10, 5, 5 = prior scaling 0.1, 0.2), clip, top 400 per class, score > conf, ``nms`` per class at 0.45,
    top 200 by score, then xyxy normalised * (640, 480, 640, 480)."""
    loaded = load_model(checkpoint)
    bgr = cv2.imread(str(path))
    rgb = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1)
    config = loaded.spec.config
    with torch.no_grad():
        logits, loc = loaded.model(prepare(rgb, config)[None])
    anchors_xyxy = box_convert(default_boxes(config.layout), "cxcywh", "xyxy")
    boxes = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0)).decode_single(loc[0], anchors_xyxy).clamp(0, 1)  # [A, 4]
    scores = torch.softmax(logits[0], dim=-1)  # [A, C]
    found: list[tuple[Tensor, Tensor, Tensor]] = []
    for label in range(1, len(CLASSES)):
        top = scores[:, label].topk(400)
        keep = top.indices[top.values > conf]
        kept = keep[nms(boxes[keep], scores[keep, label], 0.45)]
        found.append((boxes[kept], scores[kept, label], torch.full((len(kept),), label)))
    all_boxes, all_scores, all_labels = (torch.cat(parts) for parts in zip(*found))
    order = all_scores.argsort(descending=True)[:200]
    scale = torch.tensor([WIDTH, HEIGHT, WIDTH, HEIGHT], dtype=torch.float32)
    return {"boxes": (all_boxes[order] * scale).numpy(), "scores": all_scores[order].numpy(), "labels": all_labels[order].numpy()}


def assert_same_detections(a: Any, b: Any) -> None:
    """Per label the same number of detections, each of ``a`` with one of ``b`` at IoU > 0.99 and the same score
    (1e-4). ``a`` and ``b``: Detections or dicts with boxes [K, 4] pixels, scores [K], labels [K]."""
    get = (lambda d, key: d[key]) if isinstance(a, dict) else getattr
    get_b = (lambda d, key: d[key]) if isinstance(b, dict) else getattr
    labels_a, labels_b = np.asarray(get(a, "labels")), np.asarray(get_b(b, "labels"))
    assert len(labels_a) > 0
    assert sorted(labels_a.tolist()) == sorted(labels_b.tolist())
    for label in np.unique(labels_a):
        mine, theirs = labels_a == label, labels_b == label
        boxes_a, boxes_b = np.asarray(get(a, "boxes"))[mine], np.asarray(get_b(b, "boxes"))[theirs]
        best = box_iou(torch.from_numpy(boxes_a).double(), torch.from_numpy(boxes_b).double()).max(dim=1)
        assert bool((best.values > 0.99).all()), f"label {label}: lowest best IoU {float(best.values.min()):.4f}"
        scores_a, scores_b = np.asarray(get(a, "scores"))[mine], np.asarray(get_b(b, "scores"))[theirs]
        np.testing.assert_allclose(scores_a, scores_b[best.indices.numpy()], atol=1e-4)


def test_checkpoint_and_onnx_give_the_reference_detections_in_pixels(
    checkpoint: Path, onnx_files: dict[str, Path], images: list[Path]
) -> None:
    from_checkpoint = ssdcli.load(str(checkpoint), conf_threshold=float(CONF))(images)
    from_raw = ssdcli.load(str(onnx_files["raw"]), conf_threshold=float(CONF))(images)
    from_nms = ssdcli.load(str(onnx_files["nms"]), conf_threshold=float(CONF))(images)
    labels_seen: set[int] = set()
    for path, ours, raw, with_nms in zip(images, from_checkpoint, from_raw, from_nms):
        assert ours.image_size == raw.image_size == with_nms.image_size == (HEIGHT, WIDTH)
        assert_same_detections(reference_detections(checkpoint, path, float(CONF)), ours)
        assert_same_detections(ours, raw)
        assert_same_detections(ours, with_nms)
        for found in (ours, raw, with_nms):
            boxes = found.boxes
            assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= WIDTH).all() and (boxes[:, [1, 3]] <= HEIGHT).all()
            assert (boxes[:, 2:] >= boxes[:, :2]).all()
            assert found.names == tuple(CLASSES[int(label)] for label in found.labels)
        assert ours.boxes[:, 2].max() > 400 and ours.boxes[:, 3].max() > 300  # pixels, not the 160 px input
        labels_seen.update(ours.labels.tolist())
    assert labels_seen == {1, 2, 3}


def _check_record(record: dict[str, Any], files: dict[str, int]) -> None:
    """One results.json record: exactly the COCO results fields (plus file_name), typed, inside a 640x480 image."""
    assert set(record) == {"image_id", "file_name", "category_id", "bbox", "score"}
    assert type(record["image_id"]) is int and type(record["category_id"]) is int
    assert isinstance(record["file_name"], str) and files[record["file_name"]] == record["image_id"]
    assert record["category_id"] in CATEGORY_IDS[1:]
    assert isinstance(record["bbox"], list) and len(record["bbox"]) == 4
    assert all(type(v) is float for v in record["bbox"])
    x, y, w, h = record["bbox"]
    assert w >= 0 and h >= 0 and x >= 0 and y >= 0 and x + w <= WIDTH + 0.01 and y + h <= HEIGHT + 0.01
    assert type(record["score"]) is float and float(CONF) < record["score"] <= 1


def _check_image_document(document: dict[str, Any], source: Path) -> None:
    """One per-image JSON: file, width, height and the detections with class, label, score, box_xyxy."""
    assert set(document) == {"file", "width", "height", "detections"}
    assert document["file"] == str(source)
    assert (document["width"], document["height"]) == (WIDTH, HEIGHT)
    assert type(document["width"]) is int and type(document["height"]) is int
    assert isinstance(document["detections"], list) and document["detections"]
    for detection in document["detections"]:
        assert set(detection) == {"class", "label", "score", "box_xyxy"}
        assert type(detection["label"]) is int and 1 <= detection["label"] < len(CLASSES)
        assert detection["class"] == CLASSES[detection["label"]]
        assert type(detection["score"]) is float and float(CONF) < detection["score"] <= 1
        box = detection["box_xyxy"]
        assert isinstance(box, list) and len(box) == 4 and all(type(v) is float for v in box)
        assert 0 <= box[0] <= box[2] <= WIDTH and 0 <= box[1] <= box[3] <= HEIGHT


def _check_consistent(records: list[dict[str, Any]], document: dict[str, Any], expected: Any) -> None:
    """The COCO results records of one image, its entry in the report's images and the Python API's detections
    say the same."""
    assert len(records) == len(document["detections"]) == len(expected)
    for record, detection, box, score, label in zip(
        records, document["detections"], expected.boxes, expected.scores, expected.labels
    ):
        x1, y1, x2, y2 = detection["box_xyxy"]
        np.testing.assert_allclose(record["bbox"], [x1, y1, x2 - x1, y2 - y1], atol=0.011)
        np.testing.assert_allclose(detection["box_xyxy"], box, atol=0.006)
        assert record["score"] == detection["score"] and math.isclose(detection["score"], float(score), abs_tol=1e-5)
        assert record["category_id"] == CATEGORY_IDS[detection["label"]] and detection["label"] == int(label)


def test_predict_json_files_follow_the_schema(checkpoint: Path, images: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "runs"
    report = tmp_path / "detections.json"
    args = ["predict", *map(str, images), "--checkpoint", str(checkpoint), "--out", str(out), "--json", str(report)]
    assert main(args + ["--conf", CONF, "--device", "cpu"]) == 0
    run = out / "1"
    written = json.loads(report.read_text())
    records = written["results"]
    assert isinstance(records, list)
    assert written["categories"] == [{"id": c, "name": name} for c, name in zip(CATEGORY_IDS[1:], CLASSES[1:])]
    documents = {document["file"]: document for document in written["images"]}
    files = {path.name: i for i, path in enumerate(images)}  # image ids follow the order of the sources
    for record in records:
        _check_record(record, files)
    expected = ssdcli.load(str(checkpoint), conf_threshold=float(CONF))(images)
    for path, found in zip(images, expected):
        document = documents[str(path)]
        _check_image_document(document, path)
        _check_consistent([r for r in records if r["file_name"] == path.name], document, found)
        assert (run / f"{path.stem}.jpg").is_file()
    assert len(records) == sum(len(found) for found in expected)


def _predict_stdout(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["predict", *args, "--json", "-", "--conf", CONF, "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out)


def test_glob_source_and_json_on_stdout(checkpoint: Path, images: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    pattern = str(images[0].parent / "BloodImage_*.jpg")  # the folder also holds notes.txt
    document = _predict_stdout(capsys, pattern, "--checkpoint", str(checkpoint))
    assert set(document) == {"categories", "results", "images"}
    assert [image["file"] for image in document["images"]] == [str(path) for path in sorted(images)]
    files = {path.name: i for i, path in enumerate(sorted(images))}
    for record in document["results"]:
        _check_record(record, files)
    for image, path in zip(document["images"], sorted(images)):
        _check_image_document(image, path)


@pytest.mark.parametrize("model", ["checkpoint", "nms"])
def test_classes_filter_keeps_only_the_named_classes(
    model: str, checkpoint: Path, onnx_files: dict[str, Path], images: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    source = ["--checkpoint", str(checkpoint)] if model == "checkpoint" else ["--onnx", str(onnx_files["nms"])]
    everything = _predict_stdout(capsys, str(images[0]), *source)["images"][0]["detections"]
    only = _predict_stdout(capsys, str(images[0]), *source, "--classes", "WBC,Platelets")["images"][0]["detections"]
    assert {d["class"] for d in everything} == {"Platelets", "RBC", "WBC"}
    assert only == [d for d in everything if d["class"] in ("WBC", "Platelets")]


@pytest.mark.parametrize("model", ["checkpoint", "nms"])
def test_unknown_class_is_a_one_line_error(
    model: str, checkpoint: Path, onnx_files: dict[str, Path], images: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    source = ["--checkpoint", str(checkpoint)] if model == "checkpoint" else ["--onnx", str(onnx_files["nms"])]
    capsys.readouterr()
    code = main(["predict", str(images[0]), *source, "--classes", "RBC,Neutrophil", "--json", "-"])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Neutrophil" in lines[0]
    assert captured.out == ""


def test_onnx_with_nms_refuses_another_iou(onnx_files: dict[str, Path], images: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    code = main(["predict", str(images[0]), "--onnx", str(onnx_files["nms"]), "--iou", "0.6", "--json", "-"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and str(onnx_files["nms"]) in lines[0] and "0.45" in lines[0]


class FixedHead(nn.Module):
    """Stands in for a network: returns the first B rows of fixed (conf [N, A, C], loc [N, A, 4])."""

    def __init__(self, conf: Tensor, loc: Tensor) -> None:
        super().__init__()
        self.register_buffer("conf", conf)
        self.register_buffer("loc", loc)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        batch = images.shape[0]
        return self.conf[:batch], self.loc[:batch]


def near_threshold_pairs(batch: int, num_classes: int, seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Head outputs whose only confident boxes are pairs with IoU 0.45 +- 1e-5..1e-3, four pairs per (image,
    class), one per quadrant so that pairs never overlap. Returns conf, loc, anchors (SSD300) and the known
    answer: detections per (image, class) [B, C-1] = 4 pairs + the pairs below 0.45 (kept whole)."""
    g = torch.Generator().manual_seed(seed)
    anchors = default_boxes("ssd300")
    conf = torch.zeros(batch, anchors.shape[0], num_classes)
    conf[..., 0] = 12.0
    loc = torch.zeros(batch, anchors.shape[0], 4)
    expected = torch.zeros(batch, num_classes - 1, dtype=torch.int64)
    for image in range(batch):
        anchor_ids = torch.randperm(anchors.shape[0], generator=g).tolist()
        for label in range(1, num_classes):
            for quadrant in range(4):
                sign = 1.0 if torch.rand((), generator=g).item() < 0.5 else -1.0
                margin = sign * 10 ** (-5 + 2 * torch.rand((), generator=g).item())  # |IoU - 0.45| in 1e-5..1e-3
                iou = 0.45 + margin
                w, h = (0.08 + 0.12 * torch.rand(2, generator=g, dtype=torch.float64)).tolist()  # w + shift < 0.4
                x, y = 0.5 * (quadrant % 2) + 0.05, 0.5 * (quadrant // 2) + 0.05
                shift = w * (1 - iou) / (1 + iou)  # same-size boxes shifted by s: IoU = (w - s) / (w + s)
                first = torch.tensor([x, y, x + w, y + h], dtype=torch.float64)
                second = first + torch.tensor([shift, 0.0, shift, 0.0], dtype=torch.float64)
                a, b = anchor_ids.pop(), anchor_ids.pop()
                loc[image, a] = encode_offsets(first, anchors[a].double()).float()
                loc[image, b] = encode_offsets(second, anchors[b].double()).float()
                top = 16.0 + 2 * torch.rand((), generator=g).item()
                conf[image, a, label], conf[image, b, label] = top, top - 0.5
                expected[image, label - 1] += 1 if margin > 0 else 2
    return conf, loc, anchors, expected


def test_onnx_nms_decides_like_float64_near_the_iou_threshold(tmp_path: Path) -> None:
    """With 8 images x 20 classes = 160 NMS groups, shifting each group's [0, 1] boxes by group * 2 in float32 (as
    batched_nms does when traced) moves IoUs by up to ~1e-3 and flips decisions; the graph must not."""
    batch, num_classes = 8, 21
    conf, loc, anchors, expected = near_threshold_pairs(batch, num_classes)
    module = DecodedDetector(FixedHead(conf, loc), anchors, 0.01, 0.45, 400).eval()
    path = tmp_path / "nms.onnx"
    outputs = ["boxes", "scores", "labels", "batch_index"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (torch.zeros(2, 3, 8, 8),), str(path), input_names=["images"], output_names=outputs,
            dynamic_axes={"images": {0: "batch"}, **{name: {0: "detections"} for name in outputs}},
            opset_version=17, dynamo=False,
        )  # fmt: skip
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for count in (batch, 1):
        _, _, labels, image_index = session.run(None, {"images": np.zeros((count, 3, 8, 8), np.float32)})
        found = torch.zeros(count, num_classes - 1, dtype=torch.int64)
        np.add.at(found.numpy(), (image_index, labels - 1), 1)
        assert torch.equal(found, expected[:count])
    with torch.no_grad():
        _, _, labels, image_index = module(torch.zeros(batch, 3, 8, 8))
    found = torch.zeros(batch, num_classes - 1, dtype=torch.int64)
    found.index_put_((image_index, labels - 1), torch.ones_like(labels), accumulate=True)
    assert torch.equal(found, expected)

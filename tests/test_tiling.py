"""Sliced inference (``--tile``): the window grid, boxes moved back from a window, the merge of overlapping windows'
detections, and ``ssd predict --tile`` / ``ssd eval --tile`` end to end on the synthetic set."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor
from torchvision.ops import batched_nms

from conftest import model_checkpoint, sharpen_class_head
from ssdcli.cli.app import main
from ssdcli.config import EvalConfig, PredictConfig
from ssdcli.core.detections import Detections
from ssdcli.core.tiling import (
    merge_detections,
    shift_boxes,
    tile_windows,
    window_starts,
)
from ssdcli.data.images import DecodedImage, decode_image, write_image
from ssdcli.data.synth import SYNTH_CLASSES, write_synth
from ssdcli.engine.checkpoint import save_checkpoint
from ssdcli.engine.inference.tiled import Tiling, detect_tiled
from ssdcli.engine.predict import run as predict_module
from ssdcli.errors import UsageError
from ssdcli.models.build import build_model
from ssdcli.models.spec import default_config

# ------------------------------------------------------------------------------------------------- the grid


@pytest.mark.parametrize(
    ("height", "width", "size", "overlap"),
    [
        (480, 640, 128, 0.2),
        (1000, 1000, 512, 0.2),
        (333, 517, 100, 0.0),
        (97, 1203, 64, 0.5),
        (50, 40, 64, 0.2),
        (257, 256, 256, 0.85),
        (700, 300, 300, 0.1),
    ],
)
def test_windows_cover_every_pixel_and_stay_inside(height: int, width: int, size: int, overlap: float) -> None:
    windows = tile_windows(height, width, size, overlap)  # [N, 4]
    x1, y1, x2, y2 = windows.unbind(1)
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= width).all() and (y2 <= height).all()
    assert ((x2 - x1) == min(size, width)).all() and ((y2 - y1) == min(size, height)).all()
    covered = torch.zeros(height, width, dtype=torch.bool)
    for a, b, c, d in windows.tolist():
        covered[b:d, a:c] = True
    assert covered.all()
    assert len({tuple(w) for w in windows.tolist()}) == len(windows), "a window listed twice"


def test_window_starts_follow_sahis_rule() -> None:
    # SAHI, 1000 px, 512 px slices, overlap 0.2: 102 px shared, so starts 0 and 410; the next (820) would end at
    # 1332, so the last is shifted inward to end at the edge: 488.
    assert window_starts(1000, 512, 0.2) == [0, 410, 488]
    assert window_starts(922, 512, 0.2) == [
        0,
        410,
    ]  # the second window ends at the edge already
    assert window_starts(512, 512, 0.2) == [0]
    assert window_starts(300, 512, 0.2) == [0]
    assert window_starts(100, 40, 0.0) == [0, 40, 60]


def test_neighbouring_windows_share_at_least_the_overlap() -> None:
    starts = window_starts(2000, 256, 0.25)
    assert all(256 - (b - a) >= 64 for a, b in itertools.pairwise(starts))


# ------------------------------------------------------------------------------------------------- moving back


def test_a_box_in_a_window_maps_to_the_image_pixels() -> None:
    window = torch.tensor([410, 96, 922, 608])
    boxes = torch.tensor([[10.0, 20.0, 30.5, 40.0], [0.0, 0.0, 512.0, 512.0]])
    moved = shift_boxes(boxes, window)
    assert moved.tolist() == [[420.0, 116.0, 440.5, 136.0], [410.0, 96.0, 922.0, 608.0]]


def _bright_box(crop: Tensor) -> tuple[np.ndarray, bool]:
    """The box [1, 4] (pixels of ``crop``) of the bright pixels of ``crop`` [3, h, w], and whether they lie clear
    of its border (an object wholly inside)."""
    ys, xs = torch.nonzero(crop[0] > 128, as_tuple=True)
    if ys.numel() == 0:
        return np.zeros((0, 4), np.float32), False
    box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=np.float32)
    height, width = crop.shape[1:]
    inside = bool(box[0, 0] > 0 and box[0, 1] > 0 and box[0, 2] < width and box[0, 3] < height)
    return box, inside


def test_an_object_seen_in_several_windows_comes_back_once_at_its_pixels() -> None:
    image = torch.zeros(3, 480, 640, dtype=torch.uint8)
    image[:, 200:212, 300:310] = 255  # an object of 10 x 12 px at x 300..310, y 200..212
    calls: list[tuple[int, int]] = []
    batches: list[int] = []

    def detect(crops: Sequence[Tensor]) -> list[Detections]:
        batches.append(len(crops))
        return [detect_one(crop) for crop in crops]

    def detect_one(crop: Tensor) -> Detections:
        """Finds the object only in a window (too small in the whole photo) and only when wholly inside it; the
        score differs from window to window."""
        calls.append((int(crop.shape[1]), int(crop.shape[2])))
        box, inside = _bright_box(crop)
        if not inside or crop.shape[1:] == image.shape[1:]:
            return Detections(
                np.zeros((0, 4), np.float32),
                np.zeros(0, np.float32),
                np.zeros(0, np.int64),
            )
        score = np.array([0.5 + box[0, 0] / 1000.0], dtype=np.float32)
        return Detections(
            box, score, np.array([2]), names=("fish",), image_size=(int(crop.shape[1]), int(crop.shape[2]))
        )

    found = detect_tiled(image, detect, Tiling(128, 0.25), iou_threshold=0.45, top_k=200, batch_size=8)
    windows = tile_windows(480, 640, 128, 0.25)
    assert len(calls) == len(windows) + 1 and calls[0] == (480, 640)  # the whole image, then every window
    assert batches == [8] * (len(calls) // 8) + ([len(calls) % 8] if len(calls) % 8 else [])  # 8 at a time
    seen_in = sum(1 for a, b, c, d in windows.tolist() if a < 300 and b < 200 and c > 310 and d > 212)
    assert seen_in > 1, "the object must be wholly inside several windows for this test to mean anything"
    assert found.boxes.tolist() == [[300.0, 200.0, 310.0, 212.0]]
    assert found.labels.tolist() == [2] and found.names == ("fish",) and found.image_size == (480, 640)


def test_an_image_no_larger_than_a_window_is_detected_once_as_a_whole() -> None:
    image = torch.zeros(3, 120, 200, dtype=torch.uint8)
    whole = Detections(
        np.array([[1.0, 2.0, 3.0, 4.0]], np.float32),
        np.array([0.9], np.float32),
        np.array([1]),
    )
    calls: list[Tensor] = []

    def detect(crops: Sequence[Tensor]) -> list[Detections]:
        calls.extend(crops)
        return [whole for _ in crops]

    assert detect_tiled(image, detect, Tiling(200), 0.45, 200) is whole
    assert len(calls) == 1 and calls[0] is image


# ------------------------------------------------------------------------------------------------- the merge


def _random_detections(seed: int, count: int) -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    corner = torch.rand(count, 2, generator=generator) * 400
    side = 10 + torch.rand(count, 2, generator=generator) * 60
    boxes = torch.cat([corner, corner + side], dim=1)  # [N, 4]
    scores = torch.randperm(count, generator=generator).float() / count + 0.001  # distinct
    labels = torch.randint(1, 4, (count,), generator=generator)
    return boxes, scores, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("iou", [0.3, 0.45, 0.7])
def test_merge_keeps_what_torchvisions_batched_nms_keeps(seed: int, iou: float) -> None:
    boxes, scores, labels = _random_detections(seed, 300)
    reference = batched_nms(boxes.double(), scores.double(), labels, iou)  # by decreasing score
    assert merge_detections(boxes, scores, labels, iou, top_k=1000).tolist() == reference.tolist()
    assert merge_detections(boxes, scores, labels, iou, top_k=25).tolist() == reference[:25].tolist()


def test_merge_keeps_one_box_per_object_and_classes_apart() -> None:
    boxes = torch.tensor(
        [
            [100.0, 100.0, 140.0, 140.0],
            [102.0, 101.0, 141.0, 142.0],
            [101.0, 100.0, 140.0, 139.0],
            [300, 300, 320, 320],
        ]
    )
    scores = torch.tensor([0.6, 0.9, 0.7, 0.2])
    labels = torch.tensor([1, 1, 2, 1])  # two windows saw the same class-1 object; a class-2 box lies on it
    assert merge_detections(boxes, scores, labels, 0.45, 200).tolist() == [1, 2, 3]
    assert merge_detections(boxes[:0], scores[:0], labels[:0], 0.45, 200).tolist() == []


# ------------------------------------------------------------------------------------------------- settings


def test_bad_tiling_settings_name_the_field() -> None:
    with pytest.raises(UsageError, match="^tile: "):
        PredictConfig(model="m.pt", sources=("a.jpg",), tile=8)
    with pytest.raises(UsageError, match="^tile_overlap: "):
        PredictConfig(model="m.pt", sources=("a.jpg",), tile=256, tile_overlap=0.9)
    with pytest.raises(UsageError, match="^tile_overlap: "):
        EvalConfig(mode="model", model="m.pt", data=Path("d"), tile=256, tile_overlap=-0.1)
    with pytest.raises(UsageError, match="^tile does not apply"):
        EvalConfig(mode="coco", gt=Path("g.json"), results=Path("r.json"), tile=256)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["predict", "a.jpg", "--checkpoint", "m.pt", "--tile", "0"], "--tile"),
        (
            [
                "predict",
                "a.jpg",
                "--checkpoint",
                "m.pt",
                "--tile",
                "512",
                "--overlap",
                "0.95",
            ],
            "--overlap",
        ),
        (["eval", "--checkpoint", "m.pt", "--data", "d", "--tile", "16"], "--tile"),
        (
            [
                "eval",
                "--coco",
                "--gt",
                "g.json",
                "--results",
                "r.json",
                "--tile",
                "512",
            ],
            "--tile",
        ),
    ],
)
def test_bad_tiling_flags_are_one_line(args: list[str], named: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {named}"), err


# ------------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def synth_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small synthetic VOC set of 160 px images, and an ssd_tiny checkpoint whose class head is scaled up, so
    that detections rank and suppress each other by clear margins, as a trained model's do."""
    root = tmp_path_factory.mktemp("tiling")
    write_synth(root / "data", format="voc", images=12, seed=0)
    torch.manual_seed(0)
    model = build_model(default_config("ssd_tiny", num_classes=len(SYNTH_CLASSES) + 1))
    sharpen_class_head(model, 25.0)
    path = save_checkpoint(model_checkpoint(model, ("background", *SYNTH_CLASSES)), root / "m.pt")
    return root / "data", path


def _eval(data: Path, checkpoint: Path, out: Path, tiling: list[str]) -> tuple[list[dict], dict]:
    """The detections (COCO results) and the metrics JSON of ``ssd eval --checkpoint`` on the test split."""
    args = ["eval", "--checkpoint", str(checkpoint), "--data", str(data), "--split", "test", "--device", "cpu"]
    assert main([*args, "--out", str(out), "--json", str(out / "metrics.json"), *tiling]) == 0
    results = json.loads((out / "1" / "detections.json").read_text())["results"]
    return results, json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_eval_with_a_window_as_large_as_the_images_gives_the_same_detections(
    synth_model: tuple[Path, Path], tmp_path: Path
) -> None:
    data, checkpoint = synth_model
    # One image per batch, as the tiled path runs them: batched convolutions differ in the last float bits.
    plain, plain_metrics = _eval(data, checkpoint, tmp_path / "plain", ["--batch-size", "1"])
    tiled, tiled_metrics = _eval(data, checkpoint, tmp_path / "tiled", ["--tile", "160"])
    assert plain, "the model finds nothing: the comparison would mean nothing"
    assert tiled == plain
    assert "tiling" not in plain_metrics and tiled_metrics["tiling"] == {"size": 160, "overlap": 0.2}
    assert tiled_metrics["mAP"] == plain_metrics["mAP"]


@pytest.mark.slow
def test_eval_with_small_windows_keeps_every_box_inside_the_image(
    synth_model: tuple[Path, Path], tmp_path: Path
) -> None:
    data, checkpoint = synth_model
    plain, _ = _eval(data, checkpoint, tmp_path / "plain", [])
    tiled, metrics = _eval(data, checkpoint, tmp_path / "tiled", ["--tile", "64", "--overlap", "0.25"])
    assert tiled != plain and metrics["tiling"] == {"size": 64, "overlap": 0.25}
    for record in tiled:
        x, y, w, h = record["bbox"]
        assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= 160 + 1e-3 and y + h <= 160 + 1e-3
    assert max(Counter(r["image_id"] for r in tiled).values()) <= 200  # the model's top-k per image


def _predicted(data: Path, checkpoint: Path, out: Path, tiling: list[str]) -> dict:
    """The ``--json`` report of ``ssd predict --checkpoint`` on two of the set's images."""
    images = sorted((data / "JPEGImages").iterdir())[:2]
    args = ["predict", *map(str, images), "--checkpoint", str(checkpoint), "--conf", "0.05", "--device", "cpu"]
    assert main([*args, "--out", str(out), "--json", str(out / "dets.json"), *tiling]) == 0
    return json.loads((out / "dets.json").read_text())


@pytest.mark.slow
def test_predict_with_a_window_as_large_as_the_images_gives_the_same_detections(
    synth_model: tuple[Path, Path], tmp_path: Path
) -> None:
    data, checkpoint = synth_model
    plain = _predicted(data, checkpoint, tmp_path / "plain", [])
    tiled = _predicted(data, checkpoint, tmp_path / "tiled", ["--tile", "200"])
    assert any(image["detections"] for image in plain["images"]), "the model finds nothing: nothing compared"
    assert tiled["images"] == plain["images"] and tiled["results"] == plain["results"]
    assert "tiling" not in plain and tiled["tiling"] == {"size": 200, "overlap": 0.2}
    small = _predicted(data, checkpoint, tmp_path / "small", ["--tile", "96", "--overlap", "0.5"])
    assert small["images"] != plain["images"] and all(image["width"] == 160 for image in small["images"])
    assert small["tiling"] == {"size": 96, "overlap": 0.5}


def test_predict_cuts_the_windows_from_the_pixels_as_stored(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A photo far larger than the network's input is decoded at reduced size without ``tile`` (the network sees
    it at its input size anyway); with ``tile`` the windows' pixels are the photo's own."""
    photo = tmp_path / "large.png"
    write_image(photo, np.full((700, 900, 3), 90, dtype=np.uint8))
    asked: list[int | None] = []

    def recording(path: Path, at_least: int | None = None) -> DecodedImage:
        asked.append(at_least)
        return decode_image(path, at_least)

    monkeypatch.setattr(predict_module, "decode_image", recording)
    for tile in (None, 512):
        config = PredictConfig(checkpoint, (str(photo),), out=None, conf_threshold=0.9, device="cpu", tile=tile)
        result = predict_module.predict(config)
        assert result.per_image[0]["width"] == 900 and result.per_image[0]["height"] == 700
    assert asked[0] is not None and asked[1] is None

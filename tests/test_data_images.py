"""The one image reader: every kind of file a scraped data set holds, decoded one way by every command."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import ssdcli
from conftest import model_checkpoint
from messy_files import smooth_rgb, truncate, undecodable_jpeg, write_jpeg
from ssdcli.data.dataset import DetectionDataset, open_index, read_sized_image
from ssdcli.data.images import decode_image, is_truncated_jpeg, read_image_rgb, rgb_from_array, write_image
from ssdcli.data.synth import write_synth
from ssdcli.engine.checkpoint import save_checkpoint
from ssdcli.engine.encode.annotations import read_image as encode_read_image
from ssdcli.engine.inference.preprocess import to_rgb_tensor
from ssdcli.errors import DataError
from ssdcli.models.build import build_model
from ssdcli.models.spec import default_config

H, W = 96, 128  # not square: a rotation would show in the shape


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def rgb() -> np.ndarray:
    return smooth_rgb(H, W)


def test_png_modes_decode_to_rgb_uint8(tmp_path: Path, rgb: np.ndarray) -> None:
    gray = rgb[:, :, 1]
    cases = {
        "gray.png": (Image.fromarray(gray), np.repeat(gray[:, :, None], 3, axis=2)),
        "rgba.png": (Image.fromarray(np.dstack([rgb, np.full((H, W), 128, np.uint8)])), rgb),
        "rgb16.png": (None, rgb),
        "gray16.png": (None, np.repeat(gray[:, :, None], 3, axis=2)),
    }
    for name, (image, expected) in cases.items():
        path = tmp_path / name
        if name == "rgb16.png":  # OpenCV writes 16-bit colour PNGs (BGR order)
            cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
        elif name == "gray16.png":
            cv2.imwrite(str(path), gray.astype(np.uint16) * 257)
        else:
            image.save(path)
        decoded = decode_image(path)
        assert decoded.pixels.dtype == np.uint8 and decoded.pixels.shape == (H, W, 3), name
        np.testing.assert_array_equal(decoded.pixels, expected, err_msg=name)
        assert not decoded.truncated


def test_palette_png_decodes_to_its_colours(tmp_path: Path, rgb: np.ndarray) -> None:
    palette = Image.fromarray(rgb).convert("P")
    path = tmp_path / "palette.png"
    palette.save(path)
    np.testing.assert_array_equal(read_image_rgb(path), np.asarray(palette.convert("RGB")))


def test_cmyk_jpeg_decodes_to_rgb(tmp_path: Path, rgb: np.ndarray) -> None:
    path = write_jpeg(tmp_path / "cmyk.jpg", rgb, mode="CMYK")
    assert Image.open(path).mode == "CMYK"
    pixels = read_image_rgb(path)
    assert pixels.shape == (H, W, 3)
    assert np.abs(pixels.astype(int) - rgb).mean() < 4  # JPEG loss only, not inverted or swapped channels


def test_truncated_jpeg_decodes_as_far_as_its_data_goes(tmp_path: Path) -> None:
    full = write_jpeg(tmp_path / "full.jpg", smooth_rgb(480, 640))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes())
    truncate(cut)
    before = _digest(cut)
    decoded = decode_image(cut)
    assert decoded.truncated and is_truncated_jpeg(cut.read_bytes()) and not is_truncated_jpeg(full.read_bytes())
    whole = read_image_rgb(full)
    assert decoded.pixels.shape == whole.shape
    np.testing.assert_array_equal(decoded.pixels[:100], whole[:100])  # the rows whose data is there
    assert (decoded.pixels[-1, -1] == 128).all()  # the missing rows come out grey
    # OpenCV's file reader (libjpeg) decodes cut files too: the same pixels.
    np.testing.assert_array_equal(decoded.pixels, cv2.cvtColor(cv2.imread(str(cut)), cv2.COLOR_BGR2RGB))
    assert _digest(cut) == before, "the reader wrote to the user's file"


def test_undecodable_and_missing_files_name_the_file(tmp_path: Path) -> None:
    for path, words in (
        (undecodable_jpeg(tmp_path / "junk.jpg"), "cannot decode"),
        (tmp_path / "missing.jpg", "not found"),
    ):
        with pytest.raises(DataError) as caught:
            decode_image(path)
        assert caught.value.path == str(path) and words in caught.value.message


def test_exif_rotated_photo_is_the_same_pixels_for_every_command(tmp_path: Path, rgb: np.ndarray) -> None:
    """Training, evaluation (the data set), predict and ssdcli.load (to_rgb_tensor) and encode all see the
    stored pixels of an orientation-6 photo."""
    root = tmp_path / "voc"
    write_synth(root, format="voc", images=6, seed=0, image_size=96)
    index = open_index(root, "train")
    record = index.records[0]
    photo = write_jpeg(record.path, rgb, orientation=6)
    stored = np.asarray(Image.open(photo).convert("RGB"))  # PIL does not apply the tag
    assert stored.shape == (H, W, 3)
    from_dataset = read_sized_image(record.path, W, H)
    from_predict = to_rgb_tensor(photo).permute(1, 2, 0).numpy()
    from_encode = cv2.cvtColor(encode_read_image(photo), cv2.COLOR_BGR2RGB)
    for seen in (from_dataset, from_predict, from_encode):
        np.testing.assert_array_equal(seen, stored)


def test_arrays_in_memory(rgb: np.ndarray) -> None:
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    np.testing.assert_array_equal(rgb_from_array(bgr), rgb)
    np.testing.assert_array_equal(rgb_from_array(bgr.astype(np.uint16) * 257), rgb)  # scaled, not wrapped
    np.testing.assert_array_equal(rgb_from_array(rgb[:, :, 0]), np.repeat(rgb[:, :, :1], 3, axis=2))
    for bad in (bgr.astype(np.float32) / 255, bgr.astype(np.int32)):
        with pytest.raises(DataError, match="uint8"):
            rgb_from_array(bad)


def test_load_takes_uint16_and_refuses_float(tmp_path: Path, rgb: np.ndarray) -> None:
    torch.manual_seed(0)
    model = build_model(default_config("ssd_tiny", num_classes=4))
    checkpoint = model_checkpoint(model, ("background", "a", "b", "c"))
    predictor = ssdcli.load(str(save_checkpoint(checkpoint, tmp_path / "m.pt")), conf_threshold=0.0)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    as_uint8 = predictor(bgr)[0]
    as_uint16 = predictor(bgr.astype(np.uint16) * 257)[0]
    np.testing.assert_array_equal(as_uint8.boxes, as_uint16.boxes)
    np.testing.assert_array_equal(as_uint8.scores, as_uint16.scores)
    with pytest.raises(DataError, match="uint8"):
        predictor(bgr.astype(np.float32))


def test_dataset_trains_on_a_truncated_jpeg(tmp_path: Path) -> None:
    root = tmp_path / "voc"
    write_synth(root, format="voc", images=6, seed=0, image_size=160)
    index = open_index(root, "train")
    truncate(index.records[0].path, cut=1024)
    dataset = DetectionDataset(index, 64, train=True)
    image, target = dataset[0]
    assert image.shape == (3, 64, 64) and torch.isfinite(image).all()


def test_write_image_round_trips_and_refuses_an_unknown_format(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    bgr_pixels = rng.integers(0, 255, size=(20, 30, 3), dtype=np.uint8)
    written = write_image(tmp_path / "picture.png", bgr_pixels)
    np.testing.assert_array_equal(read_image_rgb(written), bgr_pixels[..., ::-1])  # PNG is lossless
    assert [p.name for p in tmp_path.iterdir()] == ["picture.png"]  # no temporary file left beside it
    with pytest.raises(DataError, match="cannot encode the picture as .xyz") as caught:
        write_image(tmp_path / "picture.xyz", bgr_pixels)
    assert str(caught.value.path) == str(tmp_path / "picture.xyz")
    assert not (tmp_path / "picture.xyz").exists()


def test_a_far_larger_jpeg_is_decoded_at_reduced_size(tmp_path: Path) -> None:
    from messy_files import smooth_rgb, write_jpeg
    from ssdcli.data.images import decode_image

    path = write_jpeg(tmp_path / "big.jpg", smooth_rgb(1600, 2400))
    full = decode_image(path)
    reduced = decode_image(path, at_least=300)  # 1/4 keeps 400 px a side, 1/8 would leave 200
    assert full.stored_size is None and full.pixels.shape == (1600, 2400, 3)
    assert reduced.stored_size == (1600, 2400) and reduced.pixels.shape == (400, 600, 3)
    shrunk = cv2.resize(full.pixels, (600, 400), interpolation=cv2.INTER_AREA)
    assert np.abs(reduced.pixels.astype(int) - shrunk.astype(int)).mean() < 3
    assert decode_image(path, at_least=1000).stored_size is None  # no reduction keeps 1000 px a side

"""Broken and unusual image files as scraped data sets hold them, written by the tests themselves."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

EXIF_ORIENTATION = 0x0112


def smooth_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """[H, W, 3] uint8 RGB: smooth random colours (JPEG keeps them close), different in every row and column."""
    rng = np.random.default_rng(seed)
    noise = (rng.random((height, width, 3)) * 255).astype(np.uint8)
    return cv2.GaussianBlur(noise, (9, 9), 3)


def write_jpeg(path: Path, rgb: np.ndarray, orientation: int | None = None, mode: str = "RGB") -> Path:
    """An RGB (or ``mode="CMYK"``) JPEG of ``rgb`` as stored pixels, with an EXIF orientation tag if given."""
    image = Image.fromarray(rgb).convert(mode)
    kwargs = {"quality": 95}
    if orientation is not None:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        kwargs["exif"] = exif.tobytes()
    image.save(path, format="JPEG", **kwargs)
    return path


def truncate(path: Path, cut: int = 2048) -> Path:
    """Cut the last ``cut`` bytes of a file (a download that ended early); the end-of-image marker goes too."""
    data = path.read_bytes()
    assert len(data) > cut + 1024, f"{path} is too small to cut {cut} bytes from"
    path.write_bytes(data[: len(data) - cut])
    return path


def undecodable_jpeg(path: Path) -> Path:
    """A file that starts like a JPEG and then holds nothing an image decoder can use."""
    path.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)
    return path


def set_voc_size(xml: Path, width: int, height: int) -> None:
    """Rewrite the <size> of a VOC annotation file."""
    text = xml.read_text()
    text = re.sub(r"<width>\d+</width>", f"<width>{width}</width>", text, count=1)
    text = re.sub(r"<height>\d+</height>", f"<height>{height}</height>", text, count=1)
    xml.write_text(text)

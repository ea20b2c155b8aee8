"""`ssd export --int8 --calibration DIR`: which files of the folder are calibration images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ssdcli.data.images import IMAGE_SUFFIXES, write_image
from ssdcli.engine.export.quantize import MIN_CHECK_IMAGES, calibration_images


def test_calibration_takes_every_image_suffix_the_decoder_reads(tmp_path: Path) -> None:
    pixels = np.full((8, 8, 3), 90, dtype=np.uint8)
    suffixes = sorted(IMAGE_SUFFIXES - {".gif", ".webp"})  # those OpenCV encodes everywhere
    count = max(MIN_CHECK_IMAGES + 1, len(suffixes))
    written = [write_image(tmp_path / f"img{i}{suffixes[i % len(suffixes)]}", pixels) for i in range(count)]
    (tmp_path / "notes.txt").write_text("not an image")
    found = calibration_images(tmp_path)
    assert sorted(found) == sorted(written)
    assert {".tif", ".tiff"} <= {p.suffix for p in found}

"""The one image reader and writer of ssdcli: every command, the data sets and ``ssdcli.load()`` decode images
here, and every picture a command writes is encoded and written here (:func:`write_image`).

Policy (see docs/data.md):

- Pixels come out as RGB uint8 [H, W, 3] whatever the file holds: grayscale, RGBA or palette images are
  converted, 16-bit images are scaled to 8 bits, CMYK JPEGs are converted to RGB.
- Pixels come out as stored: the EXIF orientation tag is ignored, because VOC, COCO and YOLO boxes refer to the
  stored pixels (a phone photo with orientation 6 is seen lying on its side by every command alike).
- A JPEG that ends early (its end-of-image marker is missing: a download cut short) is decoded as far as its
  data goes; the missing rows come out grey. :attr:`DecodedImage.truncated` says so, the caller counts it as a
  warning.
- Anything else that does not decode is a :class:`DataError` naming the file. The file is only ever read.
- Arrays handed over in memory (:func:`rgb_from_array`) must be uint8 (taken as is) or uint16 (scaled); float
  and other dtypes are refused, since their value range is unknown.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ssdcli.errors import DataError

from .files import write_atomic

#: The file name endings of the images ssdcli decodes (a GIF: its first frame).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})

# 3-channel colour, 8 bits, pixel order as stored (no EXIF rotation).
_DECODE_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
_JPEG_START = b"\xff\xd8\xff"
_JPEG_END = b"\xff\xd9"
_JPEG_SCAN = b"\xff\xda"
_EXIF_ORIENTATION = 0x0112


#: Decoding at 1/2, 1/4 or 1/8 of the stored size (for a JPEG, libjpeg's scaled decoding: the full-size pixels
#: are never held in memory).
_REDUCED_FLAGS = {
    8: cv2.IMREAD_REDUCED_COLOR_8 | cv2.IMREAD_IGNORE_ORIENTATION,
    4: cv2.IMREAD_REDUCED_COLOR_4 | cv2.IMREAD_IGNORE_ORIENTATION,
    2: cv2.IMREAD_REDUCED_COLOR_2 | cv2.IMREAD_IGNORE_ORIENTATION,
}


@dataclass(frozen=True)
class DecodedImage:
    """pixels: [H, W, 3] uint8 RGB as stored; truncated: the file (a JPEG) ended before its image data did;
    stored_size: (height, width) of the stored image where the pixels are a reduced decoding of it, else None."""

    pixels: np.ndarray
    truncated: bool = False
    stored_size: tuple[int, int] | None = None

    @property
    def reduced(self) -> bool:
        return self.stored_size is not None

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def read_image_bytes(path: Path, limit: int = -1) -> bytes:
    """The bytes of an image file (the first ``limit`` only, if given); DataError naming it if it cannot be read."""
    try:
        with open(path, "rb") as stream:
            return stream.read(limit)
    except FileNotFoundError:
        raise DataError("image file not found", path=path) from None
    except IsADirectoryError:
        raise DataError("expected an image file, found a folder", path=path) from None
    except OSError as error:
        raise DataError(f"cannot read image: {error.strerror}", path=path) from None


def is_truncated_jpeg(data: bytes) -> bool:
    """True for JPEG data whose last scan is not followed by an end-of-image marker (the file was cut short).

    The last scan is the one that matters: an EXIF thumbnail earlier in the file has its own end marker.
    """
    if not data.startswith(_JPEG_START):
        return False
    return data.rfind(_JPEG_END) < data.rfind(_JPEG_SCAN)


def _decode_truncated_jpeg(data: bytes) -> np.ndarray | None:
    """Decode JPEG data cut short, with the end marker put back: the rows without data come out grey.

    Pillow's decoder is used here because it reports nothing on stderr (libjpeg through OpenCV prints a line
    for every such file); both give the same pixels.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data + _JPEG_END)) as image:
            return np.array(image.convert("RGB"))  # a writable copy
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None


def decode_image(path: str | Path, at_least: int | None = None) -> DecodedImage:
    """Decode an image file (see the module docstring for the policy).

    With ``at_least``, an image far larger than needed is decoded at 1/2, 1/4 or 1/8 of its stored size, the
    largest reduction that keeps both sides at least ``at_least`` pixels (``stored_size`` then says so): a
    10000x10000 photo for a 300-pixel network takes 1/64 of the memory.

    Raises:
        DataError: naming the file, if it is missing, empty, or not a decodable image.
    """
    path = Path(path)
    data = read_image_bytes(path)
    if not data:
        raise DataError("image file is empty", path=path)
    if is_truncated_jpeg(data):
        pixels = _decode_truncated_jpeg(data)
        if pixels is None:
            raise DataError("cannot decode image: a JPEG cut short before its first rows", path=path)
        return DecodedImage(np.ascontiguousarray(pixels), truncated=True)
    stored = _stored_size(data) if at_least is not None else None
    factor = _reduction(stored, at_least) if stored is not None and at_least is not None else 1
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _REDUCED_FLAGS.get(factor, _DECODE_FLAGS))
    if bgr is None:
        raise DataError("cannot decode image (corrupt or not an image)", path=path)
    return DecodedImage(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), stored_size=stored if factor > 1 else None)


def _stored_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) of the image in ``data`` from its header (nothing decoded); None if Pillow cannot tell."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # the size of a large photo is what is asked, not a warning about it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        return None
    return int(height), int(width)


def _reduction(stored: tuple[int, int], at_least: int) -> int:
    """The largest of 8, 4, 2 that keeps both sides of ``stored`` at least ``at_least`` pixels; 1 if none does."""
    return next((factor for factor in _REDUCED_FLAGS if min(stored) // factor >= at_least), 1)


def exif_orientation(path: str | Path) -> int:
    """The EXIF orientation tag of an image file (1 = upright, 6 = turned 90 degrees, ...); 1 when it has none.

    Read from the header only. The reader ignores the tag; this tells checks which files a viewer shows turned.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def read_image_rgb(path: str | Path) -> np.ndarray:
    """[H, W, 3] uint8 RGB pixels of an image file; :func:`decode_image` without the truncation flag."""
    return decode_image(path).pixels


def rgb_from_array(array: np.ndarray, channel_order: str = "bgr") -> np.ndarray:
    """An image array handed over in memory -> [H, W, 3] uint8 RGB.

    Args:
        array: [H, W] or [H, W, 1] (grayscale), [H, W, 3] or [H, W, 4] (colour, alpha dropped); uint8 is taken
            as is, uint16 is scaled to 8 bits (the high byte, as for 16-bit files).
        channel_order: ``"bgr"`` (OpenCV's order, the default) or ``"rgb"``.

    Raises:
        DataError: for another dtype (float arrays have no agreed range: convert them to uint8 first) or shape.
    """
    if not isinstance(array, np.ndarray):
        raise DataError(f"expected a numpy image array, got a {type(array).__name__}")
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)  # as OpenCV reduces 16-bit files
    elif array.dtype != np.uint8:
        raise DataError(
            f"image arrays must be uint8 (or uint16), got {array.dtype}; convert first, e.g. "
            "(image * 255).round().astype(np.uint8) for floats in [0, 1]"
        )
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise DataError(f"expected an image array [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got shape {array.shape}")
    if array.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(array, 3, axis=2))
    colour = np.ascontiguousarray(array[:, :, :3])
    if channel_order == "bgr":
        return cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)
    if channel_order == "rgb":
        return colour
    raise ValueError(f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}")


def write_image(path: str | Path, image_bgr: np.ndarray) -> Path:
    """Encode ``image_bgr`` [H, W, 3] uint8 in the format of ``path``'s suffix (.png, .jpg, ...) and write it
    atomically (a temporary file, then a rename); a :class:`DataError` naming ``path`` if it cannot be."""
    path = Path(path)
    try:
        encoded, data = cv2.imencode(path.suffix.lower() or ".png", image_bgr)
    except cv2.error:
        encoded = False
    if not encoded:
        raise DataError(f"cannot encode the picture as {path.suffix or 'an image'}", path=path)
    return write_atomic(path, data.tobytes())

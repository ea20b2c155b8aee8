"""Reading VOC annotation XML files and split lists, with errors that name the file.

Coordinates: VOC files hold 1-based pixel indices (xmin = 1 is the first pixel column). :class:`VocObject` keeps
them as written (``xyxy_devkit``) and offers the 0-based continuous form used everywhere else in ssdcli
(``xyxy``: x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax, so that width = xmax - xmin + 1).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from ssdcli.errors import DataError

from ..files import read_text


@dataclass(frozen=True)
class VocObject:
    name: str
    xyxy_devkit: tuple[float, float, float, float]
    difficult: bool
    truncated: bool

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        """0-based continuous pixel box (x1, y1, x2, y2)."""
        x1, y1, x2, y2 = self.xyxy_devkit
        return (x1 - 1.0, y1 - 1.0, x2, y2)


@dataclass(frozen=True)
class VocAnnotation:
    path: Path
    filename: str
    width: int | None
    height: int | None
    objects: tuple[VocObject, ...]


def _text(node: ET.Element, tag: str, path: Path, required: bool = True) -> str | None:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        if required:
            raise DataError(f"malformed VOC XML: missing <{tag}>", path=path)
        return None
    return child.text.strip()


def _number(node: ET.Element, tag: str, path: Path) -> float:
    text = _text(node, tag, path)
    try:
        value = float(text)  # type: ignore[arg-type]
    except ValueError:
        raise DataError(f"malformed VOC XML: <{tag}> is not a number: {text!r}", path=path) from None
    if not math.isfinite(value):
        raise DataError(f"malformed VOC XML: <{tag}> is not a finite number: {text!r}", path=path)
    return value


def _flag(node: ET.Element, tag: str, path: Path) -> bool:
    text = _text(node, tag, path, required=False)
    if text is None:
        return False
    try:
        return bool(int(float(text)))
    except ValueError:
        raise DataError(f"malformed VOC XML: <{tag}> is not 0 or 1: {text!r}", path=path) from None


def parse_voc_xml(path: str | Path) -> VocAnnotation:
    """Parse one VOC annotation file. Raises :class:`DataError` naming the file if it is missing or malformed."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise DataError("annotation file not found", path=path) from None
    except ET.ParseError as error:
        raise DataError(f"malformed VOC XML: {error}", path=path) from None
    except OSError as error:
        raise DataError(f"cannot read annotation: {error.strerror}", path=path) from None
    if root.tag != "annotation":
        raise DataError(f"malformed VOC XML: root element is <{root.tag}>, expected <annotation>", path=path)
    filename = _text(root, "filename", path, required=False) or path.with_suffix(".jpg").name
    size = root.find("size")
    width = height = None
    if size is not None and size.find("width") is not None and size.find("height") is not None:
        width, height = int(_number(size, "width", path)), int(_number(size, "height", path))
    objects = []
    for obj in root.findall("object"):
        name = _text(obj, "name", path)
        box = obj.find("bndbox")
        if box is None:
            raise DataError(f"malformed VOC XML: object {name!r} has no <bndbox>", path=path)
        xyxy = tuple(_number(box, tag, path) for tag in ("xmin", "ymin", "xmax", "ymax"))
        objects.append(VocObject(name, xyxy, _flag(obj, "difficult", path), _flag(obj, "truncated", path)))  # type: ignore[arg-type]
    return VocAnnotation(path, filename, width, height, tuple(objects))


def read_split(root: str | Path, split: str) -> list[str]:
    """Image ids listed in ``root/ImageSets/Main/<split>.txt`` (first column; blank lines skipped)."""
    path = Path(root) / "ImageSets" / "Main" / f"{split}.txt"
    if not path.exists():
        raise DataError(f"split file not found (split {split!r})", path=path)
    lines = read_text(path, "split file").splitlines()
    ids = [line.split()[0] for line in lines if line.strip()]
    if not ids:
        raise DataError(f"split {split!r} lists no images", path=path)
    return ids

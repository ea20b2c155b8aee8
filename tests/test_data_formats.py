"""The data format registry: its names are the ones the configuration and the CLI offer, and a format added to it
(tests/dummy_format.py, nowhere in src/) is opened, checked and converted to with no other change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ssdcli.cli.command import DataFormat
from ssdcli.cli.data import TargetFormat
from ssdcli.config import DATA_FORMATS
from ssdcli.data import formats
from ssdcli.data.check import check_dataset
from ssdcli.data.convert import convert_dataset
from ssdcli.data.dataset import open_index
from ssdcli.data.synth import write_synth

sys.path.insert(0, str(Path(__file__).parent))
from dummy_format import DUMMY

TESTS = Path(__file__).parent


def test_config_and_cli_offer_the_registry_names() -> None:
    assert DATA_FORMATS == ("auto", "voc", "coco", "yolo")
    assert formats.format_names() == DATA_FORMATS[1:]
    assert [f.value for f in DataFormat] == list(DATA_FORMATS)
    assert [f.value for f in TargetFormat] == list(DATA_FORMATS[1:])


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    write_synth(tmp_path / "voc", format="voc", images=6, seed=0, image_size=48)
    return tmp_path / "voc"


@pytest.fixture
def with_dummy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formats, "FORMATS", (*formats.FORMATS, DUMMY))


@pytest.mark.usefixtures("with_dummy")
def test_a_registered_format_is_converted_to_detected_opened_and_checked(voc: Path, tmp_path: Path) -> None:
    out = tmp_path / "dummy"
    result = convert_dataset(voc, "dummy", out)
    assert result.format == "dummy" and (out / "boxes.json").is_file()
    assert formats.detect_format(out) is DUMMY
    source, copy = open_index(voc, "train"), open_index(out, "train")
    assert copy.format == "dummy" and copy.class_names == source.class_names
    assert [r.path.name for r in copy.records] == [r.path.name for r in source.records]
    for a, b in zip(source.records, copy.records):
        np.testing.assert_allclose(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.labels, b.labels)
    report = check_dataset(out, decode=False)
    assert report.format == "dummy"
    assert [s.split for s in report.splits] == ["train", "val", "trainval", "test"]
    assert sum(s.objects for s in report.splits) == result.objects


def test_without_the_entry_the_format_is_unknown(voc: Path, tmp_path: Path) -> None:
    from ssdcli.errors import UsageError

    with pytest.raises(UsageError, match="unknown target format 'dummy'"):
        convert_dataset(voc, "dummy", tmp_path / "out")


def _ssd_with_dummy(args: list[str]) -> subprocess.CompletedProcess[str]:
    """``ssd *args`` in a fresh interpreter whose registry holds the dummy format (added before the CLI loads)."""
    code = (
        f"import sys; sys.path.insert(0, {str(TESTS)!r}); from dummy_format import DUMMY; "
        "from ssdcli.data import formats; formats.FORMATS = (*formats.FORMATS, DUMMY); "
        f"from ssdcli.cli.app import main; main({args!r})"
    )
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


@pytest.mark.slow
def test_the_cli_converts_to_and_checks_a_registered_format(voc: Path, tmp_path: Path) -> None:
    out = tmp_path / "dummy"
    converted = _ssd_with_dummy(["data", "convert", str(voc), str(out), "--to", "dummy"])
    assert converted.returncode == 0, converted.stderr
    assert "wrote DUMMY data set" in converted.stdout
    assert set(json.loads((out / "boxes.json").read_text())) == {"train", "val", "trainval", "test"}
    checked = _ssd_with_dummy(["data", "check", str(out), "--json", "-"])
    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)
    assert report["format"] == "dummy" and report["classes"] == ["circle", "square", "triangle"]
    shown = _ssd_with_dummy(["data", "convert", "--help"]).stdout
    assert "<voc|coco|yolo|dummy>" in shown and "YOLO root or data.yaml, DUMMY root." in shown


def test_messages_built_from_the_registry_read_as_before(tmp_path: Path) -> None:
    from ssdcli.errors import DataError, UsageError

    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError) as folder:
        formats.detect_format(tmp_path / "empty")
    assert folder.value.message == (
        "cannot tell the data set format: expected Annotations/ and ImageSets/ (VOC), "
        "annotations/instances_<split>.json (COCO), or data.yaml or images/ and labels/ (YOLO)"
    )
    with pytest.raises(DataError) as file:
        formats.detect_format(tmp_path / "notes.txt")
    assert file.value.message == (
        "cannot tell the data set format: expected a folder, a COCO .json file or a YOLO data.yaml"
    )
    with pytest.raises(UsageError, match=r"unknown data set format 'pascal' \(choose from auto, voc, coco, yolo\)"):
        open_index(tmp_path / "empty", "train", format="pascal")
    (tmp_path / "voc" / "Annotations").mkdir(parents=True)
    (tmp_path / "voc" / "ImageSets").mkdir()
    with pytest.raises(DataError, match=r"no splits found: expected ImageSets/Main/<split>.txt \(VOC layout\)"):
        check_dataset(tmp_path / "voc")

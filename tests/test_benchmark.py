"""`ssd benchmark`: the checkpoint and its exports timed and evaluated on a split, in one table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from conftest import model_checkpoint, sharpen_class_head
from ssdcli.cli.app import main
from ssdcli.config import BenchmarkConfig
from ssdcli.data.synth import SYNTH_CLASSES, write_synth
from ssdcli.engine.checkpoint import save_checkpoint
from ssdcli.models.build import build_model
from ssdcli.models.spec import default_config


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny synthetic VOC set (about 20 training images: enough to calibrate INT8) and an untrained ssd_tiny
    whose class head is scaled up, so that some detections land on objects and the mAP is not 0."""
    root = tmp_path_factory.mktemp("benchmark")
    write_synth(root / "data", format="voc", images=30, seed=0)
    torch.manual_seed(0)
    model = build_model(default_config("ssd_tiny", num_classes=len(SYNTH_CLASSES) + 1))
    sharpen_class_head(model, 25.0)
    path = save_checkpoint(model_checkpoint(model, ("background", *SYNTH_CLASSES)), root / "best.pt")
    return root / "data", path


@pytest.mark.slow
def test_benchmark_measures_every_installed_form(synth: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime", reason="the ONNX rows need onnxruntime (pip install 'ssdcli[onnx]')")
    data, checkpoint = synth
    out = tmp_path / "benchmark.json"
    args = ["benchmark", "--checkpoint", str(checkpoint), "--data", str(data), "--split", "val", "--batch-size", "2"]
    assert main(args + ["--runs", "1", "--warmup", "0", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    table = json.loads(out.read_text())
    rows = {row["format"]: row for row in table["rows"]}
    assert [row["format"] for row in table["rows"]] == ["checkpoint", "torchscript", "onnx", "onnx-int8", "openvino"]
    assert table["split"] == "val" and table["batch_size"] == 2
    assert table["images"] == len((data / "ImageSets" / "Main" / "val.txt").read_text().split())
    reference = rows["checkpoint"]
    assert reference["size_bytes"] == checkpoint.stat().st_size
    assert reference["map50"] > 0.0, "the model finds nothing: the comparison would mean nothing"
    exact = ["torchscript", "onnx", "openvino"] if _installed("openvino") else ["torchscript", "onnx"]
    if not _installed("openvino"):
        assert "pip install 'ssdcli[openvino]'" in rows["openvino"]["note"]
    for form in exact:  # float32 exports keep the checkpoint's figures
        row = rows[form]
        assert row["map50"] == pytest.approx(reference["map50"], abs=1e-3), form
        assert row["coco_ap"] == pytest.approx(reference["coco_ap"], abs=1e-3), form
        assert abs(row["map50_change"]) <= 1e-3 and row["ms_batch1"] > 0 and row["ms_batch"] > 0, form
    int8 = rows["onnx-int8"]
    assert int8["note"].startswith("export refused") or int8["size_bytes"] < reference["size_bytes"] / 2
    for form in ("checkpoint", "torchscript", "onnx", "onnx-int8", "openvino"):
        assert form in printed


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_a_form_whose_package_is_missing_is_a_row_saying_how_to_install_it(
    synth: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ssdcli.engine.benchmark import run_benchmark

    monkeypatch.setitem(sys.modules, "openvino", None)  # as if it were not installed
    data, checkpoint = synth
    config = BenchmarkConfig(checkpoint, data, "val", batch_size=2, runs=1, warmup=0, formats=("openvino",))
    result = run_benchmark(config)
    assert [row.format for row in result.rows] == ["checkpoint", "openvino"]
    missing = result.rows[1]
    assert "pip install 'ssdcli[openvino]'" in missing.note
    assert missing.map50 is None and missing.ms_batch1 is None
    assert result.rows[0].map50 is not None and result.rows[0].note == ""


def test_benchmark_settings_are_checked_when_made(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ssdcli.errors import UsageError

    with pytest.raises(UsageError, match="batch_size"):
        BenchmarkConfig(tmp_path / "best.pt", tmp_path, batch_size=1)
    with pytest.raises(UsageError, match="formats"):
        BenchmarkConfig(tmp_path / "best.pt", tmp_path, formats=("tflite",))
    args = ["benchmark", "--checkpoint", str(tmp_path / "best.pt"), "--data", str(tmp_path), "--batch-size", "1"]
    assert main(args) == 2
    assert "--batch-size" in capsys.readouterr().err


def test_the_table_shows_a_missing_package_row_and_signed_differences() -> None:
    from rich.console import Console

    from ssdcli.cli.benchmark import render_notes, render_table
    from ssdcli.engine.benchmark import BenchmarkResult, BenchmarkRow

    rows = (
        BenchmarkRow("checkpoint", 2_000_000, 10.0, 5.0, 0.5, 0.25, 0.0, 0.0),
        BenchmarkRow("onnx-int8", 500_000, 4.0, 2.0, 0.49, 0.2499, -0.01, -0.0001),
        BenchmarkRow("openvino", note="openvino not installed: pip install 'ssdcli[openvino]'"),
    )
    console = Console(width=80, record=True)  # as when the output goes to a file
    result = BenchmarkResult(rows, "val", 6, 4)
    console.print(render_table(result))
    for line in render_notes(result):
        console.print(line, soft_wrap=True)
    text = console.export_text()
    assert "ms b4" in text and "-0.010" in text and "-0.000" not in text
    assert "pip install 'ssdcli[openvino]'" in text
    openvino_line = next(line for line in text.splitlines() if "openvino" in line)
    assert openvino_line.count("—") == 5  # size, both times, both figures: none measured

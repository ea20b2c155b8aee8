"""Fixtures shared by several test files, and suite-wide reporting: tests that need the shared BCCD copy say so in
one line when it is missing."""

from __future__ import annotations

import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from ssdcli.data.synth import SYNTH_CLASSES
from ssdcli.engine.checkpoint import Checkpoint, save_checkpoint
from ssdcli.models.build import build_model
from ssdcli.models.spec import ModelSpec, default_config
from ssdcli.models.ssd import SSD

BCCD_SKIP = "BCCD data set not available"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if isinstance(report.longrepr, tuple) and BCCD_SKIP in str(report.longrepr[2])
    ]
    if skipped:
        terminalreporter.write_line(
            f"SKIPPED {len(skipped)} tests on real data: ../shared/data/bccd/BCCD not found next to the checkout",
            yellow=True,
            bold=True,
        )


def model_checkpoint(model: SSD, class_names: Sequence[str], category_ids: Sequence[int] | None = None) -> Checkpoint:
    """A checkpoint of ``model``'s weights for ``class_names`` (index 0 the background); category ids the labels
    themselves unless given."""
    ids = tuple(range(len(class_names))) if category_ids is None else tuple(category_ids)
    return Checkpoint(ModelSpec(model.config, tuple(class_names), ids), model.state_dict())


def sharpen_class_head(model: SSD, factor: float) -> SSD:
    """``model`` with its class predictors' weights multiplied by ``factor``: an untrained network whose scores are
    decisive, so that its detections are few and stable enough to compare between runtimes."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.startswith("head.conf."):
                parameter.mul_(factor)
    return model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ssd_tiny checkpoint (seed 0) for the synthetic set's classes."""
    classes = ("background", *SYNTH_CLASSES)
    torch.manual_seed(0)
    model = build_model(default_config("ssd_tiny", num_classes=len(classes)))
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    save_checkpoint(model_checkpoint(model, classes), path)
    return path


@pytest.fixture
def no_downloads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty torch hub cache under tmp_path, and every download path made to fail the test."""

    def forbidden(*args: object, **kwargs: object) -> None:
        pytest.fail("tried to download")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", forbidden)
    monkeypatch.setattr(torch.hub, "download_url_to_file", forbidden)
    monkeypatch.setattr(urllib.request, "urlopen", forbidden)
    return tmp_path / "torch" / "hub" / "checkpoints"

"""`ssd weights` and `ssd train --download`: torchvision's weights downloaded into the torch cache on request only,
checked against the SHA-256 prefix of their file name; no network (file:// URLs to small files made here)."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest
import torch
from torchvision.models import MobileNet_V3_Large_Weights
from torchvision.models.detection import SSDLite320_MobileNet_V3_Large_Weights, ssdlite320_mobilenet_v3_large

from ssdcli.cli.app import main
from ssdcli.config import ModelSettings
from ssdcli.engine.weights import fetch_weights, list_weights, training_weights
from ssdcli.errors import UsageError

BACKBONE = MobileNet_V3_Large_Weights.IMAGENET1K_V1
BACKBONE_NAME = "MobileNet_V3_Large_Weights.IMAGENET1K_V1"
DETECTOR = SSDLite320_MobileNet_V3_Large_Weights.COCO_V1
DETECTOR_NAME = "SSDLite320_MobileNet_V3_Large_Weights.COCO_V1"


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The torch hub cache's checkpoints folder under tmp_path (TORCH_HOME), empty."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def _publish(state: dict[str, torch.Tensor], folder: Path, stem: str, prefix: str | None = None) -> Path:
    """``state`` saved as ``<stem>-<prefix>.pth`` in ``folder``; ``prefix``: the file's SHA-256 prefix by default,
    as torchvision names its files."""
    folder.mkdir(parents=True, exist_ok=True)
    staged = folder / "staged.pth"
    torch.save(state, staged)
    prefix = hashlib.sha256(staged.read_bytes()).hexdigest()[:8] if prefix is None else prefix
    return staged.rename(folder / f"{stem}-{prefix}.pth")


def _serve(monkeypatch: pytest.MonkeyPatch, weights: object, file: Path) -> None:
    """Make torchvision's entry ``weights`` point at ``file`` (a file:// URL)."""
    monkeypatch.setattr(weights.value, "url", file.as_uri())  # type: ignore[attr-defined]


def _tiny(tmp_path: Path) -> Path:
    return _publish({"weight": torch.arange(6.0).reshape(2, 3)}, tmp_path / "published", "tiny")


def test_fetch_writes_the_cache_file_and_a_second_fetch_does_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    published = _tiny(tmp_path)
    _serve(monkeypatch, BACKBONE, published)
    assert not next(e for e in list_weights() if e.name == BACKBONE_NAME).cached
    assert main(["weights", "fetch", BACKBONE_NAME.lower(), "--no-progress"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    cached = cache / published.name
    assert cached.read_bytes() == published.read_bytes()
    assert f"{BACKBONE_NAME}: downloaded: {cached}" in out
    assert next(e for e in list_weights() if e.name == BACKBONE_NAME).cached

    published.unlink()  # a second fetch must not read the URL: it would fail now
    assert main(["weights", "fetch", BACKBONE_NAME]) == 0
    assert f"{BACKBONE_NAME}: in the torch cache already: {cached}" in " ".join(capsys.readouterr().out.split())
    [result] = fetch_weights([BACKBONE_NAME])
    assert not result.downloaded and result.path == cached


def test_list_names_every_weight_and_which_are_cached(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    cache.mkdir(parents=True)
    (cache / Path(DETECTOR.url).name).write_bytes(b"")
    assert main(["weights", "list"]) == 0
    rows = {line.split("│")[1].strip(): line for line in capsys.readouterr().out.splitlines() if "│" in line}
    assert set(rows) >= {BACKBONE_NAME, DETECTOR_NAME, "VGG16_Weights.IMAGENET1K_V1", "SSD300_VGG16_Weights.COCO_V1"}
    assert "COCO detector" in rows[DETECTOR_NAME] and "13.4 MB" in rows[DETECTOR_NAME]
    assert rows[DETECTOR_NAME].rstrip("│ ").endswith("yes")
    assert rows[BACKBONE_NAME].rstrip("│ ").endswith("no") and "ssdlite320_mobilenet_v3_large" in rows[BACKBONE_NAME]
    vgg = next(e for e in list_weights() if e.name == "VGG16_Weights.IMAGENET1K_V1")
    assert vgg.kind == "backbone" and vgg.archs == ("ssd300_vgg16", "ssd512_vgg16")


def test_a_download_that_does_not_match_its_checksum_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = {"weight": torch.ones(3)}
    published = _publish(state, tmp_path / "published", "tiny", prefix="00000000")
    assert not hashlib.sha256(published.read_bytes()).hexdigest().startswith("00000000")
    _serve(monkeypatch, BACKBONE, published)
    assert main(["weights", "fetch", BACKBONE_NAME, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {cache / published.name}: ") and "SHA-256" in err[0]
    assert not (cache / published.name).exists()


def test_an_unreachable_url_is_one_line_naming_the_url_and_the_file_to_place(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = tmp_path / "nowhere" / "tiny-12345678.pth"
    _serve(monkeypatch, BACKBONE, gone)
    assert main(["weights", "fetch", BACKBONE_NAME]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"error: {cache / gone.name}: could not download {BACKBONE_NAME} from {gone.as_uri()}")
    assert not (cache / gone.name).exists()


def test_no_network_names_torchvisions_url_and_the_cache_file(
    monkeypatch: pytest.MonkeyPatch, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "urlopen", offline)
    assert main(["weights", "fetch", DETECTOR_NAME]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    expected = f"error: {cache / 'ssdlite320_mobilenet_v3_large_coco-a79551df.pth'}: could not download"
    assert len(err) == 1 and err[0].startswith(expected) and DETECTOR.url in err[0] and "name resolution" in err[0]


def test_unknown_names_and_downloads_with_nothing_to_download_are_refused(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["weights", "fetch", "VGG17_Weights.X"]) == 2
    err = capsys.readouterr().err
    assert "unknown weights VGG17_Weights.X" in err and BACKBONE_NAME in err and len(err.strip().splitlines()) == 1
    assert main(["train", "--download", "--out", str(cache.parent / "runs")]) == 2
    err = capsys.readouterr().err
    assert "--download" in err and "--backbone-weights" in err and len(err.strip().splitlines()) == 1
    assert not cache.exists()


def test_training_weights_follow_the_options() -> None:
    assert training_weights(ModelSettings(weights=DETECTOR_NAME.lower())) == [DETECTOR_NAME]
    vgg = ModelSettings(arch="ssd300_vgg16", backbone_weights="imagenet")
    assert training_weights(vgg) == ["VGG16_Weights.IMAGENET1K_V1"]
    with pytest.raises(UsageError, match="no ImageNet weights"):
        training_weights(ModelSettings(arch="ssd_tiny", backbone_weights="imagenet"))
    with pytest.raises(UsageError, match="download fetches"):
        training_weights(ModelSettings(weights="runs/train/1/best.pt"))


@pytest.mark.slow
def test_train_download_fetches_the_detector_it_then_starts_from(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    state = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).state_dict()
    published = _publish(state, tmp_path / "published", "ssdlite320_mobilenet_v3_large_coco")
    _serve(monkeypatch, DETECTOR, published)
    args = ["train", "--weights", DETECTOR_NAME, "--out", str(tmp_path / "runs"), "--epochs", "1",
            "--max-steps-per-epoch", "1", "--batch-size", "2", "--synth-images", "8", "--workers", "0",
            "--eval-every", "0", "--device", "cpu"]  # fmt: skip
    assert main(args) == 2  # not in the cache, and not downloaded without --download
    assert "never downloaded" in capsys.readouterr().err and not cache.exists()
    assert main([*args, "--download"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"{DETECTOR_NAME}: downloaded: {cache / published.name}" in out
    assert f"--weights {published.name}: ssdlite320_mobilenet_v3_large, backbone and box head kept" in out
    assert (tmp_path / "runs" / "1" / "last.pt").is_file()

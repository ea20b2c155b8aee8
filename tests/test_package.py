"""The package surface: the core engine importable from ``ssdcli``, and a command line that starts without torch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import ssdcli


def test_core_exports_resolve() -> None:
    for name in ("AnchorLayout", "BUILTIN_LAYOUTS", "default_boxes", "encode", "match", "decode", "ssd_loss", "postprocess"):
        assert getattr(ssdcli, name) is not None
    assert ssdcli.default_boxes("ssd300").shape == (8732, 4)


@pytest.mark.parametrize(
    "args",
    [["--help"], ["--version"], ["eval", "--help"], ["predict", "--help"], ["export", "--help"], ["encode", "--help"],
     ["data", "check", "--help"], ["demo", "--help"]],  # fmt: skip
    ids=" ".join,
)
def test_help_and_version_do_not_import_torch(args: list[str]) -> None:
    """Help and version come at once: torch is not imported to print them."""
    assert _help_without_torch(args)[1] == "False"


def test_train_help_lists_the_architectures_without_torch() -> None:
    """``ssd train --help`` reads the architecture registry (names, descriptions, default learning rates) without
    importing torch."""
    from ssdcli.models.zoo import ARCHITECTURES

    shown, torch_imported = _help_without_torch(["train", "--help"])
    assert torch_imported == "False"
    assert all(name in shown for name in ARCHITECTURES)
    assert "sgd 0.01, adamw 0.001" in shown
    assert "ssd_tiny, ssd_tiny256 0.05 / 0.003" in shown


def _help_without_torch(args: list[str]) -> tuple[str, str]:
    """What ``ssd *args`` prints (200 columns wide) in a fresh interpreter, and whether torch was imported then
    (``"True"`` or ``"False"``)."""
    code = f"import sys; from ssdcli.cli.app import main; main({args!r}); print('torch' in sys.modules)"
    env = {**os.environ, "COLUMNS": "200"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    shown, _, last = out.strip().rpartition("\n")
    return shown, last

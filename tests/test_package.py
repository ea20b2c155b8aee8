"""The package surface: the core engine importable from ``ssdcli``, and a command line that starts without torch."""

from __future__ import annotations

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
    """Help and version come at once: torch is not imported to print them (``ssd train --help`` lists the
    architectures from the model registry, which does import it)."""
    code = f"import sys; from ssdcli.cli.app import main; main({args!r}); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"

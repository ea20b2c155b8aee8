"""Output that reads well outside a terminal (CI, tee, nohup): one line per message, no progress bars."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from ssdcli.cli.app import main
from ssdcli.cli.render import live_display, stdout_console


@pytest.mark.slow
def test_each_epoch_is_one_line_in_a_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "--synth-images", "16", "--batch-size", "4", "--epochs", "2", "--max-steps-per-epoch", "2"]
    assert main([*args, "--workers", "0", "--device", "cpu", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2, lines
    for line in epochs:
        assert len(line) > 80  # longer than the width a log is assumed to have
        assert re.search(r"loss_conf \d+\.\d{4} .* seconds \d+\.\d{4}(  \(new best\))?$", line), line
    assert epochs[0].endswith("  (new best)"), epochs  # the first validated epoch is the best so far
    best = [k for k, line in enumerate(lines) if "best checkpoint" in line]
    assert best == [len(lines) - 2], lines  # named once, in the closing lines, after every epoch's line
    assert not [line for line in lines if re.match(r"\s*\d", line)], lines  # no number wrapped onto a line of its own
    assert not [line for line in lines if "check images" in line or "…" in line], lines  # no progress bars


def test_long_lines_are_not_wrapped_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    text = "epoch 1: " + "  ".join(f"metric_{i} {i}.1234" for i in range(12))
    stdout_console().print(text)
    assert capsys.readouterr().out == text + "\n"


def test_progress_bars_only_where_they_redraw() -> None:
    assert not live_display(Console(file=io.StringIO()))
    assert live_display(Console(file=io.StringIO(), force_terminal=True, force_interactive=True))

"""`--help` shows help texts as written: square brackets (``pip install 'ssdcli[tensorboard]'``) are text, not
Rich markup."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer

from ssdcli.cli.app import app, main


def _commands() -> list[tuple[list[str], Any]]:
    """Every command and group of the app with its words after ``ssd`` ([] for ``ssd`` itself)."""
    root = typer.main.get_command(app)
    found: list[tuple[list[str], Any]] = []

    def walk(path: list[str], command: Any) -> None:
        found.append((path, command))
        for name, sub in getattr(command, "commands", {}).items():
            walk([*path, name], sub)

    walk([], root)
    return found


def _bracketed(text: str | None) -> list[str]:
    """``[...]`` parts that Rich would read as a markup tag (they start with a letter, '#', '/' or '@')."""
    return re.findall(r"\[[a-zA-Z#/@][^\[\]]*\]", text or "")


@pytest.fixture(autouse=True)
def wide_help(monkeypatch: pytest.MonkeyPatch) -> None:
    """Help in 200 columns, so that no word is cut to fit a narrow column."""
    monkeypatch.setenv("COLUMNS", "200")


def test_train_help_shows_the_tensorboard_extra(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--help"]) == 0
    assert "ssdcli[tensorboard]" in capsys.readouterr().out


@pytest.mark.parametrize("path", [" ".join(path) for path, _ in _commands()])
def test_every_bracketed_part_of_a_help_text_is_shown(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    command = dict((" ".join(p), c) for p, c in _commands())[path]
    texts = [command.help] + [getattr(param, "help", None) for param in command.params]
    expected = [part.replace("\\[", "[") for text in texts for part in _bracketed((text or "").replace("\\[", "["))]
    assert main([*path.split(), "--help"]) == 0
    shown = capsys.readouterr().out
    for part in expected:
        assert part in shown, f"{path or 'ssd'} --help lost {part!r}"

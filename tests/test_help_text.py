"""`--help` shows help texts as written: square brackets (``pip install 'ssdcli[tensorboard]'``) are text, not
Rich markup."""

from __future__ import annotations

import re
from pathlib import Path
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


def _leaf(words: list[str]) -> tuple[list[str], Any, list[str]]:
    """The command that ``ssd WORDS...`` runs, its words, and the arguments left for it."""
    commands = dict((tuple(p), c) for p, c in _commands())
    path: list[str] = []
    rest = list(words)
    while rest and (*path, rest[0]) in commands:
        path.append(rest.pop(0))
    return path, commands[tuple(path)], rest


def _option_names(command: Any) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts) if opt.startswith("-")}


_REFERENCE = re.compile(r"'ssd ((?:[a-z]+ )*)(--[a-z0-9-]+)")  # 'ssd eval --results': another command's option


@pytest.mark.parametrize("path", [" ".join(path) for path, _ in _commands()])
def test_every_option_named_in_a_help_text_exists(path: str) -> None:
    """Help that cannot drift: each --flag an option's help names is an option of that command, or of the command
    it quotes ('ssd export --to onnx')."""
    command = dict((" ".join(p), c) for p, c in _commands())[path]
    own = _option_names(command) | {"--help"}
    for param in command.params:
        text = getattr(param, "help", None) or ""
        for words, option in _REFERENCE.findall(text):
            _, other, rest = _leaf(words.split())
            assert not rest and option in _option_names(other), f"{path} {param.opts}: 'ssd {words}{option}'"
        unquoted = _REFERENCE.sub("", text)
        for option in re.findall(r"(?<![\w'-])(--[a-z0-9][a-z0-9-]*)", unquoted):
            assert option in own, f"ssd {path} {param.opts[0]}: its help names {option}, which it does not have"


@pytest.mark.parametrize("path", [" ".join(path) for path, _ in _commands()])
def test_help_shows_flags_without_a_value_and_arguments_plainly(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*path.split(), "--help"]) == 0
    shown = capsys.readouterr().out
    assert "<bool>" not in shown  # a flag takes no value
    usage = next(line for line in shown.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage, usage


def test_data_formats_and_targets_are_choices_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    """--format takes the same four layouts in every command that reads a data set, refused at parse time."""
    for words in (["train"], ["eval"], ["predict"], ["encode"], ["data", "check"], ["data", "convert"]):
        _, command, _ = _leaf(words)
        (option,) = [param for param in command.params if "--format" in param.opts]
        assert [c.value for c in option.type_descriptor.choices or ()] == ["auto", "voc", "coco", "yolo"], words
    _, export, _ = _leaf(["export"])
    (to,) = [param for param in export.params if "--to" in param.opts]
    assert [c.value for c in to.type_descriptor.choices or ()] == ["onnx", "torchscript", "openvino"]
    assert main(["export", "--checkpoint", "x.pt", "--to", "tflite"]) == 2
    assert "tflite" in capsys.readouterr().err


@pytest.mark.parametrize("path", [" ".join(path) for path, _ in _commands() if path])
def test_every_help_example_parses(path: str) -> None:
    """The examples of each command's help are command lines the current parser takes."""
    command = dict((" ".join(p), c) for p, c in _commands())[path]
    examples = [line.split("  #")[0].strip() for line in (command.help or "").splitlines()]
    for example in [line for line in examples if line.startswith("ssd ")]:
        parse_command_line(example)


def parse_command_line(line: str) -> None:
    """Parse ``ssd ...`` as the CLI would, without running it; fails on an unknown option, a bad choice, a missing
    value or argument."""
    import shlex

    words = shlex.split(line)[1:]
    path, command, rest = _leaf(words)
    assert path, line
    command.make_context(f"ssd {' '.join(path)}", rest)


@pytest.mark.parametrize(
    "args",
    [
        ["predict", "imgs", "--json", "--conf", "0.05", "--checkpoint", "x.pt"],
        ["eval", "--checkpoint", "x.pt", "--data", "d", "--json", "--force"],
        ["data", "check", "d", "--json", "--strict"],
        ["encode", "--data", "--split", "test"],
    ],
)
def test_a_path_option_does_not_take_the_next_option_as_its_value(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expects a file name" in err[0], err
    assert list(tmp_path.iterdir()) == []  # no file named after the option


def test_a_dash_alone_is_still_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--coco", "--json", "-"]) == 2  # gets past parsing: '-' is a value
    assert "expects a file name" not in capsys.readouterr().err


def test_eval_without_a_model_or_mode_names_every_way_in(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--data", "d", "--split", "test"]) == 2
    err = capsys.readouterr().err
    for option in ("--checkpoint", "--onnx", "--torchscript", "--coco", "--voc"):
        assert option in err, err

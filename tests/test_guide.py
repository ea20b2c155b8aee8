"""The guide is a test: every command of docs/guide.md runs as written, in a scratch folder holding a small data set
where the guide's fetch step puts BCCD; every `ssd` command of README.md and the other docs parses against the CLI."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from ssdcli.data.synth import write_synth
from test_help_text import parse_command_line

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "guide.md"


def _make_guide() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_guide", ROOT / "docs" / "make_guide.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def bash_commands(markdown: Path) -> list[str]:
    """The command lines of a page's ```bash blocks: continuations joined, comments dropped."""
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", markdown.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(" ".join(line.split()))
    return commands


def lay_out_like_bccd(root: Path, images: int = 48) -> None:
    """A small VOC data set named as BCCD's clone names its files (BloodImage_00000.jpg, ...), with its splits
    trainval (36 images: one batch of the default 32) and test (12)."""
    source = root.parent / "synthetic"
    write_synth(source, format="voc", images=images, seed=0, image_size=128)
    renamed = {path.stem: f"BloodImage_{k:05d}" for k, path in enumerate(sorted((source / "JPEGImages").glob("*.jpg")))}
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / folder).mkdir(parents=True)
    for old, new in renamed.items():
        shutil.copyfile(source / "JPEGImages" / f"{old}.jpg", root / "JPEGImages" / f"{new}.jpg")
        xml = (source / "Annotations" / f"{old}.xml").read_text()
        (root / "Annotations" / f"{new}.xml").write_text(xml.replace(f"{old}.jpg", f"{new}.jpg"))
    splits = {"test": [], "trainval": []}  # type: dict[str, list[str]]
    for k, new in enumerate(renamed.values()):
        splits["test" if k % 4 == 3 else "trainval"].append(new)
    for name, ids in splits.items():
        (root / "ImageSets" / "Main" / f"{name}.txt").write_text("\n".join(ids) + "\n")
    shutil.rmtree(source)


def test_the_guide_shows_the_commands_its_generator_runs() -> None:
    """guide.md is what docs/make_guide.py writes: its fetch command first, then each step's command as run."""
    guide = _make_guide()
    assert bash_commands(GUIDE) == [guide.FETCH, *(step.command for step in guide.steps())]
    text = GUIDE.read_text()
    assert "github.com/Shenggan/BCCD_Dataset" in text and "MIT" in text


@pytest.mark.slow
def test_every_guide_command_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    guide = _make_guide()
    lay_out_like_bccd(tmp_path / guide.DATA)
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "src"))  # the subprocesses import this checkout's ssdcli
    commands = bash_commands(GUIDE)[1:]  # after the fetch, which the layout above stands for
    steps = guide.steps()
    for step, command in zip(steps, commands, strict=True):
        step.command = command
        guide.run(step, tmp_path)  # SystemExit with the command's last lines if it fails
        for made, _ in step.pictures:
            assert guide.picture(tmp_path, made).stat().st_size > 0
    assert (tmp_path / guide.BEST).is_file()
    assert any(line.startswith("epoch 3:") for line in steps[3].output), steps[3].output
    assert steps[4].output and steps[4].output[0].startswith("PASCAL VOC AP"), steps[4].output  # a whole table
    assert steps[9].output and steps[9].output[0].startswith("ssd benchmark"), steps[9].output  # its table
    assert any(line.startswith("│ openvino") or line.startswith("│ onnx-int8") for line in steps[9].output)


def test_lay_out_like_bccd_holds_the_guides_image(tmp_path: Path) -> None:
    guide = _make_guide()
    lay_out_like_bccd(tmp_path / guide.DATA)
    assert (tmp_path / guide.IMAGE).is_file() and (tmp_path / guide.DATA / "Annotations" / "BloodImage_00000.xml").is_file()


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", DOCS, ids=lambda page: page.name)
def test_every_documented_command_parses(page: Path) -> None:
    """Each `ssd ...` line of a page's bash blocks is taken by the current parser (options, choices, values)."""
    for command in bash_commands(page):
        if command.startswith("ssd ") and "..." not in command.split() and " [-" not in command:  # not a synopsis
            parse_command_line(command)

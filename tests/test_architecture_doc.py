"""docs/architecture.md is the map of the code: every file, folder and ``file.py::name`` it names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "ssdcli"
DOC = ROOT / "docs" / "architecture.md"

#: A backticked path of the package or the tests: ``engine/train/run.py``, ``data/formats/``,
#: ``core/postprocess.py::postprocess`` (a placeholder such as ``cli/<name>.py`` is not a path).
PATH_TOKEN = re.compile(r"`((?:[a-z_]+/)*[a-z_]+(?:\.py|/))(?:::([A-Za-z_][A-Za-z0-9_]*))?`")
#: One entry of the tree block: its indentation (in characters before the name) and its name.
TREE_ENTRY = re.compile(r"^(?P<indent>[│ ]*)[├└]── (?P<name>[\w.]+/?)")


def where_to_change_rows() -> str:
    text = DOC.read_text()
    return text[text.index("## Where to change X") : text.index("## Errors and messages")]


def defined_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def resolve(token: str) -> Path:
    return ROOT / token if token.startswith("tests/") else PACKAGE / token


def test_every_path_of_the_where_to_change_table_exists() -> None:
    found = PATH_TOKEN.findall(where_to_change_rows())
    assert len(found) > 20, "the table names the files to change"
    missing = [token for token, _ in found if not resolve(token).exists()]
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"
    named = [(token, name) for token, name in found if name]
    assert named, "the table names functions (file.py::name)"
    undefined = [f"{token}::{name}" for token, name in named if name not in defined_names(resolve(token))]
    assert not undefined, f"docs/architecture.md names what these files do not define: {undefined}"


def tree_paths() -> list[str]:
    """The paths of the tree block under ``src/ssdcli/`` (several names on one line: the first is the entry)."""
    text = DOC.read_text()
    block = text[text.index("src/ssdcli/\n") : text.index("```", text.index("src/ssdcli/\n"))]
    stack: list[tuple[int, str]] = []
    paths = []
    for line in block.splitlines()[1:]:
        match = TREE_ENTRY.match(line)
        if match is None:
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = "".join(name for _, name in stack) + match["name"]
        paths.append(path)
        if match["name"].endswith("/"):
            stack.append((indent, match["name"]))
    return paths


def test_every_entry_of_the_tree_exists() -> None:
    paths = tree_paths()
    assert len(paths) > 40, "the tree lists the package's modules"
    missing = [path for path in paths if not (PACKAGE / path).exists()]
    assert not missing, f"docs/architecture.md's tree lists what is not in src/ssdcli: {missing}"


def test_every_package_folder_is_in_the_tree() -> None:
    listed = {path for path in tree_paths() if path.endswith("/")}
    folders = {
        f"{folder.relative_to(PACKAGE).as_posix()}/"
        for folder in PACKAGE.rglob("*")
        if folder.is_dir() and (folder / "__init__.py").exists()
    }
    assert folders <= listed, f"folders of src/ssdcli missing from docs/architecture.md's tree: {folders - listed}"


@pytest.mark.parametrize("token", ["engine/nowhere.py", "core/postprocess.py::no_such_function"])
def test_the_check_finds_a_wrong_entry(token: str) -> None:
    path, _, name = token.partition("::")
    assert not resolve(path).exists() or name not in defined_names(resolve(path))

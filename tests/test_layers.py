"""Imports run one way: cli -> engine -> viz, data, models, metrics -> core; errors and config are leaves. Inside the
engine: demo -> train, benchmark -> evaluate, export, predict -> inference, encode -> checkpoint, events, device, weights."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ssdcli"

# For each layer, the ssdcli layers it must not import.
FORBIDDEN = {
    "core": {"data", "models", "metrics", "viz", "engine", "cli", "config"},
    "metrics": {"data", "models", "viz", "engine", "cli"},
    "data": {"models", "metrics", "viz", "engine", "cli"},
    "models": {"data", "metrics", "viz", "engine", "cli"},
    "viz": {"engine", "cli"},  # all drawing: called by the engine with plain arrays and dataclasses
    "engine": {"cli"},
    "cli": {"core", "models"},  # the CLI parses, calls the engine and renders; tensor code is the engine's business
    "errors": {"core", "data", "models", "metrics", "viz", "engine", "cli", "config"},
    "config": {"core", "data", "models", "metrics", "viz", "engine", "cli"},
}


def _layer(module: Path) -> str:
    return module.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imported_modules(module: Path) -> set[str]:
    """The ssdcli modules ``module`` imports, as dotted names (relative imports resolved)."""
    tree = ast.parse(module.read_text())
    modules = set()
    depth = len(module.relative_to(PACKAGE).parts) - 1
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names = [node.module or ""]
            elif node.level <= depth + 1:  # relative import (at most up to the package root)
                parts = module.relative_to(PACKAGE).parts[: depth - node.level + 1]
                names = ["ssdcli." + ".".join([*parts, *(node.module or "").split(".")]).strip(".")]
        modules.update(name for name in names if name == "ssdcli" or name.startswith("ssdcli."))
    return modules


def _imported_layers(module: Path) -> set[str]:
    return {name.split(".")[1] for name in _imported_modules(module) if name.count(".") >= 1}


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if _layer(p) in FORBIDDEN)


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_against_the_layer_direction(module: Path) -> None:
    wrong = _imported_layers(module) & FORBIDDEN[_layer(module)]
    assert not wrong, f"{module.relative_to(PACKAGE)} imports {sorted(wrong)}"


def test_the_check_sees_imports() -> None:
    engine_train = PACKAGE / "engine" / "train" / "run.py"
    assert {"core", "data", "models"} <= _imported_layers(engine_train)
    assert {"ssdcli.engine.train.inputs", "ssdcli.engine.checkpoint"} <= _imported_modules(engine_train)


# The engine's parts, lowest first: a part imports only parts of a lower rank (and itself).
ENGINE_RANKS = {
    "checkpoint": 0,
    "events": 0,
    "device": 0,
    "weights": 0,
    "inference": 1,
    "encode": 1,
    "evaluate": 2,
    "export": 2,
    "predict": 2,
    "train": 3,
    "benchmark": 3,
    "demo": 4,
}
ENGINE = PACKAGE / "engine"


def _engine_part(name: str) -> str | None:
    parts = name.split(".")
    return parts[2] if len(parts) >= 3 and parts[:2] == ["ssdcli", "engine"] else None


@pytest.mark.parametrize("module", sorted(ENGINE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_engine_parts_import_downwards(module: Path) -> None:
    relative = module.relative_to(ENGINE).parts
    if relative == ("__init__.py",):
        return
    own = relative[0].removesuffix(".py")
    assert own in ENGINE_RANKS, f"engine/{relative[0]} has no place in ENGINE_RANKS (add it, with docs/architecture.md)"
    for name in _imported_modules(module):
        part = _engine_part(name)
        if part is None or part == own:
            continue
        assert ENGINE_RANKS[part] < ENGINE_RANKS[own], f"{module.relative_to(PACKAGE)} imports {name} (rank not lower)"


def test_nothing_inside_imports_the_package_root_but_the_version() -> None:
    """The root loads the public API lazily; a module importing it would tie every layer to it."""
    for module in PACKAGE.rglob("*.py"):
        if module.parent == PACKAGE:
            continue
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "ssdcli":
                assert [alias.name for alias in node.names] == ["__version__"], module
            if isinstance(node, ast.Import):
                assert "ssdcli" not in [alias.name for alias in node.names], module


def test_the_package_root_imports_only_core_and_engine() -> None:
    assert _imported_layers(PACKAGE / "__init__.py") == {"core", "engine"}


def _string_constants(module: Path) -> list[tuple[int, str]]:
    """String literals of ``module`` except docstrings (f-string parts included)."""
    tree = ast.parse(module.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


BELOW_CLI = sorted(p for p in PACKAGE.rglob("*.py") if _layer(p) not in {"cli", "__init__", "__main__"})


@pytest.mark.parametrize("module", BELOW_CLI, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_messages_below_the_cli_name_parameters_not_flags(module: Path) -> None:
    """A notebook user of the engine is told about ``epochs``, not ``--epochs``: messages name parameters in
    backticks and the CLI turns them into flags (cli/render.py)."""
    flags = [(line, text) for line, text in _string_constants(module) if re.search(r"(^|[\s(])--[a-z]", text)]
    assert not flags, f"{module.relative_to(PACKAGE)} names command-line flags: {flags}"

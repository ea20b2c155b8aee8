"""Imports run one way: cli -> engine -> data, models, metrics -> core; errors and config are leaves."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ssdcli"

# For each layer, the ssdcli layers it must not import.
FORBIDDEN = {
    "core": {"data", "models", "metrics", "engine", "cli", "config"},
    "metrics": {"data", "models", "engine", "cli"},
    "data": {"models", "metrics", "engine", "cli"},
    "models": {"data", "metrics", "engine", "cli"},
    "engine": {"cli"},
    "errors": {"core", "data", "models", "metrics", "engine", "cli", "config"},
    "config": {"core", "data", "models", "metrics", "engine", "cli"},
}


def _layer(module: Path) -> str:
    return module.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imported_layers(module: Path) -> set[str]:
    tree = ast.parse(module.read_text())
    layers = set()
    depth = len(module.relative_to(PACKAGE).parts) - 1
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names = [node.module or ""]
            elif node.level <= depth:  # relative import leaving the module's own package
                parts = module.relative_to(PACKAGE).parts[: depth - node.level + 1]
                names = ["ssdcli." + ".".join([*parts, *(node.module or "").split(".")]).strip(".")]
        for name in names:
            if name.startswith("ssdcli.") and name.count(".") >= 1:
                layers.add(name.split(".")[1])
    return layers


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if _layer(p) in FORBIDDEN)


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_against_the_layer_direction(module: Path) -> None:
    wrong = _imported_layers(module) & FORBIDDEN[_layer(module)]
    assert not wrong, f"{module.relative_to(PACKAGE)} imports {sorted(wrong)}"


def test_the_check_sees_imports() -> None:
    engine_train = PACKAGE / "engine" / "train.py"
    assert {"core", "data", "models"} <= _imported_layers(engine_train)

"""Every choice list and every shared default is written once, in ``ssdcli.config``: the CLI's enums, the tables
keyed by a choice and the library functions' defaults read it, and no other module spells a list out again."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Any, get_args

import pytest

from ssdcli import config
from ssdcli.cli.command import ExportTarget
from ssdcli.cli.eval import VOC_METRIC_TITLES, CocoBackend, VocMetric
from ssdcli.data.dataset import DetectionDataset
from ssdcli.data.transforms import build_transforms
from ssdcli.engine.benchmark import MODEL_FORMAT, REQUIRES
from ssdcli.engine.evaluate.validation import evaluate_detections
from ssdcli.engine.train.ema import ModelEMA
from ssdcli.metrics.coco import coco_evaluate
from ssdcli.metrics.voc import average_precision, voc_evaluate
from ssdcli.models.spec import ModelConfig

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ssdcli"

#: The choice lists of config.py (the data formats are another registry's).
CHOICES: dict[str, tuple[str, ...]] = {
    "EXPORT_FORMATS": config.EXPORT_FORMATS,
    "MODEL_FORMATS": config.MODEL_FORMATS,
    "BENCHMARK_FORMATS": config.BENCHMARK_FORMATS,
    "EVAL_MODES": config.EVAL_MODES,
    "VOC_METRICS": config.VOC_METRICS,
    "COCO_BACKENDS": config.COCO_BACKENDS,
    "RESIZE_MODES": config.RESIZE_MODES,
}


def _values(enum: type[Enum]) -> tuple[str, ...]:
    return tuple(member.value for member in enum)


@pytest.mark.parametrize(
    ("enum", "choices"),
    [(ExportTarget, config.EXPORT_FORMATS), (VocMetric, config.VOC_METRICS), (CocoBackend, config.COCO_BACKENDS)],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_each_cli_enum_is_its_config_list(enum: type[Enum], choices: tuple[str, ...]) -> None:
    assert _values(enum) == choices


def test_tables_keyed_by_a_choice_cover_exactly_its_list() -> None:
    assert tuple(VOC_METRIC_TITLES) == config.VOC_METRICS
    assert tuple(REQUIRES) == tuple(MODEL_FORMAT) == config.BENCHMARK_FORMATS
    assert set(MODEL_FORMAT.values()) <= set(config.MODEL_FORMATS)
    assert set(config.EXPORT_FORMATS) < set(config.MODEL_FORMATS)
    assert get_args(config.VocMetric) == config.VOC_METRICS


def test_every_default_is_in_its_list() -> None:
    assert config.DEFAULT_VOC_METRIC in config.VOC_METRICS
    assert config.DEFAULT_COCO_BACKEND in config.COCO_BACKENDS
    assert config.DEFAULT_RESIZE in config.RESIZE_MODES
    assert config.ExportConfig("m.pt").target in config.EXPORT_FORMATS
    assert config.EvalConfig("model", model="m.pt", data=Path("d")).model_format in config.MODEL_FORMATS


def _default(function: Callable[..., Any], name: str) -> Any:
    return inspect.signature(function).parameters[name].default


# (function, parameter, the default users get from the commands: config.py's settings)
LIBRARY_DEFAULTS: list[tuple[Callable[..., Any], str, Any]] = [
    (build_transforms, "zoom_out_max", config.AugmentSettings().zoom_out),
    (build_transforms, "iou_crop", config.AugmentSettings().iou_crop),
    (build_transforms, "mean", config.IMAGENET_MEAN),
    (build_transforms, "std", config.IMAGENET_STD),
    (build_transforms, "resize", config.DEFAULT_RESIZE),
    (DetectionDataset.__init__, "zoom_out_max", config.AugmentSettings().zoom_out),
    (DetectionDataset.__init__, "mean", config.IMAGENET_MEAN),
    (DetectionDataset.__init__, "std", config.IMAGENET_STD),
    (DetectionDataset.__init__, "resize", config.DEFAULT_RESIZE),
    (ModelEMA.__init__, "decay", config.OptimSettings().ema_decay),
    (ModelEMA.__init__, "tau", config.OptimSettings().ema_tau),
    (ModelConfig, "mean", config.IMAGENET_MEAN),
    (ModelConfig, "std", config.IMAGENET_STD),
    (ModelConfig, "resize", config.DEFAULT_RESIZE),
    (voc_evaluate, "metric", config.EvalConfig("voc", results=Path("r"), data=Path("d")).voc_metric),
    (voc_evaluate, "iou_threshold", config.EvalConfig("voc", results=Path("r"), data=Path("d")).iou),
    (average_precision, "metric", config.DEFAULT_VOC_METRIC),
    (evaluate_detections, "metric", config.DEFAULT_VOC_METRIC),
    (evaluate_detections, "iou_threshold", config.DEFAULT_VOC_IOU),
    (coco_evaluate, "backend", config.EvalConfig("coco", results=Path("r"), gt=Path("g")).coco_backend),
]


@pytest.mark.parametrize(
    ("function", "name", "expected"), LIBRARY_DEFAULTS, ids=[f"{f.__qualname__}-{n}" for f, n, _ in LIBRARY_DEFAULTS]
)
def test_library_defaults_are_the_commands_defaults(function: Callable[..., Any], name: str, expected: Any) -> None:
    assert _default(function, name) == expected


def _string_items(node: ast.AST) -> list[str] | None:
    """The strings of a tuple, list or set literal of string constants only, else None."""
    if not isinstance(node, (ast.Tuple, ast.List, ast.Set)) or len(node.elts) < 2:
        return None
    items = [elt.value for elt in node.elts if isinstance(elt, ast.Constant) and isinstance(elt.value, str)]
    return items if len(items) == len(node.elts) else None


def _enum_values(node: ast.ClassDef) -> list[str]:
    """The string values assigned in the body of a class (its members, for an Enum)."""
    return [
        statement.value.value
        for statement in node.body
        if isinstance(statement, ast.Assign)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    ]


def _written_lists(tree: ast.AST) -> Iterator[tuple[int, list[str]]]:
    """(line, strings) of every literal list of strings and every class of string members in ``tree``."""
    for node in ast.walk(tree):
        items = _enum_values(node) if isinstance(node, ast.ClassDef) else _string_items(node)
        if items:
            yield node.lineno, items


def _copies(source: str) -> list[str]:
    """Where ``source`` spells out one of :data:`CHOICES` again (its values, in any order)."""
    found = [
        (line, name)
        for line, items in _written_lists(ast.parse(source))
        for name, choices in CHOICES.items()
        if set(items) == set(choices)
    ]
    return [f"line {line}: {name}" for line, name in sorted(found)]


def test_no_module_writes_a_choice_list_again() -> None:
    copies = {
        str(path.relative_to(PACKAGE)): found
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "config.py" or path.parent != PACKAGE
        for found in [_copies(path.read_text())]
        if found
    }
    assert not copies, f"choice lists written outside config.py: {copies}"


def test_the_scan_finds_copies_in_every_form() -> None:
    source = '''
FORMATS = ("checkpoint", "onnx", "torchscript", "openvino")
Metric = Literal["voc12", "voc07"]
class Backend(str, Enum):
    pycocotools = "pycocotools"
    faster = "faster-coco-eval"
def resize(mode: str) -> None:
    if mode not in ["bilinear", "antialias"]:
        raise ValueError(mode)
'''
    expected = ["line 2: MODEL_FORMATS", "line 3: VOC_METRICS", "line 4: COCO_BACKENDS", "line 8: RESIZE_MODES"]
    assert _copies(source) == expected

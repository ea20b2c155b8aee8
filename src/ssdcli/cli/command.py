"""What every ``ssd`` command shares in parsing and help: the choices of options that several commands take, help
that shows values as a reader types them, and path options that do not take the next option as their value."""

from __future__ import annotations

from enum import Enum
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from ssdcli.config import EXPORT_FORMATS
from ssdcli.data.formats import format_names
from ssdcli.engine.train.architectures import standard_learning_rates
from ssdcli.errors import UsageError

#: A data set's layout (``--format``): auto (detected from the files) or a format of the registry.
DataFormat = Enum("DataFormat", {name: name for name in ("auto", *format_names())}, type=str)  # type: ignore[misc]


# An option's choices are a str Enum made from the list in ``ssdcli.config`` (written once), one member per value.

#: What ``ssd export --to`` writes.
ExportTarget = Enum("ExportTarget", {name: name for name in EXPORT_FORMATS}, type=str)  # type: ignore[misc]


#: ``--tile`` and ``--overlap`` of ``ssd predict`` and ``ssd eval`` (sliced inference for small objects).
TILE_HELP = (
    "Also detect in overlapping square windows of this many pixels, each resized to the model's input as a whole "
    "image is, and merge with the whole image's detections (class-wise NMS at the model's IoU): small objects in "
    "large photos (default: whole images only)."
)
OVERLAP_HELP = "--tile: the share of a window that neighbouring windows overlap, in [0, 0.9)."
FLIP_HELP = (
    "Test-time flip: detect each image and its mirror image together and average both views per default box "
    "before NMS (twice the network's work; not for ONNX files with NMS built in)."
)


#: ``ssd train --optimizer``: the optimizers the model registry has learning rates for.
Optimizer = Enum("Optimizer", {name: name for name in standard_learning_rates()}, type=str)  # type: ignore[misc]


def _tidy_params(params: list[Any]) -> None:
    """Flags show no value type (they take none); arguments are named in capitals (PATH), as the usage line writes
    them."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag:
            param.metavar = ""
        elif isinstance(param, TyperArgument) and param.metavar is None and param.name:
            param.metavar = param.name.upper()


def _tidy_help_option(option: Any) -> Any:
    if option is not None:
        option.metavar = ""
    return option


def _usage_pieces(command: Any, ctx: typer.Context) -> list[str]:
    """``[OPTIONS] PATH`` / ``[OPTIONS] [SOURCES]...``: a required argument bare, an optional one in brackets."""
    pieces = [command.options_metavar] if command.options_metavar else []
    for param in command.get_params(ctx):
        if isinstance(param, TyperArgument):
            name = param.metavar or (param.name or "").upper()
            pieces.append((name if param.required else f"[{name}]") + ("..." if param.nargs != 1 else ""))
        else:
            pieces.extend(param.get_usage_pieces(ctx))
    return pieces


def _takes_a_path(param: Any) -> bool:
    return isinstance(param, TyperOption) and not param.is_flag and param.type_descriptor.is_path


def reject_options_as_paths(params: list[Any], args: list[str]) -> None:
    """A path option followed by an option (``--json --conf 0.05``) is a usage error instead of a file named
    ``--conf``; ``-`` (stdout or stdin) is a value, and ``--json=--x`` or ``./--x`` name such a file on purpose."""
    opts = {opt: param for param in params if _takes_a_path(param) for opt in param.opts}
    for name, value in zip(args, args[1:]):
        if name == "--":
            return
        if name in opts and value.startswith("-") and value != "-":
            raise UsageError(
                f"{name} expects a file name, not the option {value!r} (for a file of that name write ./{value})"
            )


class SsdCommand(TyperCommand):
    """A command of ``ssd``; see the module's docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _tidy_params(self.params)

    def get_help_option(self, ctx: typer.Context) -> Any:  # type: ignore[override]  # typer passes its Context
        return _tidy_help_option(super().get_help_option(ctx))

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]  # typer passes its Context
        return _usage_pieces(self, ctx)

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]  # typer passes its Context
        reject_options_as_paths(self.params, args)
        return super().parse_args(ctx, args)


class SsdGroup(TyperGroup):
    """``ssd`` and ``ssd data``: their own options shown as the commands' are."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _tidy_params(self.params)

    def get_help_option(self, ctx: typer.Context) -> Any:  # type: ignore[override]  # typer passes its Context
        return _tidy_help_option(super().get_help_option(ctx))

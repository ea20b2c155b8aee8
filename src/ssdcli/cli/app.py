"""The ``ssd`` Typer application: global options, command registration and error handling.

The CLI only parses, calls the engine and renders. Every user-facing error is one line
(``error: <file>: <what is wrong>``); exit code 2 for bad usage or input, 1 for other failures, 130 for Ctrl-C.
Tracebacks only with ``--debug``.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass
from typing import Annotated

import typer
from rich.markup import escape
from typer.exceptions import Abort, Exit, TyperException

from ssdcli import __version__
from ssdcli.errors import Interrupted, SsdcliError

from . import benchmark, data, demo, encode, eval, export, predict, train, weights
from .command import SsdCommand, SsdGroup
from .render import as_flags, engine_warnings_shown, flag, one_line, print_error, stderr_console

EXIT_USAGE = 2
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130


@dataclass
class AppState:
    """Options of the root command, shared with subcommands through ``ctx.obj``."""

    debug: bool = False


#: Ctrl-C in a command that says nothing more specific: its files are written atomically once the work is done.
NOTHING_WRITTEN = "interrupted; nothing written"


class InterruptibleGroup(SsdGroup):
    """The root command: Ctrl-C in any command becomes :class:`Interrupted` (one line, exit 130) before Typer turns
    it into a silent exit 130. Commands that keep partial work raise their own :class:`Interrupted` saying what."""

    def invoke(self, ctx: typer.Context) -> object:  # type: ignore[override]  # typer passes its Context
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted(NOTHING_WRITTEN) from None


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"ssd (ssdcli) {__version__}")
        raise typer.Exit()


app = typer.Typer(
    name="ssd",
    cls=InterruptibleGroup,
    help="Train, inspect, evaluate, run and export SSD object detectors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    """Train, inspect, evaluate, run and export SSD object detectors.

    Examples:

        ssd demo                      # synthetic data, built-in default, no downloads

        ssd encode --help             # how SSD assigns default boxes
    """
    if isinstance(ctx.obj, AppState):
        ctx.obj.debug = debug


app.command("train", cls=train.TrainCommand)(train.train_command)
app.command("encode", cls=SsdCommand)(encode.encode_command)
app.command("eval", cls=SsdCommand)(eval.eval_command)
app.command("predict", cls=SsdCommand)(predict.predict_command)
app.command("export", cls=SsdCommand)(export.export_command)
app.command("benchmark", cls=SsdCommand)(benchmark.benchmark_command)
app.command("demo", cls=SsdCommand)(demo.demo_command)
app.add_typer(data.app, name="data")
app.add_typer(weights.app, name="weights")


def main(argv: list[str] | None = None) -> int:
    """Run the app and turn every failure into a one-line message and an exit code."""
    state = AppState()
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        with engine_warnings_shown():
            result = app(args=args, prog_name="ssd", standalone_mode=False, obj=state)
        return result if isinstance(result, int) else 0
    except Interrupted as stopped:
        stderr_console().print(escape(one_line(as_flags(stopped.render()))), soft_wrap=True)
        return stopped.exit_code
    except SsdcliError as error:
        if state.debug:
            traceback.print_exc()
        print_error(error.render(flag))
        return error.exit_code
    except Exit as done:
        return done.exit_code
    except TyperException as error:  # bad usage: unknown option, missing argument, bad value
        if error.format_message():
            print_error(f"{error.format_message()} (see 'ssd --help')")
        return getattr(error, "exit_code", EXIT_USAGE) or EXIT_USAGE
    except (Abort, KeyboardInterrupt):
        print_error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        if state.debug:
            traceback.print_exc()
        print_error(f"unexpected {type(error).__name__}: {error} (rerun with --debug for the traceback)")
        return EXIT_FAILURE

"""``ssd train --config``: the settings of an earlier run as the start, the options given on the command line
over them."""

from __future__ import annotations

import typer

from ssdcli.config import TrainConfig

#: Options of ``ssd train`` whose setting has another name.
SETTING_OF_OPTION = {"model": "arch", "time": "time_budget", "track_mlflow": "mlflow", "mlflow_uri": "mlflow"}
#: Options that are no setting of the run.
NOT_SETTINGS = frozenset({"config_file", "print_config", "download"})


def given_settings(ctx: typer.Context) -> list[str]:
    """The settings whose option was given on the command line (not left at its default), in the command's order."""
    names = [
        SETTING_OF_OPTION.get(name, name)
        for name in ctx.params
        if name not in NOT_SETTINGS and _on_command_line(ctx, name)
    ]
    return list(dict.fromkeys(names))


def _on_command_line(ctx: typer.Context, name: str) -> bool:
    # by name: Typer ships its own copy of click, whose ParameterSource is not click's
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def recipe_rule_on(ctx: typer.Context, auto_recipe: bool) -> bool:
    """The recipe rule chooses for the default model: naming a model (``--model``) turns it off, unless
    ``--auto-recipe`` is given too."""
    if _on_command_line(ctx, "auto_recipe"):
        return auto_recipe
    return auto_recipe and not _on_command_line(ctx, "model")


def with_overrides(base: TrainConfig, options: TrainConfig, given: list[str]) -> TrainConfig:
    """``base`` with the settings named in ``given`` taken from ``options``. A length given (``epochs`` or
    ``time_budget``) replaces the other one of ``base``."""
    values = options.values()
    changes = {name: values[name] for name in given}
    if "epochs" in changes and "time_budget" not in changes:
        changes["time_budget"] = None
    if "time_budget" in changes and "epochs" not in changes:
        changes["epochs"] = None
    return base.updated(**changes)

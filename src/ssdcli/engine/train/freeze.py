"""``ssd train --freeze``: the backbone, or its first N stages, kept as it is: its parameters get no gradient (and
so no weight decay: the optimizer holds trainable parameters only) and its BatchNorm layers keep their running
statistics (they stay in eval mode while the rest trains), as MMDetection's ``frozen_stages`` with ``norm_eval``."""

from __future__ import annotations

from torch import nn

from ssdcli.errors import UsageError

BACKBONE = "backbone"


def backbone_stages(model: nn.Module) -> list[nn.Module]:
    """The stages of ``model``'s backbone, input first (each backbone's ``freezable_stages``)."""
    stages = getattr(model.backbone, "freezable_stages", None)
    if stages is None:
        raise UsageError(f"`freeze`: the backbone {type(model.backbone).__name__} has no stages to freeze")
    return stages()


def freeze(model: nn.Module, setting: str | None) -> tuple[nn.Module, ...]:
    """Freeze what ``setting`` names (None: nothing; "backbone": every stage; "N": the first N) and return the
    frozen stages, which :func:`keep_frozen` puts back into eval mode after every ``model.train()``."""
    if setting is None:
        return ()
    stages = backbone_stages(model)
    count = len(stages) if setting == BACKBONE else int(setting)
    if count > len(stages):
        raise UsageError(f"`freeze` {count}: the backbone has {len(stages)} stages")
    frozen = tuple(stages[:count])
    for stage in frozen:
        for parameter in stage.parameters():
            parameter.requires_grad_(False)
    keep_frozen(frozen)
    return frozen


def keep_frozen(frozen: tuple[nn.Module, ...]) -> None:
    """Frozen stages in eval mode, so that their BatchNorm layers use and keep their running statistics."""
    for stage in frozen:
        stage.eval()


def frozen_line(model: nn.Module, frozen: tuple[nn.Module, ...]) -> str:
    """One line saying what is frozen, for the run's log."""
    total = len(backbone_stages(model))
    count = sum(p.numel() for stage in frozen for p in stage.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return (
        f"frozen: the first {len(frozen)} of the backbone's {total} stages ({count:,} parameters); "
        f"{trainable:,} parameters train"
    )

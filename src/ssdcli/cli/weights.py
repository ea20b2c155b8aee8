"""`ssd weights`: torchvision's pretrained weights, listed and downloaded into the torch hub cache on request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from .command import SsdCommand, SsdGroup
from .render import stdout_console

if TYPE_CHECKING:
    from ssdcli.engine.weights import Fetched

app = typer.Typer(
    cls=SsdGroup,
    help="List torchvision's pretrained weights and download them into the torch cache (only when asked).",
    no_args_is_help=True,
)


@app.command("list", cls=SsdCommand)
def list_command() -> None:
    """List the ImageNet backbones and COCO detectors ssdcli can start from, and whether each is in the torch cache.

    Examples:

        ssd weights list

        TORCH_HOME=/data/torch ssd weights list     # another torch cache
    """
    import torch

    from ssdcli.engine.weights import list_weights

    table = Table(title=f"torchvision weights (torch cache: {torch.hub.get_dir()}/checkpoints)")
    for column in ("name", "kind", "used by", "file"):  # folded, never shortened: names are what fetch takes
        table.add_column(column, overflow="fold")
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("cached", no_wrap=True)
    for entry in list_weights():
        size = f"{entry.size_mb:.1f} MB" if entry.size_mb is not None else "?"
        cached = "[green]yes[/green]" if entry.cached else "no"
        table.add_row(entry.name, entry.kind, "\n".join(entry.archs), entry.path.name, size, cached)
    stdout_console().print(table)


@app.command("fetch", cls=SsdCommand)
def fetch_command(
    names: Annotated[list[str], typer.Argument(help="Weights names as 'ssd weights list' shows them, or 'all'.")],
    progress: Annotated[bool, typer.Option(help="Show a progress bar while downloading (where tqdm is installed: the download extra).")] = True,
) -> None:
    """Download weights into the torch cache, checked against torchvision's published checksums.

    A file already in the cache is left as it is. Without a network, the error names the URL and where to put the file.

    Examples:

        ssd weights fetch SSDLite320_MobileNet_V3_Large_Weights.COCO_V1

        ssd weights fetch all
    """
    from ssdcli.engine.weights import fetch_weights

    print_fetched(fetch_weights(names, progress))


def print_fetched(results: list[Fetched]) -> None:
    """One line per file: downloaded, or in the cache already."""
    console = stdout_console()
    for result in results:
        what = "downloaded" if result.downloaded else "in the torch cache already"
        console.print(f"{result.entry.name}: {what}: {result.path}", soft_wrap=True, markup=False)

"""`ssd demo`: the built-in default, needing nothing downloaded."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .render import stdout_console


def demo_command(
    out: Annotated[Path, typer.Option(help="Parent folder; each run goes to a fresh numbered folder under it.")] = Path(
        "runs/demo"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the generated image.")] = 0,
) -> None:
    """Run the built-in demo on generated data (no downloads).

    Examples:

        ssd demo

        ssd demo --out /tmp/ssd-demo --seed 3
    """
    from ssdcli.engine.demo import run_demo

    result = run_demo(out, seed=seed)
    console = stdout_console()
    table = Table(title=f"Default-box matching on a generated image ({result.layout_name})")
    table.add_column("class")
    table.add_column("box (x1, y1, x2, y2) px")
    table.add_column("best IoU", justify="right")
    table.add_column("matches per feature map", justify="right")
    for gt in result.ground_truths:
        box = ", ".join(f"{v:.0f}" for v in gt.box_xyxy)
        table.add_row(gt.class_name, box, f"{gt.best_iou:.3f}", " ".join(str(c) for c in gt.matches_per_layer))
    table.caption = f"{result.positives} positive and {result.negatives} negative default boxes"
    console.print(table)
    console.print(f"image: {result.image_path}\nmatches drawn: {result.run_dir / 'demo_matches.png'}")

"""`ssd demo`: the built-in default, needing nothing downloaded."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .render import stdout_console
from .train import EXIT_INTERRUPTED


def demo_command(
    out: Annotated[Path, typer.Option(help="Parent folder; each run goes to a fresh numbered folder under it.")] = Path(
        "runs/demo"
    ),
    images: Annotated[int, typer.Option(min=16, help="Synthetic images to generate.")] = 800,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs of the small model.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the data and the training.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> int:
    """Generate synthetic data, train the small model, evaluate it and predict (no downloads; minutes on a CPU).

    Examples:

        ssd demo

        ssd demo --out /tmp/ssd-demo --images 200 --epochs 3
    """
    from ssdcli.engine.demo import DemoSettings, run_demo

    from .eval import _render_coco, _render_voc
    from .progress import TrainProgress

    console = stdout_console()
    settings = DemoSettings(images=images, epochs=epochs, seed=seed, device=device)
    with TrainProgress(console) as progress:
        result = run_demo(out, settings, emit=progress)
    if result.evaluation is None or result.prediction is None:  # Ctrl-C during training: nothing ran after it
        console.print(f"interrupted: nothing evaluated; training saved {result.training.last_checkpoint}")
        return EXIT_INTERRUPTED
    evaluation = result.evaluation  # a model's: VOC and COCO figures, and its run folder
    assert evaluation.voc is not None and evaluation.coco is not None and evaluation.model_run is not None
    _render_voc(evaluation.voc)
    _render_coco(evaluation.coco)
    console.print(f"[bold]everything is in {result.run_dir}[/]")
    console.print(f"  data:        {result.data_dir}")
    console.print(f"  checkpoints: {result.training.run_dir} (best.pt, last.pt, metrics.csv)")
    console.print(f"  evaluation:  {evaluation.model_run.run_dir}")
    console.print(f"  predictions: {result.prediction.run_dir} (annotated images, predictions.json)")
    return 0

"""Time one training step on CPU: ssdcli's SSD300-VGG16 against torchvision's ssd300_vgg16, plus ssd_tiny.

    .venv/bin/python benchmarks/train_step.py                 # 10 timed steps after 2 warm-up steps
    .venv/bin/python benchmarks/train_step.py --steps 2       # a quick check that it runs

A step is forward + loss + backward + SGD step on the same generated images and boxes. ssdcli: normalisation,
``ssdcli.encode`` (matching), the model, ``ssdcli.ssd_loss``, called as ``ssd train`` calls them (the default-box
geometry computed once, no input checks: the loader checked the batches). torchvision: its train-mode forward (its own
transform, anchors, matching and loss), backward, step. The two models' steps alternate, so that a change in
machine load affects both alike; the table shows medians. Neither model loads pretrained weights.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
from rich.console import Console
from rich.table import Table
from torchvision.models.detection import ssd300_vgg16

from ssdcli import default_boxes, encode, ssd_loss
from ssdcli.core.matching import default_box_geometry
from ssdcli.models import SSD, build_model, default_config


def generate(batch: int, size: int, num_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images [B, 3, S, S] in [0, 1], boxes [B, 3, 4] xyxy normalised, classes [B, 3] (-1 = padding)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, size, size, generator=g)
    centre = torch.rand(batch, 3, 2, generator=g) * 0.6 + 0.2
    half = torch.rand(batch, 3, 2, generator=g) * 0.15 + 0.05
    boxes = torch.cat((centre - half, centre + half), dim=-1).clamp(0, 1)
    classes = torch.randint(1, num_classes, (batch, 3), generator=g)
    classes[:, 2] = torch.where(torch.rand(batch, generator=g) < 0.5, -1, classes[:, 2])  # 2 or 3 objects
    return images, boxes, classes


def ssdcli_step(model: SSD, images: torch.Tensor, boxes: torch.Tensor, classes: torch.Tensor) -> Callable[[], float]:
    geometry = default_box_geometry(default_boxes(model.config.layout))
    mean = torch.tensor(model.config.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.config.std).view(1, 3, 1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)
    model.train()

    def step() -> float:
        start = time.perf_counter()
        targets = encode(boxes, classes, geometry, checked=False)
        conf, loc = model((images - mean) / std)
        loss = ssd_loss(conf, loc, targets.labels, targets.offsets, checked=False).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    return step


def torchvision_step(images: torch.Tensor, boxes: torch.Tensor, classes: torch.Tensor) -> Callable[[], float]:
    model = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=21)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)
    model.train()
    size = images.shape[-1]
    image_list = list(images)
    targets = [{"boxes": b[c > 0] * size, "labels": c[c > 0]} for b, c in zip(boxes, classes)]

    def step() -> float:
        start = time.perf_counter()
        losses = model(image_list, targets)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    return step


def timed_steps(steps: dict[str, Callable[[], float]], warmup: int, count: int) -> dict[str, list[float]]:
    """Run the steps in turn (warm-up first), ``count`` timed rounds; seconds per step of each."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(count):
        for name, step in steps.items():
            times[name].append(step())
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model first")
    parser.add_argument("--batch", type=int, default=8, help="batch of the SSD300 comparison")
    parser.add_argument("--tiny-batch", type=int, default=32, help="batch of the ssd_tiny step")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    images, boxes, classes = generate(args.batch, 300, 21, seed=0)
    ours = build_model(default_config("ssd300_vgg16", 21))
    comparison = timed_steps(
        {
            "ssdcli ssd300_vgg16": ssdcli_step(ours, images, boxes, classes),
            "torchvision ssd300_vgg16": torchvision_step(images, boxes, classes),
        },
        args.warmup,
        args.steps,
    )
    tiny_images, tiny_boxes, tiny_classes = generate(args.tiny_batch, 160, 4, seed=1)
    tiny = build_model(default_config("ssd_tiny", 4))
    tiny_step = ssdcli_step(tiny, tiny_images, tiny_boxes, tiny_classes)
    tiny_times = timed_steps({"ssdcli ssd_tiny": tiny_step}, args.warmup, args.steps)

    table = Table(
        title=f"Training step on CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    )
    for column, justify in (("model", "left"), ("input", "right"), ("batch", "right"), ("median ms", "right"),
                            ("min ms", "right"), ("steps", "right")):  # fmt: skip
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    rows = [(name, 300, args.batch, t) for name, t in comparison.items()]
    rows += [(name, 160, args.tiny_batch, t) for name, t in tiny_times.items()]
    for name, size, batch, times in rows:
        table.add_row(
            name, f"{size}x{size}", str(batch), f"{1000 * statistics.median(times):.0f}", f"{1000 * min(times):.0f}",
            str(len(times)),
        )  # fmt: skip
    ratio = statistics.median(comparison["ssdcli ssd300_vgg16"]) / statistics.median(
        comparison["torchvision ssd300_vgg16"]
    )
    console = Console()
    console.print(table)
    verdict = "[green]within[/green]" if ratio <= 1.1 else "[red]above[/red]"
    console.print(f"ssdcli / torchvision step time: {ratio:.2f}x ({verdict} the 1.1x target)")


if __name__ == "__main__":
    main()

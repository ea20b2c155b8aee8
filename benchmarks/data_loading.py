"""Data loading throughput: images/s of the training pipeline (decode + SSD augmentation + collate) on BCCD.

    python benchmarks/data_loading.py [--data ../shared/data/bccd/BCCD] [--workers 2] [--size 300] [--batches 20]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader

from ssdcli.data.collate import collate_detections
from ssdcli.data.dataset import DetectionDataset, open_index


def images_per_second(data: Path, split: str, workers: int, size: int, batch_size: int, batches: int) -> float:
    index = open_index(data, split)
    dataset = DetectionDataset(index, size, True)
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=workers, collate_fn=collate_detections,
        persistent_workers=workers > 0,
    )
    seen, started = 0, None
    for _epoch in range(100):
        for i, batch in enumerate(loader):
            if started is None and i == 1:  # the first batch pays for starting the workers
                started = time.perf_counter()
            elif started is not None:
                seen += batch.images.shape[0]
            if seen >= batches * batch_size:
                return seen / (time.perf_counter() - started)
    return seen / (time.perf_counter() - started)  # type: ignore[operator]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/bccd/BCCD"))
    parser.add_argument("--split", default="trainval")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--size", type=int, nargs="+", default=[160, 300])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = Table(title=f"Training data pipeline on {args.data} ({args.split}), images/s")
    table.add_column("input size", justify="right")
    for workers in args.workers:
        table.add_column(f"{workers} workers", justify="right")
    for size in args.size:
        row = [f"{size}"]
        for workers in args.workers:
            row.append(f"{images_per_second(args.data, args.split, workers, size, args.batch_size, args.batches):.0f}")
        table.add_row(*row)
    Console().print(table)


if __name__ == "__main__":
    main()

"""The training step waits for the device at most twice (the two value-sized results of matching and of hard
negative mining); the losses are read once per window of steps. Counted on the CPU by tests/host_syncs.py."""

from __future__ import annotations

import time
from itertools import islice
from pathlib import Path

import pytest
import torch

from host_syncs import HostSyncs
from ssdcli import default_boxes, encode, ssd_loss
from ssdcli.config import TrainConfig
from ssdcli.core.matching import default_box_geometry
from ssdcli.engine.events import Event, StepDone, ignore_events
from ssdcli.engine.train.checkpoints import CheckpointPolicy
from ssdcli.engine.train.distributed import DistContext
from ssdcli.engine.train.loop import Progress, train_one_epoch
from ssdcli.engine.train.run import build_run
from ssdcli.engine.train.window import CHECK_EVERY


def test_unchecked_encode_and_loss_wait_once_each() -> None:
    geometry = default_box_geometry(default_boxes("ssd300"))
    boxes = torch.tensor([[[0.1, 0.1, 0.5, 0.6], [0.0, 0.0, 0.0, 0.0]], [[0.2, 0.3, 0.9, 0.8], [0.4, 0.4, 0.6, 0.7]]])
    classes = torch.tensor([[3, -1], [1, 2]])
    with HostSyncs() as syncs:
        targets = encode(boxes, classes, geometry, checked=False)
    assert syncs.names == {"nonzero": 1}
    conf = torch.randn(2, geometry.xyxy.shape[0], 4, requires_grad=True)
    loc = torch.randn(2, geometry.xyxy.shape[0], 4, requires_grad=True)
    with HostSyncs() as syncs:
        ssd_loss(conf, loc, targets.labels, targets.offsets, checked=False).total.backward()
    assert syncs.names == {"__int__": 1}  # the largest number of negatives an image keeps (the top-k size)


@pytest.mark.slow
def test_a_training_step_waits_for_the_device_at_most_twice(tmp_path: Path) -> None:
    config = TrainConfig().updated(out=tmp_path, epochs=1, batch_size=2, synth_images=40, workers=0, device="cpu")
    config = config.updated(arch="ssd_tiny", eval_every=0, threads=1)
    run = build_run(config, torch.device("cpu"), DistContext(), ignore_events, time.perf_counter())
    assert run is not None and run.steps_per_epoch > CHECK_EVERY + 2
    batches = list(islice(run.loader, CHECK_EVERY + 2))  # loaded before counting: data loading is not the step
    seen: list[tuple[int, int, float | None]] = []
    with HostSyncs() as syncs:

        def record(event: Event) -> None:
            if isinstance(event, StepDone):
                seen.append((event.step, syncs.total, event.loss_conf))

        train_one_epoch(run, batches, Progress(0), CheckpointPolicy(run, ignore_events), lambda: False, record)
    per_step = {step: total - before for (_, before, _), (step, total, _) in zip(seen, seen[1:])}
    ordinary = {step: count for step, count in per_step.items() if step != CHECK_EVERY}
    assert max(ordinary.values()) <= 2, per_step
    assert per_step[CHECK_EVERY] <= 4, per_step  # the window read and the copy of the checked state
    assert [step for step, _, conf in seen if conf is not None] == [CHECK_EVERY]

"""Collectives of distributed training on the device their backend serves: NCCL takes CUDA tensors only, so the
loop's host-side flags and means must not reach it (they go through gloo beside it)."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from ssdcli.engine.train import distributed
from ssdcli.engine.train.distributed import init_distributed


def test_served_device_types_of_backend_strings() -> None:
    assert distributed.served_device_types("nccl") == {"cuda"}
    assert distributed.served_device_types("cpu:gloo,cuda:nccl") == {"cpu", "cuda"}
    assert distributed.served_device_types("gloo") == {"cpu", "cuda"}


@pytest.mark.parametrize("device_type", ["cuda", "cpu"])
def test_every_collective_of_the_loop_reaches_a_backend_that_serves_its_tensor(
    monkeypatch: pytest.MonkeyPatch, device_type: str
) -> None:
    """The process group as a CUDA (or CPU) run under torchrun creates it, with the collectives recorded instead
    of sent: every tensor the context hands to one lives on a device type the requested backend takes."""
    requested: list[str] = []
    handed: list[str] = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **_: requested.append(backend))
    monkeypatch.setattr(dist, "get_rank", lambda *_: 0)
    monkeypatch.setattr(dist, "get_world_size", lambda *_: 2)

    def record(tensor: torch.Tensor, *args: object, **kwargs: object) -> None:
        handed.append(tensor.device.type)

    monkeypatch.setattr(dist, "all_reduce", record)
    monkeypatch.setattr(dist, "broadcast", record)
    context = init_distributed(device_type)
    assert context.enabled and len(requested) == 1
    context.any(True)
    context.mean(0.5)
    served = distributed.served_device_types(requested[0])
    assert handed and set(handed) <= served, f"{requested[0]} takes {sorted(served)}; handed {handed}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="two NCCL processes need two CUDA devices")
def test_ddp_two_processes_on_nccl(tmp_path: Path) -> None:
    """Two processes on two GPUs: training steps with the stop check, validation gathered, the final checksum."""
    port = str(_free_port())
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    command += ["-m", "ssdcli", "train", "--out", str(tmp_path), "--epochs", "2", "--batch-size", "4", "--amp"]
    command += ["--synth-images", "48", "--workers", "0", "--device", "cuda", "--max-steps-per-epoch", "12"]
    done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and all(r["map50"] != "" for r in rows)

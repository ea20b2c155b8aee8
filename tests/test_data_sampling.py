"""Seeded samples: each drawn from its own seed, without touching the random streams of the process that loads
them (a DataLoader without workers runs in the caller's process)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ssdcli.data.collate import collate_detections
from ssdcli.data.dataset import DetectionDataset, open_index
from ssdcli.data.sampling import seeded
from ssdcli.data.synth import write_synth


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> DetectionDataset:
    root = tmp_path_factory.mktemp("synth") / "data"
    write_synth(root, format="voc", images=12, seed=0, image_size=64)
    return DetectionDataset(open_index(root, "train"), image_size=64, train=True, seed=3)


def _seed_globals(value: int) -> None:
    torch.manual_seed(value)
    np.random.seed(value)
    random.seed(value)


def _global_draws() -> tuple[list[float], list[float], float]:
    """The next numbers of torch's, NumPy's and Python's global generators (consumes them)."""
    return torch.rand(4).tolist(), np.random.rand(4).tolist(), random.random()


def test_iterating_without_workers_leaves_the_callers_generators_as_they_were(dataset: DetectionDataset) -> None:
    _seed_globals(11)
    expected = _global_draws()
    _seed_globals(11)
    # the loader draws its own base seed from ``generator`` (from the global one without it): as training runs it
    loader = DataLoader(
        dataset, batch_size=2, num_workers=0, collate_fn=collate_detections, generator=torch.Generator()
    )
    batches = list(loader)
    assert len(batches) == len(dataset) // 2
    assert _global_draws() == expected


def test_a_sample_is_the_same_whatever_the_callers_generators_hold(dataset: DetectionDataset) -> None:
    torch.manual_seed(1)
    first_image, first_target = dataset[0]
    _seed_globals(2)
    torch.rand(100)
    again_image, again_target = dataset[0]
    assert torch.equal(first_image, again_image) and torch.equal(first_target["boxes"], again_target["boxes"])


def test_seeded_draws_from_its_seed_and_gives_the_states_back() -> None:
    torch.manual_seed(5)
    with seeded(42):
        inside = torch.rand(3)
    torch.manual_seed(42)
    assert torch.equal(inside, torch.rand(3))
    torch.manual_seed(5)
    before = torch.get_rng_state()
    with pytest.raises(RuntimeError):
        with seeded(42):
            torch.rand(3)
            raise RuntimeError("failed sample")
    assert torch.equal(torch.get_rng_state(), before)

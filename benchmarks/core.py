"""CPU benchmark of the core engine against torchvision on the same inputs: matching+encode, loss, postprocess, NMS.

    .venv/bin/python benchmarks/core.py                  # all cases, 15 timed rounds each, memory in subprocesses
    .venv/bin/python benchmarks/core.py --repeats 3 --no-memory   # a quick check that it runs

Cases (SSD300 default boxes, A = 8732):
- encode: B = 32 images with 5..15 GTs each (about 10). ssdcli: one batched ``encode`` on GTs padded to [B, 15].
  torchvision: what ``SSD.forward`` and ``SSD.compute_loss`` do per image in training: ``box_iou``, ``SSDMatcher``,
  then ``BoxCoder.encode_single`` of the foreground and the class targets.
- loss: B = 32, 21 classes, forward and backward. ssdcli: ``ssd_loss`` on encoded targets. torchvision:
  ``SSD.compute_loss`` on its matched indices (it encodes the foreground boxes itself, per image, inside).
- postprocess: B = 16, 21 classes. ssdcli: ``postprocess`` (normalised boxes). torchvision:
  ``SSD.postprocess_detections`` (pixel boxes). Two inputs: "dense", N(0, 1) logits, so every class of every
  default box passes the 0.01 threshold and each class keeps 400 candidates; "trained-like", background logit
  high everywhere and 300 confident default boxes per image.
- nms: the candidates ``postprocess`` hands its NMS on those two inputs (boxes, scores, one group per image and
  class). ssdcli: ``grouped_nms`` (the CPU's choice). torchvision: ``torchvision_grouped_nms``, the CUDA choice
  of ``nms_for_device`` (``torchvision.ops.batched_nms`` on float64 boxes), run on the CPU; the kept indices
  checked equal, order included.

Each round runs ssdcli and torchvision in turn (warm-up rounds first), so a change in machine load affects both;
the table shows medians. torchvision's methods are called on an ``SSD`` object with its default settings (score
0.01, NMS IoU 0.45, 400 candidates per class, 200 detections, 3 negatives per positive) and an empty backbone and
head, which neither method uses. Every case first checks that both sides give the same result.

Peak memory is the transient working memory of one call. For each case and implementation a fresh subprocess
builds the inputs, runs the operation once on a small input (libraries and thread pools get set up), returns freed
memory to the system (glibc ``malloc_trim``; ``MALLOC_MMAP_THRESHOLD_`` makes large blocks mmapped, so they go back
when freed), resets the kernel's peak resident set size to the current one (Linux ``/proc/self/clear_refs``), runs
one call on the benchmark input and reports how much the peak rose. The peak is read as VmHWM from
``/proc/self/status``: the same counter as ``getrusage``'s ru_maxrss, which however also keeps the parent's size
from before exec.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from unittest import mock

import torch
from rich.console import Console
from rich.table import Table
from torch import nn
from torchvision.models.detection._utils import BoxCoder, SSDMatcher
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD
from torchvision.ops import box_convert, box_iou

from ssdcli import default_boxes, encode, postprocess, ssd_loss
from ssdcli.core.nms import grouped_nms, torchvision_grouped_nms

NUM_CLASSES = 21
IMAGE_SIZE = 300
CASES = ("encode", "loss", "postprocess-dense", "postprocess-trained", "nms-dense", "nms-trained")
#: Speed-up over torchvision each case should reach (torchvision median / ssdcli median).
#: NMS: grouped_nms stays the CPU's choice only while it is at least as fast as torchvision's batched_nms there.
TARGETS = {
    "encode": 3.0, "loss": 1.0, "postprocess-dense": 1.5, "postprocess-trained": 1.5, "nms-dense": 1.0,
    "nms-trained": 1.0,
}  # fmt: skip
#: Cases run without autograd.
NO_GRAD = ("postprocess", "nms")


@dataclass(frozen=True)
class Sizes:
    encode_batch: int = 32
    loss_batch: int = 32
    postprocess_batch: int = 16
    max_gts: int = 15


def generate_gts(batch: int, max_gts: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """boxes [B, G, 4] xyxy normalised and classes [B, G] (-1 = padding), 5..max_gts GTs per image."""
    g = torch.Generator().manual_seed(seed)
    size = 0.03 + 0.5 * torch.rand(batch, max_gts, 2, generator=g)
    corner = (1 - size) * torch.rand(batch, max_gts, 2, generator=g)
    boxes = torch.cat((corner, corner + size), dim=-1)
    classes = torch.randint(1, NUM_CLASSES, (batch, max_gts), generator=g)
    counts = torch.randint(5, max_gts + 1, (batch, 1), generator=g)
    classes = torch.where(torch.arange(max_gts) < counts, classes, torch.full_like(classes, -1))
    return boxes, classes


def torchvision_targets(boxes: torch.Tensor, classes: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """torchvision's input format: one dict per image with the valid GTs only."""
    return [{"boxes": b[c > 0], "labels": c[c > 0]} for b, c in zip(boxes, classes)]


def torchvision_match(
    targets: list[dict[str, torch.Tensor]], anchors_xyxy: torch.Tensor, matcher: SSDMatcher
) -> list[torch.Tensor]:
    """SSD.forward's training-time matching: box_iou and SSDMatcher per image; [A] GT index per image."""
    matched = []
    for target in targets:
        if target["boxes"].numel() == 0:
            matched.append(torch.full((anchors_xyxy.shape[0],), -1, dtype=torch.int64))
            continue
        matched.append(matcher(box_iou(target["boxes"], anchors_xyxy)))
    return matched


def torchvision_encode(
    targets: list[dict[str, torch.Tensor]], anchors_xyxy: torch.Tensor, matcher: SSDMatcher, coder: BoxCoder
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Matching plus what compute_loss derives from it per image: class targets [A], foreground offsets [F, 4]."""
    out = []
    for target, matched in zip(targets, torchvision_match(targets, anchors_xyxy, matcher)):
        foreground = torch.where(matched >= 0)[0]
        offsets = coder.encode_single(target["boxes"][matched[foreground]], anchors_xyxy[foreground])
        labels = torch.zeros(anchors_xyxy.shape[0], dtype=torch.int64)
        labels[foreground] = target["labels"][matched[foreground]]
        out.append((labels, offsets))
    return out


def head_outputs(batch: int, seed: int, regime: str) -> tuple[torch.Tensor, torch.Tensor]:
    """conf [B, A, C] logits and loc [B, A, 4] offsets, "dense" or "trained-like"."""
    g = torch.Generator().manual_seed(seed)
    num_anchors = default_boxes("ssd300").shape[0]
    conf = torch.randn(batch, num_anchors, NUM_CLASSES, generator=g)
    loc = torch.randn(batch, num_anchors, 4, generator=g) * 0.5
    if regime == "trained-like":
        conf[..., 0] += 10.0
        for image in range(batch):
            where = torch.randperm(num_anchors, generator=g)[:300]
            classes = torch.randint(1, NUM_CLASSES, (300,), generator=g)
            conf[image, where, classes] += 10.0 + 4.0 * torch.rand(300, generator=g)
    return conf, loc


def nms_arguments(conf: torch.Tensor, loc: torch.Tensor, anchors: torch.Tensor) -> tuple[object, ...]:
    """What ``postprocess`` hands its NMS on these head outputs: boxes [N, 4], scores [N], groups [N], IoU."""
    recorder = mock.Mock(side_effect=grouped_nms)
    with mock.patch("ssdcli.core.postprocess.nms_for_device", return_value=recorder):
        postprocess(conf, loc, anchors)
    return recorder.call_args.args


def torchvision_ssd() -> SSD:
    """An SSD object for its compute_loss and postprocess_detections; backbone and head are never called."""
    return SSD(nn.Identity(), DefaultBoxGenerator([[2]]), (IMAGE_SIZE, IMAGE_SIZE), NUM_CLASSES, head=nn.Identity())


@dataclass(frozen=True)
class Case:
    """The two zero-argument calls of a case on the same inputs, and a check that their results agree."""

    ours: Callable[[], object]
    theirs: Callable[[], object]
    check: Callable[[], None]


def build_case(case: str, sizes: Sizes, model: SSD) -> Case:
    anchors = default_boxes("ssd300")
    anchors_xyxy = box_convert(anchors, "cxcywh", "xyxy")
    matcher, coder = SSDMatcher(0.5), BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))

    if case == "encode":
        boxes, classes = generate_gts(sizes.encode_batch, sizes.max_gts, seed=0)
        targets = torchvision_targets(boxes, classes)

        def encode_ours() -> object:
            return encode(boxes, classes, anchors)

        def encode_theirs() -> object:
            return torchvision_encode(targets, anchors_xyxy, matcher, coder)

        def encode_check() -> None:
            labels = encode(boxes, classes, anchors).labels
            expected = torchvision_encode(targets, anchors_xyxy, matcher, coder)
            assert all(torch.equal(labels[i], tv[0]) for i, tv in enumerate(expected)), "encode: results differ"

        return Case(encode_ours, encode_theirs, encode_check)

    if case == "loss":
        boxes, classes = generate_gts(sizes.loss_batch, sizes.max_gts, seed=1)
        targets = torchvision_targets(boxes, classes)
        matched = torchvision_match(targets, anchors_xyxy, matcher)
        encoded = encode(boxes, classes, anchors)
        conf, loc = head_outputs(sizes.loss_batch, seed=2, regime="dense")
        conf.requires_grad_(True)
        loc.requires_grad_(True)
        anchor_list = [anchors_xyxy] * sizes.loss_batch

        def loss_ours() -> torch.Tensor:
            conf.grad = loc.grad = None
            loss = ssd_loss(conf, loc, encoded.labels, encoded.offsets).total
            loss.backward()
            return loss

        def loss_theirs() -> torch.Tensor:
            conf.grad = loc.grad = None
            losses = model.compute_loss(targets, {"cls_logits": conf, "bbox_regression": loc}, anchor_list, matched)
            loss = losses["classification"] + losses["bbox_regression"]
            loss.backward()
            return loss

        def loss_check() -> None:
            assert torch.allclose(loss_ours(), loss_theirs(), rtol=1e-4), "loss: results differ"

        return Case(loss_ours, loss_theirs, loss_check)

    regime = {"dense": "dense", "trained": "trained-like"}[case.split("-")[1]]
    conf, loc = head_outputs(sizes.postprocess_batch, seed=3, regime=regime)
    if case.startswith("nms"):
        arguments = nms_arguments(conf, loc, anchors)

        def nms_ours() -> torch.Tensor:
            return grouped_nms(*arguments)  # type: ignore[arg-type]

        def nms_theirs() -> torch.Tensor:
            return torchvision_grouped_nms(*arguments)  # type: ignore[arg-type]

        def nms_check() -> None:
            assert torch.equal(nms_ours(), nms_theirs()), "nms: results differ"

        return Case(nms_ours, nms_theirs, nms_check)
    anchor_list = [anchors_xyxy * IMAGE_SIZE] * sizes.postprocess_batch
    shapes = [(IMAGE_SIZE, IMAGE_SIZE)] * sizes.postprocess_batch

    def postprocess_ours() -> list[dict[str, torch.Tensor]]:
        return postprocess(conf, loc, anchors)

    def postprocess_theirs() -> list[dict[str, torch.Tensor]]:
        return model.postprocess_detections({"cls_logits": conf, "bbox_regression": loc}, anchor_list, shapes)

    def postprocess_check() -> None:
        counts = [len(d["scores"]) for d in postprocess_ours()]
        assert counts == [len(d["scores"]) for d in postprocess_theirs()], "postprocess: results differ"

    return Case(postprocess_ours, postprocess_theirs, postprocess_check)


def timed(calls: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, list[float]]:
    """Run the calls in turn, warm-up rounds first; seconds per call of each timed round."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


def reset_peak_rss() -> bool:
    """Return freed heap memory to the system, then lower the process's recorded peak RSS to its current RSS
    (Linux: glibc ``malloc_trim`` and ``/proc/self/clear_refs``); False if unsupported."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
        return True
    except (OSError, AttributeError):
        return False


def peak_rss_kib() -> int:
    """Peak resident set size of this process in KiB: VmHWM of /proc/self/status (the value clear_refs resets;
    ``getrusage``'s ru_maxrss also keeps the parent's size from before exec)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise OSError("no VmHWM in /proc/self/status")


def peak_rss_worker(case: str, implementation: str) -> None:
    """In a fresh process: MiB by which one call raises the peak resident set size; printed as JSON (null if the
    peak cannot be reset after building the inputs)."""
    model = torchvision_ssd()
    small = build_case(case, Sizes(encode_batch=2, loss_batch=2, postprocess_batch=2), model)
    (small.ours if implementation == "ssdcli" else small.theirs)()  # set up libraries and thread pools
    full = build_case(case, Sizes(), model)
    call = full.ours if implementation == "ssdcli" else full.theirs
    with torch.no_grad() if case.startswith(NO_GRAD) else torch.enable_grad():
        if not reset_peak_rss():
            print(json.dumps({"peak_mib": None}))
            return
        before = peak_rss_kib()
        call()
        after = peak_rss_kib()
    print(json.dumps({"peak_mib": (after - before) / 1024}))


def peak_rss(case: str, implementation: str, threads: int | None) -> float | None:
    command = [sys.executable, __file__, "--worker", case, implementation]
    if threads:
        command += ["--threads", str(threads)]
    # A fixed mmap threshold makes glibc hand every large freed block straight back, so the resident set size
    # follows the live tensors instead of what the allocator keeps cached.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_mib"]


def mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds per case")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds per case first")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        peak_rss_worker(*args.worker)
        return

    started = time.perf_counter()
    model = torchvision_ssd()
    sizes = Sizes()
    rows = []
    for case in args.cases:
        calls = build_case(case, sizes, model)
        with torch.no_grad() if case.startswith(NO_GRAD) else torch.enable_grad():
            calls.check()
            times = timed({"ssdcli": calls.ours, "torchvision": calls.theirs}, args.warmup, args.repeats)
        row = {
            "case": case,
            "ssdcli_ms": 1000 * statistics.median(times["ssdcli"]),
            "torchvision_ms": 1000 * statistics.median(times["torchvision"]),
        }
        row["ratio"] = row["torchvision_ms"] / row["ssdcli_ms"]
        if not args.no_memory:
            row["ssdcli_peak_mib"] = peak_rss(case, "ssdcli", args.threads)
            row["torchvision_peak_mib"] = peak_rss(case, "torchvision", args.threads)
        rows.append(row)

    inputs = {
        "encode": f"B={sizes.encode_batch}, 5-{sizes.max_gts} GTs/image",
        "loss": f"B={sizes.loss_batch}, C={NUM_CLASSES}, forward+backward",
        "postprocess-dense": f"B={sizes.postprocess_batch}, C={NUM_CLASSES}, N(0,1) logits",
        "postprocess-trained": f"B={sizes.postprocess_batch}, C={NUM_CLASSES}, 300 confident/image",
        "nms-dense": "postprocess-dense's NMS candidates",
        "nms-trained": "postprocess-trained's NMS candidates",
    }
    columns = ["case", "input", "ssdcli ms", "torchvision ms", "torchvision/ssdcli", "target"]
    if not args.no_memory:
        columns += ["ssdcli peak MiB", "torchvision peak MiB"]
    cells = []
    for row in rows:
        target = TARGETS[row["case"]]
        line = [
            row["case"], inputs[row["case"]], f"{row['ssdcli_ms']:.1f}", f"{row['torchvision_ms']:.1f}",
            f"{row['ratio']:.2f}x", f">= {target:g}x " + ("met" if row["ratio"] >= target else "MISSED"),
        ]  # fmt: skip
        if not args.no_memory:
            line += [mib(row["ssdcli_peak_mib"]), mib(row["torchvision_peak_mib"])]
        cells.append(line)
    summary = (
        f"{cpu_name()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"load average {', '.join(f'{value:.1f}' for value in os.getloadavg())}; medians of {args.repeats} rounds "
        f"after {args.warmup} warm-up; {time.perf_counter() - started:.0f} s in all"
    )
    console = Console()
    if args.markdown:
        console.print("| " + " | ".join(columns) + " |", markup=False, highlight=False, soft_wrap=True)
        console.print("|" + "---|" * len(columns), markup=False, highlight=False, soft_wrap=True)
        for line in cells:
            console.print("| " + " | ".join(line) + " |", markup=False, highlight=False, soft_wrap=True)
    else:
        table = Table(title="ssdcli core vs torchvision on CPU")
        for column in columns:
            table.add_column(column, justify="left" if column in ("case", "input") else "right")
        for line in cells:
            table.add_row(*(f"[red]{c}[/red]" if c.endswith("MISSED") else c for c in line))
        console.print(table)
    console.print(summary, highlight=False)
    if args.json:
        meta = {
            "cpu": cpu_name(), "cpus": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__
        }
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"machine": meta, "rows": rows}, out, indent=2)


if __name__ == "__main__":
    main()

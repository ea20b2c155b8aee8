"""CPU inference benchmark: ssdcli's models in eager PyTorch, TorchScript and ONNX Runtime, and torchvision's SSDs.

    .venv/bin/python benchmarks/predict.py                     # all models, batch 1 and 16, 2 threads
    .venv/bin/python benchmarks/predict.py --archs ssd_tiny --repeats 3 --batch-repeats 2   # a quick check

Models (random weights, 21 classes): ssd_tiny (160 px), ssdlite320_mobilenet_v3_large (320 px) and ssd300_vgg16
(300 px). Each call takes a batch of [3, S, S] images in [0, 1] at the model's input size and returns detections in
pixels (score > 0.01, NMS IoU 0.45 per class, top 400 candidates per class, top 200 per image):

- ssdcli eager: normalise, the model, ``ssdcli.postprocess``, scale boxes to pixels.
- ssdcli TorchScript: the same with the model traced and saved by ``ssd export --to torchscript``.
- ONNX Runtime raw: the same with the model exported by ``ssd export --to onnx`` run by ONNX Runtime.
- ONNX Runtime NMS: the ``--with-nms`` export (decoding and NMS in the graph), then the top 200 per image.
- ONNX Runtime INT8: the raw export quantised by ``ssd export --int8`` (static, QDQ, per-channel weights),
  calibrated on 24 images of the same kind as the timed ones, decoded by ssdcli as "ORT raw". Its detections
  differ from FP32 by quantisation, so it is not part of the same-detections check; its accuracy is measured with
  ``ssd eval --onnx`` on real data (docs/results.md).
- torchvision: ``ssdlite320_mobilenet_v3_large`` / ``ssd300_vgg16`` (weights=None, eval mode) called on the list
  of images: its transform (normalise, resize to the same size), network, ``postprocess_detections`` and box
  rescaling, with its thresholds set to the ones above (torchvision's SSDLite defaults to score 0.001, NMS 0.55,
  300 candidates and 300 detections).

Random weights score every class of every default box about 1/21, so every class would keep 400 candidates and NMS
would dominate. As a trained detector does, the background wins: ``--background-bias`` (default 8) is added to the
background logit through the bias of every class predictor, ssdcli's and torchvision's alike. A randomly
initialised SSDLite head also gives every default box the same scores (its MobileNetV3 features are almost zero),
so a fixed N(0, ``--logit-noise``) pattern (default 0.8) is added to the class logits of both heads, and a few
default boxes per image stand out as a trained detector's objects do; the table shows the
detections per image that remain. Random deep networks also produce denormal floats, which make CPU arithmetic
tens of times slower and which trained weights do not produce; denormals are flushed to zero in PyTorch and ONNX
Runtime.

PyTorch and ONNX Runtime use ``--threads`` threads (default 2). Idle worker threads wait passively by default
(``OMP_WAIT_POLICY=PASSIVE`` for PyTorch's OpenMP, ``session.intra_op.allow_spinning=0`` for ONNX Runtime): on a
shared machine whose cores are busy with other work, spinning threads that wait for a descheduled sibling made
eager PyTorch 5-100x slower from call to call; ``--spin`` keeps both runtimes' default spinning. The variants of
a model and batch size run in turn, round after round (warm-up rounds first), so a change in machine load affects all alike; the table shows
medians. SSD300 takes 0.5-1 s per image on two cores: by default it gets 1 warm-up and 5 timed rounds at batch 1
and a single timed round at batch 16 (``--heavy-repeats``, ``--heavy-batch-repeats``). The first round of every
variant is checked: the ssdcli variants must find the same detections per image and label as eager PyTorch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings

if "--spin" not in sys.argv:  # before torch starts its OpenMP threads (see the module docstring)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnxruntime
import torch
import torchvision
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn
from torchvision.models.detection import ssd300_vgg16, ssdlite320_mobilenet_v3_large

from ssdcli import default_boxes, postprocess
from ssdcli.engine.export.exporter import export_onnx, export_torchscript
from ssdcli.engine.export.quantize import quantize_file
from ssdcli.engine.inference.loading import LoadedModel
from ssdcli.engine.inference.onnx_runtime import OnnxNetwork
from ssdcli.models import build_model, default_config
from ssdcli.models.spec import ModelSpec

NUM_CLASSES = 21
ARCHS = ("ssd_tiny", "ssdlite320_mobilenet_v3_large", "ssd300_vgg16")
TORCHVISION_BUILDERS = {"ssdlite320_mobilenet_v3_large": ssdlite320_mobilenet_v3_large, "ssd300_vgg16": ssd300_vgg16}
SHORT_NAMES = {"ssd_tiny": "ssd_tiny", "ssdlite320_mobilenet_v3_large": "SSDLite320", "ssd300_vgg16": "SSD300"}
SCORE_THRESHOLD, IOU_THRESHOLD, PRE_NMS_TOP_K, TOP_K = 0.01, 0.45, 400, 200
#: Speed-up over eager torchvision (same model, batch 1, postprocess included) the ONNX Runtime rows should reach.
TARGET = ("ssdlite320_mobilenet_v3_large", 1, 1.5)

Detections = list[dict[str, Tensor]]  # per image: boxes [K, 4] xyxy pixels, scores [K], labels [K]


@dataclass(frozen=True)
class Plan:
    """Warm-up and timed rounds of one (model, batch size)."""

    warmup: int
    repeats: int


def favour_background(convs: list[nn.Conv2d], num_classes: int, bias: float) -> None:
    """Add ``bias`` to the background logit of every default box: channel ``a * C + 0`` of each class predictor
    (ssdcli's and torchvision's heads share this channel layout)."""
    with torch.no_grad():
        for conv in convs:
            assert conv.bias is not None and conv.bias.numel() % num_classes == 0
            conv.bias.view(-1, num_classes)[:, 0] += bias


def add_logit_noise(convs: list[nn.Conv2d], sizes: list[int], std: float, seed: int = 0) -> None:
    """Add a fixed N(0, std) pattern over (channel, row, column) to the output of every class predictor (same
    seed for ssdcli's and torchvision's heads, whose output shapes agree), so that class scores vary from default
    box to default box as a trained detector's do; traced exports keep it as a constant."""
    generator = torch.Generator().manual_seed(seed)
    for conv, size in zip(convs, sizes):
        noise = std * torch.randn(1, conv.out_channels, size, size, generator=generator)
        conv.register_forward_hook(lambda module, inputs, output, noise=noise: output + noise)


def feature_map_sizes(model: nn.Module) -> list[int]:
    """Square feature map sizes of an ssdcli model, in head order."""
    return [int(size) for size in model.config.layout.feature_maps]


def last_conv(module: nn.Module) -> nn.Conv2d:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)][-1]


def onnx_session(path: Path, threads: int, spin: bool) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ssdcli_call(network: Callable[[Tensor], tuple[Tensor, Tensor]], loaded: LoadedModel, images: Tensor) -> Callable[[], Detections]:
    """Normalise, run ``network``, ``postprocess``, scale to pixels."""
    config = loaded.spec.config
    anchors = default_boxes(config.layout)
    mean, std = torch.tensor(config.mean).view(1, 3, 1, 1), torch.tensor(config.std).view(1, 3, 1, 1)
    scale = torch.tensor([images.shape[3], images.shape[2]] * 2, dtype=torch.float32)

    def call() -> Detections:
        conf, loc = network((images - mean) / std)
        found = postprocess(conf, loc, anchors, SCORE_THRESHOLD, IOU_THRESHOLD, TOP_K, PRE_NMS_TOP_K)
        return [{**d, "boxes": d["boxes"] * scale} for d in found]

    return call


def onnx_nms_call(session: onnxruntime.InferenceSession, loaded: LoadedModel, images: Tensor) -> Callable[[], Detections]:
    """Normalise, run the ``--with-nms`` graph, keep the top 200 per image by score, scale to pixels."""
    config = loaded.spec.config
    mean, std = torch.tensor(config.mean).view(1, 3, 1, 1), torch.tensor(config.std).view(1, 3, 1, 1)
    scale = torch.tensor([images.shape[3], images.shape[2]] * 2, dtype=torch.float32)

    def call() -> Detections:
        outputs = session.run(None, {"images": ((images - mean) / std).numpy()})
        boxes, scores, labels, image_index = (torch.from_numpy(a) for a in outputs)
        found = []
        for i in range(images.shape[0]):
            mine = torch.where(image_index == i)[0]
            mine = mine[torch.argsort(scores[mine], descending=True, stable=True)[:TOP_K]]
            found.append({"boxes": boxes[mine] * scale, "scores": scores[mine], "labels": labels[mine]})
        return found

    return call


def torchvision_call(model: nn.Module, images: Tensor) -> Callable[[], Detections]:
    as_list = list(images.unbind(0))

    def call() -> Detections:
        return model(as_list)

    return call


def build_calls(
    arch: str, images: dict[int, Tensor], folder: Path, threads: int, spin: bool, bias: float, noise: float
) -> dict[int, dict[str, Callable[[], Detections]]]:
    """Per batch size, the variants of ``arch`` on the same images; exports go to ``folder``."""
    torch.manual_seed(0)
    model = build_model(default_config(arch, NUM_CLASSES)).eval()
    favour_background([last_conv(m) for m in model.head.conf], NUM_CLASSES, bias)
    sizes = feature_map_sizes(model)
    add_logit_noise([last_conv(m) for m in model.head.conf], sizes, noise)
    names = ("background",) + tuple(f"class{i}" for i in range(1, NUM_CLASSES))
    spec = ModelSpec(model.config, names, tuple(range(NUM_CLASSES)))
    loaded = LoadedModel(model, spec, folder / f"{arch}.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = export_onnx(loaded, folder / f"{arch}.onnx", 18, True, False).path
        with_nms = export_onnx(loaded, folder / f"{arch}_nms.onnx", 18, True, True, SCORE_THRESHOLD, IOU_THRESHOLD, PRE_NMS_TOP_K).path
        scripted = torch.jit.load(str(export_torchscript(loaded, folder / f"{arch}.torchscript.pt").path)).eval()
        calibration = (torch.rand(24, 3, *images[min(images)].shape[-2:], generator=torch.Generator().manual_seed(1)))
        mean = torch.tensor(model.config.mean).view(1, 3, 1, 1)
        std = torch.tensor(model.config.std).view(1, 3, 1, 1)
        int8 = folder / f"{arch}_int8.onnx"
        quantize_file(raw, int8, ((calibration - mean) / std).numpy())
    raw_network, nms_session = OnnxNetwork(onnx_session(raw, threads, spin)), onnx_session(with_nms, threads, spin)
    int8_network = OnnxNetwork(onnx_session(int8, threads, spin))
    theirs = None
    if arch in TORCHVISION_BUILDERS:
        theirs = TORCHVISION_BUILDERS[arch](
            weights=None, weights_backbone=None, num_classes=NUM_CLASSES, score_thresh=SCORE_THRESHOLD,
            nms_thresh=IOU_THRESHOLD, detections_per_img=TOP_K, topk_candidates=PRE_NMS_TOP_K,
        ).eval()  # fmt: skip
        favour_background([last_conv(m) for m in theirs.head.classification_head.module_list], NUM_CLASSES, bias)
        add_logit_noise([last_conv(m) for m in theirs.head.classification_head.module_list], sizes, noise)
    calls = {}
    for batch, batch_images in images.items():
        calls[batch] = {
            "eager": ssdcli_call(model, loaded, batch_images),
            "TorchScript": ssdcli_call(scripted, loaded, batch_images),
            "ORT raw": ssdcli_call(raw_network, loaded, batch_images),
            "ORT NMS": onnx_nms_call(nms_session, loaded, batch_images),
            "ORT INT8": ssdcli_call(int8_network, loaded, batch_images),
        }
        if theirs is not None:
            calls[batch]["torchvision"] = torchvision_call(theirs, batch_images)
    return calls


def check_same(results: dict[str, Detections]) -> None:
    """Every ssdcli variant finds the same number of detections per image and label as eager PyTorch."""
    reference = results["eager"]
    for name, found in results.items():
        if name in ("torchvision", "ORT INT8"):
            continue
        for image, (want, got) in enumerate(zip(reference, found)):
            if sorted(want["labels"].tolist()) != sorted(got["labels"].tolist()):
                raise AssertionError(f"{name}: image {image} has other detections than eager PyTorch")


def timed(calls: dict[str, Callable[[], Detections]], plan: Plan) -> tuple[dict[str, list[float]], dict[str, Detections]]:
    """Run the calls in turn, warm-up rounds first; seconds per call of each timed round, and the detections of
    the first round (warm-up or timed) for checking."""
    first: dict[str, Detections] = {}
    times: dict[str, list[float]] = {name: [] for name in calls}
    for round_index in range(plan.warmup + plan.repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            found = call()
            if round_index >= plan.warmup:
                times[name].append(time.perf_counter() - start)
            first.setdefault(name, found)
    return times, first


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def plan_for(arch: str, batch: int, args: argparse.Namespace) -> Plan:
    if arch == "ssd300_vgg16":  # 0.5-1 s per image on two cores
        return Plan(1, args.heavy_repeats) if batch == 1 else Plan(0, args.heavy_batch_repeats)
    return Plan(args.warmup, args.repeats) if batch == 1 else Plan(1, args.batch_repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", choices=ARCHS, default=list(ARCHS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16], help="1 = latency, more = throughput")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch and ONNX Runtime threads")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up rounds at batch 1")
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds at batch 1")
    parser.add_argument("--batch-repeats", type=int, default=5, help="timed rounds at larger batches (1 warm-up)")
    parser.add_argument("--heavy-repeats", type=int, default=5, help="ssd300_vgg16: timed rounds at batch 1 (1 warm-up)")
    parser.add_argument(
        "--heavy-batch-repeats", type=int, default=1,
        help="ssd300_vgg16: timed rounds at larger batches (no warm-up: batch 1 ran before; ~1 min a round)",
    )  # fmt: skip
    parser.add_argument("--background-bias", type=float, default=8.0, help="added to every background logit")
    parser.add_argument("--logit-noise", type=float, default=0.8, help="std of a fixed pattern added to class logits")
    parser.add_argument("--spin", action="store_true", help="let idle threads spin (the runtimes' default)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    started = time.perf_counter()
    load_before = os.getloadavg()

    generator = torch.Generator().manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for arch in args.archs:
            size = default_config(arch, NUM_CLASSES).layout.image_size
            images = {batch: torch.rand(batch, 3, size, size, generator=generator) for batch in args.batches}
            calls = build_calls(arch, images, Path(folder), args.threads, args.spin, args.background_bias, args.logit_noise)
            for batch in args.batches:
                with torch.no_grad():
                    times, results = timed(calls[batch], plan_for(arch, batch, args))
                check_same(results)
                for name in calls[batch]:
                    rows.append({
                        "arch": arch, "batch": batch, "variant": name, "ms": 1000 * statistics.median(times[name]),
                        "rounds": len(times[name]),
                        "detections_per_image": sum(len(d["scores"]) for d in results[name]) / batch,
                    })  # fmt: skip

    def find(arch: str, batch: int, variant: str) -> dict | None:
        return next((r for r in rows if (r["arch"], r["batch"], r["variant"]) == (arch, batch, variant)), None)

    columns = ["model", "batch", "runtime", "ms/call", "img/s", "vs eager", "vs tv", "dets/img", "rounds"]
    cells, targets = [], []
    for row in rows:
        eager = find(row["arch"], row["batch"], "eager")
        theirs = find(row["arch"], row["batch"], "torchvision")
        row["vs_eager"] = eager["ms"] / row["ms"]
        row["vs_torchvision"] = theirs["ms"] / row["ms"] if theirs else None
        if (row["arch"], row["batch"]) == TARGET[:2] and row["variant"].startswith("ORT") and theirs:
            verdict = "met" if row["vs_torchvision"] >= TARGET[2] else "MISSED"
            targets.append(f"{row['variant']} {row['vs_torchvision']:.2f}x {verdict}")
        cells.append([
            SHORT_NAMES[row["arch"]], str(row["batch"]), row["variant"], f"{row['ms']:.1f}",
            f"{1000 * row['batch'] / row['ms']:.1f}", f"{row['vs_eager']:.2f}x",
            "" if theirs is None or row is theirs else f"{row['vs_torchvision']:.2f}x",
            f"{row['detections_per_image']:.1f}", str(row["rounds"]),
        ])  # fmt: skip
    target = (
        f"target: ONNX Runtime {SHORT_NAMES[TARGET[0]]} batch {TARGET[1]} >= {TARGET[2]:g}x faster than torchvision: "
        + (", ".join(targets) or "not measured in this run")
    )
    load_after = os.getloadavg()
    summary = (
        f"{cpu_name()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads (PyTorch and ONNX Runtime), "
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, onnxruntime {onnxruntime.__version__}; "
        f"load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after; background bias "
        f"{args.background_bias:g}, logit noise {args.logit_noise:g}; medians after warm-up; {time.perf_counter() - started:.0f} s in all"
    )
    console = Console()
    if args.markdown:
        console.print("| " + " | ".join(columns) + " |", markup=False, highlight=False, soft_wrap=True)
        console.print("|" + "---|" * len(columns), markup=False, highlight=False, soft_wrap=True)
        for line in cells:
            console.print("| " + " | ".join(line) + " |", markup=False, highlight=False, soft_wrap=True)
    else:
        table = Table(title="Inference on CPU (vs eager / vs tv: speed-up over eager ssdcli / torchvision)")
        for column in columns:
            table.add_column(column, justify="left" if column in ("model", "runtime") else "right")
        for line in cells:
            table.add_row(*line)
        console.print(table)
    console.print(target, highlight=False)
    console.print(summary, highlight=False)
    if args.json:
        meta = {
            "cpu": cpu_name(), "cpus": os.cpu_count(), "threads": args.threads, "spin": args.spin,
            "background_bias": args.background_bias, "logit_noise": args.logit_noise, "load": [load_before, load_after],
        }  # fmt: skip
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"machine": meta, "rows": rows}, out, indent=2)


if __name__ == "__main__":
    main()

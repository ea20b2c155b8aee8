"""GPU benchmark: training and inference speed of ssdcli on the first CUDA device, against torchvision.

    .venv/bin/python benchmarks/gpu.py                 # every row, 20 timed steps each
    .venv/bin/python benchmarks/gpu.py --steps 3       # a quick check that it runs

One table, one row per measurement:
- training images/s (forward, loss, backward, SGD step on generated images and boxes) of SSD300-VGG16 and
  ssd_tiny256 in float32, with ``--amp`` (bf16 where the GPU supports it, else fp16 with a grad scaler) and with
  AMP + channels-last, as ``ssd train`` runs them (matching and loss without input checks, the default-box
  geometry computed once); torchvision's ssd300_vgg16 with its reference settings (float32, 4 images per GPU,
  ``references/detection``), and at the same batch as ssdcli's;
- encode (matching + targets, B = 32, SSD300 default boxes) and postprocess (B = 16, dense and trained-like
  head outputs) in ms, against torchvision's per-image code on the same GPU; ssdcli's ``grouped_nms`` against
  ``torchvision_grouped_nms`` (``torchvision.ops.batched_nms``, what ``nms_for_device`` picks on CUDA) on the
  candidates postprocess hands its NMS in both regimes (the figures behind choosing NMS per device);
- inference images/s of SSD300-VGG16 (network + postprocess): PyTorch float32, PyTorch AMP + channels-last, and
  ONNX Runtime with its CUDA provider where installed (its CPU provider otherwise, said in the row).

Every timing synchronises the device before the clock is read; the table shows medians of ``--repeats`` rounds.
Without a CUDA device the script prints one line and exits with status 1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import torch

from ssdcli import default_boxes, encode, postprocess, ssd_loss
from ssdcli.core.matching import default_box_geometry
from ssdcli.engine.device import mixed_precision
from ssdcli.models import build_model, default_config

Row = tuple[str, str, str, str]  # what, variant, figure, against torchvision


def cuda_or_exit() -> torch.device:
    if not torch.cuda.is_available():
        print(f"benchmarks/gpu.py: no CUDA device found (torch {torch.__version__}); nothing was measured")
        sys.exit(1)
    return torch.device("cuda", 0)


def seconds(call: Callable[[], object], warmup: int, repeats: int) -> float:
    """Median seconds of ``call``, the device synchronised around each."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        call()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def generated(batch: int, size: int, num_classes: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Images [B, 3, S, S], boxes [B, 3, 4] xyxy normalised, classes [B, 3] (-1 = padding), on ``device``."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, size, size, generator=g)
    centre = torch.rand(batch, 3, 2, generator=g) * 0.6 + 0.2
    half = torch.rand(batch, 3, 2, generator=g) * 0.15 + 0.05
    boxes = torch.cat((centre - half, centre + half), dim=-1).clamp(0, 1)
    classes = torch.randint(1, num_classes, (batch, 3), generator=g)
    classes[:, 2] = torch.where(torch.rand(batch, generator=g) < 0.5, -1, classes[:, 2])
    return images.to(device), boxes.to(device), classes.to(device)


def ssdcli_train_step(arch: str, batch: int, amp: bool, channels_last: bool, device: torch.device) -> Callable[[], None]:
    model = build_model(default_config(arch, 21)).to(device).train()
    size = model.config.layout.image_size
    images, boxes, classes = generated(batch, size, 21, device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    geometry = default_box_geometry(default_boxes(model.config.layout, device=device))
    dtype = mixed_precision(amp, device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)

    def step() -> None:
        targets = encode(boxes, classes, geometry, checked=False)
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            conf, loc = model(images)
        loss = ssd_loss(conf.float(), loc.float(), targets.labels, targets.offsets, checked=False).total
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def torchvision_train_step(batch: int, device: torch.device) -> Callable[[], None]:
    from torchvision.models.detection import ssd300_vgg16

    model = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=21).to(device).train()
    images, boxes, classes = generated(batch, 300, 21, device)
    image_list = list(images)
    targets = [{"boxes": b[c > 0] * 300, "labels": c[c > 0]} for b, c in zip(boxes, classes)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.002, momentum=0.9, weight_decay=5e-4)

    def step() -> None:
        loss = sum(model(image_list, targets).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[union-attr]
        optimizer.step()

    return step


def training_rows(args: argparse.Namespace, device: torch.device) -> list[Row]:
    rows: list[Row] = []
    reference = args.batch / seconds(torchvision_train_step(args.batch, device), args.warmup, args.steps)
    rows.append(("train img/s", f"torchvision ssd300_vgg16 fp32 batch {args.batch}", f"{reference:.1f}", "1.00x"))
    per_gpu = 4 / seconds(torchvision_train_step(4, device), args.warmup, args.steps)
    rows.append(("train img/s", "torchvision ssd300_vgg16 reference (fp32, batch 4)", f"{per_gpu:.1f}", ""))
    for arch in ("ssd300_vgg16", "ssd_tiny256"):
        for name, amp, channels_last in (("fp32", False, False), ("amp", True, False), ("amp+cl", True, True)):
            step = ssdcli_train_step(arch, args.batch, amp, channels_last, device)
            speed = args.batch / seconds(step, args.warmup, args.steps)
            versus = f"{speed / reference:.2f}x" if arch == "ssd300_vgg16" else ""
            rows.append(("train img/s", f"ssdcli {arch} {name} batch {args.batch}", f"{speed:.1f}", versus))
            del step
            torch.cuda.empty_cache()
    return rows


def core_rows(args: argparse.Namespace, device: torch.device) -> list[Row]:
    """encode and postprocess in ms on the GPU, ssdcli against torchvision on the same inputs."""
    sys.path.insert(0, str(Path(__file__).parent))
    from torchvision.models.detection._utils import BoxCoder, SSDMatcher
    from torchvision.ops import box_convert, box_iou

    from core import IMAGE_SIZE, NUM_CLASSES, generate_gts, head_outputs, torchvision_ssd, torchvision_targets

    anchors = default_boxes("ssd300", device=device)
    anchors_xyxy = box_convert(anchors, "cxcywh", "xyxy")
    geometry = default_box_geometry(anchors)
    matcher, coder = SSDMatcher(0.5), BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    boxes, classes = (t.to(device) for t in generate_gts(32, 15, seed=0))
    targets = torchvision_targets(boxes, classes)

    def theirs_encode() -> None:
        for target in targets:
            matched = matcher(box_iou(target["boxes"], anchors_xyxy))
            foreground = torch.where(matched >= 0)[0]
            coder.encode_single(target["boxes"][matched[foreground]], anchors_xyxy[foreground])
            labels = torch.zeros(anchors_xyxy.shape[0], dtype=torch.int64, device=device)
            labels[foreground] = target["labels"][matched[foreground]]

    rows: list[Row] = []
    ours = seconds(lambda: encode(boxes, classes, geometry, checked=False), args.warmup, args.repeats)
    them = seconds(theirs_encode, args.warmup, args.repeats)
    rows.append(("encode ms", "B 32, 15 GTs, SSD300 boxes", f"{1000 * ours:.2f}", f"{them / ours:.2f}x"))
    model = torchvision_ssd().to(device)
    for regime in ("dense", "trained-like"):
        conf, loc = (t.to(device) for t in head_outputs(16, seed=3, regime=regime))
        anchor_list = [anchors_xyxy * IMAGE_SIZE] * 16
        shapes = [(IMAGE_SIZE, IMAGE_SIZE)] * 16
        ours = seconds(partial(postprocess, conf, loc, anchors), args.warmup, args.repeats)
        them = seconds(
            partial(model.postprocess_detections, {"cls_logits": conf, "bbox_regression": loc}, anchor_list, shapes),
            args.warmup,
            args.repeats,
        )
        rows.append(("postprocess ms", f"B 16, {NUM_CLASSES} classes, {regime}", f"{1000 * ours:.2f}", f"{them / ours:.2f}x"))
    rows.extend(nms_rows(args, device))
    return rows


def nms_rows(args: argparse.Namespace, device: torch.device) -> list[Row]:
    """ssdcli's grouped_nms against torchvision_grouped_nms (``torchvision.ops.batched_nms``, CUDA's choice in
    ``nms_for_device``) on the candidates postprocess hands its NMS, dense (128,000 candidates: batched_nms runs
    one nms kernel per group above 100,000 coordinates) and trained-like (about 5,000: one kernel for all groups);
    the kept indices checked equal."""
    from core import head_outputs, nms_arguments
    from ssdcli.core.nms import grouped_nms, torchvision_grouped_nms

    anchors = default_boxes("ssd300", device=device)
    rows: list[Row] = []
    for regime in ("dense", "trained-like"):
        conf, loc = (t.to(device) for t in head_outputs(16, seed=3, regime=regime))
        arguments = nms_arguments(conf, loc, anchors)
        same = torch.equal(grouped_nms(*arguments), torchvision_grouped_nms(*arguments))  # type: ignore[arg-type]
        assert same, "NMS: kept sets differ"
        ours = seconds(partial(grouped_nms, *arguments), args.warmup, args.repeats)  # type: ignore[arg-type]
        them = seconds(partial(torchvision_grouped_nms, *arguments), args.warmup, args.repeats)  # type: ignore[arg-type]
        count = arguments[0].shape[0]  # type: ignore[attr-defined]
        rows.append(("NMS ms", f"grouped_nms vs batched_nms, {regime}, {count} boxes", f"{1000 * ours:.2f}",
                     f"{them / ours:.2f}x"))  # fmt: skip
    return rows


def _infer(net: torch.nn.Module, batch: torch.Tensor, dtype: torch.dtype | None, anchors: torch.Tensor) -> None:
    """One forward pass of ``batch`` (B, 3, H, W) in ``dtype`` (autocast on CUDA; None: float32), then postprocess."""
    with torch.inference_mode(), (torch.autocast("cuda", dtype=dtype) if dtype else nullcontext()):
        conf, loc = net(batch)
    postprocess(conf.float(), loc.float(), anchors)


def inference_rows(args: argparse.Namespace, device: torch.device) -> list[Row]:
    model = build_model(default_config("ssd300_vgg16", 21)).to(device).eval()
    anchors = default_boxes(model.config.layout, device=device)
    images = torch.rand(args.batch, 3, 300, 300, device=device)
    rows: list[Row] = []
    for name, amp, channels_last in (("fp32", False, False), ("amp+cl", True, True)):
        net = model.to(memory_format=torch.channels_last) if channels_last else model
        batch = images.contiguous(memory_format=torch.channels_last) if channels_last else images
        infer = partial(_infer, net, batch, mixed_precision(amp, device), anchors)
        speed = args.batch / seconds(infer, args.warmup, args.steps)
        rows.append(("infer img/s", f"PyTorch ssd300_vgg16 {name} batch {args.batch}", f"{speed:.1f}", ""))
    rows.append(onnx_row(args, model.to(memory_format=torch.contiguous_format), anchors, device))
    return rows


def onnx_row(args: argparse.Namespace, model: torch.nn.Module, anchors: torch.Tensor, device: torch.device) -> Row:
    try:
        import onnxruntime
    except ImportError:
        return ("infer img/s", "ONNX Runtime", "not installed", "")
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in onnxruntime.get_available_providers()]
    sample = torch.rand(args.batch, 3, 300, 300)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ssd300.onnx"
        torch.onnx.export(
            model.cpu(), (sample,), str(path), input_names=["images"], output_names=["conf", "loc"],
            dynamic_axes={"images": {0: "batch"}}, opset_version=17, dynamo=False,
        )  # fmt: skip
        model.to(device)
        session = onnxruntime.InferenceSession(str(path), providers=providers[:1])
        feed = {"images": sample.numpy()}

        def infer() -> None:
            conf, loc = session.run(None, feed)
            postprocess(torch.from_numpy(conf).to(device), torch.from_numpy(loc).to(device), anchors)

        speed = args.batch / seconds(infer, args.warmup, args.steps)
    provider = session.get_providers()[0]
    return ("infer img/s", f"ONNX Runtime fp32 ({provider}) batch {args.batch}", f"{speed:.1f}", "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed training or inference steps per row")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per encode/postprocess row")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first")
    parser.add_argument("--batch", type=int, default=32, help="images per training and inference step")
    args = parser.parse_args()
    device = cuda_or_exit()
    torch.backends.cudnn.benchmark = True
    rows = training_rows(args, device) + core_rows(args, device) + inference_rows(args, device)

    from rich.console import Console
    from rich.table import Table

    name = torch.cuda.get_device_name(device)
    bf16 = "bf16" if torch.cuda.is_bf16_supported() else "fp16 + grad scaler"
    table = Table(title=f"ssdcli on {name} (torch {torch.__version__}, AMP = {bf16})")
    for column, justify in (("measure", "left"), ("case", "left"), ("value", "right"), ("torchvision / ssdcli time", "right")):  # fmt: skip
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*row)
    Console().print(table)


if __name__ == "__main__":
    main()

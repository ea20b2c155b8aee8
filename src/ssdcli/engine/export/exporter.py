"""``ssd export``: ONNX (dynamic batch, optional decode + NMS in the graph) and TorchScript, each verified
against the PyTorch model before the command succeeds."""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ssdcli.config import ExportConfig, TrainConfig
from ssdcli.core.anchors import default_boxes
from ssdcli.core.boxes import has_area, pairwise_iou
from ssdcli.core.coder import decode
from ssdcli.core.nms import grouped_nms
from ssdcli.core.postprocess import EVAL_SETTINGS
from ssdcli.data.files import atomic_path, check_new_file, scratch_folder, write_error
from ssdcli.engine.events import LOGGER
from ssdcli.engine.export.parity import ExportFailed, largest_difference
from ssdcli.engine.inference.detectors import torchscript_quiet
from ssdcli.engine.inference.loading import LoadedModel, load_model
from ssdcli.engine.inference.onnx_runtime import METADATA_KEY, NORMALISED_INPUT, PIXEL_INPUT
from ssdcli.engine.inference.openvino_runtime import (
    OPENVINO_GRAPH,
    OpenVinoNetwork,
    open_openvino,
    openvino_module,
)
from ssdcli.errors import CheckpointError, SsdcliError, UsageError
from ssdcli.models.pretrained import detector_by_name
from ssdcli.models.spec import ModelSpec

#: Largest absolute difference accepted between the exported and the PyTorch outputs (float32 on CPU).
PARITY_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    max_difference: float
    tolerance: float
    outputs: tuple[str, ...]
    int8: Int8Summary | None = None  # the INT8 file's check


@dataclass(frozen=True)
class Int8Summary:
    """How an INT8 file was made and judged: AP@0.5 of its detections against the FP32 file's (``agreement``,
    accepted from ``minimum``) on ``check_images`` held-back images, the raw-output ``cosine``, the images it
    was calibrated on, and how many convolutions (the heads' last ones) stayed FP32."""

    agreement: float
    minimum: float
    check_images: int
    cosine: float
    calibration_images: int
    fp32_convolutions: int


class GroupedNms(torch.autograd.Function):
    """Greedy NMS within each group of candidates, exported as one ONNX ``NonMaxSuppression`` node.

    boxes [G, K, 4] xyxy, scores [G, 1, K] -> selected [N, 2] int64 (group, slot), group-major and by decreasing
    score within a group (the order of ONNX's ``selected_indices``). A candidate is kept if its score is above
    ``score_threshold`` and its IoU with every higher-scoring kept candidate of its group is at most
    ``iou_threshold``. ONNX NMS runs each of its batch entries apart from the others, so no coordinate offsets are
    needed to separate the groups (an offset of g * 2 added to [0, 1] coordinates costs float32 up to 1e-3 of IoU
    once there are a few hundred groups); in PyTorch the groups go through ``grouped_nms``, as in ``postprocess``.
    PyTorch's current (dynamo) exporter would need no ``symbolic`` for ``torchvision.ops.nms``, but exports it as
    one batch entry, so the groups would be separated by exactly those offsets (and ``batched_nms`` itself fails
    in ``torch.export`` on its data-dependent size branch): this node stays, with the TorchScript-based exporter.
    """

    @staticmethod
    def forward(ctx: Any, boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float) -> Tensor:
        groups, _, slots = scores.shape
        flat_scores = scores.reshape(-1)  # [G * K]
        group = torch.arange(groups, device=scores.device).repeat_interleave(slots)  # [G * K]
        candidate = torch.where(flat_scores > score_threshold)[0]
        kept = grouped_nms(boxes.reshape(-1, 4)[candidate], flat_scores[candidate], group[candidate], iou_threshold)
        kept = candidate[kept]  # group-major, by decreasing score within a group
        return torch.stack((kept // slots, kept % slots), dim=1)

    @staticmethod
    def symbolic(g: Any, boxes: Any, scores: Any, iou_threshold: float, score_threshold: float) -> Any:
        selected = g.op(
            "NonMaxSuppression",
            boxes,
            scores,
            g.op("Constant", value_t=torch.tensor([torch.iinfo(torch.int64).max], dtype=torch.int64)),  # no cap
            g.op("Constant", value_t=torch.tensor([iou_threshold], dtype=torch.float32)),
            g.op("Constant", value_t=torch.tensor([score_threshold], dtype=torch.float32)),
        )  # [N, 3]: (batch entry = group, class = 0, box = slot)
        return g.op("Gather", selected, g.op("Constant", value_t=torch.tensor([0, 2], dtype=torch.int64)), axis_i=1)


class GraphPostprocess(nn.Module):
    """Decoding and NMS as an exportable graph: conf [B, A, C] logits, loc [B, A, 4] -> boxes [N, 4] xyxy
    normalised, scores [N], labels [N] (1..C-1), batch_index [N] (which image), grouped by image, then class, then
    by decreasing score. Score threshold, pre-NMS top-k and NMS IoU are fixed at export time; the runner keeps the
    top-k per image. The same candidates and decisions as ``ssdcli.postprocess``: clipped decoded boxes, those
    left without area scored -1 (no candidate), the top ``pre_nms_top_k`` scores of each (image, class), NMS
    within each (image, class)."""

    anchors: Tensor  # [A, 4] a buffer

    def __init__(
        self, anchors: Tensor, score_threshold: float, iou_threshold: float, pre_nms_top_k: int, box_scale: float = 1.0
    ):
        super().__init__()
        self.register_buffer("anchors", anchors.clone())
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.pre_nms_top_k = min(pre_nms_top_k, anchors.shape[0])
        self.box_scale = box_scale  # 1: normalised boxes; S: pixels of the S x S input (--with-preprocess)

    def forward(self, conf: Tensor, loc: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        num_classes, k = conf.shape[2], self.pre_nms_top_k
        boxes = decode(loc, self.anchors).clamp(0.0, 1.0)  # [B, A, 4]
        scores = torch.softmax(conf, dim=-1)[:, :, 1:]  # [B, A, C-1]
        scores = torch.where(has_area(boxes).unsqueeze(-1), scores, -1.0).transpose(1, 2)  # [B, C-1, A]
        top_scores, top_anchor = scores.topk(k, dim=2)  # [B, C-1, k]
        candidates = boxes.gather(1, top_anchor.reshape(top_anchor.shape[0], -1, 1).expand(-1, -1, 4))  # [B, (C-1)k, 4]
        candidates = candidates.reshape(-1, k, 4)  # [G, k, 4], group g = image * (C-1) + class - 1
        candidate_scores = top_scores.reshape(-1, 1, k)  # [G, 1, k]
        selected = GroupedNms.apply(candidates, candidate_scores, self.iou_threshold, self.score_threshold)  # [N, 2]
        group, slot = selected[:, 0], selected[:, 1]
        image_index = torch.div(group, num_classes - 1, rounding_mode="floor")
        labels = group - image_index * (num_classes - 1) + 1
        boxes_out = candidates[group, slot] if self.box_scale == 1.0 else candidates[group, slot] * self.box_scale
        return boxes_out, candidate_scores[group, 0, slot], labels, image_index


class PixelInput(nn.Module):
    """The network with its input preparation inside: pixels [B, S, S, 3] uint8 RGB at the model's input size ->
    the network's outputs, scaling to [0, 1] and normalising with ``mean``/``std`` in the graph (``--with-preprocess``:
    a C++ or mobile caller resizes and feeds pixels)."""

    mean: Tensor  # [1, 3, 1, 1] a buffer
    std: Tensor  # [1, 3, 1, 1] a buffer

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        images = pixels.permute(0, 3, 1, 2).float() / 255.0  # [B, 3, S, S]
        return self.model((images - self.mean) / self.std)


class DecodedDetector(nn.Module):
    """SSD with decoding and NMS inside: images [B, 3, S, S] -> the outputs of :class:`GraphPostprocess`."""

    def __init__(self, model: nn.Module, anchors: Tensor, score_threshold: float, iou_threshold: float, pre_nms_top_k: int):
        super().__init__()
        self.model = model
        self.postprocess = GraphPostprocess(anchors, score_threshold, iou_threshold, pre_nms_top_k)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.postprocess(*self.model(images))


def model_metadata(spec: ModelSpec, with_nms: bool, extra: dict[str, Any] | None = None) -> dict[str, str]:
    """What ``ssd predict --onnx`` needs, as ONNX metadata (JSON under one key)."""
    info = {
        **spec.to_dict(),  # what ssdcli reads back (ModelSpec.from_dict)
        "arch": spec.arch,  # the rest spelled out for other runtimes' callers
        "input_size": spec.layout.image_size,
        "mean": list(spec.mean),
        "std": list(spec.std),
        "with_nms": with_nms,
        **(extra or {}),
    }
    return {METADATA_KEY: json.dumps(info)}


def _sample_pixels(size: int, batch: int, seed: int = 0) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, size, size, 3), generator=generator, dtype=torch.uint8)


def _sample_inputs(size: int, batch: int, seed: int = 0) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=generator)


def _onnx_modules() -> tuple[Any, Any]:
    try:
        import onnx
        import onnx.compose
        import onnxruntime
    except ImportError:
        raise UsageError(
            "ONNX export needs the optional packages onnx and onnxruntime: pip install 'ssdcli[onnx]'"
        ) from None
    return onnx, onnxruntime


def _to_onnx(module: nn.Module, inputs: tuple[Tensor, ...], path: Path, names: tuple[list[str], list[str]],
             axes: dict[str, dict[int, str]], opset: int) -> None:  # fmt: skip
    """PyTorch's TorchScript-based ONNX exporter (``dynamo=False``): the one that exports the NMS graph, whose
    custom :class:`GroupedNms` node has a TorchScript ``symbolic``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            inputs,
            str(path),
            input_names=names[0],
            output_names=names[1],
            dynamic_axes=axes or None,
            opset_version=opset,
            dynamo=False,
        )


def fallback_line(error: Exception) -> str:
    """The warning logged when PyTorch's dynamo exporter fails and the TorchScript-based one takes over: the
    error's type and the first line of its message (the rest is the exporter's own report, often pages long)."""
    lines = str(error).strip().splitlines()
    reason = f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__
    return f"ONNX: PyTorch's dynamo exporter failed ({reason}); the network is exported with the TorchScript-based one"


def _network_to_onnx(module: nn.Module, images: Tensor, path: Path, dynamic_batch: bool, opset: int) -> str:
    """Export the network (images -> conf, loc) with PyTorch's current exporter (``torch.export`` then ONNX,
    ``dynamo=True``) where it is installed (onnxscript) and works, else with the TorchScript-based one. Returns
    the exporter used ("dynamo" or "torchscript"); either file is checked against PyTorch by the caller. A failure
    of the dynamo exporter is logged as a warning of the ``ssdcli`` logger (:func:`fallback_line`)."""
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        has_onnxscript = False
    else:
        has_onnxscript = True
    if has_onnxscript:
        shapes = {"images": {0: torch.export.Dim("batch", min=1, max=4096)}} if dynamic_batch else None
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module,
                    (images,),
                    str(path),
                    input_names=["images"],
                    output_names=["conf", "loc"],
                    dynamic_shapes=shapes,
                    opset_version=opset,
                    dynamo=True,
                    external_data=False,
                )
            return "dynamo"
        except Exception as error:  # noqa: BLE001 - any failure of the new exporter falls back to the proven one
            path.unlink(missing_ok=True)
            LOGGER.warning("%s", fallback_line(error))
    axes = {name: {0: "batch"} for name in ("images", "conf", "loc")} if dynamic_batch else {}
    _to_onnx(module, (images,), path, (["images"], ["conf", "loc"]), axes, opset)
    return "torchscript"


def _session(onnxruntime: Any, path: Path) -> Any:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def separated_head_outputs(
    anchors: Tensor, num_classes: int, batch: int, iou_threshold: float, seed: int = 0, margin: float = 1e-3
) -> tuple[Tensor, Tensor]:
    """Head outputs conf [B, A, C], loc [B, A, 4] on which NMS decides with a margin: a few confident detections per
    (image, class) on jittered default boxes, every pairwise IoU within a group at least ``margin`` away from
    ``iou_threshold``, every score far from 0.01. Float differences between runtimes cannot flip a decision on
    them, so the exported graph's detections must equal PyTorch's one for one.
    """
    generator = torch.Generator().manual_seed(seed)
    num_anchors = anchors.shape[0]
    per_group = min(6, num_anchors // max(1, num_classes - 1))
    for _ in range(100):
        conf = torch.zeros(batch, num_anchors, num_classes)
        conf[:, :, 0] = 12.0  # background: other classes score about 6e-6
        loc = 0.5 * torch.randn(batch, num_anchors, 4, generator=generator)
        chosen = torch.rand(batch, num_anchors, generator=generator).argsort(dim=1)[:, : per_group * (num_classes - 1)]
        label = torch.arange(chosen.shape[1]) % (num_classes - 1) + 1  # [per_group * (C-1)]
        image = torch.arange(batch)[:, None].expand_as(chosen)
        conf[image, chosen, label.expand_as(chosen)] = 14.0 + 4.0 * torch.rand(chosen.shape, generator=generator)
        boxes = decode(loc.double(), anchors.double()).clamp(0.0, 1.0)  # [B, A, 4]
        groups = boxes[image, chosen].view(batch, per_group, num_classes - 1, 4).transpose(1, 2)  # [B, C-1, K, 4]
        iou = pairwise_iou(groups.reshape(-1, per_group, 4), groups.reshape(-1, per_group, 4))  # [B(C-1), K, K]
        if not bool(((iou - iou_threshold).abs() < margin).any()):
            return conf, loc
    raise ExportFailed("could not build NMS test inputs whose decisions are clear of the IoU threshold")


def export_onnx(
    loaded: LoadedModel,
    path: Path,
    opset: int,
    dynamic_batch: bool,
    with_nms: bool,
    score_threshold: float = EVAL_SETTINGS.score_threshold,
    iou_threshold: float = EVAL_SETTINGS.iou_threshold,
    pre_nms_top_k: int = EVAL_SETTINGS.pre_nms_top_k,
    with_preprocess: bool = False,
) -> ExportResult:
    """Export to ONNX, atomically, after checking ONNX Runtime against PyTorch.

    ``with_preprocess``: the file takes uint8 RGB pixels [B, S, S, 3] (:class:`PixelInput`) and, with NMS, gives
    boxes in pixels of that S x S input; the metadata says so (``input``, ``boxes``).

    The network (images -> conf, loc) is checked on sample images: every output within ``PARITY_TOLERANCE``.
    With ``with_nms``, decoding and NMS are exported as a second graph (conf, loc -> detections), checked on
    :func:`separated_head_outputs` (the same detections, values within the tolerance) and joined to the network
    into one file. NMS is not checked on the network's outputs for random images: an untrained network scores
    thousands of boxes alike, and IoUs within 1e-7 of the threshold, where float differences between runtimes may
    decide either way, are then certain to occur.
    """
    onnx, onnxruntime = _onnx_modules()
    config = loaded.spec.config
    size = config.layout.image_size
    anchors = default_boxes(config.layout)
    batch_axis = {0: "batch"} if dynamic_batch else None
    with atomic_path(path) as temporary, scratch_folder(path) as scratch:
        postprocess_file = scratch / "postprocess.onnx"
        traced_batch = 2 if dynamic_batch else 1  # a fixed batch axis is 1, as deployments feed single images
        network = PixelInput(loaded.model, config.mean, config.std).eval() if with_preprocess else loaded.model
        sample = _sample_pixels if with_preprocess else _sample_inputs
        sample_images = sample(size, traced_batch)
        exporter = _network_to_onnx(network, sample_images, temporary, dynamic_batch, opset)
        session = _session(onnxruntime, temporary)
        difference = 0.0
        for batch in (1, 3) if dynamic_batch else (1,):
            images = sample(size, batch, seed=batch)
            with torch.no_grad():
                expected = network(images)
            got = session.run(None, {"images": images.numpy()})
            difference = max(difference, largest_difference(expected, got, ("PyTorch", "ONNX Runtime"), path))
        outputs: tuple[str, ...] = ("conf", "loc")
        proto = onnx.load(str(temporary))
        if with_nms:
            outputs = ("boxes", "scores", "labels", "batch_index")
            box_scale = float(size) if with_preprocess else 1.0
            graph = GraphPostprocess(anchors, score_threshold, iou_threshold, pre_nms_top_k, box_scale).eval()
            num_classes = config.num_classes
            axes = {name: {0: "detections"} for name in outputs}
            if batch_axis:
                axes.update(conf=batch_axis, loc=batch_axis)
            head_outputs = separated_head_outputs(anchors, num_classes, traced_batch, iou_threshold)
            _to_onnx(graph, head_outputs, postprocess_file, (["conf", "loc"], list(outputs)), axes, opset)
            post_session = _session(onnxruntime, postprocess_file)
            for batch in (1, 3) if dynamic_batch else (1,):
                conf, loc = separated_head_outputs(anchors, num_classes, batch, iou_threshold, seed=batch)
                with torch.no_grad():
                    expected = graph(conf, loc)
                got = post_session.run(None, {"conf": conf.numpy(), "loc": loc.numpy()})
                difference = max(difference, _detection_difference(expected, got, path))
            post = onnx.compose.add_prefix(onnx.load(str(postprocess_file)), "postprocess/", rename_inputs=False,
                                           rename_outputs=False)  # fmt: skip
            proto.ir_version = post.ir_version = max(proto.ir_version, post.ir_version)  # the exporters differ
            proto = onnx.compose.merge_models(proto, post, io_map=[("conf", "conf"), ("loc", "loc")])
        if difference > PARITY_TOLERANCE:
            raise ExportFailed(
                f"ONNX Runtime differs from PyTorch by {difference:.2e} (> {PARITY_TOLERANCE:.0e}); file not written",
                path=path,
            )
        extra: dict[str, Any] = {"score_threshold": score_threshold, "iou_threshold": iou_threshold} if with_nms else {}
        extra["input"] = PIXEL_INPUT if with_preprocess else NORMALISED_INPUT
        extra["exporter"] = exporter
        if with_nms:
            extra["boxes"] = "pixels" if with_preprocess else "normalised"
        for key, value in model_metadata(loaded.spec, with_nms, extra).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(temporary))
        final = _session(onnxruntime, temporary)  # the joined file loads and runs
        final.run(None, {"images": sample_images.numpy()})
    return ExportResult(path, "onnx", difference, PARITY_TOLERANCE, outputs)


def _detection_difference(expected: tuple[Tensor, ...], got: list[np.ndarray], path: Path) -> float:
    """Largest difference between two sets of detections in the same order (boxes, scores); infinite if they differ
    in count or in which image or class a detection belongs to; ExportFailed if a box or score is not finite."""
    if expected[0].shape[0] != got[0].shape[0]:
        return float("inf")
    if not (np.array_equal(expected[2].numpy(), got[2]) and np.array_equal(expected[3].numpy(), got[3])):
        return float("inf")
    return largest_difference(expected[:2], got[:2], ("PyTorch's NMS", "the ONNX NMS graph"), path)


def export_torchscript(loaded: LoadedModel, path: Path) -> ExportResult:
    size = loaded.spec.layout.image_size
    with atomic_path(path) as temporary:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(loaded.model, (_sample_inputs(size, 2),))
        extra = {"ssdcli.json": model_metadata(loaded.spec, False)[METADATA_KEY]}
        with torchscript_quiet():
            with temporary.open("wb") as stream:  # a Python stream: a write that fails says why (a full disk)
                torch.jit.save(traced, stream, _extra_files=extra)
            reloaded = torch.jit.load(str(temporary))
        difference = 0.0
        for batch in (1, 3):
            images = _sample_inputs(size, batch, seed=batch)
            with torch.no_grad():
                expected, got = loaded.model(images), reloaded(images)
            difference = max(difference, largest_difference(expected, got, ("PyTorch", "TorchScript"), path))
        if difference > PARITY_TOLERANCE:
            raise ExportFailed(f"TorchScript differs from PyTorch by {difference:.2e}; file not written", path=path)
    return ExportResult(path, "torchscript", difference, PARITY_TOLERANCE, ("conf", "loc"))


#: What an OpenVINO export's folder holds; ``force`` replaces a folder that holds nothing else.
OPENVINO_FILES = frozenset({OPENVINO_GRAPH, "model.bin"})


def check_openvino_folder(path: Path, force: bool) -> None:
    """``path`` may receive an OpenVINO export: new, empty, or (with ``force``) an earlier export's folder. Call it
    before the work, so that a refusal costs nothing."""
    if path.exists() and not path.is_dir():
        raise UsageError("exists and is not a folder; an OpenVINO export is a folder (model.xml, model.bin)", path=path)
    held = {entry.name for entry in path.iterdir()} if path.is_dir() else set()
    if held and not held <= OPENVINO_FILES:
        raise UsageError("holds other files; give a new folder for the OpenVINO export", path=path)
    if held and not force:
        raise UsageError("exists; pass `force` to replace it (or choose another name)", path=path)
    check_new_file(path / OPENVINO_GRAPH, force=True)


def export_openvino(loaded: LoadedModel, path: Path, opset: int) -> ExportResult:
    """Export to an OpenVINO folder ``path`` (``model.xml``, ``model.bin``, float32 weights) from the verified ONNX
    file of :func:`export_onnx` (dynamic batch, raw outputs), after checking OpenVINO against PyTorch.

    The folder is written beside ``path`` and renamed into place once OpenVINO, reading it back, gives the PyTorch
    model's outputs within ``PARITY_TOLERANCE`` on sample images of batch 1 and 3; an earlier export there is
    replaced only then. The ssdcli metadata (as an ONNX file holds it) goes into the model's runtime information."""
    openvino = openvino_module()
    size = loaded.spec.layout.image_size
    with scratch_folder(path) as scratch:
        onnx_file, staged = scratch / "model.onnx", scratch / "openvino"
        export_onnx(loaded, onnx_file, opset, dynamic_batch=True, with_nms=False)
        model = openvino.convert_model(str(onnx_file))
        meta = model_metadata(loaded.spec, False, {"input": NORMALISED_INPUT, "exporter": "openvino"})
        model.set_rt_info(meta[METADATA_KEY], [METADATA_KEY])
        try:
            openvino.save_model(model, str(staged / OPENVINO_GRAPH), compress_to_fp16=False)
        except RuntimeError as error:
            raise ExportFailed(f"OpenVINO could not write the model ({str(error).splitlines()[0]})", path=path) from None
        network = OpenVinoNetwork(open_openvino(staged)[0])
        difference = 0.0
        for batch in (1, 3):
            images = _sample_inputs(size, batch, seed=batch)
            with torch.no_grad():
                expected = loaded.model(images)
            got = network.run(images.numpy())
            difference = max(difference, largest_difference(expected, got, ("PyTorch", "OpenVINO"), path))
        if difference > PARITY_TOLERANCE:
            raise ExportFailed(
                f"OpenVINO differs from PyTorch by {difference:.2e} (> {PARITY_TOLERANCE:.0e}); nothing written",
                path=path,
            )
        _put_folder_in_place(staged, path, scratch / "previous")
    return ExportResult(path, "openvino", difference, PARITY_TOLERANCE, ("conf", "loc"))


def _put_folder_in_place(staged: Path, path: Path, previous: Path) -> None:
    """Rename ``staged`` to ``path``; an existing ``path`` is moved to ``previous`` first (removed with it)."""
    try:
        if path.exists():
            path.rename(previous)
        staged.rename(path)
    except OSError as error:
        raise write_error(error, path) from None


def default_export_path(checkpoint: Path | str, target: str) -> Path:
    """Where ``ssd export`` writes without ``out``: beside the checkpoint, with the target's suffix (a folder
    ``<stem>_openvino`` for OpenVINO); torchvision's weights given by name: in the working folder."""
    named = detector_by_name(str(checkpoint)) is not None
    if target == "openvino":
        return Path(str(checkpoint) + "_openvino") if named else Path(checkpoint).with_name(Path(checkpoint).stem + "_openvino")
    suffix = ".onnx" if target == "onnx" else ".torchscript.pt"
    return Path(str(checkpoint) + suffix) if named else Path(checkpoint).with_suffix(suffix)


def run_export(config: ExportConfig) -> ExportResult:
    """Export a checkpoint as ``config`` says; the file is written atomically and only after the parity check
    passes (for INT8, see ``engine/export/quantize.py``)."""
    checkpoint, format = config.checkpoint, config.target
    path = Path(config.out) if config.out is not None else default_export_path(checkpoint, format)
    if format == "openvino":
        openvino_module()  # the package is there before the model is loaded
        check_openvino_folder(path, config.force)
    else:
        check_new_file(path, config.force)
    path.parent.mkdir(parents=True, exist_ok=True)
    loaded = load_model(checkpoint, "cpu")
    check_finite_model(loaded)
    if format == "openvino":
        return export_openvino(loaded, path, config.opset)
    if config.int8:
        return _export_int8(loaded, Path(checkpoint), path, config.opset, config.dynamic_batch, config.calibration)
    if format == "onnx":
        settings = loaded.spec.postprocess  # NMS inside the graph: the model's own settings
        return export_onnx(
            loaded,
            path,
            config.opset,
            config.dynamic_batch,
            config.with_nms,
            settings.score_threshold,
            settings.iou_threshold,
            settings.pre_nms_top_k,
            config.with_preprocess,
        )
    return export_torchscript(loaded, path)


def check_finite_model(loaded: LoadedModel) -> None:
    """CheckpointError naming the model's file when its outputs on a sample input are not finite (NaN or
    infinite): there is nothing a file could reproduce."""
    with torch.no_grad():
        outputs = loaded.model(_sample_inputs(loaded.spec.layout.image_size, 1))
    if all(bool(torch.isfinite(output).all()) for output in outputs):
        return
    broken = [name for name, value in loaded.model.state_dict().items()
              if value.is_floating_point() and not bool(torch.isfinite(value).all())]  # fmt: skip
    cause = (f"{len(broken)} weight tensors hold NaN or infinite values (the first: {broken[0]})" if broken
             else "the weights are finite but the values overflow")  # fmt: skip
    raise CheckpointError(f"the model's outputs are not finite (NaN or infinite) on a sample input: {cause}; "
                          "nothing exported", path=loaded.path)  # fmt: skip


def _training_images(checkpoint: Path) -> list[Path]:
    """The image files of the split a checkpoint was trained on (from its saved training settings)."""
    from ssdcli.data.dataset import open_index
    from ssdcli.engine.checkpoint import load_checkpoint

    saved = (load_checkpoint(checkpoint).train_state or {}).get("config") or {}
    trained_on = TrainConfig.from_dict(saved).data
    if trained_on.data is None:
        raise UsageError("calibration images: the checkpoint names no training data; give a folder of images")
    index = open_index(trained_on.data, trained_on.train_split, trained_on.data_format, check_images=False)
    return [record.path for record in index.records]


def _export_int8(
    loaded: LoadedModel, checkpoint: Path, path: Path, opset: int, dynamic_batch: bool, calibration: Path | None
) -> ExportResult:
    """FP32 export (checked against PyTorch), then INT8 quantisation (checked against the FP32 file by its
    detections on held-back images)."""
    import random

    from ssdcli.engine.export.quantize import (
        MAX_CALIBRATION_IMAGES,
        MIN_DETECTION_AP,
        QuantizationFailed,
        calibration_images,
        quantize_onnx,
    )

    if calibration is not None:
        images = calibration_images(Path(calibration))
    else:
        images = _training_images(Path(checkpoint))
        if len(images) > MAX_CALIBRATION_IMAGES:
            images = sorted(random.Random(0).sample(images, MAX_CALIBRATION_IMAGES))
    with scratch_folder(path) as scratch, atomic_path(path, suffix=".onnx") as int8:
        fp32 = scratch / "fp32.onnx"
        try:
            export_onnx(loaded, fp32, opset, dynamic_batch, with_nms=False)
            result = quantize_onnx(fp32, int8, images, loaded.spec)
        except QuantizationFailed as error:
            raise QuantizationFailed(error.message, path=path) from None
        except SsdcliError as error:  # about an intermediate file: name the one asked for
            if error.path not in (str(fp32), str(int8)):
                raise
            raise type(error)(error.message, path=path) from None
    check = result.check
    return ExportResult(
        path, "onnx-int8", 1.0 - check.ap, 1.0 - MIN_DETECTION_AP, ("conf", "loc"), int8=Int8Summary(
            check.ap, MIN_DETECTION_AP, check.images, check.cosine, result.calibration_images, len(result.fp32_nodes)
        ),
    )  # fmt: skip

"""torchvision's COCO-trained SSD detectors as ssdcli models (from the torch hub cache or a file; downloaded into the
cache only on request, by ``models/hub.py``).

Two detectors are known, by the name of their torchvision weights or by the path of their state dict file:

- ``SSD300_VGG16_Weights.COCO_V1`` (``ssd300_vgg16_coco-b556d3b4.pth``): ``ssd300_vgg16``;
- ``SSDLite320_MobileNet_V3_Large_Weights.COCO_V1`` (``ssdlite320_mobilenet_v3_large_coco-a79551df.pth``):
  ``ssdlite320_mobilenet_v3_large`` with the reduced MobileNetV3 tail.

A file is recognised by its keys (``backbone.scale_weight``: VGG16; ``backbone.features.1.0.*``: MobileNetV3), its
class count is read from the class head. Everything that makes torchvision's detections carries over: the
parameters (key by key, see :func:`vgg_key` and :func:`mobilenet_key`), the default boxes (torchvision clips their
widths and heights to the image: ``clip=True``), the input normalisation (``ssd300_vgg16``: Caffe-style mean
(0.48235, 0.45882, 0.40784) and std 1/255 on [0, 1] images, i.e. the mean pixel subtracted on the 0-255 scale;
``ssdlite``: 0.5 / 0.5) and resizing (``resize="bilinear"``: the normalised float image, no antialiasing), the
box coder (weights 10, 10, 5, 5 = ssdcli's prior scaling 0.1, 0.1, 0.2, 0.2, log
scale clipped at log(1000/16)) and torchvision's postprocess settings (:class:`PostprocessSettings`). COCO's
91-index label space is kept as it is: label i is COCO category id i, named by ``weights.meta["categories"]``
('__background__' at 0 and 'N/A' for the ten unused ids).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor
from torchvision.models import WeightsEnum
from torchvision.models.detection import SSD300_VGG16_Weights, SSDLite320_MobileNet_V3_Large_Weights

from ssdcli.core.layouts import AnchorLayout
from ssdcli.core.postprocess import EVAL_SETTINGS, PostprocessSettings
from ssdcli.errors import CheckpointError

from .backbones import MobileNetV3Backbone
from .build import build_model
from .spec import ModelConfig, ModelSpec
from .ssd import SSD
from .weights import fit_state_dict, hub_cache_file, read_state_dict
from .zoo import ARCHITECTURES, check_arch

# torchvision's VGG feature extractor: ``features`` is VGG16 up to relu4_3 (layers 0-22); ``extra.0`` holds
# pool4 .. relu5_3 (layers 23-29) and then pool5/fc6/fc7 as one Sequential at position 7.
_VGG_EXTRA0_START = 23
_VGG_FC_POSITION = 7


@dataclass(frozen=True)
class TorchvisionDetector:
    """What one of torchvision's SSD detectors adds to its architecture's zoo entry (``arch``): the weights, the
    input normalisation and the detection settings it was trained and evaluated with. Its default boxes are the
    entry's, clipped as torchvision clips them."""

    arch: str
    weights: WeightsEnum
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    postprocess: PostprocessSettings

    def __post_init__(self) -> None:
        check_arch(self.arch)

    @property
    def name(self) -> str:
        """The weights' name as the command line takes it, e.g. ``SSD300_VGG16_Weights.COCO_V1``."""
        return f"{type(self.weights).__name__}.{self.weights.name}"

    @property
    def layout(self) -> AnchorLayout:
        """The zoo entry's default boxes with widths and heights clipped to the image (torchvision's ``clip=True``)."""
        return dataclasses.replace(ARCHITECTURES[self.arch].layout, clip=True)

    def model_config(self, num_classes: int, reduced_tail: bool | None) -> ModelConfig:
        """The detector with ``num_classes`` classes (background included) as an ssdcli model configuration;
        images resized as torchvision's detection transform resizes them."""
        return ModelConfig(
            self.arch,
            num_classes,
            self.layout,
            mean=self.mean,
            std=self.std,
            reduced_tail=reduced_tail,
            resize="bilinear",
        )


#: torchvision's SSD detectors by architecture. Layouts: torchvision's DefaultBoxGenerator (scales 0.07 ... 1.05
#: with steps for SSD300, 0.2 ... 0.95 evenly for SSDLite320, clip=True), the zoo's; postprocess: the builders'
#: arguments.
TORCHVISION_DETECTORS: dict[str, TorchvisionDetector] = {
    "ssd300_vgg16": TorchvisionDetector(
        arch="ssd300_vgg16",
        weights=SSD300_VGG16_Weights.COCO_V1,
        mean=(0.48235, 0.45882, 0.40784),
        std=(1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0),
        postprocess=EVAL_SETTINGS,  # ssdcli's evaluation settings are torchvision's ssd300_vgg16's
    ),
    "ssdlite320_mobilenet_v3_large": TorchvisionDetector(
        arch="ssdlite320_mobilenet_v3_large",
        weights=SSDLite320_MobileNet_V3_Large_Weights.COCO_V1,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        postprocess=PostprocessSettings(score_threshold=0.001, iou_threshold=0.55, top_k=300, pre_nms_top_k=300),
    ),
}


@dataclass(frozen=True)
class PretrainedModel:
    """A torchvision detector loaded into an ssdcli model (eval mode, CPU), with its spec: COCO's class names
    (index 0 the background), category ids (the identity for the 91-index label space) and torchvision's detection
    settings."""

    model: SSD
    detector: TorchvisionDetector
    spec: ModelSpec
    path: Path


def detector_by_name(source: str | Path) -> TorchvisionDetector | None:
    """The detector whose weights are named ``source`` (case-insensitive), or None."""
    wanted = str(source).lower()
    return next((d for d in TORCHVISION_DETECTORS.values() if d.name.lower() == wanted), None)


def detector_file(detector: TorchvisionDetector) -> Path:
    """The detector's file in the torch hub cache; CheckpointError naming the expected path if it is not there."""
    path = hub_cache_file(detector.weights)
    if not path.is_file():
        raise CheckpointError(
            f"{detector.name} is not in the torch hub cache (never downloaded unless asked): fetch it with ssd "
            f"weights fetch {detector.name}, or put the file from {detector.weights.url} here, or pass the path of "
            "the file",
            path=path,
        )
    return path


def _head_key(parts: list[str]) -> str:
    which = {"classification_head": "conf", "regression_head": "loc"}.get(parts[1], parts[1])
    return ".".join(["head", which, *parts[3:]])


def vgg_key(key: str) -> str:
    """torchvision ``ssd300_vgg16`` state-dict key -> ssdcli's (unknown keys come back unchanged)."""
    parts = key.split(".")
    if parts[0] == "head" and len(parts) > 3 and parts[2] == "module_list":
        return _head_key(parts)
    if key == "backbone.scale_weight":
        return "backbone.l2norm.weight"
    if parts[:2] == ["backbone", "features"]:
        return ".".join(["backbone.trunk", *parts[2:]])
    if parts[:2] == ["backbone", "extra"] and len(parts) > 3 and parts[2].isdigit() and parts[3].isdigit():
        block, index, rest = int(parts[2]), int(parts[3]), parts[4:]
        if block == 0 and index < _VGG_FC_POSITION:  # pool4 .. relu5_3
            return ".".join(["backbone.trunk", str(_VGG_EXTRA0_START + index), *rest])
        if block == 0 and index == _VGG_FC_POSITION:  # pool5, fc6, fc7
            return ".".join(["backbone.fc", *rest])
        if block > 0:
            return ".".join(["backbone.extras", str(block - 1), *parts[3:]])
    return key


def mobilenet_key(key: str, c4: int) -> str:
    """torchvision ``ssdlite320_mobilenet_v3_large`` state-dict key -> ssdcli's; ``c4``: the C4 block's index in
    the MobileNetV3 features (``MobileNetV3Backbone.c4_index``). Unknown keys come back unchanged."""
    parts = key.split(".")
    if parts[0] == "head" and len(parts) > 3 and parts[2] == "module_list":
        return _head_key(parts)
    if parts[:2] == ["backbone", "extra"]:
        return ".".join(["backbone.extras", *parts[2:]])
    if parts[:2] != ["backbone", "features"] or len(parts) < 5 or not (parts[2].isdigit() and parts[3].isdigit()):
        return key
    part, index, rest = int(parts[2]), int(parts[3]), parts[4:]
    if part == 0 and index < c4:  # the layers before the C4 block
        return ".".join(["backbone.trunk", str(index), *rest])
    if part == 0 and index == c4:  # the C4 expansion layer
        return ".".join(["backbone.trunk", str(c4), "block.0", *rest])
    if part == 1 and index == 0:  # the rest of the C4 block (a slice of it: its layers keep their numbers)
        return ".".join(["backbone.trunk", str(c4), "block", *rest])
    if part == 1 and index > 0:
        return ".".join(["backbone.trunk", str(c4 + index), *rest])
    return key


def _which_detector(state: dict[str, Tensor], path: Path) -> TorchvisionDetector:
    if "backbone.scale_weight" in state:
        return TORCHVISION_DETECTORS["ssd300_vgg16"]
    mobilenet_keys = ("backbone.features.1.0.", "backbone.extra.")
    if all(any(k.startswith(prefix) for k in state) for prefix in mobilenet_keys):
        return TORCHVISION_DETECTORS["ssdlite320_mobilenet_v3_large"]
    raise CheckpointError(
        "not a torchvision ssd300_vgg16 or ssdlite320_mobilenet_v3_large detector (nor an ssdcli checkpoint): "
        f"no backbone.scale_weight or backbone.features.1.0.* entries among its {len(state)} keys",
        path=path,
    )


def _num_classes(state: dict[str, Tensor], detector: TorchvisionDetector, path: Path) -> int:
    """Classes (background included) from the first class predictor's output channels."""
    key = "head.classification_head.module_list.0." + ("weight" if detector.arch == "ssd300_vgg16" else "1.weight")
    boxes = detector.layout.boxes_per_cell[0]
    weight = state.get(key)
    if weight is None or weight.dim() != 4 or weight.shape[0] % boxes or weight.shape[0] // boxes < 2:
        found = "missing" if weight is None else f"shape {list(weight.shape)}"
        raise CheckpointError(
            f"not a torchvision {detector.arch} detector: class predictor {key} is {found}, expected "
            f"[{boxes} x classes, C, k, k]",
            path=path,
        )
    return weight.shape[0] // boxes


def _reduced_tail(state: dict[str, Tensor]) -> bool | None:
    """MobileNetV3's tail from the first extra layer's input channels (480: reduced, 960: full)."""
    weight = state.get("backbone.extra.0.0.0.weight")
    if weight is None or weight.dim() != 4:
        return None
    return {480: True, 960: False}.get(int(weight.shape[1]))


def coco_class_names(detector: TorchvisionDetector, num_classes: int) -> tuple[str, ...]:
    """The weights' category names when the class count is theirs (91 for COCO), else class_1 ... class_{C-1}."""
    categories = tuple(str(c) for c in detector.weights.meta["categories"])
    if len(categories) == num_classes:
        return categories
    return ("__background__",) + tuple(f"class_{i}" for i in range(1, num_classes))


def model_from_state(state: dict[str, Tensor], path: Path) -> PretrainedModel:
    """An ssdcli model holding the torchvision detector ``state`` (read from ``path``); CheckpointError naming
    ``path`` when the file is another model's."""
    detector = _which_detector(state, path)
    num_classes = _num_classes(state, detector, path)
    reduced_tail = None
    if isinstance(detector.weights, SSDLite320_MobileNet_V3_Large_Weights):
        reduced_tail = _reduced_tail(state)
        if reduced_tail is None:
            raise CheckpointError(
                "not a torchvision ssdlite320_mobilenet_v3_large detector: backbone.extra.0.0.0.weight missing or "
                "not for a MobileNetV3-Large tail of 480 or 960 channels",
                path=path,
            )
    model = build_model(detector.model_config(num_classes, reduced_tail))
    if isinstance(model.backbone, MobileNetV3Backbone):
        c4 = model.backbone.c4_index
        mapped = {mobilenet_key(k, c4): v for k, v in state.items()}
    else:
        mapped = {vgg_key(k): v for k, v in state.items()}
    fit_state_dict(model, mapped, path, f"torchvision's {detector.arch} detector with {num_classes} classes")
    model.eval()
    names = coco_class_names(detector, num_classes)
    spec = ModelSpec(model.config, names, tuple(range(num_classes)), detector.postprocess)
    return PretrainedModel(model, detector, spec, path)


def load_pretrained(source: str | Path) -> PretrainedModel:
    """A torchvision detector by weights name (read from the torch hub cache) or state dict file."""
    detector = detector_by_name(source)
    path = detector_file(detector) if detector is not None else Path(source)
    return model_from_state(read_state_dict(path, "detector weights file"), path)


__all__ = [
    "TORCHVISION_DETECTORS",
    "PretrainedModel",
    "TorchvisionDetector",
    "coco_class_names",
    "detector_by_name",
    "detector_file",
    "load_pretrained",
    "mobilenet_key",
    "model_from_state",
    "vgg_key",
]

"""Image and box transforms for training and evaluation (DESIGN.md 1.6), on torchvision.transforms.v2.

A sample is ``(image, target)``: ``image`` a :class:`tv_tensors.Image` uint8 [3, H, W] RGB, ``target`` a dict
with ``boxes`` (:class:`tv_tensors.BoundingBoxes`, xyxy pixels, 0-based continuous, canvas (H, W)),
``labels`` [G] int64 and ``ignore`` [G] bool. Labels and ignore flags are filtered together with the boxes
by ``SanitizeBoundingBoxes``. The output is ``(image float32 [3, S, S] normalised, target)`` with plain tensors
and boxes in xyxy pixels of the S x S image.

Training: zoom-out onto a canvas up to ``zoom_out_max`` times the image side filled with the mean colour, the
SSD min-IoU random crop, horizontal flip, resize to S x S (no letterboxing, as in SSD), removal of boxes left
smaller than 1 px, photometric distortion, scaling to [0, 1] and normalisation. The photometric distortion
(brightness, contrast, saturation, hue, channel order) acts on each pixel's colour alone, so it is applied
after resizing, to the S x S image: on a CPU that is about 10 times cheaper than on a 640 x 480 image (the
hue step dominates). Unlike SSD's order, the zoom-out canvas is then distorted together with the image, and
the contrast step blends towards the mean of the resized picture.
Evaluation: resize to S x S and normalisation only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ssdcli.config import DEFAULT_IOU_CROP, DEFAULT_RESIZE, DEFAULT_ZOOM_OUT, IMAGENET_MEAN, IMAGENET_STD, RESIZE_MODES


class SSDRandomIoUCrop(v2.RandomIoUCrop):  # type: ignore[misc]
    """:class:`v2.RandomIoUCrop` with the same sampling, its trials drawn and tested all at once.

    torchvision draws the (up to ``trials``) candidate crops of a min-IoU option one by one, with several small
    tensor operations each: about 10 ms per image on a CPU core, more than the rest of the pipeline together.
    Here the random numbers of all trials of an option come from one ``torch.rand`` call (so ``torch``'s seed
    still decides), the tests run in NumPy, and the first trial that passes them is taken, which gives the same
    distribution of crops. An image without boxes is left as it is (torchvision's version loops until it draws
    its "keep the whole image" option). The crop itself is torchvision's (:meth:`v2.RandomIoUCrop.transform`).
    """

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        boxes = next(x for x in flat_inputs if isinstance(x, tv_tensors.BoundingBoxes))
        if boxes.shape[0] == 0:
            return {}
        height, width = boxes.canvas_size
        xyxy = F.convert_bounding_box_format(
            boxes.as_subclass(torch.Tensor), boxes.format, tv_tensors.BoundingBoxFormat.XYXY
        ).numpy().astype(np.float64)  # [G, 4]
        cx = 0.5 * (xyxy[:, 0] + xyxy[:, 2])  # [G]
        cy = 0.5 * (xyxy[:, 1] + xyxy[:, 3])
        area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])  # [G]
        while True:
            min_iou = self.options[int(torch.randint(low=0, high=len(self.options), size=(1,)))]
            if min_iou >= 1.0:  # the "keep the whole image" option
                return {}
            draws = torch.rand(self.trials, 4).numpy().astype(np.float64)  # [T, 4]
            scale = self.min_scale + (self.max_scale - self.min_scale) * draws[:, :2]
            new_w = (width * scale[:, 0]).astype(np.int64)  # [T]
            new_h = (height * scale[:, 1]).astype(np.int64)
            aspect = new_w / np.maximum(new_h, 1)
            left = ((width - new_w) * draws[:, 2]).astype(np.int64)
            top = ((height - new_h) * draws[:, 3]).astype(np.int64)
            right, bottom = left + new_w, top + new_h
            ok = (new_h > 0) & (self.min_aspect_ratio <= aspect) & (aspect <= self.max_aspect_ratio)
            ok &= (left != right) & (top != bottom)
            within = (left[:, None] < cx) & (cx < right[:, None]) & (top[:, None] < cy) & (cy < bottom[:, None])
            iw = np.clip(np.minimum(right[:, None], xyxy[:, 2]) - np.maximum(left[:, None], xyxy[:, 0]), 0, None)
            ih = np.clip(np.minimum(bottom[:, None], xyxy[:, 3]) - np.maximum(top[:, None], xyxy[:, 1]), 0, None)
            inter = iw * ih  # [T, G]
            union = (new_w * new_h)[:, None] + area[None, :] - inter
            iou = np.where(within, inter / np.maximum(union, 1e-9), -1.0)  # [T, G]
            ok &= within.any(axis=1) & (iou.max(axis=1) >= min_iou)
            if ok.any():
                t = int(np.argmax(ok))
                return dict(
                    top=int(top[t]),
                    left=int(left[t]),
                    height=int(new_h[t]),
                    width=int(new_w[t]),
                    is_within_crop_area=torch.from_numpy(within[t]),
                )


def _labels_and_ignore(inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """What SanitizeBoundingBoxes filters along with the boxes: the target's labels and ignore flags."""
    target = inputs[1]
    return target["labels"], target["ignore"]


def build_transforms(
    image_size: int,
    train: bool,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    zoom_out_max: float = DEFAULT_ZOOM_OUT,
    iou_crop: bool = DEFAULT_IOU_CROP,
    resize: str = DEFAULT_RESIZE,
) -> v2.Compose:
    """The transform of a sample ``(image, target)`` (see the module docstring).

    Args:
        image_size: S, the side of the square network input.
        train: training augmentation if True, else resize and normalisation only.
        mean, std: per-channel RGB statistics in [0, 1] scale; the zoom-out canvas is filled with ``mean``.
        zoom_out_max: the largest zoom-out factor (canvas side / image side); 1 or less turns zoom-out off.
        iou_crop: the SSD min-IoU random crop (on by default).
        resize: evaluation only: "antialias" resizes the 8-bit image with antialiasing (as training does);
            "bilinear" normalises first and resizes the float image bilinearly without antialiasing, as
            torchvision's detection transform does.
    """
    if image_size < 1:
        raise ValueError(f"image_size: expected a positive size, got {image_size}")
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean, std: expected 3 values each (RGB), got {len(mean)} and {len(std)}")
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize: expected {' or '.join(RESIZE_MODES)}, got {resize!r}")
    if not train and resize == "bilinear":
        return v2.Compose(
            [
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(mean=list(mean), std=list(std)),
                v2.Resize((image_size, image_size), antialias=False),
                v2.ToPureTensor(),
            ]
        )
    steps: list[v2.Transform] = []
    if train:
        if zoom_out_max > 1.0:
            fill = [int(round(255 * m)) for m in mean]
            steps.append(v2.RandomZoomOut(fill={tv_tensors.Image: fill, "others": 0}, side_range=(1.0, zoom_out_max)))
        if iou_crop:
            steps.append(SSDRandomIoUCrop())
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    steps.append(v2.Resize((image_size, image_size), antialias=True))
    if train:
        steps += [
            v2.SanitizeBoundingBoxes(min_size=1.0, labels_getter=_labels_and_ignore),
            v2.RandomPhotometricDistort(p=0.5),
        ]
    steps += [
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
        v2.ToPureTensor(),
    ]
    return v2.Compose(steps)


def make_sample(
    image_rgb: np.ndarray, boxes: np.ndarray, labels: np.ndarray, ignore: np.ndarray
) -> tuple[tv_tensors.Image, dict[str, torch.Tensor]]:
    """Wrap an RGB image [H, W, 3] uint8 and its xyxy pixel boxes [G, 4], labels [G], ignore [G] for the transforms.

    The image's memory is shared; boxes, labels and flags are copied (the record's arrays stay untouched).
    """
    height, width = image_rgb.shape[:2]
    image = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image_rgb)).permute(2, 0, 1))  # [3, H, W]
    target = {
        "boxes": tv_tensors.BoundingBoxes(
            torch.tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4),
            format=tv_tensors.BoundingBoxFormat.XYXY,
            canvas_size=(height, width),
        ),
        "labels": torch.tensor(np.asarray(labels, dtype=np.int64)).reshape(-1),
        "ignore": torch.tensor(np.asarray(ignore, dtype=bool)).reshape(-1),
    }
    return image, target

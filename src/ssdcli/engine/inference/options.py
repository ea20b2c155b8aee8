"""Detection settings a caller chooses over a model's own."""

from __future__ import annotations

from dataclasses import dataclass

from ssdcli.core.postprocess import PostprocessSettings

#: The score threshold of ``ssd predict`` and ``ssdcli.load``: detections worth drawing (a display threshold, not
#: the model's evaluation one).
DISPLAY_THRESHOLD = 0.25


@dataclass(frozen=True)
class DetectOptions:
    """Detection settings chosen by a caller; each one left None is the model's own (``ModelSpec.postprocess``).

    Attributes:
        conf_threshold: keep class scores strictly above this.
        iou_threshold: NMS IoU, per class.
        top_k: detections kept per image.
        pre_nms_top_k: candidates kept per class and image before NMS.
        classes: class names whose detections are kept; None keeps every class.
        flip: test-time flip: each image and its mirror image are detected together and both views averaged per
            default box before NMS (:func:`~ssdcli.engine.inference.detectors.average_mirrored`; twice the
            network's work); needs a model whose decoding and NMS are ssdcli's.
    """

    conf_threshold: float | None = None
    iou_threshold: float | None = None
    top_k: int | None = None
    pre_nms_top_k: int | None = None
    classes: tuple[str, ...] | None = None
    flip: bool = False

    def over(self, model: PostprocessSettings) -> PostprocessSettings:
        """``model``'s settings with the chosen ones in their place."""
        return PostprocessSettings(
            model.score_threshold if self.conf_threshold is None else self.conf_threshold,
            model.iou_threshold if self.iou_threshold is None else self.iou_threshold,
            model.top_k if self.top_k is None else self.top_k,
            model.pre_nms_top_k if self.pre_nms_top_k is None else self.pre_nms_top_k,
        )

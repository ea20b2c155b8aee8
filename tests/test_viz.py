"""The drawing layer: boxes land on the given pixels, labels are written, a class has one colour everywhere."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssdcli.core.layouts import get_layout
from ssdcli.viz.boxes import draw_boxes, draw_detections
from ssdcli.viz.colours import FLAGGED, bgr, class_colour
from ssdcli.viz.curves import draw_pr_curve
from ssdcli.viz.figure import panel_size
from ssdcli.viz.matching import matching_panels, object_colour

RED = (255, 0, 0)


def _blank(height: int = 60, width: int = 80) -> np.ndarray:
    return np.zeros((height, width, 3), dtype=np.uint8)


def _is(image: np.ndarray, x: int, y: int, colour: tuple[int, int, int]) -> bool:
    return tuple(int(v) for v in image[y, x]) == bgr(colour)


def test_box_edges_land_on_the_given_pixels_and_nothing_else_changes() -> None:
    image = _blank()
    drawn = draw_boxes(image, np.array([[10, 12, 30, 40]]), [RED])
    for x, y in ((10, 25), (30, 25), (20, 12), (20, 40), (10, 12), (30, 40)):
        assert _is(drawn, x, y, RED), (x, y)
    for x, y in ((9, 25), (31, 25), (11, 25), (29, 25), (20, 11), (20, 41), (20, 13), (20, 26)):
        assert _is(drawn, x, y, (0, 0, 0)), (x, y)
    outline = np.zeros(image.shape[:2], dtype=bool)
    outline[12:41, 10:31] = True
    outline[13:40, 11:30] = False
    assert (drawn.any(axis=2) == outline).all()
    assert not image.any(), "the input is left as it was"


def test_width_grows_inwards_and_coordinates_are_rounded() -> None:
    drawn = draw_boxes(_blank(), np.array([[9.6, 12.4, 30.2, 39.7]]), [RED], width=2)
    assert _is(drawn, 10, 25, RED) and _is(drawn, 11, 25, RED) and _is(drawn, 12, 25, (0, 0, 0))
    assert _is(drawn, 9, 25, (0, 0, 0)) and _is(drawn, 20, 40, RED) and _is(drawn, 20, 41, (0, 0, 0))


def test_a_label_is_written_on_a_tag_above_its_box() -> None:
    box = np.array([[20, 30, 70, 55]])
    plain = draw_boxes(_blank(), box, [RED])
    labelled = draw_boxes(_blank(), box, [RED], ["cat 0.91"])
    other = draw_boxes(_blank(), box, [RED], ["dog 0.12"])
    above, inside = (slice(0, 30), slice(20, 80)), (slice(31, 55), slice(21, 70))
    tag = labelled[above]
    assert not plain[above].any()
    assert (tag == bgr(RED)).all(axis=2).sum() > 50, "no tag in the box colour"
    assert ((tag.sum(axis=2) == 0) & (np.arange(tag.shape[1]) < 40)).any(), "no dark text on the tag"
    assert (labelled[above] != other[above]).any(), "the text does not show"
    assert not labelled[inside].any(), "the label covers the box"


def test_no_boxes_draw_nothing() -> None:
    image = _blank()
    assert (draw_boxes(image, np.zeros((0, 4)), [], []) == image).all()


def test_class_colours_depend_on_the_name_only() -> None:
    names = ["cat", "dog", "bird", "person", "car"]
    assert [class_colour(n) for n in names] == [class_colour(n) for n in names]
    assert len({class_colour(n) for n in names}) == len(names)


@dataclass(frozen=True)
class _Object:
    index: int
    class_name: str
    box_xyxy: tuple[float, float, float, float]
    flag: str
    best_iou: float
    matches_per_layer: tuple[int, ...]
    matched: tuple = ()


def test_a_class_has_the_same_colour_in_predict_and_encode_pictures() -> None:
    image = np.full((300, 400, 3), 128, dtype=np.uint8)
    predicted = draw_detections(image, np.array([[100.0, 120.0, 250.0, 220.0]]), np.array([0.8]), ["dog"])
    layout = get_layout("ssd300")
    dog = _Object(0, "dog", (100.0, 120.0, 250.0, 220.0), "", 0.7, (0,) * layout.num_layers)
    crowd = _Object(1, "dog", (300.0, 20.0, 380.0, 90.0), "crowd", 0.2, (0,) * layout.num_layers)
    encoded = matching_panels(image, (400, 300), [dog, crowd], layout, panel_size(400, 300))[0]
    assert panel_size(400, 300) == (400, 300)
    assert _is(predicted, 100, 170, class_colour("dog")) and _is(encoded, 100, 170, class_colour("dog"))
    assert object_colour(dog) == class_colour("dog") and object_colour(crowd) == FLAGGED
    assert _is(encoded, 300, 60, FLAGGED)


def test_a_pr_curve_is_drawn_in_its_class_colour() -> None:
    picture = draw_pr_curve("dog", np.array([0.0, 0.5, 1.0]), np.array([1.0, 0.8, 0.4]), 0.7)
    close = (np.abs(picture.astype(int) - np.array(bgr(class_colour("dog")))).max(axis=2) <= 8).sum()
    assert close > 200

"""The default recipe fitted to the training boxes by rule (engine/train/recipe_rule.py): small objects choose a
larger input within the budget, boxes outside the built-in range choose fitted default boxes, BCCD-like boxes keep
today's default, given settings win; ``--img-size`` as a real option of the ssd_tiny family."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ssdcli.cli.app import main
from ssdcli.config import ModelSettings, OptimSettings, RuntimeSettings, TrainConfig
from ssdcli.data.formats.writers import voc_xml
from ssdcli.data.images import write_image
from ssdcli.data.records import DatasetIndex, ImageRecord
from ssdcli.data.synth import write_synth
from ssdcli.engine.checkpoint import load_checkpoint
from ssdcli.engine.train.recipe_rule import BoxStats, RecipeRule, choose_recipe, tiling_line
from ssdcli.models.backbones import TinyBackbone, feature_map_sizes
from ssdcli.models.build import build_model
from ssdcli.models.spec import default_config, default_layout

TEN_MINUTES = 600.0


def _stats(shares: dict[float, int], images: int = 100) -> BoxStats:
    """Boxes whose sqrt(area) is ``share`` of the image side, ``count`` of each."""
    sides = [share for share, count in shares.items() for _ in range(count)]
    return BoxStats(torch.tensor(sides, dtype=torch.float32), images)


def test_small_boxes_choose_a_larger_input_with_the_reason() -> None:
    # 40 % of the boxes at 4 % of the side: 10.2 px at 256, 12.8 at 320, 15.4 at 384, 17.9 at 448 (not small)
    choice = choose_recipe(_stats({0.04: 40, 0.2: 60}), TEN_MINUTES, TrainConfig())
    assert choice.img_size == 448
    assert "40 % of training boxes would be under 16 px at 256 px, 0 % at 448 px" in choice.img_size_reason
    assert choice.line().startswith("recipe: input 448 px (40 % of training boxes would be under 16 px at 256 px")


def test_the_input_grows_only_as_far_as_the_budget_affords() -> None:
    stats = _stats({0.04: 40, 0.2: 60}, images=1000)
    assert RecipeRule().min_epochs == 50
    # 1000 images at 0.03 s x (320 / 256)^2: 47 s an epoch, 13 epochs in 10 minutes (fewer than 50)
    choice = choose_recipe(stats, TEN_MINUTES, TrainConfig())
    assert choice.img_size == 256
    assert "but the 10 min budget affords about 13 epochs at 320 px" in choice.img_size_reason
    # two hours afford 448 px: 7200 / (1000 x 0.03 x 3.06) = 78 epochs
    assert choose_recipe(stats, 7200.0, TrainConfig()).img_size == 448
    # an hour affords 384 (53 epochs) but not 448 (39): the largest affordable, and the budget named
    capped = choose_recipe(stats, 3600.0, TrainConfig())
    assert capped.img_size == 384
    assert "the 1 h budget affords about 53 epochs there" in capped.img_size_reason
    # a lower bar on epochs affords more: 20 minutes buys 320 px (26 epochs) at 25
    assert choose_recipe(stats, 1200.0, TrainConfig(), RecipeRule(min_epochs=25)).img_size == 320
    assert choose_recipe(stats, 1200.0, TrainConfig()).img_size == 256
    # a number of epochs instead of a budget: no cap
    assert choose_recipe(stats, None, TrainConfig()).img_size == 448


def test_bccd_like_boxes_keep_the_default_recipe() -> None:
    # BCCD's training boxes: sqrt(area) from about 8 % to 30 % of the side
    choice = choose_recipe(_stats({0.08: 10, 0.17: 40, 0.2: 40, 0.3: 10}), TEN_MINUTES, TrainConfig())
    assert choice.img_size == default_layout(ModelSettings.arch).image_size == 256
    assert choice.auto_anchors is False
    assert choice.changes() == {}  # the default recipe: no setting changes
    assert "default boxes: built-in (0 % of training boxes are outside" in choice.line()


def test_boxes_below_the_smallest_default_box_choose_fitted_default_boxes() -> None:
    # ssd_tiny256's smallest default box is 7.5 % of the side: it matches squares from 5.2 % at IoU 0.5
    choice = choose_recipe(_stats({0.03: 20, 0.2: 80}), None, TrainConfig())
    assert choice.auto_anchors is True
    assert choice.changes()["anchors"] == Path("auto")
    assert "20 % of training boxes are outside the 5.2-100 % of the side" in choice.anchors_reason
    assert choose_recipe(_stats({0.03: 5, 0.2: 95}), None, TrainConfig()).auto_anchors is False


@pytest.mark.parametrize(
    "model",
    [
        ModelSettings(arch="ssd300_vgg16"),
        ModelSettings(auto_recipe=False),
        ModelSettings(weights="SSDLite320_MobileNet_V3_Large_Weights.COCO_V1"),
    ],
    ids=["another-model", "rule-off", "fine-tune"],
)
def test_the_rule_chooses_nothing_for_other_models_or_when_off(model: ModelSettings) -> None:
    choice = choose_recipe(_stats({0.03: 50, 0.2: 50}), TEN_MINUTES, TrainConfig(model=model))
    assert not choice.chose and choice.changes() == {}


def test_given_settings_win_over_the_rule() -> None:
    stats = _stats({0.03: 50, 0.2: 50})
    given_size = choose_recipe(stats, TEN_MINUTES, TrainConfig(model=ModelSettings(img_size=256)))
    assert given_size.img_size is None and given_size.auto_anchors is True
    given_file = choose_recipe(stats, TEN_MINUTES, TrainConfig(model=ModelSettings(anchors=Path("layout.json"))))
    assert not given_file.chose  # the layout file fixes the input size too
    given_auto = choose_recipe(stats, TEN_MINUTES, TrainConfig(model=ModelSettings(anchors=Path("auto"))))
    assert given_auto.img_size is not None and given_auto.auto_anchors is None
    resumed = TrainConfig(runtime=RuntimeSettings(resume=Path("last.pt")))
    assert not choose_recipe(stats, TEN_MINUTES, resumed).chose


def test_a_custom_rule_reads_its_thresholds() -> None:
    stats = _stats({0.045: 30, 0.2: 70})  # 11.5 px at 256, 14.4 at 320, 17.3 at 384
    assert choose_recipe(stats, TEN_MINUTES, TrainConfig()).img_size == 384
    lenient = RecipeRule(too_many_small=0.5)
    assert choose_recipe(stats, TEN_MINUTES, TrainConfig(), lenient).img_size == 256


@pytest.mark.parametrize("size", [160, 256, 320, 384, 416, 512, 640])
def test_the_tiny_layout_scales_to_any_multiple_of_32(size: int) -> None:
    layout = default_layout("ssd_tiny256", size)
    assert layout.image_size == size
    assert layout.feature_maps == tuple(h for h, _ in feature_map_sizes(TinyBackbone(), size))
    assert layout.sizes == pytest.approx([s * size / 256 for s in default_layout("ssd_tiny256").sizes])


def test_a_tiny_model_builds_and_runs_at_a_scaled_size() -> None:
    size = 384
    layout = default_layout("ssd_tiny256", size)
    assert layout.feature_maps == (48, 24, 12, 6, 4)
    model = build_model(default_config("ssd_tiny256", 3, layout)).eval()
    with torch.no_grad():
        _, locations = model(torch.zeros(1, 3, size, size))
    assert locations.shape == (1, layout.num_anchors, 4)


@pytest.mark.parametrize(("arch", "size"), [("ssd_tiny256", 300), ("ssd_tiny256", 128), ("ssd300_vgg16", 320)])
def test_sizes_an_architecture_does_not_take_are_refused(arch: str, size: int) -> None:
    with pytest.raises(ValueError, match=f"{arch}"):
        default_layout(arch, size)


def _voc_with_boxes(root: Path, box_px: int, image_px: int = 512, images: int = 8) -> Path:
    """A VOC set of ``images`` noise pictures of ``image_px`` px, each with two ``box_px`` squares; train and val."""
    rng = np.random.default_rng(0)
    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    names = [f"{i:03d}" for i in range(images)]
    for name in names:
        write_image(root / "JPEGImages" / f"{name}.jpg", rng.integers(0, 255, (image_px, image_px, 3), dtype=np.uint8))
        boxes = np.array([[40, 40, 40 + box_px, 40 + box_px], [200, 260, 200 + box_px, 260 + box_px]], dtype=float)
        xml = voc_xml(f"{name}.jpg", image_px, image_px, boxes, ["dot", "dot"], [False, False])
        (root / "Annotations" / f"{name}.xml").write_bytes(xml)
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(names[:6]) + "\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("\n".join(names[6:]) + "\n")
    return root


def _printed(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[TrainConfig, str]:
    capsys.readouterr()
    assert main(["train", *args, "--print-config"]) == 0
    captured = capsys.readouterr()
    return TrainConfig.from_dict(json.loads(captured.out), strict=True), captured.err


def test_print_config_shows_the_chosen_input_size_and_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 28 px squares in 512 px pictures: 14 px at 256 (small), 17.5 px at 320; 5.5 % of the side (built-in boxes)
    data = _voc_with_boxes(tmp_path / "dots", box_px=28)
    chosen, note = _printed(["--data", str(data)], capsys)
    assert (chosen.model.img_size, chosen.model.anchors) == (320, None)
    assert "recipe: input 320 px (100 % of training boxes would be under 16 px at 256 px, 0 % at 320 px)" in note
    assert "default boxes: built-in" in note


def test_synthetic_boxes_keep_the_default_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "synth"
    write_synth(data, format="voc", images=12, seed=0, image_size=160)
    chosen, note = _printed(["--data", str(data)], capsys)
    assert chosen == TrainConfig(data=dataclasses.replace(chosen.data, data=data))
    assert "recipe: input 256 px (0 % of training boxes would be under 16 px at 256 px)" in note
    assert "default boxes: built-in (0 % of training boxes are outside" in note


@pytest.mark.parametrize(
    ("option", "img_size", "line"),
    [
        (["--img-size", "256"], 256, "recipe: default boxes: built-in"),
        (["--model", "ssd_tiny256"], None, None),
        (["--model", "ssd_tiny256", "--auto-recipe"], 320, "recipe: input 320 px"),
        (["--no-auto-recipe"], None, None),
    ],
    ids=["img-size", "model", "model-and-rule", "rule-off"],
)
def test_explicit_options_win(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str], img_size: int | None, line: str | None
) -> None:
    data = _voc_with_boxes(tmp_path / "dots", box_px=28)
    chosen, note = _printed(["--data", str(data), *option], capsys)
    assert chosen.model.img_size == img_size
    assert chosen.model.auto_recipe == (line is not None)
    assert (line in note) if line is not None else ("recipe:" not in note)


@pytest.mark.slow
def test_a_run_says_and_records_its_recipe_and_config_reproduces_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _voc_with_boxes(tmp_path / "dots", box_px=28)
    out = tmp_path / "runs"
    args = ["train", "--data", str(data), "--out", str(out), "--epochs", "1", "--batch-size", "2"]
    args += ["--max-steps-per-epoch", "1", "--eval-every", "0", "--workers", "0", "--device", "cpu"]
    capsys.readouterr()
    assert main(args) == 0
    assert "recipe: input 320 px (100 % of training boxes would be under 16 px at 256 px" in capsys.readouterr().out
    saved = json.loads((out / "1" / "config.json").read_text())
    assert saved["model"]["img_size"] == 320
    assert load_checkpoint(out / "1" / "last.pt").spec.config.layout == default_layout("ssd_tiny256", 320)
    # the file's input size wins, even on data whose boxes would keep 256 px
    other = tmp_path / "synth"
    write_synth(other, format="voc", images=12, seed=0, image_size=160)
    again, note = _printed(["--config", str(out / "1" / "config.json"), "--data", str(other)], capsys)
    assert again.model.img_size == 320
    assert "recipe: default boxes: built-in" in note and "input" not in note
    assert again.optim == TrainConfig.from_dict(saved).optim == OptimSettings(epochs=1, batch_size=2)


def _index_of_boxes(image_side: int, box_side: float, images: int = 10) -> DatasetIndex:
    """A split of square ``image_side`` px images, each with one square box of ``box_side`` px."""
    box = np.array([[10.0, 10.0, 10.0 + box_side, 10.0 + box_side]], dtype=np.float32)
    records = tuple(
        ImageRecord(i, str(i), Path(f"{i}.jpg"), image_side, image_side, box, np.ones(1, np.int64), np.zeros(1, bool))
        for i in range(images)
    )
    return DatasetIndex(Path("."), "voc", "train", ("background", "thing"), (0, 0), records)


def test_the_run_summary_suggests_tiling_when_windows_would_keep_small_objects_visible() -> None:
    # 24 px objects in 1024 px photos: 6 px on a 256 px input, 24 px in 256 px windows of the photo.
    line = tiling_line(_index_of_boxes(1024, 24.0), 256)
    assert line is not None and "100 % of training boxes are under 16 px on the 256 px input, 0 % in windows" in line
    assert "`tile` 256" in line  # the command line shows it as --tile 256
    # The same objects in 256 px photos are not small: nothing to say.
    assert tiling_line(_index_of_boxes(256, 24.0), 256) is None
    # 8 px objects stay small in windows too: windows would not help.
    assert tiling_line(_index_of_boxes(1024, 8.0), 256) is None
    # On a 1024 px input the photos are not shrunk.
    assert tiling_line(_index_of_boxes(1024, 24.0), 1024) is None

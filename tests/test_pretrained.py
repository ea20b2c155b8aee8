"""torchvision's COCO SSD detectors loaded into ssdcli: the same detections as torchvision, bad files rejected."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection import ssd300_vgg16, ssdlite320_mobilenet_v3_large

import ssdcli
from ssdcli import default_boxes
from ssdcli.cli.app import main
from ssdcli.engine.inference.loading import load_model
from ssdcli.errors import CheckpointError
from ssdcli.models.pretrained import TORCHVISION_DETECTORS, load_pretrained

BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "ssd300_vgg16": ssd300_vgg16,
    "ssdlite320_mobilenet_v3_large": ssdlite320_mobilenet_v3_large,
}


def _last_convs(head: nn.Module) -> list[nn.Conv2d]:
    return [layer if isinstance(layer, nn.Conv2d) else layer[-1] for layer in head.module_list]


def _images(size: int) -> torch.Tensor:
    """Two [3, S, S] uint8 images at the network's input size (neither side resizes them)."""
    return torch.randint(0, 256, (2, 3, size, size), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def _reference(arch: str) -> nn.Module:
    """torchvision's detector with random weights (seed 0), made to give spread-out scores and moderate offsets.

    SSDLite's N(0, 0.03) initialisation leaves its maps near 0, so its backbone convolutions are redrawn with
    Kaiming's rule and its BatchNorm statistics made non-trivial. Then, for both, the class predictors are scaled to
    logits of standard deviation 2 on the first image, the background logit raised by 5 (a few hundred candidates
    per class, not every default box) and the box predictors scaled to offsets of standard deviation 1.
    """
    torch.manual_seed(0)
    reference = BUILDERS[arch](weights=None, weights_backbone=None).eval()
    size = TORCHVISION_DETECTORS[arch].layout.image_size
    with torch.no_grad():
        if arch == "ssdlite320_mobilenet_v3_large":
            for module in reference.backbone.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight)
                if isinstance(module, nn.BatchNorm2d):
                    module.running_mean.uniform_(-0.1, 0.1)
                    module.running_var.uniform_(0.5, 2.0)
        batch, _ = reference.transform([_images(size)[0].float() / 255])
        outputs = reference.head(list(reference.backbone(batch.tensors).values()))
        boxes_per_cell = reference.anchor_generator.num_anchors_per_location()
        for conv, k in zip(_last_convs(reference.head.classification_head), boxes_per_cell):
            conv.weight.mul_(2.0 / outputs["cls_logits"].std())
            conv.bias.view(k, -1)[:, 0] += 5.0  # [k, C]: the background column of every box of the cell
        for conv in _last_convs(reference.head.regression_head):
            conv.weight.mul_(1.0 / outputs["bbox_regression"].std())
    return reference


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def detector_file(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, nn.Module, Path]:
    """(architecture, torchvision's model, its state dict saved to a file)."""
    arch = request.param
    reference = _reference(arch)
    path = tmp_path_factory.mktemp(arch) / f"{arch}.pth"
    torch.save(reference.state_dict(), path)
    return arch, reference, path


def test_default_boxes_equal_torchvisions(detector_file: tuple[str, nn.Module, Path]) -> None:
    arch, reference, _ = detector_file
    layout = TORCHVISION_DETECTORS[arch].layout
    grids = [[f, f] for f in layout.feature_maps]
    theirs = reference.anchor_generator._grid_default_boxes(grids, [layout.image_size] * 2)  # [A, 4] cxcywh
    # torchvision builds its boxes in float32: equal to float32 precision, in the same order.
    torch.testing.assert_close(default_boxes(layout), theirs, rtol=0, atol=1e-6)


def test_detections_equal_torchvisions(detector_file: tuple[str, nn.Module, Path]) -> None:
    """The state dict file through ssdcli's predictor (the model's own NMS settings, torchvision's score threshold):
    the same boxes, labels and scores as torchvision's model with its own transform and postprocess."""
    arch, reference, path = detector_file
    settings = TORCHVISION_DETECTORS[arch].postprocess
    generator = torch.Generator().manual_seed(2)
    other_sizes = [torch.randint(0, 256, (3, h, w), generator=generator, dtype=torch.uint8) for h, w in ((180, 250), (240, 200))]
    images = [*_images(TORCHVISION_DETECTORS[arch].layout.image_size), *other_sizes]  # resized by both sides
    predictor = ssdcli.load(path, "cpu", conf_threshold=settings.score_threshold)
    with torch.no_grad():
        theirs = reference([image.float() / 255 for image in images])
    ours = predictor.predict_rgb(images)
    for expected, got in zip(theirs, ours):
        assert len(got) == len(expected["scores"]) == settings.top_k
        np.testing.assert_array_equal(got.labels, expected["labels"].numpy())
        np.testing.assert_allclose(got.boxes, expected["boxes"].numpy(), rtol=0, atol=1e-4)
        np.testing.assert_allclose(got.scores, expected["scores"].numpy(), rtol=0, atol=1e-5)
    meta = TORCHVISION_DETECTORS[arch].weights.meta["categories"]
    assert predictor.spec.class_names == tuple(meta) and len(meta) == 91
    assert predictor.spec.category_ids == tuple(range(91))
    assert ours[0].names[0] == meta[int(ours[0].labels[0])]


def test_weights_by_name_come_from_the_hub_cache_only(no_downloads: Path, detector_file: tuple[str, nn.Module, Path]) -> None:
    arch, reference, path = detector_file
    name = TORCHVISION_DETECTORS[arch].name
    cached = no_downloads / Path(TORCHVISION_DETECTORS[arch].weights.url).name
    with pytest.raises(CheckpointError, match=r"never downloaded unless asked\): fetch it with ssd weights fetch ") as error:
        load_model(name)
    assert error.value.path == str(cached)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())
    loaded = load_model(name.lower())  # names are case-insensitive
    assert loaded.pretrained == name and loaded.path == cached
    assert loaded.spec.postprocess == TORCHVISION_DETECTORS[arch].postprocess
    key = "weight" if arch == "ssd300_vgg16" else "1.weight"
    ours, theirs = loaded.model.head.loc[0].state_dict()[key], reference.head.regression_head.module_list[0].state_dict()[key]
    assert torch.equal(ours, theirs)


def test_file_of_another_model_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "mobilenet_v3_small.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), other)
    with pytest.raises(CheckpointError, match="not a torchvision ssd300_vgg16 or ssdlite320") as error:
        load_pretrained(other)
    assert error.value.path == str(other)
    image = tmp_path / "image.png"
    image.write_bytes(b"")
    assert main(["predict", str(image), "--checkpoint", str(other), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(other) in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")


def test_detector_missing_a_layer_names_it(tmp_path: Path) -> None:
    torch.manual_seed(0)
    state = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=5).state_dict()
    del state["backbone.extra.3.2.0.weight"]
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(CheckpointError, match="1 missing") as error:
        load_model(broken)
    assert error.value.path == str(broken)
    del state["backbone.extra.0.0.0.weight"]  # the tail can no longer be told
    torch.save(state, broken)
    with pytest.raises(CheckpointError, match="backbone.extra.0.0.0.weight"):
        load_model(broken)


def test_other_class_count_gets_generic_names(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "five.pth"
    torch.save(ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=5).state_dict(), path)
    loaded = load_pretrained(path)
    assert loaded.spec.class_names == ("__background__", "class_1", "class_2", "class_3", "class_4")
    assert loaded.model.config.num_classes == 5 and loaded.model.config.reduced_tail is True


@pytest.mark.slow
def test_fine_tuning_re_initialises_the_class_head_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``ssd train --weights FILE`` on the synthetic set: the model, layout and normalisation are the detector's,
    the class head is new (one line says so) and the rest starts from the file."""
    torch.manual_seed(0)
    reference = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
    weights = tmp_path / "ssdlite.pth"
    torch.save(reference.state_dict(), weights)
    out = tmp_path / "runs"
    args = ["train", "--weights", str(weights), "--out", str(out), "--epochs", "1", "--max-steps-per-epoch", "1",
            "--batch-size", "2", "--synth-images", "8", "--workers", "0", "--eval-every", "0", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    printed = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert printed.count("class head, 3 classes (the weights have 90): 0 kept, 0 re-ordered, 3 re-initialised") == 1
    loaded = load_model(out / "1" / "last.pt")
    detector = TORCHVISION_DETECTORS["ssdlite320_mobilenet_v3_large"]
    assert loaded.spec.arch == detector.arch and loaded.spec.layout == detector.layout
    assert (loaded.spec.mean, loaded.spec.std) == (detector.mean, detector.std)
    assert loaded.spec.config.num_classes == len(loaded.spec.class_names) < 91
    assert loaded.model.head.conf[0][1].out_channels == 6 * loaded.spec.config.num_classes
    # one SGD step moved the weights a little: the box head still starts from the file's, not from a fresh draw
    ours = loaded.model.head.loc[0][1].weight
    theirs = reference.head.regression_head.module_list[0][1].weight
    assert (ours - theirs).abs().max() < 0.1 * theirs.abs().max()


def test_fine_tuning_rejects_conflicting_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.pth"
    assert main(["train", "--weights", str(missing), "--backbone-weights", "imagenet", "--out", str(tmp_path / "r"),
                 "--synth-images", "8", "--workers", "0"]) == 2  # fmt: skip
    assert "leave out --backbone-weights" in capsys.readouterr().err
    assert main(["train", "--weights", str(missing), "--out", str(tmp_path / "r"), "--synth-images", "8",
                 "--workers", "0"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def _coco_set(root: Path, second_class: str) -> Path:
    """A COCO set of two 64x64 images with categories 1 "person" and 3 ``second_class``, one object each."""
    (root / "val").mkdir(parents=True)
    (root / "annotations").mkdir()
    images = _images(64)
    for k, image in enumerate(images):
        cv2.imwrite(str(root / "val" / f"{k}.png"), image.permute(1, 2, 0).numpy()[:, :, ::-1])
    instances = {
        "images": [{"id": k + 1, "file_name": f"{k}.png", "width": 64, "height": 64} for k in range(len(images))],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 30, 40], "area": 1200, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 3, "bbox": [20, 10, 40, 30], "area": 1200, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": second_class}],
    }
    (root / "annotations" / "instances_val.json").write_text(json.dumps(instances))
    return root


@pytest.mark.slow
def test_eval_of_a_coco_detector_maps_its_labels_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``ssd eval --checkpoint FILE`` on a COCO set with two of COCO's categories: labels 1..90 of the detector
    become the set's, detections of other classes are dropped, the results file has the set's category ids."""
    torch.manual_seed(0)
    weights = tmp_path / "ssdlite.pth"
    torch.save(_reference("ssdlite320_mobilenet_v3_large").state_dict(), weights)
    root = _coco_set(tmp_path / "coco", "car")
    out = tmp_path / "runs"
    code = main(["eval", "--checkpoint", str(weights), "--data", str(root), "--split", "val", "--out", str(out),
                 "--device", "cpu", "--batch-size", "2"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    written = json.loads((out / "1" / "detections.json").read_text())
    results = written["results"]
    assert written["categories"] == [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]
    assert results and {r["category_id"] for r in results} == {1, 3}
    assert len(results) <= 2 * TORCHVISION_DETECTORS["ssdlite320_mobilenet_v3_large"].postprocess.top_k


@pytest.mark.slow
def test_export_of_a_coco_detector_keeps_its_settings(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")

    torch.manual_seed(0)
    weights = tmp_path / "ssdlite.pth"
    torch.save(ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).state_dict(), weights)
    target = tmp_path / "ssdlite.onnx"
    assert main(["export", "--checkpoint", str(weights), "--to", "onnx", "--with-nms", "--out", str(target)]) == 0
    settings = TORCHVISION_DETECTORS["ssdlite320_mobilenet_v3_large"].postprocess
    predictor = ssdcli.load(target)
    assert (predictor.settings.iou_threshold, predictor.settings.top_k, predictor.settings.pre_nms_top_k) == (0.55, 300, 300) == (
        settings.iou_threshold, settings.top_k, settings.pre_nms_top_k
    )
    assert predictor.spec.class_names[1] == "person" and len(predictor.spec.class_names) == 91


def test_file_that_is_no_state_dict_is_one_short_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    picture = tmp_path / "picture.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a readable PyTorch state dict") as error:
        load_pretrained(picture)
    assert error.value.path == str(picture) and "weights_only" not in str(error.value)


def test_eval_of_a_coco_detector_on_a_class_it_lacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "ssdlite.pth"
    torch.save(ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).state_dict(), weights)
    root = _coco_set(tmp_path / "voc_names", "aeroplane")
    code = main(["eval", "--checkpoint", str(weights), "--data", str(root), "--split", "val", "--device", "cpu",
                 "--out", str(tmp_path / "runs")])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {root}: class 'aeroplane'") and "did you mean 'airplane'?" in err
    assert len(err.splitlines()) == 1


@pytest.mark.slow
def test_predict_on_a_data_set_with_a_coco_detector(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``ssd predict --data`` with torchvision's COCO detector (whose labels include 'N/A' placeholders): the
    results carry the data set's category ids, named by its classes; no placeholder is listed."""
    torch.manual_seed(0)
    weights = tmp_path / "ssdlite.pth"
    torch.save(_reference("ssdlite320_mobilenet_v3_large").state_dict(), weights)
    root = _coco_set(tmp_path / "coco", "car")
    json_out = tmp_path / "detections.json"
    code = main(["predict", "--checkpoint", str(weights), "--data", str(root), "--split", "val", "--device", "cpu",
                 "--conf", "0.01", "--json", str(json_out), "--out", str(tmp_path / "runs")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    written = json.loads(json_out.read_text())
    assert "N/A" not in json.dumps(written)
    assert written["results"] and {r["category_id"] for r in written["results"]} <= {1, 3}
    assert written["categories"] == [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]

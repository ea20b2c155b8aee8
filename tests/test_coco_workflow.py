"""COCO data through train, eval and encode: a JSON file is one split, and evaluation gives COCO's own numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ssdcli.cli.app import main
from ssdcli.config import DataSettings, TrainConfig
from ssdcli.data.synth import write_synth
from ssdcli.engine.events import ignore_events
from ssdcli.engine.train.inputs import open_data

CLASSES = ("background", "circle", "square", "triangle")


@pytest.fixture(scope="module")
def coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic set in COCO layout: ROOT/annotations/instances_{train,val,test}.json, ROOT/{split}/."""
    root = tmp_path_factory.mktemp("coco") / "synth"
    write_synth(root, format="coco", images=24, seed=0)
    return root


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "Traceback" not in err[0], err
    return err[0]


def test_training_on_a_json_file_validates_on_val_data_only(coco: Path) -> None:
    train_json = coco / "annotations" / "instances_train.json"
    val_json = coco / "annotations" / "instances_val.json"
    opened = open_data(TrainConfig(DataSettings(data=train_json, val_data=val_json)), train_json, ignore_events)
    train_index, val_index = opened.train, opened.val
    notes = [note for note in opened.notes if "fewer than" not in note]  # the small synthetic split is named too
    assert (train_index.split, val_index.split, notes) == ("train", "val", [])
    val_ids = {r.source_id for r in val_index.records}
    assert val_ids == {image["id"] for image in json.loads(val_json.read_text())["images"]}
    assert not val_ids & {r.source_id for r in train_index.records}
    # Without --val-data a file cannot give a validation split: no validation (it used to be the training set).
    opened = open_data(TrainConfig(DataSettings(data=train_json)), train_json, ignore_events)
    assert opened.val is None and len(opened.notes) == 1 and "validation file" in opened.notes[0]
    # A root honours both splits.
    val_index = open_data(TrainConfig(DataSettings(data=coco)), coco, ignore_events).val
    assert val_index is not None and {r.source_id for r in val_index.records} == val_ids


@pytest.mark.parametrize("option", ["--val-split", "--train-split"])
def test_train_refuses_a_split_the_file_does_not_hold(
    coco: Path, tmp_path: Path, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    train_json = coco / "annotations" / "instances_train.json"
    args = ["train", "--data", str(train_json), option, "val", "--out", str(tmp_path), "--device", "cpu"]
    assert main(args) == 2
    line = one_line_error(capsys)
    assert f"{train_json}: " in line and "a COCO annotation file holds one split ('train'), not 'val'" in line
    assert not tmp_path.exists() or not any(tmp_path.iterdir()), "an input error wrote into --out"


def test_eval_and_encode_refuse_a_split_the_file_does_not_hold(
    coco: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train_json = coco / "annotations" / "instances_train.json"
    args = ["eval", "--checkpoint", str(checkpoint), "--data", str(train_json), "--split", "test"]
    assert main(args + ["--out", str(tmp_path), "--device", "cpu"]) == 2
    assert f"{train_json}: a COCO annotation file holds one split ('train'), not 'test'" in one_line_error(capsys)
    assert main(["encode", "--data", str(train_json), "--split", "val"]) == 2
    assert f"{train_json}: a COCO annotation file holds one split ('train'), not 'val'" in one_line_error(capsys)
    # Without --split, the file is the split.
    assert main(["encode", "--data", str(train_json)]) == 0
    assert "(train)" in capsys.readouterr().out


@pytest.mark.slow
def test_coco_end_to_end_train_eval_and_results_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """synth (COCO layout) -> train on instances_train.json, validating on instances_val.json -> eval --checkpoint
    on instances_test.json -> the detections it writes, evaluated by `ssd eval --coco` against that file, give
    the same 12 numbers. (So short a run scores about 0; test_eval_ground_truth.py checks the same equality on
    detections that score.)"""
    data = tmp_path / "synth"
    assert main(["data", "synth", str(data), "--format", "coco", "--images", "40"]) == 0
    annotations = data / "annotations"
    args = ["train", "--data", str(annotations / "instances_train.json"), "--val-data"]
    args += [str(annotations / "instances_val.json"), "--out", str(tmp_path / "runs"), "--epochs", "2"]
    args += ["--batch-size", "4", "--max-steps-per-epoch", "2", "--workers", "0", "--device", "cpu"]
    assert main(args) == 0
    run = tmp_path / "runs" / "1"
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and "coco_ap" in rows[0]  # validated every epoch

    test_json = annotations / "instances_test.json"
    from_checkpoint = tmp_path / "checkpoint.json"
    args = ["eval", "--checkpoint", str(run / "last.pt"), "--data", str(test_json), "--out", str(tmp_path / "eval")]
    assert main(args + ["--json", str(from_checkpoint), "--device", "cpu"]) == 0
    detections = tmp_path / "eval" / "1" / "detections.json"
    written = json.loads(detections.read_text())
    results = written["results"]
    assert written["categories"] == [{"id": k, "name": name} for k, name in enumerate(CLASSES) if k > 0]
    assert results and {r["category_id"] for r in results} <= {1, 2, 3}
    test_ids = {image["id"] for image in json.loads(test_json.read_text())["images"]}
    assert {r["image_id"] for r in results} <= test_ids

    from_file = tmp_path / "file.json"
    args = ["eval", "--coco", "--gt", str(test_json), "--results", str(detections), "--json", str(from_file)]
    assert main(args) == 0
    want = json.loads(from_file.read_text())
    got = json.loads(from_checkpoint.read_text())["coco"]
    assert list(got) == list(want)
    assert got == pytest.approx(want, abs=1e-9)


def test_predict_on_a_data_set_chains_into_eval(
    coco: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ssd predict --data` writes results in the data set's ids: COCO image and category ids (here made
    non-contiguous), VOC id strings and 1-based class indices; `ssd eval` reads them against the data set."""
    root = tmp_path / "coco"
    shutil.copytree(coco, root)
    test_json = root / "annotations" / "instances_test.json"
    gt = json.loads(test_json.read_text())
    new_id = {1: 10, 2: 30, 3: 20}
    for category in gt["categories"]:
        category["id"] = new_id[category["id"]]
    for ann in gt["annotations"]:
        ann["category_id"] = new_id[ann["category_id"]]
    test_json.write_text(json.dumps(gt))
    results_json = tmp_path / "coco-results.json"
    args = ["predict", "--data", str(test_json), "--checkpoint", str(checkpoint), "--json", str(results_json)]
    assert main(args + ["--conf", "0.01", "--out", str(tmp_path / "predict"), "--device", "cpu"]) == 0
    capsys.readouterr()
    results = json.loads(results_json.read_text())["results"]
    names = {image["id"]: image["file_name"] for image in gt["images"]}
    assert results and all(names[r["image_id"]] == r["file_name"] for r in results)
    by_name = {c["name"]: c["id"] for c in gt["categories"]}
    assert {r["category_id"] for r in results} <= {by_name[name] for name in CLASSES[1:]}
    assert main(["eval", "--coco", "--gt", str(test_json), "--results", str(results_json), "--json", "-"]) == 0
    assert set(json.loads(capsys.readouterr().out)) >= {"AP", "ARl"}

    voc = tmp_path / "voc"
    write_synth(voc, format="voc", images=16, seed=1)
    results_json = tmp_path / "voc-results.json"
    args = ["predict", "--data", str(voc), "--split", "test", "--checkpoint", str(checkpoint), "--json", str(results_json)]
    assert main(args + ["--conf", "0.01", "--out", str(tmp_path / "predict"), "--device", "cpu"]) == 0
    capsys.readouterr()
    split_ids = (voc / "ImageSets" / "Main" / "test.txt").read_text().split()
    assert {r["image_id"] for r in json.loads(results_json.read_text())["results"]} <= set(split_ids)
    args = ["eval", "--voc", "--data", str(voc), "--split", "test", "--results", str(results_json), "--json", "-"]
    assert main(args) == 0
    assert set(json.loads(capsys.readouterr().out)["per_class"]) == set(CLASSES[1:])


def test_predict_needs_images_or_data(checkpoint: Path, coco: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--checkpoint", str(checkpoint)]) == 2
    assert "SOURCES" in one_line_error(capsys)
    train_json = coco / "annotations" / "instances_train.json"
    assert main(["predict", "--data", str(train_json), "--split", "val", "--checkpoint", str(checkpoint)]) == 2
    assert "holds one split ('train'), not 'val'" in one_line_error(capsys)

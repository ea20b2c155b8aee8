"""`ssd predict` outputs read back: YOLO labels (through ssdcli's own YOLO reader and `ssd data check`), the CSV,
crops, videos with --vid-stride / --max-frames, streams (camera indices and URLs) that cannot be opened or drop."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import ssdcli
from ssdcli.cli.app import main
from ssdcli.data.dataset import open_index
from ssdcli.data.synth import SYNTH_CLASSES
from ssdcli.engine.predict import run as predict_module
from ssdcli.engine.predict.outputs import RunOutputs
from ssdcli.engine.predict.run import FrameSelection, PredictInterrupted, run_predict, stream_source

CONF = ["--conf", "0.01", "--device", "cpu"]  # an untrained model: a low threshold gives detections


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three small pictures of different sizes and formats."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name, (h, w) in (("a.png", (96, 128)), ("b.jpg", (120, 90)), ("c.png", (80, 80))):
        image = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
        cv2.rectangle(image, (10, 20), (60, 70), (0, 0, 255), -1)
        cv2.imwrite(str(folder / name), image)
    return folder


def _video(path: Path, frames: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    for i in range(frames):
        writer.write(np.full((64, 96, 3), 30 * i % 255, dtype=np.uint8))
    writer.release()
    return path


def _boxes_of_report(report: Path) -> dict[str, list[dict]]:
    """Detections by the image's file name (video frames: ``<stem>_<frame>``) from a --json report."""
    images = json.loads(report.read_text())["images"]
    return {
        (f"{Path(i['file']).stem}_{i['frame']}" if "frame" in i else Path(i["file"]).stem): i["detections"]
        for i in images
    }


def test_save_txt_labels_are_read_back_by_the_yolo_reader(
    checkpoint: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, report = tmp_path / "runs", tmp_path / "r.json"
    args = ["predict", str(images), "--checkpoint", str(checkpoint), "--out", str(out), "--json", str(report)]
    assert main([*args, "--save-txt", "--save-conf", *CONF]) == 0
    run = out / "1"
    index = open_index(run, "predict")  # format detected: data.yaml
    assert index.format == "yolo" and index.class_names == ("background", *SYNTH_CLASSES)
    expected = _boxes_of_report(report)
    assert sum(len(d) for d in expected.values()) > 0
    assert sorted(r.path.name for r in index.records) == ["a.png", "b.jpg", "c.png"]
    for record in index.records:
        detections = expected[record.path.stem]
        assert (record.path.read_bytes() == (images / record.path.name).read_bytes())  # the input, not the picture
        assert record.labels.tolist() == [SYNTH_CLASSES.index(d["class"]) + 1 for d in detections]
        np.testing.assert_allclose(record.boxes, [d["box_xyxy"] for d in detections], atol=0.02)
        lines = (run / "labels" / f"{record.path.stem}.txt").read_text().splitlines()
        assert [float(line.split()[5]) for line in lines] == pytest.approx([d["score"] for d in detections], abs=1e-5)
    capsys.readouterr()
    assert main(["data", "check", str(run)]) == 0


def test_labels_without_scores_have_five_columns(checkpoint: Path, images: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    assert main(["predict", str(images / "a.png"), "--checkpoint", str(checkpoint), "--out", str(out), "--save-txt", *CONF]) == 0
    lines = (out / "1" / "labels" / "a.txt").read_text().splitlines()
    assert lines and {len(line.split()) for line in lines} == {5}


def test_csv_has_one_row_per_box_and_is_checked_before_the_work(
    checkpoint: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, report, table = tmp_path / "runs", tmp_path / "r.json", tmp_path / "boxes.csv"
    table.write_text("mine")
    args = ["predict", str(images), "--checkpoint", str(checkpoint), "--out", str(out), "--csv", str(table), *CONF]
    assert main(args) == 2
    assert table.read_text() == "mine" and not out.exists()  # refused before any work
    assert f"{table}: exists" in capsys.readouterr().err
    assert main([*args, "--force", "--json", str(report)]) == 0
    with table.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    expected = [
        (i["file"], d["class"], d["score"], d["box_xyxy"]) for i in json.loads(report.read_text())["images"] for d in i["detections"]
    ]
    assert len(rows) == len(expected) > 0
    for row, (file, name, score, box) in zip(rows, expected):
        assert (row["image"], row["frame"], row["class"]) == (file, "", name)
        assert float(row["score"]) == score and [float(row[k]) for k in ("x1", "y1", "x2", "y2")] == box


def test_save_crop_writes_one_picture_per_detection_by_class(checkpoint: Path, images: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "runs", tmp_path / "r.json"
    args = ["predict", str(images / "a.png"), "--checkpoint", str(checkpoint), "--out", str(out), "--json", str(report)]
    assert main([*args, "--save-crop", *CONF]) == 0
    detections = _boxes_of_report(report)["a"]
    crops = sorted((out / "1" / "crops").rglob("*.jpg"))
    assert len(crops) == len(detections) > 0
    for k, detection in enumerate(detections):
        crop = cv2.imread(str(out / "1" / "crops" / detection["class"] / f"a_{k}.jpg"))
        x1, y1, x2, y2 = detection["box_xyxy"]
        x1, y1, x2, y2 = max(np.floor(x1), 0), max(np.floor(y1), 0), min(np.ceil(x2), 128), min(np.ceil(y2), 96)
        assert np.abs(np.subtract(crop.shape[:2], (y2 - y1, x2 - x1))).max() <= 1  # the JSON's boxes: 0.01 px


def test_save_conf_alone_and_labels_without_a_run_folder_are_usage_errors(
    checkpoint: Path, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["predict", str(images), "--checkpoint", str(checkpoint), "--device", "cpu"]
    assert main([*base, "--save-conf"]) == 2
    assert "--save-conf" in capsys.readouterr().err
    assert main([*base, "--save-txt", "--json", "-"]) == 2
    assert "--save-txt" in capsys.readouterr().err
    assert main([*base, "--vid-stride", "0"]) == 2
    assert main([*base, "--max-frames", "0"]) == 2


def test_vid_stride_and_max_frames_select_frames(checkpoint: Path, tmp_path: Path) -> None:
    video = _video(tmp_path / "clip.mp4", 7)
    out, report = tmp_path / "runs", tmp_path / "r.json"
    args = ["predict", str(video), "--checkpoint", str(checkpoint), "--out", str(out), *CONF]
    assert main([*args, "--vid-stride", "2", "--json", str(report), "--save-txt"]) == 0
    assert [i["frame"] for i in json.loads(report.read_text())["images"]] == [0, 2, 4, 6]
    written = cv2.VideoCapture(str(out / "1" / "clip.mp4"))
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    index = open_index(out / "1", "predict")
    assert sorted(r.path.name for r in index.records) == [f"clip_{k}.jpg" for k in (0, 2, 4, 6)]
    assert main([*args, "--vid-stride", "2", "--max-frames", "3", "--json", str(report), "--force"]) == 0
    assert [i["frame"] for i in json.loads(report.read_text())["images"]] == [0, 2, 4]


def test_the_summary_names_the_codec_the_video_was_written_in(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = _video(tmp_path / "clip.mp4", 2)
    out = tmp_path / "runs"
    assert main(["predict", str(video), "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("annotated videos:"))
    fourcc = int(cv2.VideoCapture(str(out / "1" / "clip.mp4")).get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    read_as = {"FMP4": "mp4v", "mp4v": "mp4v", "avc1": "avc1", "h264": "avc1", "H264": "avc1"}  # FFmpeg's names
    assert f"({read_as[fourcc]}" in line


@pytest.mark.parametrize(
    "source, expected",
    [("0", 0), ("12", 12), ("rtsp://cam.local:554/live", "rtsp://cam.local:554/live"),
     ("https://example.org/clip.mp4", "https://example.org/clip.mp4"), ("HTTP://host/x", "HTTP://host/x"),
     ("./0", None), ("-1", None), ("clip.mp4", None), ("ftp://host/x.mp4", None), ("rtsp:", None), ("٣", None)],
)
def test_streams_are_camera_indices_and_rtsp_http_urls(source: str, expected: int | str | None) -> None:
    assert stream_source(source) == expected


def test_a_stream_that_cannot_be_opened_is_one_line(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = "rtsp://127.0.0.1:9/none"  # the discard port: nothing listens, the connection is refused at once
    out = tmp_path / "runs"
    assert main(["predict", url, "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [f"error: {url}: cannot be opened"]
    assert not out.exists() or not any(out.iterdir())


def _stream_from(video: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Streams opened from ``video``: the stream drops where the file ends."""
    opened = predict_module.open_capture
    monkeypatch.setattr(predict_module, "open_capture", lambda source: opened(video))


def test_a_stream_that_drops_warns_once_and_keeps_a_valid_video(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ssdcli.engine.events import Message

    _stream_from(_video(tmp_path / "clip.mp4", 5), monkeypatch)
    messages: list[str] = []
    predictor = ssdcli.load(checkpoint, "cpu")
    url = "rtsp://cam.local/live"
    result = run_predict(
        predictor, [url], tmp_path / "runs", 2, lambda e: messages.append(e.text) if isinstance(e, Message) else None,
        outputs=RunOutputs(labels=True), frames=FrameSelection(max_frames=100),
    )
    assert messages == [f"{url}: the stream ended after 5 frame(s); what was read is kept"]
    assert result.frames_done == 5 and result.outputs == [tmp_path / "runs" / "1" / "live.mp4"]
    assert int(cv2.VideoCapture(str(result.outputs[0])).get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    assert len(open_index(tmp_path / "runs" / "1", "predict").records) == 5


def test_ctrl_c_on_a_stream_keeps_the_video_so_far(checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    _stream_from(_video(tmp_path / "clip.mp4", 6), monkeypatch)
    predictor = ssdcli.load(checkpoint, "cpu")
    predict_rgb, calls = predictor.predict_rgb, []

    def interrupted_on_the_second_batch(images):
        calls.append(len(images))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return predict_rgb(images)

    predictor.predict_rgb = interrupted_on_the_second_batch
    with pytest.raises(PredictInterrupted) as stopped:
        run_predict(predictor, ["0"], tmp_path / "runs", batch_size=2)
    kept = tmp_path / "runs" / "1" / "camera0.mp4"
    assert stopped.value.result.outputs == [kept] and stopped.value.result.frames_done == 2
    assert int(cv2.VideoCapture(str(kept)).get(cv2.CAP_PROP_FRAME_COUNT)) == 2


def test_ctrl_c_writes_the_csv_of_what_was_done(
    checkpoint: Path, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ssdcli.engine.inference.detectors import Detector

    predict_rgb, calls = Detector.predict_rgb, []

    def ctrl_c_on_the_second_batch(self, batch):
        calls.append(len(batch))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return predict_rgb(self, batch)

    monkeypatch.setattr(Detector, "predict_rgb", ctrl_c_on_the_second_batch)
    out, table = tmp_path / "runs", tmp_path / "boxes.csv"
    args = ["predict", str(images), "--checkpoint", str(checkpoint), "--out", str(out), "--csv", str(table)]
    assert main([*args, "--batch-size", "1", *CONF]) == 130
    assert f"their boxes in {table}" in capsys.readouterr().err
    with table.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert rows and {row["image"] for row in rows} == {str(images / "a.png")}


def test_a_run_where_every_input_fails_leaves_no_folder_even_with_save_txt(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    out = tmp_path / "runs"
    assert main(["predict", str(broken), "--checkpoint", str(checkpoint), "--out", str(out), "--save-txt", "--device", "cpu"]) == 2
    assert len([line for line in capsys.readouterr().err.splitlines() if line.strip()]) == 1
    assert not (out / "1").exists()

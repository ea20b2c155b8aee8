"""The built-in demo: synthetic data -> train the small model -> evaluate -> predict, with nothing downloaded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ssdcli.config import (
    AugmentSettings,
    DataSettings,
    EvalConfig,
    ModelSettings,
    OptimSettings,
    RuntimeSettings,
    TrainConfig,
)
from ssdcli.data.dataset import open_index
from ssdcli.data.files import fresh_run_dir, remove_if_empty, write_json
from ssdcli.data.synth import write_synth
from ssdcli.engine.evaluate.outcome import EvalOutcome
from ssdcli.engine.evaluate.run import run_eval
from ssdcli.engine.events import EventHandler, Message, ignore_events
from ssdcli.engine.inference.detectors import load_detector
from ssdcli.engine.inference.options import DISPLAY_THRESHOLD, DetectOptions
from ssdcli.engine.predict.run import PredictResult, run_predict
from ssdcli.engine.train.loop import TrainResult, train
from ssdcli.errors import Interrupted


@dataclass(frozen=True)
class DemoSettings:
    """The demo's recipe: enough synthetic images and steps for ssd_tiny to pass mAP@0.5 0.8 on a 2-core CPU."""

    images: int = 800
    epochs: int = 20
    batch_size: int = 32
    zoom_out: float = 1.0  # the synthetic shapes need no zoom-out or crop to generalise; both slow learning
    iou_crop: bool = False
    eval_every: int = 5
    workers: int = 2
    predict_images: int = 8
    seed: int = 0
    device: str = "auto"


@dataclass(frozen=True)
class DemoResult:
    """``evaluation`` and ``prediction`` are None when training was interrupted (nothing runs after Ctrl-C)."""

    run_dir: Path
    data_dir: Path
    training: TrainResult
    evaluation: EvalOutcome | None
    prediction: PredictResult | None

    @property
    def interrupted(self) -> bool:
        return self.training.interrupted


def run_demo(out: str | Path, settings: DemoSettings = DemoSettings(), emit: EventHandler = ignore_events) -> DemoResult:
    """Everything goes into a fresh numbered folder under ``out``: data/, train/1, eval/1, predict/1."""
    run_dir = fresh_run_dir(out)
    try:
        return _demo_in(run_dir, settings, emit)
    except KeyboardInterrupt:  # training's own Ctrl-C is a result (training.interrupted), not this
        if remove_if_empty(run_dir):
            raise Interrupted("interrupted; nothing written") from None
        raise Interrupted(f"interrupted: what the demo did so far is in {run_dir}") from None


def _demo_in(run_dir: Path, settings: DemoSettings, emit: EventHandler) -> DemoResult:
    """The demo's steps, into the fresh folder ``run_dir``."""
    data_dir = run_dir / "data"
    emit(Message(f"generating {settings.images} synthetic images into {data_dir}"))
    write_synth(data_dir, format="voc", images=settings.images, seed=settings.seed)
    train_images = len(open_index(data_dir, "train"))
    config = TrainConfig(
        data=DataSettings(data=data_dir),
        model=ModelSettings(arch="ssd_tiny"),
        optim=OptimSettings(epochs=settings.epochs, batch_size=min(settings.batch_size, train_images)),
        augment=AugmentSettings(zoom_out=settings.zoom_out, iou_crop=settings.iou_crop),
        runtime=RuntimeSettings(
            eval_every=settings.eval_every,
            workers=settings.workers,
            seed=settings.seed,
            device=settings.device,
            out=run_dir / "train",
        ),
    )
    training = train(config, emit)
    if training.interrupted:
        return DemoResult(run_dir, data_dir, training, None, None)
    best = training.best_checkpoint or training.last_checkpoint
    assert best is not None  # train() always writes last.pt after an uninterrupted epoch
    emit(Message(f"evaluating {best} on the test split"))
    evaluate = EvalConfig(
        mode="model", model=best, data=data_dir, split="test", out=run_dir / "eval", device=settings.device
    )
    evaluation = run_eval(evaluate, emit)
    test_index = open_index(data_dir, "test")
    sources = [str(r.path) for r in test_index.records[: settings.predict_images]]
    predictor = load_detector(best, "checkpoint", "cpu", DetectOptions(DISPLAY_THRESHOLD))
    prediction = run_predict(predictor, sources, run_dir / "predict", emit=emit)
    assert prediction.run_dir is not None  # an output folder was given
    write_json(prediction.run_dir / "predictions.json", prediction.report())
    return DemoResult(run_dir, data_dir, training, evaluation, prediction)

"""`ssd train`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape  # help texts are Rich markup: '[...]' must be escaped to be shown
from typer.core import TyperOption

from ssdcli.config import (
    DEFAULT_TRACKING,
    AugmentSettings,
    DataSettings,
    ModelSettings,
    OptimSettings,
    RuntimeSettings,
    TrainConfig,
)
from ssdcli.errors import Interrupted

from .command import DataFormat, Optimizer, SsdCommand
from .progress import TrainProgress
from .render import as_flags, print_warning, stderr_console, stdout_console
from .train_config import given_settings, recipe_rule_on, with_overrides

# The defaults of the options below are the settings dataclasses', written once.

EXIT_INTERRUPTED = 130


def model_help() -> str:
    """The help of ``--model``: every architecture with its description (from the registry, which imports no torch)."""
    from ssdcli.engine.train.architectures import architecture_descriptions

    choices = "; ".join(f"{name} ({text})" for name, text in architecture_descriptions().items())
    return escape(f"Model architecture, one of: {choices}.")


def lr_help() -> str:
    """The help of ``--lr``: the default rate per optimizer, and the architectures with their own defaults."""
    from ssdcli.engine.train.architectures import default_learning_rates, standard_learning_rates

    standard = standard_learning_rates()
    groups: dict[tuple[float, ...], list[str]] = {}
    for name, rates in default_learning_rates().items():
        if rates != standard:
            groups.setdefault(tuple(rates.values()), []).append(name)
    parts = [", ".join(f"{optimizer} {rate:g}" for optimizer, rate in standard.items())]
    parts += [f"{', '.join(names)} {' / '.join(f'{rate:g}' for rate in rates)}" for rates, names in groups.items()]
    return escape(f"Base learning rate (default: {'; '.join(parts)}).")


class TrainCommand(SsdCommand):
    """``ssd train``, whose ``--model`` and ``--lr`` help is read from the architecture registry when shown only,
    so that parsing the command line does not read it."""

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:  # type: ignore[override]  # typer passes its Context
        for param in self.params:
            if param.name == "model" and isinstance(param, TyperOption):
                param.help = model_help()
            elif param.name == "lr" and isinstance(param, TyperOption):
                param.help = lr_help()
        super().format_help(ctx, formatter)


def train_command(
    ctx: typer.Context,
    data: Annotated[Path | None, typer.Option(help="VOC root, COCO instances JSON/root, or YOLO data.yaml/root. Omitted: the built-in synthetic set, generated into the run folder.")] = None,
    val_data: Annotated[Path | None, typer.Option(help="Validation data apart from --data, e.g. instances_val.json when --data is instances_train.json.")] = None,
    data_format: Annotated[DataFormat, typer.Option("--format", help="Data set layout (auto: detected from the files).")] = DataFormat(DataSettings.data_format),
    train_split: Annotated[str | None, typer.Option(help="Split to train on (default: train; a COCO JSON file is its own split).")] = None,
    val_split: Annotated[str | None, typer.Option(help="Split to validate on (default: val).")] = None,
    classes: Annotated[str | None, typer.Option(help="Comma-separated class names (default: from the data).")] = None,
    model: Annotated[str, typer.Option(help="Model architecture (the list: ssd train --help).")] = ModelSettings.arch,
    anchors: Annotated[Path | None, typer.Option(metavar="<path|auto>", help="Anchor layout JSON (as 'ssd encode --suggest' writes), or 'auto': fit the model's default boxes to the training boxes first (stored in the checkpoint).")] = None,
    backbone_weights: Annotated[str | None, typer.Option(help="'imagenet' (from the torch cache) or a local file.")] = None,
    weights: Annotated[str | None, typer.Option(help="Fine-tune a trained detector: a checkpoint of ssd train (best.pt), or torchvision's COCO detector SSD300_VGG16_Weights.COCO_V1 or SSDLite320_MobileNet_V3_Large_Weights.COCO_V1 (from the torch hub cache) or its state dict file; sets the model, default boxes and input size. Classes are matched by name: only new ones start afresh. Optimizer and schedule start afresh (--resume continues a run).")] = None,
    download: Annotated[bool, typer.Option(help="Download the torchvision weights --weights or --backbone-weights imagenet name into the torch cache first, unless there (see ssd weights).")] = False,
    freeze: Annotated[str | None, typer.Option(help="'backbone': keep the backbone as it is (no gradient, no weight decay, BatchNorm statistics fixed); N: its first N stages only.")] = ModelSettings.freeze,
    epochs: Annotated[int | None, typer.Option(help="Train for N epochs (instead of a time budget).")] = OptimSettings.epochs,
    time: Annotated[str | None, typer.Option("--time", help="Wall-clock budget such as 90s, 20m or 1.5h; the schedule is fitted to the measured speed. Default without --epochs: 10m.")] = None,
    patience: Annotated[int | None, typer.Option(help="Stop after N validations without a better validation mAP (with --epochs or --time, whichever ends first).")] = OptimSettings.patience,
    batch_size: Annotated[int, typer.Option(help="Images per optimizer step (per process).")] = OptimSettings.batch_size,
    optimizer: Annotated[Optimizer, typer.Option(help="The optimizer.")] = Optimizer(OptimSettings.optimizer),
    lr: Annotated[float | None, typer.Option(help="Base learning rate (default: per architecture and optimizer).")] = None,
    warmup_steps: Annotated[int, typer.Option(help="Steps of linear learning-rate warm-up (at most a quarter of the schedule).")] = OptimSettings.warmup_steps,
    iou_crop: Annotated[bool, typer.Option(help="The SSD min-IoU random crop augmentation.")] = AugmentSettings.iou_crop,
    zoom_out: Annotated[float, typer.Option(help="Largest zoom-out canvas of the augmentation (1: off; the SSD paper: 4).")] = AugmentSettings.zoom_out,
    mosaic: Annotated[float, typer.Option(help="Share of training samples made as a mosaic: four images at the input's scale, 2 x 2, and a window of the input's size at a random place (0: off).")] = AugmentSettings.mosaic,
    ema: Annotated[bool, typer.Option(help="Validate and save an exponential moving average of the weights.")] = OptimSettings.ema,
    img_size: Annotated[int | None, typer.Option(help="Input size: a multiple of 32 for the ssd_tiny models (default boxes scaled to it); others: their anchor layout's.")] = None,
    auto_recipe: Annotated[bool, typer.Option(help="Choose the default model's input size and default boxes from the training boxes, where not given; the first lines of the run say why (off when --model is given).")] = ModelSettings.auto_recipe,
    workers: Annotated[int, typer.Option(help="Data loading processes.")] = RuntimeSettings.workers,
    threads: Annotated[int | None, typer.Option(help="CPU threads of the main process (default: cores left by the workers).")] = RuntimeSettings.threads,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = RuntimeSettings.device,
    amp: Annotated[bool, typer.Option(help="Mixed precision on CUDA devices: bfloat16 where the GPU has it, else float16 with loss scaling (elsewhere a warning; float32).")] = RuntimeSettings.amp,
    seed: Annotated[int, typer.Option(help="Random seed of initialisation, sampling and augmentation.")] = RuntimeSettings.seed,
    eval_every: Annotated[int, typer.Option(help="Validate every N epochs (0: never).")] = RuntimeSettings.eval_every,
    out: Annotated[Path, typer.Option(help="Parent folder; each run goes to a fresh numbered folder.")] = RuntimeSettings.out,
    resume: Annotated[Path | None, typer.Option(help="Continue the run of this last.pt with its exact schedule.")] = None,
    synth_images: Annotated[int, typer.Option(help="Images of the generated synthetic set (no --data; at least 8).")] = DataSettings.synth_images,
    max_steps_per_epoch: Annotated[int | None, typer.Option(help="Cap steps per epoch (quick runs).")] = RuntimeSettings.max_steps_per_epoch,
    verify_images: Annotated[bool, typer.Option(help="Decode every image once before the first step (cached under --out); undecodable ones are left out with a warning.")] = DataSettings.verify_images,
    strict: Annotated[bool, typer.Option(help="An image that does not decode is an error instead of being left out.")] = DataSettings.strict,
    tensorboard: Annotated[bool, typer.Option(help=escape("Also log to TensorBoard in <run>/tensorboard (pip install 'ssdcli[tensorboard]')."))] = False,
    track_mlflow: Annotated[bool, typer.Option("--mlflow", help=escape("Track the run in MLflow: settings, metrics.csv's figures, best.pt and the pictures, in $MLFLOW_TRACKING_URI, else mlruns/ beside the run folder (pip install 'ssdcli[mlflow]')."))] = False,
    mlflow_uri: Annotated[str | None, typer.Option(help="Track the run in MLflow at this tracking URI (file:, sqlite:, http:); implies --mlflow.")] = None,
    config_file: Annotated[Path | None, typer.Option("--config", help="Start a new run with the settings of an earlier one: its config.json, or a checkpoint (last.pt, best.pt). Options given beside it override the file's values.")] = None,
    print_config: Annotated[bool, typer.Option(help="Print the settings the run would use as JSON and exit (the training annotations are read for the recipe's choices; no image is decoded).")] = False,
) -> int:
    """Train an SSD model; writes last.pt, best.pt and metrics.csv into a fresh run folder.

    Examples:

        ssd train                                   # built-in synthetic data and the small model

        ssd train --data data/bccd --time 20m       # a 20-minute schedule (default: 10 minutes)

        ssd train --data data/bccd --epochs 100 --patience 10   # or stop after 10 validations without a better mAP

        ssd train --data VOCdevkit/VOC2007 --train-split trainval --val-split test --model ssd300_vgg16

        ssd train --data coco/annotations/instances_train.json --val-data coco/annotations/instances_val.json

        ssd train --resume runs/train/3/last.pt

        ssd train --config runs/train/3/config.json --lr 0.01   # run 3 again, with another learning rate

        ssd train --config runs/train/3/best.pt --print-config    # the settings a checkpoint was trained with

        ssd train --data data/bccd --weights SSDLite320_MobileNet_V3_Large_Weights.COCO_V1

        ssd train --data data/new --weights runs/train/3/best.pt   # fine-tune run 3's model on other data

        ssd train --data data/bccd --model ssdlite320_mobilenet_v3_large --backbone-weights imagenet --freeze 2

        ssd train --data data/bccd --tensorboard    # then: tensorboard --logdir runs/train

        ssd train --data data/bccd --mlflow         # then: mlflow ui --backend-store-uri runs/train/mlruns

        ssd train --data data/bccd --mlflow-uri http://localhost:5000   # an MLflow tracking server

        torchrun --nproc_per_node 2 -m ssdcli train --data data/bccd   # several GPUs or machines
    """
    from ssdcli.engine.device import mixed_precision_note, resolve_device
    from ssdcli.engine.train.loop import train

    from .durations import parse_duration

    config = TrainConfig(
        data=DataSettings(
            data=data,
            data_format=data_format.value,
            train_split=train_split,
            val_split=val_split,
            val_data=val_data,
            classes=tuple(c.strip() for c in classes.split(",") if c.strip()) if classes else None,
            synth_images=synth_images,
            verify_images=verify_images,
            strict=strict,
        ),
        model=ModelSettings(
            arch=model,
            anchors=anchors,
            backbone_weights=backbone_weights,
            weights=weights,
            img_size=img_size,
            freeze=freeze,
            auto_recipe=recipe_rule_on(ctx, auto_recipe),
        ),
        optim=OptimSettings(
            epochs=epochs,
            time_budget=parse_duration(time) if time is not None else None,
            patience=patience,
            batch_size=batch_size,
            optimizer=optimizer.value,
            lr=lr,
            warmup_steps=warmup_steps,
            ema=ema,
        ),
        augment=AugmentSettings(zoom_out=zoom_out, iou_crop=iou_crop, mosaic=mosaic),
        runtime=RuntimeSettings(
            workers=workers,
            threads=threads,
            device=device,
            amp=amp,
            seed=seed,
            eval_every=eval_every,
            out=out,
            resume=resume,
            max_steps_per_epoch=max_steps_per_epoch,
            tensorboard=tensorboard,
            mlflow=mlflow_uri if mlflow_uri is not None else DEFAULT_TRACKING if track_mlflow else None,
        ),
    )
    if config_file is not None:
        config = _from_config_file(ctx, config_file, config)
    if print_config:
        from ssdcli.engine.train.recipe_rule import planned_config

        config, recipe_line = planned_config(config)
        if recipe_line is not None:
            stderr_console().print(as_flags(recipe_line), soft_wrap=True, markup=False)
        typer.echo(json.dumps(config.to_dict(), indent=2))
        return 0
    if download:
        from ssdcli.engine.weights import fetch_for_training

        from .weights import print_fetched

        print_fetched(fetch_for_training(config.model))
    note = mixed_precision_note(amp, resolve_device(device))
    if note is not None:
        print_warning(note)
    console = stdout_console()
    try:
        with TrainProgress(console) as progress:
            result = train(config, on_event=progress)
    except KeyboardInterrupt:  # once training runs, Ctrl-C stops at a step boundary and saves (result.interrupted)
        raise Interrupted("interrupted before the first training step; nothing written, no run folder left") from None
    if result.finished_already:
        return 0
    if result.interrupted:
        import signal

        from ssdcli.engine.train.interrupts import SIGNAL_EXIT_CODES

        name = signal.Signals(result.signal).name if result.signal else "SIGINT"
        console.print(
            f"interrupted ({name}): progress saved in {result.last_checkpoint}; resume with: ssd train --resume "
            f"{result.last_checkpoint}",
            soft_wrap=True,
        )
        return EXIT_INTERRUPTED if result.signal is None else SIGNAL_EXIT_CODES.get(signal.Signals(result.signal), EXIT_INTERRUPTED)
    console.print(f"last checkpoint: {result.last_checkpoint}\nbest checkpoint: {result.best_checkpoint}")
    assert result.run_dir is not None  # a run that trained has its folder
    console.print(f"metrics: {result.run_dir / 'metrics.csv'}")
    return 0


def _from_config_file(ctx: typer.Context, path: Path, options: TrainConfig) -> TrainConfig:
    """The settings of ``path`` (a config.json or checkpoint) with the options given on the command line over
    them; one line on stderr says which were overridden."""
    from ssdcli.engine.train.config_file import read_train_config, reproduced

    given = given_settings(ctx)
    config = with_overrides(reproduced(read_train_config(path)), options, given)
    overridden = f"; overridden: {', '.join(f'`{name}`' for name in given)}" if given else ""
    stderr_console().print(as_flags(f"settings of {path}{overridden}"), soft_wrap=True, markup=False)
    return config

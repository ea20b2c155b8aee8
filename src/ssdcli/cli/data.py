"""`ssd data`: generate the built-in synthetic data set and check data sets."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ssdcli.data.formats import format_names, paths_help

from .command import DataFormat, SsdCommand, SsdGroup
from .render import JsonOutput, print_warning, stdout_console

if TYPE_CHECKING:
    from ssdcli.data.check import DataCheckReport

app = typer.Typer(cls=SsdGroup, help="Generate the built-in synthetic data set, check and convert data sets.", no_args_is_help=True)


class SynthFormat(str, Enum):
    voc = "voc"
    coco = "coco"


@app.command("synth", cls=SsdCommand)
def synth_command(
    out: Annotated[Path, typer.Argument(help="New (or empty) folder to write the data set into.")],
    format: Annotated[SynthFormat, typer.Option("--format", "-f", help="Layout to write.")] = SynthFormat.voc,
    images: Annotated[int, typer.Option("--images", "-n", min=3, help="Number of images (all splits).")] = 300,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes the same files.")] = 0,
    size: Annotated[int, typer.Option("--size", min=32, help="Image side in pixels.")] = 160,
) -> None:
    """Generate the synthetic shapes data set (circle, square, triangle) in VOC or COCO layout.

    Splits: about 70 % train, 15 % val, 15 % test (VOC also trainval). A non-empty OUT is never touched.

    Examples:

        ssd data synth data/shapes

        ssd data synth data/shapes-coco --format coco --images 500 --seed 1
    """
    from ssdcli.data.synth import write_synth

    result = write_synth(out, format=format.value, images=images, seed=seed, image_size=size)
    splits = ", ".join(f"{count} {name}" for name, count in result.split_sizes.items())
    per_class = ", ".join(f"{n} {name}" for name, n in zip(result.class_names, result.objects_per_class))
    stdout_console().print(
        f"wrote {result.images} images of {result.image_size}x{result.image_size} px ({splits}) and "
        f"{result.objects} objects ({per_class}) in {result.format.upper()} layout to {result.root}",
        soft_wrap=True,
    )


#: What ``ssd data convert --to`` writes: every format of the registry.
TargetFormat = Enum("TargetFormat", {name: name for name in format_names()}, type=str)  # type: ignore[misc]


@app.command("convert", cls=SsdCommand)
def convert_command(
    src: Annotated[Path, typer.Argument(help=f"Data set to convert: {paths_help()}.")],
    out: Annotated[Path, typer.Argument(help="New (or empty) folder for the converted data set.")],
    to: Annotated[TargetFormat, typer.Option("--to", "-t", help="Target format.")],
    format: Annotated[DataFormat, typer.Option("--format", "-f", help="Source layout.")] = DataFormat("auto"),
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty OUT (files of the same name are replaced).")] = False,
) -> None:
    """Convert a data set between VOC, COCO and YOLO, every split at once; SRC is only read.

    Boxes are written as training reads them (clipped to the image, zero-area boxes dropped). VOC difficult and COCO iscrowd map onto each other; YOLO cannot hold them (such objects are left out and counted).

    Examples:

        ssd data convert data/VOC2007 data/voc-yolo --to yolo

        ssd data convert data/shapes-yolo/data.yaml data/shapes-coco --to coco
    """
    from ssdcli.data.convert import convert_dataset

    result = convert_dataset(src, to.value, out, force=force, source_format=format.value)
    for note in result.notes:
        print_warning(note)
    splits = ", ".join(f"{count} {name}" for name, count in result.images_per_split.items())
    stdout_console().print(
        f"wrote {result.format.upper()} data set to {result.out}: {splits} images, {result.objects} objects",
        soft_wrap=True,
    )


def _render_check(report: DataCheckReport) -> None:
    console = stdout_console()
    columns = [summary.split for summary in report.splits]
    contents = Table(title=f"{report.root} ({report.format.upper()})", title_justify="left")
    contents.add_column("")
    for name in columns:
        contents.add_column(name, justify="right")
    contents.add_row("images", *(str(s.images) for s in report.splits))
    contents.add_row("objects", *(str(s.objects) for s in report.splits))
    contents.add_row("  ignored (difficult/crowd)", *(str(s.ignored) for s in report.splits))
    contents.add_row("images without objects", *(str(s.images_without_objects) for s in report.splits))
    for name in report.class_names:
        contents.add_row(f"class {name}", *(str(s.objects_per_class.get(name, 0)) for s in report.splits))
    console.print(contents)
    sizes = Table(title="Objects by box size (sqrt(area), px)", title_justify="left")
    sizes.add_column("size")
    for name in columns:
        sizes.add_column(name, justify="right")
    for k, label in enumerate(report.size_labels):
        sizes.add_row(label, *(str(s.size_histogram[k]) for s in report.splits))
    console.print(sizes)
    if report.ok:
        console.print("[green]no problems found[/]")
        return
    problems = Table(title="Problems found", title_justify="left")
    for column in ("split", "problem", "count", "files"):
        problems.add_column(column, justify="right" if column == "count" else "left")
    from ssdcli.data.records import quote_files

    for problem in report.problems:
        problems.add_row(problem.split or "-", problem.what, str(problem.count), quote_files(problem.files))
    console.print(problems)


@app.command("check", cls=SsdCommand)
def check_command(
    path: Annotated[Path, typer.Argument(help=f"{paths_help()}.")],
    split: Annotated[str | None, typer.Option("--split", "-s", help="Check only this split (default: all).")] = None,
    format: Annotated[DataFormat, typer.Option("--format", "-f", help="Data set layout.")] = DataFormat("auto"),
    images: Annotated[bool | None, typer.Option("--images/--no-images", help="Decode every image as training does before its first step (default: on below 10,000 images).")] = None,
    workers: Annotated[int, typer.Option(min=0, help="Threads decoding images.")] = 2,
    classes: Annotated[str | None, typer.Option(help="Comma-separated class names: objects of other classes are an error, as in training.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON to this file ('-': stdout, no table).")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit with code 1 if any problem is found.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --json file.")] = False,
) -> None:
    """Validate a data set and summarise it: images, objects per class, box sizes, problems found.

    Problems that training would trip on are listed per split and file: images that do not decode or are cut
    short, sizes that differ from the annotation, boxes outside the image or without area, unusable splits,
    file names used twice. A split that cannot be used (a missing image, a malformed annotation, an empty split)
    is listed too, and the command then exits with code 2.

    Repaired or harmless problems are listed (exit code 0, or 1 with --strict).

    Examples:

        ssd data check data/VOC2007 --split trainval

        ssd data check data/coco/annotations/instances_val2017.json

        ssd data check data/VOC2007 --json report.json     # the problems with every file, for scripts
    """
    from ssdcli.data.check import check_dataset
    from ssdcli.errors import DataError

    json_output = JsonOutput(json_out, force)
    names = tuple(c.strip() for c in classes.split(",") if c.strip()) if classes else None
    report = check_dataset(path, split=split, format=format.value, classes=names, decode=images, workers=workers)
    if not json_output.to_stdout:
        _render_check(report)
    json_output.write(report.to_dict())
    if report.fatal:
        first = report.fatal[0]
        what = first.what.replace("split cannot be used", f"the {first.split!r} split cannot be used", 1)
        raise DataError(what, path=first.files[0] if first.files else path)
    if not report.ok:
        total = sum(problem.count for problem in report.problems)
        print_warning(f"{path}: {total} problems of {len(report.problems)} kinds (see the table above)")
        if strict:
            raise typer.Exit(code=1)

"""`ssd encode`: show how SSD assigns default boxes to ground truth, for one image or a whole data set."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ssdcli.errors import UsageError

from .command import DataFormat
from .progress import EvalProgressBar
from .render import JsonOutput, print_warning, stderr_console, stdout_console

if TYPE_CHECKING:
    from ssdcli.engine.encode import CoverageReport, GroupStats, ImageReport, Suggestion


def _rule(best_anchor: bool) -> str:
    return "threshold + best default box" if best_anchor else "threshold only (reference)"


def _box(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:.0f}" for v in values)


def _per_map(counts: tuple[int, ...], sides: tuple[int, ...]) -> str:
    """Counts aligned under the feature-map sizes of the column header."""
    return " ".join(f"{c:>{len(str(f))}}" for c, f in zip(counts, sides))


#: Table style that keeps the per-GT tables within 80 columns.
_COMPACT: dict = {"box": box.SIMPLE_HEAD, "pad_edge": False, "show_edge": False, "collapse_padding": True}


def _gt_table(report: ImageReport) -> Table:
    layout = report.layout
    table = Table(
        title=f"{escape(report.image_path.name)} ({report.width}x{report.height}) on {escape(report.layout_name)}: "
        f"{layout.num_anchors} default boxes, {layout.image_size}x{layout.image_size} input",
        title_justify="left",
        **_COMPACT,
    )
    table.add_column("#", justify="right")
    table.add_column("class", overflow="fold")
    table.add_column("box (px)", no_wrap=True)
    table.add_column("w x h", justify="right", no_wrap=True)
    table.add_column("input", justify="right", no_wrap=True)
    table.add_column("best\nIoU", justify="right")
    table.add_column("matches per map\n" + " ".join(str(f) for f in layout.feature_maps), no_wrap=True)
    for gt in report.gts:
        iou = f"{gt.best_iou:.3f}"
        if not gt.flag and not gt.above_threshold:
            iou = f"[red]{iou}[/]"
        counts = _per_map(gt.matches_per_layer, layout.feature_maps)
        if gt.flag:
            counts = f"[dim]{gt.flag}: not matched[/]"
        table.add_row(
            str(gt.index),
            escape(gt.class_name),
            _box(gt.box_xyxy),
            f"{gt.size_wh[0]:.0f}x{gt.size_wh[1]:.0f}",
            f"{gt.input_size_wh[0]:.0f}x{gt.input_size_wh[1]:.0f}",
            iou,
            counts,
        )
    table.caption = (
        f"{report.positives} positives, {report.negatives} negatives (IoU > {report.threshold:g}, "
        f"{_rule(report.best_anchor)}). GTs with no default box above {report.threshold:g}: "
        f"{report.below_threshold} (--reference leaves them unmatched)"
        + (f"; GTs left without any default box: {report.unmatched}" if report.unmatched else "")
        + "."
    )
    table.caption_justify = "left"
    return table


def _offsets_table(report: ImageReport) -> Table:
    table = Table(
        title="Encoded target of each GT's best match (its matched default box of highest IoU)",
        title_justify="left",
        **_COMPACT,
    )
    table.add_column("#", justify="right")
    table.add_column("map [row,col] box", no_wrap=True)
    table.add_column("default box (px)", no_wrap=True)
    table.add_column("IoU", justify="right")
    for name in ("t_cx", "t_cy", "t_w", "t_h"):
        table.add_column(name, justify="right")
    for gt in report.gts:
        match = gt.best_match
        if match is None or gt.offsets is None:
            why = gt.flag or "no default box"
            table.add_row(str(gt.index), f"[dim]{why}[/]", "", "", "", "", "", "")
            continue
        table.add_row(
            str(gt.index),
            f"{match.layer} [{match.row},{match.col}] {match.box}",
            _box(match.box_xyxy),
            f"{match.iou:.3f}",
            *(f"{t:+.3f}" for t in gt.offsets),
        )
    table.caption = "t_cx = (g_cx - d_cx) / d_w / 0.1, t_cy likewise, t_w = log(g_w / d_w) / 0.2, t_h likewise."
    table.caption_justify = "left"
    return table


def render_image_report(console: Console, report: ImageReport) -> None:
    """One row per GT (class, box, size, best IoU, matches per feature map), then its best match's offsets."""
    console.print(_gt_table(report))
    if report.gts:
        console.print(_offsets_table(report))
    for note in report.notes:
        print_warning(f"{report.annotation_path}: {note}")


def _group_table(title: str, groups: tuple[GroupStats, ...], threshold: float) -> Table:
    table = Table(title=title, title_justify="left", **_COMPACT)
    table.add_column("")
    table.add_column("GTs", justify="right")
    table.add_column(f"no box > {threshold:g}", justify="right")
    table.add_column("share", justify="right")
    table.add_column("mean best IoU", justify="right")
    for group in groups:
        share = f"{group.share_below:.1%}" if group.gts else "-"
        if group.below_threshold:
            share = f"[red]{share}[/]"
        mean = f"{group.mean_best_iou:.3f}" if group.gts else "-"
        table.add_row(escape(group.name), str(group.gts), str(group.below_threshold), share, mean)
    return table


def render_coverage_report(console: Console, report: CoverageReport) -> None:
    """Summary, then coverage by size, by class and per feature map."""
    where = escape(report.source) + (f" ({escape(report.split)})" if report.split else "")
    summary = Table(
        title=f"Anchor coverage of {where} on {escape(report.layout_name)}",
        title_justify="left",
        show_header=False,
        **_COMPACT,
    )
    summary.add_column("")
    summary.add_column("", justify="right")
    rows = [
        ("images", str(report.images)),
        ("GTs (ignored: difficult/crowd)", f"{report.gts} ({report.ignored})"),
        (f"GTs with no default box > {report.threshold:g}", f"{report.below_threshold} ({1 - report.coverage:.1%})"),
        (f"unmatched under '{_rule(report.best_anchor)}'", str(report.unmatched)),
        ("mean best IoU", f"{report.mean_best_iou:.3f}"),
        ("positives per image (mean, min, max)", f"{report.positives_mean:.1f}, {report.positives_min}, {report.positives_max}"),
        ("matching time", f"{report.seconds:.2f} s"),
    ]
    for name, value in rows:
        summary.add_row(name, value)
    console.print(summary)
    console.print(_group_table("By size: sqrt(area) in px of the network input", report.by_size, report.threshold))
    console.print(_group_table("By class", report.by_class, report.threshold))
    layers = Table(title="Per feature map", title_justify="left", **_COMPACT)
    for name in ("map", "size", "default boxes", "positives", "per image", "GTs with their\nbest box here"):
        layers.add_column(name, justify="right")
    for layer in report.layers:
        layers.add_row(
            str(layer.layer),
            f"{layer.feature_map}x{layer.feature_map}",
            str(layer.anchors),
            str(layer.matches),
            f"{layer.matches / max(report.images, 1):.1f}",
            str(layer.best_layer_gts),
        )
    console.print(layers)


def render_suggestion(console: Console, suggestion: Suggestion, written: Path | None) -> None:
    table = Table(
        title=f"Suggested anchors (K = {suggestion.k}, IoU > {suggestion.threshold:g}, {suggestion.gts} GTs, "
        f"{suggestion.candidates} layouts tried)",
        title_justify="left",
        **_COMPACT,
    )
    table.add_column("")
    table.add_column("start")
    table.add_column("suggested")
    start, best = suggestion.start, suggestion.layout
    table.add_row("coverage", f"{suggestion.start_coverage:.2%}", f"{suggestion.coverage:.2%}")
    table.add_row("mean best IoU", f"{suggestion.start_mean_iou:.3f}", f"{suggestion.mean_iou:.3f}")
    table.add_row("sizes (px)", ", ".join(f"{s:g}" for s in start.sizes), ", ".join(f"{s:g}" for s in best.sizes))
    for k, (a, b) in enumerate(zip(start.aspect_ratios, best.aspect_ratios)):
        table.add_row(
            f"ratios map {k}", ", ".join(f"{r:.3g}" for r in a), ", ".join(f"{r:.3g}" for r in b)
        )
    table.add_row("default boxes", str(start.num_anchors), str(best.num_anchors))
    table.caption = f"ratios from: {suggestion.ratio_source}"
    table.caption_justify = "left"
    console.print(table)
    if written is not None:
        console.print(f"anchor layout written: {written}  (use it with 'ssd train --anchors {written}')")
    else:
        console.print("no layout written: the suggestion is not better than the start")


def _check_options(
    image: Path | None, data: Path | None, suggest: int | None, out: Path | None, annotation: Path | None, image_id: int | None
) -> None:
    if (image is None) == (data is None):
        raise UsageError("give either an IMAGE (with --annotation) or --data PATH for a whole data set")
    if data is not None and (annotation is not None or image_id is not None):
        raise UsageError("--annotation and --image-id apply to a single IMAGE, not to --data")
    if suggest is not None and data is None:
        raise UsageError("--suggest needs --data PATH (the boxes to fit anchors to)")
    if suggest is not None and out is None:
        raise UsageError("--suggest needs --out FILE (where the anchor layout JSON goes)")
    if out is not None and suggest is None:
        raise UsageError("--out is where --suggest writes its layout; pass --suggest K too")


def encode_command(
    image: Annotated[Path | None, typer.Argument(metavar="IMAGE", help="An image to match (or use --data for a data set).", show_default=False)] = None,
    annotation: Annotated[Path | None, typer.Option(help="VOC XML, or COCO JSON with --image-id (default for an image in JPEGImages/: ../Annotations/<name>.xml).")] = None,
    image_id: Annotated[int | None, typer.Option(help="The image's id in a COCO JSON (default: found by file name).")] = None,
    model: Annotated[str | None, typer.Option(help="Anchor layout: ssd300, ssd512, ssdlite320 or a model architecture (ssd300_vgg16...). Default: the model 'ssd train' trains by default, ssd_tiny256.")] = None,
    anchors: Annotated[Path | None, typer.Option(help="Anchor layout JSON (as --suggest writes it).")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Use the anchor layout stored in this checkpoint.")] = None,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="A default box matches a GT with IoU above this.")] = 0.5,
    reference: Annotated[bool, typer.Option("--reference", help="Threshold only (the reference): no forced best default box per GT.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON to this file ('-': stdout, no tables).")] = None,
    visualize: Annotated[Path | None, typer.Option(help="Write a picture (PNG): matches per feature map, or the data-set charts.")] = None,
    data: Annotated[Path | None, typer.Option(help="Data-set mode: a VOC root, COCO root or instances JSON, YOLO root or data.yaml; coverage statistics over every image.")] = None,
    split: Annotated[str | None, typer.Option(help="Split of the data set (default: train; a COCO JSON file is its own split).")] = None,
    data_format: Annotated[DataFormat, typer.Option("--format", help="--data: the data set layout (auto: detected from the files).")] = DataFormat("auto"),
    suggest: Annotated[int | None, typer.Option(min=1, help="Fit K aspect ratios and the sizes to the data set; writes --out.")] = None,
    out: Annotated[Path | None, typer.Option(help="Where --suggest writes the anchor layout JSON.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace existing --json, --visualize and --out files.")] = False,
) -> int:
    """Show how SSD assigns default boxes to ground truth: per GT of an image, or over a whole data set.

    Examples:

        ssd encode data/VOC2007/JPEGImages/000005.jpg --visualize matches.png

        ssd encode photo.jpg --annotation instances_val.json --image-id 42 --model ssd512

        ssd encode --data data/bccd --split trainval --visualize coverage.png

        ssd encode --data data/bccd --suggest 3 --out bccd_anchors.json --model ssdlite320
    """
    from ssdcli.engine.encode import (
        check_new_file,
        dataset_coverage,
        encode_image_file,
        load_gt_set,
        resolve_layout,
        suggest_layout,
        write_coverage_figure,
        write_image_figure,
        write_layout,
    )

    _check_options(image, data, suggest, out, annotation, image_id)
    json_output = JsonOutput(json_out, force)
    for target in (visualize, out):
        if target is not None:
            check_new_file(target, force)
    layout = resolve_layout(model, anchors, checkpoint)
    console = stderr_console() if json_output.to_stdout else stdout_console()
    if image is not None:
        report = encode_image_file(image, annotation, layout, threshold, not reference, image_id)
        if not json_output.to_stdout:
            render_image_report(console, report)
        written = json_output.write({"image": report})
        if written is not None:
            console.print(f"report: {written}")
        if visualize is not None:
            console.print(f"picture: {write_image_figure(report, visualize)}")
        return 0
    gts = load_gt_set(data, split, data_format.value)  # type: ignore[arg-type]  # _check_options: data is set
    with EvalProgressBar(console, "encode") as progress:
        coverage = dataset_coverage(gts, layout, threshold, not reference, on_event=progress)
    if not json_output.to_stdout:
        render_coverage_report(console, coverage)
    result: dict[str, object] = {"coverage": coverage}
    if suggest is not None and out is not None:
        suggestion = suggest_layout(gts, layout.layout, suggest, threshold)
        written = write_layout(suggestion.layout, out, force) if suggestion.accepted else None
        if not json_output.to_stdout:
            render_suggestion(console, suggestion, written)
        result["suggestion"] = suggestion
        result["suggestion_written"] = written
    report_file = json_output.write(result)
    if report_file is not None:
        console.print(f"report: {report_file}")
    if visualize is not None:
        console.print(f"picture: {write_coverage_figure(coverage, visualize)}")
    return 0

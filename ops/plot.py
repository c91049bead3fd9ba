"""`--plot FILE` of `esper run` and `esper audit run`: a static PNG or SVG of a run's curves with the
dashboard's markers (graft, cull, fossilize, rollback), the epochs a rollback voided and the no-growth
baseline, drawn with matplotlib for people who never open a browser. The format follows the suffix."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ops.errors import CommandError

if TYPE_CHECKING:  # `esper run --help` imports this module and must not load the database layer
    from sqlalchemy import Engine

    from ops.serve.curves import RunCurves

FORMATS = (".png", ".svg")
PANELS = (
    ("loss", "training_loss", "validation_loss"),
    ("accuracy", "training_accuracy", "validation_accuracy"),
)


def plot_path(text: str) -> Path:
    """--plot's type: the suffix is checked while parsing, before a run trains for minutes."""
    path = Path(text)
    if path.suffix.lower() not in FORMATS:
        raise argparse.ArgumentTypeError(f"{text}: the file must end in {' or '.join(FORMATS)}")
    return path


def add_plot_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plot",
        type=plot_path,
        metavar="FILE",
        help="also draw the run's loss and accuracy curves with graft, cull, fossilize and rollback "
        "markers into FILE (.png or .svg)",
    )


def write_plot(args: argparse.Namespace, run_id: str) -> Path:
    """Bring the read models of args' data dir up to date, draw the run into args.plot, say so on stderr."""
    from ops.dbopts import open_db_from_args
    from ops.storeopts import open_store_from_args
    from projections import catch_up
    from projections.audit import NotFound

    path = Path(args.plot)
    store = open_store_from_args(args)
    engine = open_db_from_args(args)
    try:
        catch_up(store, engine)
        plot_run(engine, run_id, path)
    except NotFound as exc:
        raise CommandError(str(exc)) from None
    finally:
        store.close()
        engine.dispose()
    print(f"plot of run {run_id}: {path}", file=sys.stderr)
    return path


def plot_run(engine: Engine, run_id: str, path: Path) -> Path:
    from ops.serve.curves import run_curves

    return draw(run_curves(engine, run_id), path)


def _series(epochs: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pairs = [(row["epoch"], row[key]) for row in epochs if row[key] is not None]
    return [epoch for epoch, _ in pairs], [value for _, value in pairs]


def draw(curves: RunCurves, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    from ops.serve.curves import palette

    colours = palette()
    pyplot.rcParams["svg.fonttype"] = "none"  # SVG text stays text: searchable, selectable, smaller
    figure, axes = pyplot.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    for axis, (title, training, validation) in zip(axes, PANELS, strict=True):
        axis.plot(
            *_series(curves.epochs, training), color=colours["series"]["training"], label=f"train {title}"
        )
        axis.plot(
            *_series(curves.epochs, validation), color=colours["series"]["validation"], label=f"val {title}"
        )
        if curves.voided:
            axis.plot(
                *_series(curves.voided, validation),
                linestyle="none",
                marker=".",
                color=colours["series"]["voided"],
                label="voided by rollback",
            )
        if curves.baseline:
            axis.plot(
                *_series(curves.baseline, validation),
                linestyle="--",
                color=colours["series"]["baseline"],
                label=f"no growth ({curves.baseline_id})",
            )
        drawn: set[str] = set()
        stacked: dict[int, int] = {}  # markers at one epoch (a cull and the next graft) stack their heads
        for marker in curves.markers:
            epoch, kind = marker["epoch"], marker["kind"]
            if epoch is None:
                continue
            colour = colours["markers"][kind]
            axis.axvline(epoch, color=colour, linestyle=":", linewidth=1.2)
            height = 0.97 - 0.045 * stacked.get(epoch, 0)
            stacked[epoch] = stacked.get(epoch, 0) + 1
            axis.plot(
                [epoch],
                [height],
                marker="v",
                color=colour,
                linestyle="none",
                transform=axis.get_xaxis_transform(),
                label=kind if kind not in drawn else None,
            )
            drawn.add(kind)
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    run = curves.run
    figure.suptitle(f"run {run['run_id']} ({run['status']}): {run.get('host_model')} on {run.get('dataset')}")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format=path.suffix.lower().lstrip("."), dpi=110)
    pyplot.close(figure)
    return path

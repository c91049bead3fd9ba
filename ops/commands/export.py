"""`esper export tensorboard RUN --logdir DIR`: a run as TensorBoard event files, for people who live there.

Per standing epoch (what the run is after its rollbacks) and at the epoch's own wall time: losses,
accuracies, parameters, seeds by stage and the end-of-epoch hook's time, as scalars; each graft, cull,
fossilization and rollback as a text event at its epoch. Written through torch.utils.tensorboard's
SummaryWriter into DIR/RUN, replacing the event files of an earlier export of the run there; the read
models are brought up to the log's head first.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from ops.common import add_command, print_json
from ops.dbopts import add_db_option, open_db_from_args
from ops.errors import CommandError
from ops.storeopts import add_store_option, open_store_from_args

FORMATS = ("tensorboard",)
EPOCH_SCALARS = {
    "loss/train": "training_loss",
    "loss/validation": "validation_loss",
    "accuracy/train": "training_accuracy",
    "accuracy/validation": "validation_accuracy",
    "accuracy/test": "test_accuracy",
    "parameters": "parameters",
    "time/epoch_ms": "epoch_wall_ms",
}
EVENT_FILES = "events.out.tfevents.*"
HOOK_TAG = "time/hook_ms"
STAGE_TAG = "seeds/{stage}"
MARKER_TAG = "events/{kind}"


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "export",
        handle,
        "export a run for other tools: TensorBoard event files",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("format", choices=FORMATS, help="what to write")
    parser.add_argument("run", metavar="RUN", help="the run's id")
    parser.add_argument(
        "--logdir", type=Path, required=True, help="TensorBoard's log directory; the run gets RUN/ in it"
    )
    add_db_option(parser)
    add_store_option(parser)


def _marker_text(marker: dict[str, Any]) -> str:
    if marker["kind"] == "rollback":
        return f"rolled back to epoch {marker['epoch']} ({marker.get('mode') or 'mode unknown'})"
    text = f"{marker['kind']} at slot {marker['slot']}: {marker['blueprint_id']}"
    return f"{text} ({marker['reason']})" if marker.get("reason") else text


def export_tensorboard(run: dict[str, Any], epochs: list[dict[str, Any]], logdir: Path) -> dict[str, int]:
    """Write the run's standing epochs and markers into logdir/RUN; count what was written."""
    from torch.utils.tensorboard import SummaryWriter

    from projections.projectors import STAGES

    counts = {"scalars": 0, "texts": 0}
    directory = logdir / run["run_id"]
    for earlier in directory.glob(EVENT_FILES):
        earlier.unlink()
    writer = SummaryWriter(log_dir=str(directory))
    try:
        for epoch in epochs:
            step, walltime = epoch["epoch"], (epoch["occurred_at_ns"] or 0) / 1e9 or None
            values = {tag: epoch[column] for tag, column in EPOCH_SCALARS.items()}
            values[HOOK_TAG] = epoch["hook_ms"]
            stages = Counter(seed["stage"] for seed in epoch["seeds"])
            values.update({STAGE_TAG.format(stage=stage.lower()): stages[stage] for stage in STAGES.values()})
            for tag, value in values.items():
                if value is not None:
                    writer.add_scalar(tag, value, global_step=step, walltime=walltime)
                    counts["scalars"] += 1
        for marker in run["markers"]:
            if marker["superseded"] or marker["epoch"] is None:
                continue
            writer.add_text(MARKER_TAG.format(kind=marker["kind"]), _marker_text(marker), marker["epoch"])
            counts["texts"] += 1
    finally:
        writer.close()
    return counts


def standing_epochs(engine: Any, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run (with its markers) and its standing epochs, each with its packet's seeds and hook time."""
    from ops.serve import queries
    from projections.audit import audit_run

    detail = queries.run(engine, run_id)
    hooks = {e["position"]: e["hook_ms"] for e in detail["epochs"]}
    epochs = [
        {**epoch, "hook_ms": hooks.get(epoch["position"])}
        for epoch in audit_run(engine, run_id)["epochs"]
        if not epoch["superseded"]
    ]
    return {**detail["run"], "markers": detail["markers"]}, epochs


def handle(args: argparse.Namespace) -> int:
    # imported here, as the read models are: `esper export --help` loads no SQLAlchemy
    from projections import catch_up
    from projections.audit import NotFound

    store = open_store_from_args(args, read_only=True)
    engine = open_db_from_args(args)
    try:
        catch_up(store, engine)
        run, epochs = standing_epochs(engine, args.run)
        counts = export_tensorboard(run, epochs, Path(args.logdir))
    except NotFound as exc:
        raise CommandError(str(exc)) from None
    finally:
        store.close()
        engine.dispose()
    directory = Path(args.logdir) / args.run
    if args.json:
        print_json({"run_id": args.run, "logdir": str(directory), "epochs": len(epochs), **counts})
    else:
        print(
            f"run {args.run}: {len(epochs)} epochs, {counts['scalars']} scalars and {counts['texts']} "
            f"text events in {directory}\nview: tensorboard --logdir {args.logdir}"
        )
    return 0

"""`esper blueprints list|show ID|approve ID|compile [ID ...]`: Karn's catalogue, Tezzeret's jobs, Urza's
artifacts (the compile handler lives in blueprint_compile).

Karn's templates, Tezzeret and Urza import torch, so the handlers import them, not this module: `esper
--help` lists this command without importing torch.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from domains.tezzeret.jobs import DEVICES, SELECTIONS, JobState
from leyline import pb
from leyline.datadir import DataDir
from ops.blueprint_compile import handle_compile, job_json, named_blueprints
from ops.common import add_command, add_data_dir_option, print_json
from ops.errors import CommandError, UsageError
from ops.storeopts import add_store_option, open_store_from_args, store_location

if TYPE_CHECKING:
    from domains.karn.blueprint import Blueprint

TIER_NAMES: dict[int, str] = {
    pb.BLUEPRINT_TIER_SAFE: "safe",
    pb.BLUEPRINT_TIER_EXPERIMENTAL: "experimental",
    pb.BLUEPRINT_TIER_ADVERSARIAL: "adversarial",
}


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "blueprints",
        handle_missing_action,
        "the blueprint catalogue, compile jobs and artifacts",
        description="Karn's 50 blueprints, Tezzeret's compile jobs and Urza's artifacts.\n\n"
        "  esper blueprints list                 the catalogue with each blueprint's compile status\n"
        "  esper blueprints show BP009           one blueprint: metadata, parameter ranges, jobs, artifacts\n"
        "  esper blueprints approve BP030        approve an experimental blueprint for live grafts (an\n"
        "                                        event in the log; runs started after it may choose it)\n"
        "  esper blueprints compile [ID ...]     compile (all by default) into <data-dir>/artifacts\n"
        "      --strategy auto|export|aot_inductor   (default: $ESPER_COMPILE_STRATEGY, else auto:\n"
        "                                          aot_inductor on cuda, export on cpu)\n"
        "      --device cpu|cuda                     (default: cuda where there is one)",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    listing = _action(actions, "list", handle_list, "the catalogue with compile status")
    listing.add_argument("--tier", choices=sorted(TIER_NAMES.values()), help="only this tier")

    show = _action(actions, "show", handle_show, "one blueprint's metadata, ranges, jobs and artifacts")
    show.add_argument("blueprint_id", metavar="ID", help="e.g. BP009")

    approve = _action(
        actions,
        "approve",
        handle_approve,
        "approve an experimental blueprint for live grafts, recorded as BlueprintApproved in the log",
    )
    approve.description = (
        "Approve an experimental blueprint (BP031-BP042) for live grafts: a BlueprintApproved event on the\n"
        "blueprint's stream. Runs started afterwards may choose it (a resumed run keeps the catalogue it\n"
        "started with); the approval accepts its risk at calm risk levels (above them, and in\n"
        "conservative mode, the heuristic's lower cap still applies).\n"
        "Exit 1, one line on stderr, for an id that names no blueprint, an adversarial\n"
        "(quarantine-only) blueprint, which can never be approved, a safe one, which needs no approval, or\n"
        "one already approved."
    )
    approve.add_argument("blueprint_id", metavar="ID", help="e.g. BP031")
    approve.add_argument("--reason", default="", help="why, recorded in the event")

    compile_parser = _action(
        actions,
        "compile",
        handle_compile,
        "compile blueprints into artifacts (jobs in the log; unfinished ones resume first)",
    )
    compile_parser.add_argument("blueprint_ids", metavar="ID", nargs="*", help="blueprints (default: all 50)")
    compile_parser.add_argument(
        "--conv-shape",
        metavar="C,H,W",
        help="feature-map slot shape without the batch (default: Tezzeret's, the digits host's slots)",
    )
    compile_parser.add_argument(
        "--seq-shape", metavar="T,D", help="sequence slot shape without the batch (default: Tezzeret's)"
    )
    compile_parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a template parameter (repeatable); checked against each blueprint's ranges",
    )
    compile_parser.add_argument(
        "--strategy",
        choices=SELECTIONS,
        help="export: torch.export programs; aot_inductor: those plus an AOTInductor package for no-grad "
        "eval on --device; auto: aot_inductor on cuda, export on cpu (default: $ESPER_COMPILE_STRATEGY "
        "or auto)",
    )
    compile_parser.add_argument(
        "--device",
        choices=DEVICES,
        default=None,
        help="the device the seeds will run on (default: cuda if this process has one, else cpu)",
    )
    compile_parser.add_argument("--max-attempts", type=int, help="attempts per job (default: Tezzeret's)")
    compile_parser.add_argument(
        "--inject-failures",
        type=int,
        default=0,
        metavar="N",
        help="fault drill: make the first N attempts of every job fail",
    )


def handle_missing_action(args: argparse.Namespace) -> int:
    raise UsageError(
        "choose an action: list, show ID, approve ID or compile [ID ...] (see esper blueprints --help)"
    )


def _action(actions: Any, name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = actions.add_parser(name, help=help_text, description=help_text)
    # The same options as the parent command, accepted after the action too; SUPPRESS keeps the parent's.
    add_data_dir_option(parser, default=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine output")
    add_store_option(parser)
    parser.set_defaults(handler=handler)
    return parser


def _from_log(args: argparse.Namespace) -> tuple[dict[str, list[JobState]], frozenset[str]]:
    """The compile jobs in the log, by blueprint, and the approved blueprints; none if there is no log yet
    (the catalogue needs none)."""
    from domains.karn.approval import approved_in
    from domains.tezzeret.service import read_jobs

    grouped: dict[str, list[JobState]] = {}
    location = store_location(args)
    if isinstance(location, Path) and not location.exists():
        return grouped, frozenset()
    store = open_store_from_args(args, read_only=True)
    try:
        states = read_jobs(store).values()
        approved = approved_in(store)
    finally:
        store.close()
    for state in states:
        if state.spec is not None:
            grouped.setdefault(state.spec.blueprint_id, []).append(state)
    return grouped, approved


def _status(states: list[JobState]) -> str:
    if not states:
        return "not compiled"
    counts = Counter(state.status.value for state in states)
    return ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))


def _descriptor_json(blueprint: Blueprint, approved: frozenset[str]) -> dict[str, Any]:
    from domains.karn.blueprint import SLOT_KIND_NAMES

    return {
        "blueprint_id": blueprint.blueprint_id,
        "name": blueprint.name,
        "tier": TIER_NAMES[blueprint.tier],
        "risk": blueprint.risk,
        "curriculum_stage": blueprint.stage,
        "slot_kinds": [SLOT_KIND_NAMES[kind] for kind in blueprint.kinds],
        "requires_approval": blueprint.requires_approval,
        "approved": blueprint.blueprint_id in approved
        or not (blueprint.requires_approval or blueprint.quarantine_only),
        "quarantine_only": blueprint.quarantine_only,
        "conservative_pool": blueprint.conservative,
        "description": blueprint.descriptor().description,
        "parameters": {
            name: {"min": r.low, "max": r.high, "default": r.default, "integer": r.integer}
            for name, r in blueprint.parameters.items()
        },
    }


def handle_list(args: argparse.Namespace) -> int:
    from domains.karn import catalog

    jobs, approved = _from_log(args)
    rows = []
    for blueprint in catalog.CATALOGUE:
        if args.tier and TIER_NAMES[blueprint.tier] != args.tier:
            continue
        row = _descriptor_json(blueprint, approved)
        row["compile_status"] = _status(jobs.get(blueprint.blueprint_id, []))
        rows.append(row)
    if args.json:
        print_json(rows)
        return 0
    print(
        f"{'id':6} {'name':24} {'tier':13} {'risk':>5} {'stage':>5}  {'slots':17} {'pool':4}  "
        f"{'live':4}  compile status"
    )
    for row in rows:
        pool = "yes" if row["conservative_pool"] else ""
        live = "yes" if row["approved"] else ""
        print(
            f"{row['blueprint_id']:6} {row['name']:24} {row['tier']:13} {row['risk']:5.2f} "
            f"{row['curriculum_stage']:5d}  {','.join(row['slot_kinds']):17} {pool:4}  {live:4}  "
            f"{row['compile_status']}"
        )
    return 0


def handle_show(args: argparse.Namespace) -> int:
    from domains.urza.layout import artifact_path

    blueprint = named_blueprints([args.blueprint_id])[0]
    jobs, approved = _from_log(args)
    states = jobs.get(blueprint.blueprint_id, [])
    library_root = DataDir.of(args.data_dir).artifacts
    document = _descriptor_json(blueprint, approved)
    document["jobs"] = [job_json(state) for state in states]
    for job in document["jobs"]:
        digest = job["artifact_hash"]
        job["artifact_path"] = str(artifact_path(library_root, digest)) if digest else ""
    if args.json:
        print_json(document)
        return 0
    print(f"{blueprint.blueprint_id} {blueprint.name}: {document['description']}")
    print(
        f"  tier {document['tier']}, risk {blueprint.risk:.2f}, curriculum stage {blueprint.stage}, "
        f"slots {', '.join(document['slot_kinds'])}"
    )
    flags = [
        name
        for name, on in (
            ("needs approval for live grafts", blueprint.requires_approval and not document["approved"]),
            ("approved for live grafts", blueprint.requires_approval and document["approved"]),
            ("quarantine-only (drills and offline training)", blueprint.quarantine_only),
            ("in the conservative pool", blueprint.conservative),
        )
        if on
    ]
    if flags:
        print(f"  {'; '.join(flags)}")
    print("  parameters:" if blueprint.parameters else "  parameters: none")
    for name, r in blueprint.parameters.items():
        kind = "integer" if r.integer else "real"
        print(f"    {name:12} {kind:7} [{r.low:g}, {r.high:g}] default {r.default:g}")
    print(f"  compile jobs: {len(states)}" if states else "  compile jobs: none")
    for job in document["jobs"]:
        shape = "x".join(map(str, job["slot_shape"]))
        line = f"    {job['job_id']} {job['slot_kind']:8} {shape:8} {job['strategy']:16} {job['status']:10} "
        line += f"attempts {job['attempts']}"
        print(line + (f"  {job['artifact_path']}" if job["artifact_path"] else f"  {job['error']}"))
    return 0


def handle_approve(args: argparse.Namespace) -> int:
    import getpass

    from domains.karn import registration
    from domains.karn.approval import ApprovalRefused, approve

    store = open_store_from_args(args, create=True)
    try:
        registration.register_catalogue(store)
        position = approve(store, args.blueprint_id.upper(), getpass.getuser(), args.reason)
    except ApprovalRefused as exc:
        raise CommandError(str(exc)) from None
    finally:
        store.close()
    blueprint_id = args.blueprint_id.upper()
    if args.json:
        print_json({"blueprint_id": blueprint_id, "approved": True, "position": position})
    else:
        print(f"approved {blueprint_id} for live grafts (log position {position})")
    return 0

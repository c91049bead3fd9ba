"""`esper blueprints compile [ID ...]`: Tezzeret compiles the catalogue's blueprints into Urza's library.

Karn's templates, Tezzeret and Urza import torch, so the handler imports them: `esper --help` does not.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from domains.tezzeret.jobs import SELECTIONS, JobState, Status, choose_strategy
from leyline.datadir import DataDir
from ops.common import print_json
from ops.errors import CommandError, UsageError
from ops.storeopts import open_store_from_args

if TYPE_CHECKING:
    from domains.karn.blueprint import Blueprint


def job_json(state: JobState) -> dict[str, Any]:
    from domains.karn.blueprint import SLOT_KIND_NAMES

    spec = state.spec
    return {
        "job_id": state.job_id,
        "blueprint_id": spec.blueprint_id if spec else "",
        "slot_kind": SLOT_KIND_NAMES.get(spec.slot_kind, "") if spec else "",
        "slot_shape": list(spec.slot_shape) if spec else [],
        "parameters": spec.parameter_map() if spec else {},
        "strategy": spec.strategy if spec else "",
        "status": state.status.value,
        "attempts": state.attempts,
        "artifact_hash": state.artifact_hash,
        "error": state.last_error if state.status is not Status.SUCCEEDED else "",
    }


def named_blueprints(ids: list[str]) -> list[Blueprint]:
    """The blueprints of ids (any case); an id that names none is a detected problem (exit 1), as in
    `esper audit blueprint`."""
    from domains.karn import catalog
    from domains.karn.blueprint import UnknownBlueprint

    try:
        return [catalog.get(blueprint_id.upper()) for blueprint_id in ids]
    except UnknownBlueprint as exc:
        raise CommandError(str(exc)) from None


def _shape(text: str | None, default: tuple[int, ...], option: str) -> tuple[int, ...]:
    if text is None:
        return default
    size = len(default)
    try:
        dims = tuple(int(part) for part in text.split(","))
    except ValueError:
        dims = ()
    if len(dims) != size or min(dims) < 1:
        raise UsageError(f"{option} {text!r} must be {size} positive integers separated by commas")
    return dims


def _parameters(pairs: list[str]) -> dict[str, float]:
    parameters = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            parameters[name.strip()] = float(value)
        except ValueError:
            raise UsageError(f"--param {pair!r} must be NAME=NUMBER, e.g. --param hidden=8") from None
    return parameters


def handle_compile(args: argparse.Namespace) -> int:
    from domains.karn import catalog, registration
    from domains.karn.blueprint import KarnError
    from domains.tezzeret import service
    from domains.tezzeret.source import STRATEGY_VARIABLE, default_device
    from domains.urza.library import ArtifactLibrary

    conv_shape = _shape(args.conv_shape, service.DEFAULT_CONV_SHAPE, "--conv-shape")
    seq_shape = _shape(args.seq_shape, service.DEFAULT_SEQUENCE_SHAPE, "--seq-shape")
    max_attempts = service.DEFAULT_MAX_ATTEMPTS if args.max_attempts is None else args.max_attempts
    if max_attempts < 1:
        raise UsageError("--max-attempts must be at least 1")
    selection = args.strategy or os.environ.get(STRATEGY_VARIABLE, "auto")
    if selection not in SELECTIONS:
        raise UsageError(f"{STRATEGY_VARIABLE}={selection!r} is not one of: {', '.join(SELECTIONS)}")
    strategy = choose_strategy(selection, args.device or default_device())
    blueprints = named_blueprints(args.blueprint_ids or list(catalog.BY_ID))
    parameters = _parameters(args.param)
    try:
        unused = set(parameters) - {name for blueprint in blueprints for name in blueprint.parameters}
        if unused:
            raise UsageError(f"no blueprint selected takes parameter(s) {', '.join(sorted(unused))}")
        # Each --param applies to the selected blueprints that declare it.
        specs = [
            spec
            for blueprint in blueprints
            for spec in service.catalogue_specs(
                conv_shape,
                seq_shape,
                [blueprint.blueprint_id],
                {name: value for name, value in parameters.items() if name in blueprint.parameters},
                strategy,
            )
        ]
    except KarnError as exc:
        raise UsageError(str(exc)) from None
    store = open_store_from_args(args, create=True)
    try:
        library = ArtifactLibrary(DataDir.of(args.data_dir).artifacts, store)
        hook = service.FailFirst(args.inject_failures) if args.inject_failures else None
        tezzeret = service.Tezzeret(store, library, max_attempts=max_attempts, failure_hook=hook)
        registered = registration.register_catalogue(store)
        resumed = tezzeret.resume()
        bar = tqdm(total=len(specs), desc="compiling", unit="job", disable=args.json, file=sys.stderr)

        def done(state: JobState) -> None:
            bar.set_postfix_str(state.spec.blueprint_id if state.spec else "")
            bar.update(1)

        results = tezzeret.compile_many(specs, on_done=done)
        bar.close()
    finally:
        store.close()
    failed = [state for state in results if state.status is Status.FAILED]
    if args.json:
        print_json(
            {
                "registered": registered,
                "resumed": [job_json(state) for state in resumed],
                "jobs": [job_json(state) for state in results],
            }
        )
    else:
        if registered:
            print(f"registered {registered} blueprint(s) in the log")
        if resumed:
            print(f"resumed {len(resumed)} unfinished job(s) from the log")
        for state in results:
            job = job_json(state)
            shape = "x".join(map(str, job["slot_shape"]))
            outcome = state.artifact_hash[:16] if state.status is Status.SUCCEEDED else job["error"]
            print(
                f"{job['blueprint_id']} {job['slot_kind']:8} {shape:8} {job['strategy']:16} "
                f"{job['status']:10} {outcome}"
            )
        print(f"{len(results) - len(failed)} of {len(results)} job(s) succeeded")
    if failed:
        raise CommandError(
            f"{len(failed)} compile job(s) failed; see `esper blueprints show ID` for their errors"
        )
    return 0

"""`esper bench NAME`: run a benchmark and print its figures beside their baselines."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ops import bench
from ops.common import add_command, print_json
from ops.errors import UsageError

BACKENDS = ("file", "postgres")
MULTI_BACKEND = ("eventstore",)
SEEDED = ("growth",)


def register(subparsers: Any) -> None:
    names = ", ".join(bench.available())
    parser = add_command(
        subparsers,
        "bench",
        handle,
        "run a benchmark; figures and the baseline measured beside them",
        description=f"Run one benchmark. Available: {names}.\n"
        "Each result names the baseline it is compared with, measured in the same run.",
    )
    parser.add_argument("name", metavar="NAME", help=f"one of: {names}")
    parser.add_argument("--quick", action="store_true", help="fewer iterations, for a smoke check")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="file",
        help="the event store to drive (eventstore only): the file log, or PostgreSQL with 1/2/4 writer "
        f"processes (${bench.POSTGRES_URL_ENV}, default {bench.DEFAULT_POSTGRES_URL})",
    )
    parser.add_argument(
        "--tasks",
        type=lambda text: tuple(t.strip() for t in text.split(",") if t.strip()),
        default=(),
        metavar="T[,T...]",
        help="growth only: the tasks to run (digits, fashion_mnist, austen; default all)",
    )
    parser.add_argument(
        "--seeds", type=int, default=None, metavar="N", help="growth only: seeds per arm (default 5)"
    )


def handle(args: argparse.Namespace) -> int:
    names = bench.available()
    if args.name not in names:
        raise UsageError(f"unknown benchmark {args.name!r}; choose one of: {', '.join(names)}")
    if args.backend != "file" and args.name not in MULTI_BACKEND:
        raise UsageError(f"--backend applies to: {', '.join(MULTI_BACKEND)}, not {args.name!r}")
    if (args.tasks or args.seeds is not None) and args.name not in SEEDED:
        raise UsageError(f"--tasks and --seeds apply to: {', '.join(SEEDED)}, not {args.name!r}")
    if args.seeds is not None and args.seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {args.seeds}")
    module = bench.load(args.name)

    def progress(message: str) -> None:
        # on stderr even with --json (stdout carries the document): a long benchmark is never silent
        print(f"  … {message}", file=sys.stderr, flush=True)

    options = bench.BenchOptions(
        quick=args.quick,
        data_dir=str(args.data_dir),
        progress=progress,
        backend=args.backend,
        tasks=args.tasks,
        seeds=args.seeds,
    )
    results = module.run(options)
    document = {
        "bench": args.name,
        "machine": bench.machine(),
        "results": [result.to_json() for result in results],
    }
    if args.json:
        print_json(document)
    else:
        print_table(args.name, document)
    missed = [result.name for result in results if result.met is False]
    if missed:
        print(f"targets missed: {', '.join(missed)}", file=sys.stderr)
    return 0


def print_table(name: str, document: dict[str, Any]) -> None:
    print(f"bench {name} on {document['machine']}")
    header = f"{'result':34} {'value':>14} {'unit':10} {'baseline':>14} {'ratio':>8}  target"
    print(header)
    print("-" * len(header))
    for row in document["results"]:
        baseline = f"{row['baseline']:.6g}" if "baseline" in row else ""
        ratio = f"{row['ratio']:.2f}" if "ratio" in row else ""
        target = row.get("target", "")
        if "met" in row:
            target = f"{target} [{'met' if row['met'] else 'MISSED'}]"
        print(f"{row['name']:34} {row['value']:>14.6g} {row['unit']:10} {baseline:>14} {ratio:>8}  {target}")
        if "baseline_name" in row:
            print(f"{'':34} {'':>14} {'':10} {row['baseline_name']:>14}")
        if "note" in row:
            print(f"{'':34} {row['note']}")

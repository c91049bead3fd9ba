"""`esper policy validate VERSION`: Simic's validation gate, and the publication of a release.

1. Held-out runs (domains/simic/tasks.py: every held-out task × seed, ≥ 5 seeds) for three arms on the
   same tasks and seeds: the candidate (a training candidate, PolicyTrained and never published, run by
   content hash as `gnn:trained:<sha256>`: domains/simic/candidates.py; or a published version
   `gnn:VERSION`), the active policy (`gnn:ACTIVE`) and the heuristic.
   Run ids are `heldout-greedy-<arm>-<task hash>-s<seed>`, so an arm already run (the heuristic, an active
   policy validated before) is read from the log, not run again (a log's older `heldout-<arm>-…` runs
   sampled their actions, so they are not reused); plus the two chaos runs of the candidate
   (ops/policy_episodes.py).
2. The gate's decision (domains/simic/gate.py) from those runs' events (domains/simic/outcomes.py), with
   the off-policy estimates of the candidate (SNIPS and doubly robust, with bootstrap intervals and the
   ESS) from the logged decisions of the training's episodes (runs `NAME-r*`; domains/simic/ope.py)
   reported beside it, never deciding.
3. PolicyValidated or PolicyRejected on `policy-<candidate>` (checks: the figures, reason: why); a passed
   candidate is published as the release `NAME-vK` (PolicyPublished, parent: the candidate, the same
   content hash), which is what `esper policy activate` hands a live run. This is the only publication
   of anything a training made.

The active policy is `--against`, else the latest release (a version whose parent passed the gate), else
the first version published in the log.
"""

from __future__ import annotations

import argparse
import hashlib
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from domains.simic.gate import ACTIVE, CANDIDATE, HEURISTIC, GateDecision, HeldOutRun
from domains.simic.ope import Estimate
from domains.simic.outcomes import Wanted
from domains.simic.reward import RewardConfig
from domains.simic.tasks import DEFAULT_TASKS, Episode, TaskDistribution, TaskError, parse_tasks
from eventstore import EventStore
from leyline.datadir import DataDir
from ops.errors import CommandError, UsageError
from ops.policy_episodes import CHAOS_ADVERSARIAL, CHAOS_TIMEOUT, Job, run_jobs

if TYPE_CHECKING:  # torch-geometric is imported where a network is used, not by `esper --help`
    from domains.tamiyo.gnn.network import PolicyNetwork

HEURISTIC_CONTROLLER = "tamiyo"
RELEASE_INFIX = "-v"
EXIT_REJECTED = 1  # a detected problem: the gate rejected the candidate (PolicyRejected is in the log)


def load_tasks(path: Path | None) -> TaskDistribution:
    """The task distribution of a TOML file (the bundled default without one); UsageError if malformed."""
    source = path or DEFAULT_TASKS
    try:
        return parse_tasks(tomllib.loads(source.read_text(encoding="utf-8")))
    except OSError as exc:
        raise UsageError(f"cannot read task file {source}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"task file {source} is not valid TOML: {exc}") from None
    except TaskError as exc:
        raise UsageError(f"task file {source}: {exc}") from None


def task_hash(episode: Episode) -> str:
    return hashlib.sha256(repr((episode.task.key, episode.epochs)).encode()).hexdigest()[:8]


def add_task_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tasks", type=Path, default=None, metavar="FILE", help="task distribution (TOML; default: bundled)"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")


def register_validate(actions: Any, action: Any) -> None:
    validate = action(actions, "validate", handle_validate, "validation gate on held-out tasks; publish")
    validate.add_argument("version", metavar="VERSION", help="the candidate")
    validate.add_argument("--against", default="", metavar="VERSION", help="the active policy")
    validate.add_argument("--name", default="simic", help="training name: releases NAME-vK (default simic)")
    add_task_options(validate)


@dataclass(frozen=True)
class Validation:
    decision: GateDecision
    estimate: Estimate
    runs: list[HeldOutRun]
    active: str
    release: str  # the published release, "" when rejected

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.decision.version,
            "active": self.active,
            "passed": self.decision.passed,
            "reasons": list(self.decision.reasons),
            "release": self.release,
            "checks": self.decision.checks(),
            "chaos": [{"name": c.name, "safe": c.safe, "detail": c.detail} for c in self.decision.chaos],
            "off_policy_estimate": self.estimate.to_dict(),
        }


def releases(versions: Iterable[str], name: str) -> list[str]:
    """The releases `NAME-vK` among published versions, in publication order."""
    prefix = f"{name}{RELEASE_INFIX}"
    return [v for v in versions if v.startswith(prefix) and v[len(prefix) :].isdigit()]


def active_version(versions: Sequence[str], name: str) -> str:
    found = releases(versions, name)
    return found[-1] if found else versions[0]


def held_out_jobs(
    tasks: TaskDistribution, arms: dict[str, tuple[str, str]]
) -> tuple[list[Job], dict[str, Wanted]]:
    """The held-out runs of each arm (arm → (controller, tag of its run ids)), by run id; a learned
    policy takes its most probable action in them (greedy; the heuristic is deterministic already)."""
    jobs: list[Job] = []
    wanted: dict[str, Wanted] = {}
    for arm, (controller, tag) in arms.items():
        for episode in tasks.held_out.all_episodes():
            run_id = f"heldout-greedy-{tag}-{task_hash(episode)}-s{episode.seed}"
            jobs.append(Job(run_id, episode.run_config(controller), greedy=True, failure_is_outcome=True))
            wanted[run_id] = Wanted(arm, episode.task.label, episode.seed)
    return jobs, wanted


def chaos_jobs(tasks: TaskDistribution, candidate: str, controller: str) -> dict[str, Job]:
    episode = tasks.held_out.all_episodes(1)[0]
    return {
        chaos: Job(f"chaos-{candidate}-{chaos}", episode.run_config(controller), greedy=True, chaos=chaos)
        for chaos in (CHAOS_ADVERSARIAL, CHAOS_TIMEOUT)
    }


def off_policy_estimate(
    store: EventStore, network: PolicyNetwork, name: str, reward: RewardConfig
) -> Estimate:
    """SNIPS and doubly robust estimates of `network` from the logged decisions of the training's episodes
    (runs NAME-r*)."""
    from domains.simic.experience import episodes
    from domains.simic.gnn import logged_episodes
    from domains.simic.ope import estimate

    found, descriptors = episodes(store, reward)
    behaviour = [e for e in found if e.run_id.startswith(f"{name}-r")]
    return estimate(logged_episodes(network, behaviour, descriptors))


def validate(
    store: EventStore,
    data_dir: DataDir,
    candidate: str,
    against: str,
    tasks: TaskDistribution,
    *,
    name: str,
    workers: int,
    quiet: bool,
) -> Validation:
    """Run the gate for `candidate` and record its outcome (and the release, when it passes)."""
    from domains.simic.candidates import controller_of, trained_versions
    from domains.simic.candidates import resolve as resolve_candidate
    from domains.simic.gate import GateConfig, adversarial_check, decide, event_type, payload, timeout_check
    from domains.simic.outcomes import READ, held_out_runs
    from domains.tamiyo.policy_store import (
        CATEGORY,
        PolicyError,
        PolicyLibrary,
        publish,
        published,
        published_versions,
        update_of,
        verify,
    )
    from leyline import new_envelope, stream_name
    from leyline.signing import Signer
    from ops.compose import keyring_for

    versions = published_versions(store)
    trained = trained_versions(store)
    if candidate not in versions and candidate not in trained:
        raise CommandError(
            f"unknown policy version {candidate!r}: neither a training candidate (PolicyTrained, NAME-rR) "
            "nor published (`esper policy list`)"
        )
    if against and against not in versions:
        raise CommandError(f"unknown policy version {against!r}; `esper policy list` shows the published")
    active = against or active_version(list(versions), name)
    if active == candidate:
        raise CommandError(f"{candidate} is the active policy; name another with --against")
    keyring, library = keyring_for(data_dir), PolicyLibrary(data_dir)
    controller = controller_of(trained[candidate]) if candidate in trained else f"gnn:{candidate}"
    try:
        network = (
            resolve_candidate(store, library, keyring, trained[candidate].content_hash)
            if candidate in trained
            else verify(published(store, candidate), keyring, library)
        ).network
    except PolicyError as exc:
        raise CommandError(str(exc)) from None
    arms = {
        CANDIDATE: (controller, candidate),
        ACTIVE: (f"gnn:{active}", active),
        HEURISTIC: (HEURISTIC_CONTROLLER, "heuristic"),
    }
    jobs, wanted = held_out_jobs(tasks, arms)
    chaos = chaos_jobs(tasks, candidate, controller)
    unique = {job.run_id: job for job in [*jobs, *chaos.values()]}
    run_jobs(data_dir.root, list(unique.values()), workers, f"validate {candidate}", quiet)
    chaos_wanted = {job.run_id: Wanted(CANDIDATE, check, 0) for check, job in chaos.items()}
    found = held_out_runs(store.read_all(event_filter=READ), {**wanted, **chaos_wanted}, RewardConfig())
    runs, chaos_runs = found[: len(wanted)], dict(zip(chaos, found[len(wanted) :], strict=True))
    checks = [adversarial_check(chaos_runs[CHAOS_ADVERSARIAL]), timeout_check(chaos_runs[CHAOS_TIMEOUT])]
    decision = decide(candidate, runs, checks, GateConfig())
    ope = off_policy_estimate(store, network, name, RewardConfig())
    extra = {f"ope_{k}": v for k, v in ope.to_dict().items()}
    store.append(
        [
            new_envelope(
                event_type(decision),
                stream_name(CATEGORY, candidate),
                payload(decision, extra),
                source="simic",
            )
        ]
    )
    release = ""
    if decision.passed:
        existing = [v for v in releases(versions, name) if update_of(versions[v]).parent_version == candidate]
        release = existing[0] if existing else f"{name}{RELEASE_INFIX}{len(releases(versions, name)) + 1}"
        if not existing:
            publish(store, library, Signer(keyring), network, version=release, parent_version=candidate)
    return Validation(decision, ope, runs, active, release)


def print_validation(result: Validation) -> None:
    decision = result.decision
    print(f"policy {decision.version} against {result.active} and the heuristic on held-out tasks:")
    for arm, summary in decision.arms.items():
        print(
            f"  {arm:<9} reward {summary.reward:.4f} ± {summary.reward_std:.4f} over {summary.seeds} seed(s),"
            f" test accuracy {summary.test_accuracy:.4f}, {summary.parameters:.0f} parameters"
        )
    for check in decision.chaos:
        print(f"  chaos {check.name}: {'safe' if check.safe else 'UNSAFE'} ({check.detail})")
    ope = result.estimate
    print(
        f"  off-policy estimate ({ope.episodes} logged episode(s), ESS {ope.ess:.1f}, 90 % bootstrap):"
        f" SNIPS {ope.snips:.4f} [{ope.low:.4f}, {ope.high:.4f}],"
        f" doubly robust {ope.dr:.4f} [{ope.dr_low:.4f}, {ope.dr_high:.4f}];"
        f" behaviour {ope.behaviour_mean:.4f}"
    )
    if decision.passed:
        print(f"passed: published as {result.release}")
    else:
        print("rejected: " + "; ".join(decision.reasons))


def handle_validate(args: argparse.Namespace) -> int:
    from ops.common import print_json
    from ops.storeopts import open_store_from_args

    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    tasks = load_tasks(args.tasks)
    store = open_store_from_args(args, create=False)
    try:
        result = validate(
            store,
            DataDir(args.data_dir),
            args.version,
            args.against,
            tasks,
            name=args.name,
            workers=args.workers,
            quiet=args.json,
        )
    finally:
        store.close()
    if args.json:
        print_json(result.to_dict())
    else:
        print_validation(result)
    return 0 if result.decision.passed else EXIT_REJECTED

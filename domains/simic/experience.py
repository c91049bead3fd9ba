"""Experience rebuilt from the log alone, and the replay buffer.

`episodes(store)` reads one pass over the log and turns every completed run into an `Episode`:

- transitions: each DecisionMade that records an observation and a positive action probability (the
  learned policy's and the ε-heuristic's sampled decisions; the deterministic safety path records none and
  is not the policy's choice), in log order, with its factored action as indices into the decision's own
  slots and catalogue, and the behaviour log-probability log(action_probability);
- rewards (`reward.episode_rewards`): Φ from the validation accuracy each decision saw, the final
  validation accuracy and parameters from the last EpochCompleted, the host's parameters from the first;
  a cull is the CULLED SeedTransitioned whose command_id is a decision's;
- rollbacks: events inside a RollbackCompleted's superseded range are void. The first voided decision
  is kept as a one-step dead end carrying the rollback penalty (its future was undone); the rest of the
  voided range is dropped. Without a voided decision the penalty goes to the last decision before it;
- field reports (FieldReportIssued) are attached to the decision whose command they report on.

A run that ended in RunFailed (its guard's second loss explosion at the same epoch) is an episode too,
ending at its last epoch: its outcome is what the run had reached (validation accuracy, parameters), its
guard rollback penalised as every rollback; left out, the policy would never learn what led to it.
Test accuracy is never read. The blueprint descriptors for the graphs come from BlueprintRegistered.
`ReplayBuffer` keeps whole episodes, at most `max_transitions` (the newest episode is kept whole even when
it alone is larger) and none added more than `max_age` rounds ago.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from domains.simic.reward import (
    EpisodeOutcome,
    RewardComponents,
    RewardConfig,
    StepOutcome,
    episode_rewards,
    episode_summary,
)
from domains.tamiyo.gnn.masking import GERMINATE, NOOP, OPERATIONS
from eventstore import EventFilter, EventStore
from leyline import decode_payload, pb

READ = EventFilter(
    event_types=frozenset(
        {
            "BlueprintRegistered",
            "EpochCompleted",
            "DecisionMade",
            "SeedTransitioned",
            "FieldReportIssued",
            "RollbackCompleted",
            "RunCompleted",
            "RunFailed",
        }
    )
)


@dataclass(frozen=True)
class Transition:
    position: int  # of the DecisionMade
    decision: pb.DecisionMade
    action: tuple[int, int, int]  # operation, slot index (-1), catalogue index (-1)
    log_prob: float  # under the behaviour policy, as logged
    reward: RewardComponents
    field_reports: tuple[pb.FieldReport, ...] = ()


@dataclass(frozen=True)
class Episode:
    run_id: str
    transitions: tuple[Transition, ...]  # the main line, the last one terminal
    dead_ends: tuple[Transition, ...]  # one per rollback: terminal one-step episodes
    summary: dict[str, float]  # reward components summed (main line and dead ends)
    last_position: int

    def __len__(self) -> int:
        return len(self.transitions) + len(self.dead_ends)


def factored_indices(decision: pb.DecisionMade) -> tuple[int, int, int]:
    action = decision.factored_action
    operation = OPERATIONS.index(action.operation)
    slots = [s.slot for s in decision.observation.topology.slots]
    slot = slots.index(action.slot) if operation != NOOP else -1
    blueprint = (
        list(decision.observation.catalogue).index(action.blueprint_id) if operation == GERMINATE else -1
    )
    return operation, slot, blueprint


@dataclass
class _Run:
    epochs: list[tuple[int, pb.EpochCompleted]] = field(default_factory=list)
    decisions: list[tuple[int, pb.DecisionMade]] = field(default_factory=list)
    culled_commands: list[tuple[int, str]] = field(default_factory=list)
    reports: list[tuple[int, pb.FieldReport]] = field(default_factory=list)
    voided: list[tuple[int, int]] = field(default_factory=list)
    completed_at: int = 0


def _voided(position: int, ranges: Sequence[tuple[int, int]]) -> bool:
    return any(low <= position <= high for low, high in ranges)


def _read(events: Iterable[pb.EventEnvelope]) -> tuple[dict[str, _Run], list[pb.BlueprintDescriptor]]:
    runs: dict[str, _Run] = {}
    descriptors: dict[str, pb.BlueprintDescriptor] = {}
    for envelope in events:
        payload = decode_payload(envelope)
        position = envelope.global_position
        if isinstance(payload, pb.BlueprintRegistered):
            descriptors[payload.descriptor.blueprint_id] = payload.descriptor
            continue
        run = runs.setdefault(envelope.run_id, _Run())
        if isinstance(payload, pb.EpochCompleted):
            run.epochs.append((position, payload))
        elif isinstance(payload, pb.DecisionMade):
            run.decisions.append((position, payload))
        elif isinstance(payload, pb.SeedTransitioned) and payload.to_stage == pb.SEED_STAGE_CULLED:
            run.culled_commands.append((position, payload.command_id))
        elif isinstance(payload, pb.FieldReportIssued):
            run.reports.append((position, payload.report))
        elif isinstance(payload, pb.RollbackCompleted):
            run.voided.append((payload.superseded_from, payload.superseded_to))
        elif isinstance(payload, (pb.RunCompleted, pb.RunFailed)):
            run.completed_at = position
    return runs, list(descriptors.values())


def _usable(decision: pb.DecisionMade) -> bool:
    return decision.HasField("observation") and decision.action_probability > 0.0


def _episode(run_id: str, run: _Run, config: RewardConfig) -> Episode | None:
    kept = [(p, d) for p, d in run.decisions if not _voided(p, run.voided) and _usable(d)]
    epochs = [e for p, e in run.epochs if not _voided(p, run.voided)]
    if not run.completed_at or not kept or not epochs:
        return None
    culls = {c for p, c in run.culled_commands if c and not _voided(p, run.voided)}
    reports: dict[str, list[pb.FieldReport]] = {}
    for p, report in run.reports:
        if not _voided(p, run.voided):
            reports.setdefault(report.command_id, []).append(report)
    rolled_back: set[int] = set()  # main-line positions that carry a rollback penalty
    dead_positions: list[int] = []
    for low, high in run.voided:
        inside = [p for p, d in run.decisions if low <= p <= high and _usable(d)]
        if inside:
            dead_positions.append(inside[0])
            continue
        before = [p for p, _ in kept if p < low]
        if before:
            rolled_back.add(before[-1])
    steps = [
        StepOutcome(
            d.observation.packet.validation_accuracy,
            culled=bool(d.command_id) and d.command_id in culls,
            rolled_back=p in rolled_back,
        )
        for p, d in kept
    ]
    outcome = EpisodeOutcome(
        epochs[-1].state.validation_accuracy, int(epochs[0].parameters), int(epochs[-1].parameters)
    )
    rewards = episode_rewards(steps, outcome, config)
    by_position = dict(run.decisions)
    dead_rewards = [RewardComponents(rollback_penalty=-config.rollback_penalty) for _ in dead_positions]

    def transition(position: int, decision: pb.DecisionMade, reward: RewardComponents) -> Transition:
        return Transition(
            position,
            decision,
            factored_indices(decision),
            math.log(decision.action_probability),
            reward,
            tuple(reports.get(decision.command_id, ())) if decision.command_id else (),
        )

    return Episode(
        run_id=run_id,
        transitions=tuple(transition(p, d, r) for (p, d), r in zip(kept, rewards, strict=True)),
        dead_ends=tuple(
            transition(p, by_position[p], r) for p, r in zip(dead_positions, dead_rewards, strict=True)
        ),
        summary=episode_summary([*rewards, *dead_rewards]),
        last_position=run.completed_at,
    )


def episodes(
    store: EventStore, config: RewardConfig, from_position: int = 1
) -> tuple[list[Episode], list[pb.BlueprintDescriptor]]:
    """Every completed run in the log (from `from_position`) as an episode, in order of completion, and the
    blueprint catalogue the graphs need."""
    runs, descriptors = _read(store.read_all(from_position, READ))
    built = [_episode(run_id, run, config) for run_id, run in runs.items() if run_id]
    return sorted((e for e in built if e is not None), key=lambda e: e.last_position), descriptors


def mean_summary(found: Sequence[Episode]) -> dict[str, float]:
    """Each reward component averaged over episodes (empty without episodes)."""
    if not found:
        return {}
    return {k: sum(e.summary[k] for e in found) / len(found) for k in found[0].summary}


class ReplayBuffer:
    """Whole episodes, by run id; at most `max_transitions` (oldest dropped first) and none added more than
    `max_age` rounds before the current one."""

    def __init__(self, max_transitions: int, max_age: int) -> None:
        self.max_transitions = max_transitions
        self.max_age = max_age
        self._episodes: OrderedDict[str, tuple[int, Episode]] = OrderedDict()

    def add(self, new: Iterable[Episode], round_: int) -> None:
        for episode in new:
            if episode.run_id not in self._episodes:
                self._episodes[episode.run_id] = (round_, episode)
        for run_id in [r for r, (added, _) in self._episodes.items() if round_ - added > self.max_age]:
            del self._episodes[run_id]
        while len(self._episodes) > 1 and len(self) > self.max_transitions:
            self._episodes.popitem(last=False)

    def __len__(self) -> int:
        return sum(len(episode) for _, episode in self._episodes.values())

    @property
    def episodes(self) -> list[Episode]:
        return [episode for _, episode in self._episodes.values()]

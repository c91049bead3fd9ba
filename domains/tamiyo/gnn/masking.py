"""The legal actions of one decision, as masks over the factored action (operation × slot × blueprint).

The rules are Tamiyo's own, imported from the heuristic policy rather than restated:
- germinate at a slot only when it is DORMANT and outside Tamiyo's embargo after a cull
  (`HeuristicPolicy._open_slots`), with fewer active seeds than the limit (one in conservative mode) and
  the risk level below the block level, and not when the run ends before such a seed could reach its
  verdict (`observation.run_ending` at the ramp `germination_ramp` asks for: Kasmina's own rule); the
  blueprint must pass `HeuristicPolicy.eligible_blueprints` there (never quarantine-only, adversarial,
  unapproved, above the risk cap of the current level, outside the conservative pool in conservative mode,
  of another slot kind, or over the parameter budget; without a budget the answer depends on the slot's
  kind alone, so it is asked once per kind);
- cull a slot only when its seed is in an active stage (germinated … probationary);
- the no-op is always legal.

Packed form (PolicyObservation.legal): the bits of [operation (3), germinate-at-slot (S), cull-at-slot (S),
blueprint-at-slot row by row (S × B)], most significant bit first (numpy.packbits order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from domains.tamiyo.observation import Observation, active_seeds, germination_ramp, run_ending
from domains.tamiyo.policy import HeuristicPolicy
from domains.tamiyo.risk import ACTIVE_STAGE_WEIGHTS
from domains.tamiyo.state import TamiyoState

OPERATIONS = ("noop", "germinate", "cull")
NOOP, GERMINATE, CULL = range(3)
SLOT_OPERATIONS = (GERMINATE, CULL)  # operations that name a slot, in the order of the slot masks


@dataclass(frozen=True)
class ActionMask:
    operation: np.ndarray  # [3] bool
    slot: np.ndarray  # [2, S] bool: germinate-at, cull-at
    blueprint: np.ndarray  # [S, B] bool: blueprint legal at slot (germination)

    @property
    def slots(self) -> int:
        return int(self.slot.shape[1])

    @property
    def blueprints(self) -> int:
        return int(self.blueprint.shape[1])

    def allows(self, operation: int, slot: int = -1, blueprint: int = -1) -> bool:
        if not self.operation[operation]:
            return False
        if operation == NOOP:
            return True
        if not self.slot[SLOT_OPERATIONS.index(operation), slot]:
            return False
        return operation != GERMINATE or bool(self.blueprint[slot, blueprint])

    def pack(self) -> bytes:
        bits = np.concatenate([self.operation, self.slot.reshape(-1), self.blueprint.reshape(-1)])
        return np.packbits(bits.astype(np.uint8)).tobytes()

    @classmethod
    def unpack(cls, data: bytes, slots: int, blueprints: int) -> ActionMask:
        count = 3 + 2 * slots + slots * blueprints
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=count).astype(bool)
        if bits.size != count:
            raise ValueError(f"packed mask holds {bits.size} bits; {slots} slots × {blueprints} need {count}")
        return cls(
            operation=bits[:3],
            slot=bits[3 : 3 + 2 * slots].reshape(2, slots),
            blueprint=bits[3 + 2 * slots :].reshape(slots, blueprints),
        )


def legal_actions(
    policy: HeuristicPolicy,
    state: TamiyoState,
    observation: Observation,
    level: int,
    conservative: bool,
    slot_order: Sequence[int],
) -> ActionMask:
    """The mask over `slot_order` (the topology's slots) × `observation.catalogue`."""
    config = policy.config
    index = {slot: i for i, slot in enumerate(slot_order)}
    catalogue = {d.blueprint_id: j for j, d in enumerate(observation.catalogue)}
    slot_mask = np.zeros((2, len(slot_order)), dtype=bool)
    blueprint_mask = np.zeros((len(slot_order), len(catalogue)), dtype=bool)
    limit = min(config.max_concurrent_seeds, 1) if conservative else config.max_concurrent_seeds
    if (
        level < config.block_level
        and active_seeds(observation.seeds) < limit
        and run_ending(observation, germination_ramp(config, observation, level, conservative)) is None
    ):
        by_kind: dict[int | None, np.ndarray] = {}  # without a budget, eligibility depends on the kind only
        for seed in policy._open_slots(state, observation):
            if seed.slot not in index:
                continue
            kind = observation.slot_kinds.get(seed.slot)
            row = by_kind.get(kind) if config.parameter_budget is None else None
            if row is None:
                row = np.zeros(len(catalogue), dtype=bool)
                for descriptor in policy.eligible_blueprints(observation, seed.slot, level, conservative):
                    row[catalogue[descriptor.blueprint_id]] = True
                by_kind[kind] = row
            blueprint_mask[index[seed.slot]] = row
            slot_mask[0, index[seed.slot]] = row.any()
    for seed in observation.seeds:
        if seed.stage in ACTIVE_STAGE_WEIGHTS and seed.slot in index:
            slot_mask[1, index[seed.slot]] = True
    operation = np.array([True, slot_mask[0].any(), slot_mask[1].any()])
    return ActionMask(operation=operation, slot=slot_mask, blueprint=blueprint_mask)

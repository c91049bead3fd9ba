"""The state of Kasmina's aggregate: one run's slots, each with its seed's lifecycle position and the ledger
of the command ids it processed. Pure data, folded by `lifecycle.evolve`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from leyline.lifecycle import DORMANT


@dataclass(frozen=True)
class SlotState:
    slot: int
    stage: int = DORMANT
    seed_id: int = 0
    blueprint_id: str = ""
    artifact_hash: str = ""
    origin_command: str = ""  # the command that germinated the current seed
    germinated_epoch: int = 0
    alpha_ramp_epochs: int = 0
    stage_epoch: int = 0  # the epoch boundary at which the current stage was entered
    violations: int = 0
    training_reference_gap: float | None = None  # seed loss − host loss when TRAINING started (G1)
    blending_reference_loss: float | None = None  # host validation loss when BLENDING started (G2)
    embargo_until: int = 0
    # The ledger of processed command ids outlives the seed: idempotency survives a reset.
    processed: frozenset[str] = frozenset()

    def seed_view(self) -> SlotState:
        """Everything but the command ledger: equal to a never-used slot's after RESETTING → DORMANT."""
        return replace(self, processed=frozenset())


@dataclass(frozen=True)
class KasminaState:
    slots: tuple[SlotState, ...]
    last_seed_id: int = 0

    @classmethod
    def initial(cls, slots: Iterable[int]) -> KasminaState:
        return cls(tuple(SlotState(slot=s) for s in sorted(slots)))

    def slot(self, slot: int) -> SlotState:
        for state in self.slots:
            if state.slot == slot:
                return state
        raise KeyError(slot)

    def has_slot(self, slot: int) -> bool:
        return any(state.slot == slot for state in self.slots)

    def with_slot(self, new: SlotState, last_seed_id: int | None = None) -> KasminaState:
        slots = tuple(new if s.slot == new.slot else s for s in self.slots)
        return KasminaState(slots, self.last_seed_id if last_seed_id is None else last_seed_id)

    def count(self, stage: int) -> int:
        return sum(1 for s in self.slots if s.stage == stage)

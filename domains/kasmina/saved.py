"""The lifecycle records of a Kasmina checkpoint, to plain values and back.

    saved = save_records(state, epoch, last, best_gaps)   # dicts, lists and numbers only
    records = load_records(saved, host_slots)              # the frozen records again, checked

The seed modules and their optimizer groups are the manager's (they need the host); this module only
turns the pure aggregate and the gates' last measurements into what a checkpoint archive holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from domains.kasmina.gates import Measurements
from domains.kasmina.state import KasminaState, SlotState

STATE_DICT_VERSION = 1
# The fields of the frozen records a checkpoint holds, in declaration order (asdict's keys).
_FIELD_NAMES = {kind: tuple(f.name for f in fields(kind)) for kind in (SlotState, Measurements)}


@dataclass(frozen=True)
class Records:
    state: KasminaState
    epoch: int
    last: dict[int, Measurements]
    best_gaps: dict[int, tuple[int, float]]


def _field_values(record: SlotState | Measurements) -> dict[str, Any]:
    """The record's fields as a dict, as `asdict` gives them without its deep copy: every field holds an
    immutable value (numbers, strings, tuples of floats, a frozenset), shared safely. It runs in every
    checkpoint's capture on the training thread, where asdict's recursion cost 0.1 ms."""
    return {name: getattr(record, name) for name in _FIELD_NAMES[type(record)]}


def save_records(
    state: KasminaState,
    epoch: int,
    last: Mapping[int, Measurements],
    best_gaps: Mapping[int, tuple[int, float]],
) -> dict[str, Any]:
    return {
        "version": STATE_DICT_VERSION,
        "epoch": epoch,
        "last_seed_id": state.last_seed_id,
        "slots": [{**_field_values(s), "processed": sorted(s.processed)} for s in state.slots],
        "last_measurements": {k: _field_values(v) for k, v in last.items()},
        "best_gaps": {k: list(v) for k, v in best_gaps.items()},
    }


def load_records(saved: Mapping[str, Any], host_slots: list[int]) -> Records:
    """The records of a saved state; ValueError when its version or its slots are not this host's."""
    if saved.get("version") != STATE_DICT_VERSION:
        raise ValueError(f"Kasmina state version {saved.get('version')} is not {STATE_DICT_VERSION}")
    slots = tuple(SlotState(**{**s, "processed": frozenset(s["processed"])}) for s in saved["slots"])
    if sorted(s.slot for s in slots) != sorted(host_slots):
        saved_slots = [s.slot for s in slots]
        raise ValueError(f"checkpoint slots {saved_slots} differ from the host's {sorted(host_slots)}")
    last = {
        int(k): Measurements(
            **{
                **v,
                "blend_deltas": tuple(v.get("blend_deltas", ())),
                "seed_deltas": tuple(v.get("seed_deltas", ())),
            }
        )
        for k, v in saved["last_measurements"].items()
    }
    return Records(
        state=KasminaState(slots=slots, last_seed_id=int(saved["last_seed_id"])),
        epoch=int(saved["epoch"]),
        last=last,
        best_gaps={int(k): (int(v[0]), float(v[1])) for k, v in saved.get("best_gaps", {}).items()},
    )

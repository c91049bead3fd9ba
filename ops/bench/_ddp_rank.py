"""One rank of `esper bench ddp`'s in-process figures (started by ops/bench/ddp.py with torchrun's
variables): a graft's DDP re-wrap with the optimizer's new group, and one epoch boundary's collectives.
Rank 0 writes the medians as JSON to the path given."""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from domains.karn import building
from domains.kasmina import SeedSlot, make_slot
from domains.tolaria.boundary import Decision
from domains.tolaria.collective import Collective, SingleProcess, agreement_digest
from domains.tolaria.distributed import TorchCollective
from domains.tolaria.hosts import CNNLite, HostSpec, SlotSpec

BLUEPRINT = "BP009"  # residual_block, Tamiyo's usual first graft on cnn-lite
COMMAND_BYTES = 600  # about the size of a signed AdaptationCommandIssued envelope


def host() -> tuple[nn.Module, SeedSlot]:
    def seed_slot(spec: SlotSpec) -> nn.Module:
        return make_slot(spec.slot, spec.kind, spec.shape)

    model = CNNLite(replace(HostSpec(input_shape=(1, 8, 8), num_classes=10), slot_factory=seed_slot))
    slot = next(m for m in model.modules() if isinstance(m, SeedSlot))
    return model, slot


def regraft_ms(collective: Collective, rounds: int) -> float:
    """Median of: a seed module into the slot, its parameter group into the optimizer, the model wrapped
    again (DDP over the new parameters: a broadcast of every parameter from rank 0)."""
    model, slot = host()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    collective.wrap(model)
    times = []
    for _ in range(rounds):
        seed = building.build(BLUEPRINT, {}, slot.kind, slot.shape)
        started = time.perf_counter()
        slot.seed = seed
        optimizer.add_param_group({"params": list(seed.parameters())})
        collective.wrap(model)
        times.append((time.perf_counter() - started) * 1000)
        slot.seed = None
        optimizer.param_groups.pop()
        collective.wrap(model)
    return statistics.median(times)


def boundary_ms(collective: Collective, rounds: int, epoch: int) -> float:
    """Median of one boundary's collectives: the epoch's sums all-reduced, rank 0's decision broadcast
    (a command's size), the agreement digest all-gathered."""
    slots = [(str(s), "1", "(8, 4, 4)", "1", "0", "", "") for s in range(3)]
    parameters = [(f"layer{i}.weight", (8, 8, 3, 3)) for i in range(12)]
    command = bytes(COMMAND_BYTES)
    times = []
    for round_ in range(rounds):
        sums = [torch.tensor(1.5, dtype=torch.float64), torch.tensor(100)]
        started = time.perf_counter()
        collective.sum(sums, epoch)
        collective.broadcast(Decision(command, False, 0).encode() if collective.leads else b"", epoch)
        collective.agree(agreement_digest(slots, parameters, (round_, round_ * 10, 0)), epoch)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main(output: Path, rounds: int) -> None:
    torch.set_num_threads(1)
    collective = TorchCollective(torch.device("cpu"))
    try:
        figures = {
            "regraft_ms": regraft_ms(collective, rounds),
            "regraft_1process_ms": regraft_ms(SingleProcess(), rounds),
            "boundary_sync_ms": boundary_ms(collective, rounds, 1),
        }
        floor = []
        for _ in range(rounds):
            value = torch.zeros(())
            started = time.perf_counter()
            torch.distributed.all_reduce(value)
            floor.append((time.perf_counter() - started) * 1000)
        figures["one_all_reduce_ms"] = statistics.median(floor)
    finally:
        collective.close()
    if collective.leads:
        output.write_text(json.dumps(figures))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))

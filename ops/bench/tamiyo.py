"""Tamiyo's learned policy: decision latency at 30 and 200 nodes beside the heuristic, recompiles across
grafts, a PPO-style update on 32 graphs, and hot reload.

One intra-op thread, eager. Every decision is the controller's whole `decide` on a packet (observation,
legal-action masks, PolicyObservation, graph build, forward, masked factored sampling, DecisionMade and,
when it acts, the signed command), with Karn's catalogue (50 blueprints) and its parameter estimates.
- gnn_decision_p50_ms / p95: transformer-lite (31 nodes: 7 layers, 14 parameter tensors, 7 activations,
  3 slots); baseline heuristic_decision_p50_ms: the heuristic controller on the same host and packets.
- gnn200_decision_p50_ms / p95: a chain host of 45 linear layers with 20 sequence slots (200 nodes).
- gnn_decision_cpu_p50_ms / p95, gnn200_decision_cpu_p50_ms / p95: the same decisions' process CPU time,
  which leaves out the time a decision waits for a core on a shared machine (wall time includes it) and
  counts any work torch hands to other threads.
- recompiles_across_grafts: torch.compile frames compiled while decisions run over graphs whose node
  counts change (seeds grafted and culled, hosts of 31 and 200 nodes): 0, the policy stays eager.
- ppo_update_batch32_ms: one clipped-ratio step (collation of 32 variable-size graphs, log-probabilities
  of logged actions, value loss, per-head entropies, backward, Adam).
- reload_ms: verify (signature, sha256, schema, shapes from the artifact on disk), one smoke decision and
  the swap, on the calling thread.
- reload_training_stall_ms: what a live reload costs the training thread at its epoch boundaries. Each
  cycle runs two ordinary boundaries and the two boundaries of a reload (the one that takes the request
  and hands it to the policy worker, the one that activates it), in alternating order, each a decision
  and then the checkpoint's snapshot of the host's weights and the controller's state (a checkpoint every
  epoch, Tolaria's default; the capture hands the control file's removal to the worker, and the
  snapshot is where the worker's verification, handed over as the decision ends, competes with the
  training thread for the interpreter); between boundaries the worker runs (training). The
  stall is the reload pair minus the ordinary pair of the same cycle, median over cycles, compared with
  one ordinary decision (without its capture) of the same cycles; reload_training_stall_cpu_ms: the
  same in the training thread's CPU time, which leaves out waiting for a core. The note gives a
  distribution-free interval for the median (90 %, or the range with its coverage) and the load.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from domains.kasmina import SeedSlot
from domains.tamiyo import policy_control
from domains.tamiyo.catalogue import SlotShapes, heuristic_controller
from domains.tamiyo.controller import TamiyoController
from domains.tamiyo.gnn.build import gnn_controller
from domains.tamiyo.gnn.controller import GnnController
from domains.tamiyo.gnn.graph import policy_graph
from domains.tamiyo.gnn.masking import GERMINATE, NOOP, OPERATIONS
from domains.tamiyo.gnn.network import initial_network
from domains.tamiyo.gnn.reload import WORKER, smoke
from domains.tamiyo.gnn.sampling import evaluate
from domains.tamiyo.gnn.tensors import collate
from domains.tamiyo.policy_store import PolicyLibrary, publish, verify
from domains.tolaria.checkpoint import CachedCheckpoint, serialize
from domains.tolaria.hosts import HostSpec, build_host
from domains.tolaria.workload import seed_slot
from eventstore import open_store
from leyline import decode_payload, pb
from leyline.controller import ControllerContext
from leyline.datadir import DataDir
from leyline.signing import Keyring, Signer
from ops.bench import BenchOptions, Result, median_interval, percentile

DESCRIPTION = "Tamiyo GNN decisions at 30/200 nodes vs the heuristic, recompiles, PPO update, hot reload"
RUN = "bench-tamiyo"
INPUT = (1, 8, 8)
CHAIN_INPUT = (4, 16)
P50_TARGET_MS, P95_TARGET_MS, UPDATE_TARGET_MS, RELOAD_TARGET_MS = 2.5, 6.0, 25.0, 50.0
GAP_S = 0.005  # the rest of the training between two boundaries, beyond a pending verification


class ChainHost(nn.Module):
    """`layers` linear layers on [T, D] sequences with a seed slot after each of the first `slots`."""

    def __init__(self, layers: int, slots: int) -> None:
        super().__init__()
        steps, width = CHAIN_INPUT
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(layers))
        self.slots = nn.ModuleList(SeedSlot(i, pb.SLOT_KIND_SEQUENCE, (steps, width)) for i in range(slots))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = torch.relu(layer(x))
            if i < len(self.slots):
                x = self.slots[i](x)
        return x


def slot_shapes(model: nn.Module) -> SlotShapes:
    return {m.slot: (m.kind, m.shape) for m in model.modules() if isinstance(m, SeedSlot)}


def packet(epoch: int) -> pb.SystemStatePacket:
    loss = 1.0 / (1 + min(epoch, 6)) + 0.001 * (epoch % 3)  # improves, then plateaus: the heuristic acts
    return pb.SystemStatePacket(
        epoch=epoch,
        training_loss=loss,
        validation_loss=loss,
        validation_accuracy=0.9,
        packet_id=10_000 + epoch,
        metrics={"grad_norm": 1.0, "hook_ms": 2.0},
    )


def seeds(slots: SlotShapes, epoch: int) -> list[pb.SeedState]:
    """Dormant slots, with one seed in flight on odd epochs (a graft, then a cull: node features change)."""
    stages = [pb.SEED_STAGE_DORMANT] * len(slots)
    if epoch % 2:
        stages[epoch % len(slots)] = pb.SEED_STAGE_TRAINING
    return [
        pb.SeedState(slot=slot, seed_id=i, stage=stage, metrics={"headroom": 1.0 + i})
        for i, (slot, stage) in enumerate(zip(sorted(slots), stages, strict=True))
    ]


def timed_decisions(
    controller: TamiyoController,
    slots: SlotShapes,
    count: int,
    start: int = 1,
    cpu: list[float] | None = None,
) -> list[float]:
    """Wall times of `count` decisions (ms); their process CPU times go to `cpu` when given."""
    times = []
    for epoch in range(start, start + count):
        context = ControllerContext(RUN, epoch, seeds(slots, epoch), (), 700, 2.0)
        began, began_cpu = time.perf_counter(), time.process_time()
        controller.decide(packet(epoch), context)
        times.append((time.perf_counter() - began) * 1000)
        if cpu is not None:
            cpu.append((time.process_time() - began_cpu) * 1000)
    return times


def compiled_frames() -> int:
    from torch._dynamo.utils import counters

    return int(sum(counters["stats"].values()))


def latency_results(name: str, times: list[float]) -> list[Result]:
    return [
        Result(f"{name}_p50_ms", percentile(times, 0.5), "ms", target=f"<= {P50_TARGET_MS}"),
        Result(f"{name}_p95_ms", percentile(times, 0.95), "ms", target=f"<= {P95_TARGET_MS}"),
    ]


def ppo_step_ms(decisions: list[pb.DecisionMade], steps: int, features: torch.Tensor) -> float:
    network = initial_network(7).train()
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-4)
    graphs = [policy_graph(d.observation, features) for d in decisions]
    actions = []
    for d in decisions:
        op = OPERATIONS.index(d.factored_action.operation)
        slots = [s.slot for s in d.observation.topology.slots]
        at = slots.index(d.factored_action.slot) if op != NOOP else -1
        catalogue = list(d.observation.catalogue)
        graft = catalogue.index(d.factored_action.blueprint_id) if op == GERMINATE else -1
        actions.append((op, at, graft))
    operation, slot, blueprint = torch.tensor(actions, dtype=torch.long).unbind(1)
    old_log_prob = torch.tensor([math.log(d.action_probability) for d in decisions])
    generator = torch.Generator().manual_seed(0)
    advantages = torch.randn(len(decisions), generator=generator)
    returns = torch.randn(len(decisions), generator=generator)
    times = []
    for _ in range(steps):
        began = time.perf_counter()
        batch = collate(graphs)
        out = evaluate(network, batch, operation, slot, blueprint)
        ratio = torch.exp(out["log_prob"] - old_log_prob)
        clipped = torch.minimum(ratio * advantages, ratio.clamp(0.8, 1.2) * advantages)
        entropy = out["entropy_operation"] + out["entropy_slot"] + out["entropy_blueprint"]
        loss = -clipped.mean() + 0.5 * (out["value"] - returns).pow(2).mean() - 0.01 * entropy.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def decisions_of(controller: TamiyoController, slots: SlotShapes, count: int) -> list[pb.DecisionMade]:
    made = []
    for epoch in range(1, count + 1):
        output = controller.decide(
            packet(epoch), ControllerContext(RUN, epoch, seeds(slots, epoch), (), 700, 2.0)
        )
        for envelope in output.events:
            payload = decode_payload(envelope)
            if isinstance(payload, pb.DecisionMade) and payload.HasField("observation"):
                made.append(payload)
    return made


@dataclass
class Stalls:
    """Per cycle: the two boundaries of a reload and two ordinary boundaries beside them (ms)."""

    wall: list[float] = field(default_factory=list)  # reload pair minus ordinary pair, wall
    cpu: list[float] = field(default_factory=list)  # the same in the training thread's CPU time
    decision_wall: list[float] = field(default_factory=list)  # one ordinary decision (half the pair's)
    decision_cpu: list[float] = field(default_factory=list)


def boundary_ms(
    controller: GnnController, host: nn.Module, slots: SlotShapes, epoch: int
) -> tuple[float, ...]:
    """One epoch boundary on the training thread as Tolaria runs it with checkpoint_every 1: the decision,
    then the checkpoint's snapshot (the host's weights and the controller's state packed at the
    boundary, as Tolaria takes a CPU run's checkpoint). Wall and the calling thread's CPU time (ms) of
    the whole boundary, then of the decision alone."""
    context = ControllerContext(RUN, epoch, seeds(slots, epoch), (), 700, 2.0)
    began, began_cpu = time.perf_counter(), time.thread_time()
    controller.decide(packet(epoch), context)
    decided, decided_cpu = time.perf_counter(), time.thread_time()
    state = {"model": host.state_dict(), "controller": dict(controller.state_dict())}
    CachedCheckpoint(epoch, serialized=serialize(epoch, state))
    ended, ended_cpu = time.perf_counter(), time.thread_time()
    return tuple(
        1000 * value
        for value in (ended - began, ended_cpu - began_cpu, decided - began, decided_cpu - began_cpu)
    )


def between_boundaries(controller: GnnController) -> None:
    """Training between two boundaries: the worker gets the cores (a pending verification finishes, as it
    does long before the next boundary of a real epoch), then a fixed gap."""
    pending = controller.verification
    deadline = time.monotonic() + 10.0
    while pending is not None and not pending.finished() and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(GAP_S)


def stall_cycles(
    controller: GnnController,
    host: nn.Module,
    envelope: pb.EventEnvelope,
    data_dir: DataDir,
    slots: SlotShapes,
    cycles: int,
) -> Stalls:
    """Each cycle two ordinary boundaries and the two boundaries of a reload (the one that takes the
    request and hands it to the worker, the one that activates it), in alternating order, each arm from
    a quiet worker; the training thread's stall is the reload pair minus the ordinary pair."""
    stalls = Stalls()
    epoch = 1000
    for cycle in range(cycles):
        pairs: dict[str, list[float]] = {}
        for arm in ("plain", "reload") if cycle % 2 == 0 else ("reload", "plain"):
            WORKER.drain(timeout=10.0)
            if arm == "reload":
                policy_control.deliver(data_dir, RUN, policy_control.ACTIVATE, "v2", envelope)
            first = boundary_ms(controller, host, slots, epoch)
            between_boundaries(controller)
            second = boundary_ms(controller, host, slots, epoch + 1)
            between_boundaries(controller)
            pairs[arm] = [a + b for a, b in zip(first, second, strict=True)]
            epoch += 2
        stalls.wall.append(pairs["reload"][0] - pairs["plain"][0])
        stalls.cpu.append(pairs["reload"][1] - pairs["plain"][1])
        stalls.decision_wall.append(pairs["plain"][2] / 2)
        stalls.decision_cpu.append(pairs["plain"][3] / 2)
    WORKER.drain(timeout=10.0)
    return stalls


def reload_ms(
    controller: GnnController, envelope: pb.EventEnvelope, keyring: Keyring, data_dir: DataDir, cycles: int
) -> float:
    """Verify (signature, sha256, schema, shapes from the artifact on disk), one smoke decision, swap."""
    library = PolicyLibrary(data_dir)
    assert controller.gnn.last_observation is not None
    inputs = (controller.gnn.last_observation, controller.gnn.features)
    times = []
    for _ in range(cycles):
        began = time.perf_counter()
        candidate = verify(envelope, keyring, library)
        smoke(candidate.network, inputs, 0)
        controller._use(candidate)
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def stall_results(stalls: Stalls) -> list[Result]:
    load = "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    results = []
    for name, values, decisions in (
        ("reload_training_stall_ms", stalls.wall, stalls.decision_wall),
        ("reload_training_stall_cpu_ms", stalls.cpu, stalls.decision_cpu),
    ):
        stall, decision = statistics.median(values), statistics.median(decisions)
        low, high, coverage = median_interval(values)
        results.append(
            Result(
                name,
                stall,
                "ms",
                baseline_name="one ordinary decision, same cycles",
                baseline=decision,
                ratio=stall / decision,
                target="<= one decision (ratio <= 1)",
                note=f"median of {len(values)} cycles, {coverage:.0%} interval [{low:.3f}, {high:.3f}]; "
                + load,
            )
        )
    return results


def run(options: BenchOptions) -> list[Result]:
    torch.set_num_threads(1)
    count = 100 if options.quick else 400
    with tempfile.TemporaryDirectory() as temporary:
        data_dir = DataDir(Path(temporary))
        store = open_store(data_dir.log)
        keyring = Keyring.generate()
        library = PolicyLibrary(data_dir)
        first = verify(
            publish(store, library, Signer(keyring), initial_network(0), version="v1"), keyring, library
        )
        second = publish(store, library, Signer(keyring), initial_network(1), version="v2")
        store.close()

        def controller_for(model: nn.Module, shape: tuple[int, ...]) -> tuple[GnnController, SlotShapes]:
            slots = slot_shapes(model)
            return gnn_controller(RUN, keyring, model, shape, slots, first, data_dir), slots

        options.progress("30-node decisions (transformer-lite) and the heuristic on the same packets")
        small_host = build_host("transformer-lite", HostSpec(INPUT, 10, {}, seed_slot))
        small, small_slots = controller_for(small_host, INPUT)
        heuristic = heuristic_controller(RUN, Signer(keyring), small_slots)
        frames = compiled_frames()
        timed_decisions(small, small_slots, 20)
        gnn30_cpu: list[float] = []
        gnn30 = timed_decisions(small, small_slots, count, 21, gnn30_cpu)
        heuristic_times = timed_decisions(heuristic, small_slots, count)
        options.progress("200-node decisions (a chain host: 45 layers, 20 slots)")
        large, large_slots = controller_for(ChainHost(45, 20), CHAIN_INPUT)
        timed_decisions(large, large_slots, 20)
        gnn200_cpu: list[float] = []
        gnn200 = timed_decisions(large, large_slots, count, 21, gnn200_cpu)
        recompiles = compiled_frames() - frames

        options.progress("PPO-style update on 32 variable-size graphs")
        hosts: list[tuple[nn.Module, tuple[int, ...]]] = [
            (ChainHost(3 + i, 1 + i % 5), CHAIN_INPUT) for i in range(8)
        ]
        decisions: list[pb.DecisionMade] = []
        for model, shape in hosts:
            controller, slots = controller_for(model, shape)
            decisions.extend(decisions_of(controller, slots, 4))
        update_ms = ppo_step_ms(decisions[:32], 8 if options.quick else 30, small.gnn.features)

        options.progress("hot reload")
        reload = reload_ms(small, second, keyring, data_dir, 5 if options.quick else 15)
        stalls = stall_cycles(small, small_host, second, data_dir, small_slots, 10 if options.quick else 40)
    heuristic_p50 = percentile(heuristic_times, 0.5)
    results = latency_results("gnn_decision", gnn30) + latency_results("gnn200_decision", gnn200)
    for result in results:
        result.baseline_name, result.baseline = "heuristic_decision_p50_ms", heuristic_p50
        result.ratio = result.value / heuristic_p50
    return [
        *results,
        Result("heuristic_decision_p50_ms", heuristic_p50, "ms"),
        *latency_results("gnn_decision_cpu", gnn30_cpu),
        *latency_results("gnn200_decision_cpu", gnn200_cpu),
        Result("recompiles_across_grafts", float(recompiles), "count", target="== 0"),
        Result("ppo_update_batch32_ms", update_ms, "ms", target=f"<= {UPDATE_TARGET_MS}"),
        Result("reload_ms", reload, "ms", target=f"<= {RELOAD_TARGET_MS}"),
        *stall_results(stalls),
    ]

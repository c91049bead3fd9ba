"""Kasmina on real torch hosts: inert germination, gradient isolation, culling faulty seeds, optimizer
state, signed commands, idempotency, reset, checkpoint/resume and replay."""

from __future__ import annotations

import copy
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import torch
from prometheus_client import REGISTRY
from torch import nn

from domains.kasmina import EpochMeasurements, Kasmina, LifecycleConfig, SeedSlot
from domains.kasmina import lifecycle as lc
from domains.kasmina.gates import alpha_at
from domains.kasmina.state import SlotState
from leyline import decode_payload, new_envelope, pb
from leyline.lifecycle import BLENDING, DORMANT, FOSSILIZED, SHADOWING, TRAINING, stage_name
from leyline.signing import Keyring, Signer, Verifier, canonical_bytes
from ops.bench.kasmina import ScriptedProbe
from tests.kasmina.helpers import RUN, Commander, TinyCNN, TinyTransformer, evaluator, karn, manager

torch.set_num_threads(1)


def cnn_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    teacher = torch.randn(64, 10, generator=torch.Generator().manual_seed(99))
    x = torch.randn(n, 1, 8, 8, generator=generator)
    return x, (x.flatten(1) @ teacher).argmax(1)


def sequence_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 16, (n, 6), generator=generator)
    return x, x.sum(1) % 4


X, Y = cnn_data(1024, 1)
VX, VY = cnn_data(128, 2)


def train(host: nn.Module, optimizer: torch.optim.Optimizer, steps: int = 4) -> None:
    host.train()
    for step in range(steps):
        start = step * 64 % len(X)
        batch = slice(start, start + 64)
        optimizer.zero_grad()
        nn.functional.cross_entropy(host(X[batch]), Y[batch]).backward()
        optimizer.step()


def boundary(kasmina: Kasmina, host: nn.Module, epoch: int) -> list[pb.EventEnvelope]:
    def evaluate() -> object:
        return evaluator(host, VX, VY)

    measured = evaluator(host, VX, VY)
    return kasmina.end_epoch(epoch, EpochMeasurements(measured.loss, measured.accuracy), evaluate)  # type: ignore[arg-type]


def stages(events: list[pb.EventEnvelope]) -> list[str]:
    out = []
    for envelope in events:
        payload = decode_payload(envelope)
        if isinstance(payload, pb.SeedTransitioned):
            out.append(stage_name(payload.to_stage))
    return out


def host_parameters(host: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in host.named_parameters() if ".seed." not in n]


def assert_same_host(bare: nn.Module, host: nn.Module) -> None:
    """The host's own weights are finite and bit-identical to a bare twin trained on the same batches."""
    pairs = zip(bare.named_parameters(), host_parameters(host), strict=True)
    for (name, p), (_, q) in pairs:
        assert torch.isfinite(q).all() and torch.equal(p, q), name


def to_training(
    host: nn.Module, config: LifecycleConfig | None = None, blueprint: str = "BP_RES", **kw: object
):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(host.parameters(), lr=1e-2)
    kasmina, commander = manager(host, config, **kw)  # type: ignore[arg-type]
    kasmina.attach_optimizer(optimizer)
    events = kasmina.execute(commander.command(pb.SEED_OP_GERMINATE, blueprint_id=blueprint), 1)
    assert stages(events) == ["GERMINATED"], [decode_payload(e) for e in events]
    return kasmina, commander, optimizer


def test_validation_outputs_are_bit_identical_across_germination_and_admission() -> None:
    torch.manual_seed(0)
    host = TinyCNN()
    host.eval()
    before = host(VX)
    kasmina, commander = manager(host)
    events = kasmina.execute(commander.command(pb.SEED_OP_GERMINATE), 1)
    assert stages(events) == ["GERMINATED"]
    assert host.slot0.seed is not None
    assert torch.equal(host(VX), before)
    assert stages(boundary(kasmina, host, 2)) == ["TRAINING"]
    host.eval()
    assert torch.equal(host(VX), before)
    host.train()
    assert torch.equal(host(VX), before)


Host = Callable[[], nn.Module]


@pytest.mark.parametrize(
    ("make_host", "data"),
    [(TinyCNN, cnn_data(32, 5)), (TinyTransformer, sequence_data(32, 5))],
    ids=["cnn", "transformer"],
)
@pytest.mark.parametrize("stage", [TRAINING, BLENDING, SHADOWING])
def test_no_gradient_from_the_seed_path_reaches_host_parameters(
    make_host: Host, data: tuple[torch.Tensor, torch.Tensor], stage: int
) -> None:
    torch.manual_seed(0)
    host = make_host()
    x, y = data
    kasmina, commander = manager(host)
    kasmina.execute(commander.command(pb.SEED_OP_GERMINATE), 1)
    slot = host.slot0
    assert isinstance(slot, SeedSlot) and slot.seed is not None
    slot.seed.train()
    slot.monitor.arm(slot.seed, slot.device)
    slot.stage = stage
    slot.alpha.fill_(0.5 if stage == BLENDING else 1.0)

    def grads(detach_seed: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        host.zero_grad()
        original = slot.seed.forward  # type: ignore[union-attr]
        if detach_seed:
            # the seed output as a constant: whatever host gradient remains is not from the seed path
            slot.seed.forward = lambda t: original(t).detach()  # type: ignore[union-attr,method-assign]
        out = host(x)
        nn.functional.cross_entropy(out, y).backward()
        slot.seed.forward = original  # type: ignore[union-attr,method-assign]
        host_grads = {n: p.grad.clone() for n, p in host.named_parameters() if not n.startswith("slot0.seed")}  # type: ignore[union-attr]
        return host_grads, out.detach()

    with_seed, out_seed = grads(detach_seed=False)
    seed_grads = [p.grad for p in slot.seed.parameters()]
    assert all(g is not None and torch.count_nonzero(g) > 0 for g in seed_grads), "the seed did not learn"
    constant_seed, out_constant = grads(detach_seed=True)
    assert torch.equal(out_seed, out_constant)
    for name, grad in with_seed.items():
        assert torch.equal(grad, constant_seed[name]), name
    violations, _, nonfinite = slot.monitor.drain()
    assert violations == [] and nonfinite == 0


def test_training_stage_leaves_host_training_bit_identical_to_a_bare_host() -> None:
    torch.manual_seed(0)
    host = TinyCNN()
    bare = copy.deepcopy(host)
    kasmina, _, optimizer = to_training(host)
    bare_optimizer = torch.optim.Adam(bare.parameters(), lr=1e-2)
    assert stages(boundary(kasmina, host, 2)) == ["TRAINING"]
    seed_before = [p.clone() for p in host.slot0.seed.parameters()]  # type: ignore[union-attr]
    train(host, optimizer, steps=6)
    train(bare, bare_optimizer, steps=6)
    assert_same_host(bare, host)
    assert any(not torch.equal(a, b) for a, b in zip(seed_before, host.slot0.seed.parameters(), strict=True))  # type: ignore[union-attr]


def test_a_seed_that_reaches_host_parameters_is_reported_and_culled_after_three_violations() -> None:
    torch.manual_seed(0)
    host = TinyCNN()
    kasmina, _, optimizer = to_training(host, blueprint="BP_LEAK", leak_into=host.conv1.weight)
    assert stages(boundary(kasmina, host, 2)) == ["TRAINING"]
    train(host, optimizer, steps=4)
    events = boundary(kasmina, host, 3)
    violations = [decode_payload(e) for e in events if e.event_type == "IsolationViolationDetected"]
    assert [v.violation_count for v in violations] == [1, 2, 3]  # type: ignore[attr-defined]
    assert {v.parameter for v in violations} == {"conv1.weight"}  # type: ignore[attr-defined]
    assert all(v.gradient_norm > 0 for v in violations)  # type: ignore[attr-defined]
    assert stages(events) == ["CULLED", "EMBARGOED"]
    assert len(optimizer.param_groups) == 1
    assert REGISTRY.get_sample_value("esper_kasmina_isolation_violations_total") >= 3  # type: ignore[operator]


def test_nan_seed_is_culled_and_the_host_weights_are_unharmed() -> None:
    torch.manual_seed(0)
    host = TinyCNN()
    kasmina, commander = manager(host)
    refused = kasmina.execute(commander.command(pb.SEED_OP_GERMINATE, blueprint_id="BP_NAN"), 1)
    assert decode_payload(refused[0]).code == "gate_failed"  # type: ignore[attr-defined]
    assert host.slot0.seed is None

    # the explicit fault-drill path: quarantined blueprints are allowed
    torch.manual_seed(0)
    host = TinyCNN()
    bare = copy.deepcopy(host)
    kasmina, _, optimizer = to_training(host, blueprint="BP_NAN", drill=True)
    bare_optimizer = torch.optim.Adam(bare.parameters(), lr=1e-2)
    # the seed is admitted only if its loss is finite: here it is NaN, so it is culled at admission
    events = boundary(kasmina, host, 2)
    assert stages(events) == ["CULLED", "EMBARGOED"]
    train(host, optimizer, steps=4)
    train(bare, bare_optimizer, steps=4)
    assert_same_host(bare, host)


def test_nan_in_training_is_contained_then_culled() -> None:
    torch.manual_seed(0)
    host = TinyCNN()
    bare = copy.deepcopy(host)
    kasmina, _, optimizer = to_training(host)
    assert stages(boundary(kasmina, host, 2)) == ["TRAINING"]
    seed = host.slot0.seed
    assert seed is not None
    with torch.no_grad():
        seed.f.weight.fill_(float("nan"))  # type: ignore[union-attr]
    bare_optimizer = torch.optim.Adam(bare.parameters(), lr=1e-2)
    train(host, optimizer, steps=4)
    train(bare, bare_optimizer, steps=4)
    assert_same_host(bare, host)
    events = boundary(kasmina, host, 3)
    assert stages(events) == ["CULLED", "EMBARGOED"]
    culled = decode_payload(events[0])
    assert culled.gates[0].gate == "G1" and culled.gates[0].measured["nonfinite"] > 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_optimizer_state_survives_adding_and_removing_a_seed_group(kind: str) -> None:
    torch.manual_seed(0)
    host = TinyCNN()
    optimizer: torch.optim.Optimizer = (
        torch.optim.Adam(host.parameters(), lr=1e-2)
        if kind == "adam"
        else torch.optim.SGD(host.parameters(), lr=1e-2, momentum=0.9)
    )
    train(host, optimizer, steps=3)
    snapshot = {id(p): {k: v.clone() for k, v in optimizer.state[p].items()} for p in host.parameters()}
    host_group = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
    kasmina, commander = manager(host, warmup_epochs=2)  # explicit: the group's lr below depends on it
    kasmina.attach_optimizer(optimizer)
    germinate = commander.command(pb.SEED_OP_GERMINATE)
    kasmina.execute(germinate, 1)
    assert stages(boundary(kasmina, host, 2)) == ["TRAINING"]
    assert len(optimizer.param_groups) == 2
    seed_group = optimizer.param_groups[1]
    assert seed_group["kasmina_slot"] == 0 and seed_group["lr"] == pytest.approx(1e-3)  # warm-up: 0.1 × base
    seed_params = list(host.slot0.seed.parameters())  # type: ignore[union-attr]
    assert seed_group["params"] == seed_params

    def unchanged() -> None:
        for _, p in host_parameters(host):
            for key, value in snapshot[id(p)].items():
                assert torch.equal(optimizer.state[p][key], value), key
        assert {k: v for k, v in optimizer.param_groups[0].items() if k != "params"} == host_group

    unchanged()
    optimizer.zero_grad()
    nn.functional.cross_entropy(host(X[:32]), Y[:32]).backward()
    # one step of the seed only, so the host's state stays comparable
    for _, p in host_parameters(host):
        p.grad = None
    optimizer.step()
    assert all(p in optimizer.state for p in seed_params)
    unchanged()
    cull = commander.command(pb.SEED_OP_CULL)
    assert stages(kasmina.execute(cull, 2)) == ["CULLED", "EMBARGOED"]
    assert len(optimizer.param_groups) == 1
    assert not any(p in optimizer.state for p in seed_params)
    unchanged()
    train(host, optimizer, steps=1)  # the host keeps training on its preserved state


def test_signature_failures_are_rejected_with_an_event_and_a_counter() -> None:
    torch.manual_seed(0)
    host = TinyCNN()
    kasmina, commander = manager(host)

    def rejected(code: str) -> float:
        return REGISTRY.get_sample_value("esper_kasmina_commands_rejected_total", {"code": code}) or 0.0

    tampered = commander.command(pb.SEED_OP_GERMINATE)
    tampered.run_id = "other"
    before = rejected("bad_signature")
    events = kasmina.execute(tampered, 1)
    assert [decode_payload(e).code for e in events] == ["bad_signature"]  # type: ignore[attr-defined]
    assert events[0].stream == f"seed-{RUN}.0"
    assert rejected("bad_signature") == before + 1

    stranger = Signer(Keyring.generate("k9")).sign(commander.command(pb.SEED_OP_GERMINATE))
    assert decode_payload(kasmina.execute(stranger, 1)[0]).code == "unknown_key"  # type: ignore[attr-defined]

    stale = commander.command(pb.SEED_OP_GERMINATE)
    stale.occurred_at_ns -= 120 * 10**9
    stale.hmac = b""
    stale = commander.signer.sign(stale)
    assert decode_payload(kasmina.execute(stale, 1)[0]).code == "stale_timestamp"  # type: ignore[attr-defined]

    first = commander.command(pb.SEED_OP_CULL)
    kasmina.execute(first, 1)  # verified (then illegal: the slot is dormant), its nonce is now spent
    replayed = commander.command(pb.SEED_OP_GERMINATE)
    replayed.nonce = first.nonce
    replayed.hmac = hmac.new(
        commander.signer.keyring.keys["k1"], canonical_bytes(replayed), hashlib.sha256
    ).digest()
    assert decode_payload(kasmina.execute(replayed, 1)[0]).code == "replayed_nonce"  # type: ignore[attr-defined]
    assert host.slot0.seed is None and kasmina.state.slot(0).stage == DORMANT

    # a forged command does not poison its command id: the genuine one still runs
    genuine = commander.command(pb.SEED_OP_GERMINATE, command_id="cmd-1")
    forged = copy.deepcopy(genuine)
    forged.hmac = bytes(32)
    assert decode_payload(kasmina.execute(forged, 1)[0]).code == "bad_signature"  # type: ignore[attr-defined]
    assert stages(kasmina.execute(genuine, 1)) == ["GERMINATED"]


def test_commands_are_idempotent_and_effects_carry_the_command_ids() -> None:
    torch.manual_seed(0)
    host = TinyCNN()
    kasmina, commander = manager(host)
    command = commander.command(pb.SEED_OP_GERMINATE, command_id="cmd-7")
    events = kasmina.execute(command, 1)
    assert [e.event_type for e in events] == ["SeedTransitioned", "SeedGrafted"]
    assert all(e.correlation_id == "cmd-7" and e.causation_id == command.event_id for e in events)
    assert all(e.stream == f"seed-{RUN}.0" and e.run_id == RUN and e.epoch == 1 for e in events)
    module = host.slot0.seed
    assert kasmina.execute(command, 1) == []
    redelivered = commander.command(pb.SEED_OP_GERMINATE, command_id="cmd-7")  # re-signed by the sender
    assert kasmina.execute(redelivered, 2) == []
    assert host.slot0.seed is module
    again = kasmina.execute(commander.command(pb.SEED_OP_GERMINATE), 1)
    assert [decode_payload(e).code for e in again] == ["illegal_transition"]  # type: ignore[attr-defined]
    automatic = boundary(kasmina, host, 2)
    assert stages(automatic) == ["TRAINING"] and automatic[0].correlation_id == "cmd-7"
    unknown = kasmina.execute(commander.command(pb.SEED_OP_GERMINATE, slot=5, command_id="cmd-8"), 2)
    assert unknown[0].stream == "command-cmd-8" and decode_payload(unknown[0]).code == "unknown_slot"  # type: ignore[attr-defined]


def test_reset_slot_is_indistinguishable_from_a_never_used_one() -> None:
    torch.manual_seed(0)
    host = TinyCNN()
    fresh = SeedSlot(0, pb.SLOT_KIND_CONV2D, (4, 8, 8))
    kasmina, commander, optimizer = to_training(host, LifecycleConfig(embargo_epochs=2))
    assert stages(boundary(kasmina, host, 2)) == ["TRAINING"]
    train(host, optimizer, steps=2)
    assert stages(kasmina.execute(commander.command(pb.SEED_OP_CULL), 2)) == ["CULLED", "EMBARGOED"]
    assert stages(boundary(kasmina, host, 3)) == []
    assert stages(boundary(kasmina, host, 4)) == ["RESETTING", "DORMANT"]
    slot = host.slot0
    assert slot.seed is None and slot.stage == DORMANT and slot.override is None
    assert slot.state_dict().keys() == fresh.state_dict().keys()
    assert all(
        torch.equal(a, b)
        for a, b in zip(slot.state_dict().values(), fresh.state_dict().values(), strict=True)
    )
    assert list(slot.parameters()) == [] and not slot.monitor.armed
    assert len(optimizer.param_groups) == 1
    assert kasmina.state.slot(0).seed_view() == SlotState(slot=0)
    assert stages(kasmina.execute(commander.command(pb.SEED_OP_GERMINATE), 4)) == ["GERMINATED"]


def run_epochs(
    host: nn.Module, kasmina: Kasmina, optimizer: torch.optim.Optimizer, epochs: range
) -> list[tuple[str, str]]:
    log = []
    for epoch in epochs:
        train(host, optimizer, steps=16)
        for envelope in boundary(kasmina, host, epoch):
            payload = decode_payload(envelope)
            stage = stage_name(payload.to_stage) if isinstance(payload, pb.SeedTransitioned) else ""
            log.append((envelope.event_type, stage))
    return log


def test_resume_from_a_checkpoint_continues_bit_identically_and_replay_rebuilds_the_aggregate() -> None:
    config = LifecycleConfig(min_training_epochs=1, alpha_ramp_epochs=2, probation_epochs=1)

    torch.manual_seed(0)
    host = TinyCNN()
    kasmina, _, optimizer = to_training(host, config)
    torch.manual_seed(1)
    log_a: list[tuple[str, str]] = []
    epoch = 1
    while ("SeedTransitioned", "BLENDING") not in log_a:  # until G1 passes (a few epochs)
        assert epoch < 12, f"the seed never reached BLENDING: {log_a}"
        epoch += 1
        log_a += run_epochs(host, kasmina, optimizer, range(epoch, epoch + 1))
    checkpoint = copy.deepcopy(
        {
            "kasmina": kasmina.state_dict(),
            "model": host.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": torch.get_rng_state(),
        }
    )
    assert kasmina.state.slot(0).stage == BLENDING  # the checkpoint is taken mid-ramp
    tail = range(epoch + 1, epoch + 5)
    tail_a = run_epochs(host, kasmina, optimizer, tail)
    assert len(tail_a) >= 2  # the lifecycle moves on after the checkpoint
    final_a = copy.deepcopy(host.state_dict())
    states_a = kasmina.seed_states()

    torch.manual_seed(0)
    resumed = TinyCNN()
    optimizer_b = torch.optim.Adam(resumed.parameters(), lr=1e-2)
    kasmina_b, _ = manager(resumed, config)
    kasmina_b.attach_optimizer(optimizer_b)
    kasmina_b.load_state_dict(checkpoint["kasmina"])
    resumed.load_state_dict(checkpoint["model"])
    optimizer_b.load_state_dict(checkpoint["optimizer"])
    torch.set_rng_state(checkpoint["rng"])
    log_b = run_epochs(resumed, kasmina_b, optimizer_b, tail)
    assert log_b == tail_a
    final_b = resumed.state_dict()
    assert final_a.keys() == final_b.keys()
    for key in final_a:
        assert torch.equal(final_a[key], final_b[key]), key
    assert kasmina_b.seed_states() == states_a
    assert kasmina_b.state == kasmina.state


def test_replay_of_the_logged_events_equals_the_live_aggregate() -> None:
    torch.manual_seed(0)
    host = TinyCNN()
    config = LifecycleConfig(min_training_epochs=1, alpha_ramp_epochs=2, probation_epochs=1, embargo_epochs=1)
    kasmina, commander = manager(host, config)
    optimizer = torch.optim.Adam(host.parameters(), lr=1e-2)
    kasmina.attach_optimizer(optimizer)
    log = kasmina.execute(commander.command(pb.SEED_OP_GERMINATE), 1)
    log += kasmina.execute(commander.command(pb.SEED_OP_CULL, slot=0), 1)
    for epoch in range(2, 10):
        train(host, optimizer, steps=2)
        log += boundary(kasmina, host, epoch)
        if kasmina.state.slot(0).stage == DORMANT:
            log += kasmina.execute(commander.command(pb.SEED_OP_GERMINATE), epoch)
    assert "DORMANT" in stages(log)
    assert kasmina.rebuild_from_log(log) == kasmina.state
    # a process whose defaults differ from the limits the log was written under rebuilds the same state
    other, _ = manager(TinyCNN(), LifecycleConfig(alpha_ramp_epochs=5, embargo_epochs=4))
    assert other.rebuild_from_log(log) == kasmina.state


def test_karn_nan_injection_in_a_fault_drill_is_culled_and_the_host_is_unharmed() -> None:
    torch.manual_seed(0)
    host = TinyCNN()
    bare = copy.deepcopy(host)
    keyring = Keyring.generate()
    kasmina = Kasmina(RUN, host, karn(drill=True), Verifier(keyring))
    optimizer = torch.optim.Adam(host.parameters(), lr=1e-2)
    kasmina.attach_optimizer(optimizer)
    commander = Commander(keyring)
    germinate = commander.command(pb.SEED_OP_GERMINATE, blueprint_id="BP045", parameters={"period": 3})
    assert stages(kasmina.execute(germinate, 1)) == ["GERMINATED"]
    bare_optimizer = torch.optim.Adam(bare.parameters(), lr=1e-2)
    culled_at = None
    for epoch in range(2, 5):
        train(host, optimizer, steps=4)
        train(bare, bare_optimizer, steps=4)
        if "CULLED" in stages(boundary(kasmina, host, epoch)):
            culled_at = epoch
            break
    assert culled_at is not None
    assert_same_host(bare, host)
    live = Kasmina(RUN, TinyCNN(), karn(drill=False), Verifier(keyring))
    refused = decode_payload(
        live.execute(commander.command(pb.SEED_OP_GERMINATE, blueprint_id="BP045"), 1)[0]
    )
    assert refused.code == "gate_failed" and "fault drill" in refused.reason  # type: ignore[attr-defined]


def test_teardown_terminates_seeds_but_never_a_fossilized_one() -> None:
    torch.manual_seed(0)
    host = TinyCNN(slots=2)
    kasmina, commander = manager(host)
    kasmina.execute(commander.command(pb.SEED_OP_GERMINATE, slot=0), 1)
    kasmina.state = kasmina.state.with_slot(replace(kasmina.state.slot(1), stage=FOSSILIZED))
    events = kasmina.teardown(5)
    assert [(decode_payload(e).slot, stage_name(decode_payload(e).to_stage)) for e in events] == [
        (0, "TERMINATED")
    ]  # type: ignore[attr-defined]
    assert host.slot0.seed is None and kasmina.state.slot(1).stage == FOSSILIZED
    assert REGISTRY.get_sample_value("esper_kasmina_seeds", {"stage": "TERMINATED"}) >= 1  # type: ignore[operator]


def test_alpha_ramp_does_not_recompile_a_compiled_host() -> None:
    graphs: list[int] = []

    def counting_backend(gm: torch.fx.GraphModule, inputs: list[torch.Tensor]) -> Callable[..., object]:
        graphs.append(len(gm.graph.nodes))
        return gm.forward  # type: ignore[no-any-return]

    torch.manual_seed(0)
    host = TinyCNN()
    kasmina, commander = manager(host)
    kasmina.execute(commander.command(pb.SEED_OP_GERMINATE), 1)
    slot = host.slot0
    assert slot.seed is not None
    slot.monitor.arm(slot.seed, slot.device)
    slot.stage = BLENDING
    state = replace(kasmina.state.slot(0), stage=BLENDING, stage_epoch=1, alpha_ramp_epochs=3)
    compiled = torch.compile(host, backend=counting_backend)
    outputs = []
    for epoch in (1, 2, 3):
        slot.alpha.fill_(alpha_at(state, epoch))  # what Kasmina does at each boundary
        out = compiled(X[:8])
        out.sum().backward()
        outputs.append(out.detach())
        if epoch == 1:
            first_compile = len(graphs)
    assert first_compile > 0 and len(graphs) == first_compile, "changing alpha recompiled the host"
    assert not torch.equal(outputs[0], outputs[1])  # the ramp did change the output


def test_alpha_buffer_follows_the_ramp_at_every_boundary() -> None:
    torch.manual_seed(0)
    host = TinyCNN()
    config = LifecycleConfig(min_training_epochs=1, alpha_ramp_epochs=3, probation_epochs=1)
    kasmina, commander = manager(host, config)
    kasmina.execute(commander.command(pb.SEED_OP_GERMINATE), 1)
    probe = ScriptedProbe(host.slot0)
    seen = []
    for epoch in range(2, 10):
        kasmina.end_epoch(epoch, EpochMeasurements(validation_loss=1.0), probe)
        alpha = float(host.slot0.alpha)
        state = kasmina.seed_states()[0]
        assert state.alpha == pytest.approx(alpha)
        if stage_name(state.stage) == "PROBATIONARY":  # the G3 probe measured the contribution
            assert state.metrics["contribution"] > 0
        seen.append((stage_name(host.slot0.stage), round(alpha, 4)))
    assert seen == [
        ("TRAINING", 0.0),
        ("BLENDING", 0.3333),
        ("BLENDING", 0.6667),
        ("BLENDING", 1.0),
        ("SHADOWING", 1.0),
        ("PROBATIONARY", 1.0),
        ("FOSSILIZED", 1.0),
        ("FOSSILIZED", 1.0),
    ]


def test_a_non_finite_seed_gradient_is_counted_and_zeroed_before_the_step() -> None:
    torch.manual_seed(0)
    host = TinyCNN()
    kasmina, _, optimizer = to_training(host)
    assert stages(boundary(kasmina, host, 2)) == ["TRAINING"]
    train(host, optimizer, steps=2)
    _, grad_norm, nonfinite = host.slot0.monitor.drain()
    assert grad_norm > 0 and nonfinite == 0
    seed = host.slot0.seed
    assert seed is not None
    optimizer.zero_grad()
    nn.functional.cross_entropy(host(X[:64]), Y[:64]).backward()
    poisoned = next(seed.parameters())
    assert poisoned.grad is not None
    poisoned.grad.view(-1)[0] = float("nan")
    host_before = [p.clone() for _, p in host_parameters(host)]
    optimizer.step()
    assert all(p.grad is not None and torch.count_nonzero(p.grad) == 0 for p in seed.parameters())
    assert all(torch.isfinite(p).all() for p in seed.parameters())
    assert any(not torch.equal(a, p) for a, (_, p) in zip(host_before, host_parameters(host), strict=True))
    _, _, nonfinite = host.slot0.monitor.drain()
    assert nonfinite == 1


def test_the_intake_verifies_each_envelope_once_and_exposes_the_verified_command() -> None:
    torch.manual_seed(0)
    host = TinyCNN()
    kasmina, commander = manager(host)
    germinate = commander.command(pb.SEED_OP_GERMINATE, command_id="g-1")
    received = kasmina.receive(germinate)
    assert received.verified and received.command.seed_operation.operation == pb.SEED_OP_GERMINATE
    # apply does not verify again: a second verification would find the nonce spent (replayed_nonce)
    assert stages(kasmina.apply(received, 1)) == ["GERMINATED"]
    assert kasmina.receive(germinate).duplicate  # processed: not verified (nor rejected) again
    rollback = pb.AdaptationCommand(command_id="rb-1", command_type=pb.COMMAND_TYPE_ROLLBACK)
    rollback.rollback.target_epoch = 0
    issued = pb.AdaptationCommandIssued(command=rollback)
    signed = commander.signer.sign(
        new_envelope("AdaptationCommandIssued", "command-rb-1", issued, run_id=RUN)
    )
    received = kasmina.receive(signed)
    assert received.verified and received.command.rollback.target_epoch == 0  # the trainer's to act on
    assert kasmina.receive(signed).refusal[0] == "replayed_nonce"  # type: ignore[index]
    tampered = pb.EventEnvelope()
    tampered.CopyFrom(commander.command(pb.SEED_OP_CULL))
    tampered.run_id = "another-run"
    assert kasmina.receive(tampered).refusal[0] == "bad_signature"  # type: ignore[index]


def test_the_pure_precheck_runs_before_any_fetch() -> None:
    torch.manual_seed(0)
    host = TinyCNN()
    kasmina, commander = manager(host)
    fetches: list[str] = []
    load = kasmina.source.load_module

    def counting(blueprint_id: str, *args: Any) -> tuple[nn.Module, str]:
        fetches.append(blueprint_id)
        return load(blueprint_id, *args)

    kasmina.source.load_module = counting  # type: ignore[method-assign,assignment]
    kasmina.execute(commander.command(pb.SEED_OP_GERMINATE), 1)
    assert fetches == ["BP_RES"]
    state = kasmina.state
    assert lc.precheck(state, 0, pb.SEED_OP_GERMINATE, measured=False) == (
        "illegal_transition",
        "cannot germinate a GERMINATED slot",
    )
    assert lc.precheck(state, 0, pb.SEED_OP_ADVANCE, measured=False)[0] == "gate_not_met"  # type: ignore[index]
    assert lc.precheck(state, 0, pb.SEED_OP_ADVANCE, measured=True) is None
    refused = kasmina.execute(commander.command(pb.SEED_OP_GERMINATE), 1)
    assert [decode_payload(e).code for e in refused] == ["illegal_transition"]  # type: ignore[attr-defined]
    assert fetches == ["BP_RES"]  # refused before the source was asked
    kasmina.execute(commander.command(pb.SEED_OP_CULL), 1)
    assert lc.precheck(kasmina.state, 0, pb.SEED_OP_GERMINATE, measured=False)[0] == "embargoed"  # type: ignore[index]
    kasmina.execute(commander.command(pb.SEED_OP_GERMINATE), 1)
    assert fetches == ["BP_RES"]

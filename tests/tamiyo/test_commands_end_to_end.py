"""Tamiyo's signed commands through Kasmina: genuine ones apply; forged, replayed and stale are rejected."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch
from torch import nn

from domains.kasmina import FactorySource, Kasmina, SeedSlot
from domains.tamiyo import HeuristicConfig, HeuristicPolicy, TamiyoController
from eventstore import open_store
from leyline import decode_payload, pb
from leyline.controller import ControllerOutput
from leyline.signing import Keyring, Signer, Verifier
from projections import catch_up, open_db, resolve_url
from projections.audit import audit_seed
from tests.tamiyo.scripted import (
    CATALOGUE,
    PLATEAU_LOSSES,
    PLATEAU_SCHEDULE,
    RUN_ID,
    context,
    estimate,
    packet,
)

torch.set_num_threads(1)


class Host(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.slot0 = SeedSlot(0, pb.SLOT_KIND_CONV2D, (4, 8, 8))
        self.head = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.slot0(torch.relu(self.conv(x))).flatten(1))


def conv_seed(kind: int, shape: tuple[int, ...], parameters: Mapping[str, float]) -> nn.Module:
    return nn.Conv2d(shape[0], shape[0], 3, padding=1)


def setup(
    clock_ns: int | None = None,
) -> tuple[Host, Kasmina, TamiyoController, Keyring]:
    torch.manual_seed(0)
    keyring = Keyring.generate()
    host = Host()
    source = FactorySource({d.blueprint_id: conv_seed for d in CATALOGUE})
    kasmina = Kasmina(RUN_ID, host, source, Verifier(keyring))
    kasmina.attach_optimizer(torch.optim.SGD(host.parameters(), lr=0.1))
    tamiyo = TamiyoController(
        RUN_ID,
        Signer(keyring),
        # the scripted seed never leaves GERMINATED: its germination report closes at the window's bound
        HeuristicPolicy(HeuristicConfig(**PLATEAU_SCHEDULE, germination_report_epochs=3)),
        parameter_estimator=estimate,
        clock_ns=(lambda: clock_ns) if clock_ns is not None else time.time_ns,
    )
    return host, kasmina, tamiyo, keyring


def first_command(kasmina: Kasmina, tamiyo: TamiyoController) -> tuple[int, ControllerOutput]:
    for epoch, loss in enumerate(PLATEAU_LOSSES):
        output = tamiyo.decide(packet(epoch, loss), context(epoch, kasmina.seed_states()))
        if output.command is not None:
            return epoch, output
    raise AssertionError("Tamiyo never germinated")


def rejection_codes(events: list[pb.EventEnvelope]) -> list[str]:
    return [decode_payload(e).code for e in events if e.event_type == "CommandRejected"]  # type: ignore[attr-defined]


def stage_of(kasmina: Kasmina) -> int:
    return kasmina.seed_states()[0].stage


def test_a_genuine_command_is_applied_and_its_effects_carry_the_command_id() -> None:
    _, kasmina, tamiyo, _ = setup()
    epoch, output = first_command(kasmina, tamiyo)
    command = output.command
    assert command is not None
    events = kasmina.execute(command, epoch)
    assert rejection_codes(events) == []
    assert stage_of(kasmina) == pb.SEED_STAGE_GERMINATED
    assert kasmina.seed_states()[0].blueprint_id == "BP023"
    transitions = [e for e in events if e.event_type == "SeedTransitioned"]
    assert transitions and all(e.correlation_id == command.event_id for e in transitions)
    assert all(e.causation_id == command.event_id for e in transitions)
    # Tamiyo learns at the next boundary that the command was applied, and opens its window
    tamiyo.decide(
        packet(epoch + 1, 0.4), context(epoch + 1, kasmina.seed_states(), applied=[command.event_id])
    )
    assert [w.command_id for w in tamiyo.state.windows] == [command.event_id]


def test_forged_commands_are_rejected() -> None:
    _, kasmina, tamiyo, keyring = setup()
    epoch, output = first_command(kasmina, tamiyo)
    genuine = output.command
    assert genuine is not None
    # signed by an attacker who knows the key id but not the secret
    attacker = Keyring({keyring.current: bytes(32)}, keyring.current)
    impostor = pb.EventEnvelope()
    impostor.CopyFrom(genuine)
    Signer(attacker).sign(impostor)
    assert rejection_codes(kasmina.execute(impostor, epoch)) == ["bad_signature"]
    # a genuine envelope whose payload was changed after signing (an adversarial blueprint)
    tampered = pb.EventEnvelope()
    tampered.CopyFrom(genuine)
    issued = decode_payload(tampered)
    assert isinstance(issued, pb.AdaptationCommandIssued)
    issued.command.seed_operation.blueprint_id = "BP045"
    tampered.payload = issued.SerializeToString()
    assert rejection_codes(kasmina.execute(tampered, epoch)) == ["bad_signature"]
    # a key id the verifier does not know
    stranger = pb.EventEnvelope()
    stranger.CopyFrom(genuine)
    Signer(Keyring.generate("k-unknown")).sign(stranger)
    assert rejection_codes(kasmina.execute(stranger, epoch)) == ["unknown_key"]
    assert stage_of(kasmina) == pb.SEED_STAGE_DORMANT
    # the forgeries did not burn the genuine command's id
    assert rejection_codes(kasmina.execute(genuine, epoch)) == []
    assert stage_of(kasmina) == pb.SEED_STAGE_GERMINATED


def test_replayed_commands_are_rejected() -> None:
    _, kasmina, tamiyo, _ = setup()
    epoch, output = first_command(kasmina, tamiyo)
    command = output.command
    assert command is not None
    assert rejection_codes(kasmina.execute(command, epoch)) == []
    seeds_before = kasmina.seed_states()
    # the same envelope again: idempotent by command id, nothing happens a second time
    assert kasmina.execute(command, epoch) == []
    assert kasmina.seed_states() == seeds_before
    # a manager that has not seen the command id but shares the verifier (e.g. restored from an older
    # checkpoint in the same process) still refuses it: the nonce was used within the window
    other = Kasmina(RUN_ID, Host(), FactorySource({"BP023": conv_seed}), kasmina.verifier)
    assert rejection_codes(other.execute(command, epoch)) == ["replayed_nonce"]
    assert other.seed_states()[0].stage == pb.SEED_STAGE_DORMANT


def test_stale_commands_are_rejected() -> None:
    two_minutes_ago = time.time_ns() - 120 * 10**9
    _, kasmina, tamiyo, _ = setup(clock_ns=two_minutes_ago)
    epoch, output = first_command(kasmina, tamiyo)
    assert output.command is not None
    assert rejection_codes(kasmina.execute(output.command, epoch)) == ["stale_timestamp"]
    assert stage_of(kasmina) == pb.SEED_STAGE_DORMANT


def test_the_field_report_reaches_the_projection_and_esper_audit_seed(tmp_path: Path) -> None:
    _, kasmina, tamiyo, _ = setup()
    store = open_store(tmp_path / "log")
    try:
        applied: list[str] = []
        germinated = -1
        for epoch, loss in enumerate((*PLATEAU_LOSSES, 0.39, 0.38)):
            output = tamiyo.decide(
                packet(epoch, loss), context(epoch, kasmina.seed_states(), applied=applied)
            )
            log = list(output.events)
            applied = []
            if output.command is not None:
                effects = kasmina.execute(output.command, epoch)
                log.extend([output.command, *effects])
                applied = [output.command.event_id]
                germinated = epoch
            store.append(log)
        engine = open_db(resolve_url(tmp_path))
        catch_up(store, engine)
        audit = audit_seed(engine, f"{RUN_ID}.0")
    finally:
        store.close()
    assert germinated == 6
    (report,) = audit["field_reports"]
    assert report["outcome"] == "NEUTRAL" and report["blueprint_id"] == "BP023"  # accuracy held at 0.9
    assert report["delta_accuracy"] == 0.0
    assert (report["start_epoch"], report["end_epoch"]) == (6, 9)
    assert report["delta_loss"] == pytest.approx(PLATEAU_LOSSES[9] - PLATEAU_LOSSES[6])
    assert report["policy_version"] == "heuristic-1.0" and report["risk_at_decision"] == "GREEN"
    (command,) = audit["commands"]
    assert command["command_id"] == report["command_id"] and command["operation"] == "GERMINATE"
    decision = command["decision"]
    assert decision["policy_name"] == "heuristic" and decision["action"] == "germinate"
    assert audit["state"]["stage"] == "GERMINATED"

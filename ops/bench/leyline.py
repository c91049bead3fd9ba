"""Leyline serialization budgets: serialize/parse time, size and allocations; sign+verify time.

Budgets (SPEC §3): SystemStatePacket and AdaptationCommand serialize in < 80 µs, take < 280 bytes and
≤ 4 allocations; sign+verify < 50 µs. Allocations are counted with tracemalloc as the Python-heap blocks
an operation leaves allocated (its result included), over many repetitions, per operation.
"""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Callable

from google.protobuf.message import Message

from leyline import new_envelope, pb
from leyline.signing import Keyring, Signer, Verifier
from ops.bench import BenchOptions, Result, median_us

DESCRIPTION = "Leyline message serialize/parse/size/allocations and sign+verify"
SERIALIZE_BUDGET_US = 80.0
SIZE_BUDGET_BYTES = 280
ALLOCATION_BUDGET = 4
SIGN_VERIFY_BUDGET_US = 50.0


def sample_system_state() -> pb.SystemStatePacket:
    """An epoch's packet with 3 seeds and 8 metrics, as Tolaria builds it."""
    packet = pb.SystemStatePacket(
        epoch=42,
        global_step=12_345,
        training_loss=0.1834,
        training_accuracy=0.9512,
        validation_loss=0.2217,
        validation_accuracy=0.9381,
        run_id="r7f3a9c21",
        packet_id=int.from_bytes(os.urandom(8), "little"),
        hardware=pb.HardwareContext(device="cpu", memory_used_gb=1.7, memory_total_gb=24.0, utilization=0.83),
    )
    for name, value in {
        "lr": 0.01,
        "grad_norm": 1.73,
        "epoch_ms": 61.2,
        "hook_ms": 2.4,
        "samples_s": 2.1e4,
        "params": 1.2e3,
        "mem_gb": 1.7,
        "val_gap": 0.04,
    }.items():
        packet.metrics[name] = value
    stages = (pb.SEED_STAGE_TRAINING, pb.SEED_STAGE_BLENDING, pb.SEED_STAGE_DORMANT)
    for slot, stage in enumerate(stages):
        packet.seeds.add(
            slot=slot,
            seed_id=slot + 1,
            stage=stage,
            blueprint_id=f"BP00{slot + 2}",
            alpha=0.33 * slot,
            gradient_norm=0.5 + slot,
            age_epochs=3 + slot,
            risk=0.1 * slot,
        )
    return packet


def sample_command() -> pb.AdaptationCommand:
    return pb.AdaptationCommand(
        command_id="c7f3a9c21e0b4d55",
        command_type=pb.COMMAND_TYPE_SEED,
        target_seed_id=4,
        target_slot=1,
        seed_operation=pb.SeedOperationCommand(
            operation=pb.SEED_OP_GERMINATE,
            blueprint_id="BP009",
            parameters={"hidden": 16.0},
            alpha_ramp_epochs=3,
        ),
        execution_deadline_ms=1_795_000_000_500,
        issued_by="tamiyo",
        policy_version="heuristic-1.0",
        annotations={"reason": "plateau"},
        issued_at_ms=1_795_000_000_000,
    )


def sample_field_report() -> pb.FieldReport:
    return pb.FieldReport(
        report_id="f2c91d0a7b3e4f10",
        command_id="c7f3a9c21e0b4d55",
        run_id="r7f3a9c21",
        seed_id=4,
        slot=1,
        blueprint_id="BP009",
        outcome=pb.FIELD_REPORT_OUTCOME_SUCCESS,
        delta_accuracy=0.012,
        delta_loss=-0.031,
        delta_parameters=1_184,
        policy_version="heuristic-1.0",
        risk_at_decision=pb.RISK_LEVEL_GREEN,
        start_epoch=40,
        end_epoch=43,
    )


def count_allocations(operation: Callable[[], object], repetitions: int = 200) -> float:
    """Python-heap blocks left allocated per call (results kept alive so they are counted)."""
    kept: list[object] = [None] * repetitions
    operation()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for index in range(repetitions):
            kept[index] = operation()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
    diff = after.filter_traces(filters).compare_to(before.filter_traces(filters), "filename")
    blocks = sum(max(0, stat.count_diff) for stat in diff)
    return blocks / repetitions


def message_results(prefix: str, message: Message, iterations: int, budgeted: bool) -> list[Result]:
    data = message.SerializeToString()
    message_class = type(message)

    def parse() -> Message:
        parsed = message_class()
        parsed.ParseFromString(data)
        return parsed

    serialize_us = median_us(message.SerializeToString, iterations)
    parse_us = median_us(parse, iterations)
    allocations = count_allocations(message.SerializeToString)

    def budget(text: str, met: bool) -> tuple[str | None, bool | None]:
        return (text, met) if budgeted else (None, None)

    target, met = budget(f"< {SERIALIZE_BUDGET_US:g} µs", serialize_us < SERIALIZE_BUDGET_US)
    size_target, size_met = budget(f"< {SIZE_BUDGET_BYTES} bytes", len(data) < SIZE_BUDGET_BYTES)
    alloc_target, alloc_met = budget(f"<= {ALLOCATION_BUDGET}", allocations <= ALLOCATION_BUDGET)
    return [
        Result(f"{prefix}_serialize_us", serialize_us, "µs", target=target, met=met),
        Result(f"{prefix}_parse_us", parse_us, "µs"),
        Result(f"{prefix}_bytes", float(len(data)), "bytes", target=size_target, met=size_met),
        Result(f"{prefix}_allocations", allocations, "allocations", target=alloc_target, met=alloc_met),
    ]


def run(options: BenchOptions) -> list[Result]:
    iterations = 2_000 if options.quick else 20_000
    results: list[Result] = []
    for prefix, message, budgeted in (
        ("systemstate", sample_system_state(), True),
        ("command", sample_command(), True),
        ("fieldreport", sample_field_report(), False),
    ):
        options.progress(f"{prefix}: {iterations} iterations")
        results.extend(message_results(prefix, message, iterations, budgeted))

    keyring = Keyring.generate()
    signer, verifier = Signer(keyring), Verifier(keyring)
    envelope = new_envelope(
        "AdaptationCommandIssued",
        "command-c7f3a9c21e0b4d55",
        pb.AdaptationCommandIssued(command=sample_command()),
        run_id="r7f3a9c21",
        source="tamiyo",
    )

    def sign_verify() -> None:
        signer.sign(envelope)
        verifier.verify(envelope)

    sign_verify_us = median_us(sign_verify, iterations)
    results.append(
        Result(
            "sign_verify_us",
            sign_verify_us,
            "µs",
            target=f"< {SIGN_VERIFY_BUDGET_US:g} µs",
            met=sign_verify_us < SIGN_VERIFY_BUDGET_US,
        )
    )
    return results

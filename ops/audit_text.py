"""`esper audit` for people: each report (projections/audit) as a title line and tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ops.verification import VERIFIED


def table(title: str, rows: Sequence[Sequence[Any]], header: Sequence[str]) -> None:
    print(f"\n{title}")
    if not rows:
        print("  (none)")
        return
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(header[i]), *(len(row[i]) for row in cells)) for i in range(len(header))]
    print("  " + "  ".join(name.ljust(width) for name, width in zip(header, widths, strict=True)))
    print("  " + "  ".join("-" * width for width in widths))
    for row in cells:
        print("  " + "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _flag(row: dict[str, Any]) -> str:
    return f"superseded@{row['superseded_at']}" if row.get("superseded") else ""


def _gates(gates: list[dict[str, Any]] | None) -> str:
    return " ".join(f"{g['gate']}:{'pass' if g['passed'] else 'FAIL'}" for g in gates or []) or "-"


def _as_of(report: dict[str, Any]) -> str:
    return f" (as of position {report['as_of']})" if report.get("as_of") is not None else ""


def _outcomes(report: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(report["field_report_outcomes"].items())) or "none"


def _inputs(inputs: dict[str, Any] | None) -> str:
    """A decision's inputs summary (the risk engine's signals and what it read), one `name value` each."""
    return ", ".join(f"{name} {_cell(value)}" for name, value in sorted((inputs or {}).items())) or "-"


def print_seed(report: dict[str, Any]) -> None:
    state = report["state"]
    print(
        f"seed {report['seed']}{_as_of(report)}: stage {state['stage']}, "
        f"blueprint {state.get('blueprint_id', '-')}, "
        f"artifact {str(state.get('artifact_hash') or '-')[:12]}, violations {state['violations']}"
    )
    table(
        "history",
        [
            (
                h["position"],
                h["epoch"],
                h["event_type"],
                h["from_stage"],
                h["to_stage"],
                _gates(h["gates"]),
                h["command_id"],
                h["reason"],
                _flag(h),
            )
            for h in report["history"]
        ],
        ("pos", "epoch", "event", "from", "to", "gates", "command", "reason", ""),
    )
    table(
        "gradient window (RMS gradient norm per step; per parameter: norm / sqrt(parameters))",
        [
            (
                g["position"],
                g.get("epoch"),
                g.get("stage"),
                g.get("epochs_since_germination"),
                g.get("seed_gradient_norm"),
                g.get("host_gradient_norm"),
                g.get("seed_norm_per_parameter"),
                g.get("host_norm_per_parameter"),
                g["seed_to_host_per_parameter"],
                _flag(g),
            )
            for g in report.get("gradients", [])
        ],
        ("pos", "epoch", "stage", "age", "seed", "host", "seed/param", "host/param", "ratio", ""),
    )
    table(
        "commands and decisions",
        [
            (
                c["position"],
                c["command_id"],
                c["operation"] or c["command_type"],
                c["blueprint_id"],
                (c["decision"] or {}).get("policy_version"),
                (c["decision"] or {}).get("risk_level"),
                (c["decision"] or {}).get("action"),
                _flag(c),
            )
            for c in report["commands"]
        ],
        ("pos", "command", "operation", "blueprint", "policy", "risk", "action", ""),
    )
    _print_reports(report["field_reports"])


def _print_reports(reports: list[dict[str, Any]]) -> None:
    """Field reports; a germination's with the seed's contribution (validation loss at alpha 0 − alpha 1)
    and where the seed stood when the report closed, and why."""
    table(
        "field reports",
        [
            (
                r["position"],
                r["report_id"],
                r["outcome"],
                r["delta_accuracy"],
                r["delta_loss"],
                (r["metrics"] or {}).get("contribution"),
                r.get("seed_stage"),
                r.get("seed_reason"),
                r["policy_version"],
                f"{r['start_epoch']}-{r['end_epoch']}",
                _flag(r),
            )
            for r in reports
        ],
        ("pos", "report", "outcome", "Δacc", "Δloss", "contribution", "seed", "why", "policy", "epochs", ""),
    )


def print_run(report: dict[str, Any]) -> None:
    run = report["run"]
    print(
        f"run {run['run_id']}{_as_of(report)}: {run['status']}, last epoch {run['last_epoch']}, "
        f"{run['rollbacks']} rollback(s), {report['hook_overruns']} hook overrun(s), host {run['host_model']}"
    )
    table(
        "epochs",
        [
            (
                e["position"],
                e["epoch"],
                e["training_loss"],
                e["validation_loss"],
                e["validation_accuracy"],
                _flag(e),
            )
            for e in report["epochs"]
        ],
        ("pos", "epoch", "train loss", "val loss", "val acc", ""),
    )
    table(
        "checkpoints",
        [
            (c["position"], c["epoch"], c["content_hash"][:12], c["components"], _flag(c))
            for c in report["checkpoints"]
        ],
        ("pos", "epoch", "hash", "components", ""),
    )
    table(
        "rollbacks",
        [
            (
                b["position"],
                b["event_type"],
                b["target_epoch"],
                b["target_position"],
                f"{b['superseded_from']}-{b['superseded_to']}" if b["superseded_from"] else "-",
                b["reason"],
            )
            for b in report["rollbacks"]
        ],
        ("pos", "event", "to epoch", "to position", "superseded", "reason"),
    )
    table(
        "rejected commands",
        [
            (
                r["position"],
                r["epoch"],
                r["slot"],
                (r["command_id"] or "")[:12],
                r["code"],
                r["reason"],
                _flag(r),
            )
            for r in report["rejected"]
        ],
        ("pos", "epoch", "slot", "command", "code", "reason", ""),
    )
    table(
        "seeds",
        [(s["seed"], s["stage"], s.get("blueprint_id"), s.get("epoch")) for s in report["seeds"]],
        ("seed", "stage", "blueprint", "epoch"),
    )


def print_command(report: dict[str, Any]) -> None:
    print(f"command {report['command_id']}{_as_of(report)}")
    packet = report["state_packet"]
    if packet:
        print(
            f"  prompted by the state packet {packet['packet_id']} of run {packet['run_id']} "
            f"epoch {packet['epoch']} "
            f"(position {packet['position']}): val loss {_cell(packet['validation_loss'])}, "
            f"val acc {_cell(packet['validation_accuracy'])}"
        )
    decision = report["decision"]
    if decision:
        print(
            f"  decision at position {decision['position']}: {decision['action']} "
            f"by {decision['policy_name']} "
            f"{decision['policy_version']}, risk {decision['risk_level']}, {_cell(decision['latency_ms'])} ms"
            + (", conservative" if decision["conservative"] else "")
        )
        print(f"  reason: {decision['reason'] or '-'}")
        print(f"  risk inputs: {_inputs(decision['inputs'])}")
    command = report["command"]
    if command:
        check = command["verification"]
        what = (
            f"{command['command_type']} {command['operation'] or ''} "
            f"slot {command['target_slot']} blueprint {command['blueprint_id'] or '-'} {_flag(command)}"
        )
        if check["status"] == VERIFIED:
            print(f"  issued at position {command['position']}: {what} (verified, key {check['key_id']})")
        else:  # never shown as issued
            print(
                f"  NOT VERIFIED ({check['status']}: {check['reason']}), "
                f"recorded at position {command['position']}: {what}"
            )
    table(
        "effects",
        [
            (
                h["position"],
                h["stream"].removeprefix("seed-"),
                h["event_type"],
                h["from_stage"],
                h["to_stage"],
                _gates(h["gates"]),
                h["reason"],
                _flag(h),
            )
            for h in report["effects"]
        ],
        ("pos", "seed", "event", "from", "to", "gates", "reason", ""),
    )
    _print_reports(report["field_reports"])


def print_blueprint(report: dict[str, Any]) -> None:
    b = report["blueprint"]
    print(
        f"blueprint {b['blueprint_id']} {b['name'] or ''}{_as_of(report)}: tier {b['tier']}, "
        f"risk {_cell(b['risk'])}, "
        f"compile {b['compile_status'] or '-'}, artifact {str(b['artifact_hash'] or '-')[:12]}"
    )
    table(
        "compile jobs",
        [
            (
                j["queued_position"],
                j["job_id"],
                j["strategy"],
                j["status"],
                j["attempts"],
                " ".join(
                    f"{e['event_type'].removeprefix('CompileJob')}#{e['attempt'] or 0}" for e in j["events"]
                ),
                j["last_error"],
            )
            for j in report["compile_jobs"]
        ],
        ("pos", "job", "strategy", "status", "attempts", "events", "last error"),
    )
    table(
        "artifacts",
        [
            (a["stored_position"], a["artifact_hash"][:16], a["status"], a["size_bytes"], a["error"])
            for a in report["artifacts"]
        ],
        ("pos", "hash", "status", "bytes", "error"),
    )
    table(
        "grafts",
        [
            (g["position"], g["stream"].removeprefix("seed-"), g["command_id"], _flag(g))
            for g in report["grafts"]
        ],
        ("pos", "seed", "command", ""),
    )
    table(
        "how its seeds ended",
        [
            (
                e["position"],
                e["stream"].removeprefix("seed-"),
                e["epoch"],
                e["to_stage"],
                e["reason"],
                _flag(e),
            )
            for e in report["lifecycle_endings"]
        ],
        ("pos", "seed", "epoch", "stage", "reason", ""),
    )
    _print_reports(report["field_reports"])
    endings = "; ".join(
        f"{stage} {sum(causes.values())} ("
        + ", ".join(f"{cause} {count}" for cause, count in causes.items())
        + ")"
        for stage, causes in report["lifecycle_outcomes"].items()
    )
    print(f"\ncommands naming it: {report['commands']}")
    print(f"lifecycle outcomes: {endings or 'none'}")
    print(f"field report outcomes: {_outcomes(report)}")


def print_policy(report: dict[str, Any]) -> None:
    policy = report["policy"] or {}
    print(
        f"policy {report['version']}{_as_of(report)}: {policy.get('status', 'never trained here')}"
        + (", active" if policy.get("active") else "")
        + (f", hash {policy['content_hash'][:12]}" if policy.get("content_hash") else "")
        + (f", parent {policy['parent_version']}" if policy.get("parent_version") else "")
    )
    table(
        "events",
        [(e["position"], e["event_type"], e["epoch"], e["detail"]) for e in report["events"]],
        ("pos", "event", "epoch", "detail"),
    )
    print(f"\ndecisions made with it: {report['decisions']}; field report outcomes: {_outcomes(report)}")


PRINTERS = {
    "seed": print_seed,
    "run": print_run,
    "command": print_command,
    "blueprint": print_blueprint,
    "policy": print_policy,
}

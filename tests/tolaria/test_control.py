"""Nothing unsigned is applied; bad control input never kills a run (issue 20).

An operator's request reaches a live run as a signed envelope in a control file; the run verifies it with
the process's one Verifier and checks its epoch against the committed checkpoints. Anything else, whatever
the bytes, is a CommandRejected on the run's stream and the run goes on. On resume, a pending
RollbackRequested in the log is applied only if it is signed by a key on the ring.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domains.tolaria import control, rollback
from domains.tolaria.aggregate import fold, run_stream
from domains.tolaria.config import build_config
from domains.tolaria.trainer import Trainer
from eventstore import EventStore, open_store
from leyline import new_envelope, pb
from leyline.datadir import DataDir
from leyline.signing import Keyring, Signer, Verifier
from ops import compose
from tests.tolaria.helpers import SMALL, payloads, run_events

RUN = "rctl"
KEYRING = Keyring.generate("k1")


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Trainer, EventStore, DataDir]]:
    """A live run three epochs in, with a committed checkpoint at each epoch."""
    data_dir = DataDir(tmp_path)
    store = open_store(data_dir.log)
    trainer = compose.build_trainer(
        build_config({**SMALL, "epochs": 40}), RUN, store, data_dir, keyring=KEYRING
    )
    trainer.start()
    for _ in range(3):
        trainer.run_epoch()
    trainer.sink.flush()
    try:
        yield trainer, store, data_dir
    finally:
        trainer.sink.close()
        store.close()


def request(target: int = 2, run_id: str = RUN) -> pb.RollbackRequested:
    return pb.RollbackRequested(run_id=run_id, target_epoch=target, requested_by="operator:test", reason="t")


def signed(target: int = 2, keyring: Keyring = KEYRING, run_id: str = RUN) -> pb.EventEnvelope:
    return control.signed_request(Signer(keyring), request(target, run_id))


def plant(data_dir: DataDir, content: bytes) -> None:
    path = data_dir.create().rollback_request(RUN)
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)


def rejections(data_dir: DataDir) -> list[pb.CommandRejected]:
    return payloads(run_events(data_dir.root, RUN), "CommandRejected")


def tampered() -> bytes:
    envelope = signed(2)
    forged = request(1)
    envelope.payload = forged.SerializeToString()
    return envelope.SerializeToString()


def stale() -> bytes:
    envelope = new_envelope("RollbackRequested", run_stream(RUN), request(2), run_id=RUN)
    envelope.occurred_at_ns = time.time_ns() - 3_600 * 10**9
    return Signer(KEYRING).sign(envelope).SerializeToString()


# Each case's content is made when its test runs: a signed request made at collection would be minutes old
# by the time a full suite reaches it, and the verifier refuses requests older than its 60 s clock window.
BAD_INPUT: dict[str, tuple[Callable[[], bytes], str]] = {
    "not an envelope": (lambda: b"{not json", "malformed"),
    "the old JSON format": (
        lambda: b'{"request_id": "x", "request": {"runId": "rctl", "targetEpoch": 2}}',
        "malformed",
    ),
    "empty": (lambda: b"", "malformed"),
    "over the size limit": (lambda: b"\x00" * (control.CONTENT_LIMIT + 1), "malformed"),
    "unsigned": (
        lambda: new_envelope("RollbackRequested", run_stream(RUN), request(2)).SerializeToString(),
        "unsigned",
    ),
    "a forger's key": (lambda: signed(2, Keyring.generate("k1")).SerializeToString(), "bad_signature"),
    "an unknown key": (lambda: signed(2, Keyring.generate("evil")).SerializeToString(), "unknown_key"),
    "tampered after signing": (tampered, "bad_signature"),
    "another run's": (lambda: signed(2, run_id="rother").SerializeToString(), "malformed"),
    "epoch 9999": (lambda: signed(9999).SerializeToString(), "no_checkpoint"),
    "an uncommitted epoch": (lambda: signed(4).SerializeToString(), "no_checkpoint"),
    "stale": (stale, "stale_timestamp"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_control_input_is_rejected_and_the_run_goes_on(
    live: tuple[Trainer, EventStore, DataDir], case: str
) -> None:
    trainer, _, data_dir = live
    make, code = BAD_INPUT[case]
    plant(data_dir, make())
    trainer.run_epoch()
    trainer.run_epoch()
    trainer.sink.flush()
    assert trainer.epoch == 5 and trainer.rollbacks == 0
    (rejected,) = rejections(data_dir)
    assert rejected.code == code, rejected.reason
    assert not data_dir.rollback_request(RUN).exists()
    assert payloads(run_events(data_dir.root, RUN), "RollbackRequested") == []


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=600))
def test_any_bytes_in_a_control_file_are_refused_without_an_exception(
    live: tuple[Trainer, EventStore, DataDir], content: bytes
) -> None:
    trainer, _, data_dir = live
    plant(data_dir, content)
    pending, refused = rollback.operator_request(trainer, trainer.epoch)
    assert pending is None
    assert [e.event_type for e in refused] == ["CommandRejected"]
    assert not data_dir.rollback_request(RUN).exists()


def test_a_signed_request_is_applied_and_recorded_signed_by_the_run(
    live: tuple[Trainer, EventStore, DataDir],
) -> None:
    trainer, _, data_dir = live
    envelope = signed(2)
    control.deliver(data_dir, envelope)
    trainer.run_epoch()
    trainer.sink.flush()
    assert trainer.epoch == 2 and trainer.rollbacks == 1
    (recorded,) = [e for e in run_events(data_dir.root, RUN) if e.event_type == "RollbackRequested"]
    assert recorded.event_id == envelope.event_id  # `esper rollback --wait` finds it by this id
    Verifier(KEYRING).verify_recorded(recorded)
    # the same signed bytes delivered again are a replay
    control.deliver(data_dir, envelope)
    trainer.run_epoch()
    trainer.sink.flush()
    assert trainer.rollbacks == 1 and [r.code for r in rejections(data_dir)] == ["replayed_nonce"]


def test_a_directory_where_the_control_file_goes_is_not_a_request(
    live: tuple[Trainer, EventStore, DataDir],
) -> None:
    trainer, _, data_dir = live
    data_dir.rollback_request(RUN).mkdir(parents=True)
    trainer.run_epoch()
    trainer.sink.flush()
    assert trainer.epoch == 4 and rejections(data_dir) == []


# ---------------------------------------------------------------------- resume


def interrupted_with(data_dir: DataDir, pending: pb.EventEnvelope) -> None:
    """A run killed after 3 epochs, with `pending` (a RollbackRequested) appended to its log after."""
    store = open_store(data_dir.log)
    trainer = compose.build_trainer(
        build_config({**SMALL, "epochs": 5}), RUN, store, data_dir, keyring=KEYRING
    )
    trainer.start()
    for _ in range(3):
        trainer.run_epoch()
    trainer.sink.close()
    store.append([pending])
    store.close()


def run_request(keyring: Keyring | None) -> pb.EventEnvelope:
    envelope = new_envelope("RollbackRequested", run_stream(RUN), request(2), run_id=RUN, epoch=3)
    return Signer(keyring).sign(envelope) if keyring is not None else envelope


@pytest.mark.parametrize(
    ("keyring", "code"),
    [
        (None, "unsigned"),
        (Keyring.generate("evil"), "unknown_key"),
        (Keyring.generate("k1"), "bad_signature"),
    ],
)
def test_an_unsigned_or_forged_request_in_the_log_is_not_applied_on_resume(
    tmp_path: Path, keyring: Keyring | None, code: str
) -> None:
    data_dir = DataDir(tmp_path)
    interrupted_with(data_dir, run_request(keyring))
    assert fold(run_events(tmp_path, RUN)).pending_rollback is not None
    store = open_store(data_dir.log)
    try:
        trainer = compose.resume(store, data_dir, RUN, keyring=KEYRING)
        assert trainer.epoch == 3 and trainer.rollbacks == 0
        summary = trainer.run()
    finally:
        store.close()
    assert summary.rollbacks == 0 and summary.epochs == 5
    events = run_events(tmp_path, RUN)
    assert payloads(events, "RollbackCompleted") == []
    (rejected,) = payloads(events, "CommandRejected")
    assert rejected.code == code
    assert fold(events).pending_rollback is None


def test_a_request_the_run_signed_is_applied_on_resume(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path)
    interrupted_with(data_dir, run_request(KEYRING))
    store = open_store(data_dir.log)
    try:
        trainer = compose.resume(store, data_dir, RUN, keyring=KEYRING)
        assert trainer.epoch == 2 and trainer.rollbacks == 1
        trainer.run()
    finally:
        store.close()
    (completed,) = payloads(run_events(tmp_path, RUN), "RollbackCompleted")
    assert completed.target_epoch == 2

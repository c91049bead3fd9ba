from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from leyline import decode_envelope, new_envelope, pb
from leyline.errors import (
    BadSignature,
    DecodeError,
    KeyConfigError,
    ReplayedNonce,
    SignatureError,
    StaleTimestamp,
    UnknownKey,
)
from leyline.signing import Keyring, Signer, Verifier


def command_envelope() -> pb.EventEnvelope:
    command = pb.AdaptationCommand(
        command_id="c9",
        command_type=pb.COMMAND_TYPE_SEED,
        target_slot=1,
        seed_operation=pb.SeedOperationCommand(operation=pb.SEED_OP_CULL),
        issued_by="tamiyo",
    )
    return new_envelope(
        "AdaptationCommandIssued", "command-c9", pb.AdaptationCommandIssued(command=command), run_id="r1"
    )


def test_sign_then_verify() -> None:
    keyring = Keyring.generate()
    envelope = Signer(keyring).sign(command_envelope())
    Verifier(keyring).verify(envelope)
    assert envelope.key_id == keyring.current and len(envelope.nonce) == 16 and len(envelope.hmac) == 32


def test_store_assigned_fields_are_outside_the_signature() -> None:
    keyring = Keyring.generate()
    envelope = Signer(keyring).sign(command_envelope())
    envelope.global_position = 77
    envelope.stream_version = 3
    Verifier(keyring).verify(envelope)


def test_any_single_byte_change_fails() -> None:
    keyring = Keyring.generate()
    data = Signer(keyring).sign(command_envelope()).SerializeToString()
    now = time.time_ns()
    for index in range(len(data)):
        for flip in (0x01, 0x80, 0xFF):
            mutated = bytearray(data)
            mutated[index] ^= flip
            with pytest.raises((DecodeError, SignatureError)):
                Verifier(keyring).verify(decode_envelope(bytes(mutated)), now_ns=now)


def test_replayed_nonce_is_rejected_within_the_window() -> None:
    keyring = Keyring.generate()
    envelope = Signer(keyring).sign(command_envelope())
    verifier = Verifier(keyring)
    verifier.verify(envelope, now_ns=envelope.occurred_at_ns)
    with pytest.raises(ReplayedNonce):
        verifier.verify(envelope, now_ns=envelope.occurred_at_ns + 1_000)


def test_nonces_are_forgotten_after_the_window() -> None:
    keyring = Keyring.generate()
    verifier = Verifier(keyring, nonce_window_s=300, max_skew_s=10_000)
    envelope = Signer(keyring).sign(command_envelope())
    verifier.verify(envelope, now_ns=envelope.occurred_at_ns)
    verifier.verify(envelope, now_ns=envelope.occurred_at_ns + 301 * 10**9)


@pytest.mark.parametrize("skew_s", [-61, 61])
def test_stale_or_future_timestamp_is_rejected(skew_s: int) -> None:
    keyring = Keyring.generate()
    envelope = Signer(keyring).sign(command_envelope())
    with pytest.raises(StaleTimestamp):
        Verifier(keyring).verify(envelope, now_ns=envelope.occurred_at_ns - skew_s * 10**9)


def test_unknown_key_is_rejected() -> None:
    envelope = Signer(Keyring.generate("old")).sign(command_envelope())
    with pytest.raises(UnknownKey, match="old"):
        Verifier(Keyring.generate("new")).verify(envelope)


def test_forged_signature_with_another_secret_is_rejected() -> None:
    envelope = Signer(Keyring.generate("k1")).sign(command_envelope())
    with pytest.raises(BadSignature):
        Verifier(Keyring.generate("k1")).verify(envelope)


def test_rotation_without_downtime() -> None:
    old = Keyring.generate("k1")
    new_secret = Keyring.generate("k2").keys["k2"]
    in_flight = Signer(old).sign(command_envelope())
    verifiers = Keyring({"k1": old.keys["k1"], "k2": new_secret}, current="k1")
    signers = Keyring({"k1": old.keys["k1"], "k2": new_secret}, current="k2")
    verifier = Verifier(verifiers)
    verifier.verify(in_flight)
    verifier.verify(Signer(signers).sign(command_envelope()))


def test_keys_from_environment() -> None:
    env = {"ESPER_SIGNING_KEYS": f"a:{'11' * 32},b:{'22' * 32}"}
    keyring = Keyring.from_env(env)
    assert keyring is not None and keyring.current == "b" and keyring.keys["a"] == b"\x11" * 32
    keyring = Keyring.from_env({**env, "ESPER_SIGNING_KEY_ID": "a"})
    assert keyring is not None and keyring.current == "a"
    assert Keyring.from_env({}) is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [("a:zz", "not hex"), ("a:1122", "must be 32"), ("nocolon", "must look like")],
)
def test_malformed_environment_keys(spec: str, message: str) -> None:
    with pytest.raises(KeyConfigError, match=message):
        Keyring.from_env({"ESPER_SIGNING_KEYS": spec})


def test_key_file_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    created = Keyring.load_or_create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = Keyring.from_env({"ESPER_SIGNING_KEY_FILE": str(path)})
    assert loaded is not None and loaded.keys == created.keys and loaded.current == created.current
    path.write_text(json.dumps({"keys": {}}))
    with pytest.raises(KeyConfigError, match="malformed"):
        Keyring.from_file(path)
    with pytest.raises(KeyConfigError, match="does not exist"):
        Keyring.from_file(tmp_path / "missing.json")

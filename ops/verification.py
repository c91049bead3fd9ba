"""Whether a recorded command was verified, for `esper audit command`.

A command is verified when its AdaptationCommandIssued envelope in the log carries a signature that a
key of this keyring (ESPER_SIGNING_KEYS / ESPER_SIGNING_KEY_FILE, else `<data-dir>/keys.json`) checks, and
no receiver refused it for its signature (a CommandRejected with a signature code among its effects).
Anything else is not shown as issued: a failed check is "unverified", and without a key to check with
the answer is "unknown".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventstore import EventStore
from leyline import stream_name
from leyline.datadir import DataDir
from leyline.errors import KeyConfigError, SignatureError
from leyline.signing import SIGNATURE_CODES, Keyring, Verifier

VERIFIED = "verified"
UNVERIFIED = "unverified"
UNKNOWN = "unknown"


def command_verification(
    store: EventStore, data_dir: DataDir, command_id: str, effects: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """{"status": verified|unverified|unknown, "reason": why, "key_id": the key it names}."""
    issued = [e for e in store.read_stream(stream_name("command", command_id)) if e.event_id == command_id]
    if not issued:
        return {"status": UNVERIFIED, "reason": "no signed AdaptationCommandIssued in the log", "key_id": ""}
    envelope = issued[-1]
    codes = set(SIGNATURE_CODES.values())
    for effect in effects:
        code = (effect.get("detail") or {}).get("code", "")
        if effect.get("event_type") == "CommandRejected" and code in codes:
            reason = f"refused by its receiver ({code}): {effect.get('reason') or ''}".strip()
            return {"status": UNVERIFIED, "reason": reason, "key_id": envelope.key_id}
    if not envelope.hmac:
        return {"status": UNVERIFIED, "reason": "the command is not signed", "key_id": ""}
    try:
        keyring = Keyring.existing_for_data_dir(data_dir)
    except KeyConfigError as exc:
        return {"status": UNKNOWN, "reason": f"no usable signing key here: {exc}", "key_id": envelope.key_id}
    if keyring is None:
        reason = "no signing key here to check it with (set the run's keys)"
        return {"status": UNKNOWN, "reason": reason, "key_id": envelope.key_id}
    try:
        Verifier(keyring).verify_recorded(envelope)
    except SignatureError as exc:
        code = SIGNATURE_CODES.get(type(exc), "bad_signature")
        return {"status": UNVERIFIED, "reason": f"{code}: {exc}", "key_id": envelope.key_id}
    return {"status": VERIFIED, "reason": "signature checks with the keyring", "key_id": envelope.key_id}

"""HMAC-SHA256 signing of envelopes, with key rotation, nonce replay window and timestamp skew.

What is signed: the canonical bytes of the envelope with `hmac`, `stream_version` and `global_position`
cleared (the last two are assigned by the store after signing). key_id, nonce and occurred_at_ns are
inside the signed bytes, so none of them can be swapped.

Keys: a keyring of key ids → 32-byte secrets. Sign with the current key; verify with any key on the
ring. Rotation without downtime: add the new key to every verifier's ring, then make it current on the
signers, then retire the old key once no signed message in flight uses it (README, "Key rotation").

Where keys come from (never from the repository):
- ESPER_SIGNING_KEYS="kid1:<64 hex>,kid2:<64 hex>" with ESPER_SIGNING_KEY_ID naming the current key
  (default: the last listed), or
- ESPER_SIGNING_KEY_FILE=path to a JSON file {"current": "kid2", "keys": {"kid1": "<hex>", ...}}, or
- `Keyring.load_or_create(path)`: the data directory's own key file, created with mode 0600 on first use.
A key file the group or others may access is refused (as ssh refuses such a private key).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

from leyline import leyline_pb2 as pb
from leyline.datadir import DataDir, is_private, private_temporary, sync_directory, write_private
from leyline.errors import (
    BadSignature,
    KeyConfigError,
    ReplayedNonce,
    SignatureError,
    StaleTimestamp,
    UnknownKey,
)

KEY_BYTES = 32
NONCE_BYTES = 16
NONCE_WINDOW_S = 300.0
MAX_SKEW_S = 60.0


# The code each verification failure is recorded with (CommandRejected.code), wherever a command is refused.
SIGNATURE_CODES: Mapping[type[SignatureError], str] = {
    BadSignature: "bad_signature",
    ReplayedNonce: "replayed_nonce",
    StaleTimestamp: "stale_timestamp",
    UnknownKey: "unknown_key",
}


class Keyring:
    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        for key_id, secret in keys.items():
            if not key_id:
                raise KeyConfigError("a signing key has an empty key id")
            if len(secret) != KEY_BYTES:
                raise KeyConfigError(f"signing key {key_id!r} is {len(secret)} bytes; it must be {KEY_BYTES}")
        if current not in keys:
            raise KeyConfigError(f"current signing key {current!r} is not on the keyring {sorted(keys)}")
        self.keys = dict(keys)
        self.current = current

    @classmethod
    def generate(cls, key_id: str = "k1") -> Keyring:
        return cls({key_id: secrets.token_bytes(KEY_BYTES)}, key_id)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Keyring | None:
        """The keyring configured in the environment, or None when nothing is configured."""
        if path := environ.get("ESPER_SIGNING_KEY_FILE"):
            return cls.from_file(Path(path))
        spec = environ.get("ESPER_SIGNING_KEYS")
        if not spec:
            return None
        keys: dict[str, bytes] = {}
        for item in spec.split(","):
            key_id, sep, hex_secret = item.strip().partition(":")
            if not sep:
                raise KeyConfigError("ESPER_SIGNING_KEYS must look like 'kid1:<64 hex>,kid2:<64 hex>'")
            keys[key_id] = _parse_hex(key_id, hex_secret)
        return cls(keys, environ.get("ESPER_SIGNING_KEY_ID") or list(keys)[-1])

    @classmethod
    def from_file(cls, path: Path) -> Keyring:
        """The keyring in a key file, refused (as ssh refuses a private key) when the group or others may
        read or write it."""
        try:
            mode = path.stat().st_mode
            if not is_private(mode):
                raise KeyConfigError(
                    f"signing key file {path} is accessible by group or others (mode {mode & 0o777:o}); "
                    f"it must be private: chmod 600 {path}"
                )
            document = json.loads(path.read_text())
            keys = {key_id: _parse_hex(key_id, value) for key_id, value in document["keys"].items()}
            return cls(keys, document["current"])
        except FileNotFoundError:
            raise KeyConfigError(f"signing key file {path} does not exist") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeyConfigError(
                f"signing key file {path} is malformed ({exc}); expected "
                '{"current": "kid", "keys": {"kid": "<64 hex chars>"}}'
            ) from None

    @classmethod
    def for_data_dir(cls, data_dir: DataDir) -> Keyring:
        """The signing keys of a data directory's processes: from the environment, else its own key file,
        created on first use."""
        return cls.from_env() or cls.load_or_create(data_dir.keys)

    @classmethod
    def existing_for_data_dir(cls, data_dir: DataDir) -> Keyring | None:
        """As `for_data_dir`, but None instead of creating a key file (for commands that only read)."""
        return cls.from_env() or (cls.from_file(data_dir.keys) if data_dir.keys.exists() else None)

    @classmethod
    def load_or_create(cls, path: Path) -> Keyring:
        """The key file's keyring; a new one when there is none. Two processes creating it at once agree:
        the file is linked into place only if absent, and the loser reads the winner's keys."""
        if path.exists():
            return cls.from_file(path)
        keyring = cls.generate()
        temporary = private_temporary(path, keyring._document())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return cls.from_file(path)
        finally:
            temporary.unlink()
        sync_directory(path.parent)
        return keyring

    def save(self, path: Path) -> None:
        """Write the keyring to path (replacing it) through a private temporary file."""
        write_private(path, self._document())

    def _document(self) -> bytes:
        document = {"current": self.current, "keys": {k: v.hex() for k, v in self.keys.items()}}
        return json.dumps(document).encode()


def _parse_hex(key_id: str, value: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise KeyConfigError(f"signing key {key_id!r} is not hex") from None


def canonical_bytes(envelope: pb.EventEnvelope) -> bytes:
    unsigned = pb.EventEnvelope()
    unsigned.CopyFrom(envelope)
    unsigned.ClearField("hmac")
    unsigned.ClearField("stream_version")
    unsigned.ClearField("global_position")
    return unsigned.SerializeToString(deterministic=True)


def _digest(secret: bytes, envelope: pb.EventEnvelope) -> bytes:
    return hmac.new(secret, canonical_bytes(envelope), hashlib.sha256).digest()


class Signer:
    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def sign(self, envelope: pb.EventEnvelope) -> pb.EventEnvelope:
        """Sign in place (and return) the envelope with the current key and a fresh nonce."""
        envelope.key_id = self.keyring.current
        envelope.nonce = secrets.token_bytes(NONCE_BYTES)
        if not envelope.occurred_at_ns:
            envelope.occurred_at_ns = time.time_ns()
        envelope.hmac = _digest(self.keyring.keys[self.keyring.current], envelope)
        return envelope


class Verifier:
    """Verifies signatures; remembers nonces for the replay window (in this process)."""

    def __init__(
        self,
        keyring: Keyring,
        nonce_window_s: float = NONCE_WINDOW_S,
        max_skew_s: float = MAX_SKEW_S,
    ) -> None:
        self.keyring = keyring
        self.nonce_window_ns = int(nonce_window_s * 1e9)
        self.max_skew_ns = int(max_skew_s * 1e9)
        self._seen: OrderedDict[bytes, int] = OrderedDict()

    def verify(self, envelope: pb.EventEnvelope, now_ns: int | None = None) -> None:
        """Raise UnknownKey, BadSignature, StaleTimestamp or ReplayedNonce; return None if valid."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        self.verify_recorded(envelope)
        skew = envelope.occurred_at_ns - now_ns
        if abs(skew) > self.max_skew_ns:
            raise StaleTimestamp(
                f"event {envelope.event_id} is {skew / 1e9:+.1f} s from now; "
                f"allowed ±{self.max_skew_ns / 1e9:.0f} s"
            )
        self._forget_before(now_ns - self.nonce_window_ns)
        if envelope.nonce in self._seen:
            raise ReplayedNonce(f"nonce of event {envelope.event_id} was already used")
        self._seen[envelope.nonce] = now_ns

    def verify_recorded(self, envelope: pb.EventEnvelope) -> None:
        """Raise UnknownKey or BadSignature unless a signed envelope read back from the log is authentic.
        Freshness and nonces guard a delivery, not a record: an event appended long ago is still valid."""
        secret = self.keyring.keys.get(envelope.key_id)
        if secret is None:
            raise UnknownKey(f"key id {envelope.key_id!r} is not on the verifier's keyring")
        if not hmac.compare_digest(_digest(secret, envelope), envelope.hmac):
            raise BadSignature(f"signature of event {envelope.event_id} does not verify")

    def _forget_before(self, cutoff_ns: int) -> None:
        while self._seen:
            nonce, seen_at = next(iter(self._seen.items()))
            if seen_at >= cutoff_ns:
                break
            del self._seen[nonce]

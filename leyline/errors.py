"""Typed errors of the Leyline contracts."""

from __future__ import annotations


class LeylineError(Exception):
    """Base of every error raised by the leyline package."""


class DecodeError(LeylineError):
    """Bytes that are not a valid envelope or payload of the named event type."""

    def __init__(self, event_type: str, reason: str) -> None:
        super().__init__(f"cannot decode {event_type or 'event'}: {reason}")
        self.event_type = event_type
        self.reason = reason


class RegistryError(LeylineError):
    """The event-type registry is inconsistent (duplicate type, gap or duplicate in an upcaster chain)."""


class UnknownEventType(RegistryError):
    def __init__(self, event_type: str) -> None:
        super().__init__(f"unknown event type {event_type!r}: register it in leyline.registry")
        self.event_type = event_type


class SignatureError(LeylineError):
    """A signed envelope failed verification."""


class BadSignature(SignatureError):
    pass


class ReplayedNonce(SignatureError):
    pass


class StaleTimestamp(SignatureError):
    pass


class UnknownKey(SignatureError):
    pass


class KeyConfigError(LeylineError):
    """Signing keys are missing or malformed in the environment or key file."""

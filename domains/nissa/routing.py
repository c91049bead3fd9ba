"""Where alerts of record go besides the log: a webhook (POST JSON, retries with backoff, failures counted)
and a file of JSON lines. A channel failure never stops Nissa: it is counted and the next alert is sent."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from google.protobuf.json_format import MessageToDict

from domains.nissa.metrics import NOTIFICATIONS, WEBHOOK_ATTEMPTS, WEBHOOK_FAILURES
from leyline import decode_payload, pb


def notification(envelope: pb.EventEnvelope) -> dict[str, Any]:
    """The JSON document a channel receives for an AlertFired/AlertResolved event."""
    alert = decode_payload(envelope)
    assert isinstance(alert, pb.Alert)
    return {
        "status": "firing" if envelope.event_type == "AlertFired" else "resolved",
        "event_type": envelope.event_type,
        "event_id": envelope.event_id,
        "position": envelope.global_position,
        "occurred_at_ns": envelope.occurred_at_ns,
        "run_id": envelope.run_id or None,
        "alert": MessageToDict(
            alert, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        ),
    }


class Channel(Protocol):
    name: str

    def send(self, document: dict[str, Any]) -> None:
        """Deliver one notification or raise."""
        ...


class WebhookChannel:
    """POST each notification as JSON; a failed attempt (error or non-2xx) is retried after an exponential
    backoff, `attempts` times in all; giving up counts esper_nissa_webhook_failures_total and raises."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        attempts: int = 5,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.sleep = sleep

    def send(self, document: dict[str, Any]) -> None:
        body = json.dumps(document).encode()
        error = ""
        for attempt in range(self.attempts):
            if attempt:
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
            request = urllib.request.Request(
                self.url, body, method="POST", headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    WEBHOOK_ATTEMPTS.labels(str(response.status)).inc()
                    return
            except urllib.error.HTTPError as exc:
                WEBHOOK_ATTEMPTS.labels(str(exc.code)).inc()
                error = f"HTTP {exc.code}"
            except OSError as exc:
                WEBHOOK_ATTEMPTS.labels("error").inc()
                error = str(exc)
        WEBHOOK_FAILURES.inc()
        raise OSError(f"webhook {self.url} failed {self.attempts} times; last: {error}")


class FileChannel:
    """Append each notification as one JSON line, flushed and fsynced."""

    name = "file"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def send(self, document: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(document, sort_keys=True) + "\n"
        with self._lock, open(self.path, "a") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())


class Router:
    def __init__(self, channels: Sequence[Channel]) -> None:
        self.channels = list(channels)
        self.last_error: str | None = None

    def route(self, envelope: pb.EventEnvelope) -> None:
        document = notification(envelope)
        for channel in self.channels:
            try:
                channel.send(document)
                NOTIFICATIONS.labels(channel.name, "sent").inc()
            except OSError as exc:
                NOTIFICATIONS.labels(channel.name, "failed").inc()
                self.last_error = f"{channel.name}: {exc}"

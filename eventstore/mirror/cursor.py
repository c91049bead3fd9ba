"""The mirror's durable cursor in the data directory: the last mirrored position and each consumer
group's passed position, so that groups are recreated where they were after Redis lost its data."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from eventstore.api import EventStoreError
from eventstore.mirror.redis_keys import redacted
from leyline.datadir import DataDir


@dataclass
class MirrorCursor:
    """The mirror's durable state in the data directory (atomic write, fsynced)."""

    log_id: str = ""
    position: int = 0
    groups: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> MirrorCursor:
        try:
            document = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            raise EventStoreError(
                f"mirror cursor {path} is unreadable ({exc}); delete it to reseed"
            ) from None
        return cls(
            log_id=str(document["log_id"]),
            position=int(document["position"]),
            groups={
                key: {g: int(p) for g, p in groups.items()} for key, groups in document["groups"].items()
            },
        )

    def copy(self) -> MirrorCursor:
        return replace(self, groups=dict(self.groups))

    def save(self, path: Path, extra: Mapping[str, str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {**extra, "log_id": self.log_id, "position": self.position, "groups": self.groups}
        temporary = path.with_suffix(".tmp")
        with open(temporary, "w") as handle:
            json.dump(document, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def cursor_path(data_dir: Path, redis_url: str, prefix: str) -> Path:
    """One cursor per (Redis server, prefix): mirroring to two servers keeps two cursors."""
    digest = hashlib.sha256(f"{redacted(redis_url)}|{prefix}".encode()).hexdigest()[:12]
    return DataDir.of(data_dir).mirror / f"cursor-{prefix}-{digest}.json"

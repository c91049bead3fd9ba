"""The data directory: the one place that names every path under it.

Everything a run, a command or a read model keeps on disk lives under one directory (`--data-dir`,
default `./esper-data`): the event log, Urza's artifacts, Tolaria's checkpoints, the control files that
deliver an operator's rollback, the mirror's cursors, the signing keys and the SQLite projection database.
`DataDir(root)` names each of them; no other module spells a name under the data directory. It sits on
the ground floor because the event store, the projections, the domains and ops all use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LOG = "log"
ARTIFACTS = "artifacts"
CHECKPOINTS = "checkpoints"
CONTROL = "control"
POLICIES = "policies"
MIRROR = "mirror"
KEYS = "keys.json"
PROJECTIONS_DB = "projections.sqlite"


@dataclass(frozen=True)
class DataDir:
    root: Path

    @classmethod
    def of(cls, location: DataDir | Path | str) -> DataDir:
        """A DataDir from a path, or the DataDir itself."""
        return location if isinstance(location, DataDir) else cls(Path(location))

    @property
    def log(self) -> Path:
        """The file event store's directory of WAL segments."""
        return self.root / LOG

    @property
    def artifacts(self) -> Path:
        """Urza's content-addressed library of compiled seed modules."""
        return self.root / ARTIFACTS

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @staticmethod
    def checkpoint_name(sha256: str) -> str:
        """A checkpoint's path relative to the root, as its CheckpointCommitted manifest records it."""
        return f"{CHECKPOINTS}/{sha256}.ckpt"

    def resolve(self, relative: str) -> Path:
        """A path a log event records relative to the data directory (a checkpoint's manifest path)."""
        return self.root / relative

    @property
    def control(self) -> Path:
        """Operator requests to a live run (rollback files)."""
        return self.root / CONTROL

    def rollback_request(self, run_id: str) -> Path:
        return self.control / f"rollback-{run_id}.json"

    def policy_request(self, run_id: str) -> Path:
        """An operator's policy activation or rollback for a live run (`esper policy activate|rollback`)."""
        return self.control / f"policy-{run_id}.json"

    @property
    def policies(self) -> Path:
        """Tamiyo's content-addressed policy artifacts (`<sha256>.pt`)."""
        return self.root / POLICIES

    def policy_artifact(self, sha256: str) -> Path:
        return self.policies / f"{sha256}.pt"

    @property
    def mirror(self) -> Path:
        """The Redis mirror's durable cursors."""
        return self.root / MIRROR

    @property
    def keys(self) -> Path:
        """The signing keyring created on first use when no key comes from the environment."""
        return self.root / KEYS

    @property
    def projections_db(self) -> Path:
        """The SQLite projection database (unless a PostgreSQL URL is given)."""
        return self.root / PROJECTIONS_DB

"""The data directory: the one place that names every path under it.

Everything a run, a command or a read model keeps on disk lives under one directory (`--data-dir`,
default `./esper-data`): the event log, Urza's artifacts, Tolaria's checkpoints, the control files that
deliver an operator's rollback, the mirror's cursors, the signing keys and the SQLite projection database.
`DataDir(root)` names each of them; no other module spells a name under the data directory. It sits on
the ground floor because the event store, the projections, the domains and ops all use it.

Privacy: the directory holds signing keys, checkpoints and the whole log, so everything under it is
private to its owner (directories 0700, files 0600) whatever the umask. `DataDir.create()` is the one
place that makes it so: it creates the root 0700 and narrows the process's umask by 077 before anything is
written, so every directory and file that the store, Urza, the checkpoints, the mirror, the projection
database or the keyring create under it afterwards is private without each of them choosing a mode. Every
command and every run that writes under a data directory calls it first.
"""

from __future__ import annotations

import os
import secrets
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

PRIVATE_DIRECTORY_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
NOT_FOR_OTHERS = 0o077  # the group's and others' permission bits
TEMPORARY_ATTEMPTS = 16


def private_umask() -> None:
    """Narrow this process's umask by 077, so whatever it creates from now on is private to its owner."""
    os.umask(os.umask(NOT_FOR_OTHERS) | NOT_FOR_OTHERS)


def is_private(mode: int) -> bool:
    """Whether a file mode grants the group and others nothing."""
    return mode & NOT_FOR_OTHERS == 0


def private_temporary(path: Path, data: bytes) -> Path:
    """A new file beside path, mode 0600, holding data (fsynced), for the caller to rename or link over
    path. It is created with O_EXCL|O_NOFOLLOW under an unpredictable name: nothing planted beside path
    (a symlink to somewhere else, a file) is ever followed or written through."""
    path.parent.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    for _ in range(TEMPORARY_ATTEMPTS):
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(temporary, flags, PRIVATE_FILE_MODE)
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), PRIVATE_FILE_MODE)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return temporary
    raise FileExistsError(f"cannot create a temporary file beside {path}: every name tried exists")


def write_private(path: Path, data: bytes) -> None:
    """Replace path atomically with a private (0600) file holding data, through `private_temporary`."""
    os.replace(private_temporary(path, data), path)
    sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    """fsync a directory, so that a rename or link in it survives a crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class DataDir:
    root: Path

    @classmethod
    def of(cls, location: DataDir | Path | str) -> DataDir:
        """A DataDir from a path, or the DataDir itself."""
        return location if isinstance(location, DataDir) else cls(Path(location))

    def create(self) -> DataDir:
        """Make the root exist (0700 when created here) and everything created under it from now on in this
        process private (`private_umask`); returns self. Call it before writing under the data directory."""
        private_umask()
        if not self.root.is_dir():
            self.root.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
            os.chmod(self.root, PRIVATE_DIRECTORY_MODE)
        return self

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
        return self.control / f"rollback-{run_id}.request"  # a signed, serialized envelope

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

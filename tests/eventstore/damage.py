"""Damage for tests: the commit records a crash leaves behind, and arbitrary damage to a store's files."""

from __future__ import annotations

from pathlib import Path

from hypothesis import strategies as st

from eventstore.file import HEAD_FILE, INDEX_FILE
from eventstore.file.head import DURABLE_CHECK, DURABLE_STRUCT, HEAD_STRUCT


def as_if_crashed(log: Path, acknowledged: int) -> None:
    """Record what a writer that died after acknowledging `acknowledged` events leaves: no INDEX saved
    since (a crash skips close) and HEAD's durable head at `acknowledged`. Cutting records after that
    position is then a torn write; cutting one at or before it is a lost commit."""
    (log / INDEX_FILE).unlink(missing_ok=True)
    with (log / HEAD_FILE).open("r+b") as head:
        head.seek(HEAD_STRUCT.size)
        head.write(DURABLE_STRUCT.pack(acknowledged, acknowledged ^ DURABLE_CHECK))


FILES = ["wal", "INDEX", "HEAD", "LOCK", "STORE"]
DAMAGE = st.lists(
    st.tuples(
        st.sampled_from(["truncate", "flip", "garbage", "drop"]), st.sampled_from(FILES), st.floats(0, 1)
    ),
    max_size=3,
)


def damage(log: Path, steps: list[tuple[str, str, float]]) -> None:
    """Apply (kind, file, where) steps: truncate at, flip a byte at, append a frame-like tail to, or
    delete the file (a segment picked by `where` for "wal")."""
    for kind, target, where in steps:
        candidates = sorted(log.glob("*.wal")) if target == "wal" else [log / target]
        candidates = [path for path in candidates if path.exists()]
        if not candidates:
            continue
        path = candidates[int(where * (len(candidates) - 1))]
        data = bytearray(path.read_bytes())
        cut = int(where * len(data))
        if kind == "truncate":
            data = data[:cut]
        elif kind == "flip" and data:
            data[min(cut, len(data) - 1)] ^= 0x5A
        elif kind == "garbage":
            data += b"\xe5\x5e\x01\x7a" + bytes(range(40))
        if kind == "drop":
            path.unlink()
        else:
            path.write_bytes(bytes(data))

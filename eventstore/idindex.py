"""The idempotency index of the file store: event-id fingerprint → global position, in bounded memory.

Structure: keys are 64-bit fingerprints of event ids (wal.fingerprints), stored with their
positions as a small number of sorted numpy runs (uint64 keys, uint64 positions: 16 bytes per event,
160 MB for 10 M events, against ~1–2 GB for a dict of strings) plus a table of the most recent entries
(walbatch.FpTable: compiled open addressing over two uint64 arrays, or dicts where it is not built).
When the table reaches RECENT_LIMIT it is sorted into a new run and runs of similar size are merged
(a log-structured merge: O(log n) runs, amortised O(log n) work per insert). A lookup is one table probe
and one binary search per run; a batch looks up all its keys with one vectorised search per run.

Why fingerprints and not the ids: fixed-size keys make the arrays compact and searchable without
Python objects per entry. Two different ids can share a fingerprint (about 3 in a million chance
across 10 M events), so a hit is only a *candidate*: the store reads the event at that position and
compares the event id before treating an append as a duplicate. The index is rebuilt from the log's
frames on open (each frame carries its fingerprint), which is what makes idempotency durable across
restarts without a second file to keep consistent.
"""

from __future__ import annotations

from array import array

import numpy as np

from eventstore import walbatch

RECENT_LIMIT = 1 << 16


class IdIndex:
    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []
        self._recent = walbatch.FpTable()  # fingerprint -> positions (several where fingerprints collide)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, fp: int, position: int) -> None:
        self.add_many([fp], [position])

    def add_many(self, fps: walbatch.Fps, positions: walbatch.Fps | range) -> None:
        """Add a batch of entries (a range of positions, from the writer, in one compiled call); lists
        and arrays ("Q") go to the table as they are."""
        if isinstance(positions, range):
            if positions.step == 1:
                self._recent.add_run(fps, positions.start)
            else:
                self._recent.add_many(fps, list(positions))
        else:
            self._recent.add_many(fps, positions)
        self._count += len(fps)
        if len(self._recent) >= RECENT_LIMIT:
            self._seal()

    def bulk_load(self, fps: array, positions: array) -> None:
        """Add many entries at once (recovery): one sort instead of many inserts."""
        if not fps:
            return
        keys = np.frombuffer(fps, dtype=np.uint64).copy()
        values = np.frombuffer(positions, dtype=np.uint64).copy()
        order = np.argsort(keys, kind="stable")
        self._push_run(keys[order], values[order])
        self._count += len(keys)

    def candidates(self, fps: walbatch.Fps) -> dict[int, list[int]]:
        """Index in fps → positions stored under that fingerprint, for the fingerprints found."""
        found = self._recent.find(fps) if len(self._recent) else {}
        if not self._runs or not fps:
            return found
        query = np.asarray(fps, dtype=np.uint64)
        for keys, values in self._runs:
            left = np.searchsorted(keys, query, side="left")
            right = np.searchsorted(keys, query, side="right")
            for hit in np.nonzero(right > left)[0]:
                found.setdefault(int(hit), []).extend(int(v) for v in values[left[hit] : right[hit]])
        return found

    def runs(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every entry as sorted runs (the recent entries sealed first), for the index checkpoint."""
        if len(self._recent):
            self._seal()
        return list(self._runs)

    def load_runs(self, runs: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Start from the runs of a checkpoint (replacing nothing: call on an empty index)."""
        for keys, values in runs:
            self._push_run(keys, values)
            self._count += len(keys)

    def memory_bytes(self) -> int:
        runs = sum(keys.nbytes + values.nbytes for keys, values in self._runs)
        return runs + self._recent.nbytes()

    def _seal(self) -> None:
        keys, positions = (np.frombuffer(data, dtype=np.uint64) for data in self._recent.items())
        self._recent.clear()
        order = np.lexsort((positions, keys))
        self._push_run(keys[order], positions[order])

    def _push_run(self, keys: np.ndarray, values: np.ndarray) -> None:
        self._runs.append((keys, values))
        while len(self._runs) > 1 and len(self._runs[-2][0]) <= 2 * len(self._runs[-1][0]):
            newer_keys, newer_values = self._runs.pop()
            older_keys, older_values = self._runs.pop()
            merged_keys = np.concatenate((older_keys, newer_keys))
            merged_values = np.concatenate((older_values, newer_values))
            order = np.argsort(merged_keys, kind="stable")
            self._runs.append((merged_keys[order], merged_values[order]))

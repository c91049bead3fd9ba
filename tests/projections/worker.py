"""Subprocesses for the crash and blue/green tests.

python -m tests.projections.worker catch-up STORE_DIR DB_URL BATCH_SIZE
python -m tests.projections.worker read DB_URL EXPECTED_JSON READY_FILE STOP_FILE
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sqlalchemy import Engine, func, select

from eventstore import open_store
from projections import catch_up
from projections.batches import GREEN_SUFFIX
from projections.db import create_db_engine
from projections.schema import metadata, projection_checkpoints


def run_catch_up(store_dir: str, url: str, batch_size: str) -> int:
    store = open_store(store_dir, create=False)
    catch_up(store, url, batch_size=int(batch_size))
    store.close()
    return 0


def view(engine: Engine) -> dict[str, dict[str, int]]:
    """Every read-model table's row count and the live checkpoints, read in one transaction."""
    with engine.connect() as connection, connection.begin():
        counts = {
            table.name: int(connection.execute(select(func.count()).select_from(table)).scalar() or 0)
            for table in metadata.sorted_tables
            if table is not projection_checkpoints
        }
        checkpoints = {row.name: row.position for row in connection.execute(select(projection_checkpoints))}
    return {
        "counts": counts,
        "checkpoints": {k: v for k, v in checkpoints.items() if not k.endswith(GREEN_SUFFIX)},
    }


def read_until_stopped(url: str, expected_file: str, ready_file: str, stop_file: str) -> int:
    """Read the view over and over until told to stop; any difference from the expected one fails."""
    expected = json.loads(Path(expected_file).read_text())
    engine = create_db_engine(url)
    reads = 0
    while not Path(stop_file).exists():
        seen = view(engine)
        if seen != expected:
            differences = {
                key: {"seen": value, "expected": expected[part].get(key)}
                for part in ("counts", "checkpoints")
                for key, value in seen[part].items()
                if expected[part].get(key) != value
            }
            print(f"read {reads + 1} differs: {json.dumps(differences)}", file=sys.stderr)
            return 1
        reads += 1
        if reads == 1:
            Path(ready_file).touch()
    print(reads)
    return 0


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    if command == "catch-up":
        sys.exit(run_catch_up(*arguments))
    sys.exit(read_until_stopped(*arguments))

"""The alembic migrations and the SQLAlchemy models agree, on SQLite and PostgreSQL; `esper db`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from ops.cli import main
from projections import default_projections, stale
from projections.db import create_db_engine, current_revision, head_revision, open_db, upgrade
from projections.schema import metadata, projection_checkpoints
from tests.projections.helpers import postgres_database


def differences(url: str) -> list[object]:
    engine = open_db(url)
    try:
        with engine.connect() as connection:
            return list(compare_metadata(MigrationContext.configure(connection), metadata))
    finally:
        engine.dispose()


def test_models_and_migrations_agree_on_sqlite(tmp_path: Path) -> None:
    assert differences(f"sqlite:///{tmp_path / 'p.sqlite'}") == []


@pytest.mark.postgres
def test_models_and_migrations_agree_on_postgres() -> None:
    with postgres_database() as url:
        assert differences(url) == []


def test_open_upgrades_and_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.sqlite'}"
    open_db(url).dispose()
    engine = open_db(url)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_db_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "status", "--data-dir", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["up_to_date"] is False
    assert main(["db", "upgrade", "--data-dir", str(tmp_path)]) == 0
    assert f"upgraded from empty to {head_revision()}" in capsys.readouterr().out
    assert main(["db", "upgrade", "--data-dir", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["from"] == head_revision()
    assert (tmp_path / "projections.sqlite").exists()


def test_db_command_on_an_unreachable_database_is_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ops.cli", "db", "upgrade", "--db", "postgresql://nobody@127.0.0.1:1/none"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("esper db: ")


def test_upgrade_from_0001_then_only_the_changed_projection_is_stale(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.sqlite'}"
    engine = create_db_engine(url)
    upgrade(engine, "0001")
    assert "metrics_json" in {c["name"] for c in inspect(engine).get_columns("run_epochs")}
    with engine.begin() as connection:
        connection.execute(
            projection_checkpoints.insert(),
            [
                {"name": p.name, "position": 10, "version": 1, "updated_at_ns": 0}
                for p in default_projections()
            ],
        )
    engine.dispose()
    engine = open_db(url)
    columns = {c["name"] for c in inspect(engine).get_columns("run_epochs")}
    assert "packet" in columns and "metrics_json" not in columns
    # runs (0002), and those whose rows issue 14 changed (seed_lifecycle, field_reports, blueprint_catalog)
    assert sorted(stale(engine)) == ["blueprint_catalog", "field_reports", "runs", "seed_lifecycle"]
    engine.dispose()

"""The blueprint catalogue read model honours BlueprintApproved, and a later re-registration (changed
metadata) keeps the approval; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select

from leyline import new_envelope, pb
from projections import catch_up, open_db, schema
from tests.projections.helpers import postgres_database, to_store


def registered(blueprint_id: str, description: str) -> pb.EventEnvelope:
    descriptor = pb.BlueprintDescriptor(
        blueprint_id=blueprint_id,
        tier=pb.BLUEPRINT_TIER_EXPERIMENTAL,
        requires_approval=True,
        description=description,
    )
    return new_envelope(
        "BlueprintRegistered", f"blueprint-{blueprint_id}", pb.BlueprintRegistered(descriptor=descriptor)
    )


@contextmanager
def database(backend: str, directory: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'p.sqlite'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_an_approval_is_projected_and_survives_a_reregistration(tmp_path: Path, backend: str) -> None:
    approved = new_envelope(
        "BlueprintApproved", "blueprint-BP036", pb.BlueprintApproved(blueprint_id="BP036", approved_by="op")
    )
    log = [registered("BP036", "v1"), registered("BP037", "v1"), approved, registered("BP036", "v2")]
    store = to_store(tmp_path / "log", log)
    with database(backend, tmp_path) as url:
        engine = open_db(url)
        try:
            catch_up(store, engine)
            b = schema.blueprints
            with engine.connect() as connection:
                rows = connection.execute(select(b.c.blueprint_id, b.c.approved, b.c.description)).all()
        finally:
            engine.dispose()
    store.close()
    assert sorted(tuple(row) for row in rows) == [("BP036", True, "v2"), ("BP037", False, "v1")]

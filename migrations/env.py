"""alembic environment for the projection database (see projections/db.py for how it is invoked).

`projections.db.upgrade` hands in an open connection through `config.attributes["connection"]`; run from
the alembic command line, the URL comes from `sqlalchemy.url` or $ESPER_DB_URL.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection, create_engine

from projections.db import ENV_DB_URL, driver_url
from projections.schema import metadata


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get(ENV_DB_URL)
    if not url:
        raise SystemExit(f"set sqlalchemy.url or {ENV_DB_URL} to the projection database")
    with create_engine(driver_url(url)).connect() as own_connection:
        run(own_connection)
        own_connection.commit()


main()

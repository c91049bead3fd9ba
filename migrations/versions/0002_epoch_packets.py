"""run_epochs keeps the serialized state packet instead of its metrics and seeds as JSON

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 00:35:00

The runs projection is at version 2 with this schema: `esper rebuild` (no names) rebuilds it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run_epochs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("packet", sa.LargeBinary(), nullable=True))
        batch_op.drop_column("metrics_json")
        batch_op.drop_column("seeds_json")


def downgrade() -> None:
    with op.batch_alter_table("run_epochs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seeds_json", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("metrics_json", sa.Text(), nullable=True))
        batch_op.drop_column("packet")

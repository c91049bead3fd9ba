"""projection_checkpoints records where a projection stopped: the event it cannot apply, and why

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 10:10:00

A projection that cannot decode or apply an event stops just below it while the others go on (issue 20);
`esper rebuild NAME` clears the record.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projection_checkpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("error_position", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("error_event_type", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("projection_checkpoints", schema=None) as batch_op:
        batch_op.drop_column("error")
        batch_op.drop_column("error_event_type")
        batch_op.drop_column("error_position")

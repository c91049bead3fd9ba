"""field_reports say where a germination's seed ended and why (seed_stage, seed_reason)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 12:45:00

A germination's field report closes when its seed reaches a terminal stage (issue 14): the audit shows that
stage and its reason beside the outcome and the measured contribution.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("field_reports", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seed_stage", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("seed_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("field_reports", schema=None) as batch_op:
        batch_op.drop_column("seed_reason")
        batch_op.drop_column("seed_stage")

"""Which service instance ran each call: several agent hosts can share one database, and a
host that restarts after a crash closes only the calls it had (CallStore.close_open_calls).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as calls:
        calls.add_column(sa.Column("host", sa.String(128), nullable=True))
        calls.create_index("ix_calls_host", ["host"])


def downgrade() -> None:
    with op.batch_alter_table("calls") as calls:
        calls.drop_index("ix_calls_host")
        calls.drop_column("host")

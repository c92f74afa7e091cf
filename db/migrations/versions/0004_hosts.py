"""Agent hosts sharing the database say they are alive: a host silent past a timeout has died,
and another finishes the calls it left open (CallStore.close_calls_of_silent_hosts).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from db.schema import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("hosts",
                    sa.Column("name", sa.String(128), primary_key=True),
                    sa.Column("last_seen", UTCDateTime(), nullable=False))


def downgrade() -> None:
    op.drop_table("hosts")

"""What a review needs on the call and the turn: who was called, why it ended as it did, where a
transfer went, what answering-machine detection decided; the reply of an agent turn the caller cut
short, as far as it was generated (``text`` stays what was heard).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as calls:
        calls.add_column(sa.Column("callee", sa.String(128), nullable=True))
        calls.add_column(sa.Column("disposition", sa.String(256), nullable=True))
        calls.add_column(sa.Column("transfer_target", sa.String(256), nullable=True))
        calls.add_column(sa.Column("amd_result", sa.String(32), nullable=True))
    with op.batch_alter_table("turns") as turns:
        turns.add_column(sa.Column("full_text", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("turns") as turns:
        turns.drop_column("full_text")
    with op.batch_alter_table("calls") as calls:
        for name in ("amd_result", "transfer_target", "disposition", "callee"):
            calls.drop_column(name)

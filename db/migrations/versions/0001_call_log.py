"""The call log as first released: calls, turns with their timings, events.

Databases made before migrations existed (create_all) have exactly this schema; `db.migrate`
stamps them at this revision instead of creating anything.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from db.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("caller", sa.String(128), nullable=True),
        sa.Column("agent", sa.String(128), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("answered_at", UTCDateTime(), nullable=True),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column("end_reason", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(64), nullable=True),
        sa.Column("media", sa.String(64), nullable=True),
        sa.Column("recording_path", sa.String(1024), nullable=True),
        sa.Column("recording_s", sa.Float(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("metadata_json", sa.Text(), nullable=True),
    )
    op.create_index("ix_calls_started_at", "calls", ["started_at"])
    op.create_table(
        "turns",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(36), sa.ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
        sa.Column("turn_index", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("interrupted", sa.Boolean(), nullable=False),
        *(sa.Column(name, sa.Float(), nullable=True) for name in (
            "speech_end_ms", "endpoint_ms", "stt_done_ms", "llm_first_token_ms", "tts_first_audio_ms",
            "first_frame_ms", "barge_in_ms", "stt_confidence")),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("call_id", "turn_index", name="uq_turns_call_index"),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(36), sa.ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
        sa.Column("t_ms", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("detail_json", sa.Text(), nullable=True),
    )
    op.create_index("ix_events_call_t", "events", ["call_id", "t_ms"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("turns")
    op.drop_index("ix_calls_started_at", "calls")
    op.drop_table("calls")

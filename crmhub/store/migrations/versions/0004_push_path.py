"""push path: outbox projection hashes, push watermarks, retry / rejected / echo counts

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 17:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_NEW_COUNTS = ("retries", "rejected", "echoed")


def upgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        for name in _NEW_COUNTS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("projection_hash", sa.String(length=32), nullable=True))
    op.create_index(
        op.f("ix_outbox_target_stream_external_id"),
        "outbox",
        ["target", "stream", "external_id"],
    )
    op.create_table(
        "push_plans",
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("planned_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("target", "stream", name=op.f("pk_push_plans")),
    )


def downgrade() -> None:
    op.drop_table("push_plans")
    op.drop_index(op.f("ix_outbox_target_stream_external_id"), table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("projection_hash")
    with op.batch_alter_table("sync_runs") as batch:
        for name in reversed(_NEW_COUNTS):
            batch.drop_column(name)

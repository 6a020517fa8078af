"""source records remember the content hash they were matched with

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("source_records") as batch:
        batch.add_column(sa.Column("matched_hash", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("source_records") as batch:
        batch.drop_column("matched_hash")

"""source records deleted in their system: indexed, so an erasure finds them without a scan

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 20:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_DELETED = "deleted_at IS NOT NULL"


def upgrade() -> None:
    op.create_index(
        "ix_source_records_deleted",
        "source_records",
        ["id"],
        sqlite_where=sa.text(_DELETED),
        postgresql_where=sa.text(_DELETED),
    )


def downgrade() -> None:
    op.drop_index("ix_source_records_deleted", table_name="source_records")

"""indexes for matching one record at a time: waiting records, covering key lookups

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# As crmhub.store.schema.PENDING_MATCH at this revision (a migration never imports the live
# schema: it must keep creating what it created).
_PENDING = (
    "(deleted_at IS NULL AND (matched_hash IS NULL OR matched_hash <> content_hash))"
    " OR (deleted_at IS NOT NULL AND (matched_hash IS NULL OR matched_hash <> 'deleted'))"
)


def upgrade() -> None:
    op.create_index(
        "ix_source_records_pending",
        "source_records",
        ["id"],
        sqlite_where=sa.text(_PENDING),
        postgresql_where=sa.text(_PENDING),
    )
    op.create_index(
        op.f("ix_match_keys_kind_value_source_record_id"),
        "match_keys",
        ["kind", "value", "source_record_id"],
    )
    op.drop_index(op.f("ix_match_keys_kind_value"), table_name="match_keys")


def downgrade() -> None:
    op.create_index(op.f("ix_match_keys_kind_value"), "match_keys", ["kind", "value"])
    op.drop_index(op.f("ix_match_keys_kind_value_source_record_id"), table_name="match_keys")
    op.drop_index("ix_source_records_pending", table_name="source_records")

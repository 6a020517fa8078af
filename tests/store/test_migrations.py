"""Migrations create every table of the schema, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from crmhub.store import current_revision, head_revision, open_engine, require_current, upgrade
from crmhub.store.schema import metadata

DESIGN_TABLES = {
    "source_records", "match_keys", "customers", "links", "match_pairs", "overrides",
    "activities", "sync_state", "sync_runs", "quarantine", "outbox", "push_state",
    "audit_log", "privacy_requests", "privacy_tasks", "suppressions", "principals",
    "dedupe_models",
}  # fmt: skip


def test_upgrade_creates_every_table_of_the_design(engine: Engine) -> None:
    assert set(inspect(engine).get_table_names()) >= DESIGN_TABLES
    assert current_revision(engine) == head_revision()


def test_migrations_match_the_table_definitions(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_upgrade_twice_is_a_no_op(engine: Engine) -> None:
    before, after = upgrade(engine)
    assert before == after == head_revision()


def test_require_current_refuses_an_empty_database(database_url: str) -> None:
    import pytest

    from crmhub.errors import StoreError

    empty = open_engine(database_url)
    try:
        with pytest.raises(StoreError, match="crmhub init"):
            require_current(empty)
    finally:
        empty.dispose()

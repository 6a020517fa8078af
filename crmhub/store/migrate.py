"""Schema migrations: create a new hub, upgrade an old one, tell where a database stands."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from crmhub.errors import StoreError

__all__ = ["current_revision", "head_revision", "is_empty", "require_current", "upgrade"]

_MIGRATIONS = Path(__file__).with_name("migrations")


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest schema revision this version of crmhub knows."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None for a database crmhub never touched)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_empty(engine: Engine) -> bool:
    """Whether the database holds no tables at all."""
    return not inspect(engine).get_table_names()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Migrate the database to ``revision``; returns (revision before, revision after)."""
    before = current_revision(engine)
    config = _alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    return before, current_revision(engine) or ""


def require_current(engine: Engine) -> None:
    """Raise a :class:`StoreError` saying what to run unless the schema is at head."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    if current is None:
        raise StoreError(
            "this database is not a crmhub hub yet: run `crmhub init` or `crmhub db upgrade`"
        )
    raise StoreError(
        f"the hub schema is at revision {current}, this crmhub needs {head}: "
        "run `crmhub db upgrade`"
    )

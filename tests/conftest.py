"""Shared fixtures: a fresh hub database on each backend.

PostgreSQL tests run when ``CRMHUB_TEST_POSTGRES_URL`` names a server (``.ci/run`` starts one
and sets it); without it they are skipped with that reason, unless
``CRMHUB_REQUIRE_POSTGRES=1`` (as in CI), where a missing server is an error.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import structlog
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from crmhub.store import open_engine, upgrade

POSTGRES_ENV = "CRMHUB_TEST_POSTGRES_URL"


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """Tests that configure logging must not leak their configuration into others."""
    yield
    structlog.reset_defaults()


def _postgres_admin_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if os.environ.get("CRMHUB_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"CRMHUB_REQUIRE_POSTGRES=1 but {POSTGRES_ENV} is not set")
        pytest.skip(f"no PostgreSQL server: set {POSTGRES_ENV}=postgresql://user@host/db")
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped after the test."""
    admin_url = make_url(_postgres_admin_url()).set(drivername="postgresql+psycopg")
    name = f"crmhub_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    """A new SQLite hub file in the test's folder."""
    return f"sqlite:///{tmp_path}/hub.db"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """A new, empty database on each backend."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated hub database on each backend."""
    hub_engine = open_engine(database_url)
    upgrade(hub_engine)
    yield hub_engine
    hub_engine.dispose()

"""Opening the hub database: one place for connection settings of both backends.

SQLite (the embedded default) runs with WAL, foreign keys and ``secure_delete`` on, so deleted
personal data is overwritten rather than left in free pages. PostgreSQL is reached through
psycopg 3. Error messages never include the password of a database URL.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from crmhub.errors import StoreError

__all__ = ["is_sqlite", "open_engine", "safe_url", "sqlite_path"]


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def safe_url(url: str | URL) -> str:
    """The URL as text with any password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


def is_sqlite(engine_or_url: Engine | str | URL) -> bool:
    """Whether the engine or URL is SQLite."""
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.get_backend_name() == "sqlite"


def sqlite_path(url: str | URL) -> Path | None:
    """The database file of a SQLite URL (None for in-memory or non-SQLite URLs)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def open_engine(url: str | URL, *, echo: bool = False) -> Engine:
    """Create an engine for the hub database and check that it can be reached.

    Raises:
        StoreError: if the URL is malformed, its driver is missing, or the database cannot be
            opened; the message says which and never includes the password.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError("database URL is not valid (expected e.g. sqlite:///crmhub.db)") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    kwargs: dict[str, Any] = {"echo": echo, "json_serializer": _json_dumps}
    if backend == "sqlite":
        path = sqlite_path(parsed)
        if path is not None and not path.parent.exists():
            raise StoreError(f"cannot open {safe_url(parsed)}: folder {path.parent} does not exist")
    elif backend == "postgresql":
        kwargs["pool_pre_ping"] = True
    else:
        raise StoreError(f"unsupported database {backend!r}: use sqlite or postgresql")
    try:
        engine = create_engine(parsed, **kwargs)
    except NoSuchModuleError:
        raise StoreError(f"no driver for {safe_url(parsed)}") from None
    except ModuleNotFoundError as exc:
        hint = " (pip install 'crmhub[postgres]')" if backend == "postgresql" else ""
        raise StoreError(f"driver {exc.name!r} is not installed{hint}") from None
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        engine.dispose()
        original = getattr(exc, "orig", None)
        reason = _first_line(original) if original is not None else type(exc).__name__
        raise StoreError(f"cannot open {safe_url(parsed)}: {reason}") from None
    return engine


def _first_line(error: BaseException | None) -> str:
    message = str(error).strip().splitlines()
    return message[0] if message else type(error).__name__


def _sqlite_on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    # Let SQLAlchemy, not pysqlite, decide where transactions begin (see _sqlite_on_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA secure_delete=ON")
    # NORMAL is durable across process crashes in WAL mode; only power loss can drop the
    # last commits, never corrupt the database.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    # pysqlite's own implicit transactions are off (see _sqlite_on_connect); this makes
    # SAVEPOINT and transactional DDL behave as on PostgreSQL.
    conn.exec_driver_sql("BEGIN")

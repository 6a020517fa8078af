"""Bulk writes for matching: a full pass writes millions of keys, links and marks.

Rows are plain tuples, already in the form the driver takes, and go to its ``executemany``
in large batches through a statement compiled once per table and column set: no dict, no
SQLAlchemy row processing per row. Values needing conversion (timestamps on SQLite) are
converted by the caller, once per distinct value (:func:`driver_value`); JSON goes as text
that was serialised once (PostgreSQL casts the text to ``jsonb``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from itertools import islice
from typing import Any

from sqlalchemy import Column, Table, bindparam, insert, update
from sqlalchemy.engine import Connection, Dialect

__all__ = [
    "BATCH_ROWS",
    "REBUILD_ROWS",
    "driver_value",
    "indexes_rebuilt",
    "insert_rows",
    "larger_cache",
    "update_rows",
]

REBUILD_ROWS = 50_000
"""Rows written at once past which a table's secondary indexes are dropped and built again
afterwards on SQLite (see :func:`indexes_rebuilt`)."""

BATCH_ROWS = 50_000
"""Rows per ``executemany`` call: large enough that the per-call cost vanishes, small enough
that one batch of tuples stays a few megabytes."""


@contextmanager
def larger_cache(conn: Connection, megabytes: int) -> Iterator[None]:
    """On SQLite, a page cache of ``megabytes`` for the connection meanwhile (restored after:
    pooled connections are reused). A full pass rewrites most pages of the hub in one
    transaction; with the default cache, pages spill to the log and are written again, which
    measured a third of the pass's time at 100,000 records. PostgreSQL: no change."""
    if conn.dialect.name != "sqlite":
        yield
        return
    before = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    conn.exec_driver_sql(f"PRAGMA cache_size=-{int(megabytes) * 1024}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size={int(before or 0)}")
        conn.exec_driver_sql("PRAGMA shrink_memory")


@contextmanager
def indexes_rebuilt(conn: Connection, table: Table, rows: int) -> Iterator[None]:
    """On SQLite, when ``rows`` rows of ``table`` are about to be written (at least
    :data:`REBUILD_ROWS`), drop its secondary indexes meanwhile and build them again after.

    Each row written under an index updates it at its own place; building an index sorts
    once. Measured at a million rows: updating every record's customer took 23 s under its
    two indexes, 13 s with them dropped and rebuilt (2 s of that). Unique constraints stay
    (they are part of the table). Inside the caller's transaction: a crash leaves the
    indexes as they were, and SQLite readers keep seeing the last commit. PostgreSQL: no
    change (its readers would wait on the dropped index until the commit).
    """
    if conn.dialect.name != "sqlite" or rows < REBUILD_ROWS:
        yield
        return
    indexes = sorted((i for i in table.indexes if not i.unique), key=lambda i: str(i.name))
    for index in indexes:
        index.drop(conn)
    yield
    for index in indexes:
        index.create(conn)


def driver_value(conn: Connection, column: Column[Any], value: Any) -> Any:
    """``value`` as the driver takes it for ``column`` (the column type's own conversion:
    on SQLite a timestamp becomes the text SQLAlchemy stores and reads back)."""
    if value is None:
        return None
    process = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return process(value) if process is not None else value


def _batches(rows: Iterable[Sequence[Any]], size: int) -> Iterator[Sequence[Sequence[Any]]]:
    if isinstance(rows, list):
        for start in range(0, len(rows), size):
            yield rows[start : start + size]
        return
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def _run(
    conn: Connection,
    sql: str,
    names: tuple[str, ...],
    positional: bool,
    rows: Iterable[Sequence[Any]],
) -> int:
    count = 0
    for batch in _batches(rows, BATCH_ROWS):
        parameters: Sequence[Any] = (
            batch if positional else [dict(zip(names, row, strict=True)) for row in batch]
        )
        conn.exec_driver_sql(sql, parameters)
        count += len(batch)
    return count


def insert_rows(
    conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> int:
    """Insert ``rows`` (tuples of ``columns``' values, driver-ready); returns how many."""
    sql, names, positional, order = _insert_sql(conn.dialect, table, tuple(columns))
    return _run(conn, sql, names, positional, _reordered(rows, order))


def update_rows(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    key: str,
    rows: Iterable[Sequence[Any]],
) -> int:
    """Set ``columns`` of the row whose ``key`` is each row's last value, to its first
    values (driver-ready); returns how many rows were given."""
    sql, names, positional, order = _update_sql(conn.dialect, table, tuple(columns), key)
    return _run(conn, sql, names, positional, _reordered(rows, order))


def _reordered(
    rows: Iterable[Sequence[Any]], order: tuple[int, ...] | None
) -> Iterable[Sequence[Any]]:
    if order is None:
        return rows

    def pick(row: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(row[i] for i in order)

    return map(pick, rows)


def _layout(
    compiled: Any, given: tuple[str, ...]
) -> tuple[str, tuple[str, ...], bool, tuple[int, ...] | None]:
    """The statement text, the parameter names in the order rows give their values, whether
    the driver takes them by position, and (if it does and that order differs from the
    statement's) the positions to take each parameter from."""
    positional = bool(compiled.positional)
    if not positional:
        return str(compiled), given, False, None
    wanted = tuple(compiled.positiontup or ())
    order = tuple(given.index(name) for name in wanted)
    return str(compiled), given, True, None if order == tuple(range(len(given))) else order


@lru_cache(maxsize=64)
def _insert_sql(
    dialect: Dialect, table: Table, columns: tuple[str, ...]
) -> tuple[str, tuple[str, ...], bool, tuple[int, ...] | None]:
    compiled = insert(table).compile(dialect=dialect, column_keys=list(columns))
    return _layout(compiled, columns)


@lru_cache(maxsize=64)
def _update_sql(
    dialect: Dialect, table: Table, columns: tuple[str, ...], key: str
) -> tuple[str, tuple[str, ...], bool, tuple[int, ...] | None]:
    names = (*(f"v_{name}" for name in columns), "k_key")
    statement = (
        update(table)
        .where(table.c[key] == bindparam("k_key"))
        .values({name: bindparam(f"v_{name}") for name in columns})
    )
    return _layout(statement.compile(dialect=dialect), names)

"""The only place that speaks one backend's SQL: upserts, which SQLite and PostgreSQL both
spell ``INSERT ... ON CONFLICT`` but SQLAlchemy builds per dialect.

Upserts are the hot path of every sync, so the statement is compiled once per table and
column set, and rows go to the driver's ``executemany`` with values converted by the
columns' own SQLAlchemy type processors: the same stored values as a Core ``execute``, at a
third of its per-row cost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from typing import Any, TypeVar

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect

__all__ = ["MAX_IN_VALUES", "RawJson", "in_chunks", "lock_hub", "select_by_keys", "upsert"]

MAX_IN_VALUES = 2000
"""Values per ``IN`` list, well under every backend's parameter limit (SQLite: 32,766)."""

T = TypeVar("T")


def in_chunks(values: Sequence[T], size: int = MAX_IN_VALUES) -> Iterator[list[T]]:
    """``values`` in lists small enough for one ``IN (...)`` each."""
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


_LOCK_KEY = 0x63726D68  # "crmh": the advisory lock of hub-wide writes on PostgreSQL


def lock_hub(conn: Connection) -> None:
    """Take the hub's write lock until the transaction ends.

    Matching, merges and the audit chain read state and write what follows from it; two
    writers doing that at once could fork the audit chain or cluster on a stale view.
    PostgreSQL takes a transaction-scoped advisory lock; SQLite takes its database write
    lock now instead of at the first write (a no-op write does that).
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
    else:
        conn.exec_driver_sql("DELETE FROM audit_log WHERE 0")


class RawJson(str):
    """JSON text already serialised by its producer (a mapping worker), stored as it is.

    Serialising in the worker saves the engine both the work and the cost of moving a nested
    dict between processes.
    """


_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    keys: Sequence[str],
    update: Sequence[str],
) -> None:
    """Insert ``rows``; where a row with the same ``keys`` exists, overwrite ``update`` columns.

    Every row must have the same columns. An empty ``update`` leaves existing rows untouched
    (insert-or-ignore).
    """
    if not rows:
        return
    sql, columns, positional, processors = _compiled(
        conn.dialect, table, frozenset(rows[0]), tuple(keys), tuple(update)
    )
    raw_json = _raw_json_processor(conn.dialect.name)
    converters = [
        _Converter(process, raw_json) if process is not None else None for process in processors
    ]
    converted = [
        tuple(
            value if convert is None or value is None else convert(value)
            for convert, value in zip(converters, (row[c] for c in columns), strict=True)
        )
        for row in rows
    ]
    parameters: list[Any] = (
        converted
        if positional
        else [dict(zip(columns, values, strict=True)) for values in converted]
    )
    conn.exec_driver_sql(sql, parameters)


def select_by_keys(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    where: dict[str, Any],
    key: str,
    values: Sequence[Any],
) -> list[tuple[Any, ...]]:
    """``SELECT columns FROM table WHERE <where equalities> AND key IN values``, as rows.

    Built for thousands of values per call (one page of records): PostgreSQL gets one array
    parameter (``= ANY``), SQLite a prepared ``IN`` list in chunks below its parameter limit.
    """
    if not values:
        return []
    names = ", ".join(columns)
    filters = " AND ".join(f"{column} = ?" for column in where)
    # The DBAPI cursor directly: result rows wrapped by SQLAlchemy cost twice the lookup.
    cursor = conn.connection.cursor()
    try:
        if conn.dialect.name == "postgresql":
            sql = (
                f"SELECT {names} FROM {table.name} WHERE "
                f"{filters.replace('?', '%s')} AND {key} = ANY(%s)"
            )
            cursor.execute(sql, (*where.values(), list(values)))
            return list(cursor.fetchall())
        rows: list[tuple[Any, ...]] = []
        for chunk in in_chunks(values, _SQLITE_CHUNK):
            sql = (
                f"SELECT {names} FROM {table.name} WHERE {filters} AND {key} IN "
                f"({', '.join('?' * len(chunk))})"
            )
            cursor.execute(sql, (*where.values(), *chunk))
            rows.extend(cursor.fetchall())
        return rows
    finally:
        cursor.close()


_SQLITE_CHUNK = 30_000  # SQLite allows 32,766 parameters per statement


class _Converter:
    """One column's type processor, remembering its last input: a page's rows share values
    such as their timestamps, which SQLite's DATETIME would otherwise format row by row."""

    __slots__ = ("_last_in", "_last_out", "_process", "_raw_json")

    def __init__(self, process: Callable[[Any], Any], raw_json: Callable[[RawJson], Any]):
        self._process = process
        self._raw_json = raw_json
        self._last_in: Any = _NOTHING
        self._last_out: Any = None

    def __call__(self, value: Any) -> Any:
        if value is self._last_in:
            return self._last_out
        out = self._raw_json(value) if type(value) is RawJson else self._process(value)
        self._last_in, self._last_out = value, out
        return out


_NOTHING = object()


@lru_cache(maxsize=4)
def _raw_json_processor(dialect_name: str) -> Callable[[RawJson], Any]:
    if dialect_name == "postgresql":
        from psycopg.types.json import Jsonb

        return lambda text: Jsonb(text, dumps=str)  # the text is the JSON: pass it through
    return str


@lru_cache(maxsize=128)
def _compiled(
    dialect: Dialect,
    table: Table,
    given: frozenset[str],
    keys: tuple[str, ...],
    update: tuple[str, ...],
) -> tuple[str, tuple[str, ...], bool, tuple[Callable[[Any], Any] | None, ...]]:
    # Both dialects' inserts have on_conflict_*; the stubs know them only per dialect.
    statement: Any = _INSERTS[dialect.name](table)
    if update:
        statement = statement.on_conflict_do_update(
            index_elements=list(keys),
            set_={column: statement.excluded[column] for column in update},
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=list(keys))
    compiled = statement.compile(dialect=dialect, column_keys=sorted(given))
    positional = bool(compiled.positional)
    # The order the driver expects the values in: the statement's, not the rows'.
    columns = (
        tuple(compiled.binds[name].key for name in compiled.positiontup or ())
        if positional
        else tuple(sorted(given))
    )
    if set(columns) != given:
        raise ValueError(f"cannot upsert columns {sorted(given)} into {table.name}")
    processors = tuple(table.c[column].type._cached_bind_processor(dialect) for column in columns)
    return str(compiled), columns, positional, processors

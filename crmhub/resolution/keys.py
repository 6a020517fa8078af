"""Blocking keys in the store (``match_keys``): how a new record finds its candidates.

Each record's keys under every blocking rule are stored as short hashes (no readable
personal data in the table). A record's candidates are the other records holding one of its
keys, under the same rule that batch blocking applies: a block — the records sharing a key —
larger than ``max_block_size`` gives no candidates and is counted as oversized.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import repeat

import numpy as np
import numpy.typing as npt
from sqlalchemy import TextClause, bindparam, delete, text
from sqlalchemy.engine import Connection

from crmhub.dedupe.blocking import BlockingRule, key_digest, record_keys
from crmhub.dedupe.frame import MatchFrame
from crmhub.resolution.bulk import REBUILD_ROWS, indexes_rebuilt, insert_rows
from crmhub.store.dialect import in_chunks
from crmhub.store.schema import match_keys

__all__ = [
    "CandidateLookup",
    "KeyRow",
    "find_candidates",
    "frame_keys",
    "key_batches",
    "replace_keys",
    "rewrite_all_keys",
]

IntArray = npt.NDArray[np.int64]
KeyRow = tuple[str, str, int]
"""One ``match_keys`` row: (rule name, key digest, source record id)."""

_k = match_keys.c
_COLUMNS = ("kind", "value", "source_record_id")

KEYS_PER_QUERY = 200
"""Keys looked up by one statement (SQLite allows 500 parts to a compound SELECT)."""


def key_batches(frame: MatchFrame, rules: Sequence[BlockingRule]) -> Iterator[list[KeyRow]]:
    """The ``match_keys`` rows of every record of ``frame`` under ``rules``, one list per
    rule (a full pass writes each as it comes: all rules' rows are never held at once)."""
    ids = frame.ids
    for rule in rules:
        positions, keys = record_keys(frame, rule)
        # Hashed once per distinct key: names and postcodes repeat across records.
        digest = {key: key_digest(key) for key in set(keys)}
        yield list(zip(repeat(rule.name), map(digest.__getitem__, keys), ids[positions].tolist()))


def frame_keys(frame: MatchFrame, rules: Sequence[BlockingRule]) -> list[KeyRow]:
    """The ``match_keys`` rows of every record of ``frame`` under ``rules``."""
    return [row for batch in key_batches(frame, rules) for row in batch]


_DELETE_KEYS = delete(match_keys).where(_k.source_record_id.in_(bindparam("ids", expanding=True)))


def replace_keys(conn: Connection, record_ids: Sequence[int], rows: Sequence[KeyRow]) -> None:
    """Drop the stored keys of ``record_ids`` and store ``rows`` instead."""
    for chunk in in_chunks(record_ids):
        conn.execute(_DELETE_KEYS, {"ids": chunk})
    if rows:
        insert_rows(conn, match_keys, _COLUMNS, rows)


def rewrite_all_keys(conn: Connection, batches: Iterable[Sequence[KeyRow]]) -> None:
    """Replace every stored key by the rows of ``batches`` (a full pass)."""
    conn.execute(delete(match_keys))
    with indexes_rebuilt(conn, match_keys, REBUILD_ROWS):  # a full pass: millions of keys
        for rows in batches:
            insert_rows(conn, match_keys, _COLUMNS, rows)


@dataclass
class CandidateLookup:
    """Candidate pairs found by key lookup (record ids, ``left < right``), and the oversized
    blocks met, per rule."""

    left: IntArray
    right: IntArray
    oversized_blocks: dict[str, int] = field(default_factory=dict)


@lru_cache(maxsize=256)
def _holders_query(keys: int, limit: int) -> TextClause:
    """For ``keys`` (kind, value) parameters, up to ``limit`` holders of each, tagged with
    the key's position: one statement, each part an index range read that stops early.

    Written as SQL text (the same on both backends; SQLAlchemy adapts the parameters): as a
    composed statement, building and compiling it cost more than running it."""
    table = match_keys.name
    parts = [
        f"SELECT {i} AS i, h{i}.source_record_id FROM (SELECT source_record_id FROM {table} "
        f"WHERE kind = :k{i} AND value = :v{i} LIMIT {int(limit)}) AS h{i}"
        for i in range(keys)
    ]
    return text(" UNION ALL ".join(parts))


def find_candidates(
    conn: Connection, rows: Sequence[KeyRow], max_block_size: int
) -> CandidateLookup:
    """Every pair of a record in ``rows`` (keys already stored) with a record sharing a key.

    At most ``max_block_size + 1`` holders are read per key: that many already make the
    block oversized, so a key held by a million records costs what a small block costs.
    """
    mine: dict[tuple[str, str], list[int]] = {}
    for kind, value, record_id in rows:
        mine.setdefault((kind, value), []).append(record_id)
    wanted = sorted(mine)
    pairs: set[tuple[int, int]] = set()
    oversized: dict[str, int] = {}
    for chunk in in_chunks(wanted, KEYS_PER_QUERY):
        params: dict[str, str] = {}
        for i, (kind, value) in enumerate(chunk):
            params[f"k{i}"] = kind
            params[f"v{i}"] = value
        holders: list[list[int]] = [[] for _ in chunk]
        for i, record_id in conn.execute(_holders_query(len(chunk), max_block_size + 1), params):
            holders[i].append(record_id)
        for key, members in zip(chunk, holders, strict=True):
            if len(members) > max_block_size:
                oversized[key[0]] = oversized.get(key[0], 0) + 1
            elif len(members) > 1:
                for own in mine[key]:
                    pairs.update((min(own, o), max(own, o)) for o in members if o != own)
    ordered = sorted(pairs)
    return CandidateLookup(
        np.array([a for a, _ in ordered], dtype=np.int64),
        np.array([b for _, b in ordered], dtype=np.int64),
        oversized,
    )

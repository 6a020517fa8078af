"""Blocking keys in the store (``match_keys``): how a new record finds its candidates.

Each record's keys under every blocking rule are stored as short hashes (no readable
personal data in the table). A record's candidates are the other records holding one of its
keys, under the same rule that batch blocking applies: a block — the records sharing a key —
larger than ``max_block_size`` gives no candidates and is counted as oversized.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Connection

from crmhub.dedupe.blocking import BlockingRule, key_digest, record_keys
from crmhub.dedupe.frame import MatchFrame
from crmhub.store.dialect import in_chunks
from crmhub.store.schema import match_keys

__all__ = ["CandidateLookup", "find_candidates", "frame_keys", "replace_keys"]

IntArray = npt.NDArray[np.int64]
_k = match_keys.c


def frame_keys(frame: MatchFrame, rules: Sequence[BlockingRule]) -> list[dict[str, object]]:
    """The ``match_keys`` rows of every record of ``frame`` under ``rules``."""
    rows: list[dict[str, object]] = []
    ids = frame.ids.tolist()
    for rule in rules:
        positions, keys = record_keys(frame, rule)
        kind = rule.name
        rows.extend(
            {"kind": kind, "value": key_digest(key), "source_record_id": ids[position]}
            for position, key in zip(positions.tolist(), keys, strict=True)
        )
    return rows


def replace_keys(
    conn: Connection, record_ids: Sequence[int], rows: Sequence[dict[str, object]]
) -> None:
    """Drop the stored keys of ``record_ids`` and store ``rows`` instead."""
    for chunk in in_chunks(record_ids):
        conn.execute(delete(match_keys).where(_k.source_record_id.in_(chunk)))
    if rows:
        conn.execute(insert(match_keys), list(rows))


@dataclass
class CandidateLookup:
    """Candidate pairs found by key lookup (record ids, ``left < right``), and the oversized
    blocks met, per rule."""

    left: IntArray
    right: IntArray
    oversized_blocks: dict[str, int] = field(default_factory=dict)


def find_candidates(
    conn: Connection, rows: Sequence[dict[str, object]], max_block_size: int
) -> CandidateLookup:
    """Every pair of a record in ``rows`` (keys already stored) with a record sharing a key.

    Block sizes are counted first, so a key held by a million records costs one count, never
    a million-row fetch.
    """
    by_kind: dict[str, set[str]] = {}
    for row in rows:
        by_kind.setdefault(str(row["kind"]), set()).add(str(row["value"]))
    lefts: list[int] = []
    rights: list[int] = []
    oversized: dict[str, int] = {}
    for kind, values in sorted(by_kind.items()):
        usable: list[str] = []
        for chunk in in_chunks(sorted(values)):
            counts = conn.execute(
                select(_k.value, func.count())
                .where(_k.kind == kind, _k.value.in_(chunk))
                .group_by(_k.value)
            )
            for value, count in counts:
                if count > max_block_size:
                    oversized[kind] = oversized.get(kind, 0) + 1
                elif count > 1:
                    usable.append(value)
        holders: dict[str, list[int]] = {}
        for chunk in in_chunks(usable):
            found = conn.execute(
                select(_k.value, _k.source_record_id).where(_k.kind == kind, _k.value.in_(chunk))
            )
            for value, record_id in found:
                holders.setdefault(value, []).append(record_id)
        mine: dict[str, list[int]] = {}
        for row in rows:
            if row["kind"] == kind:
                mine.setdefault(str(row["value"]), []).append(int(str(row["source_record_id"])))
        for value, members in holders.items():
            for own in mine.get(value, ()):
                for other in members:
                    if other != own:
                        lefts.append(min(own, other))
                        rights.append(max(own, other))
    if not lefts:
        empty = np.empty(0, dtype=np.int64)
        return CandidateLookup(empty, empty, oversized)
    pairs = np.unique(np.array([lefts, rights], dtype=np.int64).T, axis=0)
    return CandidateLookup(pairs[:, 0].copy(), pairs[:, 1].copy(), oversized)

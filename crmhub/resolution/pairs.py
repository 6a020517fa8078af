"""Scored pairs in the store (``match_pairs``): links, suggestions and steward decisions.

Every candidate pair at or above the review threshold is kept with its probability and its
per-field levels and weights. Status says what became of it: ``auto`` (linked
automatically), ``pending`` (a suggestion waiting for a steward), ``accepted`` or
``rejected`` (a steward decided). Decisions outlive re-scoring: a rejected pair stays
rejected across runs ("not a match" memory), and an accepted pair stays linked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import bindparam, delete, insert, or_, select, update
from sqlalchemy.engine import Connection

from crmhub.dedupe.model import FellegiSunter
from crmhub.dedupe.pipeline import ScoredPairs
from crmhub.store.dialect import in_chunks
from crmhub.store.schema import match_pairs

__all__ = [
    "DECIDED",
    "StoredPairs",
    "comparisons_of",
    "linked_neighbours",
    "pairs_among",
    "set_statuses",
    "store_scored",
]

DECIDED = frozenset({"accepted", "rejected"})
"""Statuses only a steward sets, which re-scoring never changes."""

IntArray = npt.NDArray[np.int64]
_p = match_pairs.c


@dataclass
class StoredPairs:
    """Pairs read back from the store (record ids, ``left < right``)."""

    ids: list[int]
    left: IntArray
    right: IntArray
    probability: npt.NDArray[np.float64]
    status: list[str]

    def __len__(self) -> int:
        return len(self.ids)


def comparisons_of(
    scored: ScoredPairs, model: FellegiSunter, index: npt.ArrayLike
) -> list[dict[str, list[float]]]:
    """Per field ``[level, weight]`` of each pair at ``index``, as stored with it; the
    weights (term frequencies included) and the household term, ``"household": [0,
    weight]`` when the model has one, add up to the pair's match weight."""
    at = np.asarray(index, dtype=np.intp)
    weights, household_term = scored.parts(model, at)
    columns = {name: (scored.levels[name][at].tolist(), w.tolist()) for name, w in weights.items()}
    household = None if household_term is None else household_term.tolist()
    out: list[dict[str, list[float]]] = []
    for i in range(len(at)):
        entry = {name: [int(lv[i]), round(float(w[i]), 4)] for name, (lv, w) in columns.items()}
        if household is not None:
            entry["household"] = [0, round(float(household[i]), 4)]
        out.append(entry)
    return out


def _existing(
    conn: Connection, touching: Sequence[int] | None
) -> dict[tuple[int, int], tuple[int, str]]:
    """(left, right) -> (pair id, status) of stored pairs touching ``touching`` (all if None)."""
    columns = (_p.left_id, _p.right_id, _p.id, _p.status)
    if touching is None:
        return {(left, right): (i, s) for left, right, i, s in conn.execute(select(*columns))}
    found: dict[tuple[int, int], tuple[int, str]] = {}
    for chunk in in_chunks(sorted(set(touching))):
        rows = conn.execute(
            select(*columns).where(or_(_p.left_id.in_(chunk), _p.right_id.in_(chunk)))
        )
        found.update({(left, right): (i, s) for left, right, i, s in rows})
    return found


def store_scored(
    conn: Connection,
    ids: IntArray,
    scored: ScoredPairs,
    model: FellegiSunter,
    *,
    model_version: int,
    hashes: Mapping[int, str],
    review: float,
    now: datetime,
    touching: Sequence[int] | None,
) -> None:
    """Store the pairs of ``scored`` (rows of a frame whose record ids are ``ids``) at or above
    ``review``, replacing the undecided pairs they supersede.

    Args:
        touching: the records whose pairs were all scored again (incremental); None when every
            pair of the hub was (batch). Undecided stored pairs of these records that were not
            scored again at or above ``review`` are dropped; decided ones stay.
    """
    existing = _existing(conn, touching)
    keep = np.flatnonzero(scored.probability >= review)
    left_ids, right_ids = ids[scored.left[keep]], ids[scored.right[keep]]
    fresh: list[dict[str, Any]] = []
    refreshed: list[dict[str, Any]] = []
    seen: set[tuple[int, int]] = set()
    explained = comparisons_of(scored, model, keep)
    for index, comparison, a, b in zip(
        keep.tolist(), explained, left_ids.tolist(), right_ids.tolist(), strict=True
    ):
        a, b = min(a, b), max(a, b)
        seen.add((a, b))
        values = {
            "probability": float(scored.probability[index]),
            "weight": float(scored.weight[index]),
            "comparison": comparison,
            "model_version": model_version,
            "left_hash": hashes.get(a),
            "right_hash": hashes.get(b),
        }
        if (a, b) in existing:
            refreshed.append({"pid": existing[(a, b)][0], **values})
        else:
            fresh.append(
                {"left_id": a, "right_id": b, "status": "pending", "created_at": now, **values}
            )
    stale = [
        pid for key, (pid, status) in existing.items() if key not in seen and status not in DECIDED
    ]
    for chunk in in_chunks(stale):
        conn.execute(delete(match_pairs).where(_p.id.in_(chunk)))
    if refreshed:
        conn.execute(
            update(match_pairs)
            .where(_p.id == bindparam("pid"))
            .values({name: bindparam(name) for name in refreshed[0] if name != "pid"}),
            refreshed,
        )
    if fresh:
        conn.execute(insert(match_pairs), fresh)


def pairs_among(conn: Connection, record_ids: Iterable[int]) -> StoredPairs:
    """Every stored pair whose two records are both in ``record_ids``."""
    wanted = sorted(set(record_ids))
    members = set(wanted)
    ids: list[int] = []
    lefts: list[int] = []
    rights: list[int] = []
    probabilities: list[float] = []
    statuses: list[str] = []
    for chunk in in_chunks(wanted):
        rows = conn.execute(
            select(_p.id, _p.left_id, _p.right_id, _p.probability, _p.status).where(
                _p.left_id.in_(chunk)
            )
        )
        for pid, left, right, probability, status in rows:
            if right in members:
                ids.append(pid)
                lefts.append(left)
                rights.append(right)
                probabilities.append(probability)
                statuses.append(status)
    return StoredPairs(
        ids,
        np.array(lefts, dtype=np.int64),
        np.array(rights, dtype=np.int64),
        np.array(probabilities, dtype=np.float64),
        statuses,
    )


def linked_neighbours(conn: Connection, record_ids: Iterable[int], auto_merge: float) -> set[int]:
    """Records joined to ``record_ids`` by a pair clustering may follow: accepted, or undecided
    at or above ``auto_merge``."""
    wanted = sorted(set(record_ids))
    linking = or_(
        _p.status == "accepted", (_p.probability >= auto_merge) & (_p.status != "rejected")
    )
    found: set[int] = set()
    for chunk in in_chunks(wanted):
        for column, other in ((_p.left_id, _p.right_id), (_p.right_id, _p.left_id)):
            found.update(conn.execute(select(other).where(column.in_(chunk), linking)).scalars())
    return found


def set_statuses(conn: Connection, changes: Sequence[tuple[int, str]]) -> None:
    """Set the status of pairs by id."""
    if changes:
        conn.execute(
            update(match_pairs).where(_p.id == bindparam("pid")).values(status=bindparam("status")),
            [{"pid": pid, "status": status} for pid, status in changes],
        )

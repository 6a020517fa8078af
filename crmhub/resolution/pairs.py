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
import orjson
from sqlalchemy import bindparam, delete, or_, select
from sqlalchemy.engine import Connection

from crmhub.dedupe.model import FellegiSunter
from crmhub.dedupe.pipeline import ScoredPairs
from crmhub.resolution.bulk import driver_value, indexes_rebuilt, insert_rows, update_rows
from crmhub.store.dialect import in_chunks
from crmhub.store.schema import match_pairs, source_records

__all__ = [
    "DECIDED",
    "PairPlan",
    "StoredPairs",
    "changed_since_scored",
    "comparison_texts",
    "comparisons_of",
    "linked_neighbours",
    "pairs_among",
    "plan_all_pairs",
    "set_statuses",
    "store_scored",
    "write_all_pairs",
]

DECIDED = frozenset({"accepted", "rejected"})
"""Statuses only a steward sets, which re-scoring never changes."""

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
ObjectArray = npt.NDArray[np.object_]
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


def comparison_texts(scored: ScoredPairs, model: FellegiSunter, index: npt.ArrayLike) -> list[str]:
    """:func:`comparisons_of` as JSON text, built for many pairs at once: each field's
    ``"name":[level,weight]`` is formatted once per distinct (level, weight) and the parts are
    joined array-wise, so a million pairs cost a few passes in C, not a dict each."""
    at = np.asarray(index, dtype=np.intp)
    if len(at) <= _FEW_PAIRS:  # a record's own few pairs: the array machinery costs more
        return [orjson.dumps(entry).decode() for entry in comparisons_of(scored, model, at)]
    weights, household_term = scored.parts(model, at)
    parts = [_json_parts(name, scored.levels[name][at], w) for name, w in weights.items()]
    if household_term is not None:
        parts.append(_json_parts("household", np.zeros(len(at), dtype=np.int8), household_term))
    text = parts[0]
    for part in parts[1:]:
        text = text + "," + part  # object arrays of str: concatenated element-wise
    texts: list[str] = ("{" + text + "}").tolist()
    return texts


_FEW_PAIRS = 50


def _json_parts(name: str, levels: npt.NDArray[np.int8], weights: FloatArray) -> ObjectArray:
    """``"name":[level,weight]`` per pair, the weight rounded as :func:`comparisons_of`
    rounds it."""
    distinct, weight_code = np.unique(weights, return_inverse=True)
    level = levels.astype(np.int64)
    low = int(level.min())
    span = int(level.max()) - low + 1
    codes, inverse = np.unique(weight_code.ravel() * span + (level - low), return_inverse=True)
    label = orjson.dumps(name).decode()
    texts = np.empty(len(codes), dtype=object)
    texts[:] = [
        f"{label}:[{code % span + low},"
        f"{orjson.dumps(round(float(distinct[code // span]), 4)).decode()}]"
        for code in codes.tolist()
    ]
    joined: ObjectArray = texts[inverse.ravel()]
    return joined


def _existing(
    conn: Connection, touching: Sequence[int] | None
) -> dict[tuple[int, int], tuple[int, str]]:
    """(left, right) -> (pair id, status) of stored pairs touching ``touching`` (all if None)."""
    if touching is None:
        return {(left, right): (i, s) for left, right, i, s in conn.execute(_ALL_PAIRS)}
    found: dict[tuple[int, int], tuple[int, str]] = {}
    for chunk in in_chunks(sorted(set(touching))):
        rows = conn.execute(_PAIRS_TOUCHING, {"ids": chunk})
        found.update({(left, right): (i, s) for left, right, i, s in rows})
    return found


# Built once: a statement built per call costs more than SQLite takes to run it.
_ALL_PAIRS = select(_p.left_id, _p.right_id, _p.id, _p.status)
_PAIRS_TOUCHING = _ALL_PAIRS.where(
    or_(
        _p.left_id.in_(bindparam("ids", expanding=True)),
        _p.right_id.in_(bindparam("ids", expanding=True)),
    )
)
_PAIRS_FROM = select(_p.id, _p.left_id, _p.right_id, _p.probability, _p.status).where(
    _p.left_id.in_(bindparam("ids", expanding=True))
)


_VALUES = ("probability", "weight", "comparison", "model_version", "left_hash", "right_hash")


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
    fresh: list[tuple[Any, ...]] = []
    refreshed: list[tuple[Any, ...]] = []
    seen: set[tuple[int, int]] = set()
    explained = comparison_texts(scored, model, keep)
    created = driver_value(conn, _p.created_at, now)
    for index, comparison, a, b in zip(
        keep.tolist(), explained, left_ids.tolist(), right_ids.tolist(), strict=True
    ):
        a, b = min(a, b), max(a, b)
        seen.add((a, b))
        values = (
            float(scored.probability[index]),
            float(scored.weight[index]),
            comparison,
            model_version,
            hashes.get(a),
            hashes.get(b),
        )
        if (a, b) in existing:
            refreshed.append((*values, existing[(a, b)][0]))
        else:
            fresh.append((a, b, "pending", created, *values))
    stale = [
        pid for key, (pid, status) in existing.items() if key not in seen and status not in DECIDED
    ]
    for chunk in in_chunks(stale):
        conn.execute(delete(match_pairs).where(_p.id.in_(chunk)))
    update_rows(conn, match_pairs, _VALUES, "id", refreshed)
    insert_rows(conn, match_pairs, ("left_id", "right_id", "status", "created_at", *_VALUES), fresh)


@dataclass
class PairPlan:
    """The pairs a full pass leaves in the store, worked out before any is written: what
    clustering reads (:attr:`pairs`) and what writing them takes.

    ``pairs`` holds the pairs scored at or above review first (``scored`` of them, id -1
    when new), then the decided pairs that were not scored again, which stay as they are.
    """

    pairs: StoredPairs
    scored: int
    weight: FloatArray
    comparison: list[str]
    stale: list[int]


def plan_all_pairs(
    conn: Connection,
    ids: IntArray,
    scored: ScoredPairs,
    model: FellegiSunter,
    review: float,
) -> PairPlan:
    """Every pair of a full pass: those of ``scored`` at or above ``review`` (keeping the id
    and status of the stored pair they replace), the stored decided pairs not scored again,
    and the stored undecided pairs no longer wanted (``stale``). As :func:`store_scored`
    with ``touching=None`` followed by :func:`pairs_among` of the whole hub, in memory."""
    keep = np.flatnonzero(scored.probability >= review)
    a, b = ids[scored.left[keep]], ids[scored.right[keep]]
    left, right = np.minimum(a, b), np.maximum(a, b)
    existing = {
        (lid, rid): (pid, status, probability)
        for lid, rid, pid, status, probability in conn.execute(
            select(_p.left_id, _p.right_id, _p.id, _p.status, _p.probability)
        )
    }
    pair_ids: list[int] = []
    statuses: list[str] = []
    for key in zip(left.tolist(), right.tolist(), strict=True):
        found = existing.pop(key, None)
        pair_ids.append(-1 if found is None else found[0])
        statuses.append("pending" if found is None else found[1])
    extra = sorted((key, pid, s, p) for key, (pid, s, p) in existing.items() if s in DECIDED)
    stale = sorted(pid for pid, s, _ in existing.values() if s not in DECIDED)
    pairs = StoredPairs(
        pair_ids + [pid for _, pid, _, _ in extra],
        np.concatenate([left, np.array([k[0] for k, _, _, _ in extra], dtype=np.int64)]),
        np.concatenate([right, np.array([k[1] for k, _, _, _ in extra], dtype=np.int64)]),
        np.concatenate(
            [scored.probability[keep], np.array([p for _, _, _, p in extra], dtype=np.float64)]
        ),
        statuses + [s for _, _, s, _ in extra],
    )
    return PairPlan(
        pairs, len(keep), scored.weight[keep], comparison_texts(scored, model, keep), stale
    )


def write_all_pairs(
    conn: Connection,
    plan: PairPlan,
    statuses: Sequence[str],
    *,
    model_version: int,
    hashes: Mapping[int, str],
    now: datetime,
) -> None:
    """Write the pairs of ``plan`` with their final ``statuses`` (one per pair of
    ``plan.pairs``): stale pairs deleted, stored ones updated, new ones inserted."""
    for chunk in in_chunks(plan.stale):
        conn.execute(delete(match_pairs).where(_p.id.in_(chunk)))
    pairs = plan.pairs
    rows = zip(
        pairs.ids[: plan.scored],
        pairs.left[: plan.scored].tolist(),
        pairs.right[: plan.scored].tolist(),
        pairs.probability[: plan.scored].tolist(),
        plan.weight.tolist(),
        plan.comparison,
        statuses[: plan.scored],
        strict=True,
    )
    fresh: list[tuple[Any, ...]] = []
    refreshed: list[tuple[Any, ...]] = []
    for pid, a, b, probability, weight, comparison, status in rows:
        values = (probability, weight, comparison, model_version, hashes.get(a), hashes.get(b))
        if pid < 0:
            fresh.append((a, b, status, *values))
        else:
            refreshed.append((*values, status, pid))
    update_rows(conn, match_pairs, (*_VALUES, "status"), "id", refreshed)
    del refreshed
    fresh.sort(key=lambda row: (row[0], row[1]))  # in the unique index's order
    created = driver_value(conn, _p.created_at, now)
    with indexes_rebuilt(conn, match_pairs, len(fresh)):
        insert_rows(
            conn,
            match_pairs,
            ("left_id", "right_id", "status", *_VALUES, "created_at"),
            ((*row, created) for row in fresh),
        )


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
        for pid, left, right, probability, status in conn.execute(_PAIRS_FROM, {"ids": chunk}):
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
    update_rows(conn, match_pairs, ("status",), "id", [(s, pid) for pid, s in changes])


def changed_since_scored(conn: Connection, scored: Mapping[int, str | None]) -> list[int]:
    """The records of a pair (``scored``: record id -> its content hash when the pair was
    scored) that changed, were deleted in their source or are gone since, by id."""
    rows = conn.execute(
        select(
            source_records.c.id, source_records.c.content_hash, source_records.c.deleted_at
        ).where(source_records.c.id.in_(list(scored)))
    ).all()
    now = {rid: (digest, deleted) for rid, digest, deleted in rows}
    return sorted(
        int(rid)
        for rid, digest in scored.items()
        if rid not in now or now[rid][1] is not None or now[rid][0] != digest
    )

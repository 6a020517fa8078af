"""The review queue: pending suggestions for a steward, one pair at a time.

A suggestion is a scored pair with status ``pending`` (between the review and the auto-merge
thresholds). The queue lists them most uncertain first (``|p - 0.5|`` ascending: the pairs a
steward's decision teaches the model most) or by score (most likely first), filtered by source
system and score band, a page at a time. The pair view puts both source records side by side
with what differs, the per-field waterfall stored with the pair, the sources, dates and
current customers. Decisions go through :class:`~crmhub.resolution.steward.Steward` (each its
own audit event), after checking that neither record changed since the pair was scored: a
decision on what a steward did not see is refused, never a stale merge.

The web pages, the JSON API and the CLI all call these functions.

Speed: with 100,000 pending pairs and a million source records a page must cost what it
shows, never what the hub holds. Every ordering is a merge of at most two walks of the
``(status, probability)`` index (uncertainty: from 0.5 upwards and from 0.5 downwards), each
stopped after a page; paging is by keyset (the pair a page starts after or ends before), so
a later page costs what the first does (an offset costs what it skips, in the index only).
The total is an index range count; with a source-system filter it is estimated from a sample
beyond :data:`COUNT_SAMPLE` pairs, and a page looks at no more than :data:`SCAN_BUDGET` pairs
per walk (a system of at most :data:`SMALL_SOURCE` records is served from its records' side).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, BaseModel, Field
from sqlalchemy import and_, case, false, func, literal, or_, select, union_all
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import ColumnElement

from crmhub.dedupe.compare import Comparison
from crmhub.errors import CrmhubError
from crmhub.resolution.steward import StalePair, Steward, StewardError
from crmhub.store.dialect import in_chunks
from crmhub.store.schema import audit_log, customers, match_pairs, source_records

__all__ = [
    "COUNT_SAMPLE",
    "DECISION_ACTIONS",
    "SCAN_BUDGET",
    "SMALL_SOURCE",
    "SORTS",
    "BulkOutcome",
    "CustomerRef",
    "DecisionOutcome",
    "FieldRow",
    "PairNotFound",
    "PairView",
    "QueueFilter",
    "QueueItem",
    "QueuePage",
    "RecordSummary",
    "RecordView",
    "ReviewConflict",
    "ReviewError",
    "Sort",
    "UndoOutcome",
    "WaterfallStep",
    "bulk_accept",
    "check_decidable",
    "count_pending",
    "decide",
    "last_decision",
    "list_pending",
    "next_pending",
    "pair_view",
    "pending_ids",
    "undo_decision",
]

Sort = Literal["uncertainty", "score"]
SORTS: tuple[Sort, ...] = ("uncertainty", "score")
"""Queue orders: most uncertain first (default), or most likely first."""

DECISION_ACTIONS = ("pair.accepted", "pair.rejected")
"""The audit actions of review decisions (what "undo last" undoes)."""

SCAN_BUDGET = 2_000
"""With a source-system filter, the most pairs a page looks at per index walk (each pair's
two records are looked up to filter it): a page costs at most this, however rare the
system's pairs are."""

SMALL_SOURCE = 2_000
"""A source system of at most this many records is filtered from its records' side: all
its pending pairs are found through the pairs' record indexes (exact, and fast however few
of the queue's pairs are its)."""

COUNT_SAMPLE = 1_000
"""With a source-system filter, the total is counted exactly in a band of up to this many
pairs, and estimated from a sample of this many beyond (``QueuePage.total_exact``)."""

_p = match_pairs.c
_s = source_records.c


def _utc(value: datetime) -> datetime:
    """Stored times are UTC; SQLite hands them back without a zone."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


Stamp = Annotated[datetime, AfterValidator(_utc)]
"""A time in UTC, with its zone (RFC 3339 in JSON)."""


class ReviewError(CrmhubError):
    """A review request that cannot be carried out."""


class PairNotFound(ReviewError):
    """No pair with this id."""


class ReviewConflict(ReviewError):
    """A decision refused because of what changed: ``kind`` is ``"decided"`` (the pair is
    not pending any more), ``"changed"`` (a record changed, or was deleted or erased, since
    the pair was scored) or ``"undo"`` (nothing to undo, or undone already)."""

    def __init__(self, message: str, kind: str = "changed") -> None:
        super().__init__(message)
        self.kind = kind


# ---------------------------------------------------------------------------------- models
class QueueFilter(BaseModel):
    """Which pending pairs: of a source system (either record's connector), in a score band
    (inclusive bounds)."""

    connector: str | None = None
    min_probability: float | None = Field(None, ge=0, le=1)
    max_probability: float | None = Field(None, ge=0, le=1)


class RecordSummary(BaseModel):
    """One record of a queued pair, as the queue shows it."""

    record_id: int
    connector: str
    stream: str
    external_id: str
    name: str | None
    email: str | None


class QueueItem(BaseModel):
    """One pending pair in the queue (``probability`` and ``weight`` are None in blind
    mode)."""

    pair_id: int
    probability: float | None
    weight: float | None
    created_at: Stamp
    stale: bool = Field(description="a record changed since the pair was scored")
    left: RecordSummary
    right: RecordSummary


class QueuePage(BaseModel):
    """A page of the queue, with the total and the cursors of the pages around it."""

    items: list[QueueItem]
    total: int
    total_exact: bool = Field(True, description="False: estimated (source-system filter)")
    partial: bool = Field(
        False, description="the search stopped at the scan budget: continue with the cursors"
    )
    sort: Sort
    limit: int
    offset: int | None = Field(None, description="the page's position, when known")
    next_after: int | None = Field(None, description="pass as `after` for the next page")
    prev_before: int | None = Field(None, description="pass as `before` for the page before")

    def blinded(self) -> QueuePage:
        """This page without scores (blind review)."""
        items = [i.model_copy(update={"probability": None, "weight": None}) for i in self.items]
        return self.model_copy(update={"items": items})


class CustomerRef(BaseModel):
    """A record's current customer."""

    customer_id: str
    name: str | None
    members: int


class RecordView(BaseModel):
    """One side of the pair view: the canonical values, the source and the dates."""

    record_id: int
    connector: str
    stream: str
    external_id: str
    name: str | None
    values: dict[str, str | None] = Field(description="display text of each compared field")
    source_updated_at: Stamp | None
    first_seen: Stamp
    last_seen: Stamp
    deleted: bool
    changed_since_scored: bool
    customer: CustomerRef | None


class FieldRow(BaseModel):
    """One row of the side-by-side view."""

    field: str
    label: str
    left: str | None
    right: str | None
    state: Literal["same", "different", "one-sided", "empty"]


class WaterfallStep(BaseModel):
    """One field's step of the stored waterfall (weights None in blind mode)."""

    field: str
    label: str
    level: int
    level_label: str
    left: str | None
    right: str | None
    weight: float | None
    cumulative: float | None


class PairView(BaseModel):
    """Everything a steward needs to decide one pair."""

    pair_id: int
    status: str
    probability: float | None
    weight: float | None = Field(description="the stored match weight (the fields' sum)")
    waterfall_total: float | None = Field(description="the sum of the steps' weights")
    prior_weight: float | None
    model_version: int | None
    created_at: Stamp
    decided_by: str | None
    decided_at: Stamp | None
    stale: bool
    stale_reason: str | None
    left: RecordView
    right: RecordView
    fields: list[FieldRow]
    waterfall: list[WaterfallStep]

    def blinded(self) -> PairView:
        """This view without the probability and any weight (blind review)."""
        steps = [s.model_copy(update={"weight": None, "cumulative": None}) for s in self.waterfall]
        return self.model_copy(
            update={
                "probability": None,
                "weight": None,
                "waterfall_total": None,
                "prior_weight": None,
                "waterfall": steps,
            }
        )


class DecisionOutcome(BaseModel):
    """What a decision did (``event_id`` None for a skip)."""

    pair_id: int
    decision: Literal["merge", "reject", "skip"]
    event_id: int | None
    action: str | None


class UndoOutcome(BaseModel):
    """An undone decision: the undo's own event, the event undone, and its pair."""

    event_id: int
    undone_event_id: int
    undone_action: str
    pair_id: int | None


class BulkOutcome(BaseModel):
    """What a bulk accept did (or, as a dry run, would do)."""

    min_probability: float
    matched: int = Field(description="pending pairs at or above the threshold (in the filter)")
    accepted: int
    stale: int = Field(description="skipped: a record changed since the pair was scored")
    failed: int = Field(description="skipped: decided or removed meanwhile")
    remaining: int = Field(description="matched pairs not looked at (over the limit)")
    dry_run: bool


# ---------------------------------------------------------------------------------- ordering
@dataclass(frozen=True)
class _Stream:
    """One walk of the (status, probability) index: a probability range and a direction.
    Within a stream the queue order is (probability, id) in that direction."""

    rank: int
    low: float | None
    low_open: bool
    high: float | None
    high_open: bool
    ascending: bool


def _streams(sort: Sort, band: QueueFilter) -> list[_Stream]:
    low, high = band.min_probability, band.max_probability
    if sort == "score":
        return [_Stream(0, low, False, high, False, False)]
    above = _Stream(0, max(0.5, low if low is not None else 0.5), False, high, False, True)
    below_high, below_open = (0.5, True) if high is None or high >= 0.5 else (high, False)
    below = _Stream(1, low, False, below_high, below_open, False)
    return [above, below]


def _distance(probability: float) -> float:
    """How far from a coin toss: ``abs(p - 0.5)`` in double precision, as SQL computes it."""
    return abs(probability - 0.5)


def _key(sort: Sort, probability: float, pair_id: int) -> tuple[Any, ...]:
    """The queue order: the smallest key comes first. By uncertainty: the distance, then
    the walk (above 0.5 first), then the walk's own order."""
    if sort == "score":
        return (-probability, -pair_id)
    if probability >= 0.5:
        return (_distance(probability), 0, probability, pair_id)
    return (_distance(probability), 1, -probability, -pair_id)


def _bits(x: float) -> int:
    return int(struct.unpack("<q", struct.pack("<d", x))[0])


def _float(bits: int) -> float:
    return float(struct.unpack("<d", struct.pack("<q", bits))[0])


def _boundary(holds: Callable[[float], bool], low: float, high: float, first: bool) -> float | None:
    """The smallest (``first``) or largest probability in [low, high] (>= 0) for which
    ``holds``, a condition that is monotone over that range (False then True for ``first``,
    True then False otherwise); None if it holds nowhere. Searched over the floats' bit
    patterns, which order non-negative floats as their values."""
    a, b = _bits(low), _bits(high)
    if first:
        if not holds(high):
            return None
        while a < b:
            middle = (a + b) // 2
            a, b = (a, middle) if holds(_float(middle)) else (middle + 1, b)
        return _float(a)
    if not holds(low):
        return None
    while a < b:
        middle = (a + b + 1) // 2
        a, b = (middle, b) if holds(_float(middle)) else (a, middle - 1)
    return _float(a)


_BELOW_HALF = math.nextafter(0.5, 0.0)


def _beyond(
    stream: _Stream, sort: Sort, cursor: tuple[float, int], after: bool
) -> ColumnElement[bool]:
    """The rows of ``stream`` after (or before) the cursor pair in queue order."""
    probability, pair_id = cursor
    key = _key(sort, probability, pair_id)
    if sort == "score" or key[1] == stream.rank:
        forward = stream.ascending == after  # walking up the index
        if forward:
            return and_(
                _p.probability >= probability,
                or_(_p.probability > probability, _p.id > pair_id),
            )
        return and_(
            _p.probability <= probability,
            or_(_p.probability < probability, _p.id < pair_id),
        )
    # The other walk: after = a larger distance, or the same with a later walk; before =
    # the mirror. Distance is monotone in p along a walk, so this is one probability bound.
    distance = key[0]
    inclusive = stream.rank > key[1] if after else stream.rank < key[1]

    def holds(p: float) -> bool:
        d = _distance(p)
        if after:
            return d >= distance if inclusive else d > distance
        return d <= distance if inclusive else d < distance

    low, high = (0.5, 1.0) if stream.rank == 0 else (0.0, _BELOW_HALF)
    upward = (stream.rank == 0) == after  # the wanted rows are the high probabilities
    bound = _boundary(holds, low, high, first=upward)
    if bound is None:
        return false()
    return _p.probability >= bound if upward else _p.probability <= bound


def _touches(connector: str) -> ColumnElement[bool]:
    """Either record of the pair is from ``connector``: two primary-key lookups per pair
    (scalar subqueries, which no planner turns into a scan of the connector's records)."""

    def of(record: Any) -> Any:
        return select(_s.connector).where(_s.id == record).scalar_subquery()

    return or_(of(_p.left_id) == connector, of(_p.right_id) == connector)


def _conditions(band: QueueFilter, *, connector: bool = True) -> list[ColumnElement[bool]]:
    wanted: list[ColumnElement[bool]] = [_p.status == "pending"]
    if band.min_probability is not None:
        wanted.append(_p.probability >= band.min_probability)
    if band.max_probability is not None:
        wanted.append(_p.probability <= band.max_probability)
    if band.connector and connector:
        wanted.append(_touches(band.connector))
    return wanted


def _stream_conditions(stream: _Stream) -> list[ColumnElement[bool]]:
    wanted: list[ColumnElement[bool]] = []
    if stream.low is not None:
        wanted.append(
            _p.probability > stream.low if stream.low_open else _p.probability >= stream.low
        )
    if stream.high is not None:
        wanted.append(
            _p.probability < stream.high if stream.high_open else _p.probability <= stream.high
        )
    if stream.low is not None and stream.high is not None and stream.low > stream.high:
        wanted.append(false())
    return wanted


_ROW = (
    _p.id,
    _p.probability,
    _p.weight,
    _p.left_id,
    _p.right_id,
    _p.left_hash,
    _p.right_hash,
    _p.created_at,
)


def _walk_stream(
    conn: Connection,
    sort: Sort,
    band: QueueFilter,
    stream: _Stream,
    limit: int,
    cursor: tuple[float, int] | None,
    after: bool,
    budget: int,
) -> tuple[list[Any], Any | None]:
    """Up to ``limit`` pending pairs of one stream beyond the cursor, in walk order, and
    the last pair looked at when the scan budget ran out first (a source-system filter
    looks at pairs until it has ``limit``; without one every pair looked at is wanted)."""
    up = stream.ascending == after
    order = (_p.probability.asc(), _p.id.asc()) if up else (_p.probability.desc(), _p.id.desc())
    base = _conditions(band, connector=False) + _stream_conditions(stream)
    if not band.connector:
        wanted = base + ([_beyond(stream, sort, cursor, after)] if cursor else [])
        return list(conn.execute(select(*_ROW).where(*wanted).order_by(*order).limit(limit))), None
    touches = _touches(band.connector).label("touches")
    found: list[Any] = []
    looked = 0
    position = cursor
    while True:
        chunk = min(max(4 * limit, 200), budget - looked)
        wanted = base + ([_beyond(stream, sort, position, after)] if position else [])
        rows = conn.execute(select(*_ROW, touches).where(*wanted).order_by(*order).limit(chunk))
        batch = rows.all()
        found.extend(row for row in batch if row.touches)
        looked += len(batch)
        if len(found) >= limit or len(batch) < chunk:
            return found[:limit], None
        position = (batch[-1].probability, batch[-1].id)
        if looked >= budget:
            return found, batch[-1]


def _walk(
    conn: Connection,
    sort: Sort,
    band: QueueFilter,
    limit: int,
    cursor: tuple[float, int] | None,
    after: bool,
    budget: int = 0,
) -> tuple[list[Any], Any | None]:
    """Up to ``limit`` pending pairs after (or, reversed, before) the cursor, in queue order
    (reversed for ``after=False``), and where the search stopped when a source-system
    filter ran out of ``budget`` (pairs looked at per stream) first: every pair up to that
    one was looked at, so the search goes on after it."""
    budget = budget or SCAN_BUDGET

    def key(row: Any) -> tuple[Any, ...]:
        return _key(sort, row.probability, row.id)

    few = _pairs_of_small_source(conn, band)
    if few is not None:
        if cursor is not None:
            edge = _key(sort, *cursor)
            few = [row for row in few if (key(row) > edge if after else key(row) < edge)]
        few.sort(key=key, reverse=not after)
        return few[:limit], None
    rows: list[Any] = []
    stops: list[Any] = []
    for stream in _streams(sort, band):
        found, stop = _walk_stream(conn, sort, band, stream, limit, cursor, after, budget)
        rows.extend(found)
        if stop is not None:
            stops.append(stop)
    rows.sort(key=key, reverse=not after)
    stop = None
    if stops:
        stop = min(stops, key=key) if after else max(stops, key=key)
        edge = key(stop)
        rows = [row for row in rows if (key(row) <= edge if after else key(row) >= edge)]
    return rows[:limit], stop


def _pairs_of_small_source(conn: Connection, band: QueueFilter) -> list[Any] | None:
    """With a filter on a source system of at most :data:`SMALL_SOURCE` records, every
    pending pair in the band touching them (found from the records' side, through the
    pairs' record indexes); None without a filter or for a larger system."""
    if not band.connector:
        return None
    ids = list(
        conn.execute(
            select(_s.id).where(_s.connector == band.connector).limit(SMALL_SOURCE + 1)
        ).scalars()
    )
    if len(ids) > SMALL_SOURCE:
        return None
    found: dict[int, Any] = {}
    for chunk in in_chunks(sorted(ids)):
        touching = or_(_p.left_id.in_(chunk), _p.right_id.in_(chunk))
        query = select(*_ROW).where(*_conditions(band, connector=False), touching)
        found.update((row.id, row) for row in conn.execute(query))
    return list(found.values())


def _at_offset(
    conn: Connection, sort: Sort, band: QueueFilter, limit: int, offset: int
) -> list[Any]:
    """Up to ``limit`` pending pairs from position ``offset`` of the queue order. Each walk
    reads no further than ``offset + limit`` entries of the index (only their ids and
    probabilities) and the database merges the walks; then the page's own rows are read."""
    few = _pairs_of_small_source(conn, band)
    if few is not None:
        few.sort(key=lambda row: _key(sort, row.probability, row.id))
        return few[offset : offset + limit]
    streams = [
        stream
        for stream in _streams(sort, band)
        if conn.execute(
            select(_p.id)
            .where(*_conditions(band, connector=False), *_stream_conditions(stream))
            .limit(1)
        ).first()
    ]
    if not streams:
        return []
    if len(streams) == 1:  # one walk (as usual: suggestions start above 0.5): skip along it
        up = streams[0].ascending
        order = (_p.probability.asc(), _p.id.asc()) if up else (_p.probability.desc(), _p.id.desc())
        query = (
            select(*_ROW)
            .where(*_conditions(band), *_stream_conditions(streams[0]))
            .order_by(*order)
            .limit(limit)
            .offset(offset)
        )
        return list(conn.execute(query))
    parts = []
    for stream in streams:
        up = stream.ascending
        order = (_p.probability.asc(), _p.id.asc()) if up else (_p.probability.desc(), _p.id.desc())
        parts.append(
            select(_p.id, _p.probability, literal(stream.rank).label("walk"))
            .where(*_conditions(band), *_stream_conditions(stream))
            .order_by(*order)
            .limit(offset + limit)
            .subquery()
        )
    merged = union_all(*(select(part) for part in parts)).subquery()
    m = merged.c
    merged_order: tuple[Any, ...]
    if sort == "score":
        merged_order = (m.probability.desc(), m.id.desc())
    else:
        first = m.walk == 0
        merged_order = (
            func.abs(m.probability - 0.5),
            m.walk,
            case((first, m.probability), else_=-m.probability),
            case((first, m.id), else_=-m.id),
        )
    ids = list(
        conn.execute(select(m.id).order_by(*merged_order).limit(limit).offset(offset)).scalars()
    )
    if not ids:
        return []
    rows = list(conn.execute(select(*_ROW).where(_p.id.in_(ids))))
    rows.sort(key=lambda row: _key(sort, row.probability, row.id))
    return rows


def _cursor(conn: Connection, pair_id: int | None) -> tuple[float, int] | None:
    if pair_id is None:
        return None
    found = conn.execute(select(_p.probability).where(_p.id == pair_id)).scalar_one_or_none()
    return None if found is None else (float(found), pair_id)


# ---------------------------------------------------------------------------------- the queue
def count_pending(conn: Connection, band: QueueFilter | None = None) -> tuple[int, bool]:
    """How many pending pairs the filter holds, and whether that is exact: with a source
    system filter, pairs beyond the first :data:`COUNT_SAMPLE` of the band are estimated
    from the share of that sample that touches the system."""
    band = band or QueueFilter()
    few = _pairs_of_small_source(conn, band)
    if few is not None:
        return len(few), True
    in_band = select(_p.id).where(*_conditions(band, connector=False)).subquery()
    total = int(conn.execute(select(func.count()).select_from(in_band)).scalar_one())
    if not band.connector or total == 0:
        return total, True
    sample = (
        select(_p.id)
        .where(*_conditions(band))
        .where(
            _p.id.in_(
                select(_p.id)
                .where(*_conditions(band, connector=False))
                .order_by(_p.probability.desc(), _p.id.desc())
                .limit(COUNT_SAMPLE)
                .scalar_subquery()
            )
        )
        .subquery()
    )
    matched = int(conn.execute(select(func.count()).select_from(sample)).scalar_one())
    if total <= COUNT_SAMPLE:
        return matched, True
    return round(matched * total / COUNT_SAMPLE), False


def list_pending(
    conn: Connection,
    *,
    sort: Sort = "uncertainty",
    band: QueueFilter | None = None,
    limit: int = 50,
    after: int | None = None,
    before: int | None = None,
    offset: int | None = None,
    with_total: bool = True,
) -> QueuePage:
    """A page of pending pairs in queue order: the first page, the page after pair
    ``after`` or the page before pair ``before`` (a pair no longer known starts over), or
    the page at position ``offset`` (which costs what the offset is: the index is read up
    to it; cursors cost the same on every page).

    With a source-system filter a page looks at no more than :data:`SCAN_BUDGET` pairs per
    index walk; a page that stopped there is ``partial`` (maybe short, even empty) and its
    cursors go on from where it stopped."""
    band = band or QueueFilter()
    limit = max(1, limit)
    total, exact = count_pending(conn, band) if with_total else (0, False)
    if offset is not None and after is None and before is None:
        offset = min(max(0, offset), _UNBOUNDED)
        rows = _at_offset(conn, sort, band, limit + 1, offset)
        items = _items(conn, rows[:limit])
        return QueuePage(
            items=items,
            total=total if with_total else offset + len(items),
            total_exact=exact,
            sort=sort,
            limit=limit,
            offset=offset,
            next_after=items[-1].pair_id if len(rows) > limit else None,
            prev_before=items[0].pair_id if offset > 0 and items else None,
        )
    forward = before is None
    cursor = _cursor(conn, after if forward else before)
    rows, stop = _walk(conn, sort, band, limit + 1, cursor, forward)
    full = len(rows) > limit
    rows = rows[:limit]
    if not forward:
        rows.reverse()
    items = _items(conn, rows)
    onward = items[-1 if forward else 0].pair_id if full else (stop.id if stop else None)
    if forward:
        next_after, prev_before = onward, (items[0].pair_id if cursor and items else None)
    else:
        next_after, prev_before = (items[-1].pair_id if items else None), onward
    return QueuePage(
        items=items,
        total=total if with_total else len(items),
        total_exact=exact,
        partial=stop is not None and not full,
        sort=sort,
        limit=limit,
        offset=0 if cursor is None and forward else None,
        next_after=next_after,
        prev_before=prev_before,
    )


def pending_ids(
    conn: Connection,
    *,
    sort: Sort = "uncertainty",
    band: QueueFilter | None = None,
    limit: int | None = None,
) -> list[int]:
    """The ids of the pending pairs in queue order (the first ``limit``, or all): the queue
    a terminal review walks, in the order the web shows it. The walk behind
    :func:`list_pending`, without reading the pairs' records."""
    band = band or QueueFilter()
    ids: list[int] = []
    cursor: tuple[float, int] | None = None
    while limit is None or len(ids) < limit:
        want = _PAGE_OF_IDS if limit is None else min(_PAGE_OF_IDS, limit - len(ids))
        rows, stop = _walk(conn, sort, band, want, cursor, True)
        ids.extend(int(row.id) for row in rows)
        # Go on after a full walk's last pair, or where a filtered walk ran out of budget.
        last = rows[-1] if len(rows) == want else stop
        if last is None:
            break
        cursor = (float(last.probability), int(last.id))
    return ids


_PAGE_OF_IDS = 500


def next_pending(
    conn: Connection,
    pair_id: int,
    *,
    sort: Sort = "uncertainty",
    band: QueueFilter | None = None,
) -> int | None:
    """The pending pair after ``pair_id`` in queue order; at the end of the queue, its first
    pair (pairs skipped come round again); None when no other pair is pending (or, with a
    source-system filter, none was found within a scan budget from each place)."""
    band = band or QueueFilter()
    cursor = _cursor(conn, pair_id)
    for start in (cursor, None):
        rows, _stop = _walk(conn, sort, band, 2, start, True)
        for row in rows:
            if row.id != pair_id:
                return int(row.id)
    return None


def _records(conn: Connection, ids: Sequence[int]) -> dict[int, Any]:
    if not ids:
        return {}
    columns = (
        _s.id,
        _s.connector,
        _s.stream,
        _s.external_id,
        _s.data,
        _s.content_hash,
        _s.deleted_at,
        _s.source_updated_at,
        _s.first_seen,
        _s.last_seen,
        _s.customer_id,
    )
    return {
        row.id: row for row in conn.execute(select(*columns).where(_s.id.in_(sorted(set(ids)))))
    }


def _data(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str | bytes):
        raw = orjson.loads(raw)
    return raw if isinstance(raw, dict) else {}


def _name(data: Mapping[str, Any]) -> str | None:
    full = data.get("full_name")
    if full:
        return str(full)
    parts = [str(data[k]) for k in ("first_name", "last_name") if data.get(k)]
    return " ".join(parts) or None


def _summary(record: Any, record_id: int) -> RecordSummary:
    if record is None:  # erased between the two reads: show the id only
        return RecordSummary(
            record_id=record_id, connector="", stream="", external_id="", name=None, email=None
        )
    data = _data(record.data)
    emails = data.get("emails") or []
    return RecordSummary(
        record_id=record.id,
        connector=record.connector,
        stream=record.stream,
        external_id=record.external_id,
        name=_name(data),
        email=str(emails[0]) if emails else None,
    )


def _is_stale(record: Any, scored_hash: str | None) -> bool:
    return record is None or record.deleted_at is not None or record.content_hash != scored_hash


def _items(conn: Connection, rows: Sequence[Any]) -> list[QueueItem]:
    records = _records(conn, [rid for row in rows for rid in (row.left_id, row.right_id)])
    items = []
    for row in rows:
        left, right = records.get(row.left_id), records.get(row.right_id)
        items.append(
            QueueItem(
                pair_id=row.id,
                probability=row.probability,
                weight=row.weight,
                created_at=row.created_at,
                stale=_is_stale(left, row.left_hash) or _is_stale(right, row.right_hash),
                left=_summary(left, row.left_id),
                right=_summary(right, row.right_id),
            )
        )
    return items


# ---------------------------------------------------------------------------------- the pair
FIELDS: tuple[tuple[str, str], ...] = (
    ("first_name", "First name"),
    ("last_name", "Last name"),
    ("full_name", "Full name"),
    ("emails", "Emails"),
    ("phones", "Phones"),
    ("company", "Company"),
    ("title", "Title"),
    ("address", "Address"),
    ("birth_date", "Birth date"),
    ("identifiers", "Identifiers"),
)
"""The canonical fields the pair view shows side by side, in order, with their labels."""

_COMPARED = {"street": "address"}  # comparison field -> the record field it reads
_ADDRESS = ("line1", "line2", "city", "region", "postal_code", "country")


def _display(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value in (None, "", [], {}):
        return None
    if name == "address" and isinstance(value, dict):
        return ", ".join(str(value[k]) for k in _ADDRESS if value.get(k)) or None
    if name == "identifiers" and isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in sorted(value.items()))
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _comparable(data: Mapping[str, Any], name: str) -> Any:
    """A value for telling same from different: case, spacing and list order ignored."""
    value = data.get(name)

    def fold(text: Any) -> str:
        return " ".join(str(text).casefold().split())

    if value in (None, "", [], {}):
        return None
    if isinstance(value, list):
        return frozenset(fold(v) for v in value)
    if isinstance(value, dict):
        return frozenset((k, fold(v)) for k, v in value.items() if v not in (None, ""))
    return fold(value)


def _field_rows(left: Mapping[str, Any], right: Mapping[str, Any]) -> list[FieldRow]:
    rows = []
    for name, label in FIELDS:
        a, b = _comparable(left, name), _comparable(right, name)
        if a is None and b is None:
            state: Literal["same", "different", "one-sided", "empty"] = "empty"
        elif a is None or b is None:
            state = "one-sided"
        else:
            state = "same" if a == b else "different"
        rows.append(
            FieldRow(
                field=name,
                label=label,
                left=_display(left, name),
                right=_display(right, name),
                state=state,
            )
        )
    return rows


def _customer(conn: Connection, customer_id: str | None) -> CustomerRef | None:
    if not customer_id:
        return None
    row = conn.execute(
        select(customers.c.data).where(customers.c.id == customer_id)
    ).scalar_one_or_none()
    members = conn.execute(
        select(func.count()).where(_s.customer_id == customer_id, _s.deleted_at.is_(None))
    ).scalar_one()
    golden = _data(row) if row is not None else {}
    values = {k: (v or {}).get("value") for k, v in golden.items() if isinstance(v, dict)}
    return CustomerRef(customer_id=customer_id, name=_name(values), members=int(members))


def _record_view(conn: Connection, record: Any, scored_hash: str | None) -> RecordView:
    data = _data(record.data)
    return RecordView(
        record_id=record.id,
        connector=record.connector,
        stream=record.stream,
        external_id=record.external_id,
        name=_name(data),
        values={name: _display(data, name) for name, _ in FIELDS},
        source_updated_at=record.source_updated_at,
        first_seen=record.first_seen,
        last_seen=record.last_seen,
        deleted=record.deleted_at is not None,
        changed_since_scored=_is_stale(record, scored_hash),
        customer=_customer(conn, record.customer_id),
    )


def _stale_reason(pair: Any, records: Mapping[int, Any]) -> str | None:
    """Why a decision on this pair would be refused, or None."""
    return _refusal(pair, records)[1]


def _refusal(pair: Any, records: Mapping[int, Any]) -> tuple[str, str | None]:
    """(kind, reason) of a refused decision on this pair; reason None when none is."""
    if pair.status != "pending":
        who = f" by {pair.decided_by}" if pair.decided_by else ""
        return "decided", f"Pair {pair.id} is not pending any more: it is {pair.status}{who}."
    return "changed", _changed(pair, records)


def _changed(pair: Any, records: Mapping[int, Any]) -> str | None:
    for side, rid, scored in (
        ("left", pair.left_id, pair.left_hash),
        ("right", pair.right_id, pair.right_hash),
    ):
        record = records.get(rid)
        if record is None:
            return f"The {side} record ({rid}) is gone (erased) since the pair was scored."
        if record.deleted_at is not None:
            return (
                f"The {side} record ({rid}, {record.connector}/{record.stream}) was deleted "
                "in its source since the pair was scored."
            )
        if record.content_hash != scored:
            return (
                f"The {side} record ({rid}, {record.connector}/{record.stream}) changed since "
                "the pair was scored: it is scored again when matching next runs."
            )
    return None


def _comparison(raw: Any) -> dict[str, list[float]]:
    data = _data(raw)
    return {str(k): list(v) for k, v in data.items() if isinstance(v, list | tuple) and len(v) == 2}


def pair_view(
    conn: Connection, pair_id: int, comparisons: Sequence[Comparison] = ()
) -> PairView | None:
    """The pair view of ``pair_id`` (None if there is no such pair); ``comparisons`` (the
    hub's) name each field's levels."""
    pair = conn.execute(select(match_pairs).where(_p.id == pair_id)).first()
    if pair is None:
        return None
    records = _records(conn, [pair.left_id, pair.right_id])
    left, right = records.get(pair.left_id), records.get(pair.right_id)
    if left is None or right is None:  # cascade-deleted with its record: no pair any more
        return None
    left_data, right_data = _data(left.data), _data(right.data)
    by_name = {c.name: c for c in comparisons}
    steps: list[WaterfallStep] = []
    running = 0.0
    for name, (level, weight) in _comparison(pair.comparison).items():
        running += float(weight)
        comparison = by_name.get(name)
        level = int(level)
        if comparison is not None and 0 <= level < len(comparison.levels):
            level_label = comparison.levels[level]
        else:
            level_label = "adjustment" if name == "household" else f"level {level}"
        field = _COMPARED.get(comparison.field, comparison.field) if comparison else name
        known = field in dict(FIELDS)
        steps.append(
            WaterfallStep(
                field=name,
                label=dict(FIELDS).get(field, name.replace("_", " ").capitalize()),
                level=level,
                level_label=level_label,
                left=_display(left_data, field) if known else None,
                right=_display(right_data, field) if known else None,
                weight=float(weight),
                cumulative=round(running, 4),
            )
        )
    probability = float(pair.probability)
    prior = None
    if 0.0 < probability < 1.0:
        prior = round(math.log2(probability / (1.0 - probability)) - float(pair.weight), 4)
    reason = _stale_reason(pair, records)
    return PairView(
        pair_id=pair.id,
        status=pair.status,
        probability=probability,
        weight=float(pair.weight),
        waterfall_total=round(running, 4),
        prior_weight=prior,
        model_version=pair.model_version,
        created_at=pair.created_at,
        decided_by=pair.decided_by,
        decided_at=pair.decided_at,
        stale=reason is not None,
        stale_reason=reason,
        left=_record_view(conn, left, pair.left_hash),
        right=_record_view(conn, right, pair.right_hash),
        fields=_field_rows(left_data, right_data),
        waterfall=steps,
    )


# ---------------------------------------------------------------------------------- decisions
def check_decidable(conn: Connection, pair_id: int) -> None:
    """Refuse a decision on a pair that is not pending, or whose records changed since it
    was scored.

    Raises:
        PairNotFound: no such pair.
        ReviewConflict: with the reason.
    """
    pair = conn.execute(
        select(
            _p.id, _p.status, _p.decided_by, _p.left_id, _p.right_id, _p.left_hash, _p.right_hash
        ).where(_p.id == pair_id)
    ).first()
    if pair is None:
        raise PairNotFound(f"no pair {pair_id}")
    kind, reason = _refusal(pair, _records(conn, [pair.left_id, pair.right_id]))
    if reason is not None:
        suffix = " Nothing was changed." if kind == "changed" else ""
        raise ReviewConflict(f"Refused: {reason}{suffix}", kind)


def decide(
    steward: Steward, pair_id: int, decision: Literal["merge", "reject", "skip"], reason: str = ""
) -> DecisionOutcome:
    """Merge (accept), reject (not a match) or skip (no change) a pending pair, as
    ``steward.actor``; a merge or reject is refused on a stale pair (see
    :func:`check_decidable`) and is its own audit event.

    Raises:
        PairNotFound: no such pair.
        ReviewConflict: the pair is decided, or a record changed since it was scored.
    """
    engine: Engine = steward.resolver.engine
    with engine.connect() as conn:
        if decision == "skip":
            if conn.execute(select(_p.id).where(_p.id == pair_id)).first() is None:
                raise PairNotFound(f"no pair {pair_id}")
            return DecisionOutcome(pair_id=pair_id, decision="skip", event_id=None, action=None)
        check_decidable(conn, pair_id)
    # The check above gives the precise message; Steward.decide checks again under the
    # hub's write lock, so a record changing in between cannot slip through.
    try:
        result = steward.decide(pair_id, decision == "merge", reason, check_fresh=True)
    except StalePair as exc:
        raise ReviewConflict(f"Refused: {exc}", "changed") from None
    except StewardError as exc:
        raise ReviewConflict(str(exc), "decided") from None
    return DecisionOutcome(
        pair_id=pair_id, decision=decision, event_id=result.event_id, action=result.action
    )


def _decisions_of(conn: Connection, actor: str) -> Iterator[Any]:
    """The actor's review decisions and undos, newest first."""
    last: int | None = None
    a = audit_log.c
    while True:
        query = (
            select(a.id, a.action, a.subject_id)
            .where(a.actor == actor, a.action.in_((*DECISION_ACTIONS, "undo")))
            .order_by(a.id.desc())
            .limit(500)
        )
        if last is not None:
            query = query.where(a.id < last)
        rows = conn.execute(query).all()
        yield from rows
        if len(rows) < 500:
            return
        last = rows[-1].id


def last_decision(conn: Connection, actor: str) -> int | None:
    """The audit event of ``actor``'s latest review decision not undone (by them, or by
    anyone since)."""
    undone: set[str] = set()
    a = audit_log.c
    for row in _decisions_of(conn, actor):
        if row.action == "undo":
            undone.add(str(row.subject_id))
            continue
        if str(row.id) in undone:
            continue
        by_others = conn.execute(
            select(a.id).where(a.id > row.id, a.action == "undo", a.subject_id == str(row.id))
        ).first()
        if by_others is None:
            return int(row.id)
    return None


def undo_decision(steward: Steward, event_id: int | None = None) -> UndoOutcome:
    """Undo one of ``steward.actor``'s own review decisions: ``event_id``, or by default
    the latest not undone yet. The pair is pending again (its customers rebuilt).

    Raises:
        ReviewConflict: nothing to undo, not the actor's decision, or undone already.
    """
    engine: Engine = steward.resolver.engine
    a = audit_log.c
    with engine.connect() as conn:
        if event_id is None:
            event_id = last_decision(conn, steward.actor)
            if event_id is None:
                raise ReviewConflict("You have no review decision left to undo.", "undo")
        row = conn.execute(select(a.actor, a.action, a.subject_id).where(a.id == event_id)).first()
    if row is None or row.action not in DECISION_ACTIONS or row.actor != steward.actor:
        raise ReviewConflict(f"Event {event_id} is not one of your review decisions.", "undo")
    try:
        result = steward.undo(event_id, "undo in review")
    except StewardError as exc:
        raise ReviewConflict(str(exc), "undo") from None
    pair = int(row.subject_id) if row.subject_id and str(row.subject_id).isdigit() else None
    return UndoOutcome(
        event_id=result.event_id, undone_event_id=event_id, undone_action=row.action, pair_id=pair
    )


def bulk_accept(
    steward: Steward,
    min_probability: float,
    band: QueueFilter | None = None,
    *,
    limit: int | None = None,
    dry_run: bool = False,
    reason: str = "",
) -> BulkOutcome:
    """Accept every pending pair at or above ``min_probability`` (within ``band``), most
    likely first, each by its own :meth:`Steward.decide` (its own audit event); stale pairs
    are skipped and counted. ``limit`` caps how many pairs one call looks at (the rest are
    counted in ``remaining``); ``dry_run`` only counts."""
    band = band or QueueFilter()
    floor = max(min_probability, band.min_probability or 0.0)
    scope = band.model_copy(update={"min_probability": floor})
    engine: Engine = steward.resolver.engine
    with engine.connect() as conn:
        matched = _count_all(conn, scope)
    outcome = BulkOutcome(
        min_probability=min_probability,
        matched=matched,
        accepted=0,
        stale=0,
        failed=0,
        remaining=matched,
        dry_run=dry_run,
    )
    if dry_run or matched == 0:
        return outcome
    reason = reason or f"bulk accept at probability >= {min_probability:g}"
    cursor: tuple[float, int] | None = None
    looked = 0
    budget = matched if limit is None else min(limit, matched)
    while looked < budget:
        with engine.connect() as conn:
            size = min(200, budget - looked)
            batch, _stop = _walk(conn, "score", scope, size, cursor, True, budget=_UNBOUNDED)
        if not batch:
            break
        for row in batch:
            looked += 1
            cursor = (row.probability, row.id)
            try:
                decide(steward, row.id, "merge", reason)
            except ReviewConflict as exc:
                if exc.kind == "changed":
                    outcome.stale += 1
                else:
                    outcome.failed += 1
            except PairNotFound:
                outcome.failed += 1
            else:
                outcome.accepted += 1
    outcome.remaining = max(0, matched - looked)
    return outcome


_UNBOUNDED = 2**62


def _count_all(conn: Connection, band: QueueFilter) -> int:
    """The exact count (a bulk accept reports what it will do, never an estimate)."""
    query = select(_p.id).where(*_conditions(band)).subquery()
    return int(conn.execute(select(func.count()).select_from(query)).scalar_one())

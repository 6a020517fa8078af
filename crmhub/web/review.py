"""Routes of the review pages and their JSON API (see the module docstring of crmhub.web).

The queue (``/review``) and the pair view (``/review/{pair_id}``) read with ``review.read``
(stewards and auditors); decisions, undo and bulk accept need ``review.decide`` (stewards).
Every query and action is a function of :mod:`crmhub.resolution.queue`; these routes parse,
call and render. Filters, order and blind mode travel in the query string of every link and
form, so a steward keeps their place from pair to pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from crmhub.dedupe.pipeline import MatchSettings
from crmhub.hub import Hub
from crmhub.resolution import queue
from crmhub.resolution.queue import (
    BulkOutcome,
    DecisionOutcome,
    PairNotFound,
    PairView,
    QueueFilter,
    QueuePage,
    ReviewConflict,
    Sort,
    UndoOutcome,
)
from crmhub.resolution.steward import Steward
from crmhub.web.deps import Viewer, check_csrf, get_hub, require
from crmhub.web.rendering import render

__all__ = ["router"]

router = APIRouter()

MAX_ID = 2**63 - 1
"""The largest id the store holds (64-bit): larger ones are refused before any query."""

MAX_OFFSET = 10**9
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_REASON = 1000

BULK_LIMIT = 1000
"""The most pairs one bulk-accept request decides (each its own transaction and audit
event); the rest stay pending and the answer says how many, for the next request."""

CONNECTOR_PATTERN = r"^[^\x00-\x1f\x7f]{1,64}$"

Decision = Literal["merge", "reject", "skip"]
_DECISIONS: tuple[Decision, ...] = ("merge", "reject", "skip")


def _safe_text(value: str) -> str:
    """Text the store can hold: no NUL, no lone surrogate (a JSON body can carry both)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


SafeText = Annotated[str, AfterValidator(_safe_text)]


class Problem(BaseModel):
    """An error: what went wrong, in words."""

    detail: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Not signed in"},
    403: {"model": Problem, "description": "The role may not do this (or no CSRF token)"},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such pair"}
}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {
        "model": Problem,
        "description": "Refused: the pair is decided, or a record changed since it was scored",
    }
}


# ---------------------------------------------------------------------------------- queries
@dataclass(frozen=True)
class QueueQuery:
    """Where the steward is: the queue's order, filter, page size and blind mode."""

    sort: Sort = "uncertainty"
    band: QueueFilter = field(default_factory=QueueFilter)
    blind: bool = False
    limit: int = DEFAULT_LIMIT

    def params(self, **extra: Any) -> str:
        """This query as a query string (defaults left out), with ``extra`` parameters."""
        values: dict[str, Any] = {}
        if self.sort != "uncertainty":
            values["sort"] = self.sort
        if self.band.connector:
            values["connector"] = self.band.connector
        if self.band.min_probability is not None:
            values["min_probability"] = repr(self.band.min_probability)
        if self.band.max_probability is not None:
            values["max_probability"] = repr(self.band.max_probability)
        if self.blind:
            values["blind"] = "1"
        if self.limit != DEFAULT_LIMIT:
            values["limit"] = str(self.limit)
        values.update({k: v for k, v in extra.items() if v is not None})
        return urlencode(values)

    @property
    def filtered(self) -> bool:
        band = self.band
        return bool(
            band.connector or band.min_probability is not None or band.max_probability is not None
        )


def api_query(
    sort: Annotated[Sort, Query(description="uncertainty (|p - 0.5| ascending) or score")] = (
        "uncertainty"
    ),
    connector: Annotated[
        str | None,
        Query(max_length=64, pattern=CONNECTOR_PATTERN, description="either record's system"),
    ] = None,
    min_probability: Annotated[float | None, Query(ge=0, le=1)] = None,
    max_probability: Annotated[float | None, Query(ge=0, le=1)] = None,
    blind: Annotated[bool, Query(description="hide probabilities and weights")] = False,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> QueueQuery:
    """The queue's query parameters, typed (the JSON API)."""
    band = QueueFilter(
        connector=connector, min_probability=min_probability, max_probability=max_probability
    )
    return QueueQuery(sort=sort, band=band, blind=blind, limit=limit)


def _bad(message: str) -> HTTPException:
    return HTTPException(422, message)


def _optional_float(value: str | None, name: str) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        number = float(value)
    except ValueError:
        raise _bad(f"{name} must be a number from 0 to 1") from None
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise _bad(f"{name} must be a number from 0 to 1")
    return number


def _optional_int(value: Any, name: str, low: int = 1, high: int = MAX_ID) -> int | None:
    if value is None or not str(value).strip():
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        raise _bad(f"{name} must be a whole number") from None
    if not low <= number <= high:
        raise _bad(f"{name} must be from {low} to {high}")
    return number


def page_query(
    sort: str | None = None,
    connector: str | None = None,
    min_probability: str | None = None,
    max_probability: str | None = None,
    blind: str | None = None,
    limit: str | None = None,
) -> QueueQuery:
    """The queue's query parameters as a browser sends them (an empty field means "any")."""
    if sort and sort not in queue.SORTS:
        raise _bad("sort must be uncertainty or score")
    connector = (connector or "").strip() or None
    if connector is not None and (len(connector) > 64 or any(ord(c) < 32 for c in connector)):
        raise _bad("unknown source system")
    band = QueueFilter(
        connector=connector,
        min_probability=_optional_float(min_probability, "min_probability"),
        max_probability=_optional_float(max_probability, "max_probability"),
    )
    size = _optional_int(limit, "limit", 1, MAX_LIMIT) or DEFAULT_LIMIT
    return QueueQuery(
        sort="score" if sort == "score" else "uncertainty",
        band=band,
        blind=(blind or "").lower() in ("1", "true", "on", "yes"),
        limit=size,
    )


# ---------------------------------------------------------------------------------- helpers
def _steward(hub: Hub, who: Viewer) -> Steward:
    return Steward(hub.resolver(), who.principal.actor)


def _comparisons(hub: Hub) -> Any:
    return MatchSettings.from_config(hub.config.dedupe).comparisons


def _load_page(hub: Hub, q: QueueQuery, **where: Any) -> QueuePage:
    with hub.engine.connect() as conn:
        page = queue.list_pending(conn, sort=q.sort, band=q.band, limit=q.limit, **where)
    return page.blinded() if q.blind else page


def _load_pair(hub: Hub, pair_id: int, blind: bool) -> PairView:
    with hub.engine.connect() as conn:
        view = queue.pair_view(conn, pair_id, _comparisons(hub))
    if view is None:
        raise HTTPException(404, f"no pair {pair_id}")
    return view.blinded() if blind else view


def _next_pair(hub: Hub, pair_id: int, q: QueueQuery) -> int | None:
    with hub.engine.connect() as conn:
        return queue.next_pending(conn, pair_id, sort=q.sort, band=q.band)


_FLASH_INTS = ("pair", "event", "accepted", "stale", "failed", "remaining")


def _flash(request: Request) -> str | None:
    """The message of what was just done, from the redirect's query (numbers only)."""
    params = request.query_params
    done = params.get("done")
    numbers: dict[str, int] = {}
    for name in _FLASH_INTS:
        raw = params.get(name, "")
        if raw.isdigit() and len(raw) <= 19:
            numbers[name] = int(raw)
    pair, event = numbers.get("pair"), numbers.get("event")
    if done == "merge" and pair:
        return f"Merged pair {pair} (audit event {event}). Press u to undo."
    if done == "reject" and pair:
        return f"Pair {pair} marked as not a match (audit event {event}). Press u to undo."
    if done == "skip" and pair:
        return f"Skipped pair {pair}: it stays in the queue."
    if done == "undo" and pair:
        return f"Undid your decision on pair {pair} (event {event}): it is pending again."
    if done == "bulk":
        text = (
            f"Bulk accept: {numbers.get('accepted', 0)} pairs accepted, each its own audited "
            f"decision; {numbers.get('stale', 0)} skipped because a record changed, "
            f"{numbers.get('failed', 0)} decided meanwhile."
        )
        if numbers.get("remaining"):
            text += f" {numbers['remaining']} more remain above the threshold: run it again."
        return text
    if done == "empty":
        return "No other pending pair in this queue."
    return None


def _redirect(path: str, params: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?{params}" if params else path, status_code=303)


def _pair_page(
    request: Request,
    hub: Hub,
    who: Viewer,
    pair_id: int,
    q: QueueQuery,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    pair = _load_pair(hub, pair_id, q.blind)
    params = request.query_params
    undo_event = None
    if params.get("done") in ("merge", "reject"):
        undo_event = _optional_int(params.get("event"), "event")
    context = {
        "who": who,
        "pair": pair,
        "q": q,
        "qs": q.params(),
        "flash": None if error else _flash(request),
        "error": error,
        "can_decide": who.can("review.decide"),
        "undo_event": undo_event,
    }
    return render(request, "review_pair.html", context, status_code=status_code)


def _queue_page(
    request: Request,
    hub: Hub,
    who: Viewer,
    q: QueueQuery,
    page: QueuePage,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    connectors = hub.connector_names(enabled_only=False)
    if q.band.connector and q.band.connector not in connectors:
        connectors = [*connectors, q.band.connector]
    context = {
        "who": who,
        "page": page,
        "q": q,
        "qs": q.params(),
        "connectors": connectors,
        "flash": None if error else _flash(request),
        "error": error,
        "can_decide": who.can("review.decide"),
        "bulk_limit": BULK_LIMIT,
    }
    return render(request, "review_queue.html", context, status_code=status_code)


# ---------------------------------------------------------------------------------- pages
@router.get("/review", response_class=HTMLResponse, include_in_schema=False)
def queue_page(
    request: Request,
    q: QueueQuery = Depends(page_query),
    who: Viewer = Depends(require("review.read")),
    hub: Hub = Depends(get_hub),
) -> Response:
    """The queue: pending suggestions, with filters and paging."""
    params = request.query_params
    where = {
        "after": _optional_int(params.get("after"), "after"),
        "before": _optional_int(params.get("before"), "before"),
        "offset": _optional_int(params.get("offset"), "offset", 0, MAX_OFFSET),
    }
    page = _load_page(hub, q, **where)
    return _queue_page(request, hub, who, q, page)


@router.post("/review/undo", include_in_schema=False)
async def undo_form(
    request: Request,
    q: QueueQuery = Depends(page_query),
    who: Viewer = Depends(require("review.decide")),
    hub: Hub = Depends(get_hub),
) -> Response:
    """Undo the viewer's last review decision (or the one named by ``event_id``)."""
    await check_csrf(request, who)
    form = await request.form()
    event_id = _optional_int(form.get("event_id"), "event_id")
    from_pair = _optional_int(form.get("from_pair"), "from_pair")
    try:
        outcome = await run_in_threadpool(queue.undo_decision, _steward(hub, who), event_id)
    except ReviewConflict as exc:
        if from_pair is not None:
            return await run_in_threadpool(
                _pair_page, request, hub, who, from_pair, q, error=str(exc), status_code=409
            )
        page = await run_in_threadpool(_load_page, hub, q)
        return _queue_page(request, hub, who, q, page, error=str(exc), status_code=409)
    flash = q.params(done="undo", pair=outcome.pair_id, event=outcome.undone_event_id)
    if outcome.pair_id is None:
        return _redirect("/review", flash)
    return _redirect(f"/review/{outcome.pair_id}", flash)


@router.post("/review/bulk-accept", include_in_schema=False)
async def bulk_form(
    request: Request,
    q: QueueQuery = Depends(page_query),
    who: Viewer = Depends(require("review.decide")),
    hub: Hub = Depends(get_hub),
) -> Response:
    """Bulk accept: first a confirmation with the count, then (``confirm=1``) the decisions,
    one audited decision per pair."""
    await check_csrf(request, who)
    form = await request.form()
    threshold = _optional_float(_text(form.get("min_probability")), "min_probability")
    if threshold is None:
        raise _bad("min_probability is required: a number from 0 to 1")
    steward = _steward(hub, who)
    if _text(form.get("confirm")) != "1":
        preview = await run_in_threadpool(
            queue.bulk_accept, steward, threshold, q.band, dry_run=True
        )
        context = {
            "who": who,
            "q": q,
            "qs": q.params(),
            "preview": preview,
            "threshold": threshold,
            "bulk_limit": BULK_LIMIT,
        }
        return render(request, "review_bulk.html", context)
    outcome = await run_in_threadpool(
        queue.bulk_accept, steward, threshold, q.band, limit=BULK_LIMIT
    )
    return _redirect(
        "/review",
        q.params(
            done="bulk",
            accepted=outcome.accepted,
            stale=outcome.stale,
            failed=outcome.failed,
            remaining=outcome.remaining,
        ),
    )


@router.post("/review/{pair_id:int}/decision", include_in_schema=False)
async def decision_form(
    request: Request,
    pair_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    q: QueueQuery = Depends(page_query),
    who: Viewer = Depends(require("review.decide")),
    hub: Hub = Depends(get_hub),
) -> Response:
    """Merge, not a match, or skip; then the next pending pair of the same queue."""
    await check_csrf(request, who)
    form = await request.form()
    decision = _text(form.get("decision"))
    if decision not in _DECISIONS:
        raise _bad("decision must be merge, reject or skip")
    reason = _reason(_text(form.get("reason")))
    try:
        outcome = await run_in_threadpool(
            queue.decide,
            _steward(hub, who),
            pair_id,
            decision,
            reason,
        )
    except PairNotFound:
        raise HTTPException(404, f"no pair {pair_id}") from None
    except ReviewConflict as exc:
        return await run_in_threadpool(
            _pair_page, request, hub, who, pair_id, q, error=str(exc), status_code=409
        )
    following = await run_in_threadpool(_next_pair, hub, pair_id, q)
    flash = q.params(done=decision, pair=pair_id, event=outcome.event_id)
    return _redirect("/review" if following is None else f"/review/{following}", flash)


@router.get("/review/{pair_id:int}", response_class=HTMLResponse, include_in_schema=False)
def pair_page(
    request: Request,
    pair_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    q: QueueQuery = Depends(page_query),
    who: Viewer = Depends(require("review.read")),
    hub: Hub = Depends(get_hub),
) -> Response:
    """One pair side by side, its waterfall, and the decision keys."""
    return _pair_page(request, hub, who, pair_id, q)


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _reason(value: str) -> str:
    if len(value) > MAX_REASON:
        raise _bad(f"reason: at most {MAX_REASON} characters")
    try:
        return _safe_text(value)
    except ValueError as exc:
        raise _bad(f"reason {exc}") from None


# ---------------------------------------------------------------------------------- JSON API
class DecisionIn(BaseModel):
    """A decision on one pair."""

    model_config = ConfigDict(strict=True)  # JSON as the schema says: no 0 for false

    decision: Decision
    reason: SafeText = Field("", max_length=MAX_REASON)


class DecisionOut(DecisionOutcome):
    """What the decision did, and the next pending pair of the same queue."""

    next_pair_id: int | None


class UndoIn(BaseModel):
    """Which decision to undo: one of your own (default: your latest not undone)."""

    model_config = ConfigDict(strict=True)  # JSON as the schema says: no 0 for false

    event_id: int | None = Field(None, ge=1, le=MAX_ID)


class BulkIn(BaseModel):
    """Accept every pending pair at or above ``min_probability`` (within the filter)."""

    model_config = ConfigDict(strict=True)  # JSON as the schema says: no 0 for false

    min_probability: float = Field(ge=0, le=1)
    connector: Annotated[str, Field(max_length=64, pattern=CONNECTOR_PATTERN)] | None = None
    max_probability: float | None = Field(None, ge=0, le=1)
    dry_run: bool = False
    limit: int = Field(BULK_LIMIT, ge=1, le=10 * BULK_LIMIT)


@router.get(
    "/api/review",
    response_model=QueuePage,
    responses=_ERRORS,
    tags=["review"],
    summary="The review queue",
)
def api_queue(
    q: QueueQuery = Depends(api_query),
    after: Annotated[int | None, Query(ge=1, le=MAX_ID, description="page after this pair")] = (
        None
    ),
    before: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="page before this pair")
    ] = None,
    offset: Annotated[int | None, Query(ge=0, le=MAX_OFFSET, description="position")] = None,
    who: Viewer = Depends(require("review.read")),
    hub: Hub = Depends(get_hub),
) -> QueuePage:
    """Pending suggestions, a page at a time (keyset cursors, or an offset)."""
    return _load_page(hub, q, after=after, before=before, offset=offset)


@router.post(
    "/api/review/undo",
    response_model=UndoOutcome,
    responses={**_ERRORS, **_CONFLICT},
    tags=["review"],
    summary="Undo your last review decision",
)
async def api_undo(
    request: Request,
    body: Annotated[UndoIn | None, Body()] = None,
    who: Viewer = Depends(require("review.decide")),
    hub: Hub = Depends(get_hub),
) -> UndoOutcome:
    """Undo one of your own review decisions (default: the latest not undone)."""
    await check_csrf(request, who)
    event_id = body.event_id if body else None
    try:
        return await run_in_threadpool(queue.undo_decision, _steward(hub, who), event_id)
    except ReviewConflict as exc:
        raise HTTPException(409, str(exc)) from None


@router.post(
    "/api/review/bulk-accept",
    response_model=BulkOutcome,
    responses=_ERRORS,
    tags=["review"],
    summary="Accept every pending pair above a probability",
)
async def api_bulk(
    request: Request,
    body: BulkIn,
    who: Viewer = Depends(require("review.decide")),
    hub: Hub = Depends(get_hub),
) -> BulkOutcome:
    """Each pair is still its own decision and audit event; stale pairs are skipped."""
    await check_csrf(request, who)
    band = QueueFilter(connector=body.connector, max_probability=body.max_probability)
    return await run_in_threadpool(
        queue.bulk_accept,
        _steward(hub, who),
        body.min_probability,
        band,
        limit=body.limit,
        dry_run=body.dry_run,
    )


@router.post(
    "/api/review/{pair_id:int}/decision",
    response_model=DecisionOut,
    responses={**_ERRORS, **_NOT_FOUND, **_CONFLICT},
    tags=["review"],
    summary="Merge, reject or skip a pair",
)
async def api_decision(
    request: Request,
    pair_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    body: DecisionIn,
    q: QueueQuery = Depends(api_query),
    who: Viewer = Depends(require("review.decide")),
    hub: Hub = Depends(get_hub),
) -> DecisionOut:
    """Refused (409) when the pair is decided or a record changed since it was scored;
    ``next_pair_id`` is the next pending pair of the queue the query parameters describe."""
    await check_csrf(request, who)
    try:
        outcome = await run_in_threadpool(
            queue.decide, _steward(hub, who), pair_id, body.decision, body.reason.strip()
        )
    except PairNotFound:
        raise HTTPException(404, f"no pair {pair_id}") from None
    except ReviewConflict as exc:
        raise HTTPException(409, str(exc)) from None
    following = await run_in_threadpool(_next_pair, hub, pair_id, q)
    return DecisionOut(**outcome.model_dump(), next_pair_id=following)


@router.get(
    "/api/review/{pair_id:int}",
    response_model=PairView,
    responses={**_ERRORS, **_NOT_FOUND},
    tags=["review"],
    summary="One pair, side by side, with its waterfall",
)
def api_pair(
    pair_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    blind: Annotated[bool, Query(description="hide probabilities and weights")] = False,
    who: Viewer = Depends(require("review.read")),
    hub: Hub = Depends(get_hub),
) -> PairView:
    """Both records, what differs, the per-field waterfall, sources, dates and customers."""
    return _load_pair(hub, pair_id, blind)

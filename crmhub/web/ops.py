"""The ops pages and their JSON API: the run history (counts, failures, retries), quarantine
(errors; the raw record, personal data, only on a row's own page; retry after a mapping fix)
and push failures (make them due again).

Reading needs ``ops.read`` (ops, auditor); acting needs ``ops.act`` (ops). The queries and
actions are :mod:`crmhub.ops_views`; routes parse, call and render.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from crmhub import ops_views
from crmhub.errors import CrmhubError
from crmhub.hub import Hub, RetryOutcome
from crmhub.web.deps import Viewer, check_csrf, get_hub, require
from crmhub.web.rendering import render

__all__ = ["api", "pages", "router"]

MAX_ID = 2**53 - 1
"""The largest id taken (exact in a JSON number, within a BIGINT)."""
PER_PAGE = 50

RecordId = Annotated[int, Field(ge=1, le=MAX_ID)]
Name = Annotated[str, Field(min_length=1, max_length=64)]
RunStatus = Literal["running", "succeeded", "failed", "interrupted", "rejected"]

# Record ids are ``{...:int}`` in paths: /quarantine/retry is then no record, and a GET of
# it is a 405, not a 422 for a bad id.
pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["ops"])
router = APIRouter()

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such record"}}
_BAD_BODY: dict[int | str, dict[str, Any]] = {400: {"description": "The body is not JSON"}}


# ------------------------------------------------------------------------- response models
class RunCounts(BaseModel):
    """What a run did to records."""

    read: int
    inserted: int
    updated: int
    unchanged: int
    deleted: int
    quarantined: int
    suppressed: int
    pushed: int
    push_failed: int
    retries: int = Field(description="HTTP requests retried (429, 5xx, connection errors)")
    rejected: int = Field(description="webhook deliveries refused (bad signature)")
    echoed: int = Field(description="records that came back with what the hub pushed")


class RunOut(BaseModel):
    """One sync, push, retry or webhook run."""

    id: int
    connector: str
    stream: str
    mode: str
    status: str
    started_at: datetime
    heartbeat_at: datetime
    finished_at: datetime | None
    duration: float | None = Field(description="seconds (so far, for a running run)")
    counts: RunCounts
    error: str | None


class RunsOut(BaseModel):
    """A page of runs, newest first."""

    runs: list[RunOut]
    total: int
    page: int
    per_page: int
    pages: int


class QuarantineRowOut(BaseModel):
    """A quarantined record without its raw content."""

    id: int
    run_id: int | None
    connector: str
    stream: str
    external_id: str | None
    location: str | None
    errors: list[str]
    created_at: datetime
    last_seen: datetime
    resolved_at: datetime | None
    resolution: str | None


class RunDetailOut(RunOut):
    """A run and the quarantine rows it left."""

    quarantined_records: list[QuarantineRowOut]


class QuarantineGroup(BaseModel):
    """Open quarantine rows of one connector stream."""

    connector: str
    stream: str
    open: int


class QuarantineOut(BaseModel):
    """A page of open quarantine rows, newest first, and the open counts per stream."""

    records: list[QuarantineRowOut]
    total: int
    page: int
    per_page: int
    pages: int
    groups: list[QuarantineGroup]


class QuarantineItemOut(QuarantineRowOut):
    """A quarantined record with its raw content (personal data)."""

    raw: str = Field(description="the record as received")
    record: dict[str, Any] | None = Field(description="the raw record parsed, if JSON")


class QuarantineRetryIn(BaseModel):
    """Which quarantined records to map again: ``ids``, or every open one of ``connector``."""

    ids: list[RecordId] = Field(default_factory=list, max_length=1000)
    connector: Name | None = None


class QuarantineRetryOut(BaseModel):
    """What the retry did: records read, stored, still failing, and not retriable
    (unparsed rows: fix the source and sync again)."""

    read: int
    inserted: int
    updated: int
    still_failing: int
    suppressed: int
    not_retriable: int


class PushOut(BaseModel):
    """A push that failed for good or waits for its next try (no field values)."""

    id: int
    target: str
    stream: str
    external_id: str | None
    customer_id: str | None
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    updated_at: datetime


class PushesOut(BaseModel):
    """Failed and retrying pushes, newest first, and the outbox's rows by status."""

    pushes: list[PushOut]
    summary: dict[str, int]


class PushRetryIn(BaseModel):
    """Which pushes to make due now: ``ids``, or every failed and waiting one of
    ``target``."""

    ids: list[RecordId] = Field(default_factory=list, max_length=1000)
    target: Name | None = None


class PushRetryOut(BaseModel):
    """How many pushes were made due (they go out on the next push or sync)."""

    due: int


def _retry_out(outcome: RetryOutcome) -> QuarantineRetryOut:
    counts = outcome.counts
    return QuarantineRetryOut(
        read=counts.read,
        inserted=counts.inserted,
        updated=counts.updated,
        still_failing=counts.quarantined,
        suppressed=counts.suppressed,
        not_retriable=outcome.not_retriable,
    )


async def _retry_quarantine(
    hub: Hub, who: Viewer, ids: list[int], connector: str | None
) -> QuarantineRetryOut:
    """Run the retry off the event loop; a connector whose config or mapping is broken is
    a 409."""
    try:
        outcome = await run_in_threadpool(
            ops_views.retry_quarantine,
            hub,
            who.principal.actor,
            ids=ids or None,
            connector=connector or None,
        )
    except CrmhubError as exc:
        raise HTTPException(409, f"cannot retry: {exc}") from None
    return _retry_out(outcome)


async def _make_due(hub: Hub, who: Viewer, ids: list[int], target: str | None) -> int:
    return await run_in_threadpool(
        ops_views.make_pushes_due,
        hub.engine,
        who.principal.actor,
        ids=ids or None,
        target=target or None,
    )


# ------------------------------------------------------------------------------- the pages
PageNumber = Annotated[int, Query(ge=1, le=ops_views.MAX_PAGE)]
Filter = Annotated[str, Query(max_length=64)]


@pages.get("/runs", response_class=HTMLResponse)
def runs_html(
    request: Request,
    connector: Filter = "",
    status: Filter = "",
    page: PageNumber = 1,
    who: Viewer = Depends(require("ops.read")),
    hub: Hub = Depends(get_hub),
) -> Response:
    """The run history: counts, durations, failures with their error."""
    with hub.engine.connect() as conn:
        listing = ops_views.runs_page(
            conn, connector=connector or None, status=status or None, page=page, per_page=PER_PAGE
        )
        connectors = sorted(set(ops_views.run_connectors(conn)) | set(hub.connector_names()))
    context = {
        "who": who,
        "listing": listing,
        "connector": connector,
        "status": status,
        "connectors": connectors,
        "statuses": ops_views.RUN_STATUSES,
        "columns": ops_views.shown_counts(listing.items),
    }
    return render(request, "ops_runs.html", context)


@pages.get("/runs/{run_id:int}", response_class=HTMLResponse)
def run_html(
    request: Request,
    run_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    who: Viewer = Depends(require("ops.read")),
    hub: Hub = Depends(get_hub),
) -> Response:
    """One run: its counts, error and the records it quarantined."""
    with hub.engine.connect() as conn:
        run = ops_views.run_detail(conn, run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id}")
    context = {"who": who, "run": run, "count_names": ops_views.COUNT_NAMES}
    return render(request, "ops_run.html", context)


def _quarantine_context(
    hub: Hub, who: Viewer, connector: str, stream: str, page: int
) -> dict[str, Any]:
    with hub.engine.connect() as conn:
        listing = ops_views.quarantine_page(
            conn, connector=connector or None, stream=stream or None, page=page, per_page=PER_PAGE
        )
        groups = ops_views.quarantine_groups(conn)
    return {
        "who": who,
        "listing": listing,
        "groups": groups,
        "connector": connector,
        "stream": stream,
        "outcome": None,
        "problem": None,
    }


@pages.get("/quarantine", response_class=HTMLResponse)
def quarantine_html(
    request: Request,
    connector: Filter = "",
    stream: Filter = "",
    page: PageNumber = 1,
    who: Viewer = Depends(require("ops.read")),
    hub: Hub = Depends(get_hub),
) -> Response:
    """Open quarantine rows with their errors (no raw values)."""
    context = _quarantine_context(hub, who, connector, stream, page)
    return render(request, "ops_quarantine.html", context)


@pages.post("/quarantine/retry", response_class=HTMLResponse)
async def quarantine_retry_html(
    request: Request,
    ids: Annotated[list[RecordId], Form()] = [],  # noqa: B006 (FastAPI copies defaults)
    connector: Annotated[str, Form(max_length=64)] = "",
    who: Viewer = Depends(require("ops.act")),
    hub: Hub = Depends(get_hub),
) -> Response:
    """Retry the chosen rows (or every open one of a connector) and show what happened."""
    await check_csrf(request, who)
    status, outcome, problem = 200, None, None
    if not ids and not connector:
        status, problem = 422, "Tick the records to retry, or retry all of a connector."
    else:
        try:
            outcome = await _retry_quarantine(hub, who, ids, connector or None)
        except HTTPException as exc:
            status, problem = exc.status_code, str(exc.detail)
    context = _quarantine_context(hub, who, "", "", 1)
    context.update(outcome=outcome, problem=problem)
    return render(request, "ops_quarantine.html", context, status_code=status)


@pages.get("/quarantine/{quarantine_id:int}", response_class=HTMLResponse)
def quarantine_item_html(
    request: Request,
    quarantine_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    who: Viewer = Depends(require("ops.read")),
    hub: Hub = Depends(get_hub),
) -> Response:
    """One quarantined record with its errors and raw content."""
    with hub.engine.connect() as conn:
        item = ops_views.quarantine_item(conn, quarantine_id)
    if item is None:
        raise HTTPException(404, f"no quarantined record {quarantine_id}")
    return render(request, "ops_quarantine_item.html", {"who": who, "item": item})


def _pushes_context(hub: Hub, who: Viewer, target: str) -> dict[str, Any]:
    with hub.engine.connect() as conn:
        failures = ops_views.push_failures(conn, target=target or None)
    return {"who": who, "failures": failures, "target": target, "due": None, "problem": None}


@pages.get("/pushes", response_class=HTMLResponse)
def pushes_html(
    request: Request,
    target: Filter = "",
    who: Viewer = Depends(require("ops.read")),
    hub: Hub = Depends(get_hub),
) -> Response:
    """Pushes that failed or wait for a retry, and the outbox by status."""
    return render(request, "ops_pushes.html", _pushes_context(hub, who, target))


@pages.post("/pushes/retry", response_class=HTMLResponse)
async def pushes_retry_html(
    request: Request,
    ids: Annotated[list[RecordId], Form()] = [],  # noqa: B006 (FastAPI copies defaults)
    target: Annotated[str, Form(max_length=64)] = "",
    who: Viewer = Depends(require("ops.act")),
    hub: Hub = Depends(get_hub),
) -> Response:
    """Make the chosen pushes (or every failing one of a target) due now."""
    await check_csrf(request, who)
    status, due, problem = 200, None, None
    if not ids and not target:
        status, problem = 422, "Tick the pushes to retry, or retry all of a target."
    else:
        due = await _make_due(hub, who, ids, target or None)
    context = _pushes_context(hub, who, "")
    context.update(due=due, problem=problem)
    return render(request, "ops_pushes.html", context, status_code=status)


# ------------------------------------------------------------------------------ JSON API
@api.get("/runs", response_model=RunsOut)
def runs_api(
    connector: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    status: RunStatus | None = None,
    page: PageNumber = 1,
    per_page: Annotated[int, Query(ge=1, le=200)] = PER_PAGE,
    who: Viewer = Depends(require("ops.read")),
    hub: Hub = Depends(get_hub),
) -> RunsOut:
    """Runs, newest first, optionally of one connector instance and one status."""
    with hub.engine.connect() as conn:
        listing = ops_views.runs_page(
            conn, connector=connector, status=status, page=page, per_page=per_page
        )
    return RunsOut(
        runs=[RunOut.model_validate(run) for run in listing.items],
        total=listing.total,
        page=listing.page,
        per_page=listing.per_page,
        pages=listing.pages,
    )


@api.get("/runs/{run_id:int}", response_model=RunDetailOut, responses=_NOT_FOUND)
def run_api(
    run_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    who: Viewer = Depends(require("ops.read")),
    hub: Hub = Depends(get_hub),
) -> RunDetailOut:
    """One run with its counts, error and the records it quarantined."""
    with hub.engine.connect() as conn:
        run = ops_views.run_detail(conn, run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id}")
    return RunDetailOut.model_validate(run)


@api.get("/quarantine", response_model=QuarantineOut)
def quarantine_api(
    connector: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    stream: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    page: PageNumber = 1,
    per_page: Annotated[int, Query(ge=1, le=200)] = PER_PAGE,
    who: Viewer = Depends(require("ops.read")),
    hub: Hub = Depends(get_hub),
) -> QuarantineOut:
    """Open quarantine rows, newest first, without their raw records."""
    with hub.engine.connect() as conn:
        listing = ops_views.quarantine_page(
            conn, connector=connector, stream=stream, page=page, per_page=per_page
        )
        groups = ops_views.quarantine_groups(conn)
    return QuarantineOut(
        records=[QuarantineRowOut.model_validate(row) for row in listing.items],
        total=listing.total,
        page=listing.page,
        per_page=listing.per_page,
        pages=listing.pages,
        groups=[QuarantineGroup.model_validate(g) for g in groups],
    )


@api.post(
    "/quarantine/retry",
    response_model=QuarantineRetryOut,
    responses={**_BAD_BODY, 409: {"description": "A connector's config or mapping is invalid"}},
)
async def quarantine_retry_api(
    request: Request,
    body: QuarantineRetryIn,
    who: Viewer = Depends(require("ops.act")),
    hub: Hub = Depends(get_hub),
) -> QuarantineRetryOut:
    """Map the chosen quarantined records (or every open one of a connector) again with the
    current mappings, after a fix. Choosing nothing retries nothing."""
    await check_csrf(request, who)
    return await _retry_quarantine(hub, who, body.ids, body.connector)


@api.get("/quarantine/{quarantine_id:int}", response_model=QuarantineItemOut, responses=_NOT_FOUND)
def quarantine_item_api(
    quarantine_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    who: Viewer = Depends(require("ops.read")),
    hub: Hub = Depends(get_hub),
) -> QuarantineItemOut:
    """One quarantined record with its raw content."""
    with hub.engine.connect() as conn:
        item = ops_views.quarantine_item(conn, quarantine_id)
    if item is None:
        raise HTTPException(404, f"no quarantined record {quarantine_id}")
    return QuarantineItemOut.model_validate(item)


@api.get("/pushes", response_model=PushesOut)
def pushes_api(
    target: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    who: Viewer = Depends(require("ops.read")),
    hub: Hub = Depends(get_hub),
) -> PushesOut:
    """Pushes that failed or wait for a retry, newest first, and the outbox by status."""
    with hub.engine.connect() as conn:
        failures = ops_views.push_failures(conn, target=target, limit=limit)
    return PushesOut(
        pushes=[PushOut.model_validate(row) for row in failures.pushes],
        summary=failures.summary,
    )


@api.post("/pushes/retry", response_model=PushRetryOut, responses=_BAD_BODY)
async def pushes_retry_api(
    request: Request,
    body: PushRetryIn,
    who: Viewer = Depends(require("ops.act")),
    hub: Hub = Depends(get_hub),
) -> PushRetryOut:
    """Make the chosen pushes (or every failed and waiting one of a target) due now; they
    are sent on the next push or sync. Choosing nothing changes nothing."""
    await check_csrf(request, who)
    return PushRetryOut(due=await _make_due(hub, who, body.ids, body.target))


router.include_router(pages)
router.include_router(api)

"""The compliance officer's pages and their JSON API: privacy requests (GDPR erasure and
access), from receipt to certificate.

Pages: ``GET /privacy`` (the requests, open ones first by due date), ``GET|POST /privacy/new``
(record a request), ``GET /privacy/{id}`` (the request, its tasks per system and the
subject's records: personal data, on this page only), its actions (``POST .../verify``,
``.../resolve``, ``.../erase`` with a confirm step, ``.../run``, ``.../complete``,
``.../retry``, ``.../extend``, ``.../refuse``, ``.../access``: the export as a download) and
the PII-free downloads ``GET .../certificate`` and ``GET .../ledger``. The JSON twins live
under ``/api/privacy``: the list, ``POST /api/privacy/receive`` (record a request), one
request with its tasks, and its certificate; they never hold personal data.

Reading needs ``privacy.read`` (compliance, auditor); acting needs ``privacy.act``
(compliance) and a browser session's CSRF token. Every step is
:class:`crmhub.privacy.PrivacyDesk`'s, which audits it; routes parse, call and render.
A :class:`~crmhub.errors.PrivacyError` is the officer's input refused: its message is shown
(400), never a server error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, TypeVar, get_args

import orjson
from fastapi import APIRouter, Body, Depends, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor

from crmhub.errors import PrivacyError
from crmhub.hub import Hub
from crmhub.logs import mask_text
from crmhub.privacy import (
    STATUS_LABELS,
    Identifier,
    PrivacyDesk,
    PrivacyRequest,
    Receipt,
    RequestStatus,
    Subject,
    parse_identifiers,
)
from crmhub.privacy.fanout import PrivacyTask
from crmhub.web.deps import Viewer, check_csrf, get_hub, require
from crmhub.web.rendering import render

__all__ = ["api", "pages", "router"]

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/privacy", tags=["privacy"])
router = APIRouter()

READ = require("privacy.read")
ACT = require("privacy.act")

RequestKindName = Literal["erasure", "access"]
KINDS: tuple[RequestKindName, ...] = ("erasure", "access")
StatusFilter = Literal[
    "open", "received", "verified", "in_progress", "waiting", "done", "partially_done", "refused",
]  # fmt: skip
"""``open`` (every status still being handled) or one status."""
assert get_args(StatusFilter) == ("open", *STATUS_LABELS)

ID_PATTERN = r"^[0-9A-Fa-f-]{1,36}$"


class RequestIdConvertor(Convertor[str]):
    """A request id (or a prefix of it) in a path: hex digits and dashes only, so that
    ``/privacy/new`` and ``/api/privacy/receive`` are never taken for a request (a GET of
    the latter is a 405, not a 422 for a bad id)."""

    regex = "[0-9A-Fa-f-]{1,36}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return str(value)


register_url_convertor("privacy_id", RequestIdConvertor())
RequestId = Annotated[
    str,
    Path(
        pattern=ID_PATTERN,
        max_length=36,
        description="A request id (a unique prefix of it will do).",
    ),
]
MAX_TEXT = 20_000
"""The most characters a form's text field takes (identifiers: one per line)."""
MAX_REASON = 2_000
MAX_IDENTIFIERS = 50
MAX_RECORD_ID = 2**62
"""The largest record id taken (within a BIGINT)."""
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
"""Requests received before this are not plausible (a mistyped year)."""

FLASH = {
    "received": "Request recorded. The subject's records were looked up: check them below.",
    "existing": (
        "An open request already names this subject: carry on with it (nothing new was recorded)."
    ),
    "duplicate": (
        "An open request already names this subject: the new receipt was recorded as its "
        "duplicate and linked to it. Carry on with this one."
    ),
    "unresolved": (
        "Request recorded, but its records could not be looked up: give the subject's "
        "identifiers again below."
    ),
    "verified": "The requester's identity is recorded as verified.",
    "erased": "Erased in the hub; the systems' tasks were started.",
    "ran": "The due system tasks were run.",
    "completed": "The task is closed, with your note.",
    "retried": "The failed tasks are due again: run them now, or wait for the next run.",
    "extended": "The deadline is extended by two further months.",
    "refused": "The request is refused; the reason is recorded.",
}
"""Messages a redirect after an action may show (chosen by key: nothing is echoed back)."""


# ------------------------------------------------------------------------- response models
class Problem(BaseModel):
    """An error."""

    detail: str


class PrivacyRequestOut(BaseModel):
    """A privacy request, without personal data: the subject is named by keyed hashes only
    (counted here, not shown)."""

    id: str
    kind: RequestKindName
    status: str
    status_label: str
    received_at: datetime
    due_at: datetime
    overdue: bool = Field(description="open past its due date")
    due_soon: bool = Field(description="open and due within seven days")
    extended: bool
    extension_reason: str | None
    refusal_reason: str | None
    completed_at: datetime | None
    created_by: str
    duplicate_of: str | None = Field(description="the open request this one repeats")
    duplicates: list[str] = Field(description="requests recorded as repeats of this one")
    identifiers: int = Field(description="identifiers the subject is named by")
    records: int = Field(description="source records remembered for the subject (ids only)")
    erased: bool = Field(description="whether the hub part of an erasure is done")


class PrivacyRequestsOut(BaseModel):
    """Requests, open ones first by due date, then the rest newest first."""

    requests: list[PrivacyRequestOut]


class PrivacyTaskOut(BaseModel):
    """One system's part of a request (no record ids, no values)."""

    system: str
    kind: str = Field(description="api (erased through the connector) or manual")
    status: str = Field(description="pending, done or failed")
    records: int = Field(description="the subject's records the system held")
    attempts: int
    next_attempt_at: datetime | None
    erased: int
    already_gone: int
    failed: int
    last_error: str | None
    note_recorded: bool
    completed_by: str | None
    updated_at: datetime


class PrivacyStatusOut(BaseModel):
    """A request with its tasks per system."""

    request: PrivacyRequestOut
    tasks: list[PrivacyTaskOut]


Email = Annotated[str, Field(min_length=1, max_length=320)]
Phone = Annotated[str, Field(min_length=1, max_length=64)]
SourceId = Annotated[str, Field(min_length=1, max_length=500)]


class PrivacyRequestIn(BaseModel):
    """A request received: its kind and the identifiers naming the subject (at least one).
    The identifiers are kept as keyed hashes only."""

    model_config = ConfigDict(extra="forbid")

    kind: RequestKindName
    emails: list[Email] = Field(default_factory=list, max_length=MAX_IDENTIFIERS)
    phones: list[Phone] = Field(default_factory=list, max_length=MAX_IDENTIFIERS)
    source_ids: list[SourceId] = Field(
        default_factory=list,
        max_length=MAX_IDENTIFIERS,
        description="connector/stream/external_id",
    )
    received_at: AwareDatetime | None = Field(None, description="default: now")
    new_receipt: bool = Field(
        False,
        description="a new message from the subject: if an open request already names them, "
        "record this one as its duplicate (otherwise that request is answered)",
    )


class ReceiptOut(BaseModel):
    """The request to work on (an earlier open one, when it already names this subject),
    whether anything was recorded, and the duplicate recorded for it, if any."""

    request: PrivacyRequestOut
    created: bool
    duplicate: PrivacyRequestOut | None
    records_found: int | None = Field(
        description="the subject's source records found (None: the look-up failed)"
    )
    lookup_problem: str | None


class CertificateOut(BaseModel):
    """The PII-free certificate of a request: what was done, where, when and by whom, with
    the audit events' chain hashes and a SHA-256 digest over its own content."""

    model_config = ConfigDict(extra="allow")

    certificate: str
    version: int
    generated_at: str
    request: dict[str, Any]
    subject: dict[str, Any]
    hub: dict[str, Any] | None
    systems: list[dict[str, Any]]
    audit: list[dict[str, Any]]
    digest: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "Refused: the message says why."},
    401: {"model": Problem, "description": "Not signed in."},
    403: {"model": Problem, "description": "The role may not do this (or a CSRF failure)."},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    404: {"model": Problem, "description": "No such request."},
}


# ------------------------------------------------------------------------------- helpers
T = TypeVar("T")


def _desk(hub: Hub, who: Viewer) -> PrivacyDesk:
    return PrivacyDesk(hub, who.principal.actor)


def _now() -> datetime:
    return datetime.now(UTC)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _identifiers(
    hub: Hub, emails: Iterable[str], phones: Iterable[str], source_ids: Iterable[str]
) -> list[Identifier]:
    """The identifiers given, normalised; none given is none (the caller decides whether
    that will do).

    Raises:
        PrivacyError: a value is not a valid email, phone or source id, or too many.
    """
    given = [[v.strip() for v in values if v.strip()] for values in (emails, phones, source_ids)]
    if not any(given):
        return []
    if max(len(values) for values in given) > MAX_IDENTIFIERS:
        raise PrivacyError(f"at most {MAX_IDENTIFIERS} emails, phones or source ids each")
    return parse_identifiers(
        emails=given[0],
        phones=given[1],
        source_ids=given[2],
        region=hub.config.hub.default_region,
    )


def _form_identifiers(hub: Hub, emails: str, phones: str, source_ids: str) -> list[Identifier]:
    return _identifiers(hub, _lines(emails), _lines(phones), _lines(source_ids))


def _received(moment: datetime | None) -> datetime | None:
    """A received time as UTC (None: now).

    Raises:
        PrivacyError: not a plausible time.
    """
    if moment is None:
        return None
    try:
        moment = moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise PrivacyError("the received time is out of range") from None
    if moment < EARLIEST:
        raise PrivacyError(f"a request received before {EARLIEST:%Y} is not plausible")
    return moment


def _received_on(text: str) -> datetime | None:
    """The form's received date: today (or empty) is now; another day its start (UTC).

    Raises:
        PrivacyError: not a date.
    """
    text = text.strip()
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise PrivacyError("the received date is written YYYY-MM-DD") from None
    if day == _now().date():
        return None
    return _received(datetime(day.year, day.month, day.day, tzinfo=UTC))


def _receive(
    desk: PrivacyDesk,
    kind: RequestKindName,
    identifiers: Sequence[Identifier],
    received_at: datetime | None,
    new_receipt: bool,
) -> tuple[Receipt, int | None, str | None]:
    """Record the request, then look its subject's records up (a dry run, remembered on
    the request so it is carried on by its id alone).

    Returns:
        The receipt, the records found (None when the look-up failed) and why it failed.
    """
    if not identifiers:
        raise PrivacyError("name the subject by at least one email, phone or source id")
    receipt = desk.receive(kind, identifiers, received_at=received_at, new_receipt=new_receipt)
    try:
        subject = desk.resolve(receipt.request.id, identifiers)
    except PrivacyError as exc:
        return receipt, None, str(exc)
    receipt.request = desk.request(receipt.request.id)  # with the records remembered
    return receipt, len(subject.records), None


def _status(desk: PrivacyDesk, request_id: str) -> RequestStatus:
    """The request and its tasks.

    Raises:
        HTTPException: 404 for an unknown (or ambiguous) id.
    """
    try:
        return desk.status(request_id)
    except PrivacyError as exc:
        raise HTTPException(404, str(exc)) from None


def _duplicates(rows: Sequence[PrivacyRequest], everything: Sequence[PrivacyRequest]) -> None:
    """Fill in the duplicates of listed requests (a listing leaves them out)."""
    found: dict[str, list[str]] = {}
    for row in sorted(everything, key=lambda r: r.received_at):
        if row.duplicate_of:
            found.setdefault(row.duplicate_of, []).append(row.id)
    for row in rows:
        row.duplicates = found.get(row.id, [])


def _listing(desk: PrivacyDesk, status: str | None, kind: str | None) -> list[PrivacyRequest]:
    rows = desk.requests(status=status, kind=kind)
    _duplicates(rows, desk.requests() if status or kind else rows)
    return rows


def _request_out(request: PrivacyRequest, now: datetime) -> PrivacyRequestOut:
    return PrivacyRequestOut(
        id=request.id,
        kind=request.kind,
        status=request.status,
        status_label=request.status_label,
        received_at=request.received_at,
        due_at=request.due_at,
        overdue=request.overdue(now),
        due_soon=request.due_soon(now),
        extended=request.extended,
        extension_reason=request.extension_reason,
        refusal_reason=request.refusal_reason,
        completed_at=request.completed_at,
        created_by=request.created_by,
        duplicate_of=request.duplicate_of,
        duplicates=request.duplicates,
        identifiers=len(request.identifier_hashes),
        records=len(request.record_ids),
        erased=request.ledger is not None,
    )


def _last_error(task: PrivacyTask) -> str | None:
    error = (task.result or {}).get("last_error")
    return mask_text(str(error)) if error else None


def _task_out(task: PrivacyTask) -> PrivacyTaskOut:
    result = task.result or {}
    return PrivacyTaskOut(
        system=task.connector,
        kind=task.kind,
        status=task.status,
        records=task.records,
        attempts=task.attempts,
        next_attempt_at=task.next_attempt_at,
        erased=int(result.get("erased", 0)),
        already_gone=int(result.get("already_gone", 0)),
        failed=int(result.get("failed", 0)) if task.status != "done" else 0,
        last_error=_last_error(task),
        note_recorded=bool(task.note),
        completed_by=result.get("completed_by"),
        updated_at=task.updated_at,
    )


def _download(document: dict[str, Any], filename: str) -> Response:
    """A JSON document the browser saves rather than shows."""
    return Response(
        orjson.dumps(document, option=orjson.OPT_INDENT_2),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


def _ledger_summary(ledger: dict[str, Any]) -> dict[str, Any]:
    """What an erasure removed, by count (the ledger holds hashes only)."""
    systems = ledger.get("systems") or {}
    return {
        "written_at": ledger.get("written_at"),
        "written_by": ledger.get("written_by"),
        "hub": ledger.get("hub") or {},
        "systems": {
            name: {"erase": entry.get("erase"), "records": entry.get("records", 0)}
            for name, entry in sorted(systems.items())
        },
        "identifiers": len(ledger.get("identifiers") or []),
        "suppressed": len(ledger.get("suppressed") or []),
        "shared": ledger.get("shared_not_suppressed", 0),
        "customers": len(ledger.get("customers") or []),
        "excluded": len(ledger.get("excluded_records") or []),
        "cleanup": ledger.get("cleanup"),
    }


def _empty_form() -> dict[str, str]:
    fields = ("emails", "phones", "source_ids", "note", "reason", "reason_for", "connector")
    return dict.fromkeys(fields, "")


def _request_page(
    request: Request,
    hub: Hub,
    who: Viewer,
    request_id: str,
    *,
    flash: str | None = None,
    duplicate: str | None = None,
    error: str | None = None,
    confirm: Subject | None = None,
    subject: Subject | None = None,
    form: dict[str, str] | None = None,
    exclude: Sequence[int] = (),
    status_code: int = 200,
) -> Response:
    """The request's page: the request, its tasks, and (open, not yet erased, not a
    duplicate) the subject's records as a dry run; ``confirm`` is the subject an erasure
    is about to remove (the confirm step)."""
    desk = _desk(hub, who)
    current = _status(desk, request_id)
    privacy_request = current.request
    now = _now()
    shows_records = (
        privacy_request.open
        and privacy_request.ledger is None
        and privacy_request.duplicate_of is None
    )
    subject_error = None
    if shows_records and subject is None and confirm is None and privacy_request.record_ids:
        try:
            subject = desk.resolve(privacy_request.id, remember=False)
        except PrivacyError as exc:
            subject_error = str(exc)
    context = {
        "who": who,
        "req": privacy_request,
        "tasks": current.tasks,
        "now": now,
        "can_act": who.can("privacy.act"),
        "shows_records": shows_records,
        "subject": subject,
        "subject_error": subject_error,
        "confirm": confirm,
        "exclude": sorted(set(exclude)),
        "ledger": _ledger_summary(privacy_request.ledger) if privacy_request.ledger else None,
        "flash": FLASH.get(flash or ""),
        "duplicate": duplicate if duplicate in privacy_request.duplicates else None,
        "error": error,
        "form": {**_empty_form(), **(form or {})},
        "last_error": _last_error,
        "max_reason": MAX_REASON,
    }
    return render(request, "privacy_request.html", context, status_code=status_code)


def _after(request_id: str, done: str, fragment: str = "") -> Response:
    """Back to the request's page after an action (POST, redirect, GET)."""
    url = f"/privacy/{request_id}?done={done}" + (f"#{fragment}" if fragment else "")
    return RedirectResponse(url, status_code=303)


async def _act(
    request: Request,
    hub: Hub,
    who: Viewer,
    request_id: str,
    action: Callable[[PrivacyDesk, str], T],
    then: Callable[[str, T], Response],
    *,
    form: dict[str, str] | None = None,
) -> Response:
    """Run a desk action on the request (by its full id) off the event loop, then answer
    with ``then``; a refusal shows the page again with the officer's error (400), an
    unknown request is a 404."""
    desk = _desk(hub, who)
    full_id = (await run_in_threadpool(_status, desk, request_id)).request.id
    try:
        result = await run_in_threadpool(action, desk, full_id)
    except PrivacyError as exc:
        return await run_in_threadpool(
            _request_page,
            request,
            hub,
            who,
            full_id,
            error=str(exc),
            form=form,
            status_code=400,
        )
    return await run_in_threadpool(then, full_id, result)


def _redirect(done: str, fragment: str = "") -> Callable[[str, object], Response]:
    """After an action: back to the request's page, saying what was done."""
    return lambda request_id, _result: _after(request_id, done, fragment)


# ------------------------------------------------------------------------------- the pages
Filter = Annotated[str, Query(max_length=64)]


@pages.get("/privacy", response_class=HTMLResponse)
def privacy_list_html(
    request: Request,
    status: Filter = "",
    kind: Filter = "",
    who: Viewer = Depends(READ),
    hub: Hub = Depends(get_hub),
) -> Response:
    """Requests, open ones first by due date; overdue and due-soon ones stand out."""
    problem: str | None = None
    rows: list[PrivacyRequest] = []
    code = 200
    try:
        if kind and kind not in KINDS:
            raise PrivacyError(f"unknown request kind {kind!r} (erasure or access)")
        rows = _listing(_desk(hub, who), status or None, kind or None)
    except PrivacyError as exc:
        problem, code = str(exc), 400
    context = {
        "who": who,
        "rows": rows,
        "now": _now(),
        "status": status,
        "kind": kind,
        "statuses": get_args(StatusFilter),
        "labels": STATUS_LABELS,
        "kinds": KINDS,
        "problem": problem,
        "no_secret": hub.secret() is None,
        "can_act": who.can("privacy.act"),
    }
    return render(request, "privacy_list.html", context, status_code=code)


def _new_page(
    request: Request,
    who: Viewer,
    hub: Hub,
    form: dict[str, str],
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    context = {
        "who": who,
        "form": form,
        "error": error,
        "kinds": KINDS,
        "today": _now().date().isoformat(),
        "no_secret": hub.secret() is None,
    }
    return render(request, "privacy_new.html", context, status_code=status_code)


@pages.get("/privacy/new", response_class=HTMLResponse)
def privacy_new_html(
    request: Request, who: Viewer = Depends(ACT), hub: Hub = Depends(get_hub)
) -> Response:
    """The form to record a request that has arrived."""
    form = {
        "kind": "erasure",
        "emails": "",
        "phones": "",
        "source_ids": "",
        "received": _now().date().isoformat(),
        "new_receipt": "yes",
    }
    return _new_page(request, who, hub, form)


@pages.post("/privacy/new")
async def privacy_new_post(
    request: Request,
    kind: Annotated[str, Form(max_length=16)] = "",
    emails: Annotated[str, Form(max_length=MAX_TEXT)] = "",
    phones: Annotated[str, Form(max_length=MAX_TEXT)] = "",
    source_ids: Annotated[str, Form(max_length=MAX_TEXT)] = "",
    received: Annotated[str, Form(max_length=32)] = "",
    new_receipt: Annotated[str, Form(max_length=8)] = "",
    who: Viewer = Depends(ACT),
    hub: Hub = Depends(get_hub),
) -> Response:
    """Record the request (or find the open one naming the subject), look its records up,
    and go to its page."""
    await check_csrf(request, who)
    form = {
        "kind": kind,
        "emails": emails,
        "phones": phones,
        "source_ids": source_ids,
        "received": received,
        "new_receipt": new_receipt,
    }

    def act() -> tuple[Receipt, int | None, str | None]:
        if kind not in KINDS:
            raise PrivacyError("choose the kind of request: erasure or access")
        identifiers = _form_identifiers(hub, emails, phones, source_ids)
        desk = _desk(hub, who)
        return _receive(desk, kind, identifiers, _received_on(received), bool(new_receipt))

    try:
        receipt, found, _problem = await run_in_threadpool(act)
    except PrivacyError as exc:
        return _new_page(request, who, hub, form, str(exc), status_code=400)
    if found is None:
        done = "unresolved"
    elif receipt.duplicate is not None:
        done = "duplicate"
    else:
        done = "received" if receipt.created else "existing"
    url = f"/privacy/{receipt.request.id}?done={done}"
    if receipt.duplicate is not None:
        url += f"&duplicate={receipt.duplicate.id}"
    return RedirectResponse(url, status_code=303)


@pages.get("/privacy/{request_id:privacy_id}", response_class=HTMLResponse)
def privacy_request_html(
    request: Request,
    request_id: RequestId,
    done: Annotated[str | None, Query(max_length=20)] = None,
    duplicate: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    who: Viewer = Depends(READ),
    hub: Hub = Depends(get_hub),
) -> Response:
    """The request: status, deadlines, duplicates, its tasks per system, and the subject's
    records (a dry run: nothing is deleted) or, once erased, what was removed."""
    return _request_page(request, hub, who, request_id, flash=done, duplicate=duplicate)


@pages.post("/privacy/{request_id:privacy_id}/resolve", response_class=HTMLResponse)
async def privacy_resolve_post(
    request: Request,
    request_id: RequestId,
    emails: Annotated[str, Form(max_length=MAX_TEXT)] = "",
    phones: Annotated[str, Form(max_length=MAX_TEXT)] = "",
    source_ids: Annotated[str, Form(max_length=MAX_TEXT)] = "",
    who: Viewer = Depends(ACT),
    hub: Hub = Depends(get_hub),
) -> Response:
    """Look the subject's records up with identifiers given again (a dry run; the records
    found are remembered on the request)."""
    await check_csrf(request, who)
    form = {"emails": emails, "phones": phones, "source_ids": source_ids}

    def resolve(desk: PrivacyDesk, full_id: str) -> Subject:
        identifiers = _form_identifiers(hub, emails, phones, source_ids)
        if not identifiers:
            raise PrivacyError("give at least one email, phone or source id of the subject")
        return desk.resolve(full_id, identifiers)

    def show(full_id: str, subject: Subject) -> Response:
        return _request_page(request, hub, who, full_id, subject=subject)

    return await _act(request, hub, who, request_id, resolve, show, form=form)


@pages.post("/privacy/{request_id:privacy_id}/verify")
async def privacy_verify_post(
    request: Request,
    request_id: RequestId,
    who: Viewer = Depends(ACT),
    hub: Hub = Depends(get_hub),
) -> Response:
    """Record that the requester's identity was verified."""
    await check_csrf(request, who)
    return await _act(
        request, hub, who, request_id, lambda d, rid: d.verify(rid), _redirect("verified")
    )


ExcludedIds = Annotated[list[Annotated[int, Field(ge=1, le=MAX_RECORD_ID)]], Form()]


@pages.post("/privacy/{request_id:privacy_id}/erase")
async def privacy_erase_post(
    request: Request,
    request_id: RequestId,
    emails: Annotated[str, Form(max_length=MAX_TEXT)] = "",
    phones: Annotated[str, Form(max_length=MAX_TEXT)] = "",
    source_ids: Annotated[str, Form(max_length=MAX_TEXT)] = "",
    exclude: ExcludedIds = [],  # noqa: B006 (FastAPI copies defaults)
    confirm: Annotated[str, Form(max_length=8)] = "",
    who: Viewer = Depends(ACT),
    hub: Hub = Depends(get_hub),
) -> Response:
    """Erase the subject: first the records that would go are shown (nothing is deleted);
    with ``confirm=yes``, the erasure in the hub, then in every system."""
    await check_csrf(request, who)
    form = {"emails": emails, "phones": phones, "source_ids": source_ids}
    if confirm != "yes":

        def preview(desk: PrivacyDesk, full_id: str) -> Subject:
            identifiers = _form_identifiers(hub, emails, phones, source_ids)
            return desk.preview_erasure(full_id, identifiers, exclude=exclude)

        def ask(full_id: str, subject: Subject) -> Response:
            return _request_page(
                request, hub, who, full_id, confirm=subject, form=form, exclude=exclude
            )

        return await _act(request, hub, who, request_id, preview, ask, form=form)

    def erase(desk: PrivacyDesk, full_id: str) -> object:
        identifiers = _form_identifiers(hub, emails, phones, source_ids)
        return desk.erase(full_id, identifiers, exclude=exclude)

    return await _act(request, hub, who, request_id, erase, _redirect("erased"), form=form)


@pages.post("/privacy/{request_id:privacy_id}/run")
async def privacy_run_post(
    request: Request,
    request_id: RequestId,
    who: Viewer = Depends(ACT),
    hub: Hub = Depends(get_hub),
) -> Response:
    """Work on the request's due system tasks now."""
    await check_csrf(request, who)
    return await _act(
        request, hub, who, request_id, lambda d, rid: d.run_tasks(rid), _redirect("ran", "tasks")
    )


@pages.post("/privacy/{request_id:privacy_id}/complete")
async def privacy_complete_post(
    request: Request,
    request_id: RequestId,
    connector: Annotated[str, Form(max_length=64)] = "",
    note: Annotated[str, Form(max_length=MAX_REASON)] = "",
    who: Viewer = Depends(ACT),
    hub: Hub = Depends(get_hub),
) -> Response:
    """Close a system's task by hand, with a note of what was done there."""
    await check_csrf(request, who)
    form = {"connector": connector, "note": note}
    redirect = _redirect("completed", "tasks")
    return await _act(
        request,
        hub,
        who,
        request_id,
        lambda d, rid: d.complete_manual(rid, connector, note),
        redirect,
        form=form,
    )


@pages.post("/privacy/{request_id:privacy_id}/retry")
async def privacy_retry_post(
    request: Request,
    request_id: RequestId,
    who: Viewer = Depends(ACT),
    hub: Hub = Depends(get_hub),
) -> Response:
    """Make the request's failed system tasks due again."""
    await check_csrf(request, who)
    return await _act(
        request,
        hub,
        who,
        request_id,
        lambda d, rid: d.retry_failed(rid),
        _redirect("retried", "tasks"),
    )


@pages.post("/privacy/{request_id:privacy_id}/extend")
async def privacy_extend_post(
    request: Request,
    request_id: RequestId,
    reason: Annotated[str, Form(max_length=MAX_REASON)] = "",
    who: Viewer = Depends(ACT),
    hub: Hub = Depends(get_hub),
) -> Response:
    """Extend the deadline by two further months (once), for a recorded reason."""
    await check_csrf(request, who)
    form = {"reason": reason, "reason_for": "extend"}
    return await _act(
        request,
        hub,
        who,
        request_id,
        lambda d, rid: d.extend(rid, reason),
        _redirect("extended"),
        form=form,
    )


@pages.post("/privacy/{request_id:privacy_id}/refuse")
async def privacy_refuse_post(
    request: Request,
    request_id: RequestId,
    reason: Annotated[str, Form(max_length=MAX_REASON)] = "",
    who: Viewer = Depends(ACT),
    hub: Hub = Depends(get_hub),
) -> Response:
    """Refuse the request, with the reason the subject is told."""
    await check_csrf(request, who)
    form = {"reason": reason, "reason_for": "refuse"}
    return await _act(
        request,
        hub,
        who,
        request_id,
        lambda d, rid: d.refuse(rid, reason),
        _redirect("refused"),
        form=form,
    )


@pages.post("/privacy/{request_id:privacy_id}/access")
async def privacy_access_post(
    request: Request,
    request_id: RequestId,
    emails: Annotated[str, Form(max_length=MAX_TEXT)] = "",
    phones: Annotated[str, Form(max_length=MAX_TEXT)] = "",
    source_ids: Annotated[str, Form(max_length=MAX_TEXT)] = "",
    exclude: ExcludedIds = [],  # noqa: B006 (FastAPI copies defaults)
    who: Viewer = Depends(ACT),
    hub: Hub = Depends(get_hub),
) -> Response:
    """The access export as a JSON download (personal data: it goes to the subject); the
    request is done once it is handed over."""
    await check_csrf(request, who)
    form = {"emails": emails, "phones": phones, "source_ids": source_ids}

    def export(desk: PrivacyDesk, full_id: str) -> dict[str, Any]:
        identifiers = _form_identifiers(hub, emails, phones, source_ids)
        return desk.access(full_id, identifiers, exclude=exclude)

    def download(full_id: str, document: dict[str, Any]) -> Response:
        return _download(document, f"access-export-{full_id}.json")

    return await _act(request, hub, who, request_id, export, download, form=form)


@pages.get("/privacy/{request_id:privacy_id}/certificate")
def privacy_certificate_download(
    request_id: RequestId,
    who: Viewer = Depends(READ),
    hub: Hub = Depends(get_hub),
) -> Response:
    """The request's certificate (no personal data), as a JSON download."""
    desk = _desk(hub, who)
    full_id = _status(desk, request_id).request.id
    return _download(desk.certificate(full_id), f"privacy-certificate-{full_id}.json")


@pages.get("/privacy/{request_id:privacy_id}/ledger")
def privacy_ledger_download(
    request_id: RequestId,
    who: Viewer = Depends(READ),
    hub: Hub = Depends(get_hub),
) -> Response:
    """The erasure ledger (keyed hashes only, for keeping beside the backups), as a JSON
    download."""
    desk = _desk(hub, who)
    found = _status(desk, request_id).request
    if found.ledger is None:
        raise HTTPException(404, f"request {found.id} has erased nothing yet: it has no ledger")
    return _download(desk.ledger(found.id), f"erasure-ledger-{found.id}.json")


# ------------------------------------------------------------------------------ JSON API
@api.get("", response_model=PrivacyRequestsOut, responses=_ERRORS)
def privacy_list_api(
    status: StatusFilter | None = None,
    kind: RequestKindName | None = None,
    who: Viewer = Depends(READ),
    hub: Hub = Depends(get_hub),
) -> PrivacyRequestsOut:
    """Requests (at most 200), open ones first by due date, then the rest newest first;
    optionally only open ones (``status=open``) or of one status, and of one kind."""
    rows = _listing(_desk(hub, who), status, kind)
    now = _now()
    return PrivacyRequestsOut(requests=[_request_out(row, now) for row in rows])


@api.post("/receive", response_model=ReceiptOut, responses=_ERRORS)
async def privacy_create_api(
    request: Request,
    body: Annotated[PrivacyRequestIn, Body()],
    who: Viewer = Depends(ACT),
    hub: Hub = Depends(get_hub),
) -> ReceiptOut:
    """Record a request received, naming the subject by emails, phones or source ids (kept
    as keyed hashes only), and look the subject's records up (a dry run, remembered on the
    request). An open request of the same kind naming any of the identifiers is the one
    answered, unless ``new_receipt`` records this one as its duplicate."""
    await check_csrf(request, who)

    def act() -> tuple[Receipt, int | None, str | None]:
        identifiers = _identifiers(hub, body.emails, body.phones, body.source_ids)
        received = _received(body.received_at)
        return _receive(_desk(hub, who), body.kind, identifiers, received, body.new_receipt)

    try:
        receipt, found, problem = await run_in_threadpool(act)
    except PrivacyError as exc:
        raise HTTPException(400, str(exc)) from None
    now = _now()
    return ReceiptOut(
        request=_request_out(receipt.request, now),
        created=receipt.created,
        duplicate=_request_out(receipt.duplicate, now) if receipt.duplicate else None,
        records_found=found,
        lookup_problem=problem,
    )


@api.get("/{request_id:privacy_id}", response_model=PrivacyStatusOut, responses=_NOT_FOUND)
def privacy_request_api(
    request_id: RequestId,
    who: Viewer = Depends(READ),
    hub: Hub = Depends(get_hub),
) -> PrivacyStatusOut:
    """One request with its tasks per system (no personal data)."""
    current = _status(_desk(hub, who), request_id)
    return PrivacyStatusOut(
        request=_request_out(current.request, _now()),
        tasks=[_task_out(task) for task in current.tasks],
    )


@api.get(
    "/{request_id:privacy_id}/certificate", response_model=CertificateOut, responses=_NOT_FOUND
)
def privacy_certificate_api(
    request_id: RequestId,
    who: Viewer = Depends(READ),
    hub: Hub = Depends(get_hub),
) -> Response:
    """The request's certificate: no personal data, the audit events with their chain
    hashes, and a digest over its content (``digest``: SHA-256 of the canonical JSON of
    everything else)."""
    desk = _desk(hub, who)
    full_id = _status(desk, request_id).request.id
    return JSONResponse(desk.certificate(full_id))


router.include_router(pages)
router.include_router(api)

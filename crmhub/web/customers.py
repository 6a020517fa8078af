"""Routes of the customers pages and their JSON API (see the module docstring of crmhub.web).

Pages: ``GET /customers`` (search), ``GET /customers/{id}`` (the customer 360; an old, merged
id redirects to its survivor), and the steward's forms on it: ``POST .../override``,
``POST .../override/{field}/clear``, ``POST .../unmerge``. The JSON twins live under
``/api/customers``. Reading needs ``customers.read``; changing needs ``customers.edit``, and a
browser session's CSRF token. The queries and actions are
:mod:`crmhub.resolution.customer360` and :class:`crmhub.resolution.steward.Steward`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Depends, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from crmhub.dedupe.survive import GOLDEN_FIELDS
from crmhub.hub import Hub
from crmhub.resolution.customer360 import (
    LIST_FIELDS,
    OBJECT_FIELDS,
    Customer360,
    CustomerSummary,
    TimelinePage,
    customer_360,
    find_customers,
    parse_override_value,
    resolve,
    timeline,
    value_as_text,
)
from crmhub.resolution.steward import MAX_REASON, Steward, StewardError, StewardResult
from crmhub.web.deps import Viewer, check_csrf, get_hub, require
from crmhub.web.rendering import render

__all__ = ["router"]

router = APIRouter()

FieldName = Literal[
    "first_name", "last_name", "full_name", "emails", "phones", "company", "title",
    "address", "birth_date", "consent", "lawful_basis", "identifiers",
]  # fmt: skip
"""A golden field (the same as :data:`crmhub.dedupe.survive.GOLDEN_FIELDS`)."""
assert get_args(FieldName) == GOLDEN_FIELDS

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
CustomerId = Annotated[
    str,
    Path(
        pattern=ID_PATTERN,
        max_length=64,
        description="A customer id (an old id that was merged away resolves to its survivor).",
    ),
]
Page = Annotated[int, Query(ge=1, le=1_000_000, description="Timeline page, from 1.")]
PerPage = Annotated[int, Query(ge=1, le=200, description="Timeline entries per page.")]
PER_PAGE = 25
MAX_RECORD_ID = 2**62  # larger ids do not fit a BIGINT

READ = require("customers.read")
EDIT = require("customers.edit")


class Problem(BaseModel):
    """An error."""

    detail: str


class OverrideRequest(BaseModel):
    """A golden value set by hand. ``value`` as text is read like the form's field (emails
    and phones separated by commas, objects as ``key: value`` lines), or given as JSON."""

    field: FieldName
    value: str | list[str] | dict[str, Any]
    reason: str = Field(min_length=1, max_length=MAX_REASON)


class UnmergeRequest(BaseModel):
    """A source record to take out of the customer."""

    record_id: int = Field(ge=1, le=MAX_RECORD_ID)
    reason: str = Field("", max_length=MAX_REASON)


class ActionResult(BaseModel):
    """What a steward action did: its audit event, and the customers it left."""

    event_id: int
    action: str
    customer_id: str
    customers: list[str]


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The body is not JSON."},
    401: {"model": Problem, "description": "Not signed in."},
    403: {"model": Problem, "description": "The role may not do this (or a CSRF failure)."},
    404: {"model": Problem, "description": "No such customer."},
}

FLASH = {
    "override": "Override saved: the golden record was rebuilt.",
    "cleared": "Override cleared: the rules choose this value again.",
    "unmerged": "Record taken out: both golden records were rebuilt.",
}
"""Messages a redirect after a change may show (chosen by key: nothing is echoed back)."""


# ---------------------------------------------------------------------- pages


@router.get("/customers", response_class=HTMLResponse, include_in_schema=False)
def search_page(
    request: Request,
    q: Annotated[str, Query(max_length=200)] = "",
    who: Viewer = Depends(READ),
    hub: Hub = Depends(get_hub),
) -> Response:
    """Search customers by email, phone or name."""
    with hub.engine.connect() as conn:
        results = find_customers(conn, q, 50) if q.strip() else []
    return render(request, "customer_search.html", {"who": who, "q": q, "results": results})


@router.get("/customers/{customer_id}", response_class=HTMLResponse, include_in_schema=False)
def customer_page(
    request: Request,
    customer_id: CustomerId,
    page: Page = 1,
    edit: FieldName | None = None,
    done: str | None = Query(None, max_length=20),
    split: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    event: Annotated[int | None, Query(ge=1, le=MAX_RECORD_ID)] = None,
    merged: Annotated[str | None, Query(alias="from", pattern=ID_PATTERN)] = None,
    who: Viewer = Depends(READ),
    hub: Hub = Depends(get_hub),
) -> Response:
    """The customer 360; an id merged into another redirects to the survivor."""
    with hub.engine.connect() as conn:
        view = customer_360(conn, customer_id, page=page, per_page=PER_PAGE)
    if view is None:
        raise HTTPException(404, f"no customer {customer_id}")
    if view.id != customer_id:
        return RedirectResponse(_page_url(view.id, **{"from": customer_id}), status_code=303)
    form: dict[str, str] = {"field": edit or "", "value": "", "reason": ""}
    if edit:
        current = next((f for f in view.fields if f.field == edit), None)
        form["value"] = value_as_text(edit, current.value) if current else ""
    context = {
        "flash": FLASH.get(done or ""),
        "split": split,
        "event": event,
        "merged_from": merged,
        "form": form,
    }
    return _render_360(request, who, view, context)


@router.post("/customers/{customer_id}/override", include_in_schema=False)
async def override_form(
    request: Request,
    customer_id: CustomerId,
    field: Annotated[str, Form()] = "",
    value: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    who: Viewer = Depends(EDIT),
    hub: Hub = Depends(get_hub),
) -> Response:
    """Set a golden value by hand, with a reason."""
    await check_csrf(request, who)
    form = {"field": field, "value": value, "reason": reason}
    missing = [name for name in ("field", "value", "reason") if not form[name].strip()]
    if missing:
        message = f"An override needs a {', a '.join(missing)}."
        return await _form_error(request, who, hub, customer_id, message, form)
    try:
        result = await run_in_threadpool(_override, hub, who, customer_id, field, value, reason)
    except _Unknown:
        raise HTTPException(404, f"no customer {customer_id}") from None
    except StewardError as exc:
        return await _form_error(request, who, hub, customer_id, str(exc), form)
    return _after(result, "override", fragment="golden")


@router.post("/customers/{customer_id}/override/{field}/clear", include_in_schema=False)
async def clear_form(
    request: Request,
    customer_id: CustomerId,
    field: FieldName,
    who: Viewer = Depends(EDIT),
    hub: Hub = Depends(get_hub),
) -> Response:
    """Remove an override: the survivorship rules choose the value again."""
    await check_csrf(request, who)
    try:
        result = await run_in_threadpool(_clear, hub, who, customer_id, field)
    except _Unknown:
        raise HTTPException(404, f"no customer {customer_id}") from None
    except StewardError as exc:
        return await _form_error(request, who, hub, customer_id, str(exc), None)
    return _after(result, "cleared", fragment="golden")


@router.post("/customers/{customer_id}/unmerge", include_in_schema=False)
async def unmerge_form(
    request: Request,
    customer_id: CustomerId,
    record_id: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    who: Viewer = Depends(EDIT),
    hub: Hub = Depends(get_hub),
) -> Response:
    """Take a source record out of the customer (both golden records are rebuilt)."""
    await check_csrf(request, who)
    record = int(record_id) if record_id.strip().isdigit() else 0
    if not 1 <= record <= MAX_RECORD_ID:
        return await _form_error(request, who, hub, customer_id, "Choose a member record.", None)
    if len(reason) > MAX_REASON:
        message = f"A reason is at most {MAX_REASON} characters."
        return await _form_error(request, who, hub, customer_id, message, None)
    try:
        result = await run_in_threadpool(_unmerge, hub, who, customer_id, record, reason)
    except _Unknown:
        raise HTTPException(404, f"no customer {customer_id}") from None
    except StewardError as exc:
        return await _form_error(request, who, hub, customer_id, str(exc), None)
    split = next((c for c in result.customers[1:] if c), None)
    return _after(result, "unmerged", fragment="members", split=split)


# ---------------------------------------------------------------------- JSON API


@router.get("/api/customers", response_model=list[CustomerSummary], responses=_ERRORS)
def api_search(
    q: Annotated[str, Query(max_length=200, description="An email, a phone, or text.")] = "",
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    who: Viewer = Depends(READ),
    hub: Hub = Depends(get_hub),
) -> list[CustomerSummary]:
    """Customers whose email or phone is ``q``, or whose golden values contain it."""
    with hub.engine.connect() as conn:
        return find_customers(conn, q, limit)


@router.get("/api/customers/{customer_id}", response_model=Customer360, responses=_ERRORS)
def api_customer(
    customer_id: CustomerId,
    page: Page = 1,
    per_page: PerPage = PER_PAGE,
    who: Viewer = Depends(READ),
    hub: Hub = Depends(get_hub),
) -> Customer360:
    """The customer 360: golden values with provenance, members and how each was linked,
    overrides, pending suggestions, traits, and a page of the timeline. An old, merged id
    answers with its survivor (``id`` differs from ``requested_id``)."""
    with hub.engine.connect() as conn:
        view = customer_360(conn, customer_id, page=page, per_page=per_page)
    if view is None:
        raise HTTPException(404, f"no customer {customer_id}")
    return view


@router.get("/api/customers/{customer_id}/timeline", response_model=TimelinePage, responses=_ERRORS)
def api_timeline(
    customer_id: CustomerId,
    page: Page = 1,
    per_page: PerPage = PER_PAGE,
    who: Viewer = Depends(READ),
    hub: Hub = Depends(get_hub),
) -> TimelinePage:
    """The customer's interactions (invoices, tickets, form submissions, email events),
    newest first, a page at a time."""
    with hub.engine.connect() as conn:
        found = timeline(conn, customer_id, page=page, per_page=per_page)
    if found is None:
        raise HTTPException(404, f"no customer {customer_id}")
    return found


@router.post(
    "/api/customers/{customer_id}/override", response_model=ActionResult, responses=_ERRORS
)
async def api_override(
    request: Request,
    customer_id: CustomerId,
    body: Annotated[OverrideRequest, Body()],
    who: Viewer = Depends(EDIT),
    hub: Hub = Depends(get_hub),
) -> ActionResult:
    """Set a golden value by hand (audited with a hash of the value, never the value)."""
    await check_csrf(request, who)

    def act() -> StewardResult:
        steward, resolved = _steward(hub, who, customer_id)  # unknown customer: 404 first
        value = body.value
        if isinstance(value, str) and (body.field in LIST_FIELDS or body.field in OBJECT_FIELDS):
            value = parse_override_value(body.field, value)
        region = hub.config.hub.default_region
        return steward.override(resolved, body.field, value, body.reason, region=region)

    return await _api_act(customer_id, act, ("body", "value"))


@router.post(
    "/api/customers/{customer_id}/override/{field}/clear",
    response_model=ActionResult,
    responses=_ERRORS,
)
async def api_clear(
    request: Request,
    customer_id: CustomerId,
    field: FieldName,
    who: Viewer = Depends(EDIT),
    hub: Hub = Depends(get_hub),
) -> ActionResult:
    """Remove the override of a field (audited)."""
    await check_csrf(request, who)
    return await _api_act(
        customer_id, lambda: _clear(hub, who, customer_id, field), ("path", "field")
    )


@router.post("/api/customers/{customer_id}/unmerge", response_model=ActionResult, responses=_ERRORS)
async def api_unmerge(
    request: Request,
    customer_id: CustomerId,
    body: Annotated[UnmergeRequest, Body()],
    who: Viewer = Depends(EDIT),
    hub: Hub = Depends(get_hub),
) -> ActionResult:
    """Take a source record out of the customer; both golden records are rebuilt
    (audited, undoable)."""
    await check_csrf(request, who)
    return await _api_act(
        customer_id,
        lambda: _unmerge(hub, who, customer_id, body.record_id, body.reason),
        ("body", "record_id"),
    )


# ---------------------------------------------------------------------- helpers


class _Unknown(Exception):
    """No customer with the id (the caller answers 404)."""


def _steward(hub: Hub, who: Viewer, customer_id: str) -> tuple[Steward, str]:
    with hub.engine.connect() as conn:
        resolved = resolve(conn, customer_id)
    if resolved is None:
        raise _Unknown(customer_id)
    return Steward(hub.resolver(), who.principal.actor), resolved


def _override(
    hub: Hub, who: Viewer, customer_id: str, field: str, typed: str, reason: str
) -> StewardResult:
    """An override typed into the form."""
    steward, resolved = _steward(hub, who, customer_id)
    value = parse_override_value(field, typed)
    region = hub.config.hub.default_region
    return steward.override(resolved, field, value, reason, region=region)


def _clear(hub: Hub, who: Viewer, customer_id: str, field: str) -> StewardResult:
    steward, resolved = _steward(hub, who, customer_id)
    return steward.clear_override(resolved, field)


def _unmerge(hub: Hub, who: Viewer, customer_id: str, record_id: int, reason: str) -> StewardResult:
    steward, resolved = _steward(hub, who, customer_id)
    return steward.unmerge(resolved, record_id, reason.strip())


async def _api_act(
    customer_id: str, act: Callable[[], StewardResult], where: tuple[str, str]
) -> ActionResult:
    """Run a steward action: 404 for an unknown customer, 422 (in the shape of a
    validation error) for a decision the library refuses."""
    try:
        result = await run_in_threadpool(act)
    except _Unknown:
        raise HTTPException(404, f"no customer {customer_id}") from None
    except StewardError as exc:
        detail = [{"loc": list(where), "msg": str(exc), "type": "value_error"}]
        raise HTTPException(422, detail) from None
    first = result.customers[0] if result.customers else customer_id
    return ActionResult(
        event_id=result.event_id,
        action=result.action,
        customer_id=first,
        customers=[c for c in result.customers if c],
    )


def _page_url(customer_id: str, fragment: str = "", **query: Any) -> str:
    params = {k: v for k, v in query.items() if v is not None}
    url = f"/customers/{customer_id}"
    if params:
        url += "?" + urlencode(params)
    return url + (f"#{fragment}" if fragment else "")


def _after(
    result: StewardResult, done: str, *, fragment: str, split: str | None = None
) -> Response:
    """Back to the customer's page after a change (POST, redirect, GET)."""
    target = result.customers[0] if result.customers else ""
    url = _page_url(target, fragment, done=done, event=result.event_id, split=split)
    return RedirectResponse(url, status_code=303)


async def _form_error(
    request: Request,
    who: Viewer,
    hub: Hub,
    customer_id: str,
    message: str,
    form: dict[str, str] | None,
) -> Response:
    """The customer's page again, with the problem and what was typed (422)."""

    def load() -> Customer360 | None:
        with hub.engine.connect() as conn:
            return customer_360(conn, customer_id, per_page=PER_PAGE)

    view = await run_in_threadpool(load)
    if view is None:
        raise HTTPException(404, f"no customer {customer_id}")
    context = {
        "error": message,
        "form": form or {"field": "", "value": "", "reason": ""},
        "flash": None,
    }
    return _render_360(request, who, view, context, status_code=422)


def _render_360(
    request: Request,
    who: Viewer,
    view: Customer360,
    extra: dict[str, Any],
    *,
    status_code: int = 200,
) -> Response:
    context = {
        "who": who,
        "view": view,
        "can_edit": who.can("customers.edit"),
        "golden_fields": GOLDEN_FIELDS,
        "list_fields": LIST_FIELDS,
        "object_fields": OBJECT_FIELDS,
        "max_reason": MAX_REASON,
        "error": None,
        "split": None,
        "event": None,
        "merged_from": None,
        **extra,
    }
    return render(request, "customer_360.html", context, status_code=status_code)

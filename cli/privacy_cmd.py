"""``crmhub privacy``: erasure and access requests, from receipt to certificate.

Erasure and access are dry runs unless ``--confirm`` is given: the officer sees every record
of the subject, and why it was found, before anything is deleted or handed over.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.table import Table

from crmhub.cli import retention_cmd
from crmhub.cli.context import (
    EXIT_FAILURES,
    console,
    err_console,
    escape,
    handle_errors,
    print_json,
    state,
)
from crmhub.errors import PrivacyError
from crmhub.hub import Hub
from crmhub.privacy import PrivacyDesk, Subject, parse_identifiers
from crmhub.privacy.fanout import PrivacyTask
from crmhub.privacy.identifiers import Identifier
from crmhub.privacy.requests import PrivacyRequest, RequestKind

__all__ = ["register"]

privacy_app = typer.Typer(
    help="GDPR erasure and access requests: erase, access, status, list, certificate.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``crmhub privacy`` (with ``crmhub privacy retention``) to the root command."""
    retention_cmd.register(privacy_app)
    app.add_typer(privacy_app, name="privacy")


def _actor() -> str:
    return os.environ.get("CRMHUB_ACTOR") or os.environ.get("USER") or "officer"


def _desk(hub: Hub) -> PrivacyDesk:
    return PrivacyDesk(hub, _actor())


_EMAIL = typer.Option([], "--email", help="An email address of the subject (repeatable).")
_PHONE = typer.Option([], "--phone", help="A phone number of the subject (repeatable).")
_SOURCE = typer.Option(
    [], "--source-id", help="A record of the subject: connector/stream/external_id."
)
_REQUEST = typer.Option(None, "--request", "-r", help="Carry on with this request (id).")
_RECEIVED = typer.Option(
    None, "--received", help="The day the request was received (YYYY-MM-DD; default today)."
)
_EXCLUDE = typer.Option(
    [], "--exclude", help="A source record id that is not the subject's (repeatable)."
)
_NEW = typer.Option(
    False, "--new", help="Record a new request even if an open one names this subject."
)
_JSON = typer.Option(False, "--json", help="Print JSON for scripts.")


def _identifiers(
    hub: Hub, emails: list[str], phones: list[str], sources: list[str]
) -> list[Identifier]:
    if not (emails or phones or sources):
        return []
    return parse_identifiers(
        emails=emails, phones=phones, source_ids=sources, region=hub.config.hub.default_region
    )


def _received(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise PrivacyError(f"--received must be a date (YYYY-MM-DD), not {value!r}") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _open_request(
    desk: PrivacyDesk,
    kind: RequestKind,
    request_id: str | None,
    identifiers: list[Identifier],
    received: str | None,
    new: bool,
) -> PrivacyRequest:
    """The request to work on: named by id, or received now (or found open) by identifiers."""
    if request_id:
        return desk.request(request_id)
    if not identifiers:
        raise PrivacyError("name the subject (--email, --phone, --source-id) or a --request")
    receipt = desk.receive(kind, identifiers, received_at=_received(received), new_receipt=new)
    request = receipt.request
    if receipt.duplicate is not None:
        console.print(
            f"recorded request {receipt.duplicate.id} as a duplicate of open request {request.id}"
        )
    elif receipt.created:
        console.print(f"received {kind} request {request.id}, due {request.due_at:%Y-%m-%d}")
    else:
        console.print(
            f"carrying on with open request {request.id} "
            f"(received {request.received_at:%Y-%m-%d}, due {request.due_at:%Y-%m-%d})"
        )
    return request


def _show_subject(subject: Subject) -> None:
    if not subject.records:
        console.print("the hub holds no record of this subject")
        return
    table = Table("record", "system", "source id", "name", "customer", "why")
    for record in subject.records:
        table.add_row(
            str(record.id),
            escape(record.connector),
            escape(record.source_id),
            escape(record.name),
            escape(record.customer_id or ""),
            escape(record.reason + (" (deleted in its system)" if record.deleted else "")),
        )
    console.print(table)
    console.print(
        f"{len(subject.records)} source records in {len(subject.systems())} systems, "
        f"{len(subject.customers)} golden records, {subject.activities} activities, "
        f"{subject.quarantine} quarantined rows, {subject.outbox} queued pushes"
    )


@privacy_app.command("erase")
@handle_errors
def erase(
    ctx: typer.Context,
    emails: list[str] = _EMAIL,
    phones: list[str] = _PHONE,
    sources: list[str] = _SOURCE,
    request_id: str = _REQUEST,
    received: str = _RECEIVED,
    exclude: list[int] = _EXCLUDE,
    new: bool = _NEW,
    confirm: bool = typer.Option(
        False, "--confirm", help="Erase (without it: show what would be erased)."
    ),
    as_json: bool = _JSON,
) -> None:
    """Erase a person everywhere (GDPR Art. 17): the hub, then every connected system.

    Example: crmhub privacy erase --email ann@example.com            (dry run)
             crmhub privacy erase --email ann@example.com --confirm
    """
    with state(ctx).open_hub() as hub:
        desk = _desk(hub)
        identifiers = _identifiers(hub, emails, phones, sources)
        request = _open_request(desk, "erasure", request_id, identifiers, received, new)
        if request.ledger is None:
            subject = desk.resolve(request.id, identifiers, exclude=exclude)
            if not as_json:
                _show_subject(subject)
            if not confirm:
                if as_json:
                    print_json({"request": request.as_dict(), "records": subject.record_ids})
                    return
                console.print(
                    "dry run: nothing was erased. Run again with --confirm to erase "
                    f"(or: crmhub privacy erase --request {request.id} --confirm)"
                )
                return
        outcome = desk.erase(request.id, identifiers, exclude=exclude)
        status = desk.status(request.id)
    if as_json:
        print_json(
            {
                "request": status.request.as_dict(),
                "removed": outcome.removed.as_dict(),
                "suppressed": outcome.suppressed,
                "cleanup": outcome.cleanup.detail,
                "tasks": [t.as_dict() for t in status.tasks],
            }
        )
    else:
        removed = outcome.removed
        console.print(
            f"erased in the hub: {removed.source_records} source records, "
            f"{removed.activities} activities, {removed.customers} golden records "
            f"({removed.customers_rebuilt} rebuilt); {outcome.suppressed} identifiers suppressed; "
            f"{outcome.cleanup.detail}"
        )
        _show_tasks(status.tasks)
        console.print(f"request {status.request.id}: {status.request.status_label}")
    if status.request.status == "partially_done":
        raise typer.Exit(EXIT_FAILURES)


@privacy_app.command("access")
@handle_errors
def access(
    ctx: typer.Context,
    emails: list[str] = _EMAIL,
    phones: list[str] = _PHONE,
    sources: list[str] = _SOURCE,
    request_id: str = _REQUEST,
    received: str = _RECEIVED,
    exclude: list[int] = _EXCLUDE,
    new: bool = _NEW,
    confirm: bool = typer.Option(
        False, "--confirm", help="Write the export (without it: show what it would hold)."
    ),
    out: Path = typer.Option(
        None, "--out", "-o", help="Write the export here (default: standard output)."
    ),
) -> None:
    """Export everything held about a person (GDPR Art. 15 and 20) as one JSON document.

    Example: crmhub privacy access --email ann@example.com --confirm --out ann.json
    """
    with state(ctx).open_hub() as hub:
        desk = _desk(hub)
        identifiers = _identifiers(hub, emails, phones, sources)
        request = _open_request(desk, "access", request_id, identifiers, received, new)
        if not confirm:
            _show_subject(desk.resolve(request.id, identifiers, exclude=exclude))
            console.print("dry run: nothing was exported. Run again with --confirm.")
            return
        document = desk.access(request.id, identifiers, exclude=exclude)
    _write_json(document, out, f"the access export of request {request.id}")


def _write_json(document: Any, out: Path | None, what: str) -> None:
    """Print ``document`` as indented JSON, or write it to ``out`` (saying so on stderr)."""
    data = orjson.dumps(document, option=orjson.OPT_INDENT_2)
    if out is None:
        print(data.decode())
        return
    out.write_bytes(data)
    err_console.print(f"wrote {what} to {escape(str(out))}")


def _show_tasks(tasks: list[PrivacyTask]) -> None:
    if not tasks:
        return
    table = Table("system", "erasure", "status", "records", "erased", "gone", "attempts", "next")
    for task in tasks:
        result = task.result or {}
        table.add_row(
            escape(task.connector),
            task.kind,
            task.status,
            str(task.records),
            str(result.get("erased", 0)),
            str(result.get("already_gone", 0)),
            str(task.attempts),
            f"{task.next_attempt_at:%Y-%m-%d %H:%M}" if task.next_attempt_at else "",
        )
    console.print(table)
    for task in tasks:
        error = (task.result or {}).get("last_error")
        if task.status != "done" and error:
            console.print(f"  {escape(task.connector)}: {escape(error)}")


@privacy_app.command("status")
@handle_errors
def status(
    ctx: typer.Context, request_id: str = typer.Argument(...), as_json: bool = _JSON
) -> None:
    """Show a request: status, deadlines and each system's task."""
    with state(ctx).open_hub() as hub:
        found = _desk(hub).status(request_id)
    request = found.request
    if as_json:
        print_json({"request": request.as_dict(), "tasks": [t.as_dict() for t in found.tasks]})
        return
    now = datetime.now(UTC)
    due = f"{request.due_at:%Y-%m-%d}" + (" (OVERDUE)" if request.overdue(now) else "")
    console.print(f"request {request.id} ({request.kind}): {request.status_label}")
    console.print(f"received {request.received_at:%Y-%m-%d}, due {due}")
    if request.extension_reason:
        console.print(f"extended: {escape(request.extension_reason)}")
    if request.refusal_reason:
        console.print(f"refused: {escape(request.refusal_reason)}")
    if request.duplicate_of:
        console.print(f"duplicate of {request.duplicate_of}")
    if request.duplicates:
        console.print(f"duplicates: {', '.join(request.duplicates)}")
    _show_tasks(found.tasks)


@privacy_app.command("list")
@handle_errors
def list_requests(
    ctx: typer.Context,
    status_filter: str = typer.Option(
        None, "--status", help="open, or one status (received, waiting, done, ...)."
    ),
    kind: str = typer.Option(None, "--kind", help="erasure or access."),
    as_json: bool = _JSON,
) -> None:
    """List requests: open ones first by due date, overdue and due-soon marked."""
    with state(ctx).open_hub() as hub:
        found = _desk(hub).requests(status=status_filter, kind=kind)
    if as_json:
        print_json([r.as_dict() for r in found])
        return
    now = datetime.now(UTC)
    table = Table("request", "kind", "status", "received", "due", "")
    for request in found:
        flag = "overdue" if request.overdue(now) else "due soon" if request.due_soon(now) else ""
        if request.duplicate_of:
            flag = f"duplicate of {request.duplicate_of[:8]}"
        table.add_row(
            request.id,
            request.kind,
            request.status_label,
            f"{request.received_at:%Y-%m-%d}",
            f"{request.due_at:%Y-%m-%d}",
            flag,
        )
    console.print(table)
    if not found:
        console.print("no privacy requests")


@privacy_app.command("verify")
@handle_errors
def verify(ctx: typer.Context, request_id: str = typer.Argument(...)) -> None:
    """Record that the requester's identity was verified (``--confirm`` records it too)."""
    with state(ctx).open_hub() as hub:
        request = _desk(hub).verify(request_id)
    console.print(f"request {request.id}: {request.status_label}")


@privacy_app.command("extend")
@handle_errors
def extend(
    ctx: typer.Context,
    request_id: str = typer.Argument(...),
    reason: str = typer.Option(..., "--reason", help="Why (told to the subject)."),
) -> None:
    """Extend a request's deadline by two further months (once, with a reason)."""
    with state(ctx).open_hub() as hub:
        request = _desk(hub).extend(request_id, reason)
    console.print(f"request {request.id} is now due {request.due_at:%Y-%m-%d}")


@privacy_app.command("refuse")
@handle_errors
def refuse(
    ctx: typer.Context,
    request_id: str = typer.Argument(...),
    reason: str = typer.Option(..., "--reason", help="Why (told to the subject)."),
) -> None:
    """Refuse a request, with the reason the subject is told."""
    with state(ctx).open_hub() as hub:
        request = _desk(hub).refuse(request_id, reason)
    console.print(f"request {request.id} refused")


@privacy_app.command("certificate")
@handle_errors
def certificate(
    ctx: typer.Context,
    request_id: str = typer.Argument(...),
    out: Path = typer.Option(None, "--out", "-o", help="Write it here (default: print)."),
) -> None:
    """The request's certificate: a JSON report without personal data."""
    with state(ctx).open_hub() as hub:
        document = _desk(hub).certificate(request_id)
    _write_json(document, out, "the certificate")


@privacy_app.command("run")
@handle_errors
def run(
    ctx: typer.Context,
    request_id: str = typer.Argument(None, help="Only this request (default: all)."),
) -> None:
    """Work on the due system tasks (erasures to retry after a failure, or interrupted)."""
    with state(ctx).open_hub() as hub:
        outcomes = _desk(hub).run_tasks(request_id)
    for outcome in outcomes:
        console.print(
            f"{escape(outcome.connector)}: {outcome.status} ({outcome.erased} erased, "
            f"{outcome.already_gone} already gone, {outcome.failed} failed)"
        )
    if not outcomes:
        console.print("no task is due")
    if any(o.status == "failed" for o in outcomes):
        raise typer.Exit(EXIT_FAILURES)


@privacy_app.command("task-done")
@handle_errors
def task_done(
    ctx: typer.Context,
    request_id: str = typer.Argument(...),
    system: str = typer.Argument(..., help="The connector instance."),
    note: str = typer.Option(..., "--note", help="What was done there, and how."),
) -> None:
    """Mark a system's task done by hand (a system without an erase API)."""
    with state(ctx).open_hub() as hub:
        desk = _desk(hub)
        desk.complete_manual(request_id, system, note)
        request = desk.request(request_id)
    console.print(f"{escape(system)}: done; request {request.id}: {request.status_label}")


@privacy_app.command("retry")
@handle_errors
def retry(ctx: typer.Context, request_id: str = typer.Argument(...)) -> None:
    """Make a request's failed system tasks due again, then work on them."""
    with state(ctx).open_hub() as hub:
        desk = _desk(hub)
        count = desk.retry_failed(request_id)
        outcomes = desk.run_tasks(request_id) if count else []
        request = desk.request(request_id)
    console.print(f"retried {len(outcomes)} tasks; request {request.id}: {request.status_label}")


@privacy_app.command("ledger")
@handle_errors
def ledger(
    ctx: typer.Context,
    request_id: str = typer.Argument(...),
    out: Path = typer.Option(None, "--out", "-o", help="Write it here (default: print)."),
) -> None:
    """The erasure ledger (keyed hashes only), to keep beside the backups."""
    with state(ctx).open_hub() as hub:
        document = _desk(hub).ledger(request_id)
    _write_json(document, out, "the ledger")


@privacy_app.command("replay")
@handle_errors
def replay(ctx: typer.Context, files: list[Path] = typer.Argument(..., exists=True)) -> None:
    """Apply erasure ledgers again (after restoring a backup older than the erasures)."""
    with state(ctx).open_hub() as hub:
        desk = _desk(hub)
        for path in files:
            try:
                document = orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError as exc:
                raise PrivacyError(f"{path}: not JSON ({exc})") from None
            outcome = desk.replay(document)
            console.print(
                f"{escape(str(path))}: {outcome.records} records erased again, "
                f"{outcome.suppressions_added} suppression entries restored"
            )


@privacy_app.command("reconsent")
@handle_errors
def reconsent(
    ctx: typer.Context,
    emails: list[str] = _EMAIL,
    phones: list[str] = _PHONE,
    sources: list[str] = _SOURCE,
    reason: str = typer.Option(..., "--reason", help="The new consent: when and how given."),
) -> None:
    """Lift the suppression of an erased person who consented again (audited)."""
    with state(ctx).open_hub() as hub:
        identifiers = _identifiers(hub, emails, phones, sources)
        if not identifiers:
            raise PrivacyError("name the identifiers to lift (--email, --phone, --source-id)")
        removed = _desk(hub).reconsent(identifiers, reason)
    console.print(f"lifted {removed} suppression entries")

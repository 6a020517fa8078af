"""Watching and fixing syncs: ``runs``, ``quarantine list|show|retry``."""

from __future__ import annotations

import json
from datetime import datetime

import orjson
import typer
from rich.table import Table

from crmhub.cli.context import (
    EXIT_FAILURES,
    console,
    err_console,
    escape,
    handle_errors,
    print_json,
    state,
)
from crmhub.store import quarantine as quarantine_store
from crmhub.store.runs import list_runs

quarantine_app = typer.Typer(
    help="Records that failed mapping or validation.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root command."""
    app.command("runs")(runs)
    app.add_typer(quarantine_app, name="quarantine")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


@handle_errors
def runs(
    ctx: typer.Context,
    connector: str = typer.Option(None, help="Only runs of this connector instance."),
    status: str = typer.Option(None, help="Only runs with this status (failed, running, ...)."),
    limit: int = typer.Option(20, min=1, help="How many runs, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Show the history of sync runs with their counts.

    Example: crmhub runs --status failed --json
    """
    with state(ctx).open_hub() as hub, hub.engine.connect() as conn:
        rows = list_runs(conn, connector=connector, status=status, limit=limit)
    if as_json:
        print_json(rows)
        return
    shown = ["read", "inserted", "updated", "unchanged", "deleted", "quarantined", "suppressed"]
    # Columns that matter only for some runs are shown when any listed run has them.
    shown += [
        name
        for name in ("echoed", "pushed", "push_failed", "retries", "rejected")
        if any(row[name] for row in rows)
    ]
    table = Table("run", "stream", "mode", "status", "started", "took", *shown, "error")
    for row in rows:
        took = ""
        if row["finished_at"] and row["started_at"]:
            took = f"{(row['finished_at'] - row['started_at']).total_seconds():.1f}s"
        colour = {"succeeded": "green", "failed": "red", "running": "cyan"}.get(
            row["status"], "yellow"
        )
        table.add_row(
            str(row["id"]),
            f"{row['connector']}/{row['stream']}",
            row["mode"],
            f"[{colour}]{row['status']}[/]",
            _when(row["started_at"]),
            took,
            *(f"{row[name]:,}" for name in shown),
            escape((row["error"] or "")[:80]),
        )
    console.print(table)


@quarantine_app.command("list")
@handle_errors
def quarantine_list(
    ctx: typer.Context,
    connector: str = typer.Option(None, help="Only this connector instance."),
    include_resolved: bool = typer.Option(False, "--all", help="Include resolved records."),
    limit: int = typer.Option(50, min=1, help="How many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """List quarantined records and why they failed."""
    with state(ctx).open_hub() as hub, hub.engine.connect() as conn:
        rows = quarantine_store.list_quarantine(
            conn, connector=connector, include_resolved=include_resolved, limit=limit
        )
    if as_json:
        print_json(rows)
        return
    table = Table("id", "stream", "record", "errors", "seen", "resolved")
    for row in rows:
        table.add_row(
            str(row["id"]),
            f"{row['connector']}/{row['stream']}",
            escape(row["external_id"] or row["location"] or ""),
            escape("; ".join(row["errors"])),
            _when(row["last_seen"]),
            row["resolution"] or "",
        )
    console.print(table)
    if not rows:
        console.print("nothing in quarantine")


@quarantine_app.command("show")
@handle_errors
def quarantine_show(ctx: typer.Context, quarantine_id: int = typer.Argument(...)) -> None:
    """Show one quarantined record: its reasons and the raw record as received."""
    with state(ctx).open_hub() as hub, hub.engine.connect() as conn:
        row = quarantine_store.get_quarantined(conn, quarantine_id)
    if row is None:
        err_console.print(f"no quarantined record {quarantine_id}")
        raise typer.Exit(EXIT_FAILURES)
    console.print(
        f"[bold]{escape(row['connector'])}/{escape(row['stream'])}[/] record "
        f"{escape(row['external_id'] or '(no id)')} {escape(row['location'] or '')}"
    )
    for error in row["errors"]:
        console.print(f"  [red]-[/] {escape(error)}")
    try:
        console.print_json(json.dumps(orjson.loads(row["raw"])))
    except orjson.JSONDecodeError:
        console.print(row["raw"], markup=False)


@quarantine_app.command("retry")
@handle_errors
def quarantine_retry(
    ctx: typer.Context,
    ids: list[int] = typer.Argument(None, help="Quarantine ids (default: every open one)."),
    connector: str = typer.Option(None, help="Only this connector instance."),
) -> None:
    """Map quarantined records again, after fixing a mapping or the data.

    Example: crmhub quarantine retry --connector shop_csv
    """
    with state(ctx).open_hub() as hub:
        outcome = hub.retry_quarantined(ids=ids or None, connector=connector)
    counts = outcome.counts
    console.print(
        f"retried {counts.read:,}: {counts.inserted:,} inserted, "
        f"{counts.updated:,} updated, {counts.quarantined:,} still failing, "
        f"{counts.suppressed:,} suppressed; {outcome.not_retriable:,} not retriable "
        "(unparsed rows: fix the source and sync again)"
    )
    if counts.quarantined:
        raise typer.Exit(EXIT_FAILURES)

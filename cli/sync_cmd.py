"""``crmhub sync``: pull every configured connector (or the named ones) into the hub."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from crmhub.cli.context import (
    EXIT_FAILURES,
    console,
    err_console,
    escape,
    handle_errors,
    is_interactive,
    print_json,
    state,
)
from crmhub.cli.push_cmd import print_pushes, push_dict
from crmhub.sync import StreamResult


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root command."""
    app.command("sync")(sync)


class ProgressBars:
    """One progress bar per stream, fed by the sync engine's page events."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[tuple[str, str], TaskID] = {}

    def __call__(self, event: str, details: dict[str, Any]) -> None:
        if event != "page":
            return
        result: StreamResult = details["result"]
        key = (result.connector, result.stream)
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(f"{key[0]}/{key[1]}", total=None, records=0)
        task = self.tasks[key]
        fraction = details.get("progress")
        self.progress.update(
            task,
            records=result.counts.read,
            total=1000 if fraction is not None else None,
            completed=int(fraction * 1000) if fraction is not None else 0,
        )


@handle_errors
def sync(
    ctx: typer.Context,
    names: list[str] = typer.Argument(None, help="Connector instances (default: all enabled)."),
    full: bool = typer.Option(False, "--full", help="Re-read everything, not just changes."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Read and map, report what would change, store nothing."
    ),
    no_push: bool = typer.Option(
        False, "--no-push", help="Pull and match only; push nothing back."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Pull records from connectors into the hub, match them, push changed golden values.

    Incremental by default: each stream resumes from its saved state. After the pull, golden
    values that changed are pushed to every connector that can write them (not with
    --no-push or --dry-run). Exit code 1 if a stream or a push failed.
    Example: crmhub sync shop_csv --full
    """
    push = not no_push
    started = time.monotonic()
    with state(ctx).open_hub() as hub:
        if hub.created:
            err_console.print(f"created a new hub at {hub.engine.url.database}")
        if is_interactive() and not as_json:
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[records]:>10,} records"),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=err_console, transient=False) as progress:
                results = hub.sync(
                    names,
                    full=full,
                    dry_run=dry_run,
                    observer=ProgressBars(progress),
                    push=push,
                )
        else:
            results = hub.sync(names, full=full, dry_run=dry_run, push=push)
        pushes = hub.last_push or []
    elapsed = time.monotonic() - started
    if as_json:
        print_json([_as_dict(r) for r in results] + [push_dict(p) for p in pushes])
    else:
        _print_summary(results, elapsed, dry_run)
        if pushes:
            print_pushes(pushes)
    if any(not r.ok for r in results) or any(p.failed for p in pushes):
        raise typer.Exit(EXIT_FAILURES)


def _as_dict(result: StreamResult) -> dict[str, Any]:
    return {
        "connector": result.connector,
        "stream": result.stream,
        "mode": result.mode,
        "status": result.status,
        "run_id": result.run_id,
        "error": result.error,
        "warnings": result.warnings,
        **result.counts.as_dict(),
    }


def _print_summary(results: list[StreamResult], elapsed: float, dry_run: bool) -> None:
    columns = ("read", "inserted", "updated", "unchanged", "deleted", "quarantined", "suppressed")
    table = Table(
        "stream", "status", *columns, title="dry run: nothing stored" if dry_run else None
    )
    for result in results:
        colour = "green" if result.ok else "red"
        counts = result.counts.as_dict()
        table.add_row(
            f"{result.connector}/{result.stream}",
            f"[{colour}]{result.status}[/]",
            *(f"{counts[c]:,}" for c in columns),
        )
    console.print(table)
    total = sum(r.counts.read for r in results)
    rate = total / elapsed if elapsed > 0 else 0.0
    console.print(f"{total:,} records in {elapsed:.1f} s ({rate:,.0f} records/s)")
    for result in results:
        for warning in result.warnings:
            console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
        if result.error:
            console.print(
                f"[red]{escape(result.connector)}/{escape(result.stream)} failed:[/] "
                f"{escape(result.error)}",
                soft_wrap=True,
            )
    quarantined = sum(r.counts.quarantined for r in results)
    if quarantined and not dry_run:
        console.print(f"{quarantined:,} records quarantined: see `crmhub quarantine list`")

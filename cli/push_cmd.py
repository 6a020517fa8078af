"""``crmhub push``: send changed golden values back to the connected systems."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from crmhub.cli.context import EXIT_FAILURES, console, escape, handle_errors, print_json, state
from crmhub.hub import PushOutcome
from crmhub.push import failed_pushes, outbox_summary


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root command."""
    app.command("push")(push)


@handle_errors
def push(
    ctx: typer.Context,
    names: list[str] = typer.Argument(None, help="Connector instances (default: all enabled)."),
    failed: bool = typer.Option(
        False, "--failed", help="List pushes that failed or wait for a retry; send nothing."
    ),
    retry_only: bool = typer.Option(
        False,
        "--retry-only",
        help="Send what is queued and due (each checked again: what is no longer needed is "
        "dropped); queue nothing new.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Queue golden values that changed since the last push and send the due pushes.

    Only changed fields the connector's mapping can write are sent; failures are retried on
    later runs with growing waits; suppressed (erased) people are never written. `crmhub
    sync` does this after every pull. Exit code 1 if a system refused the pushes.
    Example: crmhub push --failed
    """
    with state(ctx).open_hub() as hub:
        if failed:
            with hub.engine.connect() as conn:
                rows = failed_pushes(conn, names[0] if names else None, limit=200)
                summary = outbox_summary(conn)
            _print_failed(rows, summary, as_json)
            return
        outcomes = hub.push(names, plan=not retry_only)
    if as_json:
        print_json([push_dict(o) for o in outcomes])
    elif outcomes:
        print_pushes(outcomes)
    else:
        console.print("no connector to push to (none can write, or push = false)")
    if any(o.failed for o in outcomes):
        raise typer.Exit(EXIT_FAILURES)


def push_dict(outcome: PushOutcome) -> dict[str, Any]:
    """One push outcome as JSON-ready data."""
    plan = outcome.plan
    return {
        "connector": outcome.target,
        "stream": outcome.stream,
        "mode": "push",
        "status": outcome.status,
        "error": outcome.error,
        "queued": plan.queued if plan else 0,
        "unchanged": plan.unchanged if plan else 0,
        "suppressed": plan.suppressed if plan else 0,
        "invalid": plan.invalid if plan else 0,
        "consent_withheld": plan.consent_withheld if plan else 0,
        "dropped": plan.dropped if plan else 0,
        **{
            k: v
            for k, v in outcome.counts.as_dict().items()
            if k.startswith("push") or k == "retries"
        },
    }


def print_pushes(outcomes: list[PushOutcome]) -> None:
    """A table of what each target's push did."""
    table = Table("push to", "status", "queued", "pushed", "failed", "retries", "suppressed")
    for outcome in outcomes:
        colour = "red" if outcome.failed else "green"
        plan = outcome.plan
        table.add_row(
            f"{outcome.target}/{outcome.stream}",
            f"[{colour}]{outcome.status}[/]",
            f"{plan.queued if plan else 0:,}",
            f"{outcome.counts.pushed:,}",
            f"{outcome.counts.push_failed:,}",
            f"{outcome.counts.retries:,}",
            f"{plan.suppressed if plan else 0:,}",
        )
    console.print(table)
    for outcome in outcomes:
        if outcome.error:
            console.print(
                f"[red]{escape(outcome.target)}/{escape(outcome.stream)}:[/] "
                f"{escape(outcome.error)}",
                soft_wrap=True,
            )
    dropped = sum(o.plan.dropped for o in outcomes if o.plan)
    if dropped:
        console.print(f"{dropped:,} queued pushes were no longer needed and were dropped")
    if any(o.counts.push_failed for o in outcomes):
        console.print("some pushes failed: see `crmhub push --failed`")


def _print_failed(rows: list[dict[str, Any]], summary: dict[str, int], as_json: bool) -> None:
    if as_json:
        print_json({"summary": summary, "pushes": rows})
        return
    table = Table("id", "target", "record", "status", "attempts", "next try", "last error")
    for row in rows:
        next_try = row["next_attempt_at"]
        table.add_row(
            str(row["id"]),
            f"{row['target']}/{row['stream']}",
            escape(str(row["external_id"])),
            row["status"],
            str(row["attempts"]),
            next_try.strftime("%Y-%m-%d %H:%M") if next_try else "",
            escape((row["last_error"] or "")[:80]),
        )
    console.print(table)
    counts = ", ".join(f"{n:,} {status}" for status, n in sorted(summary.items()))
    console.print(f"outbox: {counts or 'empty'}")

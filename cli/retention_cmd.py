"""Retention: ``retention`` (wired in as ``crmhub privacy retention``) shows what the
``[retention]`` rules would remove, and with ``--apply`` removes it, audited."""

from __future__ import annotations

import os
from datetime import datetime

import typer
from rich.table import Table

from crmhub.cli.context import console, handle_errors, print_json, state
from crmhub.privacy.retention import AUDIT_ACTION, apply_retention, retention_report

__all__ = ["register", "retention"]


def register(app: typer.Typer) -> None:
    """Add this module's command to a command group (``crmhub privacy``)."""
    app.command("retention")(retention)


def _actor() -> str:
    return (os.environ.get("CRMHUB_ACTOR") or os.environ.get("USER") or "retention")[:64]


def _day(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d") if value else ""


@handle_errors
def retention(
    ctx: typer.Context,
    apply: bool = typer.Option(
        False, "--apply", help="Remove what is past its age (default: only report it)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Show what the retention rules in crmhub.toml would remove; --apply removes it, audited.

    Example: crmhub privacy retention, then crmhub privacy retention --apply
    """
    with state(ctx).open_hub() as hub:
        report = apply_retention(hub, _actor()) if apply else retention_report(hub)
    if json_out:
        print_json(report.as_dict())
        return
    if not report.categories:
        console.print('no retention rules: add a \\[retention] section, e.g. quarantine = "30d"')
        return
    count_title = "removed" if report.applied else "would remove"
    table = Table("category", "age", "cutoff", count_title, "oldest", "with")
    for category in report.categories:
        table.add_row(
            category.category,
            category.age,
            _day(category.cutoff),
            f"{category.count:,}",
            _day(category.oldest),
            ", ".join(
                f"{name.replace('_', ' ')} {n:,}" for name, n in category.details.items() if n
            ),
        )
    console.print(table)
    if report.applied:
        console.print(
            f"removed {report.total:,} in {len(report.categories)} categories, "
            f"each audited ({AUDIT_ACTION})"
        )
    elif report.total:
        console.print(f"nothing changed: run with --apply to remove these {report.total:,}")
    else:
        console.print("nothing is past its age")

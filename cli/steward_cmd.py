"""Matching and stewardship: ``dedupe``, ``review``, ``merge``, ``unmerge``, ``undo``,
``customers search|show``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from crmhub.cli.context import console, err_console, escape, handle_errors, print_json, state
from crmhub.dedupe.files import dedupe_file
from crmhub.dedupe.pipeline import MatchSettings
from crmhub.errors import ConfigError
from crmhub.mapping import load_mapping
from crmhub.resolution.steward import Steward, StewardResult
from crmhub.resolution.views import customer_view, search_customers
from crmhub.store.schema import match_pairs

__all__ = ["register"]


class _DedupeGroup(typer.core.TyperGroup):
    """``crmhub dedupe FILE --mapping M`` is ``crmhub dedupe file FILE --mapping M``: a first
    argument that is not a subcommand is a file to deduplicate."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["file", *args]
        return super().resolve_command(ctx, args)


dedupe_app = typer.Typer(
    cls=_DedupeGroup,
    help="Match person records into customers (or deduplicate a file).",
    invoke_without_command=True,
)
customers_app = typer.Typer(
    help="Golden records: search and the customer 360.", no_args_is_help=True
)
review_app = typer.Typer(help="Suggested matches waiting for a steward.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root command."""
    app.add_typer(dedupe_app, name="dedupe")
    app.add_typer(customers_app, name="customers")
    app.add_typer(review_app, name="review")
    app.command("merge")(merge)
    app.command("unmerge")(unmerge)
    app.command("undo")(undo)


def _actor() -> str:
    return os.environ.get("CRMHUB_ACTOR") or os.environ.get("USER") or "steward"


@dedupe_app.callback()
@handle_errors
def dedupe(
    ctx: typer.Context,
    full: bool = typer.Option(False, "--full", help="Key, score and cluster every record again."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Match records waiting for it (after a sync this has already happened).

    Example: crmhub dedupe --full
    """
    if ctx.invoked_subcommand is not None:
        return
    with state(ctx).open_hub() as hub:
        resolver = hub.resolver()
        report = resolver.full() if full else resolver.resolve()
    _print_report(report.as_dict(), as_json)


@dedupe_app.command("train")
@handle_errors
def dedupe_train(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """Fit a new match model on the hub's records (and steward decisions), make it active and
    score every record again with it."""
    with state(ctx).open_hub() as hub:
        report = hub.resolver().full(train=True)
    _print_report(report.as_dict(), as_json)


@dedupe_app.command("file")
@handle_errors
def dedupe_file_command(
    ctx: typer.Context,
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="A .csv or .jsonl file."),
    mapping: str = typer.Option(..., "--mapping", "-m", help="Mapping file (or built-in name)."),
    stream: str | None = typer.Option(None, help="The mapping's stream (default: its only one)."),
    out: Path = typer.Option(Path("dedupe-out"), "--out", "-o", help="Folder for the CSVs."),
    region: str | None = typer.Option(None, help="Country for phone numbers without a prefix."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Deduplicate a file that is not in the hub: writes clusters.csv and pairs.csv.

    Example: crmhub dedupe contacts.csv --mapping people_file
    """
    mapping_file = load_mapping(mapping)
    names = list(mapping_file.streams)
    if stream is None and len(names) != 1:
        raise ConfigError(f"{mapping} maps several streams ({', '.join(names)}): pass --stream")
    settings = MatchSettings()
    config_path = state(ctx).config_path
    if config_path.exists():
        with state(ctx).open_hub(create=False, check_schema=False) as hub:
            settings = MatchSettings.from_config(hub.config.dedupe)
            region = region or hub.config.hub.default_region
    report = dedupe_file(
        path, mapping_file.stream(stream or names[0]), out, settings, region=region
    )
    _print_report({**vars(report), "out": str(out)}, as_json)


def _print_report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(report)
        return
    table = Table("", "")
    for name, value in report.items():
        table.add_row(
            name.replace("_", " "), escape(f"{value:,}" if isinstance(value, int) else str(value))
        )
    console.print(table)


def _print_result(result: StewardResult, as_json: bool) -> None:
    if as_json:
        print_json(vars(result))
        return
    console.print(
        f"{result.action}: event {result.event_id}, {result.pairs_changed} pair(s) changed"
        + (f", customers {', '.join(c for c in result.customers if c)}" if result.customers else "")
        + f" (undo: crmhub undo {result.event_id})"
    )


@handle_errors
def merge(
    ctx: typer.Context,
    into: str = typer.Argument(..., help="The customer that remains."),
    other: str = typer.Argument(..., help="The customer merged into it."),
    reason: str = typer.Option("", help="Why (kept in the pair decisions, not in the audit log)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Merge customer OTHER into customer INTO (audited, undoable)."""
    with state(ctx).open_hub() as hub:
        result = Steward(hub.resolver(), _actor()).merge(into, other, reason)
    _print_result(result, as_json)


@handle_errors
def unmerge(
    ctx: typer.Context,
    customer: str = typer.Argument(..., help="The customer."),
    record: int = typer.Argument(..., help="The source record id to take out of it."),
    reason: str = typer.Option("", help="Why."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Take a source record out of its customer; both golden records are rebuilt."""
    with state(ctx).open_hub() as hub:
        result = Steward(hub.resolver(), _actor()).unmerge(customer, record, reason)
    _print_result(result, as_json)


@handle_errors
def undo(
    ctx: typer.Context,
    event: int = typer.Argument(..., help="The audit event of a merge, unmerge or decision."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Undo a merge, an unmerge or a pair decision."""
    with state(ctx).open_hub() as hub:
        result = Steward(hub.resolver(), _actor()).undo(event)
    _print_result(result, as_json)


@review_app.command("list")
@handle_errors
def review_list(
    ctx: typer.Context,
    limit: int = typer.Option(20, min=1, help="How many, most likely first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Pending suggestions, most likely matches first."""
    from sqlalchemy import select

    p = match_pairs.c
    with state(ctx).open_hub() as hub, hub.engine.connect() as conn:
        rows = [
            dict(row)
            for row in conn.execute(
                select(p.id, p.left_id, p.right_id, p.probability, p.weight)
                .where(p.status == "pending")
                .order_by(p.probability.desc(), p.id)
                .limit(limit)
            ).mappings()
        ]
    if as_json:
        print_json(rows)
        return
    table = Table("pair", "left record", "right record", "probability", "weight")
    for row in rows:
        table.add_row(
            str(row["id"]),
            str(row["left_id"]),
            str(row["right_id"]),
            f"{row['probability']:.4f}",
            f"{row['weight']:.2f}",
        )
    console.print(table)


def _decide(ctx: typer.Context, pair: int, accept: bool, reason: str, as_json: bool) -> None:
    with state(ctx).open_hub() as hub:
        result = Steward(hub.resolver(), _actor()).decide(pair, accept, reason)
    _print_result(result, as_json)


@review_app.command("accept")
@handle_errors
def review_accept(
    ctx: typer.Context,
    pair: int = typer.Argument(..., help="The pair id (see `crmhub review list`)."),
    reason: str = typer.Option("", help="Why."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Accept a suggestion: the two records are one person."""
    _decide(ctx, pair, True, reason, as_json)


@review_app.command("reject")
@handle_errors
def review_reject(
    ctx: typer.Context,
    pair: int = typer.Argument(..., help="The pair id (see `crmhub review list`)."),
    reason: str = typer.Option("", help="Why."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Reject a suggestion: not a match, now and on every later run."""
    _decide(ctx, pair, False, reason, as_json)


@customers_app.command("search")
@handle_errors
def customers_search(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="An email, a phone number, or text of a name."),
    limit: int = typer.Option(20, min=1),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Find customers by email, phone or name."""
    with state(ctx).open_hub() as hub, hub.engine.connect() as conn:
        found = search_customers(conn, query, limit)
    if as_json:
        print_json(found)
        return
    table = Table("customer", "name", "emails", "phones", "company")
    for row in found:
        table.add_row(
            row["id"],
            escape(row["name"] or ""),
            escape(", ".join(row["emails"])),
            escape(", ".join(row["phones"])),
            escape(row["company"] or ""),
        )
    console.print(table)
    if not found:
        err_console.print("no customer found")


@customers_app.command("show")
@handle_errors
def customers_show(
    ctx: typer.Context,
    customer: str = typer.Argument(..., help="A customer id (old merged ids resolve)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """A customer's golden values with provenance, members, suggestions and activities."""
    with state(ctx).open_hub() as hub, hub.engine.connect() as conn:
        view = customer_view(conn, customer)
    if view is None:
        err_console.print(f"no customer {escape(customer)}")
        raise typer.Exit(1)
    if as_json:
        print_json(view)
        return
    if view["id"] != customer:
        console.print(f"{escape(customer)} was merged into {view['id']}")
    values = Table("field", "value", "from record", "rule", title=f"customer {view['id']}")
    for name, golden in view["values"].items():
        values.add_row(
            name,
            escape(str(golden.get("value"))),
            str(golden.get("source_record_id") or ""),
            golden.get("rule", ""),
        )
    console.print(values)
    members = Table("record", "source", "external id", "joined by", "probability", title="members")
    for m in view["members"]:
        members.add_row(
            str(m["record_id"]),
            f"{m['connector']}/{m['stream']}",
            escape(m["external_id"]),
            m["method"] or "",
            f"{m['probability']:.4f}" if m["probability"] else "",
        )
    console.print(members)
    if view["suggestions"]:
        console.print(f"{len(view['suggestions'])} pending suggestion(s): crmhub review list")
    timeline = Table(
        "when", "source", "kind", "amount", "status", title=f"activities ({view['activity_count']})"
    )
    for act in view["activities"]:
        amount = f"{act['amount'] / 100:.2f} {act['currency']}" if act["amount"] is not None else ""
        timeline.add_row(
            act["occurred_at"], act["connector"], act["kind"], amount, act["status"] or ""
        )
    console.print(timeline)

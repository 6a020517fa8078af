"""Matching and stewardship: ``dedupe`` (and ``dedupe train|report``), ``review`` (the
interactive terminal review, and ``review list|accept|reject``), ``merge``, ``unmerge``,
``undo``, ``customers search|show``."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import typer
from rich.table import Table
from sqlalchemy import func, select

from crmhub.cli.context import console, err_console, escape, handle_errors, print_json, state
from crmhub.dedupe.files import dedupe_file
from crmhub.dedupe.pipeline import MatchSettings
from crmhub.errors import ConfigError, CrmhubError
from crmhub.hub import Hub
from crmhub.mapping import load_mapping
from crmhub.resolution.customer360 import customer_360
from crmhub.resolution.learning import learning_report
from crmhub.resolution.queue import PairView, QueueFilter, pair_view, pending_ids
from crmhub.resolution.steward import Steward, StewardResult
from crmhub.resolution.views import search_customers
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
review_app = typer.Typer(
    help="Suggested matches waiting for a steward: one at a time with y/n/s/u/q keys (no "
    "subcommand), or list, accept, reject.",
    invoke_without_command=True,
)


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


@dedupe_app.command("report")
@handle_errors
def dedupe_report(
    ctx: typer.Context,
    refit: bool = typer.Option(
        True, "--refit/--no-refit", help="Also train a model with the labels, in memory."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Precision and recall of the current model against steward decisions, and how many
    pending suggestions would change band under a model refitted with them (nothing is
    stored: `crmhub dedupe train` applies it)."""
    with state(ctx).open_hub() as hub:
        report = learning_report(hub.resolver(), refit=refit).as_dict()
    if as_json:
        print_json(report)
        return
    table = Table("", "", title=f"model {report['model_version']} against steward decisions")
    labels = report["labels"]
    table.add_row("decisions", f"{labels['accepted']:,} accepted, {labels['rejected']:,} rejected")
    table.add_row(
        "predicted match",
        f"{report['predicted_match']:,} at or above auto_merge "
        f"{report['thresholds']['auto_merge']}",
    )
    table.add_row("accepted among them", f"{report['true_positives']:,}")
    for name in ("precision", "recall"):
        value, interval = report[name], report[f"{name}_interval"]
        text = "n/a" if value is None else f"{value:.3f}"
        if interval is not None:
            text += f" (95% {interval[0]:.3f}-{interval[1]:.3f})"
        table.add_row(name, text)
    console.print(table)
    if refit:
        changes = report["refit"]
        shown = Table("band change", "pending suggestions", title="under the refitted model")
        for key, count in sorted(changes["changes"].items()):
            shown.add_row(key.replace("_", " "), f"{count:,}")
        shown.add_row(
            "total", f"{changes['would_change']:,} of {changes['pending']:,}", style="bold"
        )
        console.print(shown)
        console.print(
            f"refitted with {changes['labels_used']:,} decision(s); not stored "
            "(apply it with: crmhub dedupe train)"
        )
    for note in report["notes"]:
        console.print(f"note: {escape(note)}")


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


KEYS_HELP = "y merge · n not a match · s skip · u undo last · q quit"


def read_key(stream: TextIO | None = None) -> str:
    """One key from the steward, lower-cased: a single keypress (raw mode, no Enter) when
    ``stream`` (standard input by default) is a terminal, else the first character of the
    next line, so keys can be piped in (``printf 'y\\nn\\nq\\n' | crmhub review``). The
    end of input and Ctrl-D read as ``q``; Ctrl-C raises KeyboardInterrupt."""
    stream = stream if stream is not None else sys.stdin
    if stream.isatty():
        try:
            import select as waiting
            import termios
            import tty
        except ImportError:  # no termios (Windows): read lines
            pass
        else:
            fd = stream.fileno()
            saved = termios.tcgetattr(fd)
            try:
                tty.setraw(fd, termios.TCSANOW)  # keys typed ahead are kept
                byte = os.read(fd, 1)
                if byte == b"\x1b":  # an escape sequence (arrow keys, ...): read it all, drop it
                    while waiting.select([fd], [], [], 0.02)[0]:
                        os.read(fd, 16)
            finally:
                termios.tcsetattr(fd, termios.TCSADRAIN, saved)
            if byte == b"\x03":
                raise KeyboardInterrupt
            if byte in (b"", b"\x04"):
                return "q"
            return byte.decode("utf-8", "replace").lower()
    line = stream.readline()
    if not line:
        return "q"
    return line.strip()[:1].lower()


@dataclass
class ReviewSummary:
    """What one terminal review session did."""

    merged: int = 0
    rejected: int = 0
    skipped: int = 0
    stale: int = 0
    undone: int = 0
    errors: int = 0
    left: int = 0  # pending suggestions in the hub afterwards


def review_session(
    hub: Hub,
    queue: list[int],
    *,
    actor: str,
    blind: bool = False,
    read: Callable[[], str] = read_key,
) -> ReviewSummary:
    """Show the pairs of ``queue`` one at a time and act on the steward's keys (see
    :data:`KEYS_HELP`); a pair whose records changed since it was scored is skipped with a
    message, one decided or dropped meanwhile silently."""
    steward = Steward(hub.resolver(), actor)
    comparisons = steward.resolver.settings.comparisons
    summary = ReviewSummary()
    done: list[tuple[int, int, bool]] = []  # (pair, audit event, accepted), this session
    pending = list(queue)
    position = 0
    while position < len(pending):
        pair_id = pending[position]
        with hub.engine.connect() as conn:
            view = pair_view(conn, pair_id, comparisons)
        if view is None or view.status != "pending":
            position += 1
            continue
        if view.stale:
            console.print(f"[yellow]pair {pair_id}: {escape(view.stale_reason or '')} Skipped.[/]")
            summary.stale += 1
            position += 1
            continue
        _render_pair(view.blinded() if blind else view, position + 1, len(pending))
        while True:
            console.print(f"[bold]{KEYS_HELP}[/] > ", end="")
            key = read()
            console.print(key)
            if key in ("y", "n", "s", "u", "q"):
                break
            console.print(f"[red]no key {escape(key)!r}[/]: {KEYS_HELP}")
        if key == "q":
            break
        if key == "s":
            summary.skipped += 1
            position += 1
        elif key in ("y", "n"):
            try:
                result = steward.decide(pair_id, key == "y", "terminal review", check_fresh=True)
            except CrmhubError as exc:
                console.print(f"[red]pair {pair_id}: {escape(str(exc))}[/]")
                summary.errors += 1
                position += 1
                continue
            done.append((pair_id, result.event_id, key == "y"))
            if key == "y":
                summary.merged += 1
            else:
                summary.rejected += 1
            console.print(
                f"pair {pair_id}: {'merged' if key == 'y' else 'not a match'} "
                f"(event {result.event_id})"
            )
            position += 1
        elif not done:
            console.print("nothing to undo in this session")
        else:
            undone_pair, event_id, accepted = done.pop()
            try:
                steward.undo(event_id, "terminal review")
            except CrmhubError as exc:
                console.print(f"[red]undo of event {event_id}: {escape(str(exc))}[/]")
                summary.errors += 1
                continue
            summary.undone += 1
            if accepted:
                summary.merged -= 1
            else:
                summary.rejected -= 1
            console.print(f"undone: pair {undone_pair} is pending again (event {event_id})")
            # Shown again next: the steward undid it to decide it again.
            if position < len(pending) and pending[position] == undone_pair:
                continue
            pending.insert(position, undone_pair)
    with hub.engine.connect() as conn:
        summary.left = int(
            conn.execute(
                select(func.count())
                .select_from(match_pairs)
                .where(match_pairs.c.status == "pending")
            ).scalar_one()
        )
    return summary


_STATE_STYLE = {"same": "", "different": "bold red", "one-sided": "dim"}
_STATE_MARK = {"same": "=", "different": "≠", "one-sided": ""}


def _when(stamp: datetime | None) -> str:
    """A time to the minute."""
    return stamp.strftime("%Y-%m-%d %H:%M") if stamp is not None else ""


def _render_pair(view: PairView, position: int, total: int) -> None:
    """The pair side by side, then its waterfall: the web's pair view, in a terminal (a
    blinded view has no scores to show)."""
    left, right = view.left, view.right
    title = f"pair {view.pair_id} ({position} of {total})"
    if view.probability is not None:
        title += f" · probability {view.probability:.4f}"
    records = Table("", "", f"record {left.record_id}", f"record {right.record_id}", title=title)
    for label, values in (
        ("source", [f"{side.connector}/{side.stream}" for side in (left, right)]),
        ("external id", [side.external_id for side in (left, right)]),
        ("updated at source", [_when(side.source_updated_at) for side in (left, right)]),
        ("first seen", [_when(side.first_seen) for side in (left, right)]),
        ("last seen", [_when(side.last_seen) for side in (left, right)]),
        (
            "customer",
            [side.customer.customer_id if side.customer else "" for side in (left, right)],
        ),
    ):
        records.add_row(label, "", escape(values[0]), escape(values[1]), style="cyan")
    records.add_section()
    for row in view.fields:
        if row.state == "empty":
            continue  # neither record has it: a terminal has no room for blank rows
        records.add_row(
            row.label,
            _STATE_MARK[row.state],
            escape(row.left or ""),
            escape(row.right or ""),
            style=_STATE_STYLE[row.state],
        )
    console.print(records)
    scored = view.weight is not None
    columns = ["field", "level", "weight", "total"] if scored else ["field", "level"]
    waterfall = Table(*columns, title="evidence (bits)" if scored else "evidence")
    for step in view.waterfall:
        style = "dim" if step.level == 0 and step.field != "household" else ""
        if step.weight is None or step.cumulative is None:
            waterfall.add_row(step.label, step.level_label, style=style)
            continue
        colour = "green" if step.weight > 0 else "red" if step.weight < 0 else "dim"
        waterfall.add_row(
            step.label,
            step.level_label,
            f"[{colour}]{step.weight:+.2f}[/]",
            f"{step.cumulative:+.2f}",
            style=style,
        )
    if scored and view.waterfall_total is not None:
        waterfall.add_section()
        waterfall.add_row(
            "total match weight", "", "", f"{view.waterfall_total:+.2f}", style="bold"
        )
        if view.prior_weight is not None:
            waterfall.add_row("prior", "", "", f"{view.prior_weight:+.2f}")
        if view.probability is not None:
            waterfall.add_row("probability", "", "", f"{view.probability:.4f}", style="bold")
    console.print(waterfall)


@review_app.callback()
@handle_errors
def review(
    ctx: typer.Context,
    connector: str | None = typer.Option(
        None, "--connector", help="Only pairs with a record from this connector."
    ),
    min_probability: float | None = typer.Option(
        None, "--min", min=0.0, max=1.0, help="Only pairs at or above this probability."
    ),
    max_probability: float | None = typer.Option(
        None, "--max", min=0.0, max=1.0, help="Only pairs at or below this probability."
    ),
    blind: bool = typer.Option(False, "--blind", help="Hide probabilities and weights."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Review at most this many."),
) -> None:
    """Review pending suggestions one at a time, most uncertain first: both records side by
    side, the evidence field by field; y merge, n not a match, s skip, u undo the last
    decision of this session, q quit. Every decision is audited.

    Example: crmhub review --connector stripe --blind
    """
    if ctx.invoked_subcommand is not None:
        return
    with state(ctx).open_hub() as hub:
        band = QueueFilter(
            connector=connector, min_probability=min_probability, max_probability=max_probability
        )
        with hub.engine.connect() as conn:
            queue = pending_ids(conn, band=band, limit=limit)
        if not queue:
            console.print("no pending suggestions to review")
            return
        try:
            summary = review_session(hub, queue, actor=_actor(), blind=blind)
        except KeyboardInterrupt:
            console.print("\ninterrupted: decisions made so far are kept")
            raise typer.Exit(130) from None
    console.print(
        f"reviewed: {summary.merged} merged, {summary.rejected} not a match, "
        f"{summary.skipped} skipped, {summary.stale} stale, {summary.undone} undone"
        + (f", {summary.errors} failed" if summary.errors else "")
        + f"; {summary.left} pending suggestion(s) left"
    )


@review_app.command("list")
@handle_errors
def review_list(
    ctx: typer.Context,
    limit: int = typer.Option(20, min=1, help="How many, most likely first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Pending suggestions, most likely matches first."""
    p = match_pairs.c
    with state(ctx).open_hub() as hub, hub.engine.connect() as conn:
        rows = [
            {str(key): value for key, value in row.items()}  # plain str keys, for JSON
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
    activities: int = typer.Option(25, "--activities", min=1, help="Latest activities shown."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """A customer's golden values with provenance, members, suggestions, traits and latest
    activities: the web's customer page, in a terminal (``--json``: the API's document)."""
    with state(ctx).open_hub() as hub, hub.engine.connect() as conn:
        view = customer_360(conn, customer, per_page=activities)
    if view is None:
        err_console.print(f"no customer {escape(customer)}")
        raise typer.Exit(1)
    if as_json:
        print_json(view.model_dump(mode="json"))
        return
    if view.id != customer:
        console.print(f"{escape(customer)} was merged into {view.id}")
    values = Table("field", "value", "from", "rule", title=f"customer {view.id}")
    for golden in view.fields:
        source = golden.source
        origin = (
            f"{golden.override.set_by} ({golden.override.reason})"
            if golden.override
            else f"record {source.record_id} ({source.connector}/{source.stream})"
            if source
            else ""
        )
        values.add_row(golden.field, escape(golden.display), escape(origin), golden.rule)
    console.print(values)
    members = Table(
        "record", "source", "external id", "joined by", "probability", "supplies", title="members"
    )
    for m in view.members:
        members.add_row(
            str(m.record_id),
            f"{m.connector}/{m.stream}",
            escape(m.external_id),
            m.link_method or "",
            f"{m.link_probability:.4f}" if m.link_probability else "",
            ", ".join(m.supplies),
        )
    console.print(members)
    if view.suggestions:
        console.print(f"{len(view.suggestions)} pending suggestion(s): crmhub review")
    traits = view.traits
    value = ", ".join(money.display for money in traits.lifetime_value) or "none"
    console.print(
        f"lifetime value {value} · {traits.paid_invoices} paid invoice(s) · "
        f"{traits.open_tickets} of {traits.tickets} ticket(s) open · "
        f"in {traits.sources} system(s)"
    )
    page = view.timeline
    timeline = Table(
        "when", "source", "kind", "amount", "status", title=f"activities ({page.total})"
    )
    for act in page.items:
        timeline.add_row(
            _when(act.occurred_at),
            act.connector,
            act.kind,
            act.display_amount or "",
            act.status or "",
        )
    console.print(timeline)

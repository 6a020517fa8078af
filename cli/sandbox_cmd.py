"""``crmhub demo`` and ``crmhub sandbox serve``: the sandbox systems, for trying things out."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from crmhub.cli.context import EXIT_FAILURES, console, err_console, escape, handle_errors
from crmhub.cli.push_cmd import print_pushes
from crmhub.cli.sync_cmd import ProgressBars
from crmhub.demo import DemoSummary, run_demo
from crmhub.sandbox.app import Faults
from crmhub.sandbox.server import serve
from crmhub.sandbox.world import DEFAULT_PORTS, Sandbox

sandbox_app = typer.Typer(
    help="Sandbox versions of the connected systems, on loopback.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root command."""
    app.command("demo")(demo)
    app.add_typer(sandbox_app, name="sandbox")


@handle_errors
def demo(
    folder: Path = typer.Argument(Path("crmhub-demo"), help="Where the demo hub is created."),
    people: int = typer.Option(500, min=1, max=100_000, help="People in the sandbox world."),
    seed: int = typer.Option(7, help="The sandbox world's seed."),
) -> None:
    """Run the whole story on a fresh embedded hub: five sandbox systems (Stripe, Zendesk,
    Mailchimp, Typeform, HubSpot) synced through their APIs, matched into golden records,
    golden values pushed back; then a summary and where to look next.

    Example: crmhub demo --people 2000
    """
    columns = (
        TextColumn("{task.description:<22}"),
        BarColumn(),
        TextColumn("{task.fields[records]:>8,} records"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as progress:
        summary = run_demo(folder, people=people, seed=seed, observer=ProgressBars(progress))
    _print_summary(summary)
    if not summary.ok:
        raise typer.Exit(EXIT_FAILURES)


def _print_summary(summary: DemoSummary) -> None:
    table = Table("system", "records read", title=f"{summary.people:,} people in five systems")
    for system, count in summary.records_by_system.items():
        table.add_row(system, f"{count:,}")
    console.print(table)
    failed = [s for s in summary.streams if not s.ok]
    for stream in failed:
        console.print(
            f"[red]{escape(stream.connector)}/{escape(stream.stream)} failed:[/] "
            f"{escape(stream.error or '')}",
            soft_wrap=True,
        )
    if summary.pushes:
        print_pushes(summary.pushes)
    config = summary.config
    console.print(
        f"\n[bold]{summary.customers:,} golden records[/] from "
        f"{sum(summary.records_by_system.values()):,} records and {summary.activities:,} "
        f"interactions; {summary.auto_links:,} records merged automatically, "
        f"[bold]{summary.suggestions:,} suggestions[/] waiting for a steward; "
        f"{summary.pushed:,} records updated in the systems ({summary.seconds:.1f} s).\n"
    )
    console.print("Where to look next:")
    for command, what in (
        (f"crmhub -c {config} runs", "every stream's run, with counts and retries"),
        (f"crmhub -c {config} review list", "the suggestions waiting for a steward"),
        (f"crmhub -c {config} customers search smith", "golden records and their sources"),
        (f"crmhub -c {config} push --failed", "pushes that failed or wait for a retry"),
        ("crmhub sandbox serve", "the five systems on loopback, to sync again or explore"),
    ):
        console.print(f"  {escape(command):<58} {what}")


@sandbox_app.command("serve")
@handle_errors
def sandbox_serve(
    people: int = typer.Option(500, min=0, max=1_000_000, help="People in the sandbox world."),
    seed: int = typer.Option(7, help="The sandbox world's seed (the demo's default: 7)."),
    error_rate: float = typer.Option(
        0.0, min=0.0, max=0.9, help="Share of requests answered with a 5xx."
    ),
    burst_every: int = typer.Option(0, min=0, help="A burst of 429s every N requests (0: off)."),
    slow: float = typer.Option(0.0, min=0.0, help="Seconds added to every response."),
    seconds: float = typer.Option(
        0.0, min=0.0, help="Stop after this many seconds (0: until Ctrl-C)."
    ),
) -> None:
    """Serve the five sandbox systems on loopback ports, with optional fault injection.

    The demo's config (crmhub-demo/crmhub.toml) points at these ports; export the printed
    variables in the shell that runs crmhub. Example: crmhub sandbox serve --error-rate 0.2
    """
    faults = Faults(error_rate=error_rate, burst_every=burst_every, slow=slow)
    sandbox = Sandbox(people, seed=seed, faults=faults, ports=DEFAULT_PORTS)
    servers = serve(sandbox)
    for system, server in zip(sandbox.ports or {}, servers, strict=True):
        console.print(f"{system:<10} {server.url}")
    console.print("\nThe connectors' credentials (sandbox values, not secrets):")
    for name, value in sandbox.environ().items():
        console.print(f"  export {name}={value}")
    console.print("\nConnector settings for crmhub.toml:")
    console.print(sandbox.config_toml("sqlite:///crmhub.db"), markup=False)
    deadline = time.monotonic() + seconds if seconds else None
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2 if deadline else 3600)
    except KeyboardInterrupt:
        pass
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    for system, app in sandbox.apps.items():
        sent = sum(app.faults_sent.values())
        console.print(f"{system}: {sum(app.calls.values()):,} requests answered, {sent:,} faults")

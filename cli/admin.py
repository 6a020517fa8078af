"""Setting up a hub: ``init``, ``db upgrade|current``, ``connectors list|check|new``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

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
from crmhub.config import DEFAULT_CONFIG_NAME
from crmhub.errors import ConnectorError
from crmhub.scaffold import create_connector_package
from crmhub.store import current_revision, head_revision, safe_url, upgrade

db_app = typer.Typer(help="The hub database: schema migrations.", no_args_is_help=True)
connectors_app = typer.Typer(help="Installed connectors and their settings.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root command."""
    app.command("init")(init)
    app.add_typer(db_app, name="db")
    app.add_typer(connectors_app, name="connectors")


@handle_errors
def init(
    ctx: typer.Context,
    folder: Path = typer.Argument(Path("."), help="Where to create the hub."),
    force: bool = typer.Option(False, help="Overwrite an existing config file."),
) -> None:
    """Create a new hub: a commented starter crmhub.toml and a migrated database.

    Example: crmhub init my-hub && cd my-hub && crmhub connectors list
    """
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / DEFAULT_CONFIG_NAME
    if config_path.exists() and not force:
        console.print(f"{config_path} exists: keeping it (use --force to overwrite)")
    else:
        template = resources.files("crmhub").joinpath("templates/crmhub.toml").read_text()
        config_path.write_text(template, encoding="utf-8")
        console.print(f"wrote {config_path}")
    state(ctx).config_path = config_path
    with state(ctx).open_hub(create=False, check_schema=False) as hub:
        before, after = upgrade(hub.engine)
        console.print(
            f"hub database {safe_url(hub.engine.url)} at schema revision {after}"
            + (" (created)" if before is None else "")
        )


@db_app.command("upgrade")
@handle_errors
def db_upgrade(ctx: typer.Context) -> None:
    """Migrate the hub database to the schema of this crmhub version."""
    with state(ctx).open_hub(create=False, check_schema=False) as hub:
        before, after = upgrade(hub.engine)
    console.print(f"schema revision {before or '(empty)'} -> {after}")


@db_app.command("current")
@handle_errors
def db_current(ctx: typer.Context) -> None:
    """Show the schema revision of the hub database and the one this crmhub needs."""
    with state(ctx).open_hub(create=False, check_schema=False) as hub:
        console.print(
            f"database: {current_revision(hub.engine) or '(empty)'}; this crmhub: {head_revision()}"
        )


@connectors_app.command("list")
@handle_errors
def connectors_list(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Show every installed connector with its streams and capabilities."""
    plugins = state(ctx).plugins()
    rows: list[dict[str, Any]] = []
    for name, connector in sorted(plugins.connectors().items()):
        rows.append(
            {
                "name": name,
                "description": connector.description,
                "capabilities": list(connector.capabilities()),
                "streams": {
                    stream_name: {"primary_key": s.primary_key, "cursor": s.cursor, "kind": s.kind}
                    for stream_name, s in connector.streams.items()
                },
                "module": connector.__module__,
            }
        )
    broken = [{"plugin": f.name, "error": f.error} for f in plugins.failures]
    if as_json:
        print_json({"connectors": rows, "failed_plugins": broken})
        return
    table = Table("connector", "capabilities", "streams (primary key, cursor)", "description")
    for row in rows:
        streams = ", ".join(
            f"{n} ({s['primary_key']}, {s['cursor'] or 'full'})" for n, s in row["streams"].items()
        )
        table.add_row(
            escape(row["name"]),
            " ".join(row["capabilities"]),
            escape(streams),
            escape(row["description"]),
        )
    console.print(table)
    for failure in broken:
        err_console.print(
            f"[yellow]failed to load plugin {escape(failure['plugin'])}:[/] "
            f"{escape(failure['error'])}"
        )


@connectors_app.command("check")
@handle_errors
def connectors_check(
    ctx: typer.Context,
    names: list[str] = typer.Argument(None, help="Connector instances (default: all)."),
) -> None:
    """Check the settings and credentials of configured connectors."""
    with state(ctx).open_hub() as hub:
        failed = 0
        for name in names or hub.connector_names():
            connector = hub.connector(name)
            try:
                connector.check()
                hub.mapping(name)
                console.print(f"[green]ok[/]      {name}")
            except ConnectorError as exc:
                failed += 1
                console.print(f"[red]failed[/]  {escape(name)}: {escape(str(exc))}")
            finally:
                connector.close()
    if failed:
        raise typer.Exit(EXIT_FAILURES)


@connectors_app.command("new")
@handle_errors
def connectors_new(
    name: str = typer.Argument(..., help="The connector's name (lower case, e.g. acme_crm)."),
    folder: Path = typer.Option(Path("."), "--folder", help="Where the package is created."),
) -> None:
    """Create an installable connector package: the connector, its mapping, a fake of its
    API, the conformance test and a pyproject with the entry point.

    Example: crmhub connectors new acme_crm && cd crmhub-acme-crm && pip install -e '.[test]'
    && python -m pytest
    """
    root = create_connector_package(name, folder)
    console.print(f"created {escape(str(root))}:")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        console.print(f"  {escape(str(path.relative_to(root)))}")
    console.print(escape(f"\nnext: cd {root} && pip install -e '.[test]' && python -m pytest"))

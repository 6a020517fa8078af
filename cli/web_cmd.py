"""``crmhub serve``, ``crmhub tokens create|list|revoke``, ``crmhub audit verify``."""

from __future__ import annotations

import typer
from rich.table import Table

from crmhub import audit
from crmhub.auth import ROLES, AuthError, create_token, list_tokens, revoke_token
from crmhub.cli.context import (
    EXIT_FAILURES,
    EXIT_USAGE,
    console,
    err_console,
    escape,
    handle_errors,
    print_json,
    state,
)

tokens_app = typer.Typer(help="API tokens and their roles.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root command."""
    app.command("serve")(serve)
    app.add_typer(tokens_app, name="tokens")
    app.add_typer(audit_app, name="audit")


@handle_errors
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8800, min=1, max=65535, help="Port to listen on."),
) -> None:
    """Serve the web app: review queue, customer 360, runs, quarantine, pushes, JSON API
    (OpenAPI at /api/openapi.json). Sign in with a token from `crmhub tokens create`.

    Example: crmhub serve --port 8800
    """
    import uvicorn

    from crmhub.web import create_app

    with state(ctx).open_hub() as hub:
        err_console.print(f"crmhub web on http://{host}:{port}/ (Ctrl-C stops it)")
        uvicorn.run(create_app(hub), host=host, port=port, log_level="warning")


@tokens_app.command("create")
@handle_errors
def tokens_create(
    ctx: typer.Context,
    role: str = typer.Option(..., help=f"One of: {', '.join(ROLES)}."),
    name: str = typer.Option(..., help="Who holds it (shown in the audit log)."),
) -> None:
    """Create a token; it is printed once and stored only as a hash.

    Example: crmhub tokens create --role steward --name ana
    """
    with state(ctx).open_hub() as hub, hub.engine.begin() as conn:
        try:
            token = create_token(conn, name, role)
        except AuthError as exc:
            err_console.print(f"[red]error:[/] {escape(str(exc))}")
            raise typer.Exit(EXIT_USAGE) from None
    console.print(token, markup=False)
    err_console.print(f"token for {escape(name)} ({role}): shown once, keep it safe")


@tokens_app.command("list")
@handle_errors
def tokens_list(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """List the tokens' holders and roles (never the tokens)."""
    with state(ctx).open_hub() as hub, hub.engine.connect() as conn:
        rows = list_tokens(conn)
    if as_json:
        print_json(rows)
        return
    table = Table("name", "role", "created", "last used", "revoked")
    for row in rows:
        table.add_row(
            escape(row["name"]),
            row["role"],
            f"{row['created_at']:%Y-%m-%d %H:%M}",
            f"{row['last_used_at']:%Y-%m-%d %H:%M}" if row["last_used_at"] else "",
            f"{row['revoked_at']:%Y-%m-%d %H:%M}" if row["revoked_at"] else "",
        )
    console.print(table)


@tokens_app.command("revoke")
@handle_errors
def tokens_revoke(ctx: typer.Context, name: str = typer.Argument(..., help="Its holder.")) -> None:
    """Revoke a token and sign out its sessions."""
    with state(ctx).open_hub() as hub, hub.engine.begin() as conn:
        try:
            revoke_token(conn, name)
        except AuthError as exc:
            err_console.print(f"[red]error:[/] {escape(str(exc))}")
            raise typer.Exit(EXIT_USAGE) from None
    console.print(f"revoked the token of {escape(name)}")


@audit_app.command("verify")
@handle_errors
def audit_verify(ctx: typer.Context) -> None:
    """Check the audit log's hash chain; name the first tampered event. Exit code 1 if any.

    Example: crmhub audit verify
    """
    with state(ctx).open_hub() as hub, hub.engine.connect() as conn:
        checked, broken = audit.verify(conn)
    if broken is None:
        console.print(f"[green]ok[/]: {checked:,} events, the chain is intact")
        return
    console.print(
        f"[red]tampered[/]: event {broken} does not follow from the {checked:,} before it "
        "(changed, inserted or deleted)"
    )
    raise typer.Exit(EXIT_FAILURES)

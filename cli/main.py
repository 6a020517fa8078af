"""The ``crmhub`` command: options common to every subcommand, and the subcommands."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from crmhub.cli import (
    admin,
    ops,
    privacy_cmd,
    push_cmd,
    sandbox_cmd,
    steward_cmd,
    sync_cmd,
    web_cmd,
)
from crmhub.cli.context import CliState, is_interactive, load_plugins
from crmhub.config import DEFAULT_CONFIG_NAME
from crmhub.logs import configure_logging

__all__ = ["app", "main"]

app = typer.Typer(
    name="crmhub",
    help="A pluggable CRM integration and data-sync hub.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    config: Path = typer.Option(
        Path(os.environ.get("CRMHUB_CONFIG", DEFAULT_CONFIG_NAME)),
        "--config",
        "-c",
        help="The hub config file (env CRMHUB_CONFIG).",
        show_default=True,
    ),
    log_level: str = typer.Option(
        os.environ.get("CRMHUB_LOG_LEVEL", ""),
        "--log-level",
        help="debug, info, warning or error (default: warning on a terminal, else info).",
    ),
    json_logs: bool = typer.Option(
        False, "--json-logs", help="Write JSON log lines even on a terminal."
    ),
) -> None:
    """crmhub: pull, match and push customer records across your systems."""
    level = log_level or ("warning" if is_interactive() else "info")
    configure_logging(level, json=True if json_logs else None)
    ctx.obj = CliState(config_path=config)


admin.register(app)
sync_cmd.register(app)
push_cmd.register(app)
sandbox_cmd.register(app)
web_cmd.register(app)
ops.register(app)
steward_cmd.register(app)
privacy_cmd.register(app)


def _register_plugin_commands() -> None:
    # Plugins may add subcommands; a plugin that fails to load is reported once.
    load_plugins().manager.hook.register_commands(app=app)


def main() -> None:
    """Entry point of the ``crmhub`` console script."""
    _register_plugin_commands()
    app()

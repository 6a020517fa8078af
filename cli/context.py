"""Shared plumbing of the commands: options of the root command, opening the hub, turning
library errors into clear messages and exit codes (0 ok, 1 finished with failures, 2 usage
or configuration error)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from crmhub.errors import ConfigError, CrmhubError, MappingError, PluginError, StoreError
from crmhub.hub import Hub
from crmhub.plugins import Plugins

__all__ = [
    "EXIT_FAILURES",
    "EXIT_USAGE",
    "CliState",
    "console",
    "err_console",
    "escape",
    "handle_errors",
    "print_json",
]

EXIT_FAILURES = 1
EXIT_USAGE = 2

# Piped output is read by people later (CI logs, files): do not squeeze it into 80 columns.
_WIDTH = None if sys.stdout.isatty() else 160
console = Console(highlight=False, width=_WIDTH)
err_console = Console(stderr=True, highlight=False, width=_WIDTH)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliState:
    """What the root command's options set for the subcommands."""

    config_path: Path

    def plugins(self) -> Plugins:
        """The plugins, loaded once per process; failures are reported once."""
        return load_plugins()

    def open_hub(self, *, create: bool = True, check_schema: bool = True) -> Hub:
        """Open the hub named by ``--config``."""
        return Hub.open(
            self.config_path, plugins=self.plugins(), create=create, check_schema=check_schema
        )


@functools.cache
def load_plugins() -> Plugins:
    """Load the plugins once per command, warning about any that failed."""
    plugins = Plugins()
    for failure in plugins.failures:
        err_console.print(
            f"[yellow]warning:[/] plugin {failure.name!r} skipped: {escape(failure.error)}"
        )
    return plugins


def state(ctx: typer.Context) -> CliState:
    """The root command's state (works for nested command groups too)."""
    root = ctx.find_root()
    assert isinstance(root.obj, CliState), "the root callback sets the state"
    return root.obj


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON on standard output, for scripts (dates as ISO text)."""
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode())


def handle_errors(command: F) -> F:
    """Turn crmhub errors into one clear line on standard error and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (ConfigError, MappingError, PluginError) as exc:
            err_console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(EXIT_USAGE) from None
        except StoreError as exc:
            err_console.print(f"[red]database error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(EXIT_USAGE) from None
        except CrmhubError as exc:
            err_console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(EXIT_FAILURES) from None

    return wrapper  # type: ignore[return-value]


def is_interactive() -> bool:
    """Whether standard error is a terminal (progress bars and colours make sense)."""
    return sys.stderr.isatty()

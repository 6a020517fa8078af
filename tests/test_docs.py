"""Documentation keeps up with the code: every command is in the README, every hook has a
docstring, and the public API's ``__all__`` lists what the package exports."""

from __future__ import annotations
import __future__

import inspect
from pathlib import Path

import typer

import crmhub
from crmhub import hookspecs
from crmhub.cli.main import app

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _commands(typer_app: typer.Typer, prefix: str = "") -> list[str]:
    names = [f"{prefix}{c.name or c.callback.__name__}" for c in typer_app.registered_commands]
    for group in typer_app.registered_groups:
        assert group.typer_instance is not None
        names += _commands(group.typer_instance, f"{prefix}{group.name} ")
    return names


def test_every_command_is_documented_in_the_readme() -> None:
    commands = _commands(app)
    assert {"sync", "runs", "init", "db upgrade", "quarantine retry"} <= set(commands)
    missing = [c for c in commands if f"crmhub {c}" not in README and f"`{c}" not in README]
    assert missing == []


def test_every_hook_has_a_docstring() -> None:
    hooks = [
        f
        for name, f in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("register_")
    ]
    assert len(hooks) == 4
    assert all(inspect.getdoc(hook) for hook in hooks)


def test_the_public_api_lists_exactly_what_it_exports() -> None:
    exported = {
        name
        for name in dir(crmhub)
        if not name.startswith("_")
        and not inspect.ismodule(getattr(crmhub, name))
        and not isinstance(getattr(crmhub, name), __future__._Feature)
    }
    assert set(crmhub.__all__) - {"__version__"} == exported

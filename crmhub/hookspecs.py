"""The hooks a crmhub plugin can implement. Each receives a ``register`` callback.

A plugin is a module (or object) with functions marked ``@crmhub.hookimpl``, published under
the entry-point group ``crmhub``::

    [project.entry-points.crmhub]
    myshop = "crmhub_myshop"
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("crmhub")
hookimpl = pluggy.HookimplMarker("crmhub")


@hookspec
def register_connectors(register: Callable[[type[Any]], None]) -> None:
    """Register connector classes: ``register(MyConnector)`` for each
    :class:`crmhub.Connector` subclass the plugin provides."""


@hookspec
def register_transforms(register: Callable[..., None]) -> None:
    """Register mapping transforms: ``register("name", function)``. A transform takes the
    value and keyword arguments from the mapping file and returns the new value, raising
    ``ValueError`` with a message (no personal data in it) when the value is unusable."""


@hookspec
def register_comparators(register: Callable[..., None]) -> None:
    """Register dedupe field comparators: ``register("name", comparator)``."""


@hookspec
def register_commands(app: Any) -> None:
    """Add subcommands to the ``crmhub`` command line; ``app`` is its ``typer.Typer``."""

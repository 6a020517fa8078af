"""The plugin manager: built-ins and entry-point plugins, loaded through the same hooks.

Entry points of the group ``crmhub`` are loaded when a :class:`Plugins` is created. A plugin
that fails to import or to register is logged, kept in :attr:`Plugins.failures`, and skipped:
the rest keep working. ``CRMHUB_PLUGINS=name1,name2`` restricts which entry points load
(an empty value loads none), which helps when a broken plugin must be kept out.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import pluggy
import structlog

from crmhub import hookspecs
from crmhub.connector import Connector
from crmhub.errors import ConfigError, PluginError

__all__ = ["DEFAULT_PLUGINS", "ENTRY_POINT_GROUP", "PluginFailure", "Plugins"]

ENTRY_POINT_GROUP = "crmhub"
DEFAULT_PLUGINS = ("crmhub.transforms", "crmhub.dedupe.compare")
"""Core modules that implement hooks; connectors come through entry points, built-in or not."""

log = structlog.get_logger("crmhub.plugins")


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded, and why."""

    name: str
    error: str


class Plugins:
    """The loaded plugins and what they registered.

    Args:
        load_entry_points: load plugins published under the ``crmhub`` entry-point group.
        extra: further plugin objects to register (tests, embedding applications).
    """

    def __init__(self, *, load_entry_points: bool = True, extra: tuple[Any, ...] = ()) -> None:
        self.manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.manager.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        for module_name in DEFAULT_PLUGINS:
            self.manager.register(importlib.import_module(module_name), name=module_name)
        if load_entry_points:
            self._load_entry_points()
        for plugin in extra:
            self.manager.register(plugin)
        self.manager.check_pending()
        self._connectors: dict[str, type[Connector]] | None = None
        self._transforms: dict[str, Callable[..., Any]] | None = None

    def _load_entry_points(self) -> None:
        allowed = os.environ.get("CRMHUB_PLUGINS")
        wanted = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            if wanted is not None and entry_point.name not in wanted:
                continue
            if self.manager.get_plugin(entry_point.name) is not None:
                continue
            try:
                plugin = entry_point.load()
                self.manager.register(plugin, name=entry_point.name)
                # A misspelled hook is this plugin's error, not the hub's: check it alone.
                self.manager.check_pending()
            except Exception as exc:  # a broken plugin must never take the hub down
                if self.manager.get_plugin(entry_point.name) is not None:
                    self.manager.unregister(name=entry_point.name)
                reason = f"{type(exc).__name__}: {exc}"
                self.failures.append(PluginFailure(entry_point.name, reason))
                log.warning("plugin.load_failed", plugin=entry_point.name, error=reason)

    def _collect(self, hook_name: str, check: Callable[[str, Any], None]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        hook = getattr(self.manager.hook, hook_name)
        for impl in hook.get_hookimpls():
            items: list[tuple[str, Any]] = []

            def register(*args: Any, _items: list[tuple[str, Any]] = items) -> None:
                if len(args) == 1:
                    _items.append((getattr(args[0], "name", ""), args[0]))
                else:
                    _items.append((args[0], args[1]))

            try:
                impl.function(register)
                for name, obj in items:
                    check(name, obj)
            except Exception as exc:
                reason = f"{hook_name}: {type(exc).__name__}: {exc}"
                self.failures.append(PluginFailure(impl.plugin_name, reason))
                log.warning("plugin.register_failed", plugin=impl.plugin_name, error=reason)
                continue
            for name, obj in items:
                found[name] = obj
        return found

    def connectors(self) -> dict[str, type[Connector]]:
        """Every registered connector class by its ``name``."""
        if self._connectors is None:
            self._connectors = self._collect("register_connectors", _check_connector)
        return self._connectors

    def connector(self, type_name: str) -> type[Connector]:
        """The connector class called ``type_name``.

        Raises:
            ConfigError: if no installed plugin provides it (the message lists those that do).
        """
        found = self.connectors().get(type_name)
        if found is None:
            known = ", ".join(sorted(self.connectors())) or "none"
            raise ConfigError(f"unknown connector type {type_name!r} (installed: {known})")
        return found

    def transforms(self) -> dict[str, Callable[..., Any]]:
        """Every registered mapping transform by name."""
        if self._transforms is None:
            self._transforms = self._collect("register_transforms", _check_callable)
        return self._transforms

    def comparators(self) -> dict[str, Any]:
        """Every registered dedupe comparator by name."""
        return self._collect("register_comparators", _check_callable)


def _check_connector(name: str, obj: Any) -> None:
    if not (isinstance(obj, type) and issubclass(obj, Connector)):
        raise PluginError(f"{obj!r} is not a crmhub.Connector subclass")
    if not getattr(obj, "name", None) or not name:
        raise PluginError(f"{obj.__name__} has no `name`")
    if not obj.streams:
        raise PluginError(f"{obj.__name__} declares no streams")


def _check_callable(name: str, obj: Any) -> None:
    if not name or not callable(obj):
        raise PluginError(f"{name!r} is not a named callable")

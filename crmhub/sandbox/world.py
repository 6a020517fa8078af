"""The five sandbox systems together, seeded from one synthetic world with known duplicates.

The synthetic people of :mod:`crmhub.sandbox.people` live in five kinds of source (a CRM, a
shop, a newsletter list, billing, support); here each kind is served by the sandbox app of a
real system, so one person can be a HubSpot contact, a Mailchimp member and a Stripe customer
at once, each typed a little differently: the duplicates the hub must find.

    sandbox = Sandbox(people=500)
    transport = sandbox.transport()          # hand to connectors: no sockets involved
    sandbox.base_url("stripe")               # https://api.stripe.sandbox
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import os
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from crmhub.sandbox.app import Faults, SandboxApp
from crmhub.sandbox.people import WorldOptions, iter_world
from crmhub.store.engine import open_engine
from crmhub.store.migrate import upgrade

if TYPE_CHECKING:
    from crmhub.hub import Hub

__all__ = [
    "DEFAULT_PORTS",
    "LOOPBACK",
    "SOURCE_SYSTEMS",
    "SYSTEM_APPS",
    "Sandbox",
    "sandbox_environ",
]

LOOPBACK = "127.0.0.1"
DEFAULT_PORTS: Mapping[str, int] = {
    "stripe": 8701,
    "zendesk": 8702,
    "mailchimp": 8703,
    "typeform": 8704,
    "hubspot": 8705,
}
"""The loopback ports ``crmhub sandbox serve`` and the demo's config use."""

SOURCE_SYSTEMS: Mapping[str, str] = {
    "crm": "hubspot",
    "shop": "typeform",
    "newsletter": "mailchimp",
    "billing": "stripe",
    "support": "zendesk",
}
"""Which system serves each kind of source of the synthetic world."""

SYSTEM_APPS: Mapping[str, str] = {
    "stripe": "crmhub.sandbox.stripe:StripeSandbox",
    "zendesk": "crmhub.sandbox.zendesk:ZendeskSandbox",
    "mailchimp": "crmhub.sandbox.mailchimp:MailchimpSandbox",
    "typeform": "crmhub.sandbox.typeform:TypeformSandbox",
    "hubspot": "crmhub.sandbox.hubspot:HubspotSandbox",
}
"""The app class of each system (imported when first used)."""


def sandbox_environ() -> dict[str, str]:
    """The environment variables of every sandbox app's default credentials (public values:
    they unlock only the sandbox)."""
    out: dict[str, str] = {}
    for system in SYSTEM_APPS:
        out.update(app_class(system)().environ())
    return out


def app_class(system: str) -> type[SandboxApp]:
    """The sandbox app class standing in for ``system``."""
    module_name, _, class_name = SYSTEM_APPS[system].partition(":")
    cls: type[SandboxApp] = getattr(importlib.import_module(module_name), class_name)
    return cls


class Sandbox:
    """The sandbox systems, seeded and ready to serve.

    Args:
        people: how many real people the world holds (each in one or more systems).
        seed: the world's seed; equal arguments give identical systems.
        systems: which systems to run (default: all five).
        faults: fault injection for every app (each gets its own copy, seeded apart, in
            its ``faults`` attribute, which can be switched separately).
        ports: serve each system at ``http://127.0.0.1:PORT`` instead of its own host name
            (what :mod:`crmhub.sandbox.server` listens on; :data:`DEFAULT_PORTS`); the
            in-process transport then routes by port.
    """

    def __init__(
        self,
        people: int = 200,
        *,
        seed: int = 7,
        systems: tuple[str, ...] | None = None,
        faults: Faults | None = None,
        ports: Mapping[str, int] | None = None,
    ) -> None:
        systems = systems or tuple(SYSTEM_APPS)
        unknown = set(systems) - set(SYSTEM_APPS)
        if unknown:
            raise ValueError(f"unknown sandbox systems: {', '.join(sorted(unknown))}")
        self.apps: dict[str, SandboxApp] = {}
        for i, system in enumerate(systems):
            # Each app its own copy: its own burst state, its own seeded choice of failures.
            own = dataclasses.replace(faults, seed=faults.seed + i) if faults else None
            app = app_class(system)(faults=own)
            app.seed_random(seed)
            self.apps[system] = app
        sources = tuple(s for s, system in SOURCE_SYSTEMS.items() if system in self.apps)
        rows: dict[str, list[dict[str, str]]] = defaultdict(list)
        if sources and people:
            for source, row in iter_world(people, WorldOptions(seed=seed, sources=sources)):
                rows[SOURCE_SYSTEMS[source]].append(row)
        for system, app in self.apps.items():
            app.seed(rows.get(system, []))
        # The systems' state is millions of long-lived objects that a real system would keep
        # in its own process: out of the collector's sight, they do not make every later
        # collection (one per so many new objects, such as a parsed page) scan them all.
        gc.freeze()
        self.ports = {system: ports[system] for system in self.apps} if ports else None
        self._by_host = {app.host: app for app in self.apps.values()}
        self._by_port = {port: self.apps[s] for s, port in (self.ports or {}).items()}

    def app(self, system: str) -> SandboxApp:
        """The app of one system."""
        return self.apps[system]

    def base_url(self, system: str) -> str:
        """The base URL connectors use to reach ``system`` through :meth:`transport`."""
        if self.ports:
            return f"http://{LOOPBACK}:{self.ports[system]}"
        return f"https://{self.apps[system].host}"

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer a request with the app its host (or port) names; an unknown one cannot
        connect."""
        url = request.url
        app = self._by_port.get(url.port or 0) if url.host == LOOPBACK else None
        app = app or self._by_host.get(url.host)
        if app is None:
            raise httpx.ConnectError(f"cannot reach {request.url.host}", request=request)
        return app(request)

    def transport(self) -> httpx.MockTransport:
        """An in-process transport reaching every app by its host name."""
        return httpx.MockTransport(self.handle)

    def settings(self, system: str) -> dict[str, Any]:
        """Connector settings pointing at this sandbox (secrets as ``env:`` references; see
        :meth:`environ`)."""
        return self.apps[system].connector_settings(self.base_url(system))

    def environ(self) -> dict[str, str]:
        """The environment variables the settings of :meth:`settings` refer to."""
        out: dict[str, str] = {}
        for app in self.apps.values():
            out.update(app.environ())
        return out

    def config_toml(
        self,
        database_url: str,
        *,
        hub: Mapping[str, Any] | None = None,
        connectors: Mapping[str, Any] | None = None,
        extra: str = "",
    ) -> str:
        """A ``crmhub.toml`` for a hub at ``database_url`` connected to every app here
        (``hub``: more ``[hub]`` settings; ``connectors``: settings added to every connector,
        such as ``max_attempts``; ``extra`` is appended: more sections)."""
        lines = ["[hub]", f"database_url = {_toml(database_url)}"]
        # The synthetic world writes British numbers in national form, as people do.
        hub_settings = {"default_region": "GB", **(hub or {})}
        lines += [f"{key} = {_toml(value)}" for key, value in hub_settings.items()]
        lines.append("")
        for system in self.apps:
            lines.append(f"[connectors.{system}]")
            settings = {**self.settings(system), **(connectors or {})}
            lines += [f"{key} = {_toml(value)}" for key, value in settings.items()]
            lines.append("")
        return "\n".join(lines) + extra

    def open_hub(
        self,
        folder: str | Path,
        database_url: str | None = None,
        *,
        hub: Mapping[str, Any] | None = None,
        connectors: Mapping[str, Any] | None = None,
        extra_config: str = "",
        **http_options: Any,
    ) -> Hub:
        """Write a config into ``folder`` and open a migrated hub connected to these apps
        in-process (SQLite in ``folder`` unless ``database_url`` names another database).

        The sandbox credentials are put into this process's environment, where the config's
        ``env:`` references find them; ``hub`` adds ``[hub]`` settings (``secret`` as an
        ``env:`` reference, ``default_region``), ``connectors`` settings to every connector.
        ``http_options`` go to every connector's client (``sleep`` to skip real waits in
        tests; ``transport=None`` to reach the apps over real HTTP when they are served).
        """
        folder = Path(folder).resolve()  # the config's relative paths resolve against it
        folder.mkdir(parents=True, exist_ok=True)
        url = database_url or f"sqlite:///{folder / 'crmhub.db'}"
        path = folder / "crmhub.toml"
        text = self.config_toml(url, hub=hub, connectors=connectors, extra=extra_config)
        path.write_text(text, encoding="utf-8")
        os.environ.update(self.environ())
        engine = open_engine(url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        from crmhub.hub import Hub  # the hub imports plugins, which may import this module

        return Hub.open(path, http_options={"transport": self.transport(), **http_options})


def _toml(value: Any) -> str:
    """One TOML value (the settings hold strings, numbers, booleans and lists of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'

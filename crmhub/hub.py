"""The hub: configuration, store, plugins and connector instances, created in one place.

Everything the CLI and the web do goes through a :class:`Hub`::

    with Hub.open("crmhub.toml") as hub:
        results = hub.sync(["shop"], full=False)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
import structlog
from sqlalchemy.engine import Engine

from crmhub.config import DEFAULT_CONFIG_NAME, HubConfig, load_config
from crmhub.connector import Connector
from crmhub.errors import ConfigError, MappingError, WebhookSignatureError
from crmhub.mapper import default_workers
from crmhub.mapping import MappingFile, load_mapping
from crmhub.plugins import Plugins
from crmhub.push import PlanReport, PushTarget, deliver_pushes, plan_pushes
from crmhub.resolution import Resolver, ResolveReport
from crmhub.store import quarantine as quarantine_store
from crmhub.store.engine import is_sqlite, open_engine
from crmhub.store.migrate import is_empty, require_current, upgrade
from crmhub.store.runs import Counts, add_counts, finish_run, start_run
from crmhub.suppression import SuppressionList
from crmhub.sync import Observer, StreamResult, StreamSync, sync_stream

__all__ = ["Hub", "PushOutcome", "RetryOutcome", "WebhookOutcome"]

log = structlog.get_logger("crmhub.hub")


@dataclass
class PushOutcome:
    """What one push did for one target stream: the plan (for a retry only, the check of
    what was queued) and the delivery's counts."""

    target: str
    stream: str
    plan: PlanReport | None
    counts: Counts
    status: str = "succeeded"
    error: str | None = None

    @property
    def failed(self) -> bool:
        """Whether the target refused the pushes (records that failed alone do not count)."""
        return self.status == "failed"


@dataclass
class WebhookOutcome:
    """What a webhook delivery did: whether its signature was accepted, the runs that
    stored its records, and why it was refused."""

    accepted: bool
    results: list[StreamResult] = field(default_factory=list)
    error: str | None = None


@dataclass
class RetryOutcome:
    """What a quarantine retry did."""

    counts: Counts = field(default_factory=Counts)
    not_retriable: int = 0


def _parse_raw(raw: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


class Hub:
    """An open hub.

    Args:
        config: the validated configuration.
        engine: the store.
        plugins: the loaded plugins.
    """

    def __init__(
        self,
        config: HubConfig,
        engine: Engine,
        plugins: Plugins,
        *,
        http_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.http_options = dict(http_options or {})
        """Handed to every connector's HTTP client (e.g. ``transport``: the sandbox)."""
        self.engine = engine
        self.plugins = plugins
        self.created = False
        self._mappings: dict[str, MappingFile] = {}
        self.last_match: ResolveReport | None = None
        """What matching did at the end of the last :meth:`sync`."""
        self.last_push: list[PushOutcome] | None = None
        """What pushing did at the end of the last :meth:`sync`."""

    @classmethod
    def open(
        cls,
        config_path: str | Path | None = None,
        *,
        plugins: Plugins | None = None,
        create: bool = True,
        check_schema: bool = True,
        http_options: Mapping[str, Any] | None = None,
    ) -> Hub:
        """Load the config, open the store and check its schema.

        A new embedded (SQLite) hub is created and migrated on first use when ``create`` is
        true; a PostgreSQL hub is never created implicitly (run ``crmhub init`` or
        ``crmhub db upgrade``). ``check_schema=False`` opens a hub at any revision, for
        migrating it. ``http_options`` go to every connector's HTTP client (a transport
        reaching the sandbox, for instance).

        Raises:
            ConfigError: the config is wrong.
            StoreError: the database cannot be opened or is at another schema revision.
        """
        plugins = plugins or Plugins()
        config = load_config(
            config_path or DEFAULT_CONFIG_NAME, connector_types=plugins.connectors()
        )
        engine = open_engine(config.hub.database_url)
        hub = cls(config, engine, plugins, http_options=http_options)
        if create and is_sqlite(engine) and is_empty(engine):
            upgrade(engine)
            hub.created = True
            log.info("hub.created")
        if check_schema:
            require_current(engine)
        return hub

    def close(self) -> None:
        """Release the store's connections."""
        self.engine.dispose()

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType]) -> None:
        self.close()

    def connector_names(self, *, enabled_only: bool = True) -> list[str]:
        """The configured connector instances, in config order."""
        return [
            name
            for name, entry in self.config.connectors.items()
            if entry.enabled or not enabled_only
        ]

    def connector(self, name: str, **kwargs: Any) -> Connector:
        """A new instance of the configured connector ``name``.

        Raises:
            ConfigError: if no connector of that name is configured.
        """
        entry = self.config.connectors.get(name)
        if entry is None:
            known = ", ".join(self.config.connectors) or "none"
            raise ConfigError(f"no connector named {name!r} in the config (configured: {known})")
        connector_class = self.plugins.connector(entry.type)
        kwargs.setdefault("http_options", self.http_options)
        return connector_class(entry.settings, name=name, **kwargs)

    def mapping(self, name: str) -> MappingFile:
        """The mapping file of connector instance ``name`` (its own or the built-in one).

        Raises:
            ConfigError: if the connector has no mapping.
            MappingError: if the mapping file is invalid.
        """
        if name not in self._mappings:
            entry = self.config.connectors[name]
            connector_class = self.plugins.connector(entry.type)
            ref = entry.settings.mapping or connector_class.default_mapping
            if not ref:
                raise ConfigError(
                    'no mapping: set `mapping = "path/to/mapping.yaml"`',
                    key=f"connectors.{name}.mapping",
                )
            self._mappings[name] = load_mapping(
                ref, transforms=self.plugins.transforms(), base_dir=self.config.base_dir
            )
        return self._mappings[name]

    def reload_mappings(self, names: Sequence[str] | None = None) -> None:
        """Forget loaded mappings (of ``names``, or all), so the next use reads the files
        again: a long-running server picks up a fixed mapping before a quarantine retry."""
        for name in list(names) if names is not None else list(self._mappings):
            self._mappings.pop(name, None)

    def secret(self) -> bytes | None:
        """The hub secret that keys identifier hashes, if configured."""
        secret = self.config.hub.secret
        return secret.get_secret_value().encode() if secret else None

    def suppressions(self) -> SuppressionList:
        """The current suppression list."""
        with self.engine.connect() as conn:
            return SuppressionList.load(conn, self.secret())

    def retry_quarantined(
        self, *, ids: Sequence[int] | None = None, connector: str | None = None
    ) -> RetryOutcome:
        """Map open quarantined records again with the current mappings; see
        :meth:`crmhub.sync.StreamSync.retry`. Rows that hold unparsed text (a malformed CSV
        row, a line that is not JSON) cannot be retried: fix the source and sync again."""
        with self.engine.connect() as conn:
            rows = quarantine_store.list_quarantine(conn, connector=connector, limit=None)
            if ids is not None:
                wanted = set(ids)
                rows = [r for r in rows if r["id"] in wanted]
            raw_by_id = quarantine_store.raw_records(conn, [r["id"] for r in rows])
        outcome = RetryOutcome()
        groups: dict[tuple[str, str], list[tuple[int, Any]]] = {}
        for row in rows:
            raw = _parse_raw(raw_by_id.get(row["id"], ""))
            if not isinstance(raw, dict) or row["connector"] not in self.config.connectors:
                outcome.not_retriable += 1
                continue
            groups.setdefault((row["connector"], row["stream"]), []).append((row["id"], raw))
        suppressions = self.suppressions()
        for (name, stream), items in groups.items():
            instance = self.connector(name)
            try:
                counts = StreamSync(
                    self.engine,
                    instance,
                    stream,
                    self.mapping(name),
                    region=self.config.hub.default_region,
                    suppressions=suppressions,
                ).retry(items)
            finally:
                instance.close()
            outcome.counts.add(counts)
        return outcome

    def ingest_webhook(
        self, name: str, headers: Mapping[str, str], body: bytes, *, match: bool = True
    ) -> WebhookOutcome:
        """Verify a webhook delivery for connector instance ``name`` and store its records
        through the normal pipeline (then match them, unless ``match`` is false).

        A delivery whose signature is missing, wrong or too old stores nothing; it is
        recorded as a ``rejected`` webhook run, so refusals show in ``crmhub runs``.

        Raises:
            ConfigError: if the connector is not configured or takes no webhooks.
        """
        connector = self.connector(name)
        try:
            if "webhook" not in connector.capabilities():
                raise ConfigError(f"connector {name!r} does not take webhooks")
            try:
                deliveries = connector.webhook(headers, body)
            except WebhookSignatureError as exc:
                self._record_rejection(name, str(exc))
                return WebhookOutcome(False, error=str(exc))
            suppressions = self.suppressions()
            results = [
                StreamSync(
                    self.engine,
                    connector,
                    delivery.stream,
                    self.mapping(name),
                    region=self.config.hub.default_region,
                    suppressions=suppressions,
                ).ingest([delivery.page])
                for delivery in deliveries
            ]
        finally:
            connector.close()
        if match and results:
            self.last_match = self.resolver().resolve()
        return WebhookOutcome(True, results)

    def _record_rejection(self, name: str, error: str) -> None:
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            run_id = start_run(conn, name, "webhook", "webhook", now)
            add_counts(conn, run_id, Counts(rejected=1), now)
            finish_run(conn, run_id, "rejected", now, error)
        log.warning("webhook.rejected", connector=name)

    def resolver(self) -> Resolver:
        """Matching for this hub, with its ``[dedupe]`` and ``[survivorship]`` settings."""
        return Resolver.from_config(self.engine, self.config)

    def push_targets(self, names: Sequence[str] | None = None) -> list[PushTarget]:
        """The person streams golden values are pushed to: of the named (default: every
        enabled) instances whose connector can write, whose mapping has a ``push`` section
        and whose config does not say ``push = false``."""
        targets: list[PushTarget] = []
        for name in names or self.connector_names():
            entry = self.config.connectors[name]
            connector_class = self.plugins.connector(entry.type)
            if not entry.push or "write" not in connector_class.capabilities():
                continue
            instance = self.connector(name)
            instance.close()
            if not instance.accepts_writes():
                continue
            mapping = self.mapping(name)
            for stream in instance.stream_names():  # an instance may name its own streams
                if instance.stream(stream).kind != "person":
                    continue
                try:
                    stream_mapping = mapping.stream(stream)
                except MappingError:
                    continue
                if stream_mapping.can_push:
                    targets.append(PushTarget(name, stream, stream_mapping))
        return targets

    def push(self, names: Sequence[str] | None = None, *, plan: bool = True) -> list[PushOutcome]:
        """Queue the golden values that changed (unless ``plan`` is false: then only the
        pushes already queued are checked again, and those no longer needed are dropped) and
        send the due pushes of the named instances (default: every enabled one); see
        :mod:`crmhub.push`."""
        suppressions = self.suppressions()
        outcomes: list[PushOutcome] = []
        for target in self.push_targets(names):
            report = plan_pushes(self.engine, target, suppressions, queued_only=not plan)
            connector = self.connector(target.connector)
            try:
                delivery = deliver_pushes(self.engine, connector, target.stream)
            finally:
                connector.close()
            outcomes.append(
                PushOutcome(
                    target.connector,
                    target.stream,
                    report,
                    delivery.counts,
                    delivery.status,
                    delivery.error,
                )
            )
        return outcomes

    def sync(
        self,
        names: Sequence[str] | None = None,
        *,
        full: bool = False,
        dry_run: bool = False,
        observer: Observer | None = None,
        match: bool = True,
        push: bool = False,
    ) -> list[StreamResult]:
        """Sync the named connectors (default: all enabled ones), stream by stream, then match
        the new and changed person records into customers (unless ``match`` is false or this
        is a dry run; :attr:`last_match` holds what matching did), then push the changed
        golden values back when ``push`` is true (:attr:`last_push` holds what it did).

        A stream that fails is recorded and the others still run. Configuration errors
        (unknown connector, invalid mapping) are raised before anything is read.
        """
        names = list(names) if names else self.connector_names()
        for name in names:  # validate everything before the first record moves
            self.connector(name).close()
            self.mapping(name)
        suppressions = self.suppressions()
        results: list[StreamResult] = []
        for name in names:
            connector = self.connector(name)
            try:
                for stream in connector.stream_names():
                    try:
                        mapping = self.mapping(name)
                        mapping.stream(stream)
                    except MappingError as exc:
                        results.append(
                            StreamResult(name, stream, "skipped", "failed", error=str(exc))
                        )
                        continue
                    results.append(
                        sync_stream(
                            self.engine,
                            connector,
                            stream,
                            mapping,
                            full=full,
                            dry_run=dry_run,
                            region=self.config.hub.default_region,
                            suppressions=suppressions,
                            observer=observer,
                            workers=self.config.hub.workers or default_workers(),
                        )
                    )
            finally:
                connector.close()
        self.last_match = self.resolver().resolve() if match and not dry_run else None
        self.last_push = self.push(names) if push and match and not dry_run else None
        return results

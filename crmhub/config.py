"""The hub configuration: one TOML file, ``crmhub.toml``, validated with pydantic.

Secrets never live in the file: a value written ``"env:NAME"`` is read from the environment
variable ``NAME``, and fields that hold secrets accept nothing else. Relative paths (SQLite
files, connector paths, mapping files) are relative to the folder of the config file. Every
error names the key and says what is wrong.
"""

from __future__ import annotations

import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from sqlalchemy.engine import make_url

from crmhub.connector import ConnectorConfig
from crmhub.errors import ConfigError
from crmhub.normalize import normalize_country

__all__ = [
    "DEFAULT_CONFIG_NAME",
    "RETENTION_CATEGORIES",
    "ConnectorEntry",
    "DedupeSettings",
    "HubConfig",
    "HubSettings",
    "RetentionSettings",
    "SurvivorshipSettings",
    "load_config",
    "parse_age",
    "parse_config",
]

DEFAULT_CONFIG_NAME = "crmhub.toml"
SURVIVORSHIP_RULES = (
    "source_priority", "most_recent", "most_frequent", "most_complete", "union",
    "most_restrictive",
)  # fmt: skip


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HubSettings(_Section):
    """``[hub]``: where the store is and how values are normalised."""

    database_url: str = "sqlite:///crmhub.db"
    default_region: str | None = None
    secret: SecretStr | None = None
    workers: int | None = Field(None, ge=1, le=64)
    """Processes that map large pages; default: one per core, at most four."""

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        return normalize_country(value) if value else None

    @field_validator("database_url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            make_url(value)
        except Exception:
            raise ValueError("not a database URL (e.g. sqlite:///crmhub.db)") from None
        return value


class DedupeSettings(_Section):
    """``[dedupe]``: match probability thresholds and matching guards."""

    auto_merge: float = Field(0.95, gt=0, le=1)
    """Pairs at or above this probability are merged automatically."""
    review: float = Field(0.60, gt=0, le=1)
    """Pairs from here up to ``auto_merge`` become suggestions for a steward."""
    max_block_size: int = Field(500, ge=2, le=100_000)
    """Blocks (records sharing a blocking key) larger than this are skipped and reported."""
    hard_identifiers: list[str] = Field(
        default_factory=lambda: ["tax_id", "national_id", "passport"]
    )
    """Identifier kinds that never differ within one customer without a steward."""
    blocking_rules: dict[str, list[str]] | None = None
    """Rule name -> match fields whose values together make a blocking key (``"field"`` or
    ``"field:N"`` for the first N characters); None for the built-in rules."""

    def model_post_init(self, _context: Any) -> None:
        if self.review >= self.auto_merge:
            raise ValueError("review must be lower than auto_merge")

    @field_validator("blocking_rules")
    @classmethod
    def _rules(cls, value: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        from crmhub.dedupe.blocking import BlockingRule  # the match fields live there

        if value is not None:
            if not value:
                raise ValueError("no rules: leave blocking_rules out for the built-in ones")
            for name, fields in value.items():
                try:
                    BlockingRule(name, tuple(fields))
                except ConfigError as exc:
                    raise ValueError(str(exc)) from None
        return value


class SurvivorshipSettings(_Section):
    """``[survivorship]``: which source wins, per field."""

    source_priority: list[str] = Field(default_factory=list)
    default_rule: str = "most_recent"
    fields: dict[str, str] = Field(default_factory=dict)

    @field_validator("default_rule")
    @classmethod
    def _rule(cls, value: str) -> str:
        return _known_rule(value)

    @field_validator("fields")
    @classmethod
    def _rules(cls, value: dict[str, str]) -> dict[str, str]:
        return {field: _known_rule(rule) for field, rule in value.items()}


def _known_rule(rule: str) -> str:
    if rule not in SURVIVORSHIP_RULES:
        raise ValueError(f"unknown rule {rule!r} (known: {', '.join(SURVIVORSHIP_RULES)})")
    return rule


RETENTION_CATEGORIES = ("inactive_customers", "quarantine", "activities", "outbox", "runs")
"""The data categories a ``[retention]`` rule can name, in the order rules are applied:
inactive customers first, so that their activities still count as activity when they are
judged, exactly as in the dry-run report."""

_AGE_UNITS = {"d": ("days", 36_600), "m": ("months", 1_200)}
_AGE_FORM = 'an age like "30d" (days) or "18m" (calendar months)'


def parse_age(text: str) -> tuple[int, str]:
    """``"30d"`` -> ``(30, "days")``, ``"18m"`` -> ``(18, "months")``.

    Raises:
        ValueError: the text is not a whole number of days or months, from one up to a
            hundred years.
    """
    value = text.strip().lower()
    number, unit = value[:-1], value[-1:]
    if unit not in _AGE_UNITS or not number.isdigit() or not number.isascii():
        raise ValueError(f"{text!r} is not {_AGE_FORM}")
    name, limit = _AGE_UNITS[unit]
    amount = int(number)
    if not 1 <= amount <= limit:
        raise ValueError(f"{text!r}: give from 1 to {limit:,} {name}")
    return amount, name


class RetentionSettings(_Section):
    """``[retention]``: how long each category of data is kept, e.g. ``quarantine = "30d"``.

    An age is a whole number of days (``"30d"``) or calendar months (``"18m"``). Only the
    categories named here are ever removed; without the section nothing is.
    """

    quarantine: str | None = None
    """Quarantined rows (raw records, resolved or not), by when they were first quarantined."""
    activities: str | None = None
    """Interactions, by when they occurred."""
    runs: str | None = None
    """Finished sync runs, by when they finished (a run a stream's saved state names stays)."""
    outbox: str | None = None
    """Pushes that are done or failed for good, by their last update."""
    inactive_customers: str | None = None
    """Golden records none of whose source records was seen, and none of whose interactions
    occurred, within the age: removed with everything about them. Interactions count only
    while they are kept: with a shorter ``activities`` age, only that long."""

    @field_validator(*RETENTION_CATEGORIES, mode="before")
    @classmethod
    def _age(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(f"must be {_AGE_FORM}")
        parse_age(value)
        return value.strip().lower()

    def rules(self) -> dict[str, str]:
        """The configured categories and their ages, in the order they are applied."""
        return {
            category: age
            for category in RETENTION_CATEGORIES
            if (age := getattr(self, category)) is not None
        }


class ConnectorEntry(BaseModel):
    """``[connectors.NAME]``: an instance of a connector type with its settings.

    ``settings`` is validated against the connector's own ``Config`` once plugins are loaded.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    type: str
    enabled: bool = True
    push: bool = True
    """Whether golden values are pushed to this instance (when its connector can write)."""
    settings: ConnectorConfig


class HubConfig(BaseModel):
    """The whole configuration."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    path: Path | None = None
    hub: HubSettings = Field(default_factory=HubSettings)
    dedupe: DedupeSettings = Field(default_factory=DedupeSettings)
    survivorship: SurvivorshipSettings = Field(default_factory=SurvivorshipSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    connectors: dict[str, ConnectorEntry] = Field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the config are resolved against."""
        return self.path.parent if self.path else Path.cwd()


def load_config(
    path: str | Path,
    *,
    connector_types: Mapping[str, type[Any]],
    environ: Mapping[str, str] | None = None,
) -> HubConfig:
    """Read and validate ``crmhub.toml``.

    Args:
        path: the config file.
        connector_types: connector classes by type name (``Plugins().connectors()``).
        environ: where ``env:NAME`` values come from (default: ``os.environ``).

    Raises:
        ConfigError: naming the file, the key and the problem.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            "config file not found (create one with `crmhub init`)", path=str(path)
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file: {exc}", path=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=str(path)) from None
    return parse_config(raw, connector_types=connector_types, environ=environ, path=path)


def parse_config(
    raw: Mapping[str, Any],
    *,
    connector_types: Mapping[str, type[Any]],
    environ: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> HubConfig:
    """Validate an already parsed config mapping (see :func:`load_config`)."""
    environ = os.environ if environ is None else environ
    where = str(path) if path else None
    base_dir = path.parent if path else Path.cwd()
    data = _resolve_env(dict(raw), environ, where, ())
    sections = {k: v for k, v in data.items() if k != "connectors"}
    hub_section = sections.get("hub")
    if isinstance(hub_section, dict) and "secret" in hub_section:
        _require_env(hub_section["secret"], "hub.secret", where)
    try:
        config = HubConfig.model_validate({**sections, "path": path})
    except ValidationError as exc:
        raise ConfigError(_describe(exc), path=where) from None
    config.hub.database_url = _resolve_sqlite_path(config.hub.database_url, base_dir)
    connectors = data.get("connectors", {})
    if not isinstance(connectors, dict):
        raise ConfigError("must be a table of connector instances", key="connectors", path=where)
    for name, entry in connectors.items():
        config.connectors[name] = _connector_entry(name, entry, connector_types, base_dir, where)
    return config


def _connector_entry(
    name: str,
    entry: Any,
    connector_types: Mapping[str, type[Any]],
    base_dir: Path,
    where: str | None,
) -> ConnectorEntry:
    key = f"connectors.{name}"
    if not isinstance(entry, dict):
        raise ConfigError("must be a table", key=key, path=where)
    settings = dict(entry)
    type_name = settings.pop("type", name)
    enabled = settings.pop("enabled", True)
    push = settings.pop("push", True)
    if not isinstance(push, bool):
        raise ConfigError("push must be true or false", key=f"{key}.push", path=where)
    connector_class = connector_types.get(type_name)
    if connector_class is None:
        known = ", ".join(sorted(connector_types)) or "none installed"
        raise ConfigError(
            f"unknown connector type {type_name!r} (known: {known})", key=key, path=where
        )
    config_class: type[ConnectorConfig] = connector_class.Config
    _refuse_literal_secrets(config_class, settings, key, where)
    try:
        validated = config_class.model_validate(settings)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, prefix=key), path=where) from None
    _resolve_paths(validated, base_dir)  # mapping refs are resolved by the mapping loader
    return ConnectorEntry(
        name=name, type=type_name, enabled=bool(enabled), push=push, settings=validated
    )


def _resolve_env(
    value: Any, environ: Mapping[str, str], where: str | None, key: tuple[str, ...]
) -> Any:
    if isinstance(value, dict):
        return {k: _resolve_env(v, environ, where, (*key, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env(v, environ, where, key) for v in value]
    if isinstance(value, str) and value.startswith("env:"):
        variable = value[4:]
        if not variable:
            raise ConfigError("`env:` needs a variable name", key=".".join(key), path=where)
        if variable not in environ:
            public = _sandbox_credential(variable)
            if public is not None:
                return _EnvValue(public)
            raise ConfigError(
                f"environment variable {variable} is not set", key=".".join(key), path=where
            )
        return _EnvValue(environ[variable])
    return value


def _sandbox_credential(variable: str) -> str | None:
    """The sandbox systems' credentials are public, fixed values (the demo's config refers
    to them): a shell without them exported still opens the demo hub."""
    if not variable.startswith("CRMHUB_SANDBOX_"):
        return None
    from crmhub.sandbox.world import sandbox_environ

    return sandbox_environ().get(variable)


class _EnvValue(str):
    """A string that came from the environment (so secret fields accept it)."""


def _refuse_literal_secrets(
    config_class: type[BaseModel], settings: dict[str, Any], key: str, where: str | None
) -> None:
    for field_name, field in config_class.model_fields.items():
        if _is_secret(field.annotation) and field_name in settings:
            _require_env(settings[field_name], f"{key}.{field_name}", where)


def _require_env(value: Any, key: str, where: str | None) -> None:
    if not isinstance(value, _EnvValue):
        raise ConfigError(
            'is a secret: give it as "env:VARIABLE_NAME", never in the file', key=key, path=where
        )


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


def _is_path(annotation: Any) -> bool:
    if annotation is Path:
        return True
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and (
        Path in typing.get_args(annotation)
    )


def _resolve_paths(settings: BaseModel, base_dir: Path) -> None:
    for field_name, field in type(settings).model_fields.items():
        value = getattr(settings, field_name)
        if _is_path(field.annotation) and isinstance(value, Path) and not value.is_absolute():
            setattr(settings, field_name, (base_dir / value).resolve())


def _resolve_sqlite_path(url: str, base_dir: Path) -> str:
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return url
    if Path(database).is_absolute():
        return url
    absolute = parsed.set(database=str((base_dir / database).resolve()))
    return absolute.render_as_string(hide_password=False)


def _describe(exc: ValidationError, prefix: str = "") -> str:
    problems = []
    for error in exc.errors():
        loc = ".".join(str(part) for part in error["loc"] if part != "__root__")
        key = ".".join(part for part in (prefix, loc) if part)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
        problems.append(f"[{key}] {message}" if key else message)
    return "; ".join(problems)

"""Every error crmhub raises, grouped by what the caller should do next.

::

    CrmhubError
    ├── ConfigError                 fix the configuration; nothing was done
    ├── StoreError                  the hub database cannot be opened or is at the wrong revision
    ├── PluginError                 a plugin could not be loaded or is malformed
    ├── MappingError                a mapping file is invalid (file, line, what is wrong)
    ├── RecordError                 one record is unusable; quarantine it and go on
    │   └── NormalizationError      one value (email, phone, country, ...) does not parse
    ├── ConnectorError              talking to a connected system failed
    │   ├── FatalError              stop this stream; retrying will not help
    │   │   └── AuthError           credentials are missing or rejected
    │   ├── RetriableError          try again later (rate limits, 5xx, timeouts)
    │   └── SkippableRecordError    this one record cannot be fetched; skip it and go on
    ├── DedupeError                 matching or merging cannot proceed
    └── PrivacyError                a privacy request cannot proceed

Messages name what is wrong and where, and never carry secrets or personal data.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthError",
    "ConfigError",
    "ConnectorError",
    "CrmhubError",
    "DedupeError",
    "FatalError",
    "MappingError",
    "NormalizationError",
    "PluginError",
    "PrivacyError",
    "RecordError",
    "RetriableError",
    "SkippableRecordError",
    "StoreError",
    "WebhookSignatureError",
]


class CrmhubError(Exception):
    """Base class of every crmhub error."""


class ConfigError(CrmhubError):
    """The configuration is wrong; ``key`` names the offending setting when known."""

    def __init__(self, message: str, *, key: str | None = None, path: str | None = None) -> None:
        where = " ".join(part for part in (path and f"{path}:", key and f"[{key}]") if part)
        super().__init__(f"{where} {message}" if where else message)
        self.key = key
        self.path = path


class StoreError(CrmhubError):
    """The hub database cannot be used (unreachable, wrong schema revision, ...)."""


class PluginError(CrmhubError):
    """A plugin failed to load or declares something invalid."""

    def __init__(self, message: str, *, plugin: str | None = None) -> None:
        super().__init__(f"plugin {plugin!r}: {message}" if plugin else message)
        self.plugin = plugin


class MappingError(CrmhubError):
    """A mapping file is invalid. The message names the file, the line and the problem."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        where = f"{file}:{line}" if file and line else (file or "")
        super().__init__(f"{where}: {message}" if where else message)
        self.file = file
        self.line = line
        self.reason = message


class RecordError(CrmhubError):
    """One record cannot be used. The sync quarantines it with ``problems`` and goes on."""

    def __init__(self, problems: list[str], *, record_id: str | None = None) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.record_id = record_id


class NormalizationError(ValueError, CrmhubError):
    """A single value (an email, a phone number, a country, ...) cannot be normalised.

    It is a ``ValueError`` so that pydantic reports it as a validation error of its field.
    """


class ConnectorError(CrmhubError):
    """Talking to a connected system failed."""

    def __init__(
        self,
        message: str,
        *,
        connector: str | None = None,
        record_id: str | None = None,
        response: Any = None,
    ) -> None:
        super().__init__(f"{connector}: {message}" if connector else message)
        self.connector = connector
        self.record_id = record_id
        self.response = response


class FatalError(ConnectorError):
    """Retrying will not help: stop the stream and report."""


class AuthError(FatalError):
    """Credentials are missing, wrong or lack permission."""


class RetriableError(ConnectorError):
    """A transient failure (rate limit, server error, timeout): retry later."""


class SkippableRecordError(ConnectorError):
    """One record cannot be fetched or written; skip it, record why, and go on."""


class WebhookSignatureError(ConnectorError):
    """A webhook delivery's signature is missing, wrong or too old: reject it, store nothing."""


class DedupeError(CrmhubError):
    """Matching, merging or unmerging cannot proceed."""


class PrivacyError(CrmhubError):
    """A privacy request cannot proceed."""

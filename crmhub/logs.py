"""Structured logging: JSON lines when not on a terminal, readable lines when on one.

Log events carry ids and counts, never personal data; as a second line of defence a processor
masks anything that looks like an email address or a phone number, the values of keys that
name personal fields (``email``, ``first_name``, any ``..._name``), and — names having no
shape a pattern could catch — every value registered with :func:`sensitive` while it is in
effect (the privacy desk registers the names of the subject it is working on).
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from collections.abc import Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, TextIO

import structlog

__all__ = ["MASK", "configure_logging", "mask_pii", "mask_text", "sensitive"]

_EMAIL = re.compile(r"[^\s@\"'<>(),;:]+@[^\s@\"'<>(),;:]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"(?<![\w.])\+?\d[\d ().-]{6,}\d(?![\w.])")
_PII_KEYS = frozenset(
    {
        "email", "emails", "phone", "phones", "first_name", "last_name", "full_name", "name",
        "address", "birth_date", "raw", "record", "value",
    }
)  # fmt: skip
_SAFE_KEYS = frozenset({"event", "level", "timestamp", "logger", "run_id", "connector", "stream"})
MASK = "***"

_SENSITIVE: contextvars.ContextVar[tuple[re.Pattern[str], ...]] = contextvars.ContextVar(
    "crmhub_sensitive", default=()
)


@contextmanager
def sensitive(values: Iterable[str]) -> Iterator[None]:
    """Mask these exact values (case-insensitively) in every log line written inside the
    block, in this thread or task, besides what the patterns catch: for names, which have
    no shape of their own."""
    words = sorted({v.strip() for v in values if v and len(v.strip()) >= 2}, key=len, reverse=True)
    pattern = r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b"
    added = (re.compile(pattern, re.IGNORECASE),) if words else ()
    token = _SENSITIVE.set(_SENSITIVE.get() + added)
    try:
        yield
    finally:
        _SENSITIVE.reset(token)


def mask_text(text: str) -> str:
    """``text`` with email addresses, phone numbers and registered values masked."""
    text = _PHONE.sub(MASK, _EMAIL.sub(MASK, text))
    for pattern in _SENSITIVE.get():
        text = pattern.sub(MASK, text)
    return text


def _personal_key(key: str) -> bool:
    return key in _PII_KEYS or (key.endswith("name") and key not in _SAFE_KEYS)


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: MASK if _personal_key(str(k)) else _mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value


def mask_pii(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
    """structlog processor: mask personal data in every field of the event."""
    for key, value in list(event.items()):
        if key in _SAFE_KEYS and key != "event":
            continue
        event[key] = MASK if _personal_key(key) else _mask(value)
    return event


def configure_logging(
    level: str = "INFO", *, stream: TextIO | None = None, json: bool | None = None
) -> None:
    """Configure structlog for the process.

    Args:
        level: the lowest level written.
        stream: where to write (default: standard error).
        json: force JSON (True) or console (False) output; by default JSON unless ``stream``
            is a terminal.
    """
    stream = stream or sys.stderr
    if json is None:
        json = not stream.isatty()
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        mask_pii,
        structlog.processors.JSONRenderer()
        if json
        # Plain tracebacks: rich ones print local variables, which can hold records.
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        ),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )

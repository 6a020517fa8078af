"""Rows as plain dicts, for callers that serialise them (JSON output, the web)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Row

__all__ = ["as_dict"]


def as_dict(row: Row[Any]) -> dict[str, Any]:
    """A row as a dict with plain ``str`` keys (SQLAlchemy's own keys are a ``str``
    subclass that some serialisers refuse)."""
    return {str(key): value for key, value in row._mapping.items()}

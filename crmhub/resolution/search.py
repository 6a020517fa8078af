"""The text a steward finds a customer by: the golden names, company, emails, phones and
address, folded (case, accents, spacing) into one short column, ``customers.search_text``.

It is written with every golden record (:func:`search_text`) and searched for the folded
query (:func:`fold`) as a substring: a scan of a column a few dozen bytes wide instead of the golden
JSON, which also held field names and rules that every query would have matched ("value",
"most_recent"). Being personal data, it goes with the golden record: an erasure deletes or
blanks both.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_CHARS", "fold", "search_text"]

_NAME_FIELDS = ("full_name", "company")
_LIST_FIELDS = ("emails", "phones")
_ADDRESS_PARTS = ("line1", "city", "postal_code")
_SEPARATOR = "\n"  # never inside a query (queries are one stripped line)

MAX_CHARS = 600
"""The longest search text kept (names first, so they are never the part cut off): four
bytes a character at most, within any B-tree index entry."""


def fold(text: str) -> str:
    """``text`` as it is compared: accents dropped, case folded, spacing collapsed."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(bare.casefold().split())


def search_text(data: Mapping[str, Any]) -> str | None:
    """The folded search text of golden values ``{field: {"value": ...}}`` (None if they hold
    nothing to find)."""

    def value(name: str) -> Any:
        entry = data.get(name)
        return entry.get("value") if isinstance(entry, Mapping) else None

    parts: list[str] = []
    given = " ".join(str(v) for v in (value("first_name"), value("last_name")) if v)
    for text in (given, *(value(name) for name in _NAME_FIELDS)):
        if isinstance(text, str) and text:
            parts.append(text)
    for name in _LIST_FIELDS:
        items = value(name)
        if isinstance(items, list):
            parts.extend(str(item) for item in items if item)
    address = value("address")
    if isinstance(address, Mapping):
        parts.extend(str(address[k]) for k in _ADDRESS_PARTS if address.get(k))
    folded = [fold(part) for part in parts]
    unique = list(dict.fromkeys(part for part in folded if part))
    # Bounded so that it always fits a B-tree index entry (PostgreSQL: 2,704 bytes).
    return _SEPARATOR.join(unique)[:MAX_CHARS] or None

"""The text a steward finds a customer by: the golden names, company, emails, phones and
address, folded (case, accents, spacing) into one short column, ``customers.search_text``.

It is written with every golden record (:func:`search_text`) and searched for the folded
query (:func:`fold`) as a substring, read from an index on ``(search_text, id)``: a few dozen
bytes a customer instead of the golden JSON, which also held the field names and rules that
every query would have matched ("value", "most_recent"). Being personal data, it goes with
the golden record: an erasure deletes or blanks both, and a customer merged away has none.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_CHARS", "fold", "search_text"]

_NAME_FIELDS = ("full_name", "company")
_LIST_FIELDS = ("emails", "phones")
_ADDRESS_PARTS = ("line1", "city", "postal_code")
_FIELDS = ("first_name", "last_name", *_NAME_FIELDS, *_LIST_FIELDS, "address")
_SEPARATOR = "\n"  # never inside a query (queries are one stripped line)

_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
"""The combining marks that decomposed accented letters leave (the Unicode blocks of them)."""

MAX_CHARS = 600
"""The longest search text kept (names first, so they are never the part cut off): four
bytes a character at most, within any B-tree index entry."""


def fold(text: str) -> str:
    """``text`` as it is compared: accents dropped, case folded, spacing collapsed."""
    return " ".join(_bare(text).casefold().split())


def _bare(text: str) -> str:
    """``text`` without accents (compatibility forms decomposed too)."""
    if text.isascii():  # nearly always, and then there is nothing to drop
        return text
    return _COMBINING.sub("", unicodedata.normalize("NFKD", text))


def search_text(data: Mapping[str, Any]) -> str | None:
    """The folded search text of golden values ``{field: {"value": ...}}`` (None if they hold
    nothing to find). Written with every golden record, so kept to plain loops."""
    values = {
        name: entry.get("value") for name in _FIELDS if isinstance(entry := data.get(name), dict)
    }
    first, last = values.get("first_name"), values.get("last_name")
    parts = [f"{first or ''} {last or ''}"] if first or last else []
    parts += [text for name in _NAME_FIELDS if isinstance(text := values.get(name), str)]
    for name in _LIST_FIELDS:
        items = values.get(name)
        if isinstance(items, list):
            parts += [str(item) for item in items if item]
    address = values.get("address")
    if isinstance(address, dict):
        parts += [str(part) for key in _ADDRESS_PARTS if (part := address.get(key))]
    # Folded in one pass over the whole text, then spacing collapsed line by line.
    lines = _bare(_SEPARATOR.join(parts)).casefold().split(_SEPARATOR)
    unique = dict.fromkeys(folded for line in lines if (folded := " ".join(line.split())))
    # Bounded so that it always fits a B-tree index entry (PostgreSQL: 2,704 bytes).
    return _SEPARATOR.join(unique)[:MAX_CHARS] or None

"""Reading the hub's person records for matching, and marking them matched.

A record waits for matching while the content hash it was last matched with differs from its
current one (new or changed), or while it is deleted in its source but not yet settled as
such. Settling writes :data:`DELETED` as a deleted record's matched hash, so a record that
comes back to life is matched again. A partial index holds exactly the waiting records
(:data:`~crmhub.store.schema.PENDING_MATCH`), so finding them never scans the hub.

Records are read as the JSON text they are stored as, and matching reads them without
validating them again (:func:`stored_person`): every record was validated by the canonical
model on its way in, and validating a million records again would cost more than matching
them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

import orjson
from pydantic import ValidationError
from sqlalchemy import Text, bindparam, func, literal, select, text, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.engine import Connection

from crmhub.dedupe.survive import Member
from crmhub.model import Person
from crmhub.resolution.bulk import indexes_rebuilt, update_rows
from crmhub.store.dialect import in_chunks
from crmhub.store.schema import PENDING_MATCH, source_records

__all__ = [
    "DELETED",
    "HubRecord",
    "count_live",
    "count_pending",
    "iter_records",
    "load_records",
    "mark_matched",
    "pending_ids",
    "persons",
    "read_people",
    "stored_person",
]

DELETED = "deleted"
"""The matched hash of a record settled as deleted in its source."""

_t = source_records.c
# The partial index's own condition, as literal SQL: a backend uses a partial index only for
# a query whose condition it can prove implies the index's, which an identical one does.
_PENDING = text(PENDING_MATCH)


@dataclass(frozen=True, slots=True)
class HubRecord:
    """One person source record, as matching and survivorship need it.

    The canonical record is kept as its stored JSON text and parsed when asked for
    (:attr:`data`): text is a third of the memory of the parsed form, which matters when a
    full pass holds every record of the hub.
    """

    id: int
    connector: str
    raw: str
    updated_at: datetime | None
    customer_id: str | None
    content_hash: str
    deleted: bool
    matched_hash: str | None = None

    @property
    def data(self) -> dict[str, Any]:
        """The canonical record as stored (parsed again on every access)."""
        parsed: dict[str, Any] = orjson.loads(self.raw)
        return parsed

    def member(self) -> Member:
        """The record as a member of a golden record."""
        return Member(self.id, self.connector, self.data, self.updated_at)

    @property
    def matched_as(self) -> str:
        """The matched hash settling gives this record."""
        return DELETED if self.deleted else self.content_hash


_COLUMNS = (
    _t.id,
    _t.connector,
    # Text, parsed by orjson when needed: the JSON type would parse every row on the way
    # out (PostgreSQL's JSONB comes back as its text form, which parses the same).
    sql_cast(_t.data, Text),
    _t.source_updated_at,
    _t.customer_id,
    _t.content_hash,
    _t.deleted_at.is_not(None),
    _t.matched_hash,
)


def _records(rows: Iterable[Any]) -> Iterator[HubRecord]:
    # One str object per connector name instead of one per row.
    connectors: dict[str, str] = {}
    for rid, connector, raw, updated_at, customer_id, content_hash, deleted, matched in rows:
        yield HubRecord(
            rid,
            connectors.setdefault(connector, connector),
            raw,
            updated_at,
            customer_id,
            content_hash,
            bool(deleted),
            matched,
        )


def iter_records(conn: Connection, batch: int = 20_000) -> Iterator[HubRecord]:
    """Every person record, in ascending id order, streamed ``batch`` rows at a time."""
    # On the statement: Connection.execution_options() would stream every later statement.
    query = select(*_COLUMNS).order_by(_t.id).execution_options(yield_per=batch)
    result = conn.execute(query)
    for partition in result.partitions():
        yield from _records(partition)


# Built once: a statement built per call costs more than SQLite takes to run it.
_BY_IDS = select(*_COLUMNS).where(_t.id.in_(bindparam("ids", expanding=True)))


def load_records(conn: Connection, ids: Iterable[int] | None = None) -> dict[int, HubRecord]:
    """The records with these ids (every person record when None), by id."""
    if ids is None:
        return {record.id: record for record in iter_records(conn)}
    found: dict[int, HubRecord] = {}
    for chunk in in_chunks(sorted(set(ids))):
        for record in _records(conn.execute(_BY_IDS, {"ids": chunk})):
            found[record.id] = record
    return found


_PENDING_IDS = select(_t.id).where(_PENDING).order_by(_t.id)
_SOME_PENDING_IDS = _PENDING_IDS.limit(bindparam("limit"))
_COUNT_PENDING = select(func.count()).select_from(source_records).where(_PENDING)
_COUNT_LIVE = select(func.count()).select_from(source_records).where(_t.deleted_at.is_(None))
_COUNT_SOME_LIVE = select(func.count()).select_from(
    select(literal(1)).where(_t.deleted_at.is_(None)).limit(bindparam("limit")).subquery()
)


def pending_ids(conn: Connection, limit: int | None = None) -> list[int]:
    """Ids of records waiting for matching, oldest first."""
    if limit is None:
        return list(conn.execute(_PENDING_IDS).scalars())
    return list(conn.execute(_SOME_PENDING_IDS, {"limit": limit}).scalars())


def count_pending(conn: Connection) -> int:
    """How many records wait for matching."""
    return int(conn.execute(_COUNT_PENDING).scalar_one())


def count_live(conn: Connection, at_most: int | None = None) -> int:
    """How many person records are not deleted; counting stops at ``at_most`` (a caller that
    only compares the count with a threshold needs no more, and a full count reads every
    record of the hub)."""
    if at_most is None:
        return int(conn.execute(_COUNT_LIVE).scalar_one())
    return int(conn.execute(_COUNT_SOME_LIVE, {"limit": at_most}).scalar_one())


# ---------------------------------------------------------------------- matching view


# What matching reads of a person and of its address (see crmhub.dedupe.normalize); a test
# holds the frames built from these equal to those built from validated models.
_MATCH_FIELDS = (
    "first_name", "last_name", "full_name", "company", "birth_date", "address", "emails",
    "phones", "identifiers",
)  # fmt: skip
_ADDRESS_FIELDS = ("postal_code", "city", "country", "line1")
_TEXT_FIELDS = ("first_name", "last_name", "full_name", "company", "title")
# Type checks as set inclusions over map(type, ...): one C loop per check, not a Python one
# (they run for every record of a full pass).
_ALL_TEXT = frozenset({str}).issuperset
_ALL_TEXT_OR_NONE = frozenset({str, type(None)}).issuperset


class _Fields(dict[str, Any]):
    """The fields matching reads; any other is an error, not a silent default (a reader of a
    new field must be taught here first, and the equivalence test says so)."""

    __slots__ = ()

    def __missing__(self, key: str) -> Any:
        raise KeyError(f"{key!r} is not kept for matching")


class _StoredAddress:
    """An address as matching reads it, answering like :class:`Address` (its fields in
    ``__dict__``), held as a tuple of the parts matching reads."""

    __slots__ = ("_values",)

    def __init__(self, values: tuple[Any, ...]) -> None:
        self._values = values

    @property
    def __dict__(self) -> _Fields:  # type: ignore[override]
        return _Fields(zip(_ADDRESS_FIELDS, self._values, strict=True))

    def __getattr__(self, name: str) -> Any:
        return _attribute(self, name)


class _StoredPerson:
    """A person as matching reads it, answering like :class:`Person` (its fields in
    ``__dict__``: matching reads them there), held as a tuple of the fields matching reads,
    each as the validated model holds it (birth date a date, a field the stored JSON leaves
    out its default). A mapping per record would take three times the memory, which a full
    pass holds for every record of the hub at once."""

    __slots__ = ("_values",)

    def __init__(self, values: tuple[Any, ...]) -> None:
        self._values = values

    @property
    def __dict__(self) -> _Fields:  # type: ignore[override]
        return _Fields(zip(_MATCH_FIELDS, self._values, strict=True))

    def __getattr__(self, name: str) -> Any:
        return _attribute(self, name)


def _attribute(holder: _StoredPerson | _StoredAddress, name: str) -> Any:
    try:
        return holder.__dict__[name]
    except KeyError:
        raise AttributeError(name) from None


def _as_stored(data: dict[str, Any], strings: dict[str, str]) -> _StoredPerson | None:
    """``data`` as a :class:`_StoredPerson`, or None when it is not shaped as validated
    records are; ``strings`` interns repeated values. (Runs for every record of a full pass:
    written for speed, checks as C loops, nothing called per field.)"""
    get = data.get
    if not _ALL_TEXT_OR_NONE(map(type, map(get, _TEXT_FIELDS))):
        return None
    # Left out of the stored JSON: the model's defaults (this version always stores them).
    emails = get("emails", _MISSING)
    emails = [] if emails is _MISSING else emails
    phones = get("phones", _MISSING)
    phones = [] if phones is _MISSING else phones
    identifiers = get("identifiers", _MISSING)
    identifiers = {} if identifiers is _MISSING else identifiers
    if (
        type(emails) is not list
        or type(phones) is not list
        or type(identifiers) is not dict
        or not _ALL_TEXT(map(type, emails))
        or not _ALL_TEXT(map(type, phones))
        or not _ALL_TEXT(map(type, identifiers.values()))
    ):
        return None
    birth = get("birth_date")
    if birth is not None:
        if type(birth) is not str:
            return None
        try:
            birth = date.fromisoformat(birth)
        except ValueError:
            return None
    address = get("address")
    if address is not None:
        if type(address) is not dict or not _ALL_TEXT_OR_NONE(map(type, address.values())):
            return None
        if any(address.values()):
            part = address.get
            postcode, city, country = part("postal_code"), part("city"), part("country")
            address = _StoredAddress(
                (
                    postcode if postcode is None else strings.setdefault(postcode, postcode),
                    city if city is None else strings.setdefault(city, city),
                    country if country is None else strings.setdefault(country, country),
                    part("line1"),
                )
            )
        else:
            address = None  # as the model does: an address with no part known is no address
    first, last, company = get("first_name"), get("last_name"), get("company")
    return _StoredPerson(
        (
            first if first is None else strings.setdefault(first, first),
            last if last is None else strings.setdefault(last, last),
            get("full_name"),
            company if company is None else strings.setdefault(company, company),
            birth,
            address,
            emails,
            phones,
            identifiers,
        )
    )


_MISSING: Any = object()


def stored_person(raw: str | bytes, strings: dict[str, str] | None = None) -> Person | None:
    """A stored record as matching reads it, or None if it cannot be matched.

    Stored records were validated by :class:`Person` on their way in, so they are read as
    they are: the fields matching uses (names, company, emails, phones, identifiers, birth
    date, address) answer as on a validated model, without its cost. A record not shaped as
    validated records are (stored by an older version, say) is validated again, and left out
    of matching if that fails, rather than stopping it.

    Args:
        raw: the stored JSON.
        strings: a table to share repeated values (names, places) through, across the
            records read together.
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict:
        return None
    person = _as_stored(data, {} if strings is None else strings)
    if person is not None:
        return cast(Person, person)
    try:
        return Person.model_validate(orjson.loads(raw))
    except (ValidationError, ValueError):
        return None


_LIVE_DATA = (
    select(_t.id, sql_cast(_t.data, Text))
    .where(_t.deleted_at.is_(None))
    .order_by(_t.id)
    .execution_options(yield_per=20_000)
)


def read_people(conn: Connection) -> list[tuple[int, Person]]:
    """Every live record as matching reads it (:func:`stored_person`), ascending ids; records
    that cannot be matched are left out. Only what matching needs is read and kept."""
    people: list[tuple[int, Person]] = []
    strings: dict[str, str] = {}
    for partition in conn.execute(_LIVE_DATA).partitions():
        for rid, raw in partition:
            person = stored_person(raw, strings)
            if person is not None:
                people.append((rid, person))
    return people


def persons(records: Sequence[HubRecord]) -> list[tuple[int, Person]]:
    """``(id, person)`` for live records, in the given order, as matching reads them
    (:func:`stored_person`); records that cannot be matched are left out."""
    out: list[tuple[int, Person]] = []
    strings: dict[str, str] = {}
    for record in records:
        if record.deleted:
            continue
        person = stored_person(record.raw, strings)
        if person is not None:
            out.append((record.id, person))
    return out


def mark_matched(
    conn: Connection, records: Iterable[HubRecord], customer_of: dict[int, str | None]
) -> int:
    """Point records at their customers and remember the hash they were matched with; only
    records where either changes are written. Returns how many were."""
    rows = [
        (customer_of.get(record.id), record.matched_as, record.id)
        for record in records
        if record.customer_id != customer_of.get(record.id)
        or record.matched_hash != record.matched_as
    ]
    if len(rows) < 200:  # a step's few records: one statement, as cheap as it gets
        if rows:
            conn.execute(
                update(source_records)
                .where(_t.id == bindparam("rid"))
                .values(customer_id=bindparam("customer"), matched_hash=bindparam("matched")),
                [{"customer": c, "matched": m, "rid": rid} for c, m, rid in rows],
            )
        return len(rows)
    with indexes_rebuilt(conn, source_records, len(rows)):
        return update_rows(conn, source_records, ("customer_id", "matched_hash"), "id", rows)

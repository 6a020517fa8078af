"""Seeded synthetic people spread over several sources, with ground truth, for record linkage.

Every real person gets one or more records in different sources (a CRM, a shop, a newsletter
list, billing, support), each rendered the way that kind of system would hold it: some fields
missing, names typed differently, another email address, a phone in another format, an old
address. ``person_key`` on every row is the true person id, so precision and recall of a
dedupe run can be measured exactly. Two traps that make linkage hard on purpose:

- households: relatives share surname, address and often a landline, but are different people;
- common names: different people with exactly the same full name ("John Smith").

Rows use the flat format of ``mappings/people_file.yaml`` and reuse the name, street, city,
company and phone tables of :mod:`crmhub.sampledata`. Generation runs in chunks of people with a
:class:`random.Random` seeded from ``(seed, chunk start)``, so output depends only on the
arguments and a million people never sit in memory at once.
"""

from __future__ import annotations

import math
import random
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, TypeVar

import orjson

from crmhub.sampledata import (
    CITIES,
    COMPANY_STEMS,
    COUNTRIES,
    FIRST_NAMES,
    FREE_MAIL,
    JOB_TITLES,
    LAST_NAMES,
    NICKNAMES,
    STREETS,
)

__all__ = ["COMMON_NAMES", "WorldOptions", "iter_world", "true_pairs", "write_world"]

_CHUNK = 5_000  # people per chunk: rows of one chunk are shuffled together
_START = datetime(2023, 1, 1)  # updated_at spreads over two years from here
_TWO_YEARS = 730 * 86_400
_TODAY = date(2025, 1, 1)  # ages are relative to this day, not the clock: output is seeded only

COMMON_NAMES: tuple[tuple[str, str, str], ...] = (
    ("John", "Smith", "GB"), ("James", "Smith", "US"), ("David", "Jones", "GB"),
    ("Michael", "Brown", "US"), ("Sarah", "Wilson", "GB"), ("Emily", "Taylor", "GB"),
    ("Mohammed", "Ali", "GB"), ("Thomas", "Müller", "DE"), ("Anna", "Schmidt", "DE"),
    ("María", "García", "ES"), ("José", "García", "ES"), ("Giuseppe", "Rossi", "IT"),
    ("Marco", "Rossi", "IT"), ("Seán", "Murphy", "IE"), ("Daan", "de Jong", "NL"),
    ("Camille", "Dubois", "FR"),
)  # fmt: skip
"""(first, last, country) of the pool very common full names are drawn from."""


@dataclass(frozen=True)
class WorldOptions:
    """Knobs for :func:`iter_world`; equal options and people count give identical output."""

    seed: int = 7
    sources: tuple[str, ...] = ("crm", "shop", "newsletter", "billing", "support")
    records_per_person: float = 1.6  # mean records per person: 1 + Poisson(mean - 1)
    household_share: float = 0.25  # share of people living with family (2 to 4 members)
    common_name_share: float = 0.15  # share of people named from COMMON_NAMES

    def __post_init__(self) -> None:
        if not self.sources or len(set(self.sources)) != len(self.sources):
            raise ValueError("sources must be non-empty and unique")
        if self.records_per_person < 1.0:
            raise ValueError("records_per_person must be >= 1")
        for name in ("household_share", "common_name_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")


class _Profile(NamedTuple):
    """How one kind of source holds people: probability each field is filled."""

    weight: float  # how likely a person is to appear in this source
    last: float
    email: float
    phone: float
    company: float
    job: float
    address: float
    country: float
    birth: float
    newsletter: float
    work_mail: float  # chance to use the work address when the person has one


_PROFILES: dict[str, _Profile] = {
    "crm": _Profile(0.30, 1.0, 0.9, 0.75, 0.9, 0.7, 0.7, 0.9, 0.4, 0.8, 0.8),
    "shop": _Profile(0.25, 0.98, 1.0, 0.6, 0.05, 0.0, 0.95, 0.95, 0.3, 0.6, 0.1),
    # Sign-up forms ask for an email and a first name, little else.
    "newsletter": _Profile(0.20, 0.3, 1.0, 0.0, 0.0, 0.0, 0.0, 0.3, 0.0, 1.0, 0.2),
    "billing": _Profile(0.10, 1.0, 0.8, 0.5, 0.95, 0.2, 1.0, 1.0, 0.1, 0.0, 0.7),
    "support": _Profile(0.15, 0.9, 1.0, 0.8, 0.3, 0.0, 0.0, 0.2, 0.0, 0.0, 0.4),
}
_FULL = _PROFILES["crm"]  # sources with other names are held like a CRM

_SLOTS = {"#": "0123456789", "%": "123456789", "@": "ABDEFGHJLNPQRSTUWXYZ",
          "&": "ACDEFHKNPRTVWXY0123456789"}  # fmt: skip
_NUMBER_LAST = {"DE", "NL", "ES", "IT"}  # "Hauptstraße 12", not "12 High Street"
_CITIES_OF: dict[str, list[int]] = {cc: [] for cc in COUNTRIES}
for _i, _city in enumerate(CITIES):
    _CITIES_OF[_city[1]].append(_i)
_SUFFIX_FORMS: dict[str, tuple[str, ...]] = {
    "Ltd": ("Ltd", "Ltd.", "Limited", "LTD"), "Ltd.": ("Ltd.", "Ltd", "Limited"),
    "Limited": ("Limited", "Ltd"), "PLC": ("PLC", "plc"), "Inc.": ("Inc.", "Inc", "Incorporated"),
    "Corp.": ("Corp.", "Corporation"), "GmbH": ("GmbH", "GMBH"), "S.L.": ("S.L.", "SL"),
    "S.A.": ("S.A.", "SA"), "B.V.": ("B.V.", "BV"), "S.r.l.": ("S.r.l.", "Srl", "SRL"),
    "S.p.A.": ("S.p.A.", "SpA"),
}  # fmt: skip
_STREET_ABBREVIATIONS = (("Street", "St"), ("Road", "Rd"), ("Avenue", "Ave"), ("Lane", "Ln"),
                         ("Drive", "Dr"), ("straße", "str."), ("Boulevard", "Blvd"))  # fmt: skip
_MAIL_DOMAINS = ("gmail.com", *FREE_MAIL)  # gmail twice: its dot and +tag aliases matter
_KEY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEAR = {row[i]: row[max(i - 1, 0) : i] + row[i + 1 : i + 2] for row in _KEY_ROWS
         for i in range(len(row))}  # fmt: skip

_T = TypeVar("_T")
_Phone = tuple[str, int]  # national significant number, digits of its area (first) group
_Address = tuple[str, str, str]  # street line, postcode, city


@dataclass(slots=True)
class _Person:
    """One real person: the truth every record of theirs is rendered from."""

    key: str
    first: str
    last: str
    cc: str
    city: int  # index into CITIES
    address: _Address
    old_address: _Address | None  # where they lived before; one source may still hold it
    mobile: _Phone | None
    landline: _Phone | None
    personal: str  # personal email, "" if none
    second: str  # another address (work, or an older personal one), "" if none
    second_is_work: bool
    company: tuple[str, str] | None  # (stem, legal form)
    job: str
    birth: date
    newsletter: str


def _pick(r: random.Random, seq: Sequence[_T]) -> _T:
    """``r.choice`` minus its rejection sampling: ~3x faster, bias (n / 2**53) negligible."""
    return seq[int(r.random() * len(seq))]


def _below(r: random.Random, n: int) -> int:
    return int(r.random() * n)


def _between(r: random.Random, lo: int, hi: int) -> int:
    return lo + int(r.random() * (hi - lo + 1))


@lru_cache(maxsize=4096)
def _ascii(text: str) -> str:
    """Lower-case ASCII letters only, for email local parts: "O'Brien" -> "obrien"."""
    raw = unicodedata.normalize("NFKD", text.replace("ß", "ss")).encode("ascii", "ignore")
    return "".join(ch for ch in raw.decode().lower() if "a" <= ch <= "z")


@lru_cache(maxsize=4096)
def _strip_accents(text: str) -> str:
    """Drop diacritics, keep case: "José" -> "Jose" (forms without accent keys do this)."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _address(r: random.Random, cc: str, city: int | None = None) -> tuple[_Address, int]:
    """A street line, postcode and city in ``cc`` (or in the given city), plus the city index."""
    city = _pick(r, _CITIES_OF[cc]) if city is None else city
    name, _, pattern = CITIES[city][:3]
    street, number = _pick(r, STREETS[cc]), _between(r, 1, 180)
    if cc in _NUMBER_LAST:
        line = f"{street}{', ' if cc in ('ES', 'IT') else ' '}{number}"
    else:
        line = f"{number} {street}"
    postcode = "".join(_pick(r, _SLOTS[ch]) if ch in _SLOTS else ch for ch in pattern)
    return (line, postcode, name), city


def _landline(r: random.Random, city: int) -> _Phone:
    """A fixed-line number in the city's area, from a range that validates."""
    _, cc, _, prefix, digits, area = CITIES[city]
    if cc == "US":  # exchange then line; N11 and 555 exchanges are not assigned
        exchange = _between(r, 200, 998)
        exchange += exchange == 555 or exchange % 100 == 11
        return f"{prefix}{exchange}{_below(r, 10_000):04d}", 3
    return f"{prefix}{_below(r, 10**digits):0{digits}d}", area


def _mobile(r: random.Random, cc: str, city: int) -> _Phone:
    """A mobile number; the US has one numbering plan for all lines."""
    info = COUNTRIES[cc]
    if not info.mobile:
        return _landline(r, city)
    digits = info.mobile_digits
    return f"{_pick(r, info.mobile)}{_below(r, 10**digits):0{digits}d}", info.mobile_area


def _phone_text(cc: str, phone: _Phone, style: int) -> str:
    """Render a number: 0 national grouped, 1 international grouped, 2 E.164, 3 national."""
    nsn, area = phone
    info = COUNTRIES[cc]
    if cc == "US":
        a, b, c = nsn[:3], nsn[3:6], nsn[6:]
        return (f"({a}) {b}-{c}", f"+1 {a}-{b}-{c}", f"+1{nsn}", f"{a}.{b}.{c}")[style]
    if style == 2:
        return f"+{info.calling_code}{nsn}"
    if style == 3:
        return f"{info.trunk}{nsn}"
    head, tail = nsn[:area], nsn[area:]
    if len(tail) > 5:
        cut = 4 if len(tail) >= 8 else 3
        tail = f"{tail[:cut]} {tail[cut:]}"
    return f"{info.trunk}{head} {tail}" if style == 0 else f"+{info.calling_code} {head} {tail}"


def _email(r: random.Random, first: str, last: str, n: int, domain: str) -> str:
    """An address whose local part ends in the person number: distinct people never share
    one, as real mailboxes are personal (shared family addresses are not modelled)."""
    f, g = _ascii(first) or "x", _ascii(last) or "x"
    local = _pick(r, (f"{f}.{g}", f"{f[0]}{g}", f"{f}{g}", f"{f}_{g}", f"{g}.{f}", f))
    return f"{local}{n}@{domain}"


def _head_common_share(opts: WorldOptions) -> float:
    """Relatives inherit only the surname, so heads draw common names more often to make
    ``common_name_share`` hold over all people (a family's mean size is 2.7)."""
    relatives = opts.household_share * (1.0 - 1.0 / 2.7)
    return min(1.0, opts.common_name_share / (1.0 - relatives))


def _new_person(
    r: random.Random, n: int, opts: WorldOptions, head: _Person | None, taken: set[str]
) -> _Person:
    """Person number ``n``: a fresh one, or a relative of ``head`` named none of ``taken``."""
    if head is None:
        if r.random() < _head_common_share(opts):
            first, last, cc = _pick(r, COMMON_NAMES)
            address, city = _address(r, cc)
        else:
            first, last = _pick(r, FIRST_NAMES), _pick(r, LAST_NAMES)
            address, city = _address(r, CITIES[_below(r, len(CITIES))][1])
            cc = CITIES[city][1]
        old = _address(r, cc, city if r.random() < 0.5 else None)[0] if r.random() < 0.1 else None
        landline = _landline(r, city) if r.random() < 0.35 else None
        birth = _TODAY - timedelta(days=_between(r, 18 * 365, 85 * 365))
    else:
        first, last, cc, city, address = head.first, head.last, head.cc, head.city, head.address
        while first in taken:
            first = _pick(r, FIRST_NAMES)
        old = head.old_address  # families move together
        landline = head.landline if r.random() < 0.7 else None
        gap = (
            _between(r, -6 * 365, 6 * 365) if r.random() < 0.5 else _between(r, 20 * 365, 35 * 365)
        )
        birth, adult = head.birth + timedelta(days=gap or 1), _TODAY - timedelta(days=16 * 365)
        if birth > adult:  # records are of adults; spread, not pile up on one cut-off day
            birth = adult - timedelta(days=_below(r, 5 * 365))
        birth += timedelta(days=birth == head.birth)  # never the head's exact birth date
    mobile = _mobile(r, cc, city) if r.random() < 0.8 else None
    domain = _pick(r, _MAIL_DOMAINS) if r.random() < 0.7 else _pick(r, COUNTRIES[cc].mail)
    personal = _email(r, first, last, n, domain) if r.random() < 0.95 else ""
    company = None
    if r.random() < 0.65:
        company = (_pick(r, COMPANY_STEMS), _pick(r, COUNTRIES[cc].suffixes))
    second, second_is_work = "", False
    if r.random() < 0.3 or not personal:
        if company is not None and r.random() < 0.75:
            second_is_work = True
            second = _email(r, first, last, n, f"{_ascii(company[0])}.{COUNTRIES[cc].tld}")
        else:
            second = _email(r, first, last, n, _pick(r, COUNTRIES[cc].mail))
    job = _pick(r, JOB_TITLES) if company is not None else ""
    news = _pick(r, ("yes", "no", ""))
    return _Person(f"P{n:08d}", first, last, cc, city, address, old, mobile, landline,
                   personal, second, second_is_work, company, job, birth, news)  # fmt: skip


def _typo(r: random.Random, word: str) -> str:
    """One edit inside the word: swap neighbours, drop, double, or hit a neighbouring key."""
    if len(word) < 3:
        return word
    i, kind = 1 + _below(r, len(word) - 2), _below(r, 4)
    near = _NEAR.get(word[i].lower(), "") if kind == 3 else ""
    if kind == 1:
        return word[:i] + word[i + 1 :]
    if kind == 2:
        return word[:i] + word[i] + word[i:]
    if near:
        return word[:i] + _pick(r, near) + word[i + 1 :]
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def _email_text(r: random.Random, email: str, source: str) -> str:
    """An address as one source stored it; gmail aliases reach the same mailbox."""
    local, _, domain = email.partition("@")
    roll = r.random()
    if domain == "gmail.com" and roll < 0.35:
        if roll < 0.12 and "." in local:
            return f"{local.replace('.', '')}@{domain}"
        if roll < 0.24:
            return f"{local}+{source}@{domain}"
        return f"{local}@googlemail.com"
    if roll < 0.05:
        return f"{local.capitalize()}@{domain}"
    return email


def _render(r: random.Random, p: _Person, source: str, old: bool, stamp: str) -> dict[str, str]:
    """One record of ``p`` as ``source`` holds it (the id is set later)."""
    prof = _PROFILES.get(source, _FULL)
    first, last, roll = p.first, p.last, r.random()
    if roll < 0.03:
        first = first[0] + ("." if roll < 0.015 else "")
    elif roll < 0.13 and first in NICKNAMES:
        first = _pick(r, NICKNAMES[first])
    elif roll < 0.17:
        first = _typo(r, first)
    elif roll < 0.22:
        first = _strip_accents(first)
    roll = r.random()
    if roll < 0.03:
        last = _typo(r, last)
    elif roll < 0.06:
        last = last.upper()
    elif roll < 0.11:
        last = _strip_accents(last)
    if r.random() >= prof.last:
        last = ""
    elif r.random() < 0.02:  # the form's fields were filled the wrong way round
        first, last = last, first

    email = p.personal or p.second
    if p.second and r.random() < (prof.work_mail if p.second_is_work else 0.5):
        email = p.second
    email = _email_text(r, email, source) if email and r.random() < prof.email else ""

    has_country = r.random() < prof.country
    phone = ""
    number = p.mobile if p.mobile and (not p.landline or r.random() < 0.7) else p.landline
    if number and r.random() < prof.phone:
        style = r.choices((0, 1, 2, 3), (0.4, 0.3, 0.15, 0.15))[0]
        if not has_country and p.cc != "GB" and style in (0, 3):
            style = 1  # national digits without a country would be read as British
        phone = _phone_text(p.cc, number, style)

    company = ""
    if p.company and r.random() < prof.company:
        stem, form = p.company
        roll = r.random()
        company = stem if roll < 0.1 else f"{stem} {_pick(r, _SUFFIX_FORMS.get(form, (form,)))}"
        company = company.upper() if roll > 0.95 else company
    job = p.job if company and r.random() < prof.job else ""

    street = postcode = city = ""
    if r.random() < prof.address:
        street, postcode, city = p.old_address if old and p.old_address else p.address
        if r.random() < 0.15:
            for word, short in _STREET_ABBREVIATIONS:
                street = street.replace(word, short)
        if r.random() < 0.1:
            postcode = postcode.replace(" ", "") if " " in postcode else postcode.lower()
    country = ""
    if has_country:
        roll, info = r.random(), COUNTRIES[p.cc]
        country = p.cc if roll < 0.85 else _pick(r, info.names) if roll < 0.95 else info.alpha3

    birth = ""
    if r.random() < prof.birth:
        y, m, d = p.birth.year, p.birth.month, p.birth.day
        if d <= 12 and d != m and r.random() < 0.04:
            m, d = d, m  # day and month swapped on entry: still a valid date
        birth = f"{y:04d}-{m:02d}-{d:02d}"
    news = p.newsletter if r.random() < prof.newsletter else ""
    if source == "newsletter":
        news = "yes" if r.random() < 0.9 else "no"
    return {
        "id": "", "first_name": first, "last_name": last, "email": email, "phone": phone,
        "company": company, "job_title": job, "street": street, "city": city,
        "postcode": postcode, "country": country, "birth_date": birth, "newsletter": news,
        "updated_at": stamp, "person_key": p.key,
    }  # fmt: skip


def _poisson(r: random.Random, mean: float) -> int:
    """Knuth's method: fine for the small means used here."""
    limit, k, product = math.exp(-mean), 0, r.random()
    while product > limit:
        k += 1
        product *= r.random()
    return k


def _sources_of(r: random.Random, opts: WorldOptions) -> list[str]:
    """Sources holding one person: distinct, weighted, rarely twice in one source."""
    count = 1 + _poisson(r, opts.records_per_person - 1.0)
    weights = [_PROFILES.get(s, _FULL).weight for s in opts.sources]
    # Weighted order without replacement (Efraimidis-Spirakis keys).
    order = sorted(opts.sources, key=lambda s: -(r.random() ** (1.0 / weights.pop(0))))
    chosen = order[:count] + r.choices(opts.sources, k=max(0, count - len(order)))
    if count > 1 and r.random() < 0.03:
        chosen[1] = chosen[0]  # entered twice in one system
    return chosen


def _stamp(r: random.Random, lo: int = 0, hi: int = _TWO_YEARS) -> str:
    return (_START + timedelta(seconds=lo + _below(r, hi - lo))).isoformat() + "Z"


def _chunks(people: int, opts: WorldOptions) -> Iterator[list[tuple[str, dict[str, str]]]]:
    """Rows of ``_CHUNK`` people at a time, shuffled, with per-source ids assigned in order."""
    if people < 0:
        raise ValueError("people must be >= 0")
    # Families of 2-4 (mean 2.7): start one with the chance that gives household_share people.
    share = opts.household_share
    start_family = share / (2.7 - 1.7 * share) if share < 1 else 1.0
    counters = dict.fromkeys(opts.sources, 0)
    for lo in range(0, people, _CHUNK):
        r = random.Random(f"{opts.seed}:{lo}")  # str seeds hash with SHA-512: stable
        hi, n, rows = min(lo + _CHUNK, people), lo, []
        while n < hi:
            size = r.choices((2, 3, 4), (0.5, 0.3, 0.2))[0] if r.random() < start_family else 1
            head: _Person | None = None
            taken: set[str] = set()
            for _ in range(min(size, hi - n)):
                person = _new_person(r, n, opts, head, taken)
                if head is None and size > 1 and not person.landline and r.random() < 0.8:
                    person.landline = _landline(r, person.city)  # families often keep one
                head = head or person
                taken.add(person.first)
                n += 1
                sources = _sources_of(r, opts)
                moved = _below(r, len(sources)) if person.old_address and len(sources) > 1 else -1
                for j, source in enumerate(sources):
                    stamp = _stamp(r, 0, _TWO_YEARS // 2) if j == moved else _stamp(r)
                    rows.append((source, _render(r, person, source, j == moved, stamp)))
        r.shuffle(rows)  # files list records in no particular order, not grouped by person
        for source, row in rows:
            counters[source] += 1
            row["id"] = f"{source}-{counters[source]}"
        yield rows


def iter_world(
    people: int, options: WorldOptions = WorldOptions()
) -> Iterator[tuple[str, dict[str, str]]]:
    """Yield the records of ``people`` synthetic people spread over several sources.

    Args:
        people: Number of real people; each has at least one record.
        options: Seed, sources and the shares of variation.

    Yields:
        ``(source, row)`` pairs; ``row`` holds the people_file fields (all ``str``), ``id``
        unique within its source and ``person_key`` the true person id (the ground truth).

    Raises:
        ValueError: If ``people`` is negative.
    """
    for chunk in _chunks(people, options):
        yield from chunk


def write_world(
    folder: Path, people: int, options: WorldOptions = WorldOptions()
) -> dict[str, int]:
    """Stream a world to one JSON Lines file per source, ``folder / f"{source}.jsonl"``.

    Args:
        folder: Directory to write into; created if missing. Existing files are overwritten.
        people: Number of real people.
        options: Generator options, as for :func:`iter_world`.

    Returns:
        Rows written per source (every source has a file, possibly empty).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = dict.fromkeys(options.sources, 0)
    handles = {s: (folder / f"{s}.jsonl").open("wb") for s in options.sources}
    try:
        for chunk in _chunks(people, options):
            lines: dict[str, list[bytes]] = {s: [] for s in options.sources}
            for source, row in chunk:
                lines[source].append(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE))
            for source, batch in lines.items():
                handles[source].write(b"".join(batch))
                written[source] += len(batch)
    finally:
        for handle in handles.values():
            handle.close()
    return written


def true_pairs(person_keys: Sequence[str]) -> int:
    """The number of true duplicate pairs among records with these person keys.

    Args:
        person_keys: The ``person_key`` of each record (one entry per record).

    Returns:
        Pairs of records that belong to the same person: sum of ``k * (k - 1) / 2``.
    """
    return sum(k * (k - 1) // 2 for k in Counter(person_keys).values())

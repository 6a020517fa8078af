"""Match keys: the forms records are compared in, one per match field of :mod:`.frame`.

Stored values are never altered; these keys exist only for record linkage (blocking and
Fellegi-Sunter comparisons). Every key function accepts arbitrary text and never raises. Unknown
values and placeholders ("n/a", "test", "asdf", ...) get no key (``None``): two records sharing
a placeholder is no evidence that they are one person.

Keys are built for a million records at a time: hot paths use ``str``/``bytes`` methods, not
regular expressions, and short values that repeat (names, cities, companies) are cached.
"""

from __future__ import annotations

import gc
import re
import unicodedata
from collections.abc import Callable, Hashable, Iterable, Sequence
from datetime import date
from functools import lru_cache
from operator import itemgetter
from typing import TypeVar

import jellyfish
import numpy as np
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

from crmhub.dedupe.frame import MULTI_FIELDS, SCALAR_FIELDS, MatchFrame, concat_frames
from crmhub.model import Person
from crmhub.normalize import is_junk

__all__ = [
    "JUNK_EMAILS", "JUNK_EMAIL_DOMAINS", "JUNK_EMAIL_LOCALS", "company_key", "email_key",
    "first_root", "fold", "match_frame", "match_frame_chunked", "name_key",
    "nickname_canonicals", "phone_key", "phonetic", "postcode_key",
]  # fmt: skip

_T = TypeVar("_T", bound=Hashable)

# Placeholders as they read after fold() ("n/a" folds to "n a"), on top of is_junk().
_JUNK_TEXT = frozenset({"", "n a", "na", "none", "null", "nil", "unknown", "x", "xxx", "test",
                        "asdf", "tbc", "tbd", "n k"})  # fmt: skip
_JUNK_NAMES = _JUNK_TEXT | {"customer", "user", "anonymous", "client"}
# Not employers: two self-employed people share this value without being one person.
_JUNK_COMPANIES = _JUNK_TEXT | {"self", "self employed", "private", "individual", "freelance",
                                "freelancer", "retired", "student", "unemployed"}  # fmt: skip

JUNK_EMAILS = frozenset({"test@test.com", "a@a.com", "abc@abc.com", "x@x.com"})
"""Whole addresses that are placeholders."""
JUNK_EMAIL_DOMAINS = frozenset({"example.com", "example.org", "example.net", "test.com"})
"""Reserved or placeholder domains: no real person's mailbox."""
JUNK_EMAIL_LOCALS = frozenset({"none", "na", "n/a", "nil", "null", "unknown", "test", "testing",
                               "asdf", "xxx", "x", "noemail", "no-email", "nomail", "nobody",
                               "dummy", "fake"})  # fmt: skip
"""Local parts (after provider rules) that are placeholders, at any domain."""
# Automated senders are never a person's identity.
_NO_REPLY = ("noreply", "no-reply", "no_reply", "donotreply", "do-not-reply", "do_not_reply")


def _provider_rules() -> dict[str, tuple[str, str, bool]]:
    """domain -> (canonical domain, tag separator, drop dots), written out from each
    provider's documented aliasing: nothing is looked up (no DNS, no network)."""
    rules = {d: ("gmail.com", "+", True) for d in ("gmail.com", "googlemail.com")}
    rules |= {d: ("icloud.com", "+", False) for d in ("icloud.com", "me.com", "mac.com")}
    # Proton delivers "+alias" to the base address too; its dots are part of the name.
    proton = ("protonmail.com", "protonmail.ch", "proton.me", "pm.me")
    rules |= {d: ("proton.me", "+", False) for d in proton}
    rules |= {d: (d, "+", False) for d in ("fastmail.com", "fastmail.fm", "fastmail.net")}
    rules |= {d: (d, "-", False) for d in ("ymail.com", "rocketmail.com")}
    for tld in ("com", "co.uk", "fr", "de", "it", "es", "nl", "be", "ca", "com.au", "ie", "at",
                "ch", "se", "dk", "no", "fi", "jp", "co.jp", "com.br", "com.mx", "in"):  # fmt: skip
        for name in ("outlook", "hotmail", "live", "msn"):
            rules[f"{name}.{tld}"] = (f"{name}.{tld}", "+", False)
        rules[f"yahoo.{tld}"] = (f"yahoo.{tld}", "-", False)  # Yahoo's disposable "-keyword"
    return rules


_PROVIDERS = _provider_rules()

# ASCII fold in one C call: letters lower-cased, all but letters and digits to a space (a
# bytes table translates ~3x faster than a str one).
_ASCII_TABLE = bytes(ord(chr(i).lower()) if chr(i).isalnum() else 32 for i in range(256))
# Letters NFKD leaves alone (they are not a base letter plus a mark).
_LETTERS = str.maketrans({"ø": "o", "æ": "ae", "ł": "l", "đ": "d", "ð": "d", "þ": "th",
                          "œ": "oe", "\u0131": "i", "ħ": "h", "ŧ": "t"})  # fmt: skip


def _fold(text: str) -> str:
    if text.isascii():
        return " ".join(text.encode("ascii").translate(_ASCII_TABLE).decode("ascii").split())
    category = unicodedata.category
    for _ in range(4):  # case folding and decomposition can feed each other: to a fixpoint
        folded = unicodedata.normalize("NFKD", text).casefold().translate(_LETTERS)
        folded = unicodedata.normalize("NFKD", folded)
        chars = [c if c.isalnum() else "" if category(c)[0] == "M" else " " for c in folded]
        folded = " ".join("".join(chars).split())
        if folded == text or folded.isascii():
            break
        text = folded
    return folded


@lru_cache(maxsize=100_000)
def fold(text: str) -> str:
    """Case- and accent-fold text for matching: ``"José O'Brien"`` -> ``"jose o brien"``.

    NFKD with combining marks dropped, case-folded (``"ß"`` -> ``"ss"``), letters without a
    decomposition spelled out (``"ø"`` -> ``"o"``, ``"æ"`` -> ``"ae"``, ``"ł"`` -> ``"l"``),
    all but letters and digits to a space, white space collapsed. Idempotent.

    Args:
        text: any text.

    Returns:
        The folded text, possibly empty.
    """
    return _fold(text)


def _text_key(text: str | None, junk: frozenset[str] = _JUNK_TEXT) -> str | None:
    if text is None:
        return None
    folded = fold(text)
    return None if folded in junk or is_junk(folded) else folded


def email_key(email: str) -> str | None:
    """The matching form of an email address, by provider rules written out per domain.

    Gmail ignores dots and ``+tags`` (googlemail.com is gmail.com); Outlook, Hotmail, Live,
    iCloud (me.com, mac.com), Fastmail and Proton (protonmail.com, pm.me) drop ``+tags``;
    Yahoo drops ``-tags``; other domains are only lower-cased.

    Args:
        email: an address, normally already lower-cased and syntax-checked.

    Returns:
        ``local@domain``, or None for non-addresses and placeholders (:data:`JUNK_EMAILS`,
        :data:`JUNK_EMAIL_DOMAINS`, :data:`JUNK_EMAIL_LOCALS`, no-reply senders).
    """
    email = email.strip().lower()
    local, at, domain = email.rpartition("@")
    if not (at and local and domain) or email in JUNK_EMAILS or domain in JUNK_EMAIL_DOMAINS:
        return None
    if local.startswith(_NO_REPLY):
        return None
    rule = _PROVIDERS.get(domain)
    if rule is not None:
        domain, tag, drop_dots = rule
        local = local.partition(tag)[0]
        if drop_dots:
            local = local.replace(".", "")
    return None if not local or local in JUNK_EMAIL_LOCALS else f"{local}@{domain}"


_COUNTRY_CODES = frozenset(str(code) for code in COUNTRY_CODE_TO_REGION_CODE)
_ASCENDING = "0123456789" * 3
_DESCENDING = _ASCENDING[::-1]


def phone_key(e164: str) -> str | None:
    """The matching form of a phone number: its digits, without the ``+``.

    Args:
        e164: a number in E.164 form (``+442079460958``); other characters are ignored.

    Returns:
        The digits, or None for placeholders: fewer than 7 digits after the country code, one
        digit repeated (``0000000``) or a run such as ``1234567890``.
    """
    digits = e164.strip().removeprefix("+")
    if not (digits.isdigit() and digits.isascii()):
        digits = "".join(ch for ch in digits if "0" <= ch <= "9")
    # Country codes are prefix-free: the first prefix that is a code is the code.
    if digits[:1] in _COUNTRY_CODES:
        national = digits[1:]
    elif digits[:2] in _COUNTRY_CODES:
        national = digits[2:]
    else:
        national = digits[3:] if digits[:3] in _COUNTRY_CODES else digits
    if len(national) < 7 or national.count(national[0]) == len(national):
        return None
    return None if national in _ASCENDING or national in _DESCENDING else digits


_LEGAL_FORMS = frozenset({"ltd", "limited", "plc", "llc", "llp", "lp", "inc", "incorporated",
                          "corp", "corporation", "co", "company", "gmbh", "ag", "kg", "se",
                          "sa", "sas", "sarl", "srl", "spa", "bv", "nv", "oy", "ab", "as",
                          "aps", "pty", "pte", "pvt", "kk", "ltda", "ug", "sro"})  # fmt: skip


# A letter or digit standing alone, followed by another: "s a r l" -> "sarl" (once per
# distinct company name, thanks to the cache: a regular expression is affordable here).
_SINGLE_LETTERS = re.compile(r"\b(\w) (?=\w\b)")


@lru_cache(maxsize=100_000)
def company_key(name: str) -> str | None:
    """The matching form of a company name: folded, legal forms and a leading "the" removed.

    Trailing legal forms go one after another (``"Müller GmbH & Co. KG"`` -> ``"muller"``).
    Runs of single letters are joined first, so dotted forms are words too (``"B.V."`` ->
    ``"bv"``) and initials match however written (``"J.P. Morgan"`` == ``"JP Morgan"``).

    Args:
        name: a company name.

    Returns:
        The key, or None for placeholders and when nothing but legal forms is left.
    """
    folded = _text_key(name, _JUNK_COMPANIES)
    words = _SINGLE_LETTERS.sub(r"\1", folded).split() if folded else []
    if words and words[0] == "the":
        del words[0]
    while words and words[-1] in _LEGAL_FORMS:
        del words[-1]
    key = " ".join(words)
    return None if key in _JUNK_COMPANIES else key


# ASCII postcodes: upper-cased, and all but letters and digits deleted, in one C call.
_UPPER_TABLE = bytes(i - 32 if 97 <= i <= 122 else i for i in range(256))
_NOT_ALNUM = bytes(i for i in range(256) if not (i < 128 and chr(i).isalnum()))
_JUNK_POSTCODES = frozenset(j.replace(" ", "").upper() for j in _JUNK_TEXT)


def postcode_key(text: str) -> str | None:
    """The matching form of a postcode: upper-case letters and digits only (``"SW1A1AA"``).

    Args:
        text: a postcode as written.

    Returns:
        The key, or None for placeholders, all zeros and values without letters or digits.
    """
    if text.isascii():
        key = text.encode("ascii").translate(_UPPER_TABLE, _NOT_ALNUM).decode("ascii")
    else:
        key = _fold(text).replace(" ", "").upper()
    return None if key in _JUNK_POSTCODES or not key.strip("0") else key


@lru_cache(maxsize=100_000)
def name_key(text: str) -> str | None:
    """The matching form of a personal name: folded, letters and single spaces only.

    Args:
        text: a name as written.

    Returns:
        The key, or None for placeholders ("test", "unknown", "customer", ...) and empty names.
    """
    folded = _text_key(text, _JUNK_NAMES)
    if folded and not folded.replace(" ", "").isalpha():
        # Only digits are left to drop ("J0hn" is one mistyped word, not two words).
        folded = " ".join("".join(c for c in folded if c.isalpha() or c == " ").split())
    return None if not folded or folded in _JUNK_NAMES else folded


@lru_cache(maxsize=1)
def _nickname_tables() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    from nicknames import NickNamer  # loads a CSV: only when first needed

    namer = NickNamer()
    return namer.nickname_lookup, namer.canonical_lookup


def _next_root(name: str) -> str:
    nicks, canonicals = _nickname_tables()
    candidates = canonicals.get(name)
    own = nicks.get(name, set())
    if not candidates or len(own) > max(len(nicks[c]) for c in candidates):
        return name  # not a nickname, or fuller than every name it is a nickname of
    group = own | {name}
    # The canonical sharing most of this name's group, then the fullest, then alphabetical.
    return min(candidates, key=lambda c: (-len(nicks[c] & group), -len(nicks[c]), c))


def nickname_canonicals(first_name_key: str) -> frozenset[str]:
    """Every name the ``nicknames`` table lists ``first_name_key`` as a nickname of
    (``"tony"`` -> anthony, antonia, antonio, ...); empty for names it does not know.

    Unlike :func:`first_root`, which must pick one, this keeps every reading: two names are
    related when one is among the other's canonicals, or they share one.
    """
    return frozenset(_nickname_tables()[1].get(first_name_key, ()))


@lru_cache(maxsize=100_000)
def first_root(first_name_key: str) -> str:
    """The canonical name of a first name's nickname group (``"bob"`` -> ``"robert"``).

    The ``nicknames`` table is noisy: it lists pairs both ways (robert is a nickname of bill,
    bill of robert), so "keep a canonical name" would keep bob and bill. Deterministically,
    a name is its own root when its nickname group is larger than those of all names it is a
    nickname of; else it moves to the canonical sharing most of its group (then the largest
    group, then alphabetical), until stable (a cycle: its largest group, then longest name).
    Roots still join unrelated names at times: weaker evidence than an exact match.

    Args:
        first_name_key: a first name as returned by :func:`name_key`.

    Returns:
        The root, or the name itself when the table does not know it.
    """
    path = [first_name_key]
    while (step := _next_root(path[-1])) != path[-1]:
        if step in path:
            nicks = _nickname_tables()[0]
            return min(path[path.index(step) :], key=lambda c: (-len(nicks[c]), -len(c), c))
        path.append(step)
    return path[-1]


@lru_cache(maxsize=100_000)
def phonetic(name_key: str) -> str | None:
    """The Metaphone code of a name key, spaces removed (``"mc donald"`` == ``"mcdonald"``).

    Args:
        name_key: a name as returned by :func:`name_key`.

    Returns:
        The code, or None when it is empty (no Latin letters).
    """
    return jellyfish.metaphone(name_key.replace(" ", "")) or None


_TITLES = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "dame", "rev"})
_GENERATIONS = frozenset({"jr", "sr", "ii", "iii", "iv", "phd", "md", "esq"})
_PARTICLES = frozenset({"van", "von", "der", "den", "de", "da", "di", "du", "del", "della",
                        "la", "le", "ter", "ten", "bin", "al"})  # fmt: skip


def _words(text: str) -> list[str]:
    # Split as written, before folding: "O'Neil" is one word (folded "o neil", as a last name).
    words = text.split()
    while words and fold(words[0]) in _TITLES:
        del words[0]
    while words and fold(words[-1]) in _GENERATIONS:
        del words[-1]
    return words


def _split_full_name(full_name: str) -> tuple[str | None, str | None]:
    """First and last name keys of "Smith, John" or "John Smith" (the last word is last, with
    any particles before it: "Jan van der Berg")."""
    before, comma, after = full_name.partition(",")
    if comma and (first := _words(after)):  # not "John Smith, Jr."
        return name_key(" ".join(first)), name_key(" ".join(_words(before)))
    words = _words(before)
    cut = len(words) - 1
    while cut > 1 and fold(words[cut - 1]) in _PARTICLES:
        cut -= 1
    if cut < 0:
        return None, None
    return name_key(" ".join(words[:cut])) if cut else None, name_key(" ".join(words[cut:]))


# Field values are read from the models' __dict__, where pydantic keeps them: ~25% faster
# than attribute access (records lie scattered in memory; every touch is a cache miss).
_PERSON_FIELDS = itemgetter("first_name", "last_name", "full_name", "company", "birth_date",
                            "address", "emails", "phones", "identifiers")  # fmt: skip
_ADDRESS_FIELDS = itemgetter("postal_code", "city", "country", "line1")
_NO_ADDRESS = dict.fromkeys(("postal_code", "city", "country", "line1"))


def match_frame_chunked(
    records: Iterable[tuple[int, Person]], chunk_size: int = 50_000
) -> MatchFrame:
    """:func:`match_frame` of records read from an iterator a chunk at a time: only the
    keys are kept, so the canonical records of a large data set are never all in memory."""
    frames: list[MatchFrame] = []
    chunk: list[tuple[int, Person]] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= chunk_size:
            frames.append(match_frame(chunk))
            chunk = []
    if chunk or not frames:
        frames.append(match_frame(chunk))
    return concat_frames(frames)


def match_frame(records: Sequence[tuple[int, Person]]) -> MatchFrame:
    """Build the match columns of :mod:`crmhub.dedupe.frame` for records, in their order.

    Args:
        records: ``(id, person)`` pairs.

    Returns:
        A frame whose row ``i`` holds the keys of ``records[i]``: None in scalar columns and
        left out of multi-valued ones where a value is unknown or a placeholder.
    """
    # The key tuples are millions of small acyclic containers: they would trigger full cyclic
    # collections, each walking every record in memory (measured: twice the time for 100,000
    # records). Reference counting still frees everything.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _match_frame(records)
    finally:
        if enabled:
            gc.enable()


def _match_frame(records: Sequence[tuple[int, Person]]) -> MatchFrame:
    # Column by column: values are read and transposed in C (itemgetter, zip), each key
    # function runs once per distinct value, the per-record work is list comprehensions.
    if not records:
        empty = {name: np.empty(0, dtype=object) for name in SCALAR_FIELDS}
        return MatchFrame(np.zeros(0, dtype=np.int64), empty, {n: [] for n in MULTI_FIELDS})
    ids, people = zip(*records, strict=True)
    get = _PERSON_FIELDS
    firsts, lasts, fulls, companies, births, addresses, emails, phones, identifiers = zip(
        *[get(p.__dict__) for p in people], strict=True
    )
    first, last = _keyed(firsts, name_key), _keyed(lasts, name_key)
    for i in [i for i, full in enumerate(fulls) if full]:
        if first[i] is None and last[i] is None:
            first[i], last[i] = _split_full_name(fulls[i])
    no_address = _NO_ADDRESS
    postcodes, cities, countries, streets = zip(
        *map(_ADDRESS_FIELDS, [a.__dict__ if a is not None else no_address for a in addresses]),
        strict=True,
    )
    scalars = {
        "first_name": first,
        "last_name": last,
        "full_name": [f"{f} {s}" if f and s else f or s for f, s in zip(first, last, strict=True)],
        "first_initial": [f[0] if f else None for f in first],
        "first_root": _keyed(first, first_root),
        "first_phonetic": _keyed(first, phonetic),
        "last_phonetic": _keyed(last, phonetic),
        "company": _keyed(companies, company_key),
        "postcode": _keyed(postcodes, postcode_key),
        "city": _keyed(cities, _text_key),
        "country": [c or None for c in countries],
        "birth_date": _keyed(births, date.isoformat),
        "street": _keyed(streets, _street_key),
    }
    return MatchFrame(
        ids=np.array(ids, dtype=np.int64),
        scalars={name: np.array(column, dtype=object) for name, column in scalars.items()},
        multis={
            "emails": _multi(emails, email_key),
            "phones": _multi(phones, phone_key),
            "identifiers": [_identifiers(i) if i else () for i in identifiers],
        },
    )


def _keyed(values: Sequence[_T | None], key: Callable[[_T], str | None]) -> list[str | None]:
    """``key`` of each value, computed once per distinct value; None stays None."""
    table: dict[_T | None, str | None] = {v: key(v) for v in set(values) if v is not None}
    table[None] = None
    return [table[v] for v in values]


def _multi(lists: Sequence[list[str]], key: Callable[[str], str | None]) -> list[tuple[str, ...]]:
    """The keys of each list of values: None left out, duplicates dropped, order kept."""
    # One pass and no cache: emails and phones are nearly all distinct, and touching each
    # value twice costs more than the key function.
    out: list[tuple[str, ...]] = []
    append = out.append
    for values in lists:
        if len(values) == 1:  # the common case, without a dict
            k = key(values[0])
            append((k,) if k else ())
        else:
            append(tuple(dict.fromkeys(k for v in values if (k := key(v)))))
    return out


def _identifiers(identifiers: dict[str, str]) -> tuple[str, ...]:
    return tuple(sorted(f"{kind}:{v}" for kind, val in identifiers.items() if (v := val.strip())))


def _street_key(line1: str) -> str | None:
    # Uncached fold: streets are nearly all distinct and would only churn fold()'s cache.
    folded = _fold(line1)
    return None if folded in _JUNK_TEXT or is_junk(folded) else folded

"""Normalisers applied once, at the edge, to every value entering the canonical model.

Each function takes a raw string and returns the canonical form, or raises
:class:`~crmhub.errors.NormalizationError` with a message that says what is wrong without
repeating the value (messages end up in quarantine rows and logs, which must not hold PII).
They never raise anything else, whatever the input.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import phonenumbers

from crmhub.errors import NormalizationError

__all__ = [
    "is_junk",
    "normalize_country",
    "normalize_email",
    "normalize_name",
    "normalize_phone",
    "normalize_text",
]

# The practical subset of RFC 5321 that real systems accept; anything outside it (quoted local
# parts, non-ASCII) falls through to email-validator, which is exact but ~50x slower.
_ASCII_EMAIL = re.compile(
    r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LETTER = re.compile(r"[^\W\d_]")
_JUNK = frozenset({"", "-", "--", ".", "n/a", "na", "none", "null", "nil", "unknown", "?", "x"})


def is_junk(value: object) -> bool:
    """Whether a raw value is a placeholder that means "no value" ("", "n/a", "null", ...)."""
    return value is None or (isinstance(value, str) and value.strip().lower() in _JUNK)


def normalize_text(value: str) -> str:
    """NFC-normalise, collapse runs of white space and trim."""
    if not value.isascii():
        value = unicodedata.normalize("NFC", value)
    return " ".join(value.split())


def normalize_name(value: str) -> str:
    """Normalise a personal or company name: NFC, single spaces, trimmed; case is kept.

    Raises:
        NormalizationError: if the value holds control characters or no letter at all.
    """
    text = normalize_text(value)
    if not text:
        raise NormalizationError("name is empty")
    if _CONTROL.search(text):
        raise NormalizationError("name contains control characters")
    if not _LETTER.search(text):
        raise NormalizationError("name contains no letters")
    return text


def normalize_email(value: str) -> str:
    """Lower-case and trim an email address and check its syntax (no DNS look-up).

    Raises:
        NormalizationError: if the value is not a syntactically valid address.
    """
    text = value.strip()
    if text.lower().startswith("mailto:"):
        text = text[7:]
    text = text.strip().strip("<>").strip().lower()
    if len(text) > 254:
        raise NormalizationError("email is longer than 254 characters")
    if text.count("@") != 1:
        raise NormalizationError("email must contain exactly one '@'")
    if _ASCII_EMAIL.match(text):
        if len(text.partition("@")[0]) > 64:
            raise NormalizationError("email local part is longer than 64 characters")
        return text
    return _validate_unusual_email(text)


@lru_cache(maxsize=4096)
def _validate_unusual_email(text: str) -> str:
    from email_validator import EmailNotValidError, validate_email

    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        reason = str(exc).split(".")[0].lower() if str(exc) else "invalid syntax"
        # email-validator quotes parts of the address in some messages; keep only the kind.
        raise NormalizationError(f"email is not valid ({_strip_quoted(reason)})") from None
    except Exception:  # the library must never take a sync down with an unexpected error
        raise NormalizationError("email is not valid") from None
    return result.normalized.lower()


def _strip_quoted(reason: str) -> str:
    return re.sub(r"['\"].*?['\"]", "…", reason)


@lru_cache(maxsize=65536)
def normalize_phone(value: str, region: str | None = None) -> str:
    """Parse a phone number and return it in E.164 form (``+442079460958``).

    Args:
        value: the number as written (``020 7946 0958``, ``+1 (415) 555-2671``, ...).
        region: ISO 3166-1 alpha-2 region used for numbers written without a country code.

    Raises:
        NormalizationError: if the value is not a possible phone number.
    """
    if not isinstance(value, str) or not value.strip():
        raise NormalizationError("phone is empty")
    if len(value) > 64:
        raise NormalizationError("phone is longer than 64 characters")
    region = region.upper() if region else None
    return _fast_e164(value, region) or _parse_e164(value, region)


def _parse_e164(value: str, region: str | None) -> str:
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        reason = _PHONE_REASONS.get(exc.error_type, "invalid")
        raise NormalizationError(f"phone does not parse ({reason})") from None
    except Exception:
        raise NormalizationError("phone does not parse") from None
    if not phonenumbers.is_possible_number(number):
        raise NormalizationError("phone has an impossible length for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# Separators people write inside numbers; anything else (letters, extensions, "#") takes the
# full parser.
_PHONE_SEPARATORS = str.maketrans("", "", " -.()/\u00a0")


def _fast_e164(value: str, region: str | None) -> str | None:
    """E.164 for the plain forms most records hold (``+44 20 7946 0958``, ``020 7946 0958``),
    in ~2 µs instead of the full parser's ~40 µs; None whenever any rule of the full parser
    could matter, so the result is always the one :func:`_parse_e164` gives (a test checks
    this on many numbers)."""
    text = value.strip()
    international = text.startswith("+")
    digits = (text[1:] if international else text).translate(_PHONE_SEPARATORS)
    if not digits.isdigit() or not digits.isascii() or "(0)" in text:
        return None
    if international:
        for size in (1, 2, 3):
            rules = _simple_rules_for_code(digits[:size])
            if rules is not None:
                break
        else:
            return None
        code, national = digits[:size], digits[size:]
        prefix, lengths, pattern, _idd, _others = rules
        if prefix and national.startswith(prefix):
            return None  # "+44 020 ...": the full parser decides whether the 0 is a trunk
    else:
        region_rules = _simple_rules_for_region(region) if region else None
        if region_rules is None:
            return None
        code, prefix, lengths, pattern, idd, other_prefixes = region_rules
        if digits.startswith((code, *other_prefixes)) or idd.match(digits):
            return None  # a country code, an international or special prefix without "+"
        national = digits[len(prefix) :] if prefix and digits.startswith(prefix) else digits
    if len(national) not in lengths or not pattern.fullmatch(national):
        return None
    return f"+{code}{national}"


_Rules = tuple[str, frozenset[int], "re.Pattern[str]", "re.Pattern[str]", tuple[str, ...]]
_LITERAL_ALTERNATIVES = re.compile(r"^\d+(?:\|\d+)*$")


@lru_cache(maxsize=512)
def _simple_rules_for_code(code: str) -> _Rules | None:
    if code.startswith("0") or not code.isdigit():
        return None
    region = phonenumbers.region_code_for_country_code(int(code))
    if region in (None, phonenumbers.UNKNOWN_REGION, "001"):
        return None
    found = _simple_rules_for_region(region)
    return None if found is None else found[1:]


@lru_cache(maxsize=512)
def _simple_rules_for_region(
    region: str,
) -> tuple[str, str, frozenset[int], re.Pattern[str], re.Pattern[str], tuple[str, ...]] | None:
    """The parts of a region's metadata the fast path needs, for regions whose national
    prefix for parsing is plain digits or a list of them (``0|180020``); regions with
    transform rules, carrier codes or leading-digit rules always take the full parser."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is None or metadata.general_desc is None:
        return None
    prefix = metadata.national_prefix or ""
    for_parsing = metadata.national_prefix_for_parsing
    if metadata.national_prefix_transform_rule or metadata.leading_digits:
        return None
    if prefix and not prefix.isdigit():
        return None
    alternatives: tuple[str, ...] = ()
    if for_parsing and for_parsing != prefix:
        if not _LITERAL_ALTERNATIVES.match(for_parsing) or prefix not in for_parsing.split("|"):
            return None
        alternatives = tuple(a for a in for_parsing.split("|") if a != prefix)
    general = metadata.general_desc
    if not general.national_number_pattern or not general.possible_length:
        return None
    return (
        str(metadata.country_code),
        prefix,
        frozenset(general.possible_length),
        re.compile(general.national_number_pattern),
        re.compile(metadata.international_prefix or "(?!)"),
        alternatives,
    )


_PHONE_REASONS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "no or unknown country code",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "not a number",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
    phonenumbers.NumberParseException.TOO_LONG: "too long",
}


def normalize_country(value: str) -> str:
    """Return the ISO 3166-1 alpha-2 code for a country: alpha-2, alpha-3, English names and
    common aliases (``"UK"``, ``"USA"``, ``"Deutschland"``), case-insensitively.

    Raises:
        NormalizationError: if the value names no known country.
    """
    key = normalize_text(value).lower().replace(".", "")
    code = _country_index().get(key)
    if code is None:
        raise NormalizationError("country is not a known ISO 3166 country")
    return code


_COUNTRY_ALIASES = {
    "uk": "GB",
    "great britain": "GB",
    "britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "usa": "US",
    "us": "US",
    "united states of america": "US",
    "america": "US",
    "holland": "NL",
    "nederland": "NL",
    "éire": "IE",
    "eire": "IE",
    "the netherlands": "NL",
    "deutschland": "DE",
    "españa": "ES",
    "espana": "ES",
    "italia": "IT",
    "south korea": "KR",
    "russia": "RU",
    "czech republic": "CZ",
}


@lru_cache(maxsize=1)
def _country_index() -> dict[str, str]:
    import pycountry

    index: dict[str, str] = {}
    for country in pycountry.countries:
        code = country.alpha_2
        for attr in ("alpha_2", "alpha_3", "name", "official_name", "common_name"):
            name = getattr(country, attr, None)
            if name:
                index[normalize_text(name).lower().replace(".", "")] = code
    index.update(_COUNTRY_ALIASES)
    return index

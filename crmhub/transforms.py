"""The built-in mapping transforms.

A transform is a plain function ``fn(value, **kwargs) -> value``. The keyword arguments come
from the mapping file (``{e164: {region: US}}``) and are bound once, when the mapping is
loaded. On unusable input a transform raises ``ValueError`` with a short reason that never
repeats the value (reasons are stored with quarantined records and logged), and it raises
nothing else, whatever the input.

By default a transform is *element-wise*: the mapping engine applies it to each non-None
element of a list value and never calls it with ``None``. Transforms marked with
:func:`list_level` (``first``, ``join``, ``split``, ...) receive the whole value, ``None``
included. A transform may also carry a ``check_args`` attribute (set by :func:`checks_args`):
the loader calls it with the keyword arguments so that an argument of the wrong shape is
reported against the mapping file's line instead of failing on every record.

Plugins add transforms through the ``register_transforms`` hook, exactly as this module does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Context, Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, TypeVar

import phonenumbers

from crmhub.hookspecs import hookimpl
from crmhub.normalize import normalize_country, normalize_email, normalize_phone

__all__ = [
    "BUILTIN_TRANSFORMS",
    "checks_args",
    "list_level",
    "register_transforms",
]

F = TypeVar("F", bound=Callable[..., Any])


def list_level(fn: F) -> F:
    """Mark a transform as taking the whole value (a list, a scalar or ``None``)."""
    fn.elementwise = False  # type: ignore[attr-defined]
    return fn


def checks_args(check: Callable[..., None]) -> Callable[[F], F]:
    """Attach ``check(**kwargs)``, which raises ``ValueError`` for arguments of the wrong shape."""

    def mark(fn: F) -> F:
        fn.check_args = check  # type: ignore[attr-defined]
        return fn

    return mark


# --------------------------------------------------------------------------- helpers

_UTC = UTC
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
# Wide enough for any amount or id, small enough that no input can make arithmetic slow.
_DECIMAL = Context(prec=120)
_MAX_NUMBER_TEXT = 100
_MAX_EXPONENT = 40
_MS_THRESHOLD = 100_000_000_000  # 1e11 s is the year 5138, so larger epochs are milliseconds
_NUMERIC = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$")
_NUMBER_TEXT = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _text(value: Any, what: str) -> str:
    """The value as text: strings as they are, numbers written out; anything else rejected."""
    if isinstance(value, str):
        return value
    if _is_number(value):
        try:
            return str(value)
        except ValueError:  # ints beyond the interpreter's digit limit
            raise ValueError(f"{what} expects text") from None
    raise ValueError(f"{what} expects text")


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _to_decimal(value: Any, what: str = "value") -> Decimal:
    """Parse a number (int, float, Decimal or numeric text) into a finite, bounded Decimal."""
    if isinstance(value, bool):
        raise ValueError(f"{what} is not a number")
    try:
        if isinstance(value, int):
            number = Decimal(value)
        elif isinstance(value, float):
            number = Decimal(repr(value))  # repr: 12.34, not 12.339999...
        elif isinstance(value, Decimal):
            number = value
        elif isinstance(value, str):
            text = value.strip()
            if len(text) > _MAX_NUMBER_TEXT or not _NUMBER_TEXT.match(text):
                raise ValueError
            number = Decimal(text)
        else:
            raise ValueError
    except (ValueError, InvalidOperation, OverflowError):
        raise ValueError(f"{what} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{what} is not a finite number")
    if number and abs(number.adjusted()) > _MAX_EXPONENT:
        raise ValueError(f"{what} is out of range")
    return number


def _check_digits(digits: Any = 2) -> None:
    if not isinstance(digits, int) or isinstance(digits, bool) or not 0 <= digits <= 6:
        raise ValueError("digits must be an integer from 0 to 6")


def _check_format(format: Any = None) -> None:
    if format is not None and (not isinstance(format, str) or not format):
        raise ValueError("format must be a strptime format string such as '%d/%m/%Y'")


def _check_unit_format(unit: Any = None, format: Any = None) -> None:
    if unit not in (None, "s", "ms"):
        raise ValueError("unit must be 's' or 'ms'")
    _check_format(format)


def _as_utc(value: datetime) -> datetime:
    tzinfo = value.tzinfo
    if tzinfo is _UTC:
        return value
    if tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=_UTC)
    try:
        return value.astimezone(_UTC)
    except (OverflowError, ValueError):
        raise ValueError("timestamp is out of range") from None


def _strptime(text: str, format: str, what: str) -> datetime:
    try:
        return datetime.strptime(text, format)
    except Exception:  # strptime's own messages quote the value; never pass them on
        raise ValueError(f"{what} does not match the format {format!r}") from None


# --------------------------------------------------------------------------- text


def strip(value: Any) -> str:
    """Trim surrounding white space: ``"  Ann "`` -> ``"Ann"``."""
    if value.__class__ is str:  # the usual case, without a call
        return value.strip()
    return _text(value, "strip").strip()


def lower(value: Any) -> str:
    """Lower-case: ``"ANN@X.COM"`` -> ``"ann@x.com"``."""
    if value.__class__ is str:  # the usual case, without a call
        return value.lower()
    return _text(value, "lower").lower()


def upper(value: Any) -> str:
    """Upper-case: ``"gbp"`` -> ``"GBP"``."""
    if value.__class__ is str:  # the usual case, without a call
        return value.upper()
    return _text(value, "upper").upper()


def title(value: Any) -> str:
    """Title-case each word: ``"ann LEE"`` -> ``"Ann Lee"``."""
    if value.__class__ is str:  # the usual case, without a call
        return value.title()
    return _text(value, "title").title()


def collapse_whitespace(value: Any) -> str:
    """Collapse runs of white space to one space and trim: ``" a \\t b "`` -> ``"a b"``."""
    return " ".join(_text(value, "collapse_whitespace").split())


_HONORIFICS = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "dame"})
_PARTICLES = frozenset(
    {"van", "von", "der", "den", "de", "del", "della", "di", "da", "du", "la", "le", "st", "ten"}
)
_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv"})


def _check_part(part: Any = "first") -> None:
    if part not in ("first", "last"):
        raise ValueError("part must be 'first' or 'last'")


def _split_full_name(text: str) -> tuple[str | None, str | None]:
    if "," in text:  # "Smith, John": last name first
        last, _, first = text.partition(",")
        return first.strip() or None, last.strip() or None
    tokens = text.split()
    while len(tokens) > 1 and tokens[0].lower().rstrip(".") in _HONORIFICS:
        tokens = tokens[1:]
    if len(tokens) == 1:
        return tokens[0], None
    start = len(tokens) - 1
    if start > 1 and tokens[start].lower().rstrip(".") in _SUFFIXES:
        start -= 1  # "John Smith Jr." -> last name "Smith Jr."
    while start > 1 and tokens[start - 1].lower() in _PARTICLES:
        start -= 1  # "Ludwig van Beethoven" -> last name "van Beethoven"
    return " ".join(tokens[:start]), " ".join(tokens[start:])


@checks_args(_check_part)
def split_name(value: Any, part: str = "first") -> str | None:
    """One part of a full name: ``"Smith, John"`` or ``"John Smith"`` -> ``"John"`` (first)."""
    _check_part(part)
    text = " ".join(_text(value, "split_name").split())
    if not text:
        return None
    first, last = _split_full_name(text)
    return first if part == "first" else last


# --------------------------------------------------------------------------- lists


def _check_sep(sep: Any = " ") -> None:
    if not isinstance(sep, str):
        raise ValueError("sep must be a string")


def _check_split_sep(sep: Any = ",") -> None:
    if not isinstance(sep, str) or not sep:
        raise ValueError("sep must be a non-empty string")


@list_level
@checks_args(_check_sep)
def join(value: Any, sep: str = " ") -> str | None:
    """Join the non-empty elements of a list: ``["Ann", None, "Lee"]`` -> ``"Ann Lee"``."""
    if value is None:
        return None
    items = value if isinstance(value, list | tuple) else [value]
    parts = [_text(item, "join").strip() for item in items if not _is_empty(item)]
    return sep.join(part for part in parts if part) or None


@list_level
@checks_args(_check_split_sep)
def split(value: Any, sep: str = ",") -> list[str] | None:
    """Split text into trimmed, non-empty parts: ``"a@x.com; b@y.com"`` (sep ``;``) -> a list."""
    if value is None:
        return None
    items = value if isinstance(value, list | tuple) else [value]
    parts: list[str] = []
    for item in items:
        if item is not None:
            parts.extend(p.strip() for p in _text(item, "split").split(sep) if p.strip())
    return parts


@list_level
def first(value: Any) -> Any:
    """The first element of a list (a scalar is returned as is): ``["a", "b"]`` -> ``"a"``."""
    if isinstance(value, list | tuple):
        return value[0] if value else None
    return value


@list_level
def first_non_empty(value: Any) -> Any:
    """The first element that is not None or blank: ``["", None, "b"]`` -> ``"b"``."""
    if isinstance(value, list | tuple):
        return next((item for item in value if not _is_empty(item)), None)
    return None if _is_empty(value) else value


@list_level
def compact(value: Any) -> Any:
    """Drop None and blank elements of a list: ``["a", "", None]`` -> ``["a"]``."""
    if isinstance(value, list | tuple):
        return [item for item in value if not _is_empty(item)]
    return None if _is_empty(value) else value


# --------------------------------------------------------------------------- contact data


def _check_region(region: Any = None) -> None:
    if region is not None and (
        not isinstance(region, str) or region.upper() not in phonenumbers.SUPPORTED_REGIONS
    ):
        raise ValueError("region must be an ISO 3166-1 alpha-2 code such as 'US'")


@checks_args(_check_region)
def e164(value: Any, region: str | None = None) -> str | None:
    """A phone number in E.164 form: ``"(415) 555-2671"`` (region ``US``) -> ``"+14155552671"``.

    Without ``region`` only numbers with a country code parse; leave ``phones`` untransformed
    to let the model apply the sync's default region instead.
    """
    text = _text(value, "e164")
    if not text.strip():
        return None
    return normalize_phone(text, region)


def email(value: Any) -> str | None:
    """A checked, lower-cased email address: ``" Ann@X.com "`` -> ``"ann@x.com"``."""
    if not isinstance(value, str):
        raise ValueError("email must be text")
    return normalize_email(value) if value.strip() else None


def iso_country(value: Any) -> str | None:
    """An ISO 3166-1 alpha-2 country code: ``"United Kingdom"`` or ``"GBR"`` -> ``"GB"``."""
    if not isinstance(value, str):
        raise ValueError("country must be text")
    return normalize_country(value) if value.strip() else None


# --------------------------------------------------------------------------- numbers


@checks_args(_check_digits)
def minor_units(value: Any, digits: int = 2) -> int | None:
    """An amount in minor units (cents): ``"12.34"`` or ``12.34`` -> ``1234``."""
    _check_digits(digits)
    if isinstance(value, str) and not value.strip():
        return None
    scaled = _to_decimal(value, "amount").scaleb(digits, context=_DECIMAL)
    if scaled != scaled.to_integral_value(context=_DECIMAL):
        raise ValueError(f"amount has more than {digits} decimal places")
    return int(scaled)


@checks_args(_check_digits)
def major_units(value: Any, digits: int = 2) -> str | None:
    """An amount in minor units written in major units: ``1234`` -> ``"12.34"``."""
    _check_digits(digits)
    if isinstance(value, str) and not value.strip():
        return None
    number = _to_decimal(value, "amount")
    if number != number.to_integral_value(context=_DECIMAL):
        raise ValueError("amount in minor units is not a whole number")
    return f"{number.scaleb(-digits, context=_DECIMAL):.{digits}f}"


def as_int(value: Any) -> int | None:
    """An integer: ``" 42 "`` or ``42.0`` -> ``42``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and not value.strip():
        return None
    number = _to_decimal(value, "value")
    if number != number.to_integral_value(context=_DECIMAL):
        raise ValueError("value is not a whole number")
    return int(number)


def as_float(value: Any) -> float | None:
    """A finite float: ``" 4.5 "`` -> ``4.5``."""
    if isinstance(value, str) and not value.strip():
        return None
    return float(_to_decimal(value, "value"))


# --------------------------------------------------------------------------- dates and times


def _from_epoch(number: Decimal, unit: str | None) -> datetime:
    if unit is None:
        unit = "ms" if abs(number) >= _MS_THRESHOLD else "s"
    try:
        if unit == "ms":
            return _EPOCH + timedelta(milliseconds=float(number))
        return _EPOCH + timedelta(seconds=float(number))
    except (OverflowError, ValueError):
        raise ValueError("timestamp is out of range") from None


@checks_args(_check_unit_format)
def timestamp(value: Any, unit: str | None = None, format: str | None = None) -> datetime | None:
    """An aware UTC datetime from ISO-8601 text, epoch seconds/ms or a strptime ``format``:
    ``"2024-05-01T10:00:00Z"`` or ``1714557600`` -> ``datetime(2024, 5, 1, 10, tzinfo=UTC)``.

    Without ``unit``, epochs of 1e11 and more are milliseconds; numeric text is an epoch when
    it is not an ISO date (``"20240501"`` is a date).
    """
    if unit is not None or format is not None:
        _check_unit_format(unit, format)
    if isinstance(value, str):
        return _timestamp_from_text(value, unit, format)
    if isinstance(value, datetime):
        return _as_utc(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=_UTC)
    if _is_number(value):
        return _from_epoch(_to_decimal(value, "timestamp"), unit)
    raise ValueError("not a timestamp")


def _timestamp_from_text(value: str, unit: str | None, format: str | None) -> datetime | None:
    text = value.strip()
    if not text:
        return None
    if format is not None:
        return _as_utc(_strptime(text, format, "timestamp"))
    numeric = unit is not None and _NUMERIC.match(text) is not None
    if not numeric:
        try:  # the usual case first: ISO-8601 is what most APIs and exports write
            parsed = datetime.fromisoformat(text)
        except ValueError:
            numeric = _NUMERIC.match(text) is not None
        else:
            return _as_utc(parsed)
    if numeric:
        return _from_epoch(_to_decimal(text, "timestamp"), unit)
    raise ValueError("not an ISO-8601 timestamp")


@checks_args(_check_format)
def as_date(value: Any, format: str | None = None) -> date | None:
    """A calendar date from ISO text (a timestamp's date part too) or a strptime ``format``:
    ``"31/01/1980"`` (format ``%d/%m/%Y``) -> ``date(1980, 1, 31)``."""
    if format is not None:
        _check_format(format)
    if not isinstance(value, str):
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        raise ValueError("not a date")
    text = value.strip()
    if not text:
        return None
    if format is not None:
        return _strptime(text, format, "date").date()
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        raise ValueError("not a date") from None


def iso_date(value: Any) -> str:
    """A date or datetime as ISO-8601 text (for push): ``date(1980, 1, 31)`` -> ``"1980-01-31"``."""
    if isinstance(value, date):  # datetime is a date too
        return value.isoformat()
    if isinstance(value, str):
        return value
    raise ValueError("not a date")


# --------------------------------------------------------------------------- scalars

_TRUE = frozenset({"yes", "y", "true", "t", "1", "on"})
_FALSE = frozenset({"no", "n", "false", "f", "0", "off"})


def as_bool(value: Any) -> bool | None:
    """A boolean from yes/no, true/false, y/n, on/off, 1/0 (any case): ``"Yes"`` -> ``True``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if not isinstance(value, str):
        raise ValueError("not a yes/no value")
    text = value.strip().lower()
    if not text:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("not a yes/no value")


def as_str(value: Any) -> str:
    """A scalar as text: ``42`` -> ``"42"``, ``True`` -> ``"true"``, a date -> ISO-8601."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    return _text(value, "str")


@list_level
def constant(current: Any, value: Any) -> Any:
    """Always ``value``, whatever the input: ``{constant: {value: web}}`` -> ``"web"``."""
    return value


@list_level
def default(current: Any, value: Any) -> Any:
    """``value`` when the input is None, blank or an empty list: ``""`` -> ``value``."""
    if isinstance(current, list | tuple):
        return value if all(_is_empty(item) for item in current) else current
    return value if _is_empty(current) else current


class _Keep:
    """The default of ``map``'s ``default``: keep values that are not in the table."""

    def __repr__(self) -> str:
        return "<keep>"


_KEEP: Any = _Keep()


def _check_map(values: Any = None, default: Any = _KEEP) -> None:
    if not isinstance(values, Mapping):
        raise ValueError("values must be a mapping of source values to canonical values")


def _map_key(value: Any) -> str | None:
    # Mapping-file keys are text; look other scalars up by how they would be written there.
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return None


@checks_args(_check_map)
def map_values(value: Any, values: Mapping[Any, Any], default: Any = _KEEP) -> Any:
    """Translate through a table: ``{values: {"N/A": null, M: male}}``: ``"M"`` -> ``"male"``.

    Values not in the table are kept, or replaced by ``default`` when one is given.
    """
    if not isinstance(values, Mapping):
        raise ValueError("map values must be a mapping")
    if isinstance(value, int | float) and not isinstance(value, bool) and value in values:
        return values[value]  # tables given in Python (plugins, tests) may have number keys
    key = _map_key(value)
    if key is not None:
        if key in values:
            return values[key]
        stripped = key.strip()
        if stripped in values:
            return values[stripped]
    return value if default is _KEEP else default


_GRANTED = _TRUE | {"granted", "subscribed", "opt-in", "opt_in", "optin", "opted_in", "opted-in"}
_DENIED = _FALSE | {
    "denied", "unsubscribed", "cleaned", "opt-out", "opt_out", "optout", "opted_out", "opted-out",
}  # fmt: skip


def consent(value: Any) -> str:
    """A consent status: yes/true/subscribed -> ``"granted"``, no/false/unsubscribed/cleaned ->
    ``"denied"``, blank/pending/anything else -> ``"unknown"``: ``"Yes"`` -> ``"granted"``."""
    if isinstance(value, bool):
        return "granted" if value else "denied"
    if isinstance(value, int) and value in (0, 1):
        return "granted" if value else "denied"
    if not isinstance(value, str):
        raise ValueError("consent must be text or a boolean")
    text = value.strip().lower()
    if text in _GRANTED:
        return "granted"
    if text in _DENIED:
        return "denied"
    return "unknown"


# --------------------------------------------------------------------------- registry

BUILTIN_TRANSFORMS: Mapping[str, Callable[..., Any]] = MappingProxyType(
    {
        "strip": strip,
        "lower": lower,
        "upper": upper,
        "title": title,
        "collapse_whitespace": collapse_whitespace,
        "split_name": split_name,
        "join": join,
        "split": split,
        "first": first,
        "first_non_empty": first_non_empty,
        "compact": compact,
        "e164": e164,
        "email": email,
        "iso_country": iso_country,
        "minor_units": minor_units,
        "major_units": major_units,
        "timestamp": timestamp,
        "date": as_date,
        "iso_date": iso_date,
        "bool": as_bool,
        "int": as_int,
        "float": as_float,
        "str": as_str,
        "constant": constant,
        "default": default,
        "map": map_values,
        "consent": consent,
    }
)
"""Every built-in transform by the name mapping files use."""


@hookimpl
def register_transforms(register: Callable[..., None]) -> None:
    """Register the built-in transforms with the plugin manager."""
    for name, fn in BUILTIN_TRANSFORMS.items():
        register(name, fn)

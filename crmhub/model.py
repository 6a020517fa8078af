"""The canonical customer model: what every connector's records are mapped into.

- :class:`Person` is what one source knows of one person.
- :class:`Activity` is one interaction (invoice, ticket, form submission, email event, ...).
- :class:`Customer` is the golden record built from the persons that are one real person.

Values are normalised here, once, at the edge: emails lower-cased and checked, phones E.164
(numbers without a country code are read as numbers of the person's address country, else of
the ``region`` from the validation context), countries
ISO 3166-1 alpha-2, names NFC-normalised and trimmed. Placeholders such as ``"n/a"`` become
``None``. Every personal field carries a PII label (:func:`pii_labels`) that drives access
exports and erasure.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from crmhub.errors import NormalizationError
from crmhub.normalize import (
    is_junk,
    normalize_country,
    normalize_email,
    normalize_name,
    normalize_phone,
    normalize_text,
)

__all__ = [
    "CONSENT_CHANNELS",
    "Activity",
    "Address",
    "Consent",
    "Customer",
    "GoldenValue",
    "Person",
    "PiiLabel",
    "pii_labels",
]


class PiiLabel(StrEnum):
    """What kind of personal data a field holds."""

    NAME = "name"
    CONTACT = "contact"
    IDENTIFIER = "identifier"
    DEMOGRAPHIC = "demographic"
    FINANCIAL = "financial"
    PREFERENCE = "preference"
    FREE_TEXT = "free_text"


def _pii(label: PiiLabel) -> Any:
    return {"pii": label.value}


CONSENT_CHANNELS = ("email", "sms", "phone", "post")
ConsentStatus = Literal["granted", "denied", "unknown"]
LawfulBasis = Literal[
    "consent", "contract", "legal_obligation", "vital_interests", "public_task",
    "legitimate_interests",
]  # fmt: skip


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str):
        return None if is_junk(value) else value
    return value


Rule = Callable[[Any, dict[str, Any]], Any]


def _normalised(
    model: type[BaseModel], data: Any, rules: dict[str, Rule], context: dict[str, Any]
) -> Any:
    """Apply each field's rule in one pass (one Python call per record, not one per field),
    and report every failure at its own field, as field validators would."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    errors: list[InitErrorDetails] = []
    for key, rule in rules.items():
        value = out.get(key)
        if value is None:
            continue
        try:
            out[key] = rule(value, out | context if key == "phones" else context)
        except (NormalizationError, ValueError, TypeError) as exc:
            errors.append(_error((key,), str(exc), value))
    if errors:
        _raise_with_the_rest(model, out, errors, context)
    return out


def _error(
    loc: tuple[Any, ...], message: str, value: Any, kind: str = "value_error"
) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError(kind, "{reason}", {"reason": message}), loc=loc, input=value
    )


def _raise_with_the_rest(
    model: type[BaseModel],
    data: dict[str, Any],
    errors: list[InitErrorDetails],
    context: dict[str, Any],
) -> None:
    """Raise the normalisation errors together with those of the other fields, so that a
    record's every problem is reported at once (only on this failure path)."""
    failed = {error["loc"][0] for error in errors}
    rest = {key: value for key, value in data.items() if key not in failed}
    try:
        model.model_validate(rest, context=context)
    except ValidationError as other:
        errors.extend(
            _error(e["loc"], e["msg"], e["input"], e["type"])
            for e in other.errors()
            if e["loc"] and e["loc"][0] not in failed
        )
    raise ValidationError.from_exception_data(model.__name__, errors)


def _text_rule(normalise: Callable[[str], str]) -> Rule:
    def rule(value: Any, _context: dict[str, Any]) -> Any:
        if not isinstance(value, str):
            return value  # pydantic reports the wrong type
        return None if is_junk(value) else normalise(value)

    return rule


def _list_rule(normalise: Callable[[str, dict[str, Any]], str]) -> Rule:
    def rule(value: Any, context: dict[str, Any]) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            return value
        seen: list[str] = []
        for raw in value:
            if raw is None or (isinstance(raw, str) and is_junk(raw)):
                continue
            if not isinstance(raw, str):
                raise ValueError("must be a string")
            normalised = normalise(raw, context)
            if normalised not in seen:
                seen.append(normalised)
        return seen

    return rule


def _phone(raw: str, context: dict[str, Any]) -> str:
    # A person's own country places national-format numbers; the hub default comes second.
    region = None
    address = context.get("address")
    if isinstance(address, Address):
        region = address.country
    elif isinstance(address, dict) and isinstance(address.get("country"), str):
        try:
            region = normalize_country(address["country"])
        except NormalizationError:
            region = None  # the address reports its own error
    return normalize_phone(raw, region or context.get("region"))


def _identifiers(value: Any, _context: dict[str, Any]) -> Any:
    if not isinstance(value, dict):
        return value
    return {str(k): str(v).strip() for k, v in value.items() if not is_junk(v) and str(v).strip()}


def _string_id(value: Any, _context: dict[str, Any]) -> Any:
    # Numeric ids from JSON sources are ids all the same.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _context_of(info: ValidationInfo) -> dict[str, Any]:
    return info.context if isinstance(info.context, dict) else {}


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class _Canonical(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, validate_default=False)


class Consent(_Canonical):
    """Consent for one channel: its status, when it was given or withdrawn, and by whom."""

    status: ConsentStatus = "unknown"
    at: datetime | None = None
    source: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_status(cls, value: Any) -> Any:
        # A mapping may give just the status ("granted") for a channel.
        return {"status": value} if isinstance(value, str) else value

    @field_validator("at")
    @classmethod
    def _at_utc(cls, value: datetime | None) -> datetime | None:
        return _as_utc(value)


class Address(_Canonical):
    """A postal address; ``country`` is ISO 3166-1 alpha-2."""

    line1: str | None = Field(None, json_schema_extra=_pii(PiiLabel.CONTACT))
    line2: str | None = Field(None, json_schema_extra=_pii(PiiLabel.CONTACT))
    city: str | None = Field(None, json_schema_extra=_pii(PiiLabel.CONTACT))
    region: str | None = Field(None, json_schema_extra=_pii(PiiLabel.CONTACT))
    postal_code: str | None = Field(None, json_schema_extra=_pii(PiiLabel.CONTACT))
    country: str | None = Field(None, json_schema_extra=_pii(PiiLabel.CONTACT))

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any, info: ValidationInfo) -> Any:
        return _normalised(cls, data, _ADDRESS_RULES, _context_of(info))

    def is_empty(self) -> bool:
        """Whether no part of the address is known."""
        return not any(self.__dict__.values())


_ADDRESS_RULES: dict[str, Rule] = {
    "line1": _text_rule(normalize_text),
    "line2": _text_rule(normalize_text),
    "city": _text_rule(normalize_text),
    "region": _text_rule(normalize_text),
    "postal_code": _text_rule(lambda v: normalize_text(v).upper()),
    "country": _text_rule(normalize_country),
}


class _SourceRecord(_Canonical):
    source: str = Field(min_length=1, max_length=64)
    stream: str = Field(min_length=1, max_length=64)
    external_id: str = Field(min_length=1, max_length=255)
    updated_at: datetime | None = None
    deleted: bool = False
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("updated_at")
    @classmethod
    def _updated_utc(cls, value: datetime | None) -> datetime | None:
        return _as_utc(value)


class Person(_SourceRecord):
    """What one source system knows of one person."""

    first_name: str | None = Field(None, max_length=200, json_schema_extra=_pii(PiiLabel.NAME))
    last_name: str | None = Field(None, max_length=200, json_schema_extra=_pii(PiiLabel.NAME))
    full_name: str | None = Field(None, max_length=400, json_schema_extra=_pii(PiiLabel.NAME))
    address: Address | None = None
    emails: list[str] = Field(default_factory=list, json_schema_extra=_pii(PiiLabel.CONTACT))
    phones: list[str] = Field(default_factory=list, json_schema_extra=_pii(PiiLabel.CONTACT))
    company: str | None = Field(None, max_length=300)
    title: str | None = Field(None, max_length=300)
    birth_date: date | None = Field(None, json_schema_extra=_pii(PiiLabel.DEMOGRAPHIC))
    consent: dict[Literal["email", "sms", "phone", "post"], Consent] = Field(
        default_factory=dict, json_schema_extra=_pii(PiiLabel.PREFERENCE)
    )
    lawful_basis: LawfulBasis | None = None
    identifiers: dict[str, str] = Field(
        default_factory=dict, json_schema_extra=_pii(PiiLabel.IDENTIFIER)
    )

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any, info: ValidationInfo) -> Any:
        return _normalised(cls, data, _PERSON_RULES, _context_of(info))

    @field_validator("address", mode="after")
    @classmethod
    def _no_empty_address(cls, value: Address | None) -> Address | None:
        return None if value is None or value.is_empty() else value

    @model_validator(mode="after")
    def _consent_provenance(self) -> Person:
        # Consent says where and when it was stated: a mapping that gives only the status
        # states it for this source, as of the record's last change there.
        for consent in self.consent.values():
            if consent.source is None:
                consent.source = self.source
            if consent.at is None and consent.status != "unknown":
                consent.at = self.updated_at
        return self

    @property
    def display_name(self) -> str | None:
        """The full name, or first and last name joined."""
        if self.full_name:
            return self.full_name
        joined = " ".join(part for part in (self.first_name, self.last_name) if part)
        return joined or None


_NAME = _text_rule(normalize_name)
_PERSON_RULES: dict[str, Rule] = {
    "external_id": _string_id,
    "first_name": _NAME,
    "last_name": _NAME,
    "full_name": _NAME,
    "company": _NAME,
    "title": _NAME,
    "emails": _list_rule(lambda raw, _context: normalize_email(raw)),
    "phones": _list_rule(_phone),
    "identifiers": _identifiers,
}


class Activity(_SourceRecord):
    """One interaction with a person: an invoice, payment, refund, ticket, form submission,
    email event, ... Amounts are integers in the currency's minor units."""

    kind: str = Field(min_length=1, max_length=40)
    occurred_at: datetime
    person_external_id: str | None = Field(None, max_length=255)
    person_stream: str | None = Field(None, max_length=64)
    amount: int | None = Field(None, json_schema_extra=_pii(PiiLabel.FINANCIAL))
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    status: str | None = Field(None, max_length=60)
    subject: str | None = Field(None, max_length=1000, json_schema_extra=_pii(PiiLabel.FREE_TEXT))

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any, info: ValidationInfo) -> Any:
        return _normalised(cls, data, _ACTIVITY_RULES, _context_of(info))

    @field_validator("occurred_at")
    @classmethod
    def _occurred_utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _upper_code(value: Any, _context: dict[str, Any]) -> Any:
    value = _blank_to_none(value)
    return value.strip().upper() if isinstance(value, str) else value


def _blank_id(value: Any, context: dict[str, Any]) -> Any:
    return _blank_to_none(_string_id(value, context))


_ACTIVITY_RULES: dict[str, Rule] = {
    "external_id": _string_id,
    "kind": lambda v, _c: v.strip().lower().replace(" ", "_") if isinstance(v, str) else v,
    "currency": _upper_code,
    "person_external_id": _blank_id,
}


class GoldenValue(BaseModel):
    """One surviving value of a golden record, with where it came from."""

    value: Any
    source_record_id: int | None = None
    rule: str


class Customer(BaseModel):
    """The golden record: one per real person."""

    id: str
    values: dict[str, GoldenValue] = Field(default_factory=dict)
    members: list[int] = Field(default_factory=list)
    traits: dict[str, Any] = Field(default_factory=dict)
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None
    merged_into: str | None = None


def pii_labels(model: type[BaseModel] = Person, prefix: str = "") -> dict[str, PiiLabel]:
    """Map each personal field of ``model`` (dotted for nested models) to its PII label."""
    labels: dict[str, PiiLabel] = {}
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and "pii" in extra:
            labels[prefix + name] = PiiLabel(str(extra["pii"]))
        annotation = field.annotation
        for candidate in getattr(annotation, "__args__", (annotation,)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                labels.update(pii_labels(candidate, prefix=f"{prefix}{name}."))
    return labels

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

from datetime import date, datetime, timezone
from enum import Enum
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

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


class PiiLabel(str, Enum):
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


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


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

    @field_validator("line1", "line2", "city", "region", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        value = _blank_to_none(value)
        return normalize_text(value) if isinstance(value, str) else value

    @field_validator("postal_code", mode="before")
    @classmethod
    def _postcode(cls, value: Any) -> Any:
        value = _blank_to_none(value)
        return normalize_text(value).upper() if isinstance(value, str) else value

    @field_validator("country", mode="before")
    @classmethod
    def _country(cls, value: Any) -> Any:
        value = _blank_to_none(value)
        return normalize_country(value) if isinstance(value, str) else value

    def is_empty(self) -> bool:
        """Whether no part of the address is known."""
        return not any(self.__dict__.values())


class _SourceRecord(_Canonical):
    source: str = Field(min_length=1, max_length=64)
    stream: str = Field(min_length=1, max_length=64)
    external_id: str = Field(min_length=1, max_length=255)
    updated_at: datetime | None = None
    deleted: bool = False
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("external_id", mode="before")
    @classmethod
    def _external_id(cls, value: Any) -> Any:
        # Numeric ids from JSON sources are ids all the same.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("updated_at")
    @classmethod
    def _updated_utc(cls, value: datetime | None) -> datetime | None:
        return _as_utc(value)


class Person(_SourceRecord):
    """What one source system knows of one person."""

    first_name: str | None = Field(None, max_length=200, json_schema_extra=_pii(PiiLabel.NAME))
    last_name: str | None = Field(None, max_length=200, json_schema_extra=_pii(PiiLabel.NAME))
    full_name: str | None = Field(None, max_length=400, json_schema_extra=_pii(PiiLabel.NAME))
    # Declared before phones: a person's own country places their national-format numbers.
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

    @field_validator("first_name", "last_name", "full_name", "company", "title", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        value = _blank_to_none(value)
        return normalize_name(value) if isinstance(value, str) else value

    @field_validator("emails", mode="before")
    @classmethod
    def _emails(cls, value: Any) -> Any:
        return _unique(normalize_email, _as_list(value))

    @field_validator("phones", mode="before")
    @classmethod
    def _phones(cls, value: Any, info: ValidationInfo) -> Any:
        address = info.data.get("address")
        region = (address.country if isinstance(address, Address) else None) or (
            info.context or {}
        ).get("region")
        return _unique(lambda raw: normalize_phone(raw, region), _as_list(value))

    @field_validator("address", mode="after")
    @classmethod
    def _no_empty_address(cls, value: Address | None) -> Address | None:
        return None if value is None or value.is_empty() else value

    @field_validator("identifiers", mode="before")
    @classmethod
    def _identifiers(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {
            str(k): str(v).strip() for k, v in value.items() if not is_junk(v) and str(v).strip()
        }

    @property
    def display_name(self) -> str | None:
        """The full name, or first and last name joined."""
        if self.full_name:
            return self.full_name
        joined = " ".join(part for part in (self.first_name, self.last_name) if part)
        return joined or None


def _as_list(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return value


def _unique(normalise: Any, values: Any) -> Any:
    if not isinstance(values, list | tuple):
        return values
    seen: list[str] = []
    for raw in values:
        if raw is None or (isinstance(raw, str) and is_junk(raw)):
            continue
        if not isinstance(raw, str):
            raise ValueError("must be a string")
        value = normalise(raw)
        if value not in seen:
            seen.append(value)
    return seen


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

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, value: Any) -> Any:
        return value.strip().lower().replace(" ", "_") if isinstance(value, str) else value

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, value: Any) -> Any:
        value = _blank_to_none(value)
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("person_external_id", mode="before")
    @classmethod
    def _person_id(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return _blank_to_none(value)

    @field_validator("occurred_at")
    @classmethod
    def _occurred_utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


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

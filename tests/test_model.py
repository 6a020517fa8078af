"""The canonical model normalises at the edge and labels personal fields."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from crmhub.model import Activity, Person, PiiLabel, pii_labels


def _person(**fields: object) -> Person:
    return Person.model_validate(
        {"source": "shop", "stream": "people", "external_id": "1", **fields},
        context={"region": "GB"},
    )


def test_person_values_are_normalised() -> None:
    person = _person(
        first_name="  ana ",
        emails=["Ana@Example.com", "ana@example.com", "n/a"],
        phones=["07400 123456"],
        address={"country": "United Kingdom", "postal_code": "sw1a 1aa"},
        identifiers={"vat": " GB123 ", "tax": "n/a"},
        consent={"email": "granted"},
    )
    assert person.first_name == "ana"
    assert person.emails == ["ana@example.com"]
    assert person.phones == ["+447400123456"]
    assert person.address is not None
    assert (person.address.country, person.address.postal_code) == ("GB", "SW1A 1AA")
    assert person.identifiers == {"vat": "GB123"}
    assert person.consent["email"].status == "granted"


def test_national_phone_numbers_use_the_persons_own_country_before_the_default() -> None:
    german = _person(phones=["0151 0723 7374"], address={"country": "DE"})
    assert german.phones == ["+4915107237374"]
    assert _person(phones=["07400 123456"]).phones == ["+447400123456"]  # default region GB


def test_numeric_external_ids_become_strings_and_empty_addresses_vanish() -> None:
    person = _person(external_id=42, address={"city": "", "country": None})
    assert person.external_id == "42"
    assert person.address is None


def test_invalid_values_name_the_field_not_the_value() -> None:
    with pytest.raises(ValidationError) as raised:
        _person(emails=["secret-person.example.com"])
    errors = raised.value.errors()
    assert errors[0]["loc"] == ("emails",)
    assert "secret-person" not in errors[0]["msg"]


def test_activity_amounts_are_minor_units_with_an_iso_currency() -> None:
    activity = Activity.model_validate(
        {
            "source": "stripe",
            "stream": "invoices",
            "external_id": "in_1",
            "kind": "Invoice",
            "occurred_at": "2024-05-01T10:00:00",
            "amount": 1250,
            "currency": "eur",
        }
    )
    assert (activity.kind, activity.amount, activity.currency) == ("invoice", 1250, "EUR")
    assert activity.occurred_at.tzinfo is not None
    with pytest.raises(ValidationError):
        Activity.model_validate(
            {
                "source": "s",
                "stream": "s",
                "external_id": "x",
                "kind": "invoice",
                "occurred_at": "2024-05-01",
                "currency": "EURO",
            }
        )


def test_every_personal_field_has_a_pii_label() -> None:
    labels = pii_labels(Person)
    assert labels["emails"] is PiiLabel.CONTACT
    assert labels["address.postal_code"] is PiiLabel.CONTACT
    assert labels["birth_date"] is PiiLabel.DEMOGRAPHIC
    assert labels["identifiers"] is PiiLabel.IDENTIFIER
    assert {"first_name", "last_name", "full_name", "phones"} <= set(labels)
    assert "external_id" not in labels


def test_every_invalid_field_is_reported_at_its_own_location() -> None:
    with pytest.raises(ValidationError) as raised:
        Person.model_validate(
            {
                "source": "shop",
                "stream": "people",
                "external_id": "",
                "emails": ["nope"],
                "phones": ["12"],
                "first_name": "123",
                "address": {"country": "Atlantis", "city": "Paris"},
            },
            context={"region": "GB"},
        )
    locations = sorted(error["loc"] for error in raised.value.errors())
    assert locations == [
        ("address", "country"),
        ("emails",),
        ("external_id",),
        ("first_name",),
        ("phones",),
    ]

"""Survivorship: each rule picks the value it says, ties break the same way every time,
overrides win, and every value says where it came from."""

from __future__ import annotations

from datetime import UTC, datetime

from crmhub.config import SurvivorshipSettings
from crmhub.dedupe.survive import Member, survive


def _at(day: int) -> datetime:
    return datetime(2024, 1, day, tzinfo=UTC)


CRM = Member(
    1,
    "crm",
    {
        "first_name": "Robert",
        "last_name": "Smith",
        "emails": ["bob@x.com"],
        "company": "Acme",
        "address": {"line1": "1 High St", "city": "Leeds", "postal_code": "LS1"},
        "consent": {"email": {"status": "granted"}},
    },
    _at(1),
)
SHOP = Member(
    2,
    "shop",
    {
        "first_name": "Bob",
        "last_name": "Smith",
        "emails": ["robert.smith@y.com", "bob@x.com"],
        "address": {"line1": "9 New Rd", "city": "York"},
        "consent": {"email": {"status": "denied"}},
    },
    _at(5),
)
NEWS = Member(
    3,
    "newsletter",
    {
        "first_name": "Bob",
        "emails": ["bob@x.com"],
        "consent": {"email": {"status": "granted"}, "sms": {"status": "granted"}},
    },
    _at(3),
)


def test_default_rules_take_the_most_recent_value_and_union_the_contacts() -> None:
    golden = survive([CRM, SHOP, NEWS])
    assert (golden["first_name"].value, golden["first_name"].source_record_id) == ("Bob", 2)
    assert golden["first_name"].rule == "most_recent"
    assert golden["emails"].value == ["bob@x.com", "robert.smith@y.com"]
    assert golden["emails"].rule == "union"
    assert golden["company"].value == "Acme"  # only one source has it


def test_consent_most_restrictive_wins_per_channel() -> None:
    golden = survive([CRM, SHOP, NEWS])
    consent = golden["consent"].value
    assert consent["email"]["status"] == "denied"
    assert consent["sms"]["status"] == "granted"
    assert golden["consent"].source_record_id == 2


def test_source_priority_prefers_the_most_trusted_source() -> None:
    settings = SurvivorshipSettings(source_priority=["crm", "shop"])
    golden = survive([CRM, SHOP, NEWS], settings)
    assert (golden["first_name"].value, golden["first_name"].rule) == ("Robert", "source_priority")


def test_the_address_survives_whole_from_one_record() -> None:
    settings = SurvivorshipSettings(fields={"address": "most_complete"})
    golden = survive([CRM, SHOP], settings)
    assert golden["address"].value == CRM.data["address"]
    assert golden["address"].source_record_id == 1


def test_most_frequent_agrees_with_the_majority() -> None:
    settings = SurvivorshipSettings(default_rule="most_frequent")
    assert survive([CRM, SHOP, NEWS], settings)["first_name"].value == "Bob"


def test_steward_overrides_win_over_every_rule() -> None:
    golden = survive([CRM, SHOP], overrides={"last_name": "Smith-Jones"})
    assert golden["last_name"].value == "Smith-Jones"
    assert golden["last_name"].rule == "steward_override"


def test_ties_break_the_same_way_whatever_the_input_order() -> None:
    same_time = [
        Member(7, "a", {"first_name": "Ann"}, _at(2)),
        Member(9, "b", {"first_name": "Anne"}, _at(2)),
    ]
    assert survive(same_time)["first_name"].source_record_id == 9
    assert survive(same_time[::-1])["first_name"].source_record_id == 9


def test_fields_nobody_knows_are_left_out() -> None:
    golden = survive([Member(1, "a", {"first_name": "Ann"}, None)])
    assert set(golden) == {"first_name"}

"""Match keys: folded, provider-aware and junk-free forms of each match field, and the frame
built from them."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmhub.dedupe.frame import MULTI_FIELDS, SCALAR_FIELDS
from crmhub.dedupe.normalize import (
    company_key,
    email_key,
    first_root,
    fold,
    match_frame,
    match_frame_chunked,
    name_key,
    phone_key,
    phonetic,
    postcode_key,
)
from crmhub.model import Person


def _person(**fields: object) -> Person:
    return Person.model_validate(
        {"source": "shop", "stream": "people", "external_id": "1", **fields},
        context={"region": "GB"},
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("José", "jose"),
        ("Müller", "muller"),
        ("Øystein", "oystein"),
        ("O'Brien", "o brien"),
        ("Straße", "strasse"),
        ("Æsir Łódź Đorđe", "aesir lodz dorde"),
        ("  Anne--Marie \t Smith ", "anne marie smith"),
    ],
)
def test_fold_drops_case_accents_and_punctuation(raw: str, expected: str) -> None:
    assert fold(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["J.O.H.N+news@gmail.com", "john@googlemail.com", "jo.hn+a+b@gmail.com", " John@Gmail.com "],
)
def test_gmail_ignores_dots_and_plus_tags_and_googlemail_is_gmail(raw: str) -> None:
    assert email_key(raw) == "john@gmail.com"


def test_other_providers_drop_their_tags_and_keep_their_dots() -> None:
    assert email_key("ann.lee+shop@me.com") == "ann.lee@icloud.com"
    assert email_key("ann.lee@mac.com") == email_key("ann.lee@icloud.com") == "ann.lee@icloud.com"
    assert email_key("ann.lee+x@outlook.com") == "ann.lee@outlook.com"
    assert email_key("ann.lee-shop@yahoo.co.uk") == "ann.lee@yahoo.co.uk"
    assert email_key("ann.lee@pm.me") == email_key("ann.lee@protonmail.com") == "ann.lee@proton.me"
    assert email_key("ann.lee+x@fastmail.com") == "ann.lee@fastmail.com"


def test_unknown_domains_are_only_lower_cased() -> None:
    assert email_key("Ann.Lee+x@Acme.co.uk") == "ann.lee+x@acme.co.uk"
    assert email_key("ann-lee@acme.com") == "ann-lee@acme.com"


@pytest.mark.parametrize(
    "raw",
    [
        "test@test.com",
        "a@a.com",
        "noreply@shop.com",
        "no-reply@shop.com",
        "ann@example.com",
        "ann@example.org",
        "none@acme.com",
        "unknown@acme.com",
        "asdf@gmail.com",
        "t.e.s.t+1@gmail.com",
        "not an address",
        "@acme.com",
    ],
)
def test_junk_emails_have_no_key(raw: str) -> None:
    assert email_key(raw) is None


def test_phone_key_is_the_digits_without_plus() -> None:
    assert phone_key("+442079460958") == "442079460958"
    assert phone_key("+44 20 7946 0958") == "442079460958"


@pytest.mark.parametrize(
    "raw", ["+44123456", "+440000000000", "+4411111111", "+441234567890", "+19876543210", ""]
)
def test_junk_phones_have_no_key(raw: str) -> None:
    assert phone_key(raw) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ACME Ltd.", "acme"),
        ("Acme Limited", "acme"),
        ("Müller GmbH & Co. KG", "muller"),
        ("The Boring Company", "boring"),
        ("Philips B.V.", "philips"),
        ("Société S.A.R.L.", "societe"),
        ("J.P. Morgan Chase & Co.", "jp morgan chase"),
        ("Company Ltd", None),
        ("Self-employed", None),
        ("n/a", None),
    ],
)
def test_company_key_drops_legal_forms(raw: str, expected: str | None) -> None:
    assert company_key(raw) == expected


def test_companies_match_however_their_legal_form_is_written() -> None:
    assert company_key("ACME Ltd.") == company_key("acme") == company_key("Acme Limited")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("sw1a 1aa", "SW1A1AA"), ("75-001", "75001"), ("N/A", None), ("00000", None), ("--", None)],
)
def test_postcode_key_is_upper_case_alphanumerics(raw: str, expected: str | None) -> None:
    assert postcode_key(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("Anne-Marie", "anne marie"), ("José", "jose"), ("J0hn", "jhn"), ("Test", None),
     ("N/A", None), ("Customer", None), ("123", None)],
)  # fmt: skip
def test_name_key_keeps_letters_and_rejects_placeholders(raw: str, expected: str | None) -> None:
    assert name_key(raw) == expected


@pytest.mark.parametrize(
    ("nickname", "root"),
    [("bob", "robert"), ("bill", "william"), ("robert", "robert"), ("william", "william"),
     ("liz", "elizabeth"), ("tom", "thomas"), ("zebedeus", "zebedeus")],
)  # fmt: skip
def test_nicknames_share_their_canonical_root(nickname: str, root: str) -> None:
    assert first_root(nickname) == root


def test_phonetic_codes_ignore_spaces_and_non_latin_names_have_none() -> None:
    assert phonetic("mc donald") == phonetic("mcdonald")
    assert phonetic("smith") == phonetic("smyth")
    assert phonetic("李") is None


def test_frame_has_every_field_in_record_order() -> None:
    people = [
        _person(
            first_name="Bob",
            last_name="O'Brien",
            emails=["Bob.OBrien+crm@gmail.com", "bobobrien@gmail.com", "test@test.com"],
            phones=["+44 20 7946 0958", "+44 1234 567890"],
            company="Müller GmbH",
            address={
                "line1": "1 High St.",
                "city": "Zürich",
                "postal_code": "8001",
                "country": "CH",
            },
            birth_date=date(1980, 2, 29),
            identifiers={"vat": " CHE-1 ", "customer": "42"},
        ),
        _person(last_name="Smith"),
    ]
    frame = match_frame([(7, people[0]), (3, people[1])])
    assert frame.ids.tolist() == [7, 3]
    assert set(frame.scalars) == set(SCALAR_FIELDS)
    assert set(frame.multis) == set(MULTI_FIELDS)
    assert all(c.dtype == object and c.shape == (2,) for c in frame.scalars.values())
    first = {name: frame.scalar(name)[0] for name in SCALAR_FIELDS}
    assert first == {
        "first_name": "bob", "last_name": "o brien", "full_name": "bob o brien",
        "first_initial": "b", "first_root": "robert", "first_phonetic": "BB",
        "last_phonetic": "OBRN", "company": "muller", "postcode": "8001", "city": "zurich",
        "country": "CH", "birth_date": "1980-02-29", "street": "1 high st",
    }  # fmt: skip
    assert frame.multi("emails")[0] == ("bobobrien@gmail.com",)
    assert frame.multi("phones")[0] == ("442079460958",)
    assert frame.multi("identifiers")[0] == ("customer:42", "vat:CHE-1")


def test_a_frame_built_in_chunks_equals_one_built_at_once() -> None:
    people = [
        (i, _person(first_name=f"Ann{i % 3}", last_name="Lee", emails=[f"a{i}@x.com"] * (i % 2)))
        for i in range(7)
    ]
    whole, chunked = match_frame(people), match_frame_chunked(iter(people), chunk_size=3)
    assert chunked.ids.tolist() == whole.ids.tolist()
    for name in SCALAR_FIELDS:
        assert chunked.scalar(name).tolist() == whole.scalar(name).tolist(), name
    for name in MULTI_FIELDS:
        assert chunked.multi(name) == whole.multi(name), name
    assert len(match_frame_chunked(iter([]))) == 0


def test_unknown_values_are_none_or_left_out() -> None:
    frame = match_frame([(1, _person(last_name="Smith", company="n/a", emails=["a@a.com"]))])
    unknown = [name for name in SCALAR_FIELDS if frame.scalar(name)[0] is None]
    assert sorted(unknown) == sorted(
        set(SCALAR_FIELDS) - {"last_name", "full_name", "last_phonetic"}
    )
    assert [frame.multi(name)[0] for name in MULTI_FIELDS] == [(), (), ()]
    assert frame.scalar("full_name")[0] == "smith"


def test_stored_values_are_left_alone() -> None:
    person = _person(first_name="José", emails=["j.o.se+x@gmail.com"])
    match_frame([(1, person)])
    assert (person.first_name, person.emails) == ("José", ["j.o.se+x@gmail.com"])


@pytest.mark.parametrize(
    ("full_name", "first", "last"),
    [("John Smith", "john", "smith"), ("Smith, John", "john", "smith"),
     ("Dr. Mary Ann O'Neil Jr.", "mary ann", "o neil"), ("Madonna", None, "madonna"),
     ("Smith, Jr.", None, "smith"), ("Jan van der Berg", "jan", "van der berg"),
     ("Mr. N/A", None, None)],
)  # fmt: skip
def test_full_name_is_split_when_first_and_last_are_missing(
    full_name: str, first: str | None, last: str | None
) -> None:
    frame = match_frame([(1, _person(full_name=full_name))])
    assert (frame.scalar("first_name")[0], frame.scalar("last_name")[0]) == (first, last)


def test_full_name_is_not_split_when_first_or_last_is_known() -> None:
    frame = match_frame([(1, _person(first_name="Ann", full_name="Jane Doe"))])
    assert (frame.scalar("first_name")[0], frame.scalar("last_name")[0]) == ("ann", None)


def test_empty_input_gives_an_empty_frame() -> None:
    frame = match_frame([])
    assert len(frame) == 0
    assert frame.ids.dtype == np.int64
    assert all(len(frame.scalar(name)) == 0 for name in SCALAR_FIELDS)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_key_functions_never_raise_on_any_text(text: str) -> None:
    for key in (fold, email_key, phone_key, company_key, name_key, postcode_key):
        key(text)
    folded = fold(text)
    assert fold(folded) == folded
    named = name_key(text)
    assert named is None or name_key(named) == named

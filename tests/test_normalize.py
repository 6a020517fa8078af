"""Normalisers: canonical forms for good values, NormalizationError (and nothing else) for bad
ones, and messages that never repeat the value."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmhub.errors import NormalizationError
from crmhub.normalize import (
    is_junk,
    normalize_country,
    normalize_email,
    normalize_name,
    normalize_phone,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  John.Smith@Example.COM ", "john.smith@example.com"),
        ("mailto:ana@example.org", "ana@example.org"),
        ("<ana+news@example.org>", "ana+news@example.org"),
        ("josé@exámple.com", "josé@exámple.com"),
    ],
)
def test_emails_are_trimmed_and_lower_cased(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw", ["plainaddress", "a@b", "two@@example.com", "a@b@example.com", "x" * 70 + "@e.com",
            "spaces in@example.com", "@example.com"],
)
def test_invalid_emails_are_rejected_without_echoing_the_value(raw: str) -> None:
    with pytest.raises(NormalizationError) as raised:
        normalize_email(raw)
    assert raw not in str(raised.value)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("020 7946 0958", "GB", "+442079460958"),
        ("+44 (0)20 7946 0958", None, "+442079460958"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("+49 30 901820", "GB", "+4930901820"),
    ],
)
def test_phones_become_e164_using_the_default_region(raw: str, region: str | None,
                                                     expected: str) -> None:
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize("raw", ["12", "not a phone", "0000", "020 7946 0958"])
def test_unparseable_phones_are_rejected(raw: str) -> None:
    with pytest.raises(NormalizationError) as raised:
        normalize_phone(raw, None)  # no region: a national number cannot be placed
    assert raw not in str(raised.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("gb", "GB"), ("GBR", "GB"), ("United Kingdom", "GB"), ("uk", "GB"), ("U.S.A.", "US"),
     ("Germany", "DE"), ("deutschland", "DE"), (" france ", "FR")],
)
def test_countries_become_iso_alpha_2(raw: str, expected: str) -> None:
    assert normalize_country(raw) == expected


def test_unknown_country_is_rejected() -> None:
    with pytest.raises(NormalizationError):
        normalize_country("Atlantis")


def test_names_are_nfc_normalised_and_single_spaced() -> None:
    decomposed = "Jose\u0301   Maria "
    assert normalize_name(decomposed) == "José Maria"


@pytest.mark.parametrize("raw", ["", "   ", "1234", "a\x00b"])
def test_names_without_letters_or_with_control_characters_are_rejected(raw: str) -> None:
    with pytest.raises(NormalizationError):
        normalize_name(raw)


@pytest.mark.parametrize("raw", [None, "", " ", "n/a", "N/A", "null", "unknown", "-"])
def test_placeholders_are_junk(raw: str | None) -> None:
    assert is_junk(raw)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_normalisers_raise_only_normalization_errors_on_any_text(raw: str) -> None:
    for normalise in (normalize_email, normalize_name, normalize_country,
                      lambda v: normalize_phone(v, "GB")):
        try:
            result = normalise(raw)
        except NormalizationError:
            continue
        assert isinstance(result, str) and result == result.strip()


@settings(max_examples=200, deadline=None)
@given(st.emails())
def test_every_generated_valid_email_is_accepted_and_idempotent(raw: str) -> None:
    try:
        once = normalize_email(raw)
    except NormalizationError:
        return  # hypothesis produces some RFC-valid forms (quoted parts) real systems reject
    assert normalize_email(once) == once

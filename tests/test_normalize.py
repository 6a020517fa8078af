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
    "raw",
    [
        "plainaddress",
        "a@b",
        "two@@example.com",
        "a@b@example.com",
        "x" * 70 + "@e.com",
        "spaces in@example.com",
        "@example.com",
    ],
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
def test_phones_become_e164_using_the_default_region(
    raw: str, region: str | None, expected: str
) -> None:
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize("raw", ["12", "not a phone", "0000", "020 7946 0958"])
def test_unparseable_phones_are_rejected(raw: str) -> None:
    with pytest.raises(NormalizationError) as raised:
        normalize_phone(raw, None)  # no region: a national number cannot be placed
    assert raw not in str(raised.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("gb", "GB"),
        ("GBR", "GB"),
        ("United Kingdom", "GB"),
        ("uk", "GB"),
        ("U.S.A.", "US"),
        ("Germany", "DE"),
        ("deutschland", "DE"),
        (" france ", "FR"),
    ],
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
    for normalise in (
        normalize_email,
        normalize_name,
        normalize_country,
        lambda v: normalize_phone(v, "GB"),
    ):
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


def _full_parser(value: str, region: str | None) -> str | None:
    from crmhub.normalize import _parse_e164

    try:
        return _parse_e164(value, region)
    except NormalizationError:
        return None


def test_fast_phone_path_agrees_with_the_full_parser_on_every_regions_examples() -> None:
    import phonenumbers

    from crmhub.normalize import _fast_e164

    checked = answered = 0
    formats = (
        phonenumbers.PhoneNumberFormat.NATIONAL,
        phonenumbers.PhoneNumberFormat.INTERNATIONAL,
        phonenumbers.PhoneNumberFormat.E164,
    )
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for number_type in (
            phonenumbers.PhoneNumberType.FIXED_LINE,
            phonenumbers.PhoneNumberType.MOBILE,
        ):
            example = phonenumbers.example_number_for_type(region, number_type)
            if example is None:
                continue
            for number_format in formats:
                text = phonenumbers.format_number(example, number_format)
                for given_region in (region, None, "GB", "US"):
                    fast = _fast_e164(text, given_region)
                    checked += 1
                    if fast is not None:
                        answered += 1
                        assert fast == _full_parser(text, given_region), (text, given_region)
    assert answered > checked // 3  # the fast path must actually serve most plain numbers


@settings(max_examples=2000, deadline=None)
@given(
    plus=st.booleans(),
    digits=st.text(alphabet="0123456789", min_size=1, max_size=16),
    separators=st.lists(st.sampled_from([" ", "-", ".", "(", ")", "/"]), max_size=4),
    region=st.sampled_from(["GB", "US", "DE", "FR", "ES", "NL", "IE", "IT", "AU", "IN", None]),
)
def test_fast_phone_path_never_disagrees_with_the_full_parser(
    plus: bool, digits: str, separators: list[str], region: str | None
) -> None:
    from crmhub.normalize import _fast_e164

    text = ("+" if plus else "") + digits
    for index, separator in enumerate(separators):
        position = 1 + (index * 3) % max(len(text) - 1, 1)
        text = text[:position] + separator + text[position:]
    fast = _fast_e164(text, region)
    if fast is not None:
        assert fast == _full_parser(text, region), (text, region)

"""Built-in mapping transforms: what each makes of good input, that bad input gives a
ValueError (and nothing else) whose message never repeats the value, and their registration."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmhub import transforms
from crmhub.transforms import BUILTIN_TRANSFORMS

UTC = UTC
T = BUILTIN_TRANSFORMS


def run(name: str, value: Any, /, **kwargs: Any) -> Any:
    return T[name](value, **kwargs)


@pytest.mark.parametrize(
    ("name", "kwargs", "value", "expected"),
    [
        ("strip", {}, "  Ann \t", "Ann"),
        ("strip", {}, 42, "42"),
        ("lower", {}, "ANN@X.COM", "ann@x.com"),
        ("upper", {}, "gbp", "GBP"),
        ("title", {}, "ann LEE", "Ann Lee"),
        ("collapse_whitespace", {}, "  a \t\n b  ", "a b"),
        ("join", {}, ["Ann", None, "", "Lee"], "Ann Lee"),
        ("join", {"sep": ", "}, ["a", 1], "a, 1"),
        ("join", {}, "already text", "already text"),
        ("join", {}, [], None),
        ("split", {}, "a, b,,c ", ["a", "b", "c"]),
        ("split", {"sep": ";"}, ["a;b", "c"], ["a", "b", "c"]),
        ("first", {}, ["a", "b"], "a"),
        ("first", {}, [], None),
        ("first", {}, "scalar", "scalar"),
        ("first_non_empty", {}, ["", None, "  ", "b"], "b"),
        ("first_non_empty", {}, "  ", None),
        ("compact", {}, ["a", "", None, " ", "b"], ["a", "b"]),
        ("e164", {"region": "US"}, "(415) 555-2671", "+14155552671"),
        ("e164", {}, "+44 20 7946 0958", "+442079460958"),
        ("e164", {}, "  ", None),
        ("email", {}, " Ann@Example.COM ", "ann@example.com"),
        ("iso_country", {}, "United Kingdom", "GB"),
        ("iso_country", {}, "deu", "DE"),
        ("minor_units", {}, "12.34", 1234),
        ("minor_units", {}, 12.34, 1234),
        ("minor_units", {}, "-0.5", -50),
        ("minor_units", {}, 7, 700),
        ("minor_units", {"digits": 0}, "1500", 1500),
        ("minor_units", {"digits": 3}, Decimal("1.234"), 1234),
        ("minor_units", {}, "", None),
        ("major_units", {}, 1234, "12.34"),
        ("major_units", {}, -5, "-0.05"),
        ("major_units", {"digits": 0}, 1500, "1500"),
        ("major_units", {}, "700", "7.00"),
        ("bool", {}, "Yes", True),
        ("bool", {}, "OFF", False),
        ("bool", {}, "y", True),
        ("bool", {}, "0", False),
        ("bool", {}, 1, True),
        ("bool", {}, False, False),
        ("bool", {}, "", None),
        ("int", {}, " 42 ", 42),
        ("int", {}, 42.0, 42),
        ("int", {}, "1e3", 1000),
        ("int", {}, "", None),
        ("float", {}, " 4.5 ", 4.5),
        ("float", {}, 3, 3.0),
        ("str", {}, 42, "42"),
        ("str", {}, True, "true"),
        ("str", {}, date(2024, 5, 1), "2024-05-01"),
        ("constant", {"value": "web"}, None, "web"),
        ("constant", {"value": "web"}, "other", "web"),
        ("default", {"value": "free"}, None, "free"),
        ("default", {"value": "free"}, "  ", "free"),
        ("default", {"value": "free"}, ["", None], "free"),
        ("default", {"value": "free"}, "pro", "pro"),
        ("map", {"values": {"N/A": None, "M": "male"}}, "M", "male"),
        ("map", {"values": {"N/A": None}}, " N/A ", None),
        ("map", {"values": {"M": "male"}}, "X", "X"),
        ("map", {"values": {"M": "male"}, "default": "other"}, "X", "other"),
        ("map", {"values": {"1": "one", "true": "yes"}}, 1, "one"),
        ("map", {"values": {"true": "yes"}}, True, "yes"),
        ("map", {"values": {2: "two"}}, 2, "two"),
        ("consent", {}, "Yes", "granted"),
        ("consent", {}, "subscribed", "granted"),
        ("consent", {}, True, "granted"),
        ("consent", {}, "no", "denied"),
        ("consent", {}, "unsubscribed", "denied"),
        ("consent", {}, "cleaned", "denied"),
        ("consent", {}, "pending", "unknown"),
        ("consent", {}, "", "unknown"),
        ("consent", {}, "maybe", "unknown"),
        ("iso_date", {}, date(1980, 1, 31), "1980-01-31"),
        ("iso_date", {}, datetime(2024, 5, 1, 10, tzinfo=UTC), "2024-05-01T10:00:00+00:00"),
    ],
)
def test_transform_turns_good_input_into_its_canonical_form(
    name: str, kwargs: dict[str, Any], value: Any, expected: Any
) -> None:
    assert run(name, value, **kwargs) == expected


@pytest.mark.parametrize(
    ("full_name", "first", "last"),
    [
        ("John Smith", "John", "Smith"),
        ("Smith, John", "John", "Smith"),
        ("  Smith ,  John Paul ", "John Paul", "Smith"),
        ("Mary Ann Lee", "Mary Ann", "Lee"),
        ("Ludwig van Beethoven", "Ludwig", "van Beethoven"),
        ("Dr. Jane Doe", "Jane", "Doe"),
        ("John Smith Jr.", "John", "Smith Jr."),
        ("Cher", "Cher", None),
        ("   ", None, None),
    ],
)
def test_split_name_splits_first_and_last_names(
    full_name: str, first: str | None, last: str | None
) -> None:
    assert run("split_name", full_name) == first
    assert run("split_name", full_name, part="last") == last


@pytest.mark.parametrize(
    ("kwargs", "value", "expected"),
    [
        ({}, "2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ({}, "2024-05-01T12:00:00+02:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ({}, "2024-05-01T10:00:00.250Z", datetime(2024, 5, 1, 10, 0, 0, 250000, tzinfo=UTC)),
        ({}, "2024-05-01 10:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ({}, "2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        ({}, 1714557600, datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ({}, "1714557600", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ({}, 1714557600123, datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=UTC)),
        ({"unit": "ms"}, "1714557600000", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ({"unit": "s"}, 1714557600.5, datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=UTC)),
        ({"format": "%d/%m/%Y %H:%M"}, "01/05/2024 10:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ({}, datetime(2024, 5, 1, 10), datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ({}, date(2024, 5, 1), datetime(2024, 5, 1, tzinfo=UTC)),
        ({}, " ", None),
    ],
)
def test_timestamp_reads_iso_epoch_and_formats_as_aware_utc(
    kwargs: dict[str, Any], value: Any, expected: datetime | None
) -> None:
    result = run("timestamp", value, **kwargs)
    assert result == expected
    if result is not None:
        assert result.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("kwargs", "value", "expected"),
    [
        ({}, "1980-01-31", date(1980, 1, 31)),
        ({}, "1980-01-31T23:00:00Z", date(1980, 1, 31)),
        ({"format": "%d/%m/%Y"}, "31/01/1980", date(1980, 1, 31)),
        ({}, datetime(1980, 1, 31, 5), date(1980, 1, 31)),
        ({}, "", None),
    ],
)
def test_date_reads_iso_dates_timestamps_and_formats(
    kwargs: dict[str, Any], value: Any, expected: date | None
) -> None:
    assert run("date", value, **kwargs) == expected


@pytest.mark.parametrize(
    ("name", "kwargs", "value"),
    [
        ("date", {"format": "%d/%m/%Y"}, "31/02/1980"),
        ("date", {}, "1980-02-31"),
        ("date", {}, "Tuesday-secret"),
        ("timestamp", {}, "yesterday-secret"),
        ("timestamp", {"format": "%d/%m/%Y"}, "2024-05-01-secret"),
        ("timestamp", {}, 10**30),
        ("timestamp", {}, float("nan")),
        ("minor_units", {}, "twelve-secret"),
        ("minor_units", {}, "12.345"),
        ("minor_units", {}, "NaN"),
        ("minor_units", {}, "1e999999999"),
        ("minor_units", {}, True),
        ("major_units", {}, 12.5),
        ("int", {}, "4.5"),
        ("int", {}, "forty-two-secret"),
        ("float", {}, "inf"),
        ("bool", {}, "perhaps-secret"),
        ("bool", {}, 2),
        ("email", {}, "no-at-sign-secret"),
        ("e164", {}, "12345-secret"),
        ("iso_country", {}, "Atlantis-secret"),
        ("strip", {}, {"a": 1}),
        ("str", {}, ["a"]),
        ("join", {}, [{"a": 1}]),
        ("consent", {}, 3.5),
        ("iso_date", {}, 12),
    ],
)
def test_bad_input_raises_value_error_without_the_value(
    name: str, kwargs: dict[str, Any], value: Any
) -> None:
    with pytest.raises(ValueError) as caught:
        run(name, value, **kwargs)
    message = str(caught.value)
    assert message
    assert "secret" not in message
    assert repr(value) not in message


def test_list_level_transforms_are_marked_and_others_are_elementwise() -> None:
    list_level = {name for name, fn in T.items() if getattr(fn, "elementwise", True) is False}
    assert {"first", "first_non_empty", "join", "split", "compact"} <= list_level
    assert {"strip", "e164", "timestamp", "map", "consent"}.isdisjoint(list_level)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("split_name", {"part": "middle"}),
        ("map", {"values": ["a", "b"]}),
        ("minor_units", {"digits": "two"}),
        ("timestamp", {"unit": "h"}),
        ("date", {"format": 12}),
        ("e164", {"region": "Narnia"}),
        ("split", {"sep": ""}),
    ],
)
def test_check_args_rejects_arguments_of_the_wrong_shape(name: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        T[name].check_args(**kwargs)  # type: ignore[attr-defined]


def test_register_transforms_registers_every_builtin() -> None:
    registered: dict[str, Any] = {}
    transforms.register_transforms(lambda name, fn: registered.__setitem__(name, fn))
    assert registered == dict(BUILTIN_TRANSFORMS)


def test_plugin_manager_offers_the_builtin_transforms() -> None:
    from crmhub.plugins import Plugins

    found = Plugins(load_entry_points=False).transforms()
    assert set(BUILTIN_TRANSFORMS) <= set(found)


def test_every_transform_has_a_one_line_docstring_with_an_example() -> None:
    for name, fn in BUILTIN_TRANSFORMS.items():
        doc = fn.__doc__ or ""
        assert doc.strip(), name
        assert "->" in doc, name


# --------------------------------------------------------------------------- properties

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.decimals()
    | st.dates()
    | st.datetimes(timezones=st.none() | st.just(UTC)),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=8,
)
numeric_text = st.from_regex(r"\A\s?[+-]?\d{0,25}(\.\d{0,8})?([eE][+-]?\d{1,4})?\s?\Z")

KWARGS: dict[str, list[dict[str, Any]]] = {
    "split_name": [{}, {"part": "last"}],
    "join": [{}, {"sep": "-"}],
    "split": [{}, {"sep": ";"}],
    "e164": [{}, {"region": "US"}],
    "minor_units": [{}, {"digits": 0}, {"digits": 3}],
    "major_units": [{}, {"digits": 4}],
    "timestamp": [{}, {"unit": "s"}, {"unit": "ms"}, {"format": "%d/%m/%Y"}],
    "date": [{}, {"format": "%Y%m%d"}],
    "constant": [{"value": 1}],
    "default": [{"value": "x"}],
    "map": [{"values": {"a": 1}}, {"values": {"a": 1}, "default": None}],
}
CASES = [(name, kwargs) for name in BUILTIN_TRANSFORMS for kwargs in KWARGS.get(name, [{}])]


@settings(max_examples=200, deadline=None)
@given(value=json_values | numeric_text)
def test_every_transform_raises_nothing_but_value_error_on_arbitrary_input(value: Any) -> None:
    # Every transform sees every generated value: generating is what costs, not the calls.
    for name, kwargs in CASES:
        try:
            T[name](value, **kwargs)
        except ValueError:
            pass
        except Exception as exc:  # pragma: no cover - the failure report
            pytest.fail(f"{name}({kwargs}) raised {type(exc).__name__}")

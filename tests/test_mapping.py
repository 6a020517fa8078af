"""Declarative mappings: the built-in files map good rows, every invalid file is rejected with
its file and line, bad rows give value-free problems instead of records, and apply never raises."""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmhub.errors import MappingError, RecordError
from crmhub.mapping import MappingFile, StreamMapping, load_mapping
from crmhub.model import Activity, Person
from crmhub.transforms import BUILTIN_TRANSFORMS

UTC = UTC

PEOPLE_ROW = {
    "id": "42",
    "first_name": "Ann",
    "last_name": "Lee",
    "email": "ann.lee@example.com",
    "phone": "+442079460958",
    "company": "Acme Ltd",
    "job_title": "CTO",
    "street": "1 High Street",
    "city": "London",
    "postcode": "SW1A 1AA",
    "country": "GB",
    "birth_date": "1980-01-31",
    "newsletter": "yes",
    "updated_at": "2024-05-01T10:00:00Z",
    "person_key": "pk-1",
}
ACTIVITY_ROW = {
    "id": "inv-7",
    "customer_id": "42",
    "type": "Invoice",
    "occurred_at": "2024-05-01T10:00:00Z",
    "amount": "12.34",
    "currency": "gbp",
    "status": "paid",
    "subject": "May invoice",
    "updated_at": "2024-05-02T00:00:00Z",
}


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def stream_of(tmp_path: Path, text: str, **kwargs: Any) -> StreamMapping:
    return load_mapping(write(tmp_path, text), **kwargs).stream("s")


def people(**overrides: Any) -> dict[str, Any]:
    return {**PEOPLE_ROW, **overrides}


@pytest.fixture(scope="module")
def people_file() -> StreamMapping:
    return load_mapping("people_file").stream("contacts")


@pytest.fixture(scope="module")
def activities_file() -> StreamMapping:
    return load_mapping("activities_file").stream("invoices")


# --------------------------------------------------------------------------- built-in mappings


def test_people_file_maps_a_good_row_to_a_person(people_file: StreamMapping) -> None:
    result = people_file.apply(PEOPLE_ROW, source="files", stream="contacts", region="GB")
    assert result.problems == []
    person = result.record
    assert isinstance(person, Person)
    assert (person.source, person.stream, person.external_id) == ("files", "contacts", "42")
    assert (person.first_name, person.last_name, person.title) == ("Ann", "Lee", "CTO")
    assert person.emails == ["ann.lee@example.com"]
    assert person.phones == ["+442079460958"]
    assert person.address is not None
    assert (person.address.line1, person.address.city) == ("1 High Street", "London")
    assert (person.address.postal_code, person.address.country) == ("SW1A 1AA", "GB")
    assert person.birth_date == date(1980, 1, 31)
    assert person.consent["email"].status == "granted"
    assert person.updated_at == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert person.attributes == {"person_key": "pk-1"}


def test_people_file_reads_national_phones_in_the_sync_region(people_file: StreamMapping) -> None:
    row = people(phone="020 7946 0958", newsletter="", country="United Kingdom")
    person = people_file.apply(row, source="files", stream="c", region="GB").record
    assert person is not None
    assert person.phones == ["+442079460958"]
    assert person.consent["email"].status == "unknown"
    assert person.address is not None and person.address.country == "GB"


def test_activities_file_maps_a_good_row_to_an_activity(activities_file: StreamMapping) -> None:
    result = activities_file.apply(ACTIVITY_ROW, source="files", stream="invoices")
    assert result.problems == []
    activity = result.record
    assert isinstance(activity, Activity)
    assert (activity.external_id, activity.person_external_id) == ("inv-7", "42")
    assert (activity.kind, activity.amount, activity.currency) == ("invoice", 1234, "GBP")
    assert activity.occurred_at == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert (activity.status, activity.subject) == ("paid", "May invoice")


def test_builtin_mapping_source_fields_are_the_file_columns(
    people_file: StreamMapping, activities_file: StreamMapping
) -> None:
    assert people_file.source_fields == set(PEOPLE_ROW)
    assert activities_file.source_fields == set(ACTIVITY_ROW)
    assert people_file.kind == "person"
    assert activities_file.kind == "activity"


def test_builtin_mapping_is_found_by_name_and_by_file_name() -> None:
    by_name = load_mapping("people_file")
    assert by_name.path.endswith("people_file.yaml")
    assert load_mapping("people_file.yaml").fingerprint == by_name.fingerprint
    assert by_name.system == "files"


def test_fingerprint_changes_when_the_mapping_changes(tmp_path: Path) -> None:
    text = "streams:\n  s:\n    fields:\n      external_id: id\n"
    first = load_mapping(write(tmp_path, text))
    again = load_mapping(write(tmp_path, text))
    changed = load_mapping(write(tmp_path, text + "      first_name: fn\n"))
    assert first.fingerprint == again.fingerprint
    assert first.fingerprint != changed.fingerprint


def test_relative_path_is_resolved_against_base_dir(tmp_path: Path) -> None:
    write(tmp_path, "streams:\n  s:\n    fields:\n      external_id: id\n", name="shop.yaml")
    mapping = load_mapping("shop.yaml", base_dir=tmp_path)
    assert mapping.path == str(tmp_path / "shop.yaml")


def test_stream_falls_back_to_star_and_unknown_stream_names_the_file(tmp_path: Path) -> None:
    star = load_mapping("people_file")
    assert star.stream("anything") is star.stream("*")
    path = write(tmp_path, "streams:\n  people:\n    fields:\n      external_id: id\n")
    mapping = load_mapping(path)
    assert isinstance(mapping, MappingFile)
    with pytest.raises(MappingError) as caught:
        mapping.stream("orders")
    assert str(path) in str(caught.value)
    assert "orders" in str(caught.value)


def test_line_of_gives_the_line_where_a_target_is_mapped(tmp_path: Path) -> None:
    stream = stream_of(
        tmp_path,
        """
        streams:
          s:
            fields:
              external_id: id
              first_name: fn
        """,
    )
    assert stream.line_of("external_id") == 4
    assert stream.line_of("first_name") == 5
    assert stream.line_of("last_name") is None


# --------------------------------------------------------------------------- load-time errors


def assert_load_error(path: Path, line: int | None, *fragments: str, **kwargs: Any) -> None:
    with pytest.raises(MappingError) as caught:
        load_mapping(path, **kwargs)
    error = caught.value
    assert error.file == str(path)
    assert error.line == line
    message = str(error)
    assert message.startswith(f"{path}:{line}:" if line else f"{path}:")
    for fragment in fragments:
        assert fragment in message


def test_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "streams:\n  s:\n    fields: {external_id: id\n    kind: person\n")
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    assert caught.value.file == str(path)
    assert caught.value.line in (3, 4)
    assert "invalid YAML" in str(caught.value)


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    assert_load_error(write(tmp_path, "# nothing\n"), 1, "empty")


def test_duplicate_key_is_rejected_at_its_second_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        streams:
          s:
            fields:
              external_id: id
              first_name: fn
              first_name: given
        """,
    )
    assert_load_error(path, 6, "duplicate key 'first_name'", "line 5")


def test_unknown_top_level_key_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "system: x\nstreamz:\n  s: {}\n")
    assert_load_error(path, 2, "unknown key 'streamz'", "did you mean 'streams'")


def test_unknown_stream_key_is_rejected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        streams:
          s:
            fields:
              external_id: id
            pull: {}
        """,
    )
    assert_load_error(path, 5, "unknown key 'pull'", "stream 's'")


def test_unknown_spec_key_is_rejected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        streams:
          s:
            fields:
              external_id: id
              first_name: {from: fn, transfrom: strip}
        """,
    )
    assert_load_error(path, 5, "unknown key 'transfrom'", "did you mean 'transform'")


def test_bad_kind_is_rejected(tmp_path: Path) -> None:
    path = write(
        tmp_path, "streams:\n  s:\n    kind: company\n    fields:\n      external_id: id\n"
    )
    assert_load_error(path, 3, "kind must be 'person' or 'activity'")


def test_unknown_canonical_target_is_rejected_with_the_allowed_targets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        streams:
          s:
            fields:
              external_id: id
              emial: email
        """,
    )
    assert_load_error(path, 5, "unknown canonical field 'emial'", "'emails'", "consent.<")


@pytest.mark.parametrize(
    "target", ["address.planet", "consent.fax", "identifiers.", "attributes.a.b", "amount"]
)
def test_canonical_targets_are_checked_against_the_model(tmp_path: Path, target: str) -> None:
    text = f"streams:\n  s:\n    fields:\n      external_id: id\n      {target}: x\n"
    assert_load_error(write(tmp_path, text), 5, f"unknown canonical field {target!r}")


@pytest.mark.parametrize("target", ["source", "stream"])
def test_engine_fields_cannot_be_mapped(tmp_path: Path, target: str) -> None:
    text = f"streams:\n  s:\n    fields:\n      external_id: id\n      {target}: x\n"
    assert_load_error(write(tmp_path, text), 5, "set by the sync engine")


def test_target_mapped_whole_and_in_parts_is_rejected(tmp_path: Path) -> None:
    text = "streams:\n  s:\n    fields:\n      external_id: id\n      address: a\n"
    text += "      address.city: c\n"
    assert_load_error(write(tmp_path, text), 6, "'address.city' overlaps 'address'", "line 5")


def test_unknown_transform_is_rejected_with_close_matches(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        streams:
          s:
            fields:
              external_id: id
              first_name:
                from: fn
                transform: [strip, titel]
        """,
    )
    assert_load_error(path, 7, "unknown transform 'titel'", "'title'")


def test_transform_arguments_that_do_not_bind_are_rejected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        streams:
          s:
            fields:
              external_id: id
              phones:
                from: phone
                transform: {e164: {regoin: US}}
        """,
    )
    assert_load_error(path, 7, "transform 'e164'", "regoin")


def test_missing_required_transform_argument_is_rejected(tmp_path: Path) -> None:
    text = "streams:\n  s:\n    fields:\n      external_id: {from: id, transform: map}\n"
    assert_load_error(write(tmp_path, text), 4, "transform 'map'", "values")


@pytest.mark.parametrize(
    ("transform", "fragment"),
    [
        ("{e164: US}", "must be a mapping"),
        ("{split_name: {part: middle}}", "part must be 'first' or 'last'"),
        ("{map: {values: [a, b]}}", "values must be a mapping"),
        ("{minor_units: {digits: two}}", "digits must be an integer"),
        ("[strip, 3]", "a transform is a name"),
    ],
)
def test_transform_argument_of_the_wrong_shape_is_rejected(
    tmp_path: Path, transform: str, fragment: str
) -> None:
    spec = f"{{from: fn, transform: {transform}}}"
    text = f"streams:\n  s:\n    fields:\n      external_id: id\n      first_name: {spec}\n"
    assert_load_error(write(tmp_path, text), 5, fragment)


@pytest.mark.parametrize(
    "spec", ["{from: fn, value: Ann}", "{transform: strip}", "{from: []}", "{from: 3}", "12"]
)
def test_spec_needs_exactly_one_of_from_and_value(tmp_path: Path, spec: str) -> None:
    text = f"streams:\n  s:\n    fields:\n      external_id: id\n      first_name: {spec}\n"
    assert_load_error(write(tmp_path, text), 5)


def test_missing_external_id_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "streams:\n  s:\n    kind: person\n    fields:\n      first_name: fn\n")
    assert_load_error(path, 4, "'external_id' must be mapped")


def test_activity_must_map_kind_and_occurred_at(tmp_path: Path) -> None:
    text = "streams:\n  s:\n    kind: activity\n    fields:\n      external_id: id\n      kind: t\n"
    assert_load_error(write(tmp_path, text), 4, "'occurred_at' must be mapped")


def test_push_reading_an_unknown_canonical_field_is_rejected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        streams:
          s:
            fields:
              external_id: id
            push:
              id: external_id
              mail: {from: email, transform: first}
        """,
    )
    assert_load_error(path, 7, "unknown canonical field 'email'", "'emails'")


def test_missing_file_names_the_built_in_mappings(tmp_path: Path) -> None:
    assert_load_error(tmp_path / "nope.yaml", None, "no such mapping file", "people_file")


# --------------------------------------------------------------------------- bad rows


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"email": "ann.lee-at-example"}, "emails (from 'email'): email must contain exactly one"),
        ({"birth_date": "1980-02-31"}, "birth_date (from 'birth_date'): not a date"),
        ({"id": ""}, "external_id (from 'id'): missing"),
        ({"phone": "12"}, "phones (from 'phone'): phone"),
        ({"country": "Atlantisland"}, "address.country (from 'country'): country"),
        ({"updated_at": "last tuesday"}, "updated_at (from 'updated_at'): not an ISO-8601"),
    ],
)
def test_bad_row_gives_problems_without_the_value_and_no_record(
    people_file: StreamMapping, overrides: dict[str, str], expected: str
) -> None:
    result = people_file.apply(people(**overrides), source="files", stream="c", region="GB")
    assert result.record is None
    assert any(problem.startswith(expected) for problem in result.problems), result.problems
    for value in overrides.values():
        if value:
            assert all(value not in problem for problem in result.problems)


def test_every_problem_of_a_row_is_reported_once(people_file: StreamMapping) -> None:
    row = people(id="", email="nope", birth_date="31/01/1980")
    problems = people_file.apply(row, source="f", stream="c", region="GB").problems
    assert len(problems) == 3
    assert sorted(problem.split(" ", 1)[0] for problem in problems) == [
        "birth_date",
        "emails",
        "external_id",
    ]


def test_bad_amount_gives_a_problem_without_the_value(activities_file: StreamMapping) -> None:
    row = {**ACTIVITY_ROW, "amount": "twelve pounds"}
    result = activities_file.apply(row, source="f", stream="i")
    assert result.record is None
    assert result.problems == ["amount (from 'amount'): amount is not a number"]


def test_transform_error_message_that_repeats_the_value_is_not_passed_on(tmp_path: Path) -> None:
    def leaky(value: Any) -> Any:
        raise ValueError(f"cannot use {value}")

    def crashing(value: Any) -> Any:
        raise KeyError(value)

    stream = stream_of(
        tmp_path,
        """
        streams:
          s:
            fields:
              external_id: id
              first_name: {from: fn, transform: leaky}
              last_name: {from: ln, transform: crashing}
        """,
        transforms={**BUILTIN_TRANSFORMS, "leaky": leaky, "crashing": crashing},
    )
    result = stream.apply(
        {"id": "1", "fn": "Secretname", "ln": "Hiddenname"}, source="f", stream="s"
    )
    assert result.record is None
    assert result.problems == [
        "first_name (from 'fn'): rejected by transform 'leaky'",
        "last_name (from 'ln'): transform 'crashing' failed (KeyError)",
    ]


def test_apply_on_a_non_mapping_gives_a_problem(people_file: StreamMapping) -> None:
    result = people_file.apply(["not", "a", "dict"], source="f", stream="c")  # type: ignore[arg-type]
    assert result.record is None
    assert result.problems


# --------------------------------------------------------------------------- values

SPEC_FILE = """
streams:
  s:
    kind: person
    fields:
      external_id: {from: id, transform: str}
      full_name: {from: [name, display_name]}
      emails: {from: [email, email_2, contact.emails]}
      phones: {from: phone, transform: {e164: {region: US}}}
      company: {from: company, transform: [strip, {map: {values: {"N/A": null}}}]}
      first_name: {from: profile.names.0}
      address.city: {from: city, transform: title}
      identifiers.customer_number: customer_no
      attributes.plan: {from: plan, default: free}
      attributes.answer: {from: answer, transform: {map: {values: {no: declined}}}}
      lawful_basis: {value: contract}
      deleted: {from: is_deleted, transform: bool, default: false}
      consent.email: {from: newsletter, transform: consent}
    push:
      email: {from: emails, transform: first}
      phone: {from: phones, transform: first}
      name: full_name
      plan: attributes.plan
      nested.city: address.city
"""


@pytest.fixture(scope="module")
def spec_stream(tmp_path_factory: pytest.TempPathFactory) -> StreamMapping:
    return stream_of(tmp_path_factory.mktemp("spec"), SPEC_FILE)


def apply_ok(stream: StreamMapping, raw: dict[str, Any]) -> Person:
    result = stream.apply(raw, source="test", stream="s", region="GB")
    assert result.problems == []
    assert isinstance(result.record, Person)
    return result.record


def test_missing_source_fields_give_none_or_the_default(spec_stream: StreamMapping) -> None:
    person = apply_ok(spec_stream, {"id": 7})
    assert person.external_id == "7"
    assert (person.full_name, person.company, person.first_name, person.address) == (
        None,
        None,
        None,
        None,
    )
    assert person.emails == [] and person.phones == []
    assert person.attributes == {"plan": "free"}
    assert person.identifiers == {}
    assert person.deleted is False
    assert person.lawful_basis == "contract"
    assert person.consent == {}


def test_blank_values_count_as_missing_and_take_the_default(spec_stream: StreamMapping) -> None:
    person = apply_ok(spec_stream, {"id": "7", "plan": "  ", "is_deleted": "", "company": "N/A"})
    assert person.attributes == {"plan": "free"}
    assert person.deleted is False
    assert person.company is None


def test_list_target_collects_non_empty_values_from_several_sources(
    spec_stream: StreamMapping,
) -> None:
    raw = {
        "id": "7",
        "email": "",
        "email_2": "B@Example.com",
        "contact": {"emails": ["c@example.com", None, "b@example.com"]},
        "phone": ["(415) 555-2671", "", None],
    }
    person = apply_ok(spec_stream, raw)
    assert person.emails == ["b@example.com", "c@example.com"]
    assert person.phones == ["+14155552671"]


def test_scalar_target_takes_the_first_non_empty_of_several_sources(
    spec_stream: StreamMapping,
) -> None:
    person = apply_ok(spec_stream, {"id": "7", "name": " ", "display_name": "Ann Lee"})
    assert person.full_name == "Ann Lee"
    person = apply_ok(spec_stream, {"id": "7", "name": "Ann B. Lee", "display_name": "Ann"})
    assert person.full_name == "Ann B. Lee"


def test_dotted_paths_reach_into_nested_dicts_and_lists(spec_stream: StreamMapping) -> None:
    person = apply_ok(spec_stream, {"id": "7", "profile": {"names": ["Ann", "Lee"]}})
    assert person.first_name == "Ann"
    flat = apply_ok(spec_stream, {"id": "7", "profile.names.0": "Bo"})
    assert flat.first_name == "Bo"


def test_transform_chain_constants_and_nested_targets(spec_stream: StreamMapping) -> None:
    raw = {
        "id": "7",
        "company": "  Acme  ",
        "city": "new york",
        "customer_no": "C-1",
        "plan": "pro",
        "answer": "no",
        "is_deleted": "Yes",
        "newsletter": "unsubscribed",
    }
    person = apply_ok(spec_stream, raw)
    assert person.company == "Acme"
    assert person.address is not None and person.address.city == "New York"
    assert person.identifiers == {"customer_number": "C-1"}
    assert person.attributes == {"plan": "pro", "answer": "declined"}
    assert person.deleted is True
    assert person.consent["email"].status == "denied"


def test_to_canonical_dict_gives_the_dict_before_validation(spec_stream: StreamMapping) -> None:
    data, problems = spec_stream.to_canonical_dict({"id": "7", "city": "leeds"})
    assert problems == []
    assert data == {
        "external_id": "7",
        "address": {"city": "Leeds"},
        "attributes": {"plan": "free"},
        "lawful_basis": "contract",
        "deleted": False,
    }
    data, problems = spec_stream.to_canonical_dict({"id": "7", "is_deleted": "maybe"})
    assert data is None
    assert problems == ["deleted (from 'is_deleted'): not a yes/no value"]


def test_required_spec_and_required_source_fields_reject_rows_missing_them(
    tmp_path: Path,
) -> None:
    stream = stream_of(
        tmp_path,
        """
        streams:
          s:
            fields:
              external_id: id
              last_name: {from: ln, required: true}
            required: [email]
        """,
    )
    result = stream.apply({"id": "1", "ln": " "}, source="f", stream="s")
    assert result.record is None
    assert result.problems == [
        "required source field 'email': missing",
        "last_name (from 'ln'): missing",
    ]
    ok = stream.apply({"id": "1", "ln": "Lee", "email": "x"}, source="f", stream="s")
    assert ok.record is not None
    assert stream.source_fields == {"id", "ln", "email"}


def test_plugin_transform_passed_in_is_usable(tmp_path: Path) -> None:
    def reverse(value: str, *, times: int = 1) -> str:
        """A plugin transform: ``"abc"`` -> ``"cba"``."""
        return value[::-1] if times % 2 else value

    stream = stream_of(
        tmp_path,
        """
        streams:
          s:
            fields:
              external_id: id
              last_name: {from: ln, transform: [strip, {reverse: {times: 3}}]}
        """,
        transforms={**BUILTIN_TRANSFORMS, "reverse": reverse},
    )
    result = stream.apply({"id": "1", "ln": " eeL "}, source="f", stream="s")
    assert result.record is not None and result.record.last_name == "Lee"


def test_plugin_transforms_are_unknown_without_the_registry(tmp_path: Path) -> None:
    text = "streams:\n  s:\n    fields:\n      external_id: {from: id, transform: reverse}\n"
    assert_load_error(write(tmp_path, text), 4, "unknown transform 'reverse'")


# --------------------------------------------------------------------------- push


def test_push_round_trip_gives_back_the_mapped_source_fields(people_file: StreamMapping) -> None:
    person = people_file.apply(PEOPLE_ROW, source="files", stream="c", region="GB").record
    assert person is not None
    pushed = people_file.to_source(person)
    not_pushed = {"birth_date", "newsletter", "updated_at", "person_key"}
    assert pushed == {name: value for name, value in PEOPLE_ROW.items() if name not in not_pushed}


def test_push_reads_canonical_dicts_and_builds_nested_keys(spec_stream: StreamMapping) -> None:
    pushed = spec_stream.to_source(
        {"emails": [], "phones": ["+14155552671"], "address": {"city": "Leeds"}}
    )
    assert pushed == {
        "email": None,
        "phone": "+14155552671",
        "name": None,
        "plan": None,
        "nested": {"city": "Leeds"},
    }


def test_push_without_a_push_section_gives_an_empty_dict(
    activities_file: StreamMapping,
) -> None:
    activity = activities_file.apply(ACTIVITY_ROW, source="f", stream="i").record
    assert activity is not None
    assert activities_file.to_source(activity) == {}


def test_push_transform_failure_raises_record_error(tmp_path: Path) -> None:
    stream = stream_of(
        tmp_path,
        """
        streams:
          s:
            fields:
              external_id: id
            push:
              amount: {from: attributes.total, transform: major_units}
        """,
    )
    with pytest.raises(RecordError) as caught:
        stream.to_source({"external_id": "9", "attributes": {"total": "lots"}})
    assert caught.value.record_id == "9"
    assert caught.value.problems == ["amount (from 'attributes.total'): amount is not a number"]


# --------------------------------------------------------------------------- properties

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)


SPEC_COLUMNS = [
    *("id", "name", "display_name", "email", "email_2", "contact", "phone", "company"),
    *("profile", "city", "customer_no", "plan", "answer", "is_deleted", "newsletter"),
]


def column_rows(
    columns: list[str], values: st.SearchStrategy[Any] | None = None
) -> st.SearchStrategy[dict[str, Any]]:
    """Rows with some of the real column names, holding arbitrary text (or ``values``)."""
    strategy = st.text(max_size=25) if values is None else values
    return st.fixed_dictionaries({}, optional={name: strategy for name in columns})


def assert_record_or_problems(stream: StreamMapping, raw: dict[str, Any]) -> None:
    result = stream.apply(raw, source="files", stream="s", region="GB")
    assert (result.record is None) == bool(result.problems)


@settings(max_examples=200, deadline=None)
@given(
    raw=st.dictionaries(st.text(max_size=12), json_values, max_size=5)
    | column_rows(SPEC_COLUMNS)
    | column_rows(SPEC_COLUMNS, json_values)
)
def test_apply_on_arbitrary_dicts_never_raises(
    spec_stream: StreamMapping, raw: dict[str, Any]
) -> None:
    assert_record_or_problems(spec_stream, raw)


@settings(max_examples=200, deadline=None)
@given(raw=column_rows(list(PEOPLE_ROW)) | column_rows(list(ACTIVITY_ROW)))
def test_apply_of_builtin_mappings_on_arbitrary_text_never_raises(
    people_file: StreamMapping, activities_file: StreamMapping, raw: dict[str, Any]
) -> None:
    assert_record_or_problems(people_file, raw)
    assert_record_or_problems(activities_file, raw)


CANARY = "Qx7"
canary_text = st.tuples(st.text(max_size=8), st.text(max_size=8)).map(CANARY.join)


@settings(max_examples=200, deadline=None)
@given(raw=column_rows([*PEOPLE_ROW, *ACTIVITY_ROW], canary_text))
def test_problems_never_contain_the_raw_values(
    people_file: StreamMapping, activities_file: StreamMapping, raw: dict[str, Any]
) -> None:
    # Every value carries a marker that no message of ours contains.
    for stream in (people_file, activities_file):
        for problem in stream.apply(raw, source="files", stream="s", region="GB").problems:
            assert CANARY not in problem, problem

from __future__ import annotations

import csv
import re
from datetime import date
from pathlib import Path

import orjson
import phonenumbers
import pytest

from crmhub.sampledata import COUNTRIES, FIELDS, SampleOptions, iter_people, write_csv, write_jsonl

MESSY = SampleOptions(seed=3, duplicate_rate=0.2, invalid_rate=0.05)
REGION = {
    spelling: cc
    for cc, info in COUNTRIES.items()
    for spelling in (cc, cc.lower(), info.alpha3, *info.names)
}


def test_same_seed_gives_identical_rows() -> None:
    assert list(iter_people(3_000, MESSY)) == list(iter_people(3_000, MESSY))


def test_different_seed_gives_different_rows() -> None:
    first = list(iter_people(500, SampleOptions(seed=1)))
    second = list(iter_people(500, SampleOptions(seed=2)))
    assert first != second
    assert sum(a == b for a, b in zip(first, second, strict=True)) == 0


@pytest.mark.parametrize("n", [0, 1, 7, 10_001])
def test_yields_exactly_n_rows_across_chunk_boundaries(n: int) -> None:
    assert sum(1 for _ in iter_people(n, MESSY)) == n


def test_rows_are_flat_dicts_of_str_with_every_field() -> None:
    for row in iter_people(1_000, MESSY):
        assert tuple(row) == FIELDS
        assert all(isinstance(value, str) for value in row.values())


def test_ids_are_unique_and_use_the_prefix() -> None:
    rows = list(iter_people(10_500, SampleOptions(seed=5, id_prefix="cust-")))
    ids = [row["id"] for row in rows]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"cust-\d{7}", pid) for pid in ids)
    assert all(row["person_key"] == row["id"] for row in rows)  # no duplicates asked for


def test_duplicate_rate_gives_about_that_share_of_rows_sharing_an_earlier_person_key() -> None:
    rows = list(iter_people(12_000, SampleOptions(seed=9, duplicate_rate=0.25)))
    seen: dict[str, dict[str, str]] = {}
    copies = 0
    for row in rows:
        if row["person_key"] == row["id"]:
            seen[row["id"]] = row
            continue
        copies += 1
        original = seen[row["person_key"]]  # the real person appeared earlier
        assert row["city"] == original["city"]
    assert 0.22 < copies / len(rows) < 0.28
    assert len({row["id"] for row in rows}) == len(rows)


def test_duplicates_vary_names_emails_and_phones_realistically() -> None:
    rows = list(iter_people(10_000, SampleOptions(seed=4, duplicate_rate=0.3)))
    originals = {row["id"]: row for row in rows if row["id"] == row["person_key"]}
    pairs = [(originals[r["person_key"]], r) for r in rows if r["id"] != r["person_key"]]
    changed = {
        field: sum(a[field] != b[field] for a, b in pairs) / len(pairs)
        for field in ("first_name", "email", "phone", "updated_at")
    }
    assert 0.2 < changed["first_name"] < 0.7
    assert 0.2 < changed["email"] < 0.8
    assert 0.1 < changed["phone"] < 0.8
    assert changed["updated_at"] > 0.99
    recased = [(a, b) for a, b in pairs if b["email"] and b["email"] != a["email"]]
    assert recased
    assert all(b["email"].lower() == a["email"].lower() for a, b in recased)


def test_invalid_rate_zero_gives_valid_phones_emails_dates_and_countries() -> None:
    rows = list(iter_people(3_000, SampleOptions(seed=11)))
    phones = [row for row in rows if row["phone"]]
    assert 0.65 < len(phones) / len(rows) < 0.75
    for row in phones:
        region = REGION[row["country"]]
        number = phonenumbers.parse(row["phone"], region)
        assert phonenumbers.is_valid_number(number), row["phone"]
        assert phonenumbers.region_code_for_number(number) == region
    emails = [row["email"] for row in rows if row["email"]]
    assert all(email.count("@") == 1 for email in emails)
    assert len({email.lower() for email in emails}) == len(emails)
    assert all(row["country"] in REGION for row in rows)
    assert sum(row["country"] in COUNTRIES for row in rows) / len(rows) > 0.9
    for row in rows:
        if row["birth_date"]:
            date.fromisoformat(row["birth_date"])
        assert re.fullmatch(r"2024-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["updated_at"])


def test_invalid_rate_breaks_about_that_share_of_rows_each_in_a_known_way() -> None:
    rows = list(iter_people(6_000, SampleOptions(seed=2, invalid_rate=0.1)))
    kinds = [
        [
            row["id"] == "",
            bool(row["email"]) and "@" not in row["email"],
            row["phone"] == "12",
            row["country"] == "Atlantis",
            row["birth_date"] == "31/02/1990",
        ]
        for row in rows
    ]
    broken = [k for k in kinds if any(k)]
    assert all(sum(k) == 1 for k in broken)
    assert 0.08 < len(broken) / len(rows) < 0.12
    assert all(any(k[i] for k in broken) for i in range(5))


def test_write_jsonl_round_trips_to_iter_people(tmp_path: Path) -> None:
    path = tmp_path / "people.jsonl"
    assert write_jsonl(path, 2_500, MESSY) == 2_500
    lines = path.read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == list(iter_people(2_500, MESSY))


def test_write_jsonl_stays_one_object_per_line_when_a_value_contains_braces(
    tmp_path: Path,
) -> None:
    options = SampleOptions(id_prefix="},{")
    path = tmp_path / "people.jsonl"
    write_jsonl(path, 50, options)
    lines = path.read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == list(iter_people(50, options))


def test_write_csv_round_trips_to_iter_people(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    assert write_csv(path, 2_500, MESSY) == 2_500
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == FIELDS
        assert list(reader) == list(iter_people(2_500, MESSY))


@pytest.mark.parametrize(("duplicate_rate", "invalid_rate"), [(1.0, 0.0), (-0.1, 0.0), (0.0, 1.5)])
def test_options_reject_rates_out_of_range(duplicate_rate: float, invalid_rate: float) -> None:
    with pytest.raises(ValueError):
        SampleOptions(duplicate_rate=duplicate_rate, invalid_rate=invalid_rate)


def test_negative_n_is_rejected() -> None:
    with pytest.raises(ValueError):
        list(iter_people(-1))

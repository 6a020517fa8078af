"""The sandbox world: seeded people over several sources with ground truth for linkage."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from crmhub.mapping import load_mapping
from crmhub.sampledata import FIELDS
from crmhub.sandbox import WorldOptions, iter_world, true_pairs, write_world
from crmhub.sandbox.people import COMMON_NAMES

PEOPLE = 3_000
OPTIONS = WorldOptions(seed=11)
Row = dict[str, str]


@pytest.fixture(scope="module")
def world() -> list[tuple[str, Row]]:
    return list(iter_world(PEOPLE, OPTIONS))


@pytest.fixture(scope="module")
def by_person(world: list[tuple[str, Row]]) -> dict[str, list[tuple[str, Row]]]:
    groups: dict[str, list[tuple[str, Row]]] = defaultdict(list)
    for source, row in world:
        groups[row["person_key"]].append((source, row))
    return groups


def test_same_seed_gives_identical_world(world: list[tuple[str, Row]]) -> None:
    assert list(iter_world(PEOPLE, OPTIONS)) == world


def test_different_seed_gives_a_different_world(world: list[tuple[str, Row]]) -> None:
    assert list(iter_world(PEOPLE, WorldOptions(seed=12))) != world


def test_rows_are_flat_str_dicts_in_the_people_file_layout(world: list[tuple[str, Row]]) -> None:
    for source, row in world:
        assert source in OPTIONS.sources
        assert tuple(row) == FIELDS
        assert all(isinstance(value, str) for value in row.values())


def test_every_person_has_at_least_one_record_and_about_the_mean(
    world: list[tuple[str, Row]], by_person: dict[str, list[tuple[str, Row]]]
) -> None:
    assert len(by_person) == PEOPLE
    assert 1.5 <= len(world) / PEOPLE <= 1.7
    assert any(len({s for s, _ in records}) >= 3 for records in by_person.values())


def test_records_of_one_person_key_describe_one_person(
    by_person: dict[str, list[tuple[str, Row]]],
) -> None:
    # Ground truth: birth dates agree unless day and month were swapped on entry.
    for records in by_person.values():
        births = {tuple(sorted(r["birth_date"].split("-"))) for _, r in records if r["birth_date"]}
        assert len(births) <= 1


def test_ids_are_unique_per_source_and_prefixed_with_it(world: list[tuple[str, Row]]) -> None:
    ids = [(source, row["id"]) for source, row in world]
    assert len(set(ids)) == len(ids)
    assert all(pid.startswith(f"{source}-") for source, pid in ids)


def test_households_share_surname_and_address_but_not_first_name_or_birth(
    by_person: dict[str, list[tuple[str, Row]]],
) -> None:
    # Full-address rows of different people at one street, postcode and city.
    homes: dict[tuple[str, str, str], dict[str, Row]] = defaultdict(dict)
    for key, records in by_person.items():
        for _, row in records:
            if row["street"] and row["postcode"]:
                homes[row["street"], row["postcode"], row["city"]].setdefault(key, row)
    families = [members for members in homes.values() if len(members) > 1]
    assert len(families) > PEOPLE * 0.02
    same_surname = 0
    for members in families:
        rows = list(members.values())
        lasts = {r["last_name"].casefold() for r in rows}
        same_surname += len(lasts) == 1
    assert same_surname > len(families) * 0.5
    distinct_first = sum(len({r["first_name"] for r in m.values()}) == len(m) for m in families)
    assert distinct_first > len(families) * 0.8


def test_households_often_share_a_landline(by_person: dict[str, list[tuple[str, Row]]]) -> None:
    keys_by_digits: dict[str, set[str]] = defaultdict(set)
    for key, records in by_person.items():
        for _, row in records:
            if row["phone"]:
                keys_by_digits["".join(c for c in row["phone"] if c.isdigit())[-9:]].add(key)
    assert sum(len(keys) > 1 for keys in keys_by_digits.values()) > 10


def test_common_full_names_belong_to_different_people(world: list[tuple[str, Row]]) -> None:
    keys: dict[tuple[str, str], set[str]] = defaultdict(set)
    for _, row in world:
        keys[row["first_name"], row["last_name"]].add(row["person_key"])
    pooled = [keys[first, last] for first, last, _ in COMMON_NAMES]
    assert sum(len(k) for k in pooled) > PEOPLE * 0.08  # names vary per record
    assert all(len(k) >= 5 for k in pooled[:4])


def test_some_people_use_different_emails_in_different_sources(
    by_person: dict[str, list[tuple[str, Row]]],
) -> None:
    multi = [r for r in by_person.values() if len(r) > 1]
    differ = sum(len({row["email"].lower() for _, row in r if row["email"]}) > 1 for r in multi)
    assert differ > len(multi) * 0.1


def test_variation_exists_nicknames_initials_swaps_and_gmail_aliases(
    world: list[tuple[str, Row]],
) -> None:
    firsts = [row["first_name"] for _, row in world]
    assert sum(len(f) <= 2 and f[:1].isupper() for f in firsts) > len(world) * 0.01
    assert {"Bob", "Rob", "Mike", "Liz", "Kate", "Tom"} & set(firsts)
    emails = [row["email"] for _, row in world]
    assert any("+" in e for e in emails)
    assert any(e.endswith("@googlemail.com") for e in emails)


def test_emails_are_never_shared_by_different_people(world: list[tuple[str, Row]]) -> None:
    owners: dict[str, set[str]] = defaultdict(set)
    for _, row in world:
        if row["email"]:
            owners[row["email"].lower()].add(row["person_key"])
    assert all(len(keys) == 1 for keys in owners.values())


def test_most_rows_map_to_valid_people_records(world: list[tuple[str, Row]]) -> None:
    mapping = load_mapping("people_file").stream("people")
    ok = sum(
        mapping.apply(row, source=source, stream="people", region="GB").record is not None
        for source, row in world[:2_000]
    )
    assert ok >= 0.95 * 2_000


def test_true_pairs_counts_pairs_within_each_person() -> None:
    assert true_pairs([]) == 0
    assert true_pairs(["a", "b", "c"]) == 0
    assert true_pairs(["a", "a", "b", "a", "b"]) == 3 + 1


def test_write_world_writes_one_jsonl_file_per_source_that_reads_back_equal(
    tmp_path: Path, world: list[tuple[str, Row]]
) -> None:
    counts = write_world(tmp_path, PEOPLE, OPTIONS)
    expected: dict[str, list[Row]] = {source: [] for source in OPTIONS.sources}
    for source, row in world:
        expected[source].append(row)
    assert counts == {source: len(rows) for source, rows in expected.items()}
    for source, rows in expected.items():
        lines = (tmp_path / f"{source}.jsonl").read_bytes().splitlines()
        assert [orjson.loads(line) for line in lines] == rows


def test_unknown_source_names_are_held_like_a_crm() -> None:
    rows = list(iter_world(200, WorldOptions(sources=("a", "b"))))
    assert {source for source, _ in rows} == {"a", "b"}
    assert all(row["id"].startswith(source) for source, row in rows)


@pytest.mark.parametrize(
    "kwargs",
    [{"sources": ()}, {"sources": ("a", "a")}, {"records_per_person": 0.5},
     {"household_share": 1.5}, {"common_name_share": -0.1}],
)  # fmt: skip
def test_invalid_options_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        WorldOptions(**kwargs)  # type: ignore[arg-type]


def test_negative_people_count_is_rejected() -> None:
    with pytest.raises(ValueError):
        list(iter_world(-1))

"""The hub's fast paths give exactly what the reference implementations give: records read
for matching without pydantic, golden records without ``survive()``'s models and stored
explanations as text."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pytest

from crmhub.config import SurvivorshipSettings
from crmhub.dedupe.builtin import builtin_model
from crmhub.dedupe.frame import MULTI_FIELDS, SCALAR_FIELDS, MatchFrame
from crmhub.dedupe.normalize import match_frame
from crmhub.dedupe.pipeline import score_pairs
from crmhub.dedupe.survive import survive
from crmhub.model import Person
from crmhub.resolution.golden import GoldenBuilder
from crmhub.resolution.pairs import comparison_texts, comparisons_of
from crmhub.resolution.records import HubRecord, persons, stored_person

World = list[tuple[str, str, Person]]
RULES = ("most_recent", "source_priority", "most_frequent", "most_complete")


def _record(rid: int, source: str, data: dict[str, Any] | str, at: datetime | None) -> HubRecord:
    raw = data if isinstance(data, str) else orjson.dumps(data).decode()
    return HubRecord(rid, source, raw, at, None, f"{rid:032x}", False)


def _stored(world: World) -> list[HubRecord]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        # Few distinct times: equal timestamps make ties, which the record id breaks.
        _record(i + 1, source, p.model_dump_json(exclude_none=True), start + timedelta(i % 7))
        for i, (source, _, p) in enumerate(world)
    ]


def _assert_same_frame(fast: MatchFrame, reference: MatchFrame) -> None:
    assert fast.ids.tolist() == reference.ids.tolist()
    for name in SCALAR_FIELDS:
        assert fast.scalar(name).tolist() == reference.scalar(name).tolist(), name
    for name in MULTI_FIELDS:
        assert fast.multi(name) == reference.multi(name), name


def test_stored_records_read_for_matching_as_validated_persons(world: World) -> None:
    records = _stored(world)
    validated = [(r.id, Person.model_validate_json(r.raw)) for r in records]
    _assert_same_frame(match_frame(persons(records)), match_frame(validated))


def test_a_stored_record_not_shaped_as_validated_ones_is_validated_or_left_out() -> None:
    base = {"source": "crm", "stream": "people", "external_id": "1"}
    # Emails as one string: the model turns it into a list, as when it was stored.
    odd = stored_person(orjson.dumps({**base, "first_name": "Ann", "emails": "a@b.co"}))
    assert odd is not None and odd.emails == ["a@b.co"]
    # A birth date that is no date, emails that are no list: never matched, never a crash.
    assert stored_person(orjson.dumps({**base, "birth_date": "someday"})) is None
    assert stored_person(orjson.dumps({**base, "emails": None})) is None
    assert stored_person(b"[1, 2]") is None and stored_person(b"{not json") is None
    deleted = HubRecord(7, "crm", orjson.dumps(base).decode(), None, None, "h", True)
    assert persons([deleted]) == []
    # Lists and identifiers left out of the JSON read as the model's defaults.
    bare = [
        _record(1, "crm", {**base, "first_name": "Ann", "address": {"city": "Leeds"}}, None),
        _record(2, "crm", {**base, "last_name": "Lee", "address": {"line2": "Flat 2"}}, None),
    ]
    validated = [(r.id, Person.model_validate_json(r.raw)) for r in bare]
    _assert_same_frame(match_frame(persons(bare)), match_frame(validated))


def _clusters(records: list[HubRecord], seed: int) -> list[list[HubRecord]]:
    rng = random.Random(seed)
    pool = list(records)
    rng.shuffle(pool)
    out: list[list[HubRecord]] = []
    while pool:
        size = rng.choice((1, 1, 2, 3, 5))
        out.append(pool[:size])
        del pool[:size]
    return out


def _odd_records() -> list[HubRecord]:
    """Values the synthetic world never makes: repeated list values, empty ones, every
    consent status, a record without a timestamp."""
    at = datetime(2026, 2, 1, tzinfo=UTC)
    denied = {"status": "denied", "source": "web"}
    return [
        _record(9001, "crm", {"emails": ["b@x.io", "a@x.io", "b@x.io"], "phones": []}, at),
        _record(
            9002, "shop", {"emails": ["c@x.io", "a@x.io"], "first_name": "", "company": "A"}, at
        ),
        _record(9003, "crm", {"consent": {"email": denied, "sms": {"status": "granted"}}}, None),
        _record(9004, "web", {"consent": {"email": {"status": "granted"}}, "title": "Dr"}, at),
        _record(9005, "web", {"identifiers": {"vat": "1"}, "address": {"city": "Lyon"}}, None),
        _record(9006, "crm", {"identifiers": {"vat": "2", "crm": "x"}, "consent": {}}, at),
    ]


SETTINGS = [
    SurvivorshipSettings(),
    SurvivorshipSettings(source_priority=["support", "shop", "crm"]),
    *(SurvivorshipSettings(default_rule=rule) for rule in RULES),
    SurvivorshipSettings(
        default_rule="most_complete",
        fields={
            "emails": "most_recent",
            "consent": "most_frequent",
            "address": "most_frequent",
            "first_name": "union",
            "identifiers": "most_complete",
        },
    ),
]


@pytest.mark.parametrize(
    "settings",
    SETTINGS,
    ids=lambda s: "-".join(
        (s.default_rule, "priority" * bool(s.source_priority), str(len(s.fields)))
    ),
)
def test_golden_records_are_those_survive_makes(
    world: World, settings: SurvivorshipSettings
) -> None:
    records = _stored(world)
    odd = _odd_records()
    clusters = [
        *_clusters(records, seed=len(settings.fields)),
        *(odd[:2], odd[2:4], odd[4:], odd),
        *([r] for r in odd),
    ]
    builder = GoldenBuilder(settings)
    overrides = {"last_name": "Steward", "emails": ["s@x.io"]}
    assert any(len(c) == 1 for c in clusters) and any(len(c) > 2 for c in clusters)
    for index, members in enumerate(clusters):
        given = overrides if index % 9 == 0 else None
        reference = survive([r.member() for r in members], settings, given)
        expected = {name: value.model_dump(mode="json") for name, value in reference.items()}
        assert builder.build(members, given) == expected


def test_stored_explanations_are_the_comparisons_as_json(world: World) -> None:
    frame = match_frame(persons(_stored(world)))
    rows = np.arange(len(frame) - 1, dtype=np.int64)
    scored = score_pairs(frame, rows, rows + 1, builtin_model())
    everything = np.flatnonzero(scored.probability >= 0.0)
    assert len(everything) > 200
    for index in (everything, everything[:7]):  # built array-wise, and one by one
        texts = comparison_texts(scored, builtin_model(), index)
        assert [orjson.loads(t) for t in texts] == comparisons_of(scored, builtin_model(), index)

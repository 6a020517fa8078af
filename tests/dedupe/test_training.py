"""Training without labels: sessions on specific rules keep "same name" from passing for a
match, the prior is the chance that two random records match, family members are not merged,
and a common name weighs less than a rare one."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pytest

from crmhub.dedupe.blocking import block
from crmhub.dedupe.compare import compare
from crmhub.dedupe.explain import explain_pair
from crmhub.dedupe.frame import MatchFrame
from crmhub.dedupe.model import FellegiSunter
from crmhub.dedupe.normalize import match_frame
from crmhub.dedupe.training import train
from crmhub.mapping import load_mapping
from crmhub.model import Person
from crmhub.sandbox.people import WorldOptions, iter_world


def _crowd_of_namesakes(seed: int = 1) -> tuple[MatchFrame, np.ndarray]:
    """Many different people sharing few names (the household / common-name trap), and one
    duplicate record for every tenth person, agreeing on email, phone and birth date."""
    rng = np.random.default_rng(seed)
    people = 4_000
    first = rng.choice(["ann", "bob", "cat", "dan", "eve"], people)
    last = rng.choice(["smith", "jones"], people)
    birth = np.array(
        [
            f"19{rng.integers(50, 99)}-0{rng.integers(1, 9)}-1{rng.integers(0, 9)}"
            for _ in range(people)
        ],
        dtype=object,
    )
    duplicated = np.arange(0, people, 10)
    rows = np.r_[np.arange(people), duplicated]
    truth = rows.copy()
    scalars = {
        "first_name": first[rows],
        "first_root": first[rows],
        "first_initial": np.array([f[0] for f in first[rows]], dtype=object),
        "last_name": last[rows],
        "last_phonetic": last[rows],
        "birth_date": birth[rows],
    }
    multis = {
        "emails": [(f"p{p}@mail.com",) for p in rows],
        "phones": [(f"44{7_000_000_000 + p}",) for p in rows],
    }
    frame = MatchFrame(
        ids=np.arange(len(rows)),
        scalars={k: np.asarray(v, dtype=object) for k, v in scalars.items()},
        multis=multis,
    )
    return frame, truth


def test_training_does_not_learn_that_namesakes_are_the_same_person() -> None:
    frame, truth = _crowd_of_namesakes()
    pairs, _ = block(frame)
    levels = compare(frame, pairs.left, pairs.right)
    model, report = train(frame, levels, random_pairs=50_000)
    probability = model.probability(levels)
    same = truth[pairs.left] == truth[pairs.right]
    assert same.sum() == 400 and len(pairs) > 100 * same.sum()  # namesakes dominate
    predicted = probability >= 0.95
    assert (predicted & same).sum() / predicted.sum() > 0.99
    assert (predicted & same).sum() / same.sum() > 0.95
    assert set(report.sessions) == {
        "train_name", "train_email", "train_birth_date", "train_household",
    }  # fmt: skip
    assert report.unestimated == []
    # No addresses: nothing to learn households from, and the model has no household class.
    assert report.sessions["train_household"]["pairs"] == 0 and not model.has_households


def test_the_prior_is_the_chance_that_two_random_records_match() -> None:
    frame, _ = _crowd_of_namesakes(seed=2)
    pairs, _ = block(frame)
    model, report = train(frame, compare(frame, pairs.left, pairs.right), random_pairs=50_000)
    n = len(frame)
    assert report.prior == pytest.approx(400 / (n * (n - 1) / 2), rel=0.2)
    assert model.prior == report.prior


# --- a world with households and common names ----------------------------------------------


def _person(source: str, **fields: Any) -> Person:
    return Person.model_validate(
        {"source": source, "stream": "people", "external_id": "1", **fields},
        context={"region": "GB"},
    )


@pytest.fixture(scope="module")
def world() -> dict[str, Any]:
    """Synthetic people over several sources (households, common names, typos), trained on
    without labels."""
    mapping = load_mapping("people_file").stream("people")
    people, truth = [], []
    for source, row in iter_world(2_500, WorldOptions(seed=11)):
        record = mapping.apply(row, source=source, stream="people", region="GB").record
        if isinstance(record, Person):
            people.append((len(people), record))
            truth.append(row["person_key"])
    frame = match_frame(people)
    pairs, _ = block(frame)
    levels = compare(frame, pairs.left, pairs.right)
    model, report = train(frame, levels, random_pairs=400_000, seed=3)
    return {
        "frame": frame,
        "truth": np.array(truth, dtype=object),
        "pairs": pairs,
        "levels": levels,
        "model": model,
        "report": report,
        "probability": model.probability(levels),
    }


def test_households_are_learnt_and_family_members_are_not_merged(world: dict[str, Any]) -> None:
    pairs, truth, levels = world["pairs"], world["truth"], world["levels"]
    model, probability = world["model"], world["probability"]
    assert model.has_households and world["report"].household_prior > 0
    same = truth[pairs.left] == truth[pairs.right]
    # Different people sharing a surname and an exact address: family members.
    family = ~same & (levels["last_name"] == 4) & (levels["address"] == 7)
    assert family.sum() > 50
    assert (probability[family] >= 0.95).mean() < 0.01
    predicted = probability >= 0.95
    assert (predicted & same).sum() / predicted.sum() >= 0.98
    assert (predicted & same).sum() / same.sum() >= 0.8
    # Two records of one household, by hand: surname, address and landline shared, first
    # names and birth dates different.
    home = {"line1": "12 Mill Lane", "city": "Leeds", "postal_code": "LS6 2AB", "country": "GB"}
    mother = _person("crm", first_name="Susan", last_name="Barrowclough", address=home,
                     phones=["+44 113 496 0000"], birth_date="1961-04-02")  # fmt: skip
    son = _person("shop", first_name="Daniel", last_name="Barrowclough", address=home,
                  phones=["+44 113 496 0000"], birth_date="1990-11-17")  # fmt: skip
    again = _person("billing", first_name="Susan", last_name="Barrowclough", address=home,
                    birth_date="1961-04-02")  # fmt: skip
    household = match_frame([(1, mother), (2, son), (3, again)])
    scores = model.probability(compare(household, [0, 0], [1, 2]))
    assert scores[0] < 0.05 < 0.95 < scores[1]
    assert model.household_weight(compare(household, [0], [1]))[0] < -5


def test_a_common_full_name_weighs_less_than_a_rare_one(world: dict[str, Any]) -> None:
    model, frame = world["model"], world["frame"]
    names = frame.scalar("full_name")
    values, counts = np.unique(names[names != None].astype(str), return_counts=True)  # noqa: E711
    common = values[np.argmax(counts)].split(" ", 1)
    assert counts.max() >= 20  # a name from COMMON_NAMES
    people = [
        _person("crm", first_name=common[0], last_name=common[1]),
        _person("shop", first_name=common[0], last_name=common[1]),
        _person("crm", first_name="Eudoxia", last_name="Quillfeather"),
        _person("shop", first_name="Eudoxia", last_name="Quillfeather"),
    ]
    pairs = match_frame(list(enumerate(people)))
    levels = compare(pairs, [0, 2], [1, 3])
    assert levels["first_name"].tolist() == [7, 7] and levels["last_name"].tolist() == [4, 4]
    common_weight, rare_weight = model.match_weight(levels)
    assert common_weight < rare_weight - 8
    probability = model.probability(levels)
    assert probability[0] < probability[1]


def test_the_stored_model_holds_no_readable_names_and_scores_the_same(
    world: dict[str, Any],
) -> None:
    model, frame, levels = world["model"], world["frame"], world["levels"]
    stored = json.dumps(model.to_json())
    assert set(model.tf) == {"first_name", "last_name", "address"}
    for name in ("last_name", "first_name", "postcode", "street", "city"):
        values = {v for v in frame.scalar(name).tolist() if v and len(v) > 3}
        assert not [v for v in values if f'"{v}"' in stored or f" {v}" in stored], name
    for table in model.tf.values():
        assert table.counts.min() >= 5 and len(table.digests) <= 50_000
        assert all(re.fullmatch(rb"[0-9a-f]{20}", d) for d in table.digests.tolist())
    again = FellegiSunter.from_json(json.loads(stored))
    assert np.allclose(again.match_weight(levels), model.match_weight(levels))
    assert np.allclose(again.probability(levels), world["probability"])


def test_new_pairs_score_from_their_own_rows_and_the_stored_model(world: dict[str, Any]) -> None:
    """Incremental matching compares a handful of records on a frame of just those rows:
    with the model's stored term frequencies, they score as in the whole frame."""
    frame, pairs, probability = world["frame"], world["pairs"], world["probability"]
    model = FellegiSunter.from_json(world["model"].to_json())
    chosen = np.flatnonzero(probability > 0.5)[:40]
    rows = np.unique(np.r_[pairs.left[chosen], pairs.right[chosen]])
    small = MatchFrame(
        frame.ids[rows],
        {name: column[rows] for name, column in frame.scalars.items()},
        {name: [column[i] for i in rows] for name, column in frame.multis.items()},
    )
    left, right = (
        np.searchsorted(rows, pairs.left[chosen]),
        np.searchsorted(rows, pairs.right[chosen]),
    )
    assert np.allclose(model.probability(compare(small, left, right)), probability[chosen])


def test_a_waterfall_shows_term_frequencies_and_the_household_step(world: dict[str, Any]) -> None:
    frame, pairs, levels, model = world["frame"], world["pairs"], world["levels"], world["model"]
    probability, truth = world["probability"], world["truth"]
    family = (truth[pairs.left] != truth[pairs.right]) & (levels["address"] == 7)
    family &= (levels["last_name"] == 4) & (levels["first_name"] == 1)
    index = int(np.flatnonzero(family)[0])
    explanation = explain_pair(frame, int(pairs.left[index]), int(pairs.right[index]), model)
    steps = sum(f.weight for f in explanation.fields)
    assert explanation.household_weight < -5
    assert steps + explanation.household_weight == pytest.approx(explanation.total_weight)
    assert explanation.probability == pytest.approx(float(probability[index]))
    assert explanation.as_dict()["household_weight"] == explanation.household_weight
    surname = next(f for f in explanation.fields if f.field == "last_name")
    plain = float(model.fields["last_name"].weights[surname.level])
    assert surname.adjustment != 0 and surname.weight == pytest.approx(plain + surname.adjustment)

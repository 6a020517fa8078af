"""Fellegi-Sunter: weights and probabilities behave, EM recovers the parameters of data
simulated from a known model (the household class too), term frequencies adjust weights, and
models survive storage."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from crmhub.dedupe.blocking import key_digest
from crmhub.dedupe.compare import compare, exact
from crmhub.dedupe.frame import MatchFrame
from crmhub.dedupe.model import FellegiSunter, FieldParams, TermFrequencies
from crmhub.errors import DedupeError

TRUE_M = {
    "first_name": [0.70, 0.20, 0.10][::-1],  # different, close, exact (levels 1..3)
    "last_name": [0.05, 0.15, 0.80],
    "email": [0.30, 0.70],
}
TRUE_U = {
    "first_name": [0.90, 0.07, 0.03],
    "last_name": [0.85, 0.10, 0.05],
    "email": [0.995, 0.005],
}
NULL_SHARE = 0.1


def _simulate(pairs: int, prior: float, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    is_match = rng.random(pairs) < prior
    levels = {}
    for name in TRUE_M:
        m, u = np.array(TRUE_M[name]), np.array(TRUE_U[name])
        from_m = rng.choice(len(m), size=pairs, p=m) + 1
        from_u = rng.choice(len(u), size=pairs, p=u) + 1
        column = np.where(is_match, from_m, from_u).astype(np.int8)
        column[rng.random(pairs) < NULL_SHARE] = 0
        levels[name] = column
    return levels, is_match


def _model() -> FellegiSunter:
    return FellegiSunter.initial({name: len(m) + 1 for name, m in TRUE_M.items()})


def test_em_recovers_m_and_the_prior_of_simulated_pairs() -> None:
    model = _model()
    random_levels, _ = _simulate(200_000, prior=0.0, seed=1)
    model.fit_u(random_levels)
    blocked, _ = _simulate(200_000, prior=0.3, seed=2)
    report = model.fit_em(blocked)
    assert report.converged and report.pairs == 200_000
    assert model.prior == pytest.approx(0.3, abs=0.02)
    for name, m in TRUE_M.items():
        assert model.fields[name].m[1:] == pytest.approx(m, abs=0.03), name


def test_fitted_model_classifies_as_well_as_the_true_model() -> None:
    model = _model()
    random_levels, _ = _simulate(100_000, prior=0.0, seed=3)
    model.fit_u(random_levels)
    blocked, truth = _simulate(100_000, prior=0.2, seed=4)
    model.fit_em(blocked)
    oracle = _model()
    oracle.prior = 0.2
    for name in TRUE_M:
        oracle.fields[name].m = np.r_[1.0, TRUE_M[name]]
        oracle.fields[name].u = np.r_[1.0, TRUE_U[name]]

    def precision_recall(fs: FellegiSunter) -> tuple[float, float]:
        predicted = fs.probability(blocked) >= 0.5
        hits = (predicted & truth).sum()
        return hits / predicted.sum(), hits / truth.sum()

    precision, recall = precision_recall(model)
    best_precision, best_recall = precision_recall(oracle)
    assert precision >= best_precision - 0.01
    assert recall >= best_recall - 0.02


def test_null_levels_carry_no_evidence_and_agreement_beats_disagreement() -> None:
    model = _model()
    for params in model.fields.values():
        assert params.weights[0] == 0.0
        assert params.weights[-1] > 0 > params.weights[1]
    nulls = {name: np.zeros(1, dtype=np.int8) for name in TRUE_M}
    assert model.probability(nulls)[0] == pytest.approx(model.prior)


def test_weights_turn_into_probabilities_monotonically() -> None:
    model = _model()
    weights = np.linspace(-40, 40, 81)
    probabilities = model.probability_of_weight(weights)
    assert np.all(np.diff(probabilities) >= 0)
    assert np.all(np.diff(probabilities[30:51]) > 0)  # strictly, where floats can tell
    assert probabilities[0] < 1e-6 and probabilities[-1] > 1 - 1e-6


def test_steward_labels_set_m_directly() -> None:
    model = _model()
    levels, truth = _simulate(50_000, prior=0.5, seed=5)
    model.fit_labels(levels, truth)
    for name, m in TRUE_M.items():
        assert model.fields[name].m[1:] == pytest.approx(m, abs=0.03), name
    with pytest.raises(DedupeError, match="no accepted pairs"):
        model.fit_labels(levels, np.zeros(len(truth), dtype=bool))


def test_a_model_survives_a_json_round_trip() -> None:
    model = _model()
    model.prior = 0.0123
    again = FellegiSunter.from_json(model.to_json())
    assert again.prior == model.prior
    for name in TRUE_M:
        assert again.fields[name].m.tolist() == model.fields[name].m.tolist()
    with pytest.raises(DedupeError, match="not readable"):
        FellegiSunter.from_json({"fields": {}})


def test_fitting_on_no_pairs_changes_nothing() -> None:
    model = _model()
    before = model.to_json()
    report = model.fit_em({name: np.empty(0, dtype=np.int8) for name in TRUE_M})
    assert report.pairs == 0 and model.to_json() == before


# --- term frequencies ----------------------------------------------------------------------


def _surname_frame() -> MatchFrame:
    """100 Smiths, 6 Joneses, and 20 people with names of their own (one record each)."""
    names = ["smith"] * 100 + ["jones"] * 6 + [f"rare{i:02d}" for i in range(20)]
    column = np.empty(len(names), dtype=object)
    column[:] = names
    return MatchFrame(np.arange(len(names), dtype=np.int64), {"last_name": column}, {})


def test_a_term_frequency_table_keeps_common_values_by_digest_only() -> None:
    frame = _surname_frame()
    table = TermFrequencies.count(frame, "last_name", (3,), min_count=5)
    assert sorted(table.digests.tolist()) == sorted(
        key_digest(v).encode() for v in ("smith", "jones")
    )
    assert table.total == 126 and sorted(table.counts.tolist()) == [6, 100]
    assert table.rare == pytest.approx(1 / 126)  # the 20 left out are seen once each
    lookup = np.array([key_digest(v).encode() for v in ("smith", "jones", "never")], "S20")
    assert table.frequencies(lookup).tolist() == pytest.approx([100 / 126, 6 / 126, 1 / 126])
    stored = json.dumps(table.to_json())
    assert "smith" not in stored and "jones" not in stored and "rare" not in stored[:-30]
    again = TermFrequencies.from_json(json.loads(stored))
    assert again.frequencies(lookup).tolist() == table.frequencies(lookup).tolist()
    capped = TermFrequencies.count(frame, "last_name", (3,), min_count=5, max_values=1)
    assert capped.counts.tolist() == [100]


def test_term_frequencies_weaken_a_common_value_and_strengthen_a_rare_one() -> None:
    frame = _surname_frame()
    comparison = exact("last_name", "last_name")
    model = FellegiSunter(
        {"last_name": FieldParams(m=np.array([1.0, 0.05, 0.95]), u=np.array([1.0, 0.4, 0.6]))}
    )
    model.tf["last_name"] = TermFrequencies.count(frame, "last_name", (2,), min_count=5)
    left, right = np.array([0, 100, 0, 106]), np.array([1, 101, 106, 107])  # smith, jones, ...
    levels = compare(frame, left, right, (comparison,))
    assert levels["last_name"].tolist() == [2, 2, 1, 1]
    weights = model.match_weight(levels)
    smith, jones = np.log2(0.95 / (100 / 126)), np.log2(0.95 / (6 / 126))
    assert weights[:2].tolist() == pytest.approx([smith, jones])
    assert weights[2] == weights[3] == pytest.approx(np.log2(0.05 / 0.4))  # no adjustment
    # Levels built by hand carry no rows to look values up: plain weights.
    plain = model.match_weight({"last_name": levels["last_name"]})
    assert plain[0] == pytest.approx(np.log2(0.95 / 0.6))


def test_levels_of_other_comparisons_ask_for_a_new_model() -> None:
    model = _model()
    with pytest.raises(DedupeError, match="train it again"):
        model.match_weight({"first_name": np.ones(1, dtype=np.int8)})


# --- households ----------------------------------------------------------------------------

# Three classes: matches agree on everything, family members on surname and address only,
# strangers on nothing. Levels 1..2: different, same.
CLASSES = {
    "match": {"first_name": [0.05, 0.95], "last_name": [0.05, 0.95], "address": [0.2, 0.8],
              "phone": [0.2, 0.8], "birth_date": [0.02, 0.98]},
    "household": {"first_name": [0.98, 0.02], "last_name": [0.05, 0.95], "address": [0.1, 0.9],
                  "phone": [0.6, 0.4], "birth_date": [0.97, 0.03]},
    "stranger": {"first_name": [0.99, 0.01], "last_name": [0.99, 0.01],
                 "address": [0.999, 0.001], "phone": [0.9999, 0.0001], "birth_date": [0.99, 0.01]},
}  # fmt: skip


def _three_classes(pairs: int, shares: tuple[float, float], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    kind = rng.choice(3, size=pairs, p=[shares[0], shares[1], 1 - sum(shares)])
    levels = {}
    for name in CLASSES["match"]:
        column = np.zeros(pairs, dtype=np.int8)
        for index, params in enumerate(CLASSES.values()):
            rows = kind == index
            column[rows] = rng.choice(2, size=rows.sum(), p=params[name]) + 1
        levels[name] = column
    return levels


def _household_model() -> FellegiSunter:
    fields = {
        name: FieldParams(
            m=np.r_[1.0, CLASSES["match"][name]],
            u=np.r_[1.0, CLASSES["stranger"][name]],
            h=np.r_[1.0, CLASSES["household"][name]],
        )
        for name in CLASSES["match"]
    }
    return FellegiSunter(fields, prior=1e-4, household_prior=1e-4)


def test_the_household_class_takes_back_what_a_family_shares() -> None:
    model = _household_model()
    # A family (another first name and birth date; surname, address and landline shared),
    # a duplicate, and two strangers who share a first name.
    patterns = {
        "first_name": [1, 2, 2], "last_name": [2, 2, 1], "address": [2, 2, 1], "phone": [2, 2, 1],
        "birth_date": [1, 2, 0],
    }  # fmt: skip
    levels = {name: np.array(column, np.int8) for name, column in patterns.items()}
    household = model.household_weight(levels)
    assert household[0] < -8 and household[2] == pytest.approx(0.0, abs=1e-3)
    family, duplicate, _ = model.probability(levels)
    assert family < 0.01 and duplicate > 0.99
    alone = copy.deepcopy(model)
    alone.drop_households()
    assert not alone.has_households and alone.household_weight(levels).tolist() == [0.0] * 3
    assert alone.probability(levels)[0] > 0.9  # without the class, the family would merge
    again = FellegiSunter.from_json(json.loads(json.dumps(model.to_json())))
    assert again.household_prior == model.household_prior
    assert np.allclose(again.probability(levels), model.probability(levels))


def test_em_recovers_how_family_members_compare() -> None:
    model = _household_model()
    truth = {name: params.h.copy() for name, params in model.fields.items()}  # type: ignore[union-attr]
    for params in model.fields.values():
        params.h = None
    # Pairs blocked on surname and address: matches and family members.
    blocked = _three_classes(100_000, (0.3, 0.7), seed=6)
    report = model.fit_household(blocked, exclude=frozenset({"last_name"}))
    assert report.converged and report.matches == pytest.approx(30_000, rel=0.05)
    for name in ("first_name", "address", "phone", "birth_date"):
        assert model.fields[name].h == pytest.approx(truth[name], abs=0.02), name
    # Nothing is learnt about the blocking field: family members agree on it as matches do.
    assert model.fields["last_name"].h.tolist() == model.fields["last_name"].m.tolist()  # type: ignore[union-attr]


def test_the_priors_fit_both_classes_over_candidate_pairs() -> None:
    model = _household_model()
    # All pairs are candidates here: the priors are the shares of the classes among them.
    candidates = _three_classes(50_000, (0.2, 0.3), seed=8)
    model.fit_prior(candidates, 50_000)
    assert model.prior == pytest.approx(0.2, rel=0.05)
    assert model.household_prior == pytest.approx(0.3, rel=0.05)


# --- u, and the order of similarity bands ---------------------------------------------------


def test_u_leaves_out_the_matches_among_random_pairs() -> None:
    model = _model()
    for name, m in TRUE_M.items():
        model.fields[name].m = np.r_[1.0, m]
    # Random pairs with more matches than real data has, so that they show in the counts.
    random_levels, _ = _simulate(400_000, prior=0.01, seed=9)
    model.fit_u(random_levels)
    inflated = model.fields["email"].u[2]
    model.fit_u(random_levels, match_share=0.01)
    assert inflated > TRUE_U["email"][1] * 1.5
    assert model.fields["email"].u[2] == pytest.approx(TRUE_U["email"][1], rel=0.1)


def test_nested_bands_keep_their_weights_in_order() -> None:
    model = FellegiSunter(
        {
            "city": FieldParams(
                m=np.array([1.0, 0.03, 1e-6, 0.0, 0.97]),  # two bands no match reached
                u=np.array([1.0, 0.98, 1e-4, 1e-4, 0.02]),
            )
        }
    )
    model.make_monotone(["city"])
    weights = model.fields["city"].weights
    assert np.all(np.diff(weights[1:]) >= -1e-9)
    assert model.fields["city"].m[1:].sum() == pytest.approx(1.0)


def test_a_model_saved_before_households_and_term_frequencies_still_loads() -> None:
    old = {"prior": 0.001, "fields": {"email": {"m": [1.0, 0.3, 0.7], "u": [1.0, 0.99, 0.01]}}}
    model = FellegiSunter.from_json(old)
    assert not model.has_households and model.tf == {}
    assert model.probability({"email": np.array([2], np.int8)})[0] > 0.001

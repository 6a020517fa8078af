"""Fellegi-Sunter: weights and probabilities behave, and EM recovers the parameters of data
simulated from a known model."""

from __future__ import annotations

import numpy as np
import pytest

from crmhub.dedupe.model import FellegiSunter
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

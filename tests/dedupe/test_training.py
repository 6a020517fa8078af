"""Training without labels: sessions on specific rules keep "same name" from passing for a
match, and the prior is the chance that two random records match."""

from __future__ import annotations

import numpy as np
import pytest

from crmhub.dedupe.blocking import block
from crmhub.dedupe.compare import compare
from crmhub.dedupe.frame import MatchFrame
from crmhub.dedupe.training import train


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
    assert set(report.sessions) == {"train_name", "train_email", "train_birth_date"}
    assert report.unestimated == []


def test_the_prior_is_the_chance_that_two_random_records_match() -> None:
    frame, _ = _crowd_of_namesakes(seed=2)
    pairs, _ = block(frame)
    model, report = train(frame, compare(frame, pairs.left, pairs.right), random_pairs=50_000)
    n = len(frame)
    assert report.prior == pytest.approx(400 / (n * (n - 1) / 2), rel=0.2)
    assert model.prior == report.prior

"""Training a Fellegi-Sunter model without labels, robust to the household trap.

EM over all candidate pairs learns whatever most candidates have in common: when most of
them share a surname and an initial (common in real data, and in every household), it
learns "same surname" as a match. So, as Splink does, training is done in sessions:

1. **u** from random record pairs, which are almost all non-matches;
2. **m** by EM in several sessions, each over the pairs of one specific blocking rule, with
   that rule's own fields excluded: pairs blocked on first name and surname teach what
   emails, birth dates and addresses look like between true duplicates, pairs blocked on an
   email teach what names look like, and so on. Each field's m is the mean over the sessions
   that could estimate it;
3. **the prior**: the probability that two random records match, by a fixed point over all
   record pairs (:meth:`~crmhub.dedupe.model.FellegiSunter.fit_prior`).

The candidate pairs are then scored with that prior: a posterior valid for any pair.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from crmhub.dedupe.blocking import BlockingRule, block
from crmhub.dedupe.compare import DEFAULT_COMPARISONS, Comparison, compare
from crmhub.dedupe.frame import MatchFrame
from crmhub.dedupe.model import FellegiSunter
from crmhub.errors import DedupeError

__all__ = ["TRAINING_SESSIONS", "TrainingReport", "TrainingSession", "train"]


@dataclass(frozen=True)
class TrainingSession:
    """Pairs blocked by ``rule``; the comparisons in ``excludes`` agree by construction."""

    rule: BlockingRule
    excludes: frozenset[str]


TRAINING_SESSIONS: tuple[TrainingSession, ...] = (
    TrainingSession(BlockingRule("train_name", ("first_root", "last_name")),
                    frozenset({"first_name", "last_name"})),
    TrainingSession(BlockingRule("train_email", ("emails",)), frozenset({"emails"})),
    TrainingSession(BlockingRule("train_birth_date", ("birth_date", "last_phonetic")),
                    frozenset({"birth_date", "last_name"})),
)  # fmt: skip
"""Between them every default comparison is estimated at least twice."""


@dataclass
class TrainingReport:
    """What training did: pairs and EM iterations per session, and the prior found."""

    random_pairs: int = 0
    sessions: dict[str, dict[str, int | bool]] = field(default_factory=dict)
    prior: float = 0.0
    unestimated: list[str] = field(default_factory=list)


def train(
    frame: MatchFrame,
    candidate_levels: Mapping[str, np.ndarray],
    comparisons: Sequence[Comparison] = DEFAULT_COMPARISONS,
    sessions: Sequence[TrainingSession] = TRAINING_SESSIONS,
    *,
    random_pairs: int = 200_000,
    max_session_pairs: int = 2_000_000,
    seed: int = 0,
) -> tuple[FellegiSunter, TrainingReport]:
    """Fit a model to ``frame`` without labels (see the module docstring).

    Args:
        frame: the records.
        candidate_levels: the comparison levels of the blocked candidate pairs (to fit the
            prior on; the caller scores the same levels afterwards).
        comparisons: the field comparisons of the model.
        sessions: the EM training sessions.
        random_pairs: how many random pairs estimate u.
        max_session_pairs: a larger session is sampled down to this many pairs.
        seed: for the random pairs and samples, so training is repeatable.

    Raises:
        DedupeError: with fewer than two records.
    """
    n = len(frame)
    if n < 2:
        raise DedupeError("training needs at least two records")
    rng = np.random.default_rng(seed)
    report = TrainingReport()
    model = FellegiSunter.initial({c.name: len(c.levels) for c in comparisons})
    left, right = rng.integers(0, n, random_pairs), rng.integers(0, n, random_pairs)
    keep = left != right
    report.random_pairs = int(keep.sum())
    model.fit_u(compare(frame, left[keep], right[keep], comparisons))

    estimates: dict[str, list[np.ndarray]] = {c.name: [] for c in comparisons}
    for session in sessions:
        pairs, _ = block(frame, [session.rule])
        chosen = np.arange(len(pairs))
        if len(chosen) > max_session_pairs:
            chosen = np.sort(rng.choice(len(chosen), max_session_pairs, replace=False))
        levels = compare(frame, pairs.left[chosen], pairs.right[chosen], comparisons)
        fitted = copy.deepcopy(model)
        fitted.prior = 0.5  # within a session's pairs, matches are common
        fit = fitted.fit_em(levels, exclude=session.excludes)
        report.sessions[session.rule.name] = {
            "pairs": len(chosen),
            "iterations": fit.iterations,
            "converged": fit.converged,
        }
        if len(chosen) == 0:
            continue
        for name in estimates:
            if name not in session.excludes:
                estimates[name].append(fitted.fields[name].m)
    for name, values in estimates.items():
        if values:
            model.fields[name].m = np.mean(values, axis=0)
        else:
            report.unestimated.append(name)

    report.prior = model.fit_prior(candidate_levels, n * (n - 1) // 2)
    return model, report

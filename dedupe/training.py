"""Training a Fellegi-Sunter model without labels, robust to the household trap.

EM over all candidate pairs learns whatever most candidates have in common: when most of
them share a surname and an initial (common in real data, and in every household), it
learns "same surname" as a match. So, as Splink does, training is done in sessions:

1. **u** from random record pairs, which are almost all non-matches;
2. **m** by EM in several sessions, each over the pairs of one specific blocking rule, with
   that rule's own fields excluded: pairs blocked on first name and surname teach what
   emails, birth dates and addresses look like between true duplicates, pairs blocked on an
   email teach what names look like, and so on. No session is blocked on what a household
   shares (surname, address, phone), so family members never pass for duplicates there, and
   blocks of more than :data:`SESSION_BLOCK_SIZE` records (the namesakes of a common name)
   are left out. Each field's m is the mean over the sessions that could estimate it,
   weighted by the matches each found; nested similarity bands are kept in order;
3. **term frequencies** of the values of comparisons that use them (first name, surname,
   postcode, and full names for the surname given the first name), by value digest;
4. **the prior**: the probability that two random records match, by a fixed point over all
   record pairs (:meth:`~crmhub.dedupe.model.FellegiSunter.fit_prior`); then u again,
   without the matches the random pairs are expected to contain;
5. **households**: h, how two people of one household compare, by EM over pairs blocked on
   surname and address (duplicates and family members), and the household prior by the
   same fixed point as the prior; then u without the family members either. A data set
   without families gets no household class.

The candidate pairs are then scored with those priors: a posterior valid for any pair.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from crmhub.dedupe.blocking import BlockingRule, block
from crmhub.dedupe.compare import DEFAULT_COMPARISONS, Comparison, PairLevels, compare
from crmhub.dedupe.frame import MatchFrame
from crmhub.dedupe.model import FellegiSunter, TermFrequencies
from crmhub.errors import DedupeError

__all__ = [
    "HOUSEHOLD_SESSION", "TRAINING_SESSIONS", "TrainingReport", "TrainingSession", "train",
]  # fmt: skip


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

HOUSEHOLD_SESSION = TrainingSession(
    BlockingRule("train_household", ("last_name", "street", "postcode")),
    frozenset({"last_name", "address"}),
)
"""Pairs sharing a surname and an address: duplicates and family members, the mix the
household class is learnt from. (A postcode or a street line alone would add namesakes
living nearby or in another town, and the household class would learn that its members
often share a first name.)"""

_RANDOM_SLICE = 250_000  # random pairs compared at a time

SESSION_BLOCK_SIZE = 50
"""Training sessions leave out blocks larger than this (see :func:`_session_levels`)."""

MIN_HOUSEHOLD_PAIRS = 50
"""Fewer pairs in the household session than this, and the model has no household class."""

MIN_HOUSEHOLD_SHARE = 0.01
"""A household prior below this share of the prior, and the model has no household class:
the data has (nearly) no families, and the class would only fit noise."""


@dataclass
class TrainingReport:
    """What training did: pairs and EM iterations per session, and the priors found."""

    random_pairs: int = 0
    sessions: dict[str, dict[str, int | bool]] = field(default_factory=dict)
    prior: float = 0.0
    household_prior: float = 0.0
    unestimated: list[str] = field(default_factory=list)
    term_frequencies: dict[str, int] = field(default_factory=dict)  # values kept per field


def train(
    frame: MatchFrame,
    candidate_levels: Mapping[str, np.ndarray],
    comparisons: Sequence[Comparison] = DEFAULT_COMPARISONS,
    sessions: Sequence[TrainingSession] = TRAINING_SESSIONS,
    *,
    household: TrainingSession | None = HOUSEHOLD_SESSION,
    random_pairs: int = 2_000_000,
    max_session_pairs: int = 2_000_000,
    seed: int = 0,
) -> tuple[FellegiSunter, TrainingReport]:
    """Fit a model to ``frame`` without labels (see the module docstring).

    Args:
        frame: the records.
        candidate_levels: the comparison levels of the blocked candidate pairs, as
            :func:`~crmhub.dedupe.compare.compare` returns them (to fit the priors on; the
            caller scores the same levels afterwards).
        comparisons: the field comparisons of the model.
        sessions: the EM training sessions for m.
        household: the session the household class is learnt on; None for a model without
            one.
        random_pairs: how many random pairs estimate u (more pairs, finer u for levels
            that strangers almost never reach, such as a shared email).
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
    random_levels = _random_levels(frame, comparisons, rng, random_pairs)
    report.random_pairs = len(next(iter(random_levels.values()))) if random_levels else 0
    model.fit_u(random_levels)

    _fit_m(model, frame, comparisons, sessions, rng, max_session_pairs, report)
    monotone = [c.name for c in comparisons if c.monotone]
    model.make_monotone(monotone)
    _count_terms(model, frame, comparisons, report)

    total_pairs = n * (n - 1) // 2
    # The priors are fitted three times below, each a sum of posteriors over the candidates,
    # with a model that changes little in between. Most candidates (namesakes in large
    # blocks) are far below any match and add nothing to those sums: keep the rest, once.
    candidate_levels = _plausible(model, candidate_levels)
    model.fit_prior(candidate_levels, total_pairs)
    # Now that m and the prior are known, take the expected matches out of the random pairs.
    model.fit_u(random_levels, match_share=model.prior)
    model.make_monotone(monotone)
    if household is not None and _fit_household(
        model, frame, comparisons, household, rng, max_session_pairs, report
    ):
        model.fit_prior(candidate_levels, total_pairs)
        if model.household_prior < MIN_HOUSEHOLD_SHARE * model.prior:
            model.drop_households()  # none to speak of: the class would only add noise
        else:
            # Family members are among the random pairs too: out of the strangers' u.
            model.fit_u(
                random_levels, match_share=model.prior, household_share=model.household_prior
            )
            model.make_monotone(monotone)
    report.prior = model.fit_prior(candidate_levels, total_pairs)
    report.household_prior = model.household_prior
    return model, report


PLAUSIBLE_WEIGHT = -10.0
"""Candidates below this match weight (under the model before its priors are fitted) are
left out of fitting the priors: with the priors of real data (one in ten thousand or rarer)
such a pair's posterior is below 2**-23, so ten million of them add about one match, and
refitting moves weights by a few bits, not ten."""


def _plausible(model: FellegiSunter, levels: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
    """The candidates whose match weight is above :data:`PLAUSIBLE_WEIGHT`."""
    keep = np.flatnonzero(model.match_weight(levels) > PLAUSIBLE_WEIGHT)
    if isinstance(levels, PairLevels):
        return levels.take(keep)  # still knowing the rows, for term frequencies
    return {name: np.asarray(level)[keep] for name, level in levels.items()}


def _random_levels(
    frame: MatchFrame, comparisons: Sequence[Comparison], rng: np.random.Generator, count: int
) -> dict[str, np.ndarray]:
    """The levels of ``count`` random record pairs (pairs of a record with itself left out),
    compared a slice at a time: only the levels are kept, and the comparisons' working
    arrays stay small."""
    left, right = rng.integers(0, len(frame), count), rng.integers(0, len(frame), count)
    keep = left != right
    left, right = left[keep], right[keep]
    parts: dict[str, list[np.ndarray]] = {c.name: [np.zeros(0, dtype=np.int8)] for c in comparisons}
    for start in range(0, len(left), _RANDOM_SLICE):
        rows = slice(start, start + _RANDOM_SLICE)
        for name, levels in compare(frame, left[rows], right[rows], comparisons).items():
            parts[name].append(levels)
    return {name: np.concatenate(levels) for name, levels in parts.items()}


def _count_terms(
    model: FellegiSunter,
    frame: MatchFrame,
    comparisons: Sequence[Comparison],
    report: TrainingReport,
) -> None:
    """Term-frequency tables of the comparisons that use them (values by digest only)."""
    for c in comparisons:
        if c.tf_field is None or not c.tf_levels:
            continue
        table = TermFrequencies.count(frame, c.tf_field, c.tf_levels)
        if c.tf_given is not None:
            table.given = c.tf_given[0]
            table.joint = TermFrequencies.count(frame, c.tf_given[1], ())
        model.tf[c.name] = table
        report.term_frequencies[c.name] = len(table.digests)


def _session_levels(
    frame: MatchFrame,
    comparisons: Sequence[Comparison],
    session: TrainingSession,
    rng: np.random.Generator,
    max_pairs: int,
) -> Mapping[str, np.ndarray]:
    """The comparison levels of the pairs ``session``'s rule blocks (sampled down)."""
    # A block of k records gives k * (k - 1) / 2 pairs but only some k / 2 duplicates: a
    # few large blocks (the namesakes of a common name) would outnumber every duplicate in
    # the session, and EM would learn them as the match class.
    pairs, _ = block(frame, [session.rule], max_block_size=SESSION_BLOCK_SIZE)
    chosen = np.arange(len(pairs))
    if len(chosen) > max_pairs:
        chosen = np.sort(rng.choice(len(chosen), max_pairs, replace=False))
    return compare(frame, pairs.left[chosen], pairs.right[chosen], comparisons)


def _fit_m(
    model: FellegiSunter,
    frame: MatchFrame,
    comparisons: Sequence[Comparison],
    sessions: Sequence[TrainingSession],
    rng: np.random.Generator,
    max_pairs: int,
    report: TrainingReport,
) -> None:
    """m of each field: the mean of the sessions' estimates, weighted by the matches each
    session found (a session of a hundred pairs says less than one of a hundred thousand)."""
    estimates: dict[str, list[tuple[float, np.ndarray]]] = {c.name: [] for c in comparisons}
    for session in sessions:
        levels = _session_levels(frame, comparisons, session, rng, max_pairs)
        size = len(next(iter(levels.values()))) if levels else 0
        fitted = copy.deepcopy(model)
        fitted.prior = 0.5  # within a session's pairs, matches are common
        fit = fitted.fit_em(levels, exclude=session.excludes)
        report.sessions[session.rule.name] = {
            "pairs": size,
            "iterations": fit.iterations,
            "converged": fit.converged,
        }
        if size == 0:
            continue
        for name, found in estimates.items():
            if name not in session.excludes:
                found.append((max(fit.matches, 1.0), fitted.fields[name].m))
    for name, found in estimates.items():
        if found:
            weights = np.array([w for w, _ in found])
            model.fields[name].m = np.average([m for _, m in found], axis=0, weights=weights)
        else:
            report.unestimated.append(name)


def _fit_household(
    model: FellegiSunter,
    frame: MatchFrame,
    comparisons: Sequence[Comparison],
    session: TrainingSession,
    rng: np.random.Generator,
    max_pairs: int,
    report: TrainingReport,
) -> bool:
    """h by three-class EM on the household session, and a first household prior (refined
    with the prior by :meth:`~crmhub.dedupe.model.FellegiSunter.fit_prior`). Returns False,
    leaving the model without a household class, when there are too few pairs to learn
    from."""
    levels = _session_levels(frame, comparisons, session, rng, max_pairs)
    size = len(next(iter(levels.values()))) if levels else 0
    if size < MIN_HOUSEHOLD_PAIRS:
        report.sessions[session.rule.name] = {"pairs": size, "iterations": 0, "converged": False}
        return False
    fit = model.fit_household(levels, exclude=session.excludes)
    report.sessions[session.rule.name] = {
        "pairs": size,
        "iterations": fit.iterations,
        "converged": fit.converged,
    }
    model.household_prior = model.prior  # a start: the fixed point moves it
    return True

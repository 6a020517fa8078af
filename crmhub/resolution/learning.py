"""Learning from stewards, and what a steward sees of a pair.

A steward's decision on a pair is a label: ``accepted`` says the two records are one person,
``rejected`` that they are not. Labels are the pairs whose status is one of those and that a
person decided (``decided_by`` set, and not ``auto``): decisions on suggestions, and the pairs
merges and unmerges create or change.

**Training with labels** (:func:`refine_with_labels`, run by ``crmhub dedupe train`` after
the unsupervised training of :mod:`crmhub.dedupe.training`):

- **m** of each field, from the accepted pairs blended with the EM estimate: the EM estimate
  counts as :data:`LABEL_PRIOR_PAIRS` pairs (a Dirichlet prior centred on it), so a handful
  of labels nudges m and, as labels accumulate, m becomes their own frequencies (supervised
  estimation). Labels are not a random sample of matches (stewards see the hard pairs, not
  the ones every field agrees on), which is why EM keeps a say until there are many.
- **u** stays the estimate from random record pairs, which is what u is: the level
  distribution over *all* non-matching pairs. Each rejected pair is one of those, known for
  certain, and replaces one expected pair of that estimate (``u = (counts + (N - r) u) / N``
  over the hub's N non-matching pairs). Rejections are a biased sample (near-misses,
  households), so u is never set from them alone: that would make agreeing on a surname
  look like no evidence at all for every pair of the hub.
- the nested similarity bands are kept in order, and the prior is fitted again over the
  candidate pairs (it is a fixed point of m and u).

**The report** (:func:`learning_report`, ``crmhub dedupe report``): precision and recall of
the current model against the labels, and how many pending suggestions would change band
(auto-merge / review / no match) under the model refitted with them — worked out in memory,
nothing stored.

The pair explanation a steward decides on is :func:`crmhub.resolution.queue.pair_view`, the
same in the web and the terminal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.engine import Connection

from crmhub.dedupe.compare import compare
from crmhub.dedupe.model import FellegiSunter, Levels
from crmhub.dedupe.normalize import match_frame
from crmhub.dedupe.pipeline import MatchResult, MatchSettings, ScoredPairs, match_records
from crmhub.resolution.pairs import DECIDED
from crmhub.resolution.records import load_records, persons, read_people
from crmhub.store.schema import match_pairs

if TYPE_CHECKING:
    from crmhub.resolution.resolver import Resolver

__all__ = [
    "BANDS",
    "LABEL_PRIOR_PAIRS",
    "MIN_REPORT_LABELS",
    "Label",
    "LabelFit",
    "LearningReport",
    "band",
    "fit_labels",
    "learning_report",
    "refine_with_labels",
    "steward_labels",
]

_p = match_pairs.c

LABEL_PRIOR_PAIRS = 100.0
"""How many labelled pairs the EM estimate of m counts as when blended with the labels: at
100 accepted pairs, m is half theirs; at 1,000, nine tenths."""

MIN_REPORT_LABELS = 30
"""Fewer pairs than this behind a precision or a recall, and the report says it is rough."""

BANDS = ("auto_merge", "review", "no_match")
"""What becomes of a pair by its probability: linked, suggested, or left apart."""

_MONOTONE_SLACK = 1e-12


# ---------------------------------------------------------------------- labels
@dataclass(frozen=True)
class Label:
    """One steward decision on a pair."""

    pair_id: int
    left_id: int
    right_id: int
    is_match: bool
    probability: float  # as stored with the pair


def steward_labels(conn: Connection) -> list[Label]:
    """The pairs a person accepted or rejected (see the module docstring), by pair id."""
    rows = conn.execute(
        select(_p.id, _p.left_id, _p.right_id, _p.status, _p.probability)
        .where(
            _p.status.in_(sorted(DECIDED)),
            _p.decided_by.is_not(None),
            _p.decided_by != "auto",
        )
        .order_by(_p.id)
    )
    return [
        Label(int(pid), int(left), int(right), status == "accepted", float(probability))
        for pid, left, right, status, probability in rows
    ]


@dataclass
class LabelFit:
    """What training took from the labels."""

    accepted: int = 0  # accepted pairs whose two records are in the hub
    rejected: int = 0

    @property
    def used(self) -> int:
        """Labels used."""
        return self.accepted + self.rejected


def fit_labels(
    model: FellegiSunter,
    levels: Levels,
    is_match: npt.NDArray[np.bool_],
    *,
    non_matches: float,
    monotone: Iterable[str] = (),
    prior_pairs: float = LABEL_PRIOR_PAIRS,
) -> None:
    """Blend labelled pairs into ``model``'s m and u (see the module docstring).

    Args:
        levels: the comparison levels of the labelled pairs.
        is_match: per pair, accepted (True) or rejected (False).
        non_matches: how many non-matching record pairs the hub holds (about every pair of
            it): the population u describes, of which each rejected pair is one.
        monotone: fields whose levels are nested bands, kept in order afterwards.
        prior_pairs: the weight of the EM estimate of m, in labelled pairs.
    """
    is_match = np.asarray(is_match, dtype=bool)
    for name, params in model.fields.items():
        coded = np.asarray(levels[name], dtype=np.intp)
        size = len(params.m)
        accepted = _level_counts(coded[is_match], size)
        if accepted.sum() > 0:
            m = params.m.copy()
            m[1:] = (accepted + prior_pairs * m[1:]) / (accepted.sum() + prior_pairs)
            params.m = m
        rejected = _level_counts(coded[~is_match], size)
        count = float(rejected.sum())
        if count > 0:
            rest = max(float(non_matches) - count, 0.0)
            u = params.u.copy()
            u[1:] = (rejected + rest * u[1:]) / (count + rest)
            params.u = u
    names = [name for name in monotone if name in model.fields]
    if names:
        model.make_monotone(names)


def _level_counts(levels: npt.NDArray[np.intp], size: int) -> npt.NDArray[np.float64]:
    """How many pairs reached each non-null level (index 0 of the result is level 1)."""
    counts = np.bincount(levels, minlength=size)[:size].astype(np.float64)
    return counts[1:]


def refine_with_labels(conn: Connection, result: MatchResult, settings: MatchSettings) -> LabelFit:
    """Refine the model just trained on the hub's records (``result``) with the stewards'
    labels, fit its prior again and score its candidate pairs with it (in place). Labels
    whose records are no longer live are left out."""
    row_of = {rid: row for row, rid in enumerate(result.frame.ids.tolist())}
    usable = [
        (row_of[label.left_id], row_of[label.right_id], label.is_match)
        for label in steward_labels(conn)
        if label.left_id in row_of and label.right_id in row_of
    ]
    fit = LabelFit(
        accepted=sum(1 for _, _, m in usable if m), rejected=sum(1 for _, _, m in usable if not m)
    )
    if not usable:
        return fit
    left = np.array([a for a, _, _ in usable], dtype=np.int64)
    right = np.array([b for _, b, _ in usable], dtype=np.int64)
    levels = compare(result.frame, left, right, settings.comparisons)
    model = result.model
    n = len(result.frame)
    total = n * (n - 1) // 2
    fit_labels(
        model,
        levels,
        np.array([m for _, _, m in usable], dtype=bool),
        non_matches=total * (1.0 - model.prior),
        monotone=[c.name for c in settings.comparisons if c.monotone],
    )
    if len(result.pairs) and total > 0:
        model.fit_prior(result.pairs.levels, total)
    result.pairs = ScoredPairs.of(result.pairs.left, result.pairs.right, result.pairs.levels, model)
    return fit


# ---------------------------------------------------------------------- report
def band(probability: float, settings: MatchSettings) -> str:
    """The band of :data:`BANDS` a probability falls in."""
    if probability >= settings.auto_merge:
        return "auto_merge"
    if probability >= settings.review:
        return "review"
    return "no_match"


def _interval(hits: int, total: int) -> list[float] | None:
    """The Wilson 95% interval of ``hits / total`` (None when ``total`` is 0)."""
    if total == 0:
        return None
    z = 1.959963984540054
    share = hits / total
    centre = (share + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total))
    half /= 1 + z * z / total
    return [round(max(centre - half, 0.0), 4), round(min(centre + half, 1.0), 4)]


@dataclass
class LearningReport:
    """Precision and recall against the stewards' labels, and what refitting would change."""

    model_version: int
    auto_merge: float
    review: float
    accepted: int = 0  # labels scored (both records live)
    rejected: int = 0
    predicted_match: int = 0  # labelled pairs at or above auto_merge under the current model
    true_positives: int = 0  # of those, accepted
    precision: float | None = None
    precision_interval: list[float] | None = None
    recall: float | None = None
    recall_interval: list[float] | None = None
    pending: int = 0  # pending suggestions scored under both models
    would_change: int = 0
    changes: dict[str, int] = field(default_factory=dict)  # "review -> auto_merge": count
    refit_labels: int = 0  # labels the refitted model used
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {
            "model_version": self.model_version,
            "thresholds": {"auto_merge": self.auto_merge, "review": self.review},
            "labels": {"accepted": self.accepted, "rejected": self.rejected},
            "predicted_match": self.predicted_match,
            "true_positives": self.true_positives,
            "precision": self.precision,
            "precision_interval": self.precision_interval,
            "recall": self.recall,
            "recall_interval": self.recall_interval,
            "refit": {
                "labels_used": self.refit_labels,
                "pending": self.pending,
                "would_change": self.would_change,
                "changes": dict(self.changes),
                "stored": False,
            },
            "notes": list(self.notes),
        }


def learning_report(resolver: Resolver, *, refit: bool = True) -> LearningReport:
    """How the current model agrees with the stewards, and what the model refitted with
    their labels would change (see the module docstring). Reads only: nothing is stored.

    A labelled pair counts as predicted-match when its probability under the current model
    is at or above ``auto_merge``; precision is the share of accepted pairs among those,
    recall the share of predicted-match pairs among the accepted ones. ``refit=False``
    skips the refit (a full training over the hub's records)."""
    settings = resolver.settings
    with resolver.engine.connect() as conn:
        current = resolver.model(conn)
        report = LearningReport(current.version, settings.auto_merge, settings.review)
        labels = steward_labels(conn)
        scored = _score_pairs(
            conn, [(x.left_id, x.right_id) for x in labels], current.model, settings
        )
        hits = [
            (label.is_match, scored[i] >= settings.auto_merge)
            for i, label in enumerate(labels)
            if not math.isnan(scored[i])
        ]
        report.accepted = sum(1 for match, _ in hits if match)
        report.rejected = len(hits) - report.accepted
        report.predicted_match = sum(1 for _, predicted in hits if predicted)
        report.true_positives = sum(1 for match, predicted in hits if match and predicted)
        if report.predicted_match:
            report.precision = round(report.true_positives / report.predicted_match, 4)
            report.precision_interval = _interval(report.true_positives, report.predicted_match)
        if report.accepted:
            report.recall = round(report.true_positives / report.accepted, 4)
            report.recall_interval = _interval(report.true_positives, report.accepted)
        report.notes.extend(_notes(report))
        if refit:
            _refit_changes(conn, resolver, current.model, report)
    return report


def _notes(report: LearningReport) -> list[str]:
    notes: list[str] = []
    if not report.accepted and not report.rejected:
        return ["no steward decisions yet: precision and recall need labels"]
    for name, count, what in (
        ("precision", report.predicted_match, "labelled pairs at or above auto_merge"),
        ("recall", report.accepted, "accepted pairs"),
    ):
        if count == 0:
            notes.append(f"{name} cannot be estimated: no {what}")
        elif count < MIN_REPORT_LABELS:
            notes.append(
                f"{name} rests on {count} {what} (fewer than {MIN_REPORT_LABELS}): a rough "
                "estimate, see its 95% interval"
            )
    notes.append(
        "labels are the pairs stewards decided (mostly suggestions), not a random sample: "
        "these figures say how the model agrees with stewards on such pairs"
    )
    return notes


def _score_pairs(
    conn: Connection,
    pairs: Sequence[tuple[int, int]],
    model: FellegiSunter,
    settings: MatchSettings,
) -> list[float]:
    """The probability of each pair of records under ``model`` (NaN where a record is not
    live), from a frame of just their records."""
    if not pairs:
        return []
    records = load_records(conn, {rid for pair in pairs for rid in pair})
    frame = match_frame(persons([records[rid] for rid in sorted(records)]))
    row_of = {rid: row for row, rid in enumerate(frame.ids.tolist())}
    at = [i for i, (a, b) in enumerate(pairs) if a in row_of and b in row_of]
    out = [math.nan] * len(pairs)
    if at:
        left = np.array([row_of[pairs[i][0]] for i in at], dtype=np.int64)
        right = np.array([row_of[pairs[i][1]] for i in at], dtype=np.int64)
        levels = compare(frame, left, right, settings.comparisons)
        for i, probability in zip(at, model.probability(levels).tolist(), strict=True):
            out[i] = probability
    return out


def _refit_changes(
    conn: Connection, resolver: Resolver, current: FellegiSunter, report: LearningReport
) -> None:
    """Train as ``crmhub dedupe train`` would (labels included), in memory, and count the
    pending suggestions whose band it changes."""
    settings = resolver.settings
    pending = conn.execute(
        select(_p.left_id, _p.right_id).where(_p.status == "pending").order_by(_p.id)
    ).all()
    people = read_people(conn)
    if len(people) < 2:
        report.notes.append("too few records to train a model")
        return
    result = match_records(people, settings, model=None)
    del people
    report.refit_labels = refine_with_labels(conn, result, settings).used
    if report.model_version == 0:
        report.notes.append(
            "the hub scores with the built-in model: the refitted model is its first own one, "
            "so band changes come from training on the hub's records as well as from the labels"
        )
    if not report.refit_labels:
        report.notes.append(
            "no usable labels: the refitted model is what training without them gives"
        )
    row_of = {rid: row for row, rid in enumerate(result.frame.ids.tolist())}
    usable = [(row_of[a], row_of[b]) for a, b in pending if a in row_of and b in row_of]
    report.pending = len(usable)
    if not usable:
        return
    left = np.array([a for a, _ in usable], dtype=np.int64)
    right = np.array([b for _, b in usable], dtype=np.int64)
    levels = compare(result.frame, left, right, settings.comparisons)
    before = current.probability(levels).tolist()
    after = result.model.probability(levels).tolist()
    for old, new in zip(before, after, strict=True):
        was, becomes = band(old, settings), band(new, settings)
        if was != becomes:
            key = f"{was} -> {becomes}"
            report.changes[key] = report.changes.get(key, 0) + 1
            report.would_change += 1

"""The matching pipeline in memory: records in, clusters and scored pairs out.

One function, :func:`match_records`, runs every stage on canonical records — match keys,
blocking, comparison, (training), scoring, clustering — and returns everything a caller may
want to keep: the scored candidate pairs, the cluster of each record, and what each stage did
and how long it took. The hub's batch matching, file dedupe and the benchmarks all run it;
incremental matching in the hub runs :func:`score_pairs` and :func:`cluster_records` on the
few records a change touches, so both paths score and cluster the same way.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from crmhub.config import DedupeSettings
from crmhub.dedupe.blocking import DEFAULT_RULES, BlockingReport, BlockingRule, block
from crmhub.dedupe.cluster import ClusterReport, cluster
from crmhub.dedupe.compare import DEFAULT_COMPARISONS, Comparison, PairLevels, compare
from crmhub.dedupe.frame import MatchFrame
from crmhub.dedupe.model import FellegiSunter
from crmhub.dedupe.normalize import match_frame
from crmhub.dedupe.training import TrainingReport, train
from crmhub.errors import DedupeError
from crmhub.model import Person

__all__ = [
    "MatchResult",
    "MatchSettings",
    "ScoredPairs",
    "cluster_records",
    "hard_identifiers",
    "match_records",
    "score_pairs",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class MatchSettings:
    """How records are matched: thresholds, blocking rules, comparisons and guards."""

    auto_merge: float = 0.95
    review: float = 0.60
    rules: Sequence[BlockingRule] = DEFAULT_RULES
    comparisons: Sequence[Comparison] = DEFAULT_COMPARISONS
    max_block_size: int = 500
    bridge_links: int = 2
    hard_identifiers: frozenset[str] = frozenset({"tax_id", "national_id", "passport"})

    @classmethod
    def from_config(cls, dedupe: DedupeSettings) -> MatchSettings:
        """Settings from the hub config's ``[dedupe]`` section."""
        configured = dedupe.blocking_rules
        rules = (
            DEFAULT_RULES
            if configured is None
            else tuple(BlockingRule(name, tuple(fields)) for name, fields in configured.items())
        )
        return cls(
            rules=rules,
            auto_merge=dedupe.auto_merge,
            review=dedupe.review,
            max_block_size=dedupe.max_block_size,
            hard_identifiers=frozenset(dedupe.hard_identifiers),
        )


@dataclass
class ScoredPairs:
    """Candidate pairs (frame rows, ``left < right``) with their levels and scores."""

    left: IntArray
    right: IntArray
    levels: dict[str, npt.NDArray[np.int8]]
    weight: FloatArray
    probability: FloatArray

    @classmethod
    def of(
        cls,
        left: IntArray,
        right: IntArray,
        levels: dict[str, npt.NDArray[np.int8]],
        model: FellegiSunter,
    ) -> ScoredPairs:
        """Score pairs whose comparison levels are known."""
        weight = model.match_weight(levels)
        return cls(left, right, levels, weight, model.probability_of_weight(weight))

    def __len__(self) -> int:
        return len(self.left)

    def parts(
        self, model: FellegiSunter, index: npt.ArrayLike
    ) -> tuple[dict[str, FloatArray], FloatArray | None]:
        """The parts of the match weight of the pairs at ``index``: each field's weight (term
        frequencies included) and the household term (None without a household class).
        They add up to ``weight``."""
        levels = _take(self.levels, np.asarray(index))
        household = model.household_weight(levels) if model.has_households else None
        return model.field_weights(levels), household

    def select(self, mask: npt.NDArray[np.bool_]) -> ScoredPairs:
        """The pairs where ``mask`` holds."""
        return ScoredPairs(
            self.left[mask],
            self.right[mask],
            _take(self.levels, mask),
            self.weight[mask],
            self.probability[mask],
        )


def _take(
    levels: Mapping[str, npt.NDArray[np.int8]], index: npt.NDArray[np.generic]
) -> dict[str, npt.NDArray[np.int8]]:
    """The levels of the pairs at ``index``, keeping what term frequencies need."""
    if isinstance(levels, PairLevels):
        return levels.take(index)
    return {name: level[index] for name, level in levels.items()}


@dataclass
class MatchResult:
    """Everything :func:`match_records` found. Rows are positions in ``frame`` (records
    sorted by id); ``labels[row]`` is the row of the smallest record id of its cluster."""

    frame: MatchFrame
    pairs: ScoredPairs
    labels: IntArray
    model: FellegiSunter
    blocking: BlockingReport
    clustering: ClusterReport
    training: TrainingReport | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def unmatchable(self) -> int:
        """Records with nothing to match on (no name, email, phone or identifier): each is
        its own customer."""
        return int(self.frame.unmatchable().sum())

    def clusters(self) -> list[list[int]]:
        """Each cluster's record ids, ascending; clusters ordered by their first id."""
        ids = self.frame.ids
        order = np.lexsort((ids, self.labels))
        labels, sorted_ids = self.labels[order], ids[order]
        starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
        groups = np.split(sorted_ids, starts[1:]) if len(sorted_ids) else []
        return sorted((group.tolist() for group in groups), key=lambda g: g[0])

    def cluster_of(self) -> dict[int, int]:
        """Record id -> the smallest record id of its cluster."""
        return dict(zip(self.frame.ids.tolist(), self.frame.ids[self.labels].tolist(), strict=True))


def hard_identifiers(frame: MatchFrame, kinds: frozenset[str]) -> dict[int, dict[str, str]]:
    """Per row, the identifiers of ``kinds`` (that must agree within a cluster)."""
    found: dict[int, dict[str, str]] = {}
    if not kinds:
        return found
    for row, values in enumerate(frame.multi("identifiers")):
        for value in values:
            kind, _, ident = value.partition(":")
            if kind in kinds:
                found.setdefault(row, {})[kind] = ident
    return found


def score_pairs(
    frame: MatchFrame,
    left: IntArray,
    right: IntArray,
    model: FellegiSunter,
    comparisons: Sequence[Comparison] = DEFAULT_COMPARISONS,
) -> ScoredPairs:
    """Compare and score the pairs ``(left[i], right[i])`` of ``frame`` rows."""
    return ScoredPairs.of(left, right, compare(frame, left, right, comparisons), model)


def cluster_records(
    frame: MatchFrame,
    pairs: ScoredPairs,
    settings: MatchSettings,
    *,
    must_link: Sequence[tuple[int, int]] = (),
    cannot_link: Sequence[tuple[int, int]] = (),
) -> tuple[IntArray, ClusterReport]:
    """Cluster the rows of ``frame`` from scored pairs and steward decisions (row pairs).

    ``frame`` must hold its records in ascending id order: ties between equally strong links
    are then broken by record id, and a cluster is labelled by its smallest id, whichever
    subset of the hub a frame holds.
    """
    if len(frame) > 1 and bool(np.any(np.diff(frame.ids) <= 0)):
        raise DedupeError("records to cluster must be in ascending id order, each once")
    return cluster(
        len(frame),
        pairs.left,
        pairs.right,
        pairs.probability,
        auto_merge=settings.auto_merge,
        cannot_link=cannot_link,
        must_link=must_link,
        hard_identifiers=hard_identifiers(frame, settings.hard_identifiers),
        bridge_links=settings.bridge_links,
    )


def match_records(
    records: Sequence[tuple[int, Person]],
    settings: MatchSettings | None = None,
    *,
    model: FellegiSunter | None = None,
    must_link: Sequence[tuple[int, int]] = (),
    cannot_link: Sequence[tuple[int, int]] = (),
    seed: int = 0,
) -> MatchResult:
    """Deduplicate ``records`` in memory.

    Args:
        records: ``(id, person)`` pairs with distinct ids (in any order).
        settings: thresholds, rules, comparisons; the defaults if None.
        model: a trained model; if None, one is trained on ``records`` without labels.
        must_link: id pairs a steward accepted; cannot_link: id pairs a steward rejected.
        seed: for training's random samples.

    Raises:
        DedupeError: if ids repeat, or a model is to be trained on fewer than two records.
    """
    started = time.perf_counter()
    frame = match_frame(sorted(records, key=lambda record: record[0]))
    keys = time.perf_counter() - started
    result = match_frame_records(
        frame, settings, model=model, must_link=must_link, cannot_link=cannot_link, seed=seed
    )
    result.seconds = {"keys": keys, **result.seconds}
    return result


def match_frame_records(
    frame: MatchFrame,
    settings: MatchSettings | None = None,
    *,
    model: FellegiSunter | None = None,
    must_link: Sequence[tuple[int, int]] = (),
    cannot_link: Sequence[tuple[int, int]] = (),
    seed: int = 0,
) -> MatchResult:
    """Deduplicate the records of a match frame: :func:`match_records` for a caller that
    built the frame itself, say a chunk of records at a time (:func:`~crmhub.dedupe.
    normalize.match_frame_chunked`), so that a million canonical records never need to be
    in memory at once.

    Raises:
        DedupeError: if the frame's ids are not ascending and distinct, or a model is to be
            trained on fewer than two records.
    """
    settings = settings or MatchSettings()
    seconds: dict[str, float] = {}
    mark = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        seconds[name] = now - mark
        mark = now

    if len(frame) > 1 and bool(np.any(np.diff(frame.ids) <= 0)):
        raise DedupeError("record ids must be distinct (and, in a frame, ascending)")
    candidates, blocking = block(frame, settings.rules, max_block_size=settings.max_block_size)
    stage("block")
    levels = compare(frame, candidates.left, candidates.right, settings.comparisons)
    stage("compare")
    training = None
    if model is None:
        model, training = train(frame, levels, settings.comparisons, seed=seed)
        stage("train")
    pairs = ScoredPairs.of(candidates.left, candidates.right, levels, model)
    stage("score")
    labels, clustering = cluster_records(
        frame,
        pairs,
        settings,
        must_link=_rows_of(frame, must_link),
        cannot_link=_rows_of(frame, cannot_link),
    )
    stage("cluster")
    return MatchResult(frame, pairs, labels, model, blocking, clustering, training, seconds)


def _rows_of(frame: MatchFrame, id_pairs: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Id pairs as row pairs; pairs naming an id not in the frame are left out."""
    if not id_pairs:
        return []
    row_of: Mapping[int, int] = {record_id: row for row, record_id in enumerate(frame.ids.tolist())}
    return [(row_of[a], row_of[b]) for a, b in id_pairs if a in row_of and b in row_of and a != b]

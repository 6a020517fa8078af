"""Matching inside the hub: new and changed records find their customers.

Two paths give the same clusters on the same data:

- **incremental** (after every sync): records waiting for matching look up their
  candidates through ``match_keys``, their pairs are scored with the active model, and only
  the connected group of records they touch is clustered again;
- **full** (``crmhub dedupe --full``, or when most of the hub is new): every record is keyed,
  blocked, scored and clustered.

Clustering a connected group gives the same result as clustering everything (see
:mod:`crmhub.dedupe.cluster`), and stored pairs are the same either way, because candidates
come from the same keys under the same block-size cap. Each step commits its records'
keys, pairs, links, golden records and "matched" marks in one transaction: a crash loses at
most the step in flight, which the next run redoes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import structlog
from sqlalchemy import delete, select
from sqlalchemy.engine import Connection, Engine

from crmhub.config import HubConfig, SurvivorshipSettings
from crmhub.dedupe.builtin import MIN_TRAINING_RECORDS
from crmhub.dedupe.compare import compare
from crmhub.dedupe.normalize import match_frame
from crmhub.dedupe.pipeline import (
    MatchResult,
    MatchSettings,
    ScoredPairs,
    match_records,
    score_pairs,
)
from crmhub.resolution.golden import SettleReport, settle
from crmhub.resolution.keys import find_candidates, frame_keys, replace_keys
from crmhub.resolution.models import StoredModel, active_model, builtin_model, save_model
from crmhub.resolution.pairs import linked_neighbours, pairs_among, store_scored
from crmhub.resolution.records import HubRecord, count_live, load_records, pending_ids, persons
from crmhub.store.dialect import in_chunks, lock_hub
from crmhub.store.schema import match_keys, match_pairs, source_records

__all__ = ["MIN_OWN_MODEL_RECORDS", "ResolveReport", "Resolver"]

log = structlog.get_logger(__name__)

MIN_OWN_MODEL_RECORDS = MIN_TRAINING_RECORDS
"""Live records a hub needs before it trains its own model instead of the built-in one."""

FULL_PASS_SHARE = 0.25
"""When this share of the hub waits for matching, one full pass is cheaper than lookups."""

STEP_RECORDS = 2_000
"""Waiting records matched per incremental transaction."""


@dataclass
class ResolveReport:
    """What a matching run did."""

    mode: str = "incremental"  # incremental | full | none
    records: int = 0
    pairs_scored: int = 0
    model_version: int = 0
    trained: bool = False
    oversized_blocks: dict[str, int] = field(default_factory=dict)
    settled: SettleReport = field(default_factory=SettleReport)
    seconds: float = 0.0

    def add(self, settled: SettleReport) -> None:
        """Add one step's settling figures."""
        for name in (
            "records",
            "clusters",
            "customers_created",
            "customers_updated",
            "customers_merged",
            "customers_removed",
            "refused_links",
        ):
            setattr(self.settled, name, getattr(self.settled, name) + getattr(settled, name))

    def as_dict(self) -> dict[str, Any]:
        """The report as plain data (for ``--json`` and logs)."""
        settled = {k: v for k, v in vars(self.settled).items() if k != "merged_customers"}
        return {
            **{k: v for k, v in vars(self).items() if k != "settled"},
            **settled,
            "seconds": round(self.seconds, 3),
        }


class Resolver:
    """Matches the hub's person records into customers (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        settings: MatchSettings | None = None,
        survivorship: SurvivorshipSettings | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings or MatchSettings()
        self.survivorship = survivorship or SurvivorshipSettings()

    @classmethod
    def from_config(cls, engine: Engine, config: HubConfig) -> Resolver:
        """A resolver with the hub config's ``[dedupe]`` and ``[survivorship]`` settings."""
        return cls(engine, MatchSettings.from_config(config.dedupe), config.survivorship)

    # ------------------------------------------------------------------ entry points
    def resolve(self) -> ResolveReport:
        """Match every record waiting for it; a full pass when that is the cheaper way."""
        started = time.perf_counter()
        with self.engine.connect() as conn:
            waiting = len(pending_ids(conn))
            live = count_live(conn)
            model = self._active(conn)
        if not waiting:
            return ResolveReport(mode="none", seconds=time.perf_counter() - started)
        if (model is None and live >= MIN_OWN_MODEL_RECORDS) or waiting >= FULL_PASS_SHARE * live:
            return self.full(train=model is None and live >= MIN_OWN_MODEL_RECORDS)
        report = ResolveReport()
        while True:
            with self.engine.begin() as conn:
                lock_hub(conn)
                batch = pending_ids(conn, limit=STEP_RECORDS)
                if not batch:
                    break
                self._step(conn, batch, report)
        report.seconds = time.perf_counter() - started
        log.info("dedupe.incremental", **report.as_dict())
        return report

    def full(self, *, train: bool = False) -> ResolveReport:
        """Key, block, score and cluster every record again, in one transaction.

        Args:
            train: fit a new model on the hub's records first (and make it active).
        """
        started = time.perf_counter()
        report = ResolveReport(mode="full")
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            lock_hub(conn)
            records = load_records(conn)
            stored = None if train else self.model(conn)
            result = match_records(
                persons(list(records.values())),
                self.settings,
                model=stored.model if stored else None,
            )
            if stored is None:
                labelled = _refine_with_decisions(conn, result, self.settings)
                trained_on = {
                    "records": len(result.frame),
                    "pairs": len(result.pairs),
                    "sessions": result.training.sessions if result.training else {},
                    "steward_pairs": labelled,
                }
                stored = save_model(conn, result.model, trained_on, now)
                report.trained = True
            report.model_version = stored.version
            report.records = len(records)
            report.pairs_scored = len(result.pairs)
            report.oversized_blocks = dict(result.blocking.oversized_blocks)
            conn.execute(delete(match_keys))
            replace_keys(conn, [], frame_keys(result.frame, self.settings.rules))
            hashes = {rid: record.content_hash for rid, record in records.items()}
            store_scored(
                conn,
                result.frame.ids,
                result.pairs,
                stored.model,
                model_version=stored.version,
                hashes=hashes,
                review=self.settings.review,
                now=now,
                touching=None,
            )
            pairs = pairs_among(conn, records)
            report.add(
                settle(
                    conn, records, result.frame, pairs, self.settings, self.survivorship, now=now
                )
            )
        report.seconds = time.perf_counter() - started
        log.info("dedupe.full", **report.as_dict())
        return report

    def model(self, conn: Connection) -> StoredModel:
        """The active model, or the built-in one."""
        return self._active(conn) or builtin_model()

    def _active(self, conn: Connection) -> StoredModel | None:
        """The active model if it scores the configured comparisons; None otherwise (a model
        trained before the comparisons changed cannot score them: the next run trains again,
        and the built-in model stands in until then)."""
        stored = active_model(conn)
        if stored is None:
            return None
        wanted = {comparison.name for comparison in self.settings.comparisons}
        if set(stored.model.fields) != wanted:
            log.warning("dedupe.model_outdated", version=stored.version)
            return None
        return stored

    # ------------------------------------------------------------------ incremental
    def _step(self, conn: Connection, waiting: list[int], report: ResolveReport) -> None:
        now = datetime.now(UTC)
        stored = self.model(conn)
        report.model_version = stored.version
        records = load_records(conn, waiting)
        frame = match_frame(persons([records[rid] for rid in sorted(records)]))
        key_rows = frame_keys(frame, self.settings.rules)
        replace_keys(conn, waiting, key_rows)
        lookup = find_candidates(conn, key_rows, self.settings.max_block_size)
        for rule, count in lookup.oversized_blocks.items():
            report.oversized_blocks[rule] = report.oversized_blocks.get(rule, 0) + count
        others = set(np.r_[lookup.left, lookup.right].tolist()) - set(records)
        records.update(load_records(conn, others))
        scope = match_frame(persons([records[rid] for rid in sorted(records)]))
        row_of = {rid: row for row, rid in enumerate(scope.ids.tolist())}
        usable = [
            i
            for i, (a, b) in enumerate(
                zip(lookup.left.tolist(), lookup.right.tolist(), strict=True)
            )
            if a in row_of and b in row_of
        ]
        left = np.array([row_of[int(lookup.left[i])] for i in usable], dtype=np.int64)
        right = np.array([row_of[int(lookup.right[i])] for i in usable], dtype=np.int64)
        scored = score_pairs(scope, left, right, stored.model, self.settings.comparisons)
        report.pairs_scored += len(scored)
        hashes = {rid: record.content_hash for rid, record in records.items()}
        store_scored(
            conn,
            scope.ids,
            scored,
            stored.model,
            model_version=stored.version,
            hashes=hashes,
            review=self.settings.review,
            now=now,
            touching=waiting,
        )
        report.records += len(waiting)
        report.add(self.settle_group(conn, waiting, now=now, known=records))

    def settle_group(
        self,
        conn: Connection,
        record_ids: Iterable[int],
        *,
        now: datetime,
        prefer: Sequence[str] = (),
        claims: Mapping[int, str | None] | None = None,
        known: dict[int, HubRecord] | None = None,
    ) -> SettleReport:
        """Cluster again the connected group of ``record_ids`` and write its customers."""
        group = connected_group(conn, record_ids, self.settings.auto_merge)
        records = {rid: r for rid, r in (known or {}).items() if rid in group}
        records.update(load_records(conn, group - set(records)))
        frame = match_frame(persons([records[rid] for rid in sorted(records)]))
        pairs = pairs_among(conn, records)
        return settle(
            conn,
            records,
            frame,
            pairs,
            self.settings,
            self.survivorship,
            now=now,
            prefer=prefer,
            claims=claims,
        )


MIN_LABELLED_MATCHES = 50
"""Accepted pairs needed before steward decisions set the model's m probabilities."""


def _refine_with_decisions(conn: Connection, result: MatchResult, settings: MatchSettings) -> int:
    """Fit m (and u, given enough rejections) from steward decisions on this data, and score
    the pairs again with the refined model; returns the decisions used (0: too few)."""
    p = match_pairs.c
    decided = conn.execute(
        select(p.left_id, p.right_id, p.status).where(p.status.in_(("accepted", "rejected")))
    ).all()
    if sum(status == "accepted" for _, _, status in decided) < MIN_LABELLED_MATCHES:
        return 0
    row_of = {rid: row for row, rid in enumerate(result.frame.ids.tolist())}
    usable = [
        (row_of[a], row_of[b], s == "accepted")
        for a, b, s in decided
        if a in row_of and b in row_of
    ]
    left = np.array([a for a, _, _ in usable], dtype=np.int64)
    right = np.array([b for _, b, _ in usable], dtype=np.int64)
    levels = compare(result.frame, left, right, settings.comparisons)
    result.model.fit_labels(levels, np.array([m for _, _, m in usable], dtype=bool))
    result.pairs = ScoredPairs.of(
        result.pairs.left, result.pairs.right, result.pairs.levels, result.model
    )
    return len(usable)


def connected_group(conn: Connection, record_ids: Iterable[int], auto_merge: float) -> set[int]:
    """``record_ids``, every record a linking pair reaches from them, and every member of the
    customers all these belong to — until nothing new is reached."""
    group: set[int] = set(record_ids)
    frontier = set(group)
    while frontier:
        reached = linked_neighbours(conn, frontier, auto_merge) | _customer_members(conn, frontier)
        frontier = reached - group
        group |= frontier
    return group


def _customer_members(conn: Connection, record_ids: set[int]) -> set[int]:
    t = source_records.c
    customer_ids: set[str] = set()
    for chunk in in_chunks(sorted(record_ids)):
        customer_ids.update(
            c for c in conn.execute(select(t.customer_id).where(t.id.in_(chunk))).scalars() if c
        )
    members: set[int] = set()
    for ids in in_chunks(sorted(customer_ids)):
        members.update(conn.execute(select(t.id).where(t.customer_id.in_(ids))).scalars())
    return members

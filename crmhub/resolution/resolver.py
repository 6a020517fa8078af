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

A step costs what the record touches, not what the hub holds: waiting records come from a
partial index, block sizes are read up to the cap and no further, records are read as stored
JSON without validating them again, and statements are built once. A full pass works out
every pair's final status in memory and writes each table once, in bulk, holding the
candidate pairs and the records' stored text never at the same time (see
``benchmarks/BENCHMARKS.md`` for the figures at 100,000 and 1,000,000 records).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import numpy as np
import structlog
from sqlalchemy import bindparam, or_, select, union
from sqlalchemy.engine import Connection, Engine

from crmhub.collector import collector_paused
from crmhub.config import HubConfig, SurvivorshipSettings
from crmhub.dedupe.builtin import MIN_TRAINING_RECORDS
from crmhub.dedupe.normalize import match_frame
from crmhub.dedupe.pipeline import (
    MatchResult,
    MatchSettings,
    match_records,
    score_pairs,
)
from crmhub.model import Person
from crmhub.resolution.bulk import larger_cache
from crmhub.resolution.golden import (
    SettleReport,
    plan_settle,
    settle,
    wanted_statuses,
    write_settled,
)
from crmhub.resolution.keys import (
    find_candidates,
    frame_keys,
    key_batches,
    replace_keys,
    rewrite_all_keys,
)
from crmhub.resolution.learning import refine_with_labels
from crmhub.resolution.models import (
    StoredModel,
    active_model,
    active_version,
    builtin_model,
    save_model,
)
from crmhub.resolution.pairs import pairs_among, plan_all_pairs, store_scored, write_all_pairs
from crmhub.resolution.records import (
    HubRecord,
    count_live,
    count_pending,
    load_records,
    pending_ids,
    persons,
    read_people,
)
from crmhub.store.dialect import in_chunks, lock_hub
from crmhub.store.schema import match_pairs, source_records

__all__ = ["MIN_OWN_MODEL_RECORDS", "ResolveReport", "Resolver"]

log = structlog.get_logger(__name__)

MIN_OWN_MODEL_RECORDS = MIN_TRAINING_RECORDS
"""Live records a hub needs before it trains its own model instead of the built-in one."""

FULL_PASS_SHARE = 0.25
"""When this share of the hub waits for matching, one full pass is cheaper than lookups."""

STEP_RECORDS = 2_000
"""Waiting records matched per incremental transaction."""

FULL_PASS_CACHE_MB = 512
"""SQLite page cache during a full pass (see :func:`~crmhub.resolution.bulk.larger_cache`)."""


@dataclass
class ResolveReport:
    """What a matching run did."""

    mode: str = "incremental"  # incremental | full | none
    records: int = 0
    pairs_scored: int = 0
    model_version: int = 0
    trained: bool = False
    oversized_blocks: dict[str, int] = field(default_factory=dict)
    unmatchable: int = 0  # records matched with nothing to match on: each its own customer
    settled: SettleReport = field(default_factory=SettleReport)
    seconds: float = 0.0
    # A full pass's time by stage (load, match, keys, pairs, settle, commit): logged, not
    # part of as_dict().
    stages: dict[str, float] = field(default_factory=dict)

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
            **{k: v for k, v in vars(self).items() if k not in ("settled", "stages")},
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
        # The active model as last read: (version, created at) -> the model if it scores the
        # configured comparisons, else None. Reading and parsing a model costs more than
        # matching one record; a stored model never changes, so its version says it all.
        self._model: tuple[tuple[int, datetime], StoredModel | None] | None = None

    @classmethod
    def from_config(cls, engine: Engine, config: HubConfig) -> Resolver:
        """A resolver with the hub config's ``[dedupe]`` and ``[survivorship]`` settings."""
        return cls(engine, MatchSettings.from_config(config.dedupe), config.survivorship)

    # ------------------------------------------------------------------ entry points
    def resolve(self) -> ResolveReport:
        """Match every record waiting for it; a full pass when that is the cheaper way."""
        started = time.perf_counter()
        with self.engine.connect() as conn:
            waiting = count_pending(conn)
            if not waiting:
                return ResolveReport(mode="none", seconds=time.perf_counter() - started)
            model = self._active(conn)
            # The count is only compared with these thresholds below: it stops past them.
            enough = int(waiting / FULL_PASS_SHARE) + 1
            live = count_live(
                conn, at_most=enough if model is not None else max(enough, MIN_OWN_MODEL_RECORDS)
            )
        if (model is None and live >= MIN_OWN_MODEL_RECORDS) or waiting >= FULL_PASS_SHARE * live:
            return self.full(train=model is None and live >= MIN_OWN_MODEL_RECORDS)
        report = ResolveReport()
        more = True
        while more:
            with self.engine.begin() as conn:
                lock_hub(conn)
                batch = pending_ids(conn, limit=STEP_RECORDS)
                if not batch:
                    break
                self._step(conn, batch, report)
                # Asked before the commit, under the same lock: saves a transaction that
                # would only find nothing left (the usual case after a sync).
                more = len(batch) == STEP_RECORDS or bool(pending_ids(conn, limit=1))
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
        mark = started

        def stage(name: str) -> None:
            nonlocal mark
            at = time.perf_counter()
            report.stages[name] = report.stages.get(name, 0.0) + at - mark
            mark = at

        with collector_paused(), self.engine.begin() as conn:
            lock_hub(conn)
            people = read_people(conn)
            stage("load")
            stored = None if train else self.model(conn)
            result = match_records(people, self.settings, model=stored.model if stored else None)
            del people  # the frame holds what matching needs from here on
            stage("match")
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
            report.pairs_scored = len(result.pairs)
            report.unmatchable = result.unmatchable
            report.oversized_blocks = dict(result.blocking.oversized_blocks)
            frame = result.frame
            # Pairs are stored once, with the status clustering gives them (as storing them
            # and then settling the whole hub would, without writing each pair twice).
            planned = plan_all_pairs(
                conn, frame.ids, result.pairs, stored.model, self.settings.review
            )
            del result  # the candidate pairs: the most memory the pass holds
            stage("pairs")
            # Read now, not with the people: matching is when the pass holds the most.
            records = load_records(conn)
            report.records = len(records)
            stage("load")
            # Only for the writes: while reading and matching, the cache would fill with
            # pages no write needs, when the pass holds the most memory.
            with larger_cache(conn, FULL_PASS_CACHE_MB):
                rewrite_all_keys(conn, key_batches(frame, self.settings.rules))
                stage("keys")
                settled = SettleReport(records=len(records))
                plan = plan_settle(records, frame, planned.pairs, self.settings, settled)
                pairs = planned.pairs
                write_all_pairs(
                    conn,
                    planned,
                    wanted_statuses(pairs, plan.customer_of),
                    model_version=stored.version,
                    hashes=_HashesOf(records),
                    now=now,
                )
                stage("pairs")
                write_settled(
                    conn, records, plan, pairs, self.survivorship, now, settled, whole_hub=True
                )
                report.add(settled)
                stage("settle")
        stage("commit")
        report.seconds = time.perf_counter() - started
        stages = {name: round(seconds, 3) for name, seconds in report.stages.items()}
        log.info("dedupe.full", **report.as_dict(), stages=stages)
        return report

    def model(self, conn: Connection) -> StoredModel:
        """The active model, or the built-in one."""
        return self._active(conn) or builtin_model()

    def _active(self, conn: Connection) -> StoredModel | None:
        """The active model if it scores the configured comparisons; None otherwise (a model
        trained before the comparisons changed cannot score them: the next run trains again,
        and the built-in model stands in until then)."""
        version = active_version(conn)
        if version is None:
            return None
        if self._model is not None and self._model[0] == version:
            return self._model[1]
        stored = active_model(conn)
        if stored is None:
            return None
        wanted = {comparison.name for comparison in self.settings.comparisons}
        usable: StoredModel | None = stored
        if set(stored.model.fields) != wanted:
            log.warning("dedupe.model_outdated", version=stored.version)
            usable = None
        self._model = (version, usable)
        return usable

    # ------------------------------------------------------------------ incremental
    def _step(self, conn: Connection, waiting: list[int], report: ResolveReport) -> None:
        now = datetime.now(UTC)
        stored = self.model(conn)
        report.model_version = stored.version
        records = load_records(conn, waiting)
        people = dict(persons([records[rid] for rid in sorted(records)]))
        frame = match_frame(list(people.items()))
        report.unmatchable += int(frame.unmatchable().sum())
        key_rows = frame_keys(frame, self.settings.rules)
        replace_keys(conn, waiting, key_rows)
        lookup = find_candidates(conn, key_rows, self.settings.max_block_size)
        for rule, count in lookup.oversized_blocks.items():
            report.oversized_blocks[rule] = report.oversized_blocks.get(rule, 0) + count
        others = load_records(conn, set(np.r_[lookup.left, lookup.right].tolist()) - set(records))
        records.update(others)
        people.update(persons([others[rid] for rid in sorted(others)]))
        scope = match_frame(sorted(people.items()))
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
        report.add(self.settle_group(conn, waiting, now=now, known=records, people=people))

    def settle_group(
        self,
        conn: Connection,
        record_ids: Iterable[int],
        *,
        now: datetime,
        prefer: Sequence[str] = (),
        claims: Mapping[int, str | None] | None = None,
        known: dict[int, HubRecord] | None = None,
        people: Mapping[int, Person] | None = None,
    ) -> SettleReport:
        """Cluster again the connected group of ``record_ids`` and write its customers.

        Args:
            known: records already read in this transaction, by id (not read again).
            people: their matching view (:func:`~crmhub.resolution.records.persons`), by id.
        """
        group = connected_group(conn, record_ids, self.settings.auto_merge)
        records = {rid: r for rid, r in (known or {}).items() if rid in group}
        records.update(load_records(conn, group - set(records)))
        ready = people or {}
        unread = [records[rid] for rid in sorted(records) if rid not in ready]
        group_people = {rid: ready[rid] for rid in records if rid in ready}
        group_people.update(persons(unread))
        frame = match_frame(sorted(group_people.items()))
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


class _HashesOf(Mapping[int, str]):
    """Record id -> content hash, read from the records themselves (no second mapping of a
    million entries)."""

    def __init__(self, records: Mapping[int, HubRecord]) -> None:
        self._records = records

    def __getitem__(self, record_id: int) -> str:
        return self._records[record_id].content_hash

    def __iter__(self) -> Iterator[int]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)


def _refine_with_decisions(conn: Connection, result: MatchResult, settings: MatchSettings) -> int:
    """Blend the stewards' decisions into the model just trained (see
    :mod:`crmhub.resolution.learning`) and score the pairs again with it; returns the
    decisions used."""
    return refine_with_labels(conn, result, settings).used


def connected_group(conn: Connection, record_ids: Iterable[int], auto_merge: float) -> set[int]:
    """``record_ids``, every record a linking pair reaches from them, and every member of the
    customers all these belong to — until nothing new is reached (one statement per step
    outwards)."""
    group: set[int] = set(record_ids)
    frontier = set(group)
    while frontier:
        reached: set[int] = set()
        for chunk in in_chunks(sorted(frontier)):
            reached.update(conn.execute(_reached(auto_merge), {"ids": chunk}).scalars())
        frontier = reached - group
        group |= frontier
    return group


@lru_cache(maxsize=8)
def _reached(auto_merge: float) -> Any:
    """Records one step from the records ``ids``: across a pair clustering may follow
    (accepted, or undecided at or above ``auto_merge``), or into a customer of theirs."""
    p, t = match_pairs.c, source_records.c
    chunk: Any = bindparam("ids", expanding=True)
    linking = or_(p.status == "accepted", (p.probability >= auto_merge) & (p.status != "rejected"))
    their_customers = select(t.customer_id).where(t.id.in_(chunk), t.customer_id.is_not(None))
    return union(
        select(p.right_id).where(p.left_id.in_(chunk), linking),
        select(p.left_id).where(p.right_id.in_(chunk), linking),
        select(t.id).where(t.customer_id.in_(their_customers)),
    )

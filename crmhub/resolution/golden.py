"""Settling a group of records: cluster them, give each cluster a customer, write the golden
records.

Customer ids are kept stable: a cluster keeps the customer most of its members already had
(a customer preferred by the caller, as in "merge B into A", first). A customer whose members
all went to another customer is not deleted but points there (``merged_into``), so its id
keeps resolving; a customer whose every member was deleted in its source is removed.

Settling is worked out first (:func:`plan_settle`: clusters, customer ids) and written after
(:func:`write_settled`), so that a full pass can decide every pair's status before writing
the pairs once. Golden records are built by :class:`GoldenBuilder`, which gives what
:func:`crmhub.dedupe.survive.survive` gives, as stored, at a fraction of its cost: a full
pass builds hundreds of thousands of them.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.engine import Connection

from crmhub.config import SurvivorshipSettings
from crmhub.dedupe.cluster import cluster
from crmhub.dedupe.frame import MatchFrame
from crmhub.dedupe.pipeline import MatchSettings, hard_identifiers
from crmhub.dedupe.survive import EMPTY_VALUES, PICKERS, Pick, field_rules, source_rank
from crmhub.model import CONSENT_CHANNELS
from crmhub.resolution.bulk import driver_value, indexes_rebuilt, insert_rows, update_rows
from crmhub.resolution.pairs import DECIDED, StoredPairs, set_statuses
from crmhub.resolution.records import HubRecord, mark_matched
from crmhub.resolution.search import search_text
from crmhub.store.dialect import in_chunks
from crmhub.store.schema import customers, links, overrides

__all__ = [
    "GoldenBuilder",
    "NewCustomerIds",
    "SettlePlan",
    "SettleReport",
    "plan_settle",
    "settle",
    "wanted_statuses",
    "write_settled",
]

_c = customers.c

CUSTOMERS_PER_ROUND = 10_000
"""Clusters whose golden records are built and written together: the customers they had are
read for these only, so a full pass never holds every golden record at once."""


@dataclass
class SettleReport:
    """What settling changed."""

    records: int = 0
    clusters: int = 0
    customers_created: int = 0
    customers_updated: int = 0
    customers_merged: int = 0
    customers_removed: int = 0
    refused_links: int = 0
    merged_customers: list[tuple[str, str]] = field(default_factory=list)  # (old, into)


@dataclass
class SettlePlan:
    """What settling a group decided, before anything is written: its clusters (record ids
    ascending, clusters by their first id), the customer of each, and of each record."""

    clusters: list[list[int]]
    chosen: list[str]
    new_ids: set[str]  # customer ids created for clusters that had none
    customer_of: dict[int, str | None]
    old_customer: dict[int, str | None]


def settle(
    conn: Connection,
    records: dict[int, HubRecord],
    frame: MatchFrame,
    pairs: StoredPairs,
    settings: MatchSettings,
    survivorship: SurvivorshipSettings,
    *,
    now: datetime,
    prefer: Sequence[str] = (),
    claims: Mapping[int, str | None] | None = None,
) -> SettleReport:
    """Cluster and write golden records for ``records``: a whole connected group of the hub
    (every record a link of theirs reaches, and every member of their customers).

    Args:
        records: the group's records by id, deleted ones included (they leave their customer).
        frame: match keys of the group's live records, in ascending id order.
        pairs: every stored pair among the group's records.
        prefer: customer ids to keep when two customers become one.
        claims: per record, the customer it counts for when ids are chosen, instead of its
            current one (None: none): an unmerged record does not take its old customer
            along, and undoing a merge gives the merged customer its id back.
    """
    report = SettleReport(records=len(records))
    plan = plan_settle(records, frame, pairs, settings, report, prefer=prefer, claims=claims)
    write_settled(conn, records, plan, pairs, survivorship, now, report)
    wanted = wanted_statuses(pairs, plan.customer_of)
    set_statuses(
        conn,
        [
            (pid, status)
            for pid, status, before in zip(pairs.ids, wanted, pairs.status, strict=True)
            if status != before
        ],
    )
    return report


def plan_settle(
    records: Mapping[int, HubRecord],
    frame: MatchFrame,
    pairs: StoredPairs,
    settings: MatchSettings,
    report: SettleReport,
    *,
    prefer: Sequence[str] = (),
    claims: Mapping[int, str | None] | None = None,
) -> SettlePlan:
    """Cluster the group's live records and choose each cluster's customer (see
    :func:`settle` for the arguments); counts clusters and refused links in ``report``."""
    ids = frame.ids
    labels = _cluster(frame, pairs, settings, report)
    order = np.lexsort((ids, labels))
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    # Clusters in label order (a label is the row of the cluster's smallest id), members
    # ascending.
    clusters = [group.tolist() for group in np.split(ids[order], starts[1:])] if len(ids) else []
    report.clusters = len(clusters)
    old_customer = {rid: record.customer_id for rid, record in records.items()}
    chosen, new_ids = _choose_customers(clusters, {**old_customer, **(claims or {})}, prefer)
    customer_of: dict[int, str | None] = dict.fromkeys(records)
    for members, customer_id in zip(clusters, chosen, strict=True):
        for rid in members:
            customer_of[rid] = customer_id
    return SettlePlan(clusters, chosen, new_ids, customer_of, old_customer)


def write_settled(
    conn: Connection,
    records: Mapping[int, HubRecord],
    plan: SettlePlan,
    pairs: StoredPairs,
    survivorship: SurvivorshipSettings,
    now: datetime,
    report: SettleReport,
    *,
    whole_hub: bool = False,
) -> None:
    """Write what ``plan`` decided: golden records, retired customers, links, and the
    records' customers and matched marks (pair statuses are the caller's).

    Args:
        whole_hub: ``records`` are every person record of the hub (a full pass): whole
            tables are read and replaced instead of looked up record by record.
    """
    old_ids = {c for c in plan.old_customer.values() if c is not None}
    override_rows = _load_overrides(conn, None if whole_hub else old_ids)
    survivors = _survivors(old_ids - set(plan.chosen), plan.old_customer, plan.customer_of)
    # A survivor's golden record is built with the overrides it inherits from the customers
    # merged into it, not only once a later rebuild finds them moved.
    inherited = {k: dict(v) for k, v in override_rows.items()}
    moves: list[tuple[str, str, str]] = []  # (field, from customer, to customer)
    for retired, into in survivors.items():
        if into is None:
            continue
        theirs = inherited.setdefault(into, {})
        for name, value in sorted(override_rows.get(retired, {}).items()):
            if name not in theirs:  # the survivor's own (or first inherited) override wins
                theirs[name] = value
                moves.append((name, retired, into))
    _write_customers(conn, records, plan, inherited, survivorship, now, report)
    _retire_customers(conn, survivors, moves, now, report)
    _write_links(conn, records, plan, pairs, now, whole_hub=whole_hub)
    mark_matched(conn, records.values(), plan.customer_of)


def _cluster(
    frame: MatchFrame, pairs: StoredPairs, settings: MatchSettings, report: SettleReport
) -> npt.NDArray[np.int64]:
    ids = frame.ids  # ascending
    n = len(ids)
    left_rows = np.searchsorted(ids, pairs.left)
    right_rows = np.searchsorted(ids, pairs.right)
    live = (
        (left_rows < n)
        & (right_rows < n)
        & (ids[np.minimum(left_rows, n - 1)] == pairs.left if n else False)
        & (ids[np.minimum(right_rows, n - 1)] == pairs.right if n else False)
    )
    live_at = np.flatnonzero(live)
    lefts, rights = left_rows[live_at].astype(np.int64), right_rows[live_at].astype(np.int64)
    status = np.array(pairs.status, dtype=object)[live_at]
    undecided = (status == "auto") | (status == "pending")
    accepted, rejected = status == "accepted", status == "rejected"
    must = list(zip(lefts[accepted].tolist(), rights[accepted].tolist(), strict=True))
    cannot = list(zip(lefts[rejected].tolist(), rights[rejected].tolist(), strict=True))
    labels, clustering = cluster(
        n,
        lefts[undecided],
        rights[undecided],
        pairs.probability[live_at][undecided],
        auto_merge=settings.auto_merge,
        cannot_link=cannot,
        must_link=must,
        hard_identifiers=hard_identifiers(frame, settings.hard_identifiers),
        bridge_links=settings.bridge_links,
    )
    report.refused_links = (
        clustering.refused_cannot_link
        + clustering.refused_identifier_conflict
        + clustering.deferred_bridges
    )
    return labels


class NewCustomerIds:
    """New customer ids: UUIDs of version 7 (RFC 9562), the creation time in milliseconds
    first, then 74 bits starting at random and counting up, so that ids made together sort
    in the order they were made.

    A full pass makes hundreds of thousands of customers; random ids (version 4) would land
    at random places in every index holding them (customers, links, source records) and in
    every foreign-key check, which measured three times the cost of ids in order.
    """

    _COUNTER = 1 << 74

    def __init__(self) -> None:
        self._stamp = (time.time_ns() // 1_000_000) & ((1 << 48) - 1)
        self._next = int.from_bytes(os.urandom(10)) % self._COUNTER

    def __call__(self) -> str:
        """The next id."""
        counter = self._next
        self._next = (counter + 1) % self._COUNTER
        value = (
            (self._stamp << 80)
            | (0x7 << 76)  # version 7
            | ((counter >> 62) << 64)
            | (0b10 << 62)  # the RFC 4122 variant
            | (counter & ((1 << 62) - 1))
        )
        text = f"{value:032x}"
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _choose_customers(
    clusters: list[list[int]], old_customer: dict[int, str | None], prefer: Sequence[str]
) -> tuple[list[str], set[str]]:
    """A customer id per cluster: the preferred one among its members' customers, else the one
    most of its members had (ties: the smallest member id that had it), else a new id; and
    the new ids."""
    rank = {customer: i for i, customer in enumerate(prefer)}
    chosen: list[str] = []
    taken: set[str] = set()
    new_ids: set[str] = set()
    new_id = NewCustomerIds()
    for members in clusters:  # ordered by smallest member id: deterministic
        if len(members) == 1:  # most clusters: one candidate at most, nothing to count
            best = old_customer.get(members[0])
        else:
            counts: Counter[str] = Counter()
            first_member: dict[str, int] = {}
            for rid in members:
                customer = old_customer.get(rid)
                if customer is not None and customer not in taken:
                    counts[customer] += 1
                    first_member.setdefault(customer, rid)
            best = (
                min(
                    counts,
                    key=lambda c: (rank.get(c, len(rank)), -counts[c], first_member[c]),
                )
                if counts
                else None
            )
        if best is None or best in taken:
            best = new_id()
            new_ids.add(best)
        taken.add(best)
        chosen.append(best)
    return chosen, new_ids


# Built once: a statement built per call costs more than SQLite takes to run it.
_CUSTOMERS = select(_c.id, _c.data, _c.version, _c.merged_into).where(
    _c.id.in_(bindparam("ids", expanding=True))
)
_ALL_OVERRIDES = select(overrides.c.customer_id, overrides.c.field, overrides.c.value)
_OVERRIDES = _ALL_OVERRIDES.where(overrides.c.customer_id.in_(bindparam("ids", expanding=True)))
_DELETE_LINKS = delete(links).where(links.c.source_record_id.in_(bindparam("ids", expanding=True)))


def _load_customers(conn: Connection, customer_ids: set[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for chunk in in_chunks(sorted(customer_ids)):
        rows = conn.execute(_CUSTOMERS, {"ids": chunk})
        found.update({cid: {"data": d, "version": v, "merged_into": m} for cid, d, v, m in rows})
    return found


def _load_overrides(conn: Connection, customer_ids: set[str] | None) -> dict[str, dict[str, Any]]:
    """Steward overrides by customer and field (of every customer when None)."""
    found: dict[str, dict[str, Any]] = {}
    batches = (
        [conn.execute(_ALL_OVERRIDES)]
        if customer_ids is None
        else (conn.execute(_OVERRIDES, {"ids": chunk}) for chunk in in_chunks(sorted(customer_ids)))
    )
    for rows in batches:
        for customer_id, name, value in rows:
            found.setdefault(customer_id, {})[name] = value
    return found


def _write_customers(
    conn: Connection,
    records: Mapping[int, HubRecord],
    plan: SettlePlan,
    override_rows: dict[str, dict[str, Any]],
    survivorship: SurvivorshipSettings,
    now: datetime,
    report: SettleReport,
) -> None:
    builder = GoldenBuilder(survivorship)
    stamp = driver_value(conn, _c.created_at, now)
    count = len(plan.clusters)
    for start in range(0, count, CUSTOMERS_PER_ROUND):
        part = range(start, min(start + CUSTOMERS_PER_ROUND, count))
        existing = _load_customers(
            conn, {plan.chosen[i] for i in part if plan.chosen[i] not in plan.new_ids}
        )
        fresh: list[tuple[Any, ...]] = []
        changed: list[tuple[Any, ...]] = []
        for i in part:
            customer_id = plan.chosen[i]
            data = builder.build(
                [records[rid] for rid in plan.clusters[i]], override_rows.get(customer_id)
            )
            before = existing.get(customer_id)
            if before is None:
                text = search_text(data)
                fresh.append((customer_id, _dumps(data), "{}", 1, stamp, stamp, None, text))
            elif before["data"] != data or before["merged_into"] is not None:  # or revived
                version, text = before["version"] + 1, search_text(data)
                changed.append((_dumps(data), version, stamp, None, text, customer_id))
        insert_rows(
            conn,
            customers,
            (
                "id",
                "data",
                "traits",
                "version",
                "created_at",
                "updated_at",
                "merged_into",
                "search_text",
            ),
            fresh,
        )
        update_rows(
            conn,
            customers,
            ("data", "version", "updated_at", "merged_into", "search_text"),
            "id",
            changed,
        )
        report.customers_created += len(fresh)
        report.customers_updated += len(changed)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _survivors(
    retired: set[str], old_customer: dict[int, str | None], customer_of: dict[int, str | None]
) -> dict[str, str | None]:
    """For each customer that lost every member, where most of them went (None: nowhere,
    the customer is removed)."""
    went_of: dict[str, Counter[str | None]] = {}
    for rid, old in old_customer.items():
        if old in retired and customer_of.get(rid) is not None:
            went_of.setdefault(old, Counter())[customer_of[rid]] += 1
    out: dict[str, str | None] = {}
    for customer_id in sorted(retired):
        went = went_of.get(customer_id)
        out[customer_id] = min(went, key=lambda c: (-went[c], str(c))) if went else None
    return out


def _retire_customers(
    conn: Connection,
    survivors: dict[str, str | None],
    moves: list[tuple[str, str, str]],
    now: datetime,
    report: SettleReport,
) -> None:
    """Point customers that lost every member at their survivor, or remove them; move the
    steward overrides a survivor inherits (``moves``: field, from, to)."""
    for name, source, heir in moves:
        conn.execute(
            update(overrides)
            .where(overrides.c.customer_id == source, overrides.c.field == name)
            .values(customer_id=heir)
        )
    for customer_id, into in survivors.items():
        if into is None:
            conn.execute(delete(customers).where(_c.id == customer_id))
            report.customers_removed += 1
            continue
        conn.execute(  # a redirect is found through its survivor, never by itself
            update(customers)
            .where(_c.id == customer_id)
            .values(merged_into=into, updated_at=now, search_text=None)
        )
        # Ids merged into this one earlier now resolve one step further.
        conn.execute(
            update(customers).where(_c.merged_into == customer_id).values(merged_into=into)
        )
        report.customers_merged += 1
        report.merged_customers.append((customer_id, into))


def _write_links(
    conn: Connection,
    records: Mapping[int, HubRecord],
    plan: SettlePlan,
    pairs: StoredPairs,
    now: datetime,
    *,
    whole_hub: bool,
) -> None:
    """One link per live record: how it joined its customer and the strongest link it has."""
    cluster_of = {rid: index for index, members in enumerate(plan.clusters) for rid in members}
    best: dict[int, float] = {}
    steward: set[int] = set()
    for a, b, probability, status in zip(
        pairs.left.tolist(),
        pairs.right.tolist(),
        pairs.probability.tolist(),
        pairs.status,
        strict=True,
    ):
        if a in cluster_of and cluster_of.get(a) == cluster_of.get(b) and status != "rejected":
            for rid in (a, b):
                best[rid] = max(best.get(rid, 0.0), probability)
                if status == "accepted":
                    steward.add(rid)
    if whole_hub:
        conn.execute(delete(links))
    else:
        for chunk in in_chunks(sorted(records)):
            conn.execute(_DELETE_LINKS, {"ids": chunk})
    stamp = driver_value(conn, links.c.decided_at, now)
    rows = sorted(  # in the primary key's order
        (
            rid,
            plan.chosen[index],
            "steward" if rid in steward else "auto" if len(members) > 1 else "new",
            best.get(rid),
            None,
            stamp,
        )
        for index, members in enumerate(plan.clusters)
        for rid in members
    )
    with indexes_rebuilt(conn, links, len(rows)):
        insert_rows(
            conn,
            links,
            (
                "source_record_id",
                "customer_id",
                "method",
                "probability",
                "decided_by",
                "decided_at",
            ),
            rows,
        )


def wanted_statuses(pairs: StoredPairs, customer_of: Mapping[int, str | None]) -> list[str]:
    """The status each pair should have: decided ones keep theirs; undecided ones are
    ``auto`` inside one customer and ``pending`` suggestions across two."""
    wanted: list[str] = []
    for a, b, status in zip(pairs.left.tolist(), pairs.right.tolist(), pairs.status, strict=True):
        if status in DECIDED:
            wanted.append(status)
            continue
        mine = customer_of.get(a)
        wanted.append("auto" if mine is not None and mine == customer_of.get(b) else "pending")
    return wanted


# ---------------------------------------------------------------------- golden records


_Member = tuple[float, int, str, dict[str, Any]]  # (recency stamp, record id, source, data)


class GoldenBuilder:
    """Golden records as stored: what :func:`crmhub.dedupe.survive.survive` chooses, field by
    field with its provenance, in the JSON form :class:`~crmhub.model.GoldenValue` dumps to.

    The same rules (:data:`~crmhub.dedupe.survive.PICKERS`), ties broken the same way; but
    rules are looked up once per settings, not per cluster and field, members are plain
    tuples and values plain dicts: a tenth of the time, which is most of writing a million
    golden records. A test holds the two equal on every rule.
    """

    def __init__(self, settings: SurvivorshipSettings) -> None:
        self._rank = source_rank(settings)
        self._fields: list[tuple[str, str, Pick]] = [
            (name, rule, PICKERS[rule]) for name, rule in field_rules(settings).items()
        ]

    def build(
        self, records: Sequence[HubRecord], overrides: Mapping[str, Any] | None = None
    ) -> dict[str, dict[str, Any]]:
        """The golden record of a cluster of ``records`` (steward ``overrides`` first)."""
        if len(records) == 1 and not overrides:
            return self._single(records[0])
        members = [
            (
                record.updated_at.timestamp() if record.updated_at else float("-inf"),
                record.id,
                record.connector,
                record.data,
            )
            for record in records
        ]
        members.sort(reverse=True)  # most recent first; ties: the higher record id first
        golden: dict[str, dict[str, Any]] = {}
        for name, rule, pick in self._fields:
            if overrides and name in overrides:
                golden[name] = {
                    "value": overrides[name],
                    "source_record_id": None,
                    "rule": "steward_override",
                }
                continue
            entries = [
                (m[1], m[2], m[3][name]) for m in members if m[3].get(name) not in EMPTY_VALUES
            ]
            if entries:
                value, record_id = pick(entries, self._rank)
                golden[name] = {"value": value, "source_record_id": record_id, "rule": rule}
        return golden

    def _single(self, record: HubRecord) -> dict[str, dict[str, Any]]:
        """The golden record of a cluster of one: every rule picks its one record's value
        (union sorts it, most restrictive copies each channel), without the ranking."""
        data, rid = record.data, record.id
        golden: dict[str, dict[str, Any]] = {}
        for name, rule, _ in self._fields:
            value: Any = data.get(name)
            if value in EMPTY_VALUES:
                continue
            if rule == "union":
                if isinstance(value, dict):
                    value = dict(value)
                elif len(set(value)) == len(value):
                    value = sorted(value)
                else:
                    counts = Counter(value)
                    value = sorted(counts, key=lambda v: (-counts[v], v))
            elif rule == "most_restrictive":
                consent = {
                    channel: dict(value[channel])
                    for channel in CONSENT_CHANNELS
                    if isinstance(value.get(channel), dict)
                }
                golden[name] = {
                    "value": consent,
                    "source_record_id": rid if consent else None,
                    "rule": rule,
                }
                continue
            golden[name] = {"value": value, "source_record_id": rid, "rule": rule}
        return golden

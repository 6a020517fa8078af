"""Settling a group of records: cluster them, give each cluster a customer, write the golden
records.

Customer ids are kept stable: a cluster keeps the customer most of its members already had
(a customer preferred by the caller, as in "merge B into A", first). A customer whose members
all went to another customer is not deleted but points there (``merged_into``), so its id
keeps resolving; a customer whose every member was deleted in its source is removed.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection

from crmhub.config import SurvivorshipSettings
from crmhub.dedupe.cluster import cluster
from crmhub.dedupe.frame import MatchFrame
from crmhub.dedupe.pipeline import MatchSettings, hard_identifiers
from crmhub.dedupe.survive import survive
from crmhub.resolution.pairs import StoredPairs, set_statuses
from crmhub.resolution.records import HubRecord, mark_matched
from crmhub.store.dialect import in_chunks
from crmhub.store.schema import customers, links, overrides

__all__ = ["SettleReport", "settle"]

_c = customers.c


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
    ids = frame.ids
    row_of = {record_id: row for row, record_id in enumerate(ids.tolist())}
    labels = _cluster(frame, pairs, row_of, settings, report)
    groups: dict[int, list[int]] = {}
    for row, label in enumerate(labels.tolist()):
        groups.setdefault(label, []).append(int(ids[row]))
    clusters = [groups[label] for label in sorted(groups)]
    report.clusters = len(clusters)

    old_customer = {rid: record.customer_id for rid, record in records.items()}
    chosen = _choose_customers(clusters, {**old_customer, **(claims or {})}, prefer)
    customer_of: dict[int, str | None] = dict.fromkeys(records)
    for members, customer_id in zip(clusters, chosen, strict=True):
        for rid in members:
            customer_of[rid] = customer_id

    old_ids = {c for c in old_customer.values() if c is not None}
    existing = _load_customers(conn, old_ids | {c for c in chosen if c is not None})
    override_rows = _load_overrides(conn, old_ids)
    _write_customers(
        conn, records, clusters, chosen, existing, override_rows, survivorship, now, report
    )
    _retire_customers(
        conn, old_ids - set(chosen), old_customer, customer_of, override_rows, now, report
    )
    _write_links(conn, records, clusters, chosen, pairs, now)
    mark_matched(conn, list(records.values()), customer_of)
    _update_statuses(conn, pairs, customer_of)
    return report


def _cluster(
    frame: MatchFrame,
    pairs: StoredPairs,
    row_of: dict[int, int],
    settings: MatchSettings,
    report: SettleReport,
) -> np.ndarray:
    live = [i for i in range(len(pairs)) if pairs.left[i] in row_of and pairs.right[i] in row_of]
    lefts = np.array([row_of[int(pairs.left[i])] for i in live], dtype=np.int64)
    rights = np.array([row_of[int(pairs.right[i])] for i in live], dtype=np.int64)
    probability = pairs.probability[live] if live else np.empty(0)
    status = [pairs.status[i] for i in live]
    undecided = np.array([s in ("auto", "pending") for s in status], dtype=bool)
    must = [
        (a, b)
        for a, b, s in zip(lefts.tolist(), rights.tolist(), status, strict=True)
        if s == "accepted"
    ]
    cannot = [
        (a, b)
        for a, b, s in zip(lefts.tolist(), rights.tolist(), status, strict=True)
        if s == "rejected"
    ]
    labels, clustering = cluster(
        len(frame),
        lefts[undecided] if live else lefts,
        rights[undecided] if live else rights,
        probability[undecided] if live else probability,
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


def _choose_customers(
    clusters: list[list[int]], old_customer: dict[int, str | None], prefer: Sequence[str]
) -> list[str]:
    """A customer id per cluster: the preferred one among its members' customers, else the one
    most of its members had (ties: the smallest member id that had it), else a new id."""
    rank = {customer: i for i, customer in enumerate(prefer)}
    chosen: list[str] = []
    taken: set[str] = set()
    for members in clusters:  # ordered by smallest member id: deterministic
        counts: Counter[str] = Counter()
        first_member: dict[str, int] = {}
        for rid in members:
            customer = old_customer.get(rid)
            if customer is not None and customer not in taken:
                counts[customer] += 1
                first_member.setdefault(customer, rid)
        if counts:
            best = min(
                counts,
                key=lambda c: (rank.get(c, len(rank)), -counts[c], first_member[c]),
            )
        else:
            best = str(uuid.uuid4())
        taken.add(best)
        chosen.append(best)
    return chosen


def _load_customers(conn: Connection, customer_ids: set[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for chunk in in_chunks(sorted(customer_ids)):
        rows = conn.execute(
            select(_c.id, _c.data, _c.version, _c.merged_into).where(_c.id.in_(chunk))
        )
        found.update({cid: {"data": d, "version": v, "merged_into": m} for cid, d, v, m in rows})
    return found


def _load_overrides(conn: Connection, customer_ids: set[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for chunk in in_chunks(sorted(customer_ids)):
        rows = conn.execute(
            select(overrides.c.customer_id, overrides.c.field, overrides.c.value).where(
                overrides.c.customer_id.in_(chunk)
            )
        )
        for customer_id, name, value in rows:
            found.setdefault(customer_id, {})[name] = value
    return found


def _write_customers(
    conn: Connection,
    records: dict[int, HubRecord],
    clusters: list[list[int]],
    chosen: list[str],
    existing: dict[str, dict[str, Any]],
    override_rows: dict[str, dict[str, Any]],
    survivorship: SurvivorshipSettings,
    now: datetime,
    report: SettleReport,
) -> None:
    fresh: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    for members, customer_id in zip(clusters, chosen, strict=True):
        golden = survive(
            [records[rid].member() for rid in members],
            survivorship,
            override_rows.get(customer_id),
        )
        data = {name: value.model_dump(mode="json") for name, value in golden.items()}
        before = existing.get(customer_id)
        if before is None:
            fresh.append(
                {
                    "id": customer_id,
                    "data": data,
                    "traits": {},
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                    "merged_into": None,
                }
            )
        elif before["data"] != data or before["merged_into"] is not None:  # changed or revived
            changed.append(
                {
                    "cid": customer_id,
                    "data": data,
                    "version": before["version"] + 1,
                    "updated_at": now,
                }
            )
    if fresh:
        conn.execute(insert(customers), fresh)
    if changed:
        conn.execute(
            update(customers)
            .where(_c.id == bindparam("cid"))
            .values(
                data=bindparam("data"),
                version=bindparam("version"),
                updated_at=bindparam("updated_at"),
                merged_into=None,
            ),
            changed,
        )
    report.customers_created += len(fresh)
    report.customers_updated += len(changed)


def _retire_customers(
    conn: Connection,
    retired: set[str],
    old_customer: dict[int, str | None],
    customer_of: dict[int, str | None],
    override_rows: dict[str, dict[str, Any]],
    now: datetime,
    report: SettleReport,
) -> None:
    """Point customers that lost every member at where most of them went, or remove them."""
    for customer_id in sorted(retired):
        went = Counter(
            customer_of[rid]
            for rid, old in old_customer.items()
            if old == customer_id and customer_of.get(rid) is not None
        )
        if not went:
            conn.execute(delete(customers).where(_c.id == customer_id))
            report.customers_removed += 1
            continue
        into = min(went, key=lambda c: (-went[c], str(c)))
        assert into is not None
        # The survivor inherits the steward's overrides it does not have itself.
        mine = override_rows.get(customer_id, {})
        theirs = override_rows.get(into, {})
        for name in sorted(set(mine) - set(theirs)):
            conn.execute(
                update(overrides)
                .where(overrides.c.customer_id == customer_id, overrides.c.field == name)
                .values(customer_id=into)
            )
        conn.execute(
            update(customers).where(_c.id == customer_id).values(merged_into=into, updated_at=now)
        )
        # Ids merged into this one earlier now resolve one step further.
        conn.execute(
            update(customers).where(_c.merged_into == customer_id).values(merged_into=into)
        )
        report.customers_merged += 1
        report.merged_customers.append((customer_id, into))


def _write_links(
    conn: Connection,
    records: dict[int, HubRecord],
    clusters: list[list[int]],
    chosen: list[str],
    pairs: StoredPairs,
    now: datetime,
) -> None:
    """One link per live record: how it joined its customer and the strongest link it has."""
    cluster_of = {rid: index for index, members in enumerate(clusters) for rid in members}
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
    for chunk in in_chunks(sorted(records)):
        conn.execute(delete(links).where(links.c.source_record_id.in_(chunk)))
    rows = []
    for index, members in enumerate(clusters):
        for rid in members:
            method = "steward" if rid in steward else "auto" if len(members) > 1 else "new"
            rows.append(
                {
                    "source_record_id": rid,
                    "customer_id": chosen[index],
                    "method": method,
                    "probability": best.get(rid),
                    "decided_by": None,
                    "decided_at": now,
                }
            )
    if rows:
        conn.execute(insert(links), rows)


def _update_statuses(
    conn: Connection, pairs: StoredPairs, customer_of: dict[int, str | None]
) -> None:
    """Undecided pairs inside one customer are ``auto``; across two, ``pending`` suggestions."""
    changes = []
    for pid, a, b, status in zip(
        pairs.ids, pairs.left.tolist(), pairs.right.tolist(), pairs.status, strict=True
    ):
        if status in ("accepted", "rejected"):
            continue
        together = customer_of.get(a) is not None and customer_of.get(a) == customer_of.get(b)
        wanted = "auto" if together else "pending"
        if wanted != status:
            changes.append((pid, wanted))
    set_statuses(conn, changes)

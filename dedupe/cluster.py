"""Clustering: from scored links to groups of records that are one person.

Links at or above ``auto_merge`` are joined with union-find, strongest first, under three
guards that keep a wrong automatic merge (far worse than a missed one) from happening:

- **cannot-link**: pairs a steward marked "not a match" never end in one cluster;
- **hard identifiers**: two records with different values of the same hard identifier (a tax
  id, a customer number) never end in one cluster without a steward;
- **bridges**: two clusters that already hold several records each are joined only when at
  least ``bridge_links`` links connect them, so a single weak chain cannot glue two people
  together (a singleton joins a cluster on one link).

Steward "match" decisions (``must_link``) are joined first, whatever their probability and
past the identifier and bridge guards (a steward decided), but never past a cannot-link.
The result depends only on the pairs and their probabilities, never on the order they come
in, and each connected group of links is clustered independently of all others: so
clustering one group again (incremental matching) gives what clustering everything gives.

Refused links are counted by reason, so a steward can be shown them as suggestions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["ClusterReport", "cluster"]

IntArray = npt.NDArray[np.int64]


@dataclass
class ClusterReport:
    """What clustering did: links used, links refused by reason, clusters formed."""

    links: int = 0
    merged: int = 0
    refused_cannot_link: int = 0
    refused_identifier_conflict: int = 0
    deferred_bridges: int = 0
    clusters: int = 0
    largest: int = 0
    refused_pairs: list[tuple[int, int, str]] = field(default_factory=list)


class _Clusters:
    """Union-find with, per root, its members' hard identifiers and cannot-link partners."""

    def __init__(
        self,
        n: int,
        identifiers: Mapping[int, Mapping[str, str]],
        cannot_link: Iterable[tuple[int, int]],
    ) -> None:
        self.parent = list(range(n))
        self.size = [1] * n
        self.identifiers: dict[int, dict[str, str]] = {
            row: dict(values) for row, values in identifiers.items() if values
        }
        self.forbidden: dict[int, set[int]] = {}
        for a, b in cannot_link:
            self.forbidden.setdefault(a, set()).add(b)
            self.forbidden.setdefault(b, set()).add(a)

    def find(self, row: int) -> int:
        parent = self.parent
        root = row
        while parent[root] != root:
            root = parent[root]
        while parent[row] != root:  # path compression
            parent[row], row = root, parent[row]
        return root

    def conflict(self, a: int, b: int) -> str | None:
        """Why roots a and b may not be joined, or None."""
        forbidden_a = self.forbidden.get(a)
        if forbidden_a and any(self.find(other) == b for other in forbidden_a):
            return "cannot_link"
        ids_a, ids_b = self.identifiers.get(a), self.identifiers.get(b)
        if ids_a and ids_b:
            for kind, value in ids_a.items():
                if ids_b.get(kind, value) != value:
                    return "identifier_conflict"
        return None

    def union(self, a: int, b: int) -> None:
        if self.size[a] < self.size[b]:
            a, b = b, a
        self.parent[b] = a
        self.size[a] += self.size[b]
        if b in self.identifiers:
            self.identifiers.setdefault(a, {}).update(self.identifiers.pop(b))
        if b in self.forbidden:
            self.forbidden.setdefault(a, set()).update(self.forbidden.pop(b))


def cluster(
    n: int,
    left: IntArray,
    right: IntArray,
    probability: npt.NDArray[np.float64],
    *,
    auto_merge: float,
    cannot_link: Sequence[tuple[int, int]] = (),
    must_link: Sequence[tuple[int, int]] = (),
    hard_identifiers: Mapping[int, Mapping[str, str]] | None = None,
    bridge_links: int = 2,
) -> tuple[IntArray, ClusterReport]:
    """Cluster ``n`` records (rows 0..n-1) from scored candidate pairs.

    Args:
        n: number of records.
        left, right, probability: the scored pairs (row indices).
        auto_merge: links at or above this probability are merged automatically.
        cannot_link: row pairs a steward rejected.
        must_link: row pairs a steward accepted.
        hard_identifiers: per row, identifiers that must agree within a cluster.
        bridge_links: links needed to join two clusters that each hold several records.

    Returns:
        The cluster of each row (its smallest row index) and a report.
    """
    report = ClusterReport()
    strong = np.flatnonzero(probability >= auto_merge)
    # Strongest first; ties broken by rows, so the result never depends on input order.
    order = strong[np.lexsort((right[strong], left[strong], -probability[strong]))]
    report.links = len(order)
    clusters = _Clusters(n, hard_identifiers or {}, cannot_link)
    for a, b in sorted((min(a, b), max(a, b)) for a, b in must_link):
        root_a, root_b = clusters.find(a), clusters.find(b)
        if root_a == root_b:
            continue
        if clusters.conflict(root_a, root_b) == "cannot_link":
            report.refused_cannot_link += 1
            report.refused_pairs.append((a, b, "cannot_link"))
            continue
        clusters.union(root_a, root_b)
        report.merged += 1
    pending: dict[tuple[int, int], int] = {}
    for a, b in zip(left[order].tolist(), right[order].tolist(), strict=True):
        root_a, root_b = clusters.find(a), clusters.find(b)
        if root_a == root_b:
            continue
        reason = clusters.conflict(root_a, root_b)
        if reason is not None:
            if reason == "cannot_link":
                report.refused_cannot_link += 1
            else:
                report.refused_identifier_conflict += 1
            report.refused_pairs.append((a, b, reason))
            continue
        if clusters.size[root_a] > 1 and clusters.size[root_b] > 1:
            key = (min(root_a, root_b), max(root_a, root_b))
            pending[key] = pending.get(key, 0) + 1
            if pending[key] < bridge_links:
                report.deferred_bridges += 1
                continue
        clusters.union(root_a, root_b)
        report.merged += 1
    labels = _smallest_member_labels(clusters, n)
    _, sizes = np.unique(labels, return_counts=True)
    report.clusters = len(sizes)
    report.largest = int(sizes.max()) if len(sizes) else 0
    return labels, report


def _smallest_member_labels(clusters: _Clusters, n: int) -> IntArray:
    roots = np.fromiter((clusters.find(row) for row in range(n)), dtype=np.int64, count=n)
    # Label each cluster by its smallest row: stable whatever the order of the unions.
    smallest = np.full(n, n, dtype=np.int64)
    np.minimum.at(smallest, roots, np.arange(n, dtype=np.int64))
    return smallest[roots]

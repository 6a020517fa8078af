"""Clustering: strong links join records, weak ones do not, and the guards hold."""

from __future__ import annotations

import numpy as np

from crmhub.dedupe.cluster import cluster


def _run(n: int, links: list[tuple[int, int, float]], **kwargs: object):  # type: ignore[no-untyped-def]
    left = np.array([a for a, _, _ in links], dtype=np.int64)
    right = np.array([b for _, b, _ in links], dtype=np.int64)
    probability = np.array([p for _, _, p in links], dtype=np.float64)
    return cluster(n, left, right, probability, auto_merge=0.9, **kwargs)  # type: ignore[arg-type]


def _groups(labels: np.ndarray) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for row, label in enumerate(labels.tolist()):
        groups.setdefault(label, set()).add(row)
    return {frozenset(g) for g in groups.values() if len(g) > 1}


def test_links_above_the_threshold_join_records_transitively() -> None:
    labels, report = _run(5, [(0, 1, 0.99), (1, 2, 0.95), (3, 4, 0.5)])
    assert _groups(labels) == {frozenset({0, 1, 2})}
    assert labels.tolist() == [0, 0, 0, 3, 4]
    assert (report.merged, report.clusters, report.largest) == (2, 3, 3)


def test_a_steward_not_a_match_is_never_overruled() -> None:
    labels, report = _run(3, [(0, 1, 0.99), (1, 2, 0.98)], cannot_link=[(0, 2)])
    assert _groups(labels) == {frozenset({0, 1})}
    assert report.refused_cannot_link == 1
    assert report.refused_pairs == [(1, 2, "cannot_link")]


def test_conflicting_hard_identifiers_are_never_merged_automatically() -> None:
    identifiers = {0: {"tax_id": "A1"}, 2: {"tax_id": "B2"}, 3: {"tax_id": "A1"}}
    labels, report = _run(
        4, [(0, 1, 0.99), (1, 2, 0.97), (1, 3, 0.95)], hard_identifiers=identifiers
    )
    assert _groups(labels) == {frozenset({0, 1, 3})}
    assert report.refused_identifier_conflict == 1


def test_two_clusters_need_two_links_to_be_bridged() -> None:
    one_bridge = [(0, 1, 0.99), (2, 3, 0.99), (1, 2, 0.95)]
    labels, report = _run(4, one_bridge)
    assert _groups(labels) == {frozenset({0, 1}), frozenset({2, 3})}
    assert report.deferred_bridges == 1
    labels, _ = _run(4, [*one_bridge, (0, 3, 0.93)])
    assert _groups(labels) == {frozenset({0, 1, 2, 3})}


def test_the_result_does_not_depend_on_the_order_of_the_pairs() -> None:
    rng = np.random.default_rng(7)
    n = 300
    links = [
        (int(a), int(b), float(p))
        for a, b, p in zip(
            rng.integers(0, n, 800),
            rng.integers(0, n, 800),
            rng.uniform(0.85, 1.0, 800),
            strict=True,
        )
        if a != b
    ]
    links = [(min(a, b), max(a, b), p) for a, b, p in links]
    first, _ = _run(n, links)
    shuffled = [links[i] for i in rng.permutation(len(links))]
    second, _ = _run(n, shuffled)
    assert first.tolist() == second.tolist()


def test_no_links_leaves_every_record_alone() -> None:
    labels, report = _run(3, [])
    assert labels.tolist() == [0, 1, 2] and report.clusters == 3

"""Dedupe benchmark: the matching pipeline on synthetic people with known duplicates.

Stages, each timed: mapping raw rows to canonical records (load, the sync's work, not
counted as dedupe), match keys (built a chunk of records at a time), then
:func:`crmhub.dedupe.pipeline.match_frame_records` as the hub runs it: blocking, comparison
levels of the candidates, training (u from random pairs, m by EM sessions, term frequencies,
households, the priors), scoring, clustering.
Accuracy is measured against the ground truth (``person_key``): blocking recall; pairwise
precision / recall / F1 of the scored pairs at ``--auto-merge``; the same of the pairs the
final clusters imply (``cluster_*``, transitive links included: the measure the Splink
comparison uses for both sides); and the number of clusters that mix people.

Usage::

    python benchmarks/dedupe.py --records 10000 100000
    python benchmarks/dedupe.py --records 100000 --data world   # multi-source, households

``--data sample`` uses :mod:`crmhub.sampledata` (single source, variant duplicates);
``--data world`` uses :mod:`crmhub.sandbox.people` (several sources, households, common
names, per-source emails), the harder and more realistic case.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from crmhub.dedupe.normalize import match_frame_chunked
from crmhub.dedupe.pipeline import MatchSettings, match_frame_records
from crmhub.mapping import load_mapping


def _rows(kind: str, records: int, seed: int) -> Iterator[dict[str, str]]:
    if kind == "sample":
        from crmhub.sampledata import SampleOptions, iter_people

        yield from iter_people(records, SampleOptions(seed=seed, duplicate_rate=0.2))
        return
    from crmhub.sandbox.people import WorldOptions, iter_world  # type: ignore[import-not-found]

    people = max(1, int(records / 1.6))
    for count, (_source, row) in enumerate(iter_world(people, WorldOptions(seed=seed))):
        if count >= records:
            return
        yield row


def pairwise_scores(labels: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall and F1 of the record pairs the clusters imply (every pair within a
    predicted cluster) against the true pairs (every pair within one person): the same
    measure whatever produced the clusters."""
    _, predicted = np.unique(labels, return_inverse=True)
    _, true = np.unique(truth, return_inverse=True)

    def pairs_within(codes: np.ndarray) -> int:
        sizes = np.bincount(codes)
        return int((sizes * (sizes - 1) // 2).sum())

    both = np.unique(predicted.astype(np.int64) * (int(true.max()) + 1) + true, return_inverse=True)
    hits = pairs_within(both[1].reshape(-1))
    precision = hits / max(pairs_within(predicted), 1)
    recall = hits / max(pairs_within(true), 1)
    return precision, recall, 2 * precision * recall / max(precision + recall, 1e-12)


def run(
    kind: str, records: int, seed: int, auto_merge: float, max_block_size: int
) -> dict[str, Any]:
    """One run of the whole pipeline (:func:`crmhub.dedupe.pipeline.match_records`, model
    trained on the data); returns its figures."""
    mapping = load_mapping("people_file").stream("people")
    truth: list[str] = []
    mapping_seconds = 0.0

    def mapped() -> Iterator[tuple[int, Any]]:
        # Records are mapped and turned into match keys a chunk at a time, as the hub reads
        # them from its store: the canonical records are never all in memory at once.
        nonlocal mapping_seconds
        rows = _rows(kind, records, seed)
        while True:
            started = time.perf_counter()  # generating a row is loading too
            row = next(rows, None)
            if row is None:
                mapping_seconds += time.perf_counter() - started
                return
            record = mapping.apply(row, source="bench", stream="people", region="GB").record
            mapping_seconds += time.perf_counter() - started
            if record is not None:
                truth.append(row["person_key"])
                yield len(truth) - 1, record

    started = time.perf_counter()
    frame = match_frame_chunked(mapped())
    keys = time.perf_counter() - started - mapping_seconds
    truth_array = np.array(truth, dtype=object)

    settings = MatchSettings(auto_merge=auto_merge, max_block_size=max_block_size)
    result = match_frame_records(frame, settings, seed=seed)
    seconds = {"keys": keys, **result.seconds}
    pairs = result.pairs
    true_of_pair = truth_array[pairs.left] == truth_array[pairs.right]
    _, sizes = np.unique(truth_array, return_counts=True)
    true_pairs = int((sizes * (sizes - 1) // 2).sum())
    predicted = pairs.probability >= auto_merge
    hits = int((predicted & true_of_pair).sum())
    precision = hits / max(int(predicted.sum()), 1)
    recall = hits / max(true_pairs, 1)
    labels = result.labels
    cluster_precision, cluster_recall, cluster_f1 = pairwise_scores(labels, truth_array)
    order = np.argsort(labels, kind="stable")
    sorted_labels, sorted_truth = labels[order], truth_array[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    mixed = sum(
        len(set(sorted_truth[s:e])) > 1
        for s, e in zip(starts, np.r_[starts[1:], len(labels)], strict=True)
        if e - s > 1
    )
    training = result.training
    return {
        "data": kind,
        "records": len(result.frame),
        "candidate_pairs": len(pairs),
        "pairs_per_rule": result.blocking.pairs_per_rule,
        "oversized_blocks": result.blocking.oversized_blocks,
        "blocking_recall": round(int(true_of_pair.sum()) / max(true_pairs, 1), 4),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(2 * precision * recall / max(precision + recall, 1e-12), 4),
        "cluster_precision": round(cluster_precision, 4),
        "cluster_recall": round(cluster_recall, 4),
        "cluster_f1": round(cluster_f1, 4),
        "mixed_clusters": mixed,
        "clusters": result.clustering.clusters,
        "unmatchable": result.unmatchable,
        "training": training.sessions if training else {},
        "prior": training.prior if training else None,
        "seconds": {
            "load": round(mapping_seconds, 2),
            **{k: round(v, 2) for k, v in seconds.items()},
        },
        "dedupe_seconds": round(sum(seconds.values()), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--data", choices=("sample", "world"), default="sample")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--auto-merge", type=float, default=0.95)
    parser.add_argument("--max-block-size", type=int, default=MatchSettings().max_block_size)
    args = parser.parse_args()
    for records in args.records:
        figures = run(args.data, records, args.seed, args.auto_merge, args.max_block_size)
        print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()

"""Dedupe benchmark: the matching pipeline on synthetic people with known duplicates.

Stages, each timed: mapping raw rows to canonical records (load), match keys, blocking,
comparison levels of the candidates, training (u from random pairs, m by EM sessions, the
prior), scoring, clustering.
Accuracy is measured against the ground truth (``person_key``): blocking recall, pairwise
precision / recall / F1 at ``--auto-merge``, and the share of clusters that mix people.

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

from crmhub.dedupe.blocking import block
from crmhub.dedupe.cluster import cluster
from crmhub.dedupe.compare import compare
from crmhub.dedupe.normalize import match_frame
from crmhub.dedupe.training import train
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


def run(kind: str, records: int, seed: int, auto_merge: float) -> dict[str, Any]:
    """One run of the whole pipeline; returns its figures."""
    times: dict[str, float] = {}
    started = time.perf_counter()
    mapping = load_mapping("people_file").stream("people")
    people, truth = [], []
    for row in _rows(kind, records, seed):
        record = mapping.apply(row, source="bench", stream="people", region="GB").record
        if record is not None:
            people.append((len(people), record))
            truth.append(row["person_key"])
    truth_array = np.array(truth, dtype=object)
    times["load"] = time.perf_counter() - started

    def stage(name: str, since: float) -> float:
        now = time.perf_counter()
        times[name] = now - since
        return now

    mark = time.perf_counter()
    frame = match_frame(people)
    del people
    mark = stage("keys", mark)
    pairs, report = block(frame)
    mark = stage("block", mark)
    levels = compare(frame, pairs.left, pairs.right)
    mark = stage("compare", mark)
    model, training = train(frame, levels, seed=seed)
    mark = stage("train", mark)
    probability = model.probability(levels)
    mark = stage("score", mark)
    labels, clusters = cluster(
        len(frame), pairs.left, pairs.right, probability, auto_merge=auto_merge
    )
    stage("cluster", mark)

    same = truth_array[pairs.left] == truth_array[pairs.right]
    _, sizes = np.unique(truth_array, return_counts=True)
    true_pairs = int((sizes * (sizes - 1) // 2).sum())
    predicted = probability >= auto_merge
    hits = int((predicted & same).sum())
    precision = hits / max(int(predicted.sum()), 1)
    recall = hits / max(true_pairs, 1)
    order = np.argsort(labels, kind="stable")
    sorted_labels, sorted_truth = labels[order], truth_array[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    mixed = sum(
        len(set(sorted_truth[s:e])) > 1
        for s, e in zip(starts, np.r_[starts[1:], len(labels)], strict=True)
        if e - s > 1
    )
    return {
        "data": kind,
        "records": len(frame),
        "candidate_pairs": len(pairs),
        "oversized_blocks": report.oversized_blocks,
        "blocking_recall": round(int(same.sum()) / max(true_pairs, 1), 4),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(2 * precision * recall / max(precision + recall, 1e-12), 4),
        "mixed_clusters": mixed,
        "clusters": clusters.clusters,
        "training": training.sessions,
        "prior": training.prior,
        "seconds": {k: round(v, 2) for k, v in times.items()},
        "dedupe_seconds": round(sum(v for k, v in times.items() if k != "load"), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--data", choices=("sample", "world"), default="sample")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--auto-merge", type=float, default=0.95)
    args = parser.parse_args()
    for records in args.records:
        print(json.dumps(run(args.data, records, args.seed, args.auto_merge)), flush=True)


if __name__ == "__main__":
    main()

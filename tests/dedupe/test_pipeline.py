"""The matching pipeline end to end on synthetic people with known duplicates: match keys,
blocking, comparison, Fellegi-Sunter trained without labels, clustering; and the explanation
of a pair adds up to its score."""

from __future__ import annotations

import numpy as np
import pytest

from crmhub.dedupe.blocking import block
from crmhub.dedupe.cluster import cluster
from crmhub.dedupe.compare import DEFAULT_COMPARISONS, compare
from crmhub.dedupe.explain import explain_pair
from crmhub.dedupe.normalize import match_frame
from crmhub.dedupe.training import train
from crmhub.mapping import load_mapping
from crmhub.sampledata import SampleOptions, iter_people


@pytest.fixture(scope="module")
def pipeline() -> dict[str, object]:
    mapping = load_mapping("people_file").stream("people")
    people, truth = [], []
    for row in iter_people(3_000, SampleOptions(seed=21, duplicate_rate=0.2)):
        record = mapping.apply(row, source="s", stream="people", region="GB").record
        if record is not None:
            people.append((len(people), record))
            truth.append(row["person_key"])
    frame = match_frame(people)
    pairs, report = block(frame)
    levels = compare(frame, pairs.left, pairs.right)
    model, _ = train(frame, levels, random_pairs=50_000)
    probability = model.probability(levels)
    return {
        "frame": frame,
        "pairs": pairs,
        "report": report,
        "model": model,
        "probability": probability,
        "truth": np.array(truth, dtype=object),
    }


def test_blocking_finds_nearly_every_true_duplicate_pair(pipeline: dict) -> None:  # type: ignore[type-arg]
    truth, pairs = pipeline["truth"], pipeline["pairs"]
    same = truth[pairs.left] == truth[pairs.right]
    _, sizes = np.unique(truth, return_counts=True)
    true_pairs = int((sizes * (sizes - 1) // 2).sum())
    assert same.sum() / true_pairs > 0.95  # blocking recall


def test_unsupervised_scores_separate_duplicates_from_other_pairs(pipeline: dict) -> None:  # type: ignore[type-arg]
    truth, pairs, probability = pipeline["truth"], pipeline["pairs"], pipeline["probability"]
    same = truth[pairs.left] == truth[pairs.right]
    predicted = probability >= 0.95
    precision = (predicted & same).sum() / predicted.sum()
    recall = (predicted & same).sum() / same.sum()
    assert precision >= 0.98 and recall >= 0.80


def test_clusters_at_auto_merge_join_only_the_same_person(pipeline: dict) -> None:  # type: ignore[type-arg]
    frame, pairs, truth = pipeline["frame"], pipeline["pairs"], pipeline["truth"]
    labels, report = cluster(
        len(frame), pairs.left, pairs.right, pipeline["probability"], auto_merge=0.95
    )
    wrong = sum(len(set(truth[labels == label])) > 1 for label in np.unique(labels))
    assert report.merged > 0
    assert wrong / report.clusters < 0.01


def test_a_pairs_waterfall_adds_up_to_its_probability(pipeline: dict) -> None:  # type: ignore[type-arg]
    frame, pairs, model = pipeline["frame"], pipeline["pairs"], pipeline["model"]
    best = int(np.argmax(pipeline["probability"]))
    explanation = explain_pair(frame, int(pairs.left[best]), int(pairs.right[best]), model)
    assert sum(f.weight for f in explanation.fields) == pytest.approx(explanation.total_weight)
    assert explanation.probability == pytest.approx(float(pipeline["probability"][best]))
    assert explanation.fields[-1].cumulative == pytest.approx(
        explanation.prior_weight + explanation.total_weight
    )
    assert {f.field for f in explanation.fields} == {c.name for c in DEFAULT_COMPARISONS}
    assert explanation.as_dict()["left_id"] == int(frame.ids[pairs.left[best]])

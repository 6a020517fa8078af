"""Learning from stewards: labels, training with them, and ``crmhub dedupe report``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from crmhub.cli.main import app
from crmhub.dedupe.model import FellegiSunter, FieldParams
from crmhub.hub import Hub
from crmhub.resolution.learning import (
    LABEL_PRIOR_PAIRS,
    band,
    fit_labels,
    learning_report,
    steward_labels,
)
from crmhub.resolution.queue import pair_view
from crmhub.resolution.steward import Steward
from crmhub.sandbox.world import Sandbox
from crmhub.store.schema import audit_log, customers, dedupe_models, match_pairs, source_records

_p = match_pairs.c
LOW_REVIEW = "[dedupe]\nreview = 0.001\n"


# ---------------------------------------------------------------------- fit_labels
def _model() -> FellegiSunter:
    """Two fields with levels null / different / close / exact."""
    return FellegiSunter(
        fields={
            name: FieldParams(m=np.array([1.0, 0.1, 0.2, 0.7]), u=np.array([1.0, 0.97, 0.02, 0.01]))
            for name in ("name", "email")
        },
        prior=1e-3,
    )


def test_accepted_pairs_pull_m_towards_their_levels_blended_with_em() -> None:
    model = _model()
    levels = {"name": np.array([2, 2, 2, 2]), "email": np.array([1, 1, 1, 0])}
    fit_labels(model, levels, np.ones(4, dtype=bool), non_matches=1e6)
    k = LABEL_PRIOR_PAIRS
    # Four accepted pairs at "close" names: m = (counts + k * m_em) / (4 + k).
    assert model.fields["name"].m[1:] == pytest.approx(
        (np.array([0, 4, 0]) + k * np.array([0.1, 0.2, 0.7])) / (4 + k)
    )
    # Three had different emails (one had none: no evidence either way).
    assert model.fields["email"].m[1:] == pytest.approx(
        (np.array([3, 0, 0]) + k * np.array([0.1, 0.2, 0.7])) / (3 + k)
    )
    assert model.fields["name"].u == pytest.approx([1.0, 0.97, 0.02, 0.01])  # no rejections
    before = _model().probability(levels)
    assert (model.probability(levels) > before).all()  # the labelled pairs move up


def test_many_labels_become_supervised_estimation() -> None:
    model = _model()
    rng = np.random.default_rng(1)
    truth = np.array([0.3, 0.3, 0.4])  # of levels 1..3 among matches
    n = 200_000
    levels = {name: rng.choice([1, 2, 3], size=n, p=truth) for name in ("name", "email")}
    fit_labels(model, levels, np.ones(n, dtype=bool), non_matches=1e9)
    for name in ("name", "email"):
        assert model.fields[name].m[1:] == pytest.approx(truth, abs=0.01)


def test_rejected_pairs_count_among_the_hubs_non_matches() -> None:
    model = _model()
    levels = {"name": np.array([3] * 10), "email": np.array([1] * 10)}
    fit_labels(model, levels, np.zeros(10, dtype=bool), non_matches=1000)
    u = model.fields["name"].u
    # Ten of the thousand non-matching pairs are known to agree exactly on the name.
    assert u[1:] == pytest.approx(
        (np.array([0, 0, 10]) + 990 * np.array([0.97, 0.02, 0.01])) / 1000
    )
    assert model.fields["name"].m == pytest.approx([1.0, 0.1, 0.2, 0.7])  # m untouched
    assert (model.probability(levels) < _model().probability(levels)).all()
    # The same ten among a billion pairs change next to nothing: a biased handful of
    # near-misses must not rewrite what strangers look like.
    big = _model()
    fit_labels(big, levels, np.zeros(10, dtype=bool), non_matches=1e9)
    assert big.fields["name"].u == pytest.approx([1.0, 0.97, 0.02, 0.01], rel=1e-6)


def test_no_labels_change_nothing() -> None:
    model = _model()
    fit_labels(model, {"name": np.zeros(0, int), "email": np.zeros(0, int)}, np.zeros(0, bool),
               non_matches=1e6)  # fmt: skip
    assert model.to_json() == _model().to_json()


def test_nested_bands_stay_in_order() -> None:
    model = _model()
    # Every accepted pair at the loosest agreement: "close" would outweigh "exact".
    levels = {"name": np.array([2] * 500), "email": np.array([3] * 500)}
    fit_labels(model, levels, np.ones(500, dtype=bool), non_matches=1e6, monotone=["name"])
    weights = model.fields["name"].weights
    assert weights[3] >= weights[2] >= weights[1]


# ---------------------------------------------------------------------- on a hub
@pytest.fixture
def hub(tmp_path: Path, database_url: str) -> Iterator[Hub]:
    with Sandbox(200).open_hub(
        tmp_path, database_url, sleep=lambda s: None, extra_config=LOW_REVIEW
    ) as opened:
        opened.sync()
        yield opened


def _pairs(hub: Hub) -> dict[tuple[int, int], tuple[int, float, str]]:
    with hub.engine.connect() as conn:
        return {
            (a, b): (pid, p, s)
            for pid, a, b, p, s in conn.execute(
                select(_p.id, _p.left_id, _p.right_id, _p.probability, _p.status)
            )
        }


def _set(hub: Hub, pair_id: int, status: str, decided_by: str | None = "ana") -> None:
    with hub.engine.begin() as conn:
        conn.execute(
            update(match_pairs).where(_p.id == pair_id).values(status=status, decided_by=decided_by)
        )


def test_only_decisions_by_a_person_are_labels(hub: Hub) -> None:
    pairs = sorted(_pairs(hub).values())
    _set(hub, pairs[0][0], "accepted")
    _set(hub, pairs[1][0], "rejected", "bo")
    _set(hub, pairs[2][0], "accepted", None)  # no decider: not a label
    _set(hub, pairs[3][0], "rejected", "auto")  # not a person
    with hub.engine.connect() as conn:
        labels = steward_labels(conn)
    assert [(x.pair_id, x.is_match) for x in labels] == [
        (pairs[0][0], True),
        (pairs[1][0], False),
    ]


def _snapshot(hub: Hub) -> dict[str, Any]:
    with hub.engine.connect() as conn:
        return {
            "pairs": sorted(
                conn.execute(
                    select(_p.id, _p.status, _p.probability, _p.decided_by, _p.model_version)
                ).all()
            ),
            "models": conn.execute(select(func.count()).select_from(dedupe_models)).scalar(),
            "audit": conn.execute(select(func.count()).select_from(audit_log)).scalar(),
            "customers": sorted(conn.execute(select(customers.c.id, customers.c.version)).all()),
        }


def test_report_estimates_precision_and_recall_from_decisions(hub: Hub) -> None:
    settings = hub.resolver().settings
    pairs = sorted(_pairs(hub).values())
    # Well away from the thresholds: scoring again gives the same side of them.
    above = [pid for pid, p, _ in pairs if p >= 0.99]
    below = [pid for pid, p, _ in pairs if 0.01 <= p <= 0.9]
    assert len(above) >= 4 and len(below) >= 3
    for pid in above[:3]:
        _set(hub, pid, "accepted")  # true positives
    _set(hub, above[3], "rejected")  # a false positive (a steward split it)
    _set(hub, below[0], "accepted")  # false negatives: the model would not link them
    _set(hub, below[1], "accepted")
    _set(hub, below[2], "rejected")  # a true negative
    _set(hub, below[3], "accepted", None)  # not a steward's: ignored

    report = learning_report(hub.resolver(), refit=False)

    assert (report.accepted, report.rejected) == (5, 2)
    assert report.predicted_match == 4 and report.true_positives == 3
    assert report.precision == 0.75  # 3 accepted of 4 predicted
    assert report.recall == 0.6  # 3 predicted of 5 accepted
    assert report.precision_interval is not None
    assert report.precision_interval[0] < 0.75 < report.precision_interval[1]
    assert any("precision rests on 4" in note for note in report.notes)
    assert any("recall rests on 5" in note for note in report.notes)
    assert settings.auto_merge == report.auto_merge


def test_report_without_labels_says_so(hub: Hub) -> None:
    report = learning_report(hub.resolver(), refit=False)
    assert report.precision is None and report.recall is None
    assert report.notes == ["no steward decisions yet: precision and recall need labels"]


def _decide_consistently(
    hub: Hub, limit: int | None = None
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """A steward's policy: same first name, accept; any other first name, reject (the first
    ``limit`` pending pairs only, when given)."""
    steward = Steward(hub.resolver(), "ana")
    accepted: list[tuple[int, int]] = []
    rejected: list[tuple[int, int]] = []
    for (a, b), (pid, _, status) in sorted(_pairs(hub).items()):
        if status != "pending":
            continue
        if limit is not None and len(accepted) + len(rejected) >= limit:
            break
        with hub.engine.connect() as conn:
            view = pair_view(conn, pid, steward.resolver.settings.comparisons)
        assert view is not None
        first_name = next(s for s in view.waterfall if s.field == "first_name")
        if first_name.level_label == "exact":
            steward.decide(pid, True)
            accepted.append((a, b))
        elif first_name.level_label == "different":
            steward.decide(pid, False)
            rejected.append((a, b))
    return accepted, rejected


def test_train_uses_the_decisions(hub: Hub) -> None:
    resolver = hub.resolver()
    resolver.full(train=True)  # a model of the hub's own, without labels
    untaught = _pairs(hub)
    accepted, rejected = _decide_consistently(hub)
    assert len(accepted) >= 5 and len(rejected) >= 5

    report = resolver.full(train=True)

    assert report.trained
    taught = _pairs(hub)
    with hub.engine.connect() as conn:
        trained_on = conn.execute(
            select(dedupe_models.c.trained_on).where(dedupe_models.c.active == 1)
        ).scalar_one()
    assert trained_on["steward_pairs"] == len(accepted) + len(rejected)
    # The same records, the same seed: only the labels differ between the two models.
    rise = [taught[k][1] - untaught[k][1] for k in accepted]
    fall = [taught[k][1] - untaught[k][1] for k in rejected]
    assert all(change > 0 for change in rise), rise
    assert np.mean(fall) < np.mean(rise)
    # Decisions stay decisions through the retraining.
    assert all(taught[k][2] == "accepted" for k in accepted)
    assert all(taught[k][2] == "rejected" for k in rejected)


def test_report_predicts_what_train_changes_and_stores_nothing(hub: Hub) -> None:
    resolver = hub.resolver()
    settings = resolver.settings
    _decide_consistently(hub, limit=20)
    before = _snapshot(hub)
    pending = {k: p for k, (_, p, s) in _pairs(hub).items() if s == "pending"}

    report = learning_report(resolver)

    assert _snapshot(hub) == before  # nothing stored
    assert report.refit_labels == len(steward_labels_of(hub))
    assert report.pending == len(pending)
    assert report.would_change == sum(report.changes.values())
    # What `dedupe train` then does to the same pairs: the bands the report foresaw.
    resolver.full(train=True)
    after = _pairs(hub)
    changes: dict[str, int] = {}
    for key, probability in pending.items():
        new = after.get(key)
        becomes = band(new[1], settings) if new is not None else "no_match"
        was = band(probability, settings)
        if was != becomes:
            changes[f"{was} -> {becomes}"] = changes.get(f"{was} -> {becomes}", 0) + 1
    assert report.changes == changes
    assert report.would_change > 0  # the built-in model and the hub's own differ


def steward_labels_of(hub: Hub) -> list[Any]:
    with hub.engine.connect() as conn:
        return steward_labels(conn)


def test_dedupe_report_command(hub: Hub) -> None:
    _decide_consistently(hub)
    config = str(hub.config.path)
    result = CliRunner().invoke(app, ["--config", config, "dedupe", "report", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["refit"]["stored"] is False
    assert data["labels"]["accepted"] > 0 and data["labels"]["rejected"] > 0
    assert data["refit"]["labels_used"] == data["labels"]["accepted"] + data["labels"]["rejected"]
    assert data["refit"]["pending"] > 0
    result = CliRunner().invoke(app, ["--config", config, "dedupe", "report", "--no-refit"])
    assert result.exit_code == 0, result.output
    assert "precision" in result.output and "recall" in result.output
    assert "refitted" not in result.output


def test_decisions_on_erased_records_are_left_out(hub: Hub) -> None:
    """A label whose record is gone is not scored (and not counted)."""
    pairs = sorted(_pairs(hub).items())
    (a, _b), (pid, _, _) = pairs[0]
    _set(hub, pid, "accepted")
    with hub.engine.begin() as conn:
        conn.execute(
            update(source_records)
            .where(source_records.c.id == a)
            .values(deleted_at=func.current_timestamp())
        )
    report = learning_report(hub.resolver(), refit=False)
    assert (report.accepted, report.rejected) == (0, 0)

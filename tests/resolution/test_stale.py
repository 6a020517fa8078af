"""A steward's decision on a pair whose records changed since it was scored is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update

from crmhub.resolution.steward import StalePair, Steward
from crmhub.sandbox.world import Sandbox
from crmhub.store.schema import match_pairs, source_records


def test_a_decision_on_a_changed_pair_is_refused_and_changes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    with Sandbox(200).open_hub(tmp_path, database_url, sleep=lambda _s: None) as hub:
        hub.sync(push=False)
        with hub.engine.begin() as conn:
            pair_id, left = conn.execute(
                select(match_pairs.c.id, match_pairs.c.left_id)
                .where(match_pairs.c.status == "pending")
                .limit(1)
            ).one()
            conn.execute(
                update(source_records)
                .where(source_records.c.id == left)
                .values(content_hash="0" * 32)
            )
        steward = Steward(hub.resolver(), "steward:ana")
        with pytest.raises(StalePair, match=f"source record {left} changed"):
            steward.decide(pair_id, True, check_fresh=True)
        with hub.engine.connect() as conn:
            status = conn.execute(
                select(match_pairs.c.status).where(match_pairs.c.id == pair_id)
            ).scalar_one()
        assert status == "pending"
        assert steward.decide(pair_id, False).action == "pair.rejected"  # the CLI's own choice

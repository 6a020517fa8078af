"""Golden values pushed to the sandbox systems through their APIs, and their echo on the next
pull recognised as ours."""

from __future__ import annotations

from pathlib import Path

from crmhub.sandbox.world import Sandbox


def test_pushes_reach_the_systems_and_their_echo_is_not_a_change(
    database_url: str, tmp_path: Path
) -> None:
    sandbox = Sandbox(200)
    with sandbox.open_hub(tmp_path, database_url, sleep=lambda _s: None) as hub:
        hub.sync(push=True)
        pushes = hub.last_push or []
        assert {p.target for p in pushes} == {"stripe", "zendesk", "mailchimp", "hubspot"}
        assert all(p.status == "succeeded" and not p.counts.push_failed for p in pushes)
        pushed = sum(p.counts.pushed for p in pushes)
        assert pushed > 0
        writes = sum(
            n for app in sandbox.apps.values() for call, n in app.calls.items()
            if not call.startswith("GET") and "search" not in call
        )  # fmt: skip
        assert writes >= 1

        results = hub.sync(push=True)
        echoed = sum(r.counts.echoed for r in results)
        assert echoed == pushed  # every pushed record came back as exactly what we sent
        assert sum(r.counts.updated for r in results) == 0
        # Records that now agree may match more of their person (new merges, new golden
        # values, a few more pushes); it settles: a later sync has nothing left to push.
        queued = [sum(p.plan.queued for p in hub.last_push or [] if p.plan)]
        for _ in range(3):
            hub.sync(push=True)
            queued.append(sum(p.plan.queued for p in hub.last_push or [] if p.plan))
        assert queued[0] < pushed / 4 and queued[-1] == 0, queued

"""``crmhub review`` in a terminal: pairs one at a time, keys y / n / s / u / q, on a hub
synced from the sandbox systems (SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import json
import os
import signal
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from crmhub.cli.main import app
from crmhub.cli.steward_cmd import read_key
from crmhub.hub import Hub
from crmhub.resolution.queue import PairView, QueueFilter, pair_view, pending_ids
from crmhub.sandbox.world import Sandbox
from crmhub.store.schema import audit_log, match_pairs, source_records

_p = match_pairs.c

# Suggestions from a probability of 0.001 up: a 200-person world then has dozens of them.
LOW_REVIEW = "[dedupe]\nreview = 0.001\n"


@pytest.fixture
def hub(tmp_path: Path, database_url: str) -> Iterator[Hub]:
    with Sandbox(200).open_hub(
        tmp_path, database_url, sleep=lambda s: None, extra_config=LOW_REVIEW
    ) as opened:
        opened.sync()
        yield opened


def _review(hub: Hub, keys: str, *args: str) -> tuple[int, str]:
    config = hub.config.path
    assert config is not None
    result = CliRunner().invoke(
        app,
        ["--config", str(config), "review", *args],
        input=keys,
        env={"CRMHUB_ACTOR": "ana"},
        catch_exceptions=False,
    )
    return result.exit_code, result.output


def _queue(hub: Hub, limit: int | None = None, **band: object) -> list[int]:
    with hub.engine.connect() as conn:
        return pending_ids(conn, band=QueueFilter.model_validate(band), limit=limit)


def _view(hub: Hub, pair_id: int) -> PairView:
    """The web's pair view of the pair, which the terminal shows."""
    with hub.engine.connect() as conn:
        view = pair_view(conn, pair_id, hub.resolver().settings.comparisons)
    assert view is not None
    return view


def _pair(hub: Hub, pair_id: int) -> dict[str, object]:
    with hub.engine.connect() as conn:
        row = conn.execute(
            select(_p.status, _p.decided_by, _p.left_id, _p.right_id).where(_p.id == pair_id)
        ).one()
    return dict(row._mapping)


def _events(hub: Hub) -> list[tuple[int, str, str | None, str | None]]:
    a = audit_log.c
    with hub.engine.connect() as conn:
        return [
            (int(i), action, actor, subject)
            for i, action, actor, subject in conn.execute(
                select(a.id, a.action, a.actor, a.subject_id).order_by(a.id)
            )
        ]


def test_keys_decide_skip_and_undo_into_the_store_and_the_audit_log(hub: Hub) -> None:
    queue = _queue(hub)
    assert len(queue) >= 4, "the sandbox hub should have pending suggestions"
    first, second, third = queue[:3]
    records = [(_pair(hub, p)["left_id"], _pair(hub, p)["right_id"]) for p in queue[:3]]
    assert len({rid for pair in records for rid in pair}) == 6, "three pairs, six records"
    before = _events(hub)

    code, out = _review(hub, "y\nn\ns\nu\nq\n")

    assert code == 0, out
    # y merged the first pair, as the steward named by CRMHUB_ACTOR.
    assert _pair(hub, first)["status"] == "accepted"
    assert _pair(hub, first)["decided_by"] == "ana"
    # n rejected the second, then u undid that: pending again, no decider.
    assert _pair(hub, second)["status"] == "pending"
    assert _pair(hub, second)["decided_by"] is None
    assert _pair(hub, third)["status"] == "pending"  # skipped
    events = _events(hub)[len(before) :]
    assert [(action, actor, subject) for _, action, actor, subject in events] == [
        ("pair.accepted", "ana", str(first)),
        ("pair.rejected", "ana", str(second)),
        ("undo", "ana", str(events[1][0])),
    ]
    # The undone pair is shown again right after the undo (then q quits).
    assert out.count(f"pair {second} (") == 2
    assert f"undone: pair {second} is pending again" in out
    assert "1 merged, 0 not a match, 1 skipped, 0 stale, 1 undone" in out


def test_a_pair_shows_both_records_the_waterfall_and_the_score(hub: Hub) -> None:
    first = _queue(hub)[0]
    view = _view(hub, first)
    code, out = _review(hub, "q\n")
    assert code == 0, out
    left, right = view.left, view.right
    assert f"record {left.record_id}" in out and f"record {right.record_id}" in out
    assert f"{left.connector}/{left.stream}" in out
    assert f"{view.probability:.4f}" in out
    shown = [row for row in view.fields if row.state != "empty"]
    assert shown
    for row in shown:  # side by side, as the web shows them
        assert row.label in out and (row.left or row.right or "") in out
    for step in view.waterfall:
        assert step.label in out and step.level_label in out
    assert view.waterfall_total is not None
    assert f"{view.waterfall_total:+.2f}" in out  # the total of the field weights
    assert "0 merged, 0 not a match, 0 skipped" in out
    assert _pair(hub, first)["status"] == "pending"  # q decides nothing


def test_blind_mode_hides_the_scores(hub: Hub) -> None:
    first = _queue(hub)[0]
    view = _view(hub, first)
    code, out = _review(hub, "q\n", "--blind")
    assert code == 0, out
    assert f"pair {first} (1 of" in out
    assert f"{view.probability:.4f}" not in out
    assert "probability" not in out and "bits" not in out and "prior" not in out
    assert view.waterfall[0].level_label in out  # the levels are still shown


def test_a_pair_whose_record_changed_is_refused_and_skipped(hub: Hub) -> None:
    first, second = _queue(hub)[:2]
    changed = _pair(hub, first)["right_id"]
    with hub.engine.begin() as conn:
        conn.execute(
            update(source_records)
            .where(source_records.c.id == changed)
            .values(content_hash="0" * 32)
        )
    before = _events(hub)

    code, out = _review(hub, "y\nq\n")

    assert code == 0, out
    assert f"pair {first}: The right record ({changed}, " in out
    assert "changed since the pair was scored" in out
    assert _pair(hub, first)["status"] == "pending"  # never decided
    assert _pair(hub, second)["status"] == "accepted"  # the key went to the next pair
    assert [e[1] for e in _events(hub)[len(before) :]] == ["pair.accepted"]
    assert "1 merged, 0 not a match, 0 skipped, 1 stale" in out


def test_filters_and_order_of_the_queue(hub: Hub) -> None:
    with hub.engine.connect() as conn:
        pending = {
            pid: (probability, left, right)
            for pid, probability, left, right in conn.execute(
                select(_p.id, _p.probability, _p.left_id, _p.right_id).where(_p.status == "pending")
            )
        }
        connector_of = {
            rid: name
            for rid, name in conn.execute(select(source_records.c.id, source_records.c.connector))
        }
    queue = _queue(hub)
    assert sorted(queue) == sorted(pending)
    uncertainty = [abs(pending[pid][0] - 0.5) for pid in queue]
    assert uncertainty == sorted(uncertainty)  # most uncertain first

    band = _queue(hub, min_probability=0.01, max_probability=0.1)
    assert band and set(band) == {p for p, (pr, _, _) in pending.items() if 0.01 <= pr <= 0.1}
    stripe = _queue(hub, connector="stripe")
    assert stripe and set(stripe) == {
        p for p, (_, a, b) in pending.items() if "stripe" in (connector_of[a], connector_of[b])
    }
    assert _queue(hub, limit=2) == queue[:2]

    code, out = _review(hub, "s\nq\n", "--connector", "stripe", "--max", "0.1")
    assert code == 0, out
    shown = [p for p in stripe if pending[p][0] <= 0.1]
    assert f"pair {shown[0]} (1 of {len(shown)})" in out


def test_nothing_to_review(hub: Hub) -> None:
    code, out = _review(hub, "", "--connector", "no-such-connector")
    assert code == 0
    assert "no pending suggestions to review" in out


def test_subcommands_still_work(hub: Hub) -> None:
    config = str(hub.config.path)
    result = CliRunner().invoke(app, ["--config", config, "review", "list", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)  # plain JSON (column names as keys)
    assert listed and {row["id"] for row in listed} <= set(_queue(hub))


def test_read_key_reads_lines_when_not_a_terminal() -> None:
    assert read_key(io.StringIO("y\n")) == "y"
    assert read_key(io.StringIO("  N please\n")) == "n"
    assert read_key(io.StringIO("\n")) == ""
    assert read_key(io.StringIO("")) == "q"  # end of input quits


def test_read_key_takes_one_keypress_from_a_terminal_and_restores_it() -> None:
    master, slave = os.openpty()
    signal.alarm(20)  # a read that never returns fails the test instead of hanging it
    try:
        with open(slave, closefd=False) as terminal:
            # Keys written before read_key runs must arrive as bytes, not as line edits or
            # signals of a cooked terminal: the test's terminal is non-canonical already.
            attrs = termios.tcgetattr(slave)
            attrs[3] &= ~(termios.ICANON | termios.ISIG | termios.ECHO)
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
            before = termios.tcgetattr(slave)
            os.write(master, b"Y")  # no Enter: raw mode takes the key alone
            assert read_key(terminal) == "y"
            assert termios.tcgetattr(slave) == before
            os.write(master, b"\x04")
            assert read_key(terminal) == "q"  # Ctrl-D
            os.write(master, b"\x03")
            with pytest.raises(KeyboardInterrupt):
                read_key(terminal)
    finally:
        signal.alarm(0)
        os.close(master)
        os.close(slave)

"""The push path: only changed mapped fields are queued and sent, results are stored, failures
retried with backoff, suppressed people never written, our own echo not a change."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

import crmhub
from crmhub.config import parse_config
from crmhub.connector import Change, Page, Stream, WriteResult
from crmhub.errors import AuthError
from crmhub.hub import Hub
from crmhub.plugins import Plugins
from crmhub.push import deliver_pushes, failed_pushes, plan_pushes
from crmhub.store.schema import outbox, push_state, suppressions, sync_runs
from crmhub.suppression import identifier_hash

SYSTEMS: dict[str, dict[str, dict[str, str]]] = {}
"""The records of each in-memory system, by instance name then id."""
FAILURES: dict[str, list[str]] = {}
"""Per instance, what the next writes do: "retry", "reject", "refuse" (then succeed)."""
WRITES: dict[str, list[Change]] = {}


class Memory(crmhub.Connector):
    """A system held in SYSTEMS; writes apply their fields (people_file field names)."""

    name = "memory"
    streams = {"people": Stream(primary_key="id", cursor="updated_at")}
    default_mapping = "people_file"

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        records = list(SYSTEMS[self.instance_name].values())
        yield Page(records=[dict(r) for r in records], state={"n": len(records)})

    def write(self, stream: str, changes: Iterable[Change]) -> Iterator[WriteResult]:
        plan = FAILURES.setdefault(self.instance_name, [])
        for change in changes:
            WRITES.setdefault(self.instance_name, []).append(change)
            what = plan.pop(0) if plan else "ok"
            if what == "refuse":
                raise AuthError("the API refused the credentials", connector=self.instance_name)
            if what in ("retry", "reject"):
                yield WriteResult(
                    change.idempotency_key, ok=False, error=f"{what} (HTTP 5xx or 422)",
                    retriable=what == "retry",
                )  # fmt: skip
                continue
            record = SYSTEMS[self.instance_name][str(change.external_id)]
            record.update({k: str(v) for k, v in change.fields.items() if k != "id"})
            record["updated_at"] = "2024-06-01T00:00:00Z"
            yield WriteResult(change.idempotency_key, ok=True, external_id=change.external_id)


class _Plugin:
    @crmhub.hookimpl
    def register_connectors(self, register: Any) -> None:
        register(Memory)


def _person(pid: str, **fields: str) -> dict[str, str]:
    row = {"id": pid, "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"}
    row.update(fields)
    return row


@pytest.fixture
def hub(engine: Engine, tmp_path: Path) -> Iterator[Hub]:
    SYSTEMS.clear()
    FAILURES.clear()
    WRITES.clear()
    # The CRM knows Ada's phone and city; the shop has an old city and no phone.
    SYSTEMS["crm"] = {
        "c1": _person(
            "c1", phone="+44 7400 123456", city="London", postcode="N1 9GU",
            updated_at="2024-03-01T00:00:00Z",
        )
    }  # fmt: skip
    SYSTEMS["shop"] = {
        "s1": _person("s1", city="Leeds", updated_at="2024-01-01T00:00:00Z"),
        "s2": _person(
            "s2", first_name="Grace", last_name="Hopper", email="grace@example.com",
            updated_at="2024-01-01T00:00:00Z",
        ),
    }  # fmt: skip
    plugins = Plugins(extra=(_Plugin(),))
    raw = {
        "hub": {"default_region": "GB", "secret": "env:SECRET"},
        "connectors": {"crm": {"type": "memory", "push": False}, "shop": {"type": "memory"}},
    }
    config = parse_config(
        raw,
        connector_types=plugins.connectors(),
        environ={"SECRET": "s3cret-for-tests"},
        path=tmp_path / "crmhub.toml",
    )
    yield Hub(config, engine, plugins)


def _outbox(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(outbox).order_by(outbox.c.id))]


def test_only_the_changed_mapped_fields_are_pushed_and_the_result_stored(
    hub: Hub, engine: Engine
) -> None:
    hub.sync(push=True)
    [push] = hub.last_push or []
    assert (push.target, push.stream, push.status) == ("shop", "people", "succeeded")
    assert push.plan is not None and push.plan.queued == 1  # Grace is alone: nothing to send
    [change] = WRITES["shop"]
    assert change.external_id == "s1"
    # The golden phone and the newer address; names and email were already the same.
    assert dict(change.fields) == {"phone": "+447400123456", "city": "London", "postcode": "N1 9GU"}
    [row] = _outbox(engine)
    assert (row["status"], row["attempts"], row["idempotency_key"]) == (
        "done",
        1,
        change.idempotency_key,
    )
    with engine.connect() as conn:
        state = conn.execute(select(push_state)).all()
        runs = conn.execute(select(sync_runs).where(sync_runs.c.mode == "push")).all()
    assert [(s.target, s.external_id) for s in state] == [("shop", "s1")]
    assert [(r.connector, r.pushed, r.push_failed, r.status) for r in runs] == [
        ("shop", 1, 0, "succeeded")
    ]
    assert "crm" not in WRITES  # push = false in its config


def test_the_echo_of_a_push_is_not_a_change_and_is_not_pushed_again(
    hub: Hub, engine: Engine
) -> None:
    hub.sync(push=True)
    hub.push()  # before the next pull: the push is awaiting its echo, nothing is sent again
    assert len(WRITES["shop"]) == 1
    results = hub.sync(push=True)
    shop = next(r for r in results if r.connector == "shop")
    assert shop.counts.echoed == 1 and shop.counts.updated == 0
    assert len(WRITES["shop"]) == 1
    assert [r["status"] for r in _outbox(engine)] == ["done"]


def test_a_suppressed_person_is_never_pushed(hub: Hub, engine: Engine) -> None:
    digest = identifier_hash(b"s3cret-for-tests", "email", "ada@example.com")
    with engine.begin() as conn:
        conn.execute(
            insert(suppressions).values(
                kind="email", hash=digest, created_at=datetime.now(UTC), request_id=None
            )
        )
    hub.sync(match=True, push=False)  # Ada's records are dropped at the pull already
    SYSTEMS["shop"]["s2"]["email"] = "ada@example.com"  # ... and a later copy is not pushed
    report = plan_pushes(
        engine, hub.push_targets(["shop"])[0], hub.suppressions(), now=datetime.now(UTC)
    )
    assert report.queued == 0
    assert "shop" not in WRITES


def test_a_failed_push_is_retried_on_a_later_run_with_backoff(hub: Hub, engine: Engine) -> None:
    FAILURES["shop"] = ["retry", "retry"]
    hub.sync(push=True)
    [row] = _outbox(engine)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["last_error"] == "retry (HTTP 5xx or 422)"
    first_wait = row["next_attempt_at"]
    assert first_wait is not None
    hub.push()  # not due yet: nothing is sent
    assert len(WRITES["shop"]) == 1
    with hub.engine.connect() as conn:
        assert [r["external_id"] for r in failed_pushes(conn)] == ["s1"]
    connector = hub.connector("shop")
    later = datetime.now(UTC) + timedelta(hours=1)
    delivery = deliver_pushes(engine, connector, "people", now=later)
    assert delivery.counts.push_failed == 1
    [row] = _outbox(engine)
    assert row["attempts"] == 2
    # The wait doubles: the second failure waits twice as long as the first.
    second_wait = row["next_attempt_at"]
    assert _seconds(second_wait, later) == pytest.approx(
        2 * _seconds(first_wait, row["created_at"]), rel=0.05
    )
    delivery = deliver_pushes(engine, connector, "people", now=later + timedelta(hours=1))
    assert delivery.counts.pushed == 1
    # The retry carried the same idempotency key each time.
    assert len({c.idempotency_key for c in WRITES["shop"]}) == 1
    assert _outbox(engine)[0]["status"] == "done"


def _seconds(when: datetime, since: datetime) -> float:
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    since = since if since.tzinfo else since.replace(tzinfo=UTC)
    return (when - since).total_seconds()


def test_a_rejected_push_fails_for_good_and_a_refusing_system_stops_the_run(
    hub: Hub, engine: Engine
) -> None:
    FAILURES["shop"] = ["reject"]
    hub.sync(push=True)
    [row] = _outbox(engine)
    assert (row["status"], row["next_attempt_at"]) == ("failed", None)
    # A system that refuses a batch (wrong key): the run fails and says why.
    SYSTEMS["crm"]["c1"].update(city="Bath", updated_at="2024-05-01T00:00:00Z")
    FAILURES["shop"] = ["refuse"]
    hub.sync(push=True)
    [push] = hub.last_push or []
    assert push.failed and push.error and "refused the credentials" in push.error
    assert _outbox(engine)[-1]["status"] == "pending"


def test_a_sync_without_push_queues_nothing(hub: Hub, engine: Engine) -> None:
    hub.sync()
    assert hub.last_push is None
    assert _outbox(engine) == []


def test_nested_values_are_overlaid_never_blanked() -> None:
    from crmhub.push import _changed_fields

    current = {"merge_fields": {"FNAME": "Ada", "ADDRESS": {"addr1": "1 Main St", "city": "Leeds"}}}
    desired = {"merge_fields": {"FNAME": None, "ADDRESS": {"addr1": None, "city": "London"}}}
    assert _changed_fields(desired, current) == {
        "merge_fields": {"FNAME": "Ada", "ADDRESS": {"addr1": "1 Main St", "city": "London"}}
    }
    assert _changed_fields({"phone": None, "email": ""}, {"phone": "+44"}) == {}
    assert _changed_fields(current, current) == {}

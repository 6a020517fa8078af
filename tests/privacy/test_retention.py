"""Retention rules on a real hub (SQLite and PostgreSQL): the dry-run report counts exactly
the rows past their age and changes nothing; applying removes exactly those, category by
category, audited; config errors name the key; the command line reports and applies."""

from __future__ import annotations

import csv
import json
import textwrap
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import Table, insert, select, update
from sqlalchemy.engine import Connection, Engine
from typer.testing import CliRunner

from crmhub import audit
from crmhub.cli import retention_cmd
from crmhub.config import parse_config
from crmhub.errors import ConfigError
from crmhub.hub import Hub
from crmhub.privacy.retention import (
    AUDIT_ACTION,
    apply_retention,
    cutoff_for,
    retention_report,
)
from crmhub.store.schema import (
    activities,
    audit_log,
    customers,
    metadata,
    outbox,
    overrides,
    quarantine,
    source_records,
    sync_runs,
    sync_state,
)

NOW = datetime.now(UTC)

PEOPLE = [
    ("c0", "Ada", "Byron", "ada.byron@example.com"),
    ("c1", "Grace", "Hopper", "grace.hopper@example.com"),
    ("c2", "Alan", "Turing", "alan.turing@example.com"),
    ("c3", "Edsger", "Dijkstra", "edsger.dijkstra@example.com"),
    ("q1", "Broken", "First", "not-an-email"),  # quarantined
    ("q2", "Broken", "Second", "also-not-an-email"),  # quarantined
]
PERSONAL = ["example.com", "Byron", "Hopper", "Turing", "Dijkstra", "not-an-email"]


def _ago(days: int) -> datetime:
    return NOW - timedelta(days=days)


def _write_hub(folder: Path, database_url: str, retention: dict[str, Any] | None) -> Path:
    with (folder / "people.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "first_name", "last_name", "email", "updated_at"])
        for row in PEOPLE:
            writer.writerow([*row, "2024-01-01T00:00:00Z"])
    rules = "".join(f'{name} = "{age}"\n' for name, age in (retention or {}).items())
    config = textwrap.dedent(f"""
        [hub]
        database_url = "{database_url}"
        default_region = "GB"

        [connectors.shop]
        type = "csv"
        path = "people.csv"
        mapping = "people_file"
    """)
    if retention is not None:
        config += f"\n[retention]\n{rules}"
    path = folder / "crmhub.toml"
    path.write_text(config, encoding="utf-8")
    return path


@pytest.fixture
def make_hub(engine: Engine, database_url: str, tmp_path: Path) -> Iterator[Any]:
    """Opens a synced hub on each backend (``engine`` has migrated the database) with the
    given ``[retention]`` rules (None: no section)."""
    opened: list[Hub] = []

    def make(retention: dict[str, Any] | None) -> Hub:
        hub = Hub.open(_write_hub(tmp_path, database_url, retention))
        opened.append(hub)
        [result] = hub.sync()
        assert (result.counts.inserted, result.counts.quarantined) == (4, 2)
        return hub

    yield make
    for hub in opened:
        hub.close()


def _ids(conn: Connection, table: Table, *where: Any) -> set[Any]:
    return set(conn.execute(select(table.c.id).where(*where)).scalars())


def _snapshot(engine: Engine) -> dict[str, list[str]]:
    """Every row of every table, as text."""
    with engine.connect() as conn:
        return {
            table.name: sorted(repr(tuple(row)) for row in conn.execute(select(table)))
            for table in metadata.sorted_tables
        }


def _customer_of(conn: Connection, external_id: str) -> str:
    return str(
        conn.execute(
            select(source_records.c.customer_id).where(source_records.c.external_id == external_id)
        ).scalar_one()
    )


def _activity(conn: Connection, external_id: str, person: str, days: int) -> None:
    conn.execute(
        insert(activities).values(
            connector="shop",
            stream="orders",
            external_id=external_id,
            kind="order",
            occurred_at=_ago(days),
            person_external_id=person,
            data={"subject": f"order {external_id}"},
            content_hash=external_id,
            first_seen=NOW,
            last_seen=NOW,
        )
    )


def _run(conn: Connection, status: str, finished_days: int | None) -> int:
    result = conn.execute(
        insert(sync_runs).values(
            connector="shop",
            stream="people",
            mode="incremental",
            status=status,
            started_at=_ago(400),
            heartbeat_at=_ago(400),
            finished_at=None if finished_days is None else _ago(finished_days),
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _push(conn: Connection, status: str, days: int, customer_id: str | None = None) -> int:
    result = conn.execute(
        insert(outbox).values(
            target="shop",
            stream="people",
            external_id="c0",
            customer_id=customer_id,
            operation="update",
            fields={"first_name": "Ada"},
            idempotency_key=uuid.uuid4().hex,
            status=status,
            created_at=_ago(days),
            updated_at=_ago(days),
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _seed_aged_rows(hub: Hub) -> dict[str, Any]:
    """Rows on both sides of each category's age; returns their ids by name."""
    q = quarantine.c
    ids: dict[str, Any] = {}
    with hub.engine.begin() as conn:
        conn.execute(update(quarantine).where(q.external_id == "q1").values(created_at=_ago(40)))
        conn.execute(update(quarantine).where(q.external_id == "q2").values(created_at=_ago(10)))
        ids["quarantine_old"] = conn.execute(select(q.id).where(q.external_id == "q1")).scalar()
        ids["quarantine_young"] = conn.execute(select(q.id).where(q.external_id == "q2")).scalar()
        _activity(conn, "o-old", "c0", 100)
        _activity(conn, "o-older", "c1", 400)
        _activity(conn, "o-young", "c3", 10)
        # The sync's own run is old, but the stream's state names it: it stays.
        [ids["run_of_state"]] = conn.execute(select(sync_state.c.run_id)).scalars()
        conn.execute(update(sync_runs).values(started_at=_ago(300), finished_at=_ago(300)))
        ids["run_old"] = _run(conn, "succeeded", 100)
        ids["run_old_failed"] = _run(conn, "failed", 120)
        ids["run_running"] = _run(conn, "running", None)
        ids["run_young"] = _run(conn, "succeeded", 10)
        # A young quarantine row of an old run keeps its place and loses the run.
        conn.execute(
            update(quarantine).where(q.id == ids["quarantine_young"]).values(run_id=ids["run_old"])
        )
        customer = _customer_of(conn, "c0")
        ids["push_done_old"] = _push(conn, "done", 40, customer)
        ids["push_failed_old"] = _push(conn, "failed", 50)
        ids["push_pending_old"] = _push(conn, "pending", 60, customer)
        ids["push_done_young"] = _push(conn, "done", 5)
    return ids


SIMPLE_RULES = {"quarantine": "30d", "activities": "90d", "runs": "90d", "outbox": "30d"}


def test_the_report_counts_exactly_what_is_past_its_age_and_changes_nothing(
    make_hub: Any,
) -> None:
    hub = make_hub(SIMPLE_RULES)
    _seed_aged_rows(hub)
    before = _snapshot(hub.engine)
    report = retention_report(hub, now=NOW)
    assert not report.applied
    assert _snapshot(hub.engine) == before
    found = {c.category: (c.count, c.oldest) for c in report.categories}
    assert found == {
        "quarantine": (1, _ago(40)),
        "activities": (2, _ago(400)),
        "outbox": (2, _ago(50)),
        "runs": (2, _ago(120)),
    }
    assert [c.category for c in report.categories] == ["quarantine", "activities", "outbox", "runs"]
    assert report.total == 7
    quarantine_report = report.category("quarantine")
    assert quarantine_report is not None and quarantine_report.cutoff == _ago(30)
    assert report.category("inactive_customers") is None
    assert json.loads(json.dumps(report.as_dict()))["categories"][0]["count"] == 1


def test_apply_removes_exactly_the_rows_past_their_age_and_audits_each_category(
    make_hub: Any,
) -> None:
    hub = make_hub(SIMPLE_RULES)
    ids = _seed_aged_rows(hub)
    with hub.engine.connect() as conn:
        quarantine_before = _ids(conn, quarantine)
        activities_before = _ids(conn, activities)
        outbox_before = _ids(conn, outbox)
        runs_before = _ids(conn, sync_runs)
        records_before = _ids(conn, source_records)
        customers_before = _ids(conn, customers)

    report = apply_retention(hub, "dpo", now=NOW)

    assert report.applied
    assert {c.category: c.count for c in report.categories} == {
        "quarantine": 1,
        "activities": 2,
        "outbox": 2,
        "runs": 2,
    }
    with hub.engine.connect() as conn:
        assert _ids(conn, quarantine) == quarantine_before - {ids["quarantine_old"]}
        young = select(quarantine.c.run_id).where(quarantine.c.id == ids["quarantine_young"])
        assert conn.execute(young).scalar_one() is None  # its run went
        kept = conn.execute(select(activities.c.external_id)).scalars().all()
        assert kept == ["o-young"] and len(activities_before) == 3
        assert _ids(conn, outbox) == outbox_before - {
            ids["push_done_old"],
            ids["push_failed_old"],
        }
        assert _ids(conn, sync_runs) == runs_before - {ids["run_old"], ids["run_old_failed"]}
        assert {ids["run_of_state"], ids["run_running"], ids["run_young"]} <= _ids(conn, sync_runs)
        # Other categories have no rule: untouched.
        assert _ids(conn, source_records) == records_before
        assert _ids(conn, customers) == customers_before

        events = conn.execute(select(audit_log).order_by(audit_log.c.id)).mappings().all()
        assert [e["action"] for e in events] == [AUDIT_ACTION] * 4
        assert [e["actor"] for e in events] == ["dpo"] * 4
        assert [e["id"] for e in events] == [c.audit_event for c in report.categories]
        assert events[0]["details"] == {
            "category": "quarantine",
            "age": "30d",
            "removed": 1,
            "cutoff": _ago(30).isoformat(),
        }
        assert [e["details"]["removed"] for e in events] == [1, 2, 2, 2]
        assert audit.verify(conn) == (4, None)
        text = json.dumps([dict(e["details"]) for e in events])
        assert not any(value in text for value in PERSONAL)

    # Nothing is past its age any more; applying again removes nothing and says so.
    assert retention_report(hub, now=NOW).total == 0
    again = apply_retention(hub, "dpo", now=NOW)
    assert again.total == 0
    with hub.engine.connect() as conn:
        assert audit.verify(conn) == (8, None)


def test_without_a_retention_section_nothing_happens(make_hub: Any) -> None:
    hub = make_hub(None)
    _seed_aged_rows(hub)
    before = _snapshot(hub.engine)
    assert retention_report(hub, now=NOW).categories == ()
    report = apply_retention(hub, "dpo", now=NOW)
    assert report.categories == () and report.total == 0
    assert _snapshot(hub.engine) == before  # not even an audit event


def test_only_configured_categories_run(make_hub: Any) -> None:
    hub = make_hub({"outbox": "30d"})
    ids = _seed_aged_rows(hub)
    report = apply_retention(hub, "dpo", now=NOW)
    assert [(c.category, c.count) for c in report.categories] == [("outbox", 2)]
    with hub.engine.connect() as conn:
        assert ids["quarantine_old"] in _ids(conn, quarantine)
        assert ids["run_old"] in _ids(conn, sync_runs)
        assert len(_ids(conn, activities)) == 3


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"quarantine": "30"}, r"\[retention.quarantine\] '30' is not an age like \"30d\""),
        ({"activities": "2y"}, r"\[retention.activities\] '2y' is not an age"),
        ({"runs": 30}, r"\[retention.runs\] must be an age like"),
        ({"outbox": "0d"}, r"\[retention.outbox\] '0d': give from 1"),
        ({"inactive_customers": "5000m"}, r"\[retention.inactive_customers\].*1,200 months"),
        ({"inactive_customers": "-3m"}, r"\[retention.inactive_customers\] '-3m' is not"),
        ({"leads": "18m"}, r"\[retention.leads\] unknown setting"),
    ],
)
def test_config_errors_name_the_key(rules: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"retention": rules}, connector_types={})


def test_ages_are_days_or_calendar_months() -> None:
    config = parse_config({"retention": {"runs": " 12M ", "quarantine": "30d"}}, connector_types={})
    assert config.retention.rules() == {"quarantine": "30d", "runs": "12m"}
    assert parse_config({}, connector_types={}).retention.rules() == {}
    now = datetime(2024, 3, 31, 12, 0, tzinfo=UTC)
    assert cutoff_for("30d", now) == datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    assert cutoff_for("1m", now) == datetime(2024, 2, 29, 12, 0, tzinfo=UTC)
    assert cutoff_for("18m", now) == datetime(2022, 9, 30, 12, 0, tzinfo=UTC)
    assert cutoff_for("3m", datetime(2024, 1, 15, tzinfo=UTC)) == datetime(2023, 10, 15, tzinfo=UTC)


# The command line -------------------------------------------------------------------------


def _cli() -> tuple[typer.Typer, list[str]]:
    """The root command and the words that reach ``retention``: ``privacy retention`` once it
    is wired in; until then the command on a throwaway root with the real root callback."""
    from crmhub.cli import main

    for group in main.app.registered_groups:
        if group.name == "privacy" and group.typer_instance is not None:
            names = [c.name for c in group.typer_instance.registered_commands]
            if "retention" in names:
                return main.app, ["privacy", "retention"]
    root = typer.Typer(no_args_is_help=True)
    root.callback()(main.root)
    privacy = typer.Typer(no_args_is_help=True)
    retention_cmd.register(privacy)
    privacy.command("noop", hidden=True)(lambda: None)  # a group, not a lone command
    root.add_typer(privacy, name="privacy")
    return root, ["privacy", "retention"]


def _invoke(config: Path, *args: str) -> tuple[int, str]:
    app, words = _cli()
    result = CliRunner().invoke(
        app, ["--config", str(config), *words, *args], catch_exceptions=False
    )
    return result.exit_code, result.stdout if "--json" in args else result.output


def test_cli_reports_by_default_and_applies_with_apply(make_hub: Any, tmp_path: Path) -> None:
    hub = make_hub({"quarantine": "30d", "outbox": "30d"})
    ids = _seed_aged_rows(hub)
    config = tmp_path / "crmhub.toml"
    before = _snapshot(hub.engine)

    code, output = _invoke(config)
    assert code == 0, output
    assert "would remove" in output and "quarantine" in output and "outbox" in output
    assert "--apply" in output
    code, output = _invoke(config, "--json")
    assert code == 0, output
    report = json.loads(output)
    assert report["applied"] is False
    assert [(c["category"], c["count"]) for c in report["categories"]] == [
        ("quarantine", 1),
        ("outbox", 2),
    ]
    assert _snapshot(hub.engine) == before

    code, output = _invoke(config, "--apply")
    assert code == 0, output
    assert "removed" in output and "retention.applied" in output
    with hub.engine.connect() as conn:
        assert ids["quarantine_old"] not in _ids(conn, quarantine)
        assert ids["push_done_old"] not in _ids(conn, outbox)
        assert audit.verify(conn) == (2, None)
    code, output = _invoke(config, "--apply", "--json")
    assert code == 0
    assert json.loads(output)["total"] == 0


def test_cli_names_the_wrong_key_and_exits_2(tmp_path: Path, sqlite_url: str) -> None:
    config = _write_hub(tmp_path, sqlite_url, {"quarantine": "thirty days"})
    code, output = _invoke(config)
    assert code == 2
    assert "[retention.quarantine]" in output


def test_cli_without_rules_says_how_to_add_them(make_hub: Any, tmp_path: Path) -> None:
    make_hub(None)
    code, output = _invoke(tmp_path / "crmhub.toml")
    assert code == 0 and "[retention]" in output


# Inactive customers (through the erasure's deletion) ----------------------------------------


def test_inactive_customers_go_with_everything_about_them(make_hub: Any) -> None:
    hub = make_hub({"inactive_customers": "6m", "activities": "90d"})
    s, c = source_records.c, customers.c
    with hub.engine.begin() as conn:
        cust = {external: _customer_of(conn, external) for external in ("c0", "c1", "c2", "c3")}
        assert len(set(cust.values())) == 4
        # c3 was seen ten days ago; the others 300 days ago.
        conn.execute(update(source_records).values(last_seen=_ago(300), first_seen=_ago(500)))
        conn.execute(update(source_records).where(s.external_id == "c3").values(last_seen=_ago(10)))
        # c0 bought something 100 days ago: active. c1's last order is 400 days old.
        _activity(conn, "o-c0", "c0", 100)
        _activity(conn, "o-c1", "c1", 400)
        # What hangs off c1 and c2: a pending push, a steward's override, an id merged away.
        push_c1 = _push(conn, "pending", 1, cust["c1"])
        conn.execute(
            insert(overrides).values(
                customer_id=cust["c2"],
                field="first_name",
                value="Alan",
                set_by="steward",
                set_at=_ago(200),
                reason="typo",
            )
        )
        merged_away = str(uuid.uuid4())
        conn.execute(
            insert(customers).values(
                id=merged_away,
                data={},
                traits={},
                created_at=_ago(600),
                updated_at=_ago(600),
                merged_into=cust["c1"],
            )
        )
        # A golden record without members, last touched long ago; and one touched today.
        orphan_old, orphan_new = str(uuid.uuid4()), str(uuid.uuid4())
        for orphan, days in ((orphan_old, 500), (orphan_new, 0)):
            conn.execute(
                insert(customers).values(
                    id=orphan, data={}, traits={}, created_at=_ago(days), updated_at=_ago(days)
                )
            )

    before = _snapshot(hub.engine)
    report = retention_report(hub, now=NOW)
    assert _snapshot(hub.engine) == before
    inactive = report.category("inactive_customers")
    assert inactive is not None
    assert (inactive.count, inactive.oldest) == (3, _ago(500))
    assert inactive.details == {"source_records": 2}
    assert [x.category for x in report.categories] == ["inactive_customers", "activities"]
    assert report.category("activities").count == 2  # type: ignore[union-attr]

    applied = apply_retention(hub, "dpo", now=NOW)

    # Customers go first, judged as in the report: c0 is kept by its order even though the
    # activities rule then removes that order.
    gone = applied.category("inactive_customers")
    assert gone is not None and gone.count == 3
    assert gone.details["source_records"] == 2
    assert gone.details["erased_source_records"] == 2
    assert gone.details["erased_activities"] == 1
    with hub.engine.connect() as conn:
        assert set(conn.execute(select(s.external_id)).scalars()) == {"c0", "c3"}
        left = _ids(conn, customers)
        assert {cust["c0"], cust["c3"], orphan_new} <= left
        assert not left & {cust["c1"], cust["c2"], merged_away, orphan_old}
        assert conn.execute(select(c.id).where(c.merged_into.is_not(None))).first() is None
        assert not _ids(conn, overrides)
        assert push_c1 not in _ids(conn, outbox)
        assert conn.execute(select(activities.c.external_id)).scalars().all() == []
        events = conn.execute(select(audit_log).order_by(audit_log.c.id)).mappings().all()
        assert [e["details"]["category"] for e in events] == ["inactive_customers", "activities"]
        assert events[0]["details"]["removed"] == 3
        assert events[0]["details"]["counts"]["erased_source_records"] == 2
        assert audit.verify(conn)[1] is None
        text = json.dumps([dict(e["details"]) for e in events])
        assert not any(value in text for value in PERSONAL)
        assert not any(cid in text for cid in cust.values())
    # With its order gone (activities are kept 90 days), nothing shows c0 active within six
    # months any more: the next pass finds it. Activity counts only while it is kept.
    after = retention_report(hub, now=NOW)
    assert [(x.category, x.count) for x in after.categories] == [
        ("inactive_customers", 1),
        ("activities", 0),
    ]

"""The sync engine, end to end on a real store (SQLite and PostgreSQL): idempotent upserts,
incremental state committed with its records, quarantine, deletes, dry runs, retries,
suppression, and logs without personal data."""

from __future__ import annotations

import csv
import gc
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

import crmhub
from crmhub.config import parse_config
from crmhub.connector import Page, Stream
from crmhub.errors import RetriableError
from crmhub.hub import Hub
from crmhub.logs import configure_logging
from crmhub.plugins import Plugins
from crmhub.store.schema import quarantine, source_records, suppressions, sync_runs, sync_state
from crmhub.suppression import identifier_hash

COLUMNS = ["id", "first_name", "last_name", "email", "phone", "country", "birth_date", "updated_at"]


def _row(n: int, **changes: str) -> dict[str, str]:
    row = {
        "id": f"c{n}",
        "first_name": f"Ana{n}",
        "last_name": "Lovelace",
        "email": f"ana{n}@example.com",
        "phone": f"+44 7400 {100000 + n}",
        "country": "GB",
        "birth_date": "1990-01-02",
        "updated_at": f"2024-01-01T00:00:{n % 60:02d}Z",
    }
    row.update(changes)
    return row


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


class _Flaky(crmhub.Connector):
    """Yields two pages, then fails like an API that went away; records the states it got."""

    name = "flaky"
    streams = {"people": Stream(primary_key="id", cursor="n")}
    default_mapping = "people_file"
    seen_states: list[Any] = []
    seen_thresholds: list[tuple[int, int, int]] = []
    fail = True

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        type(self).seen_states.append(state)
        type(self).seen_thresholds.append(gc.get_threshold())
        start = (state or {}).get("n", 0)
        for page in range(start, 4):
            if page == 2 and type(self).fail:
                raise RetriableError("upstream returned 503", connector=self.instance_name)
            yield Page(records=[_row(page * 10 + i) for i in range(10)], state={"n": page + 1})


class _TestPlugin:
    @crmhub.hookimpl
    def register_connectors(self, register: Any) -> None:
        register(_Flaky)


def _hub(
    engine: Engine, tmp_path: Path, *, secret: str | None = None, **connectors: dict[str, Any]
) -> Hub:
    plugins = Plugins(extra=(_TestPlugin(),))
    raw: dict[str, Any] = {"hub": {"default_region": "GB"}, "connectors": connectors}
    environ = {}
    if secret:
        raw["hub"]["secret"] = "env:SECRET"
        environ["SECRET"] = secret
    config = parse_config(
        raw, connector_types=plugins.connectors(), environ=environ, path=tmp_path / "crmhub.toml"
    )
    return Hub(config, engine, plugins)


def _csv_hub(engine: Engine, tmp_path: Path, rows: list[dict[str, str]], **settings: Any) -> Hub:
    _write_csv(tmp_path / "people.csv", rows)
    return _hub(
        engine,
        tmp_path,
        shop={"type": "csv", "path": "people.csv", "mapping": "people_file", **settings},
    )


def _count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def test_first_sync_stores_good_records_and_quarantines_bad_ones(
    engine: Engine, tmp_path: Path
) -> None:
    rows = [_row(n) for n in range(20)]
    rows[3]["email"] = "not-an-email"
    rows[7]["id"] = ""
    hub = _csv_hub(engine, tmp_path, rows)
    [result] = hub.sync()
    assert result.ok
    counts = result.counts
    assert (counts.read, counts.inserted, counts.quarantined) == (20, 18, 2)
    assert _count(engine, source_records) == 18
    with engine.connect() as conn:
        reasons = sorted(r[0][0] for r in conn.execute(select(quarantine.c.errors)))
        run = conn.execute(select(sync_runs)).one()
    assert reasons[0].startswith("emails (from 'email')")
    assert "missing primary key 'id'" in reasons
    assert (run.status, run.read, run.inserted, run.quarantined) == ("succeeded", 20, 18, 2)


def test_resync_skips_unchanged_records_and_updates_changed_ones(
    engine: Engine, tmp_path: Path
) -> None:
    rows = [_row(n) for n in range(30)]
    hub = _csv_hub(engine, tmp_path, rows, cursor="updated_at")
    hub.sync()
    [again] = hub.sync(full=True)
    assert (again.counts.unchanged, again.counts.inserted, again.counts.updated) == (30, 0, 0)
    rows[5] = _row(5, email="new5@example.com", updated_at="2025-01-01T00:00:00Z")
    _write_csv(tmp_path / "people.csv", rows)
    [incremental] = hub.sync()
    assert (incremental.counts.read, incremental.counts.updated) == (1, 1)
    with engine.connect() as conn:
        data = conn.execute(
            select(source_records.c.data).where(source_records.c.external_id == "c5")
        ).scalar_one()
    assert data["emails"] == ["new5@example.com"]
    assert _count(engine, source_records) == 30


def test_running_the_same_full_sync_twice_creates_no_duplicates(
    engine: Engine, tmp_path: Path
) -> None:
    hub = _csv_hub(engine, tmp_path, [_row(n) for n in range(50)], page_size=7)
    hub.sync(full=True)
    hub.sync(full=True)
    assert _count(engine, source_records) == 50
    assert _count(engine, sync_runs, sync_runs.c.status == "succeeded") == 2


def test_a_source_delete_marks_the_record_deleted(engine: Engine, tmp_path: Path) -> None:
    rows = [{**_row(n), "gone": ""} for n in range(5)]
    hub = _csv_hub(engine, tmp_path, rows, deleted_field="gone")
    hub.sync()
    rows[2]["gone"] = "yes"
    COLUMNS.append("gone")
    try:
        _write_csv(tmp_path / "people.csv", rows)
    finally:
        COLUMNS.remove("gone")
    [result] = hub.sync(full=True)
    assert result.counts.deleted == 1
    assert _count(engine, source_records, source_records.c.deleted_at.is_not(None)) == 1


def test_dry_run_reports_counts_and_stores_nothing(engine: Engine, tmp_path: Path) -> None:
    hub = _csv_hub(engine, tmp_path, [_row(n) for n in range(10)], cursor="updated_at")
    [result] = hub.sync(dry_run=True)
    assert (result.status, result.counts.inserted) == ("dry-run", 10)
    for table in (source_records, sync_runs, sync_state, quarantine):
        assert _count(engine, table) == 0


def test_state_is_committed_with_its_records_and_a_rerun_resumes(
    engine: Engine, tmp_path: Path
) -> None:
    _Flaky.seen_states.clear()
    _Flaky.fail = True
    hub = _hub(engine, tmp_path, api={"type": "flaky"})
    [failed] = hub.sync()
    assert failed.status == "failed" and "503" in (failed.error or "")
    assert _count(engine, source_records) == 20  # the two pages before the failure
    with engine.connect() as conn:
        assert conn.execute(select(sync_state.c.state)).scalar_one() == {"n": 2}
        run = conn.execute(select(sync_runs)).one()
    assert (run.status, run.inserted) == ("failed", 20)
    _Flaky.fail = False
    [resumed] = hub.sync()
    assert resumed.ok and resumed.counts.inserted == 20
    assert _Flaky.seen_states[-1] == {"n": 2}
    assert _count(engine, source_records) == 40


def test_a_run_defers_full_collections_while_it_reads_and_gives_them_back(
    engine: Engine, tmp_path: Path
) -> None:
    _Flaky.seen_thresholds.clear()
    _Flaky.fail = True  # the scope must end on a failed run too
    before = gc.get_threshold()
    [failed] = _hub(engine, tmp_path, api={"type": "flaky"}).sync()
    assert failed.status == "failed"
    [during] = _Flaky.seen_thresholds
    assert during[:2] == before[:2] and during[2] > before[2]
    assert gc.get_threshold() == before


def test_quarantine_retry_stores_records_after_a_mapping_fix(
    engine: Engine, tmp_path: Path
) -> None:
    mapping = tmp_path / "shop.yaml"
    mapping.write_text(
        "streams:\n  people:\n    kind: person\n    fields:\n      external_id: id\n"
        "      emails: email\n      birth_date: {from: birth_date, transform: date}\n"
    )
    rows = [_row(n, birth_date="02/01/1990") for n in range(4)]
    _write_csv(tmp_path / "people.csv", rows)
    hub = _hub(engine, tmp_path, shop={"type": "csv", "path": "people.csv", "mapping": "shop.yaml"})
    [first] = hub.sync()
    assert first.counts.quarantined == 4
    mapping.write_text(
        mapping.read_text().replace("transform: date}", "transform: {date: {format: '%d/%m/%Y'}}}")
    )
    fixed = _hub(
        engine, tmp_path, shop={"type": "csv", "path": "people.csv", "mapping": "shop.yaml"}
    )
    with engine.connect() as conn:
        first_id = conn.execute(select(func.min(quarantine.c.id))).scalar_one()
    only_one = fixed.retry_quarantined(ids=[first_id])
    assert (only_one.counts.read, only_one.counts.inserted) == (1, 1)
    assert _count(engine, quarantine, quarantine.c.resolved_at.is_(None)) == 3
    outcome = fixed.retry_quarantined()
    assert (outcome.counts.inserted, outcome.counts.quarantined) == (3, 0)
    assert _count(engine, quarantine, quarantine.c.resolved_at.is_(None)) == 0
    with engine.connect() as conn:
        birth = conn.execute(
            select(source_records.c.data).where(source_records.c.external_id == "c1")
        ).scalar_one()
    assert birth["birth_date"] == "1990-01-02"


def test_a_fixed_record_resolves_its_quarantine_row(engine: Engine, tmp_path: Path) -> None:
    rows = [_row(n) for n in range(3)]
    rows[1]["email"] = "broken"
    hub = _csv_hub(engine, tmp_path, rows)
    hub.sync()
    rows[1]["email"] = "fixed@example.com"
    _write_csv(tmp_path / "people.csv", rows)
    [result] = hub.sync()
    assert result.counts.inserted == 1
    with engine.connect() as conn:
        assert conn.execute(select(quarantine.c.resolution)).scalar_one() == "superseded"


def test_suppressed_people_are_dropped_and_counted(engine: Engine, tmp_path: Path) -> None:
    rows = [_row(n) for n in range(5)]
    _write_csv(tmp_path / "people.csv", rows)
    with engine.begin() as conn:
        conn.execute(
            insert(suppressions).values(
                kind="email",
                hash=identifier_hash(b"k3y", "email", "ana3@example.com"),
                created_at=func.now(),
            )
        )
    hub = _hub(
        engine,
        tmp_path,
        secret="k3y",
        shop={"type": "csv", "path": "people.csv", "mapping": "people_file"},
    )
    [result] = hub.sync()
    assert (result.counts.inserted, result.counts.suppressed) == (4, 1)
    assert _count(engine, source_records, source_records.c.external_id == "c3") == 0


def test_a_mapped_column_missing_from_the_file_gives_a_warning(
    engine: Engine, tmp_path: Path
) -> None:
    hub = _csv_hub(engine, tmp_path, [_row(1)])
    [result] = hub.sync()
    assert any("'company'" in w for w in result.warnings)


def test_activities_are_stored_with_amounts_in_minor_units(engine: Engine, tmp_path: Path) -> None:
    from crmhub.store.schema import activities

    lines = [
        {
            "id": f"in_{n}",
            "customer_id": "c1",
            "type": "invoice",
            "occurred_at": "2024-03-01T10:00:00Z",
            "amount": "12.50",
            "currency": "eur",
            "status": "paid",
            "subject": "Order",
            "updated_at": "2024-03-01T10:00:00Z",
        }
        for n in range(3)
    ]
    (tmp_path / "invoices.jsonl").write_bytes(b"\n".join(orjson.dumps(x) for x in lines))
    hub = _hub(
        engine,
        tmp_path,
        billing={
            "type": "jsonl",
            "path": "invoices.jsonl",
            "stream": "invoices",
            "kind": "activity",
            "mapping": "activities_file",
        },
    )
    [result] = hub.sync()
    assert result.counts.inserted == 3
    with engine.connect() as conn:
        amounts = conn.execute(select(activities.c.amount, activities.c.currency)).all()
    assert amounts == [(1250, "EUR")] * 3


def test_logs_of_a_sync_hold_no_personal_data(engine: Engine, tmp_path: Path) -> None:
    rows = [_row(n) for n in range(10)]
    rows[4]["email"] = "broken-ana4.example.com"
    out = io.StringIO()
    configure_logging("debug", stream=out, json=True)
    _csv_hub(engine, tmp_path, rows).sync()
    logged = out.getvalue()
    assert "sync.stream.finished" in logged
    for row in rows:
        for field in ("email", "first_name", "phone"):
            assert row[field] not in logged


@pytest.mark.parametrize("bad", [b"not json\n", b"[1, 2]\n", b'{"id": "x", "email": 5}\n'])
def test_garbage_lines_are_quarantined_and_good_ones_kept(
    engine: Engine, tmp_path: Path, bad: bytes
) -> None:
    good = [orjson.dumps(_row(n)) + b"\n" for n in range(3)]
    (tmp_path / "people.jsonl").write_bytes(good[0] + bad + good[1] + good[2])
    hub = _hub(
        engine, tmp_path, feed={"type": "jsonl", "path": "people.jsonl", "mapping": "people_file"}
    )
    [result] = hub.sync()
    assert (result.counts.inserted, result.counts.quarantined) == (3, 1)


def test_the_same_record_twice_in_a_page_is_stored_once_and_counted(
    engine: Engine, tmp_path: Path
) -> None:
    rows = [_row(1), _row(2), _row(1), _row(2, email="later@example.com")]
    hub = _csv_hub(engine, tmp_path, rows)
    [result] = hub.sync()
    counts = result.counts
    assert (counts.inserted, counts.unchanged, counts.updated) == (2, 2, 0)
    assert counts.read == counts.inserted + counts.unchanged + counts.updated
    with engine.connect() as conn:
        data = conn.execute(
            select(source_records.c.data).where(source_records.c.external_id == "c2")
        ).scalar_one()
    assert data["emails"] == ["later@example.com"]


def test_a_record_fixed_later_in_the_same_run_resolves_its_quarantine_row(
    engine: Engine, tmp_path: Path
) -> None:
    rows = [_row(1, email="broken"), _row(2), _row(1)]
    hub = _csv_hub(engine, tmp_path, rows, page_size=2)
    [result] = hub.sync()
    assert (result.counts.quarantined, result.counts.inserted) == (1, 2)
    assert _count(engine, quarantine, quarantine.c.resolved_at.is_(None)) == 0


def _pages(*sizes: int, deleted_at: int | None = None) -> list[Page]:
    pages, n = [], 0
    for i, size in enumerate(sizes):
        records = [{"id": str(n + k)} for k in range(size)]
        n += size
        state = {"n": n} if i % 2 == 0 else None  # some pages keep the previous state
        pages.append(Page(records=records, state=state, deleted=["x"] if i == deleted_at else []))
    return pages


def test_small_pages_are_joined_in_order_with_the_last_state() -> None:
    from crmhub.sync import coalesce_pages

    joined = list(coalesce_pages(_pages(300, 300, 300, 300, 50), records=1000))
    assert [len(p.records) for p in joined] == [1200, 50]
    assert [r["id"] for p in joined for r in p.records] == [str(i) for i in range(1250)]
    assert [p.state for p in joined] == [{"n": 900}, {"n": 1250}]


def test_a_page_with_deletions_ends_a_joined_page() -> None:
    from crmhub.sync import coalesce_pages

    joined = list(coalesce_pages(_pages(10, 10, 10, 10, deleted_at=1), records=1000))
    assert [(len(p.records), p.deleted) for p in joined] == [(20, ["x"]), (20, [])]


def test_pages_read_before_an_error_are_still_yielded_then_the_error() -> None:
    from crmhub.sync import coalesce_pages

    def failing() -> Iterator[Page]:
        yield from _pages(10, 10)
        raise RetriableError("upstream returned 503")

    got: list[Page] = []
    with pytest.raises(RetriableError):
        for page in coalesce_pages(failing(), records=1000):
            got.append(page)
    assert [len(p.records) for p in got] == [20]


def test_a_slow_stream_is_not_held_back_for_long() -> None:
    from crmhub.sync import coalesce_pages

    ticks = iter(range(0, 100, 3))  # each page arrives 3 s after the one before
    joined = list(
        coalesce_pages(_pages(5, 5, 5, 5), records=1000, seconds=5, clock=lambda: next(ticks))
    )
    assert [len(p.records) for p in joined] == [10, 10]

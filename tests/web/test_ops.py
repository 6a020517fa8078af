"""The ops pages and their JSON API: run history with counts and failures, quarantine (raw
records only on a row's own page; retry after a mapping fix), push failures (made due again);
who may read and who may act; CSRF on every form.

The hub is filled by the sync engine: a CRM and a shop system (an in-memory connector whose
pushes are refused), and a shop mapping that cannot read one record's birth date.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

import crmhub
from crmhub.config import parse_config
from crmhub.connector import Change, Page, Stream, WriteResult
from crmhub.errors import AuthError
from crmhub.hub import Hub
from crmhub.plugins import Plugins
from crmhub.store.schema import audit_log, outbox, quarantine, source_records
from crmhub.web import create_app

from .conftest import sign_in

SYSTEMS: dict[str, dict[str, dict[str, str]]] = {}
"""The records of each in-memory system, by instance name then id."""
REFUSE_WRITES: set[str] = set()
"""Instances whose writes are refused as a whole (bad credentials)."""

BAD_DATE = "02/01/1991"  # the shop writes dates its mapping does not read yet
BAD_EMAIL = "bella.bad-date@example.com"


class Memory(crmhub.Connector):
    """A system held in SYSTEMS; writes apply their fields, unless refused."""

    name = "ops_memory"
    streams = {"people": Stream(primary_key="id")}
    default_mapping = "people_file"

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        records = [dict(r) for r in SYSTEMS[self.instance_name].values()]
        yield Page(records=records, state={"n": len(records)})

    def write(self, stream: str, changes: Iterable[Change]) -> Iterator[WriteResult]:
        if self.instance_name in REFUSE_WRITES:
            raise AuthError("the API refused the credentials (HTTP 401)", connector=self.name)
        for change in changes:
            record = SYSTEMS[self.instance_name][str(change.external_id)]
            record.update({k: str(v) for k, v in change.fields.items() if k != "id"})
            yield WriteResult(change.idempotency_key, ok=True, external_id=change.external_id)


class _Plugin:
    @crmhub.hookimpl
    def register_connectors(self, register: Any) -> None:
        register(Memory)


def _person(pid: str, first: str, last: str, **fields: str) -> dict[str, str]:
    return {
        "id": pid,
        "first_name": first,
        "last_name": last,
        "email": f"{first.lower()}.{last.lower()}@example.com",
        "birth_date": "1980-05-17",
        **fields,
    }


PEOPLE = [("Ada", "Lovelace"), ("Grace", "Hopper"), ("Alan", "Turing")]
FIX = ("transform: date}", "transform: {date: {format: '%d/%m/%Y'}}}")


@pytest.fixture
def shop_mapping(tmp_path: Path) -> Path:
    """The shop's own mapping: the built-in one for people files, reading ISO dates only."""
    path = tmp_path / "shop.yaml"
    text = (importlib.resources.files("crmhub.mappings") / "people_file.yaml").read_text()
    assert FIX[0] in text
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def ops_hub(engine: Engine, tmp_path: Path, shop_mapping: Path) -> Iterator[Hub]:
    """A synced hub: customers from both systems, one shop record in quarantine, and pushes
    to the shop that it refused (a failed push run, pushes waiting for their retry)."""
    SYSTEMS.clear()
    REFUSE_WRITES.clear()
    SYSTEMS["crm"] = {
        f"c{i}": _person(f"c{i}", first, last, phone=f"+44 7400 12345{i}", city="London")
        for i, (first, last) in enumerate(PEOPLE)
    }
    SYSTEMS["shop"] = {
        f"s{i}": _person(f"s{i}", first, last, city="Leeds")
        for i, (first, last) in enumerate(PEOPLE)
    }
    SYSTEMS["shop"]["s9"] = _person("s9", "Bella", "Baddate", email=BAD_EMAIL, birth_date=BAD_DATE)
    REFUSE_WRITES.add("shop")
    plugins = Plugins(extra=(_Plugin(),))
    raw = {
        "hub": {"default_region": "GB"},
        "connectors": {
            "crm": {"type": "ops_memory", "push": False},
            "shop": {"type": "ops_memory", "mapping": shop_mapping.name},
        },
    }
    config = parse_config(raw, connector_types=plugins.connectors(), path=tmp_path / "crmhub.toml")
    hub = Hub(config, engine, plugins)
    hub.sync(push=True)
    yield hub
    SYSTEMS.clear()
    REFUSE_WRITES.clear()


@pytest.fixture
def ops_client(ops_hub: Hub) -> Iterator[TestClient]:
    with TestClient(create_app(ops_hub), follow_redirects=False) as test_client:
        yield test_client


def _as(tokens: dict[str, str], role: str, *, html: bool = False) -> dict[str, str]:
    headers = {"authorization": f"Bearer {tokens[role]}"}
    if html:
        headers["accept"] = "text/html"
    return headers


def _open_quarantine(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        rows = conn.execute(select(quarantine.c.id).where(quarantine.c.resolved_at.is_(None)))
        return list(rows.scalars())


def _audit(engine: Engine, action: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(audit_log).where(audit_log.c.action == action))
        return [dict(row._mapping) for row in rows]


def _outbox(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(outbox).order_by(outbox.c.id))]


# ------------------------------------------------------------------------------------ runs
def test_the_runs_page_shows_counts_durations_and_a_failed_runs_error(
    ops_client: TestClient, tokens: dict[str, str]
) -> None:
    page = ops_client.get("/runs", headers=_as(tokens, "ops", html=True))
    assert page.status_code == 200
    text = page.text
    assert "crm / people" in text and "shop / people" in text and "shop / people</td>" in text
    # The push run failed: its status, counts and error are on the page.
    assert "the API refused the credentials (HTTP 401)" in text
    assert '<span class="pill neg">failed</span>' in text
    assert "push failed" in text  # the column shows up: a listed run has push failures
    runs = ops_client.get("/api/runs", headers=_as(tokens, "ops")).json()
    by_mode = {run["mode"]: run for run in runs["runs"] if run["connector"] == "shop"}
    push, pull = by_mode["push"], by_mode["incremental"]
    assert push["status"] == "failed" and "refused the credentials" in push["error"]
    assert push["counts"]["push_failed"] == 3 and push["counts"]["pushed"] == 0
    assert (pull["counts"]["read"], pull["counts"]["inserted"], pull["counts"]["quarantined"]) == (
        4,
        3,
        1,
    )
    assert pull["duration"] is not None and pull["duration"] >= 0
    assert f'<td class="num neg">{push["counts"]["push_failed"]}</td>' in text


def test_runs_filter_by_status_and_connector_and_page(
    ops_client: TestClient, tokens: dict[str, str]
) -> None:
    failed = ops_client.get("/api/runs?status=failed", headers=_as(tokens, "ops")).json()
    assert [(r["connector"], r["mode"]) for r in failed["runs"]] == [("shop", "push")]
    crm = ops_client.get("/api/runs?connector=crm", headers=_as(tokens, "ops")).json()
    assert {r["connector"] for r in crm["runs"]} == {"crm"} and crm["total"] == 1
    everything = ops_client.get("/api/runs", headers=_as(tokens, "ops")).json()
    first = ops_client.get("/api/runs?per_page=1", headers=_as(tokens, "ops")).json()
    second = ops_client.get("/api/runs?per_page=1&page=2", headers=_as(tokens, "ops")).json()
    assert first["pages"] == everything["total"] == 3
    assert [first["runs"][0]["id"], second["runs"][0]["id"]] == [
        r["id"] for r in everything["runs"][:2]
    ]
    page = ops_client.get("/runs?status=failed", headers=_as(tokens, "ops", html=True))
    assert "refused the credentials" in page.text and "crm / people" not in page.text
    # A value that names nothing stored (here a NUL byte) finds nothing; never an error.
    nothing = ops_client.get("/api/runs?connector=%00", headers=_as(tokens, "ops"))
    assert nothing.status_code == 200 and nothing.json()["runs"] == []
    assert ops_client.get("/api/runs?status=bogus", headers=_as(tokens, "ops")).status_code == 422


def test_a_run_page_shows_the_records_it_quarantined(
    ops_client: TestClient, tokens: dict[str, str]
) -> None:
    runs = ops_client.get("/api/runs?connector=shop", headers=_as(tokens, "ops")).json()["runs"]
    pull = next(r for r in runs if r["mode"] == "incremental")
    detail = ops_client.get(f"/api/runs/{pull['id']}", headers=_as(tokens, "ops")).json()
    [row] = detail["quarantined_records"]
    assert row["external_id"] == "s9" and "birth_date" in row["errors"][0]
    assert "raw" not in row
    page = ops_client.get(f"/runs/{pull['id']}", headers=_as(tokens, "ops", html=True))
    assert page.status_code == 200 and f'href="/quarantine/{row["id"]}"' in page.text
    assert BAD_DATE not in page.text and BAD_EMAIL not in page.text
    assert ops_client.get("/api/runs/999999", headers=_as(tokens, "ops")).status_code == 404
    assert ops_client.get("/api/runs/0", headers=_as(tokens, "ops")).status_code == 422
    assert ops_client.get(f"/api/runs/{2**70}", headers=_as(tokens, "ops")).status_code == 422
    missing = ops_client.get("/runs/999999", headers=_as(tokens, "ops", html=True))
    assert missing.status_code == 404 and "no run 999999" in missing.text


# ------------------------------------------------------------------------------ quarantine
@pytest.mark.parametrize("role", ["ops", "auditor"])
def test_the_quarantine_list_has_errors_but_no_raw_values_and_the_detail_has_them(
    ops_client: TestClient, tokens: dict[str, str], role: str
) -> None:
    listing = ops_client.get("/quarantine", headers=_as(tokens, role, html=True))
    assert listing.status_code == 200
    assert "s9" in listing.text and "birth_date (from &#39;birth_date&#39;)" in listing.text
    assert BAD_DATE not in listing.text and BAD_EMAIL not in listing.text
    data = ops_client.get("/api/quarantine", headers=_as(tokens, role)).json()
    [row] = data["records"]
    assert (row["connector"], row["stream"], row["external_id"]) == ("shop", "people", "s9")
    assert "raw" not in row and "record" not in row
    assert BAD_EMAIL not in str(data)
    assert data["groups"] == [{"connector": "shop", "stream": "people", "open": 1}]
    detail = ops_client.get(f"/quarantine/{row['id']}", headers=_as(tokens, role, html=True))
    assert detail.status_code == 200
    assert BAD_DATE in detail.text and BAD_EMAIL in detail.text
    item = ops_client.get(f"/api/quarantine/{row['id']}", headers=_as(tokens, role)).json()
    assert item["record"]["email"] == BAD_EMAIL and BAD_DATE in item["raw"]
    # Only ops may retry: the auditor's pages offer no retry.
    assert ("Retry" in listing.text) is (role == "ops")
    assert ("Retry this record" in detail.text) is (role == "ops")


def test_a_retry_after_a_mapping_fix_resolves_the_rows(
    ops_hub: Hub, ops_client: TestClient, tokens: dict[str, str], shop_mapping: Path
) -> None:
    [qid] = _open_quarantine(ops_hub.engine)
    # Before the fix: the record fails again and stays.
    again = ops_client.post(
        "/api/quarantine/retry", json={"ids": [qid]}, headers=_as(tokens, "ops")
    )
    assert again.status_code == 200
    assert again.json() == {
        "read": 1,
        "inserted": 0,
        "updated": 0,
        "still_failing": 1,
        "suppressed": 0,
        "not_retriable": 0,
    }
    assert _open_quarantine(ops_hub.engine) == [qid]
    # The fix, on disk, while the app runs; a browser retries every open row of the shop.
    shop_mapping.write_text(shop_mapping.read_text().replace(*FIX), encoding="utf-8")
    csrf = sign_in(ops_client, tokens["ops"])
    page = ops_client.post(
        "/quarantine/retry",
        data={"connector": "shop", "csrf_token": csrf},
        headers={"accept": "text/html"},
    )
    assert page.status_code == 200
    assert "Retried 1: 1 inserted, 0 updated,\n0 still failing" in page.text
    assert "Nothing in quarantine" in page.text
    assert _open_quarantine(ops_hub.engine) == []
    with ops_hub.engine.connect() as conn:
        stored = conn.execute(
            select(source_records.c.data).where(source_records.c.external_id == "s9")
        ).scalar_one()
    assert stored["birth_date"] == "1991-01-02"
    events = _audit(ops_hub.engine, "quarantine.retried")
    assert [e["actor"] for e in events] == ["ops:ops", "ops:ops"]
    assert events[-1]["details"]["counts"]["inserted"] == 1
    assert events[-1]["subject_id"] == "shop"
    assert BAD_EMAIL not in str(events)  # ids and counts only
    runs = ops_client.get("/api/runs", headers=_as(tokens, "ops")).json()["runs"]
    assert [r["mode"] for r in runs[:2]] == ["retry", "retry"]


def test_a_retry_without_a_choice_does_nothing_and_a_broken_mapping_is_a_clear_409(
    ops_hub: Hub, ops_client: TestClient, tokens: dict[str, str], shop_mapping: Path
) -> None:
    empty = ops_client.post("/api/quarantine/retry", json={}, headers=_as(tokens, "ops"))
    assert empty.status_code == 200 and empty.json()["read"] == 0
    nothing = ops_client.post("/quarantine/retry", data={}, headers=_as(tokens, "ops", html=True))
    assert nothing.status_code == 422 and "Tick the records" in nothing.text
    assert _audit(ops_hub.engine, "quarantine.retried") == []
    shop_mapping.write_text("streams: [not, a, mapping\n", encoding="utf-8")
    broken = ops_client.post(
        "/api/quarantine/retry", json={"connector": "shop"}, headers=_as(tokens, "ops")
    )
    assert broken.status_code == 409 and "shop.yaml" in broken.json()["detail"]
    assert len(_open_quarantine(ops_hub.engine)) == 1
    page = ops_client.post(
        "/quarantine/retry", data={"connector": "shop"}, headers=_as(tokens, "ops", html=True)
    )
    assert page.status_code == 409 and 'class="flash bad"' in page.text
    assert ops_client.get("/api/quarantine/999999", headers=_as(tokens, "ops")).status_code == 404


# ---------------------------------------------------------------------------------- pushes
def test_push_failures_are_listed_and_a_retry_makes_them_due_now(
    ops_hub: Hub, ops_client: TestClient, tokens: dict[str, str]
) -> None:
    page = ops_client.get("/pushes", headers=_as(tokens, "ops", html=True))
    assert page.status_code == 200
    assert "shop / people" in page.text and "refused the credentials" in page.text
    data = ops_client.get("/api/pushes", headers=_as(tokens, "ops")).json()
    assert data["summary"] == {"pending": 3}
    assert sorted(p["external_id"] for p in data["pushes"]) == ["s0", "s1", "s2"]
    first = data["pushes"][0]
    assert first["attempts"] == 1 and first["status"] == "pending"
    assert "refused the credentials" in first["last_error"]
    assert datetime.fromisoformat(first["next_attempt_at"]) > datetime.now(UTC)
    assert "fields" not in first  # golden values are personal data
    # The shop works again, but the pushes wait for their backoff: nothing goes out.
    REFUSE_WRITES.clear()
    [waiting] = ops_hub.push(plan=False)
    assert waiting.counts.pushed == 0
    made = ops_client.post(
        "/api/pushes/retry", json={"ids": [first["id"]]}, headers=_as(tokens, "ops")
    )
    assert made.status_code == 200 and made.json() == {"due": 1}
    [sent] = ops_hub.push(plan=False)
    assert sent.counts.pushed == 1
    done = {row["id"]: row["status"] for row in _outbox(ops_hub.engine)}
    assert done[first["id"]] == "done"
    assert sorted(done.values()) == ["done", "pending", "pending"]
    # Every failing push of a target, from the page.
    csrf = sign_in(ops_client, tokens["ops"])
    page = ops_client.post(
        "/pushes/retry",
        data={"target": "shop", "csrf_token": csrf},
        headers={"accept": "text/html"},
    )
    assert page.status_code == 200 and "2 pushes made due now" in page.text
    [rest] = ops_hub.push(plan=False)
    assert rest.counts.pushed == 2
    events = _audit(ops_hub.engine, "push.retried")
    assert [(e["details"]["count"], e["actor"]) for e in events] == [(1, "ops:ops"), (2, "ops:ops")]
    assert SYSTEMS["shop"]["s0"]["phone"] == "+447400123450"  # the golden phone arrived
    empty = ops_client.post("/api/pushes/retry", json={}, headers=_as(tokens, "ops"))
    assert empty.status_code == 200 and empty.json() == {"due": 0}
    nothing = ops_client.post("/pushes/retry", data={}, headers=_as(tokens, "ops", html=True))
    assert nothing.status_code == 422 and "Tick the pushes" in nothing.text
    assert len(_audit(ops_hub.engine, "push.retried")) == 2


# ----------------------------------------------------------------------------------- roles
READS = [
    "/runs",
    "/runs/1",
    "/quarantine",
    "/quarantine/1",
    "/pushes",
    "/api/runs",
    "/api/runs/1",
    "/api/quarantine",
    "/api/quarantine/1",
    "/api/pushes",
]
ACTS = [
    ("/quarantine/retry", {"data": {"connector": "shop"}}),
    ("/pushes/retry", {"data": {"target": "shop"}}),
    ("/api/quarantine/retry", {"json": {"connector": "shop"}}),
    ("/api/pushes/retry", {"json": {"target": "shop"}}),
]


@pytest.mark.parametrize("role", ["ops", "steward", "compliance", "auditor"])
def test_ops_and_auditors_read_and_only_ops_act(
    ops_hub: Hub, ops_client: TestClient, tokens: dict[str, str], role: str
) -> None:
    reads = role in ("ops", "auditor")
    for path in READS:
        response = ops_client.get(path, headers=_as(tokens, role))
        assert response.status_code == (200 if reads else 403), (role, path)
        if not reads:
            assert "refused" not in response.text and "s9" not in response.text
    before = (_open_quarantine(ops_hub.engine), _outbox(ops_hub.engine))
    for path, body in ACTS:
        response = ops_client.post(path, headers=_as(tokens, role), **body)
        assert response.status_code == (200 if role == "ops" else 403), (role, path)
        if role != "ops":
            assert (_open_quarantine(ops_hub.engine), _outbox(ops_hub.engine)) == before


def test_without_a_token_every_ops_route_is_401_or_the_sign_in_page(
    ops_client: TestClient,
) -> None:
    for path in READS:
        assert ops_client.get(path).status_code == 401, path
        page = ops_client.get(path, headers={"accept": "text/html"})
        if path.startswith("/api/"):
            assert page.status_code == 401, path
        else:
            assert page.status_code == 303 and page.headers["location"].startswith("/login")
    for path, body in ACTS:
        assert ops_client.post(path, **body).status_code == 401, path


def test_every_ops_form_needs_the_csrf_token_of_the_session(
    ops_hub: Hub, ops_client: TestClient, tokens: dict[str, str]
) -> None:
    csrf = sign_in(ops_client, tokens["ops"])
    before = (_open_quarantine(ops_hub.engine), _outbox(ops_hub.engine))
    for path, body in ACTS:
        assert ops_client.post(path, **body).status_code == 403, path
        if "data" in body:
            forged = {"data": {**body["data"], "csrf_token": "forged"}}
            assert ops_client.post(path, **forged).status_code == 403, path
    assert (_open_quarantine(ops_hub.engine), _outbox(ops_hub.engine)) == before
    assert _audit(ops_hub.engine, "quarantine.retried") == []
    # The API from the same session: the token as a header.
    sent = ops_client.post(
        "/api/pushes/retry", json={"target": "shop"}, headers={"x-csrf-token": csrf}
    )
    assert sent.status_code == 200 and sent.json() == {"due": 3}


def test_the_json_twins_are_in_the_openapi_schema_and_the_pages_are_not(
    ops_client: TestClient,
) -> None:
    paths = ops_client.get("/api/openapi.json").json()["paths"]
    for path in ("/api/runs", "/api/runs/{run_id}", "/api/quarantine", "/api/pushes"):
        assert "get" in paths[path], path
    assert "post" in paths["/api/quarantine/retry"] and "post" in paths["/api/pushes/retry"]
    assert not any(p in paths for p in ("/runs", "/quarantine", "/pushes"))

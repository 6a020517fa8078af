"""The compliance officer's privacy pages and their JSON API: a request is received through
the form, its subject's records are shown with why each is theirs (personal data, on the
request's page only), an erasure is confirmed before anything goes and removes the records
from the store and the systems, manual tasks are closed with a note, deadlines are extended
and requests refused with a reason, duplicates are linked, and the certificate is JSON
without personal data. Auditors read, only compliance acts, stewards and ops see nothing;
every form needs the session's CSRF token; bad identifiers are a clear 400.

The hub syncs two in-memory systems: a CRM whose connector can erase (``api`` tasks) and a
shop that cannot (``manual`` tasks).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

import crmhub
from crmhub.auth import ROLES, create_token
from crmhub.config import parse_config
from crmhub.connector import EraseResult, Page, Stream
from crmhub.errors import ConfigError
from crmhub.hub import Hub
from crmhub.plugins import Plugins
from crmhub.store.schema import audit_log, privacy_requests, source_records, suppressions
from crmhub.web import create_app

from .conftest import sign_in

SECRET_ENV = "CRMHUB_TEST_PRIVACY_SECRET"
SYSTEMS: dict[str, dict[str, dict[str, str]]] = {}
"""The records of each in-memory system, by instance name then id."""
ERASE_BROKEN: set[str] = set()
"""Instances whose erase call fails (a configuration problem: not retried by itself)."""

ADA = "ada.lovelace@analytical.co.uk"
GRACE = "grace.hopper@analytical.co.uk"


class Memory(crmhub.Connector):
    """A system held in SYSTEMS, read only (its records are erased by hand)."""

    name = "privacy_memory"
    streams = {"people": Stream(primary_key="id")}
    default_mapping = "people_file"

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        records = [dict(r) for r in SYSTEMS[self.instance_name].values()]
        yield Page(records=records, state={"n": len(records)})


class ErasingMemory(Memory):
    """A system held in SYSTEMS whose API erases records."""

    name = "privacy_erasing_memory"

    def erase(self, external_ids: Iterable[str]) -> Iterator[EraseResult]:
        if self.instance_name in ERASE_BROKEN:
            raise ConfigError("the API key lacks the erase scope")
        held = SYSTEMS[self.instance_name]
        for external_id in external_ids:
            gone = held.pop(external_id, None) is None
            yield EraseResult(external_id, "already_gone" if gone else "erased")


class _Plugin:
    @crmhub.hookimpl
    def register_connectors(self, register: Any) -> None:
        register(Memory)
        register(ErasingMemory)


def _person(pid: str, first: str, last: str, **fields: str) -> dict[str, str]:
    return {
        "id": pid,
        "first_name": first,
        "last_name": last,
        "email": f"{first.lower()}.{last.lower()}@analytical.co.uk",
        **fields,
    }


def _hub(engine: Engine, tmp_path: Path, *, secret: bool = True) -> Hub:
    plugins = Plugins(extra=(_Plugin(),))
    hub_section: dict[str, Any] = {"default_region": "GB"}
    if secret:
        hub_section["secret"] = f"env:{SECRET_ENV}"
    raw = {
        "hub": hub_section,
        "connectors": {
            "crm": {"type": "privacy_erasing_memory", "push": False},
            "shop": {"type": "privacy_memory", "push": False},
        },
    }
    config = parse_config(raw, connector_types=plugins.connectors(), path=tmp_path / "crmhub.toml")
    return Hub(config, engine, plugins)


@pytest.fixture
def privacy_hub(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    """A synced hub with a secret: Ada, Grace and Alan in the CRM; Ada and Grace in the
    shop (Ada's shop record shares her email, so both are one golden record)."""
    monkeypatch.setenv(SECRET_ENV, "a-long-random-test-secret-for-privacy-hashes")
    SYSTEMS.clear()
    ERASE_BROKEN.clear()
    SYSTEMS["crm"] = {
        "c1": _person("c1", "Ada", "Lovelace", phone="+44 7400 123451"),
        "c2": _person("c2", "Grace", "Hopper", phone="+44 7400 123452"),
        "c3": _person("c3", "Alan", "Turing", phone="+44 7400 123453"),
    }
    SYSTEMS["shop"] = {
        "s1": _person("s1", "Ada", "Lovelace", city="Leeds"),
        "s2": _person("s2", "Grace", "Hopper", city="Leeds"),
    }
    hub = _hub(engine, tmp_path)
    hub.sync()
    yield hub
    SYSTEMS.clear()
    ERASE_BROKEN.clear()


@pytest.fixture
def privacy_tokens(privacy_hub: Hub) -> dict[str, str]:
    with privacy_hub.engine.begin() as conn:
        return {role: create_token(conn, role, role) for role in ROLES}


@pytest.fixture
def app_client(privacy_hub: Hub) -> Iterator[TestClient]:
    with TestClient(create_app(privacy_hub), follow_redirects=False) as test_client:
        yield test_client


@pytest.fixture
def officer(app_client: TestClient, privacy_tokens: dict[str, str]) -> str:
    """The client signed in as the compliance officer; returns the CSRF token."""
    return sign_in(app_client, privacy_tokens["compliance"])


HTML = {"accept": "text/html"}


def _bearer(tokens: dict[str, str], role: str) -> dict[str, str]:
    return {"authorization": f"Bearer {tokens[role]}"}


def _receive(
    client: TestClient, csrf: str, *, kind: str = "erasure", emails: str = ADA, **fields: str
) -> tuple[str, str]:
    """Post the new-request form; returns the request id and the ``done`` key shown."""
    data = {"csrf_token": csrf, "kind": kind, "emails": emails, "new_receipt": "yes", **fields}
    response = client.post("/privacy/new", data=data)
    assert response.status_code == 303, response.text
    match = re.fullmatch(r"/privacy/([0-9a-f-]{36})\?done=(\w+).*", response.headers["location"])
    assert match is not None, response.headers["location"]
    return match.group(1), match.group(2)


def _records(engine: Engine, connector: str | None = None) -> set[str]:
    """The external ids stored (of one system)."""
    t = source_records.c
    query = select(t.external_id)
    if connector:
        query = query.where(t.connector == connector)
    with engine.connect() as conn:
        return set(conn.execute(query).scalars())


def _actions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(audit_log.c.action).order_by(audit_log.c.id)).scalars())


def _page(client: TestClient, request_id: str) -> str:
    page = client.get(f"/privacy/{request_id}", headers=HTML)
    assert page.status_code == 200, page.text
    return page.text


# ------------------------------------------------------------------------ receive, resolve
def test_a_request_received_through_the_form_shows_the_subjects_records_with_reasons(
    app_client: TestClient, officer: str, privacy_hub: Hub
) -> None:
    form = app_client.get("/privacy/new", headers=HTML)
    assert form.status_code == 200 and 'name="emails"' in form.text and 'type="date"' in form.text
    request_id, done = _receive(app_client, officer, emails=f"  {ADA.upper()}  \n\n")
    assert done == "received"
    text = app_client.get(f"/privacy/{request_id}?done=received", headers=HTML).text
    assert "Request recorded" in text
    # Both of Ada's records, each with why it is hers; nobody else's.
    assert "crm/people/c1" in text and "shop/people/s1" in text
    # Why each was reached is remembered with the request, not only shown once.
    assert text.count('<td data-field="reason">holds the subject&#39;s email</td>') == 2
    assert "Ada Lovelace" in text
    assert "Grace" not in text and "crm/people/c2" not in text
    assert "A dry run: nothing is deleted" in text
    assert _records(privacy_hub.engine) == {"c1", "c2", "c3", "s1", "s2"}
    # The request holds hashes and record ids only, never the email.
    with privacy_hub.engine.connect() as conn:
        [subject] = conn.execute(select(privacy_requests.c.subject)).scalars()
    assert ADA not in str(subject) and len(subject["records"]) == 2
    # The list: kind, status, due date; the navigation shows Privacy to the officer.
    listing = app_client.get("/privacy", headers=HTML)
    assert listing.status_code == 200
    assert f'href="/privacy/{request_id}"' in listing.text and "received" in listing.text
    assert '<a href="/privacy"' in listing.text and "Ada" not in listing.text
    assert _actions(privacy_hub.engine).count("privacy.received") == 1


def test_without_remembered_records_the_page_asks_for_the_identifiers_again(
    app_client: TestClient, officer: str, privacy_hub: Hub
) -> None:
    # A source id of a record that is not (yet) in the hub: nothing is remembered.
    request_id, done = _receive(app_client, officer, emails="", source_ids="crm/people/c9")
    assert done == "received"
    text = _page(app_client, request_id)
    assert "No records are remembered for this request" in text
    assert f'formaction="/privacy/{request_id}/resolve"' in text
    # Identifiers not among those received with: refused, clearly.
    wrong = app_client.post(
        f"/privacy/{request_id}/resolve", data={"csrf_token": officer, "emails": GRACE}
    )
    assert wrong.status_code == 400 and "none of these identifiers" in wrong.text
    again = app_client.post(
        f"/privacy/{request_id}/resolve",
        data={"csrf_token": officer, "source_ids": "crm/people/c9\ncrm/people/c3"},
    )
    assert again.status_code == 200
    assert "crm/people/c3" in again.text and "Alan Turing" in again.text
    assert "is the source record crm/people/c3" in again.text
    # Remembered: the page shows them from now on.
    assert "Alan Turing" in _page(app_client, request_id)


# -------------------------------------------------------------------------------- erasure
def test_an_erasure_is_confirmed_then_removes_the_records_and_closes_with_a_certificate(
    app_client: TestClient, officer: str, privacy_hub: Hub
) -> None:
    engine = privacy_hub.engine
    request_id, _ = _receive(app_client, officer)
    # The first step only shows what would go.
    review = app_client.post(f"/privacy/{request_id}/erase", data={"csrf_token": officer})
    assert review.status_code == 200
    assert "Erase these records?" in review.text and 'name="confirm" value="yes"' in review.text
    assert "crm/people/c1" in review.text and "shop/people/s1" in review.text
    assert _records(engine) == {"c1", "c2", "c3", "s1", "s2"}
    assert "privacy.erased" not in _actions(engine)
    # Confirmed: gone from the store; the CRM erased it through its API.
    erased = app_client.post(
        f"/privacy/{request_id}/erase", data={"csrf_token": officer, "confirm": "yes"}
    )
    assert erased.status_code == 303
    assert erased.headers["location"] == f"/privacy/{request_id}?done=erased"
    assert _records(engine) == {"c2", "c3", "s2"}
    assert "c1" not in SYSTEMS["crm"] and "s1" in SYSTEMS["shop"]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(suppressions)).scalar_one() >= 1
    text = app_client.get(erased.headers["location"], headers=HTML).text
    assert "Erased in the hub" in text and "Erased from the hub" in text
    assert "Ada" not in text and ADA not in text  # counts from the ledger, no records
    assert 'data-ledger="hub"' in text and "waiting on systems" in text
    assert 'id="task-crm"' in text and 'id="task-shop"' in text
    assert 'action="/privacy/' + request_id + '/complete"' in text
    # The shop cannot erase: its manual task needs a note.
    no_note = app_client.post(
        f"/privacy/{request_id}/complete",
        data={"csrf_token": officer, "connector": "shop", "note": "  "},
    )
    assert no_note.status_code == 400 and "a note is required" in no_note.text
    closed = app_client.post(
        f"/privacy/{request_id}/complete",
        data={"csrf_token": officer, "connector": "shop", "note": "deleted in the shop admin"},
    )
    assert closed.status_code == 303
    text = _page(app_client, request_id)
    assert '<span class="pill pos" data-status="done">done</span>' in text
    assert "deleted in the shop admin" in text
    # The certificate: a JSON download without personal data.
    certificate = app_client.get(f"/privacy/{request_id}/certificate")
    assert certificate.status_code == 200
    assert certificate.headers["content-type"] == "application/json"
    assert certificate.headers["content-disposition"].startswith("attachment;")
    assert ADA not in certificate.text and "Lovelace" not in certificate.text
    body = certificate.json()
    assert body["request"]["id"] == request_id and body["request"]["status"] == "done"
    systems = {s["system"]: s for s in body["systems"]}
    assert systems["crm"]["erasure"] == "api" and systems["crm"]["erased"] == 1
    assert systems["shop"]["erasure"] == "manual" and systems["shop"]["note_recorded"]
    assert body["hub"]["removed"]["source_records"] == 2
    ledger = app_client.get(f"/privacy/{request_id}/ledger")
    assert ledger.status_code == 200 and ADA not in ledger.text
    assert ledger.json()["request"] == request_id
    # The web added nothing of its own to the audit.
    assert [a for a in _actions(engine) if not a.startswith(("privacy.", "session."))] == [
        "token.created"
    ] * len(ROLES)


def test_a_record_left_out_at_the_confirm_step_stays(
    app_client: TestClient, officer: str, privacy_hub: Hub
) -> None:
    request_id, _ = _receive(app_client, officer)
    with privacy_hub.engine.connect() as conn:
        shop_id = conn.execute(
            select(source_records.c.id).where(source_records.c.external_id == "s1")
        ).scalar_one()
    review = app_client.post(
        f"/privacy/{request_id}/erase", data={"csrf_token": officer, "exclude": str(shop_id)}
    )
    assert review.status_code == 200
    assert "shop/people/s1" not in review.text and "crm/people/c1" in review.text
    assert f'name="exclude" value="{shop_id}"' in review.text
    erased = app_client.post(
        f"/privacy/{request_id}/erase",
        data={"csrf_token": officer, "confirm": "yes", "exclude": str(shop_id)},
    )
    assert erased.status_code == 303
    assert _records(privacy_hub.engine) == {"c2", "c3", "s1", "s2"}


def test_failed_system_tasks_are_retried_and_run_from_the_page(
    app_client: TestClient, officer: str, privacy_hub: Hub
) -> None:
    ERASE_BROKEN.add("crm")
    request_id, _ = _receive(app_client, officer)
    app_client.post(f"/privacy/{request_id}/erase", data={"csrf_token": officer, "confirm": "yes"})
    text = _page(app_client, request_id)
    assert "the API key lacks the erase scope" in text
    assert f'action="/privacy/{request_id}/retry"' in text
    assert "c1" in SYSTEMS["crm"]
    ERASE_BROKEN.clear()
    retried = app_client.post(f"/privacy/{request_id}/retry", data={"csrf_token": officer})
    assert retried.headers["location"] == f"/privacy/{request_id}?done=retried#tasks"
    assert f'action="/privacy/{request_id}/run"' in _page(app_client, request_id)
    ran = app_client.post(f"/privacy/{request_id}/run", data={"csrf_token": officer})
    assert ran.status_code == 303
    assert "c1" not in SYSTEMS["crm"]
    status = app_client.get(f"/api/privacy/{request_id}").json()
    crm = next(t for t in status["tasks"] if t["system"] == "crm")
    assert crm["status"] == "done" and crm["erased"] == 1 and crm["last_error"] is None


def test_an_access_request_is_exported_as_a_json_download(
    app_client: TestClient, officer: str, privacy_hub: Hub
) -> None:
    request_id, _ = _receive(app_client, officer, kind="access")
    text = _page(app_client, request_id)
    assert "Download the access export" in text and "Review the erasure" not in text
    wrong = app_client.post(f"/privacy/{request_id}/erase", data={"csrf_token": officer})
    assert wrong.status_code == 400 and "access request" in wrong.text
    export = app_client.post(f"/privacy/{request_id}/access", data={"csrf_token": officer})
    assert export.status_code == 200
    assert export.headers["content-type"] == "application/json"
    assert export.headers["content-disposition"] == (
        f'attachment; filename="access-export-{request_id}.json"'
    )
    document = export.json()
    assert ADA in export.text
    assert {r["external_id"] for r in document["source_records"]} == {"c1", "s1"}
    assert _records(privacy_hub.engine) == {"c1", "c2", "c3", "s1", "s2"}
    text = _page(app_client, request_id)
    assert '<span class="pill pos" data-status="done">done</span>' in text
    assert "Ada" not in text  # closed: the records are no longer shown


# ----------------------------------------------------------------- deadlines and refusal
def test_the_deadline_is_extended_once_with_a_reason_and_a_request_refused(
    app_client: TestClient, officer: str, privacy_hub: Hub
) -> None:
    request_id, _ = _receive(app_client, officer, received="2020-01-31")
    before = app_client.get(f"/api/privacy/{request_id}").json()["request"]
    assert before["due_at"].startswith("2020-02-29") and before["overdue"]
    assert 'data-due="overdue"' in _page(app_client, request_id)
    listing = app_client.get("/privacy", headers=HTML).text
    assert f'<tr id="request-{request_id}" class="overdue-row">' in listing
    no_reason = app_client.post(
        f"/privacy/{request_id}/extend", data={"csrf_token": officer, "reason": ""}
    )
    assert no_reason.status_code == 400 and "an extension needs a reason" in no_reason.text
    extended = app_client.post(
        f"/privacy/{request_id}/extend",
        data={"csrf_token": officer, "reason": "complex: five systems"},
    )
    assert extended.status_code == 303
    after = app_client.get(f"/api/privacy/{request_id}").json()["request"]
    assert after["due_at"].startswith("2020-04-30") and after["extended"]
    text = _page(app_client, request_id)
    assert "complex: five systems" in text and 'id="extend-reason"' not in text
    again = app_client.post(
        f"/privacy/{request_id}/extend", data={"csrf_token": officer, "reason": "more"}
    )
    assert again.status_code == 400 and "already extended" in again.text
    verified = app_client.post(f"/privacy/{request_id}/verify", data={"csrf_token": officer})
    assert verified.status_code == 303
    assert ">verified</span>" in _page(app_client, request_id)
    refused = app_client.post(
        f"/privacy/{request_id}/refuse",
        data={"csrf_token": officer, "reason": "identity not verified"},
    )
    assert refused.status_code == 303
    text = _page(app_client, request_id)
    assert '<span class="pill neg" data-status="refused">refused</span>' in text
    assert "identity not verified" in text and "Ada" not in text
    closed = app_client.post(
        f"/privacy/{request_id}/erase", data={"csrf_token": officer, "confirm": "yes"}
    )
    assert closed.status_code == 400 and "refused" in closed.text
    assert _records(privacy_hub.engine) == {"c1", "c2", "c3", "s1", "s2"}
    assert {"privacy.extended", "privacy.verified", "privacy.refused"} <= set(
        _actions(privacy_hub.engine)
    )


def test_a_new_receipt_for_an_open_request_is_its_linked_duplicate(
    app_client: TestClient, officer: str, privacy_hub: Hub
) -> None:
    first, _ = _receive(app_client, officer)
    data = {"kind": "erasure", "phones": "07400 123451", "emails": ADA, "new_receipt": "yes"}
    response = app_client.post("/privacy/new", data={"csrf_token": officer, **data})
    location = response.headers["location"]
    assert location.startswith(f"/privacy/{first}?done=duplicate&duplicate=")
    duplicate = location.rsplit("=", 1)[1]
    text = app_client.get(location, headers=HTML).text
    assert "recorded as its duplicate" in text and f'href="/privacy/{duplicate}"' in text
    assert 'data-field="duplicates"' in text
    other = _page(app_client, duplicate)
    assert f'href="/privacy/{first}"' in other and "carry that one on" in other
    assert "Ada" not in other  # the records are handled on the first request
    listing = app_client.get("/privacy", headers=HTML).text
    assert "repeated by" in listing and "duplicate of" in listing
    # Without "a new message": the open request is carried on, nothing new recorded.
    same, done = _receive(app_client, officer, new_receipt="")
    assert (same, done) == (first, "existing")
    with privacy_hub.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(privacy_requests)).scalar_one() == 2
    api = app_client.get(f"/api/privacy/{first}").json()["request"]
    assert api["duplicates"] == [duplicate]


def test_the_list_filters_by_status_and_kind(
    app_client: TestClient, officer: str, privacy_hub: Hub
) -> None:
    erasure, _ = _receive(app_client, officer)
    access, _ = _receive(app_client, officer, kind="access", emails=GRACE)
    only_access = app_client.get("/privacy?kind=access", headers=HTML).text
    assert access in only_access and erasure not in only_access
    done = app_client.get("/privacy?status=done", headers=HTML).text
    assert access not in done and "No privacy requests match" in done
    bad = app_client.get("/privacy?status=bogus", headers=HTML)
    assert bad.status_code == 400 and "unknown status" in bad.text
    api = app_client.get("/api/privacy?status=open&kind=erasure").json()
    assert [r["id"] for r in api["requests"]] == [erasure]


# ----------------------------------------------------------------------- bad input, roles
def test_bad_identifiers_are_a_clear_form_error_and_record_nothing(
    app_client: TestClient, officer: str, privacy_hub: Hub
) -> None:
    cases = [
        ({"emails": "not-an-email"}, "not a valid email address"),
        ({"phones": "12"}, "not a valid phone number"),
        ({"source_ids": "crm-c1"}, "connector/stream/external_id"),
        ({}, "at least one email, phone or source id"),
        ({"emails": ADA, "received": "31/01/2020"}, "YYYY-MM-DD"),
        ({"emails": ADA, "received": "2999-01-01"}, "in the future"),
        ({"emails": ADA, "kind": "forget-me"}, "erasure or access"),
    ]
    for fields, message in cases:
        data = {"csrf_token": officer, "kind": "erasure", **fields}
        response = app_client.post("/privacy/new", data=data, headers=HTML)
        assert response.status_code == 400, fields
        assert message in response.text, (fields, response.text)
        assert 'role="alert"' in response.text
    typed = {"csrf_token": officer, "kind": "access", "emails": "x@", "phones": "+44 7400 123451"}
    kept = app_client.post("/privacy/new", data=typed)
    assert "+44 7400 123451" in kept.text  # what was typed is kept
    csrf = {"x-csrf-token": officer}
    api = app_client.post(
        "/api/privacy/receive", json={"kind": "erasure", "emails": ["nope"]}, headers=csrf
    )
    assert api.status_code == 400 and "not a valid email address" in api.json()["detail"]
    empty = app_client.post("/api/privacy/receive", json={"kind": "erasure"}, headers=csrf)
    assert empty.status_code == 400 and "at least one" in empty.json()["detail"]
    with privacy_hub.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(privacy_requests)).scalar_one() == 0


def test_an_auditor_reads_but_may_not_act_and_stewards_and_ops_see_nothing(
    app_client: TestClient, officer: str, privacy_tokens: dict[str, str], privacy_hub: Hub
) -> None:
    request_id, _ = _receive(app_client, officer)
    auditor = {**_bearer(privacy_tokens, "auditor"), **HTML}
    page = app_client.get(f"/privacy/{request_id}", headers=auditor)
    assert page.status_code == 200 and "Ada Lovelace" in page.text
    assert 'name="exclude"' not in page.text and "/verify" not in page.text
    assert "/privacy/new" not in app_client.get("/privacy", headers=auditor).text
    assert app_client.get(f"/privacy/{request_id}/certificate", headers=auditor).status_code == 200
    assert app_client.get("/api/privacy", headers=auditor).status_code == 200
    for path in ("verify", "erase", "run", "retry", "extend", "refuse", "access", "complete"):
        refused = app_client.post(
            f"/privacy/{request_id}/{path}", data={"confirm": "yes"}, headers=auditor
        )
        assert refused.status_code == 403, path
    assert app_client.get("/privacy/new", headers=auditor).status_code == 403
    body = {"kind": "erasure", "emails": [ADA]}
    receive = app_client.post(
        "/api/privacy/receive", json=body, headers=_bearer(privacy_tokens, "auditor")
    )
    assert receive.status_code == 403
    for role in ("steward", "ops"):
        headers = {**_bearer(privacy_tokens, role), **HTML}
        for path in ("/privacy", f"/privacy/{request_id}", f"/privacy/{request_id}/certificate"):
            response = app_client.get(path, headers=headers)
            assert response.status_code == 403, (role, path)
            assert "Ada" not in response.text
        assert (
            app_client.get("/api/privacy", headers=_bearer(privacy_tokens, role)).status_code == 403
        )
        home = app_client.get("/", headers=headers).text
        assert 'href="/privacy"' not in home
    assert _records(privacy_hub.engine) == {"c1", "c2", "c3", "s1", "s2"}


def test_forms_without_the_sessions_csrf_token_are_refused(
    app_client: TestClient, officer: str, privacy_hub: Hub
) -> None:
    request_id, _ = _receive(app_client, officer)
    forged = app_client.post("/privacy/new", data={"kind": "erasure", "emails": GRACE})
    assert forged.status_code == 403 and "CSRF" in forged.text
    erase = app_client.post(f"/privacy/{request_id}/erase", data={"confirm": "yes"})
    assert erase.status_code == 403 and "CSRF" in erase.text
    api = app_client.post("/api/privacy/receive", json={"kind": "erasure", "emails": [GRACE]})
    assert api.status_code == 403
    assert _records(privacy_hub.engine) == {"c1", "c2", "c3", "s1", "s2"}
    with privacy_hub.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(privacy_requests)).scalar_one() == 1


def test_a_hub_without_a_secret_says_so(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    SYSTEMS.update({"crm": {}, "shop": {}})
    hub = _hub(engine, tmp_path, secret=False)
    with hub.engine.begin() as conn:
        token = create_token(conn, "dpo", "compliance")
    with TestClient(create_app(hub), follow_redirects=False) as client:
        csrf = sign_in(client, token)
        assert "no secret configured" in client.get("/privacy", headers=HTML).text
        response = client.post(
            "/privacy/new", data={"csrf_token": csrf, "kind": "erasure", "emails": ADA}
        )
        assert response.status_code == 400 and "hub.secret" in response.text
    SYSTEMS.clear()


# ------------------------------------------------------------------------------- JSON API
def test_the_api_lists_reads_creates_and_certifies_without_personal_data(
    app_client: TestClient, privacy_tokens: dict[str, str], privacy_hub: Hub
) -> None:
    officer = _bearer(privacy_tokens, "compliance")
    created = app_client.post(
        "/api/privacy/receive",
        json={"kind": "erasure", "emails": [ADA], "phones": ["07400 123451"]},
        headers=officer,
    )
    assert created.status_code == 200, created.text
    receipt = created.json()
    assert receipt["created"] and receipt["duplicate"] is None and receipt["records_found"] == 2
    request_id = receipt["request"]["id"]
    assert receipt["request"]["identifiers"] == 2 and receipt["request"]["records"] == 2
    again = app_client.post(
        "/api/privacy/receive", json={"kind": "erasure", "emails": [ADA]}, headers=officer
    ).json()
    assert not again["created"] and again["request"]["id"] == request_id
    listing = app_client.get("/api/privacy", headers=officer)
    assert [r["id"] for r in listing.json()["requests"]] == [request_id]
    one = app_client.get(f"/api/privacy/{request_id[:8]}", headers=officer)
    assert one.status_code == 200 and one.json()["request"]["id"] == request_id
    assert one.json()["tasks"] == []
    certificate = app_client.get(f"/api/privacy/{request_id}/certificate", headers=officer)
    assert certificate.status_code == 200 and certificate.json()["request"]["id"] == request_id
    for response in (created, listing, one, certificate):
        assert ADA not in response.text and "Lovelace" not in response.text
        assert "+447400123451" not in response.text
    missing = app_client.get("/api/privacy/0123abcd", headers=officer)
    assert missing.status_code == 404 and "no privacy request" in missing.json()["detail"]
    future = app_client.post(
        "/api/privacy/receive",
        json={"kind": "access", "emails": [ADA], "received_at": "2999-01-01T00:00:00Z"},
        headers=officer,
    )
    assert future.status_code == 400 and "future" in future.json()["detail"]
    naive = app_client.post(
        "/api/privacy/receive",
        json={"kind": "access", "emails": [ADA], "received_at": "2024-01-01T00:00:00"},
        headers=officer,
    )
    assert naive.status_code == 422
    schema = app_client.get("/api/openapi.json").json()
    assert set(schema["paths"]) >= {
        "/api/privacy",
        "/api/privacy/receive",
        "/api/privacy/{request_id}",
        "/api/privacy/{request_id}/certificate",
    }
    assert not any(path.startswith("/privacy") for path in schema["paths"])


# Schemathesis over the privacy API as the compliance officer, on a hub with a secret (the
# shared schema test calls it as a steward, who is refused).
APP = create_app(None)  # type: ignore[arg-type]
schema = schemathesis.openapi.from_asgi("/api/openapi.json", APP).include(
    path_regex="^/api/privacy"
)


@pytest.fixture
def api_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from crmhub.store import open_engine, upgrade

    monkeypatch.setenv(SECRET_ENV, "a-long-random-test-secret-for-privacy-hashes")
    engine = open_engine(f"sqlite:///{tmp_path}/hub.db")
    upgrade(engine)
    SYSTEMS.clear()
    SYSTEMS["crm"] = {"c1": _person("c1", "Ada", "Lovelace", phone="+44 7400 123451")}
    SYSTEMS["shop"] = {"s1": _person("s1", "Ada", "Lovelace")}
    hub = _hub(engine, tmp_path)
    hub.sync()
    with engine.begin() as conn:
        token = create_token(conn, "dpo", "compliance")
    APP.state.hub = hub
    yield token
    engine.dispose()
    SYSTEMS.clear()


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_privacy_api_never_fails_nor_breaks_its_schema(case: Any, api_token: str) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {api_token}"},
        excluded_checks=[positive_data_acceptance],
    )


# ----------------------------------------------------------------------- a real browser
@pytest.mark.slow
def test_an_officer_erases_a_subject_in_a_real_browser(
    privacy_hub: Hub, privacy_tokens: dict[str, str], tmp_path: Path
) -> None:
    from .browser import browser_page, serving

    shots = tmp_path / "screenshots"
    console: list[str] = []
    with serving(privacy_hub) as url, browser_page(shots) as page:
        page.on("console", lambda message: console.append(message.text))
        page.goto(f"{url}/login?next=/privacy/new")
        page.fill("#token", privacy_tokens["compliance"])
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}/privacy/new")
        page.fill("#new-emails", ADA)
        with page.expect_navigation():
            page.click("#new-request button[type=submit]")
        assert "Ada Lovelace" in page.text_content("#subject")
        page.screenshot(path=str(shots / "request.png"), full_page=True)
        with page.expect_navigation():
            page.click("#subject-form button.danger")
        assert "Erase these records?" in page.text_content("#confirm")
        page.screenshot(path=str(shots / "confirm.png"), full_page=True)
        with page.expect_navigation():
            page.click("#confirm-erase button[type=submit]")
        assert "Erased from the hub" in page.text_content("#subject")
        page.fill("#task-shop + tr.task-complete input[name=note]", "deleted in the shop admin")
        with page.expect_navigation():
            page.click("#task-shop + tr.task-complete button[type=submit]")
        assert "done" in page.text_content("#summary")
        with page.expect_download() as download:
            page.click("text=Download the certificate")
        saved = shots / "certificate.json"
        download.value.save_as(saved)
        page.screenshot(path=str(shots / "done.png"), full_page=True)
        page.goto(f"{url}/privacy")
        page.screenshot(path=str(shots / "list.png"), full_page=True)
    assert ADA not in saved.read_text() and '"status": "done"' in saved.read_text()
    assert _records(privacy_hub.engine) == {"c2", "c3", "s2"}
    assert not [m for m in console if "Content Security Policy" in m], console
    for name in ("request", "confirm", "done", "list"):
        assert (shots / f"{name}.png").stat().st_size > 1000, name

"""An officer takes requests from receipt to certificate with ``crmhub privacy``, on a hub
fed from two CSV files (which the files connector can erase from)."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
import textwrap
from datetime import datetime
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from crmhub.cli.main import app
from crmhub.hub import Hub
from crmhub.privacy import PrivacyDesk, parse_identifiers
from crmhub.privacy.requests import add_months

SECRET_ENV = "CRMHUB_TEST_CLI_SECRET"
ROWS = [
    ("c1", "Robert", "Lindqvist", "rob.lindqvist@mailbox.org", "+44 20 7946 0101", "yes"),
    ("c2", "Maria", "Okafor", "maria.okafor@mailbox.org", "+44 20 7946 0202", "yes"),
    ("c3", "Tomasz", "Wrobel", "t.wrobel@fastmail.com", "+44 20 7946 0303", "no"),
]
CRM_ROWS = [
    ("k1", "Bob", "Lindqvist", "robert.l@fastmail.com", "020 7946 0101", "no"),
    ("k2", "Maria", "Okafor", "maria.okafor@mailbox.org", "", ""),
]


def _run(folder: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["--config", str(folder / "crmhub.toml"), *args], catch_exceptions=False
    )
    structlog.reset_defaults()  # the command logged to the runner's stream, now closed
    return result.exit_code, result.stdout if "--json" in args else result.output


def _write(path: Path, rows: list[tuple[str, ...]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["id", "first_name", "last_name", "email", "phone", "newsletter", "updated_at"]
        )
        for row in rows:
            writer.writerow([*row, "2024-01-01T00:00:00Z"])


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(SECRET_ENV, "cli-test-secret")
    monkeypatch.setenv("CRMHUB_ACTOR", "dpo")
    _write(tmp_path / "shop.csv", ROWS)
    _write(tmp_path / "crm.csv", CRM_ROWS)
    (tmp_path / "crmhub.toml").write_text(
        textwrap.dedent(f"""
        [hub]
        database_url = "sqlite:///hub.db"
        default_region = "GB"
        secret = "env:{SECRET_ENV}"

        [connectors.shop]
        type = "csv"
        path = "shop.csv"
        cursor = "updated_at"
        mapping = "people_file"

        [connectors.crm]
        type = "csv"
        path = "crm.csv"
        cursor = "updated_at"
        mapping = "people_file"
    """)
    )
    code, out = _run(tmp_path, "sync")
    assert code == 0, out
    return tmp_path


def test_an_erasure_from_receipt_to_certificate(hub: Path) -> None:
    # Dry run: the request is received and the subject shown; nothing goes.
    code, out = _run(hub, "privacy", "erase", "--email", "Rob.Lindqvist@mailbox.org")
    assert code == 0, out
    assert "received erasure request" in out and "dry run" in out
    assert "shop/people/c1" in out and "crm/people/k1" in out  # the other record, by phone
    assert "Tomasz" not in out
    assert "Robert" in (hub / "shop.csv").read_text()

    code, out = _run(hub, "privacy", "list", "--json")
    (request,) = json.loads(out)
    assert request["status"] == "received" and request["kind"] == "erasure"
    received = datetime.fromisoformat(request["received_at"])
    assert datetime.fromisoformat(request["due_at"]) == add_months(received, 1)
    assert "lindqvist" not in out.lower()  # hashes only

    # Running it again carries the same request on (no duplicate), now for real.
    code, out = _run(hub, "privacy", "erase", "--email", "rob.lindqvist@mailbox.org", "--confirm")
    assert code == 0, out
    assert f"carrying on with open request {request['id']}" in out
    assert "erased in the hub: 2 source records" in out
    assert "Lindqvist" not in (hub / "shop.csv").read_text() + (hub / "crm.csv").read_text()
    assert "Okafor" in (hub / "shop.csv").read_text()  # the others stay

    code, out = _run(hub, "privacy", "status", request["id"][:8], "--json")
    status = json.loads(out)
    assert status["request"]["status"] == "done"
    assert {t["connector"]: t["status"] for t in status["tasks"]} == {"shop": "done", "crm": "done"}

    code, out = _run(hub, "privacy", "certificate", request["id"], "--out", str(hub / "cert.json"))
    assert code == 0, out
    certificate = json.loads((hub / "cert.json").read_text())
    assert certificate["request"]["status"] == "done"
    assert {s["system"] for s in certificate["systems"]} == {"shop", "crm"}
    text = (hub / "cert.json").read_text().lower()
    for value in ("lindqvist", "robert", "mailbox.org", "7946", '"c1"', '"k1"'):
        assert value not in text

    # The person does not come back: a new row in the source is dropped and counted.
    _write(
        hub / "shop.csv",
        [*ROWS[1:], ("c9", "Rob", "Lindqvist", "rob.lindqvist@mailbox.org", "", "")],
    )
    code, out = _run(hub, "sync", "--full", "--json")
    runs = json.loads(out)
    assert sum(r.get("suppressed", 0) for r in runs) == 1
    code, out = _run(hub, "customers", "search", "Lindqvist", "--json")
    assert json.loads(out) == []


def test_deadlines_duplicates_extension_and_refusal(hub: Path) -> None:
    code, out = _run(
        hub, "privacy", "access", "--email", "maria.okafor@mailbox.org", "--received", "2026-01-31"
    )
    assert code == 0 and "received access request" in out
    code, out = _run(hub, "privacy", "list", "--json")
    (first,) = json.loads(out)
    assert first["due_at"].startswith("2026-02-28")  # one calendar month, clamped

    # The same subject writes again: a duplicate, linked to the open request.
    code, out = _run(
        hub,
        "privacy",
        "access",
        "--phone",
        "020 7946 0202",
        "--email",
        "maria.okafor@mailbox.org",
        "--new",
    )
    assert "as a duplicate of open request" in out
    code, out = _run(hub, "privacy", "status", first["id"], "--json")
    assert len(json.loads(out)["request"]["duplicates"]) == 1

    code, out = _run(hub, "privacy", "extend", first["id"], "--reason", "records held on paper too")
    assert code == 0 and "2026-04-30" in out  # three months from receipt
    code, out = _run(hub, "privacy", "extend", first["id"], "--reason", "again")
    assert code == 1 and "already extended" in out

    code, out = _run(hub, "privacy", "erase", "--email", "t.wrobel@fastmail.com")
    erasure = next(
        r for r in json.loads(_run(hub, "privacy", "list", "--json", "--kind", "erasure")[1])
    )
    code, out = _run(hub, "privacy", "refuse", erasure["id"], "--reason", "identity not verified")
    assert code == 0
    code, out = _run(hub, "privacy", "erase", "--request", erasure["id"], "--confirm")
    assert code == 1 and "refused" in out
    assert "Wrobel" in (hub / "shop.csv").read_text()

    code, out = _run(hub, "privacy", "erase", "--email", "not-an-email")
    assert code == 1 and "not a valid email" in out


def test_access_export_holds_everything_and_the_request_completes(hub: Path) -> None:
    code, out = _run(
        hub,
        "privacy",
        "access",
        "--email",
        "maria.okafor@mailbox.org",
        "--confirm",
        "--out",
        str(hub / "export.json"),
    )
    assert code == 0, out
    export = json.loads((hub / "export.json").read_text())
    assert {r["system"] for r in export["source_records"]} == {"shop", "crm"}
    assert export["customers"] and export["customers"][0]["golden"]
    assert any(c.get("channel") == "email" for c in export["consents"])
    assert all(
        "data" in r and r["data"]["emails"] == ["maria.okafor@mailbox.org"]
        for r in export["source_records"]
    )
    code, out = _run(hub, "privacy", "list", "--json")
    assert json.loads(out)[0]["status"] == "done"


def test_a_ledger_replayed_on_a_restored_backup_erases_again(hub: Path) -> None:
    backup = hub / "backup.db"
    with sqlite3.connect(hub / "hub.db") as source, sqlite3.connect(backup) as target:
        source.backup(target)
    code, out = _run(hub, "privacy", "erase", "--email", "t.wrobel@fastmail.com", "--confirm")
    assert code == 0, out
    request_id = json.loads(_run(hub, "privacy", "list", "--json")[1])[0]["id"]
    _run(hub, "privacy", "ledger", request_id, "--out", str(hub / "ledger.json"))
    assert "wrobel" not in (hub / "ledger.json").read_text().lower()

    shutil.copy(backup, hub / "hub.db")  # restored from before the erasure
    for suffix in ("-wal", "-shm"):
        (hub / f"hub.db{suffix}").unlink(missing_ok=True)
    code, out = _run(hub, "customers", "search", "Wrobel", "--json")
    assert len(json.loads(out)) == 1
    code, out = _run(hub, "privacy", "replay", str(hub / "ledger.json"))
    assert code == 0 and "1 records erased again" in out
    code, out = _run(hub, "customers", "search", "Wrobel", "--json")
    assert json.loads(out) == []


def test_reconsent_lifts_the_suppression_and_is_audited(hub: Path) -> None:
    _run(hub, "privacy", "erase", "--email", "t.wrobel@fastmail.com", "--confirm")
    with Hub.open(hub / "crmhub.toml") as opened:
        assert len(opened.suppressions()) >= 2
        desk = PrivacyDesk(opened, "dpo")
        lifted = desk.reconsent(
            parse_identifiers(emails=["t.wrobel@fastmail.com"]), "signed up again 2026-12-01"
        )
        assert lifted == 1
        with opened.engine.connect() as conn:
            from crmhub import audit

            checked, broken = audit.verify(conn)
        assert broken is None and checked > 0
    code, out = _run(
        hub, "privacy", "reconsent", "--email", "t.wrobel@fastmail.com", "--reason", ""
    )
    assert code == 1 and "reason" in out


def test_a_system_without_erasure_gets_a_manual_task(hub: Path) -> None:
    with Hub.open(hub / "crmhub.toml") as opened:
        del opened.config.connectors["crm"]  # no longer connected: nobody can call it
        desk = PrivacyDesk(opened, "dpo")
        identifiers = parse_identifiers(emails=["rob.lindqvist@mailbox.org"])
        request = desk.receive("erasure", identifiers).request
        desk.erase(request.id, identifiers)
        tasks = {t.connector: t for t in desk.status(request.id).tasks}
        assert tasks["crm"].kind == "manual" and tasks["crm"].status == "pending"
        assert desk.request(request.id).status == "waiting"
        assert desk.run_tasks(request.id) == []  # nothing for the machine to do
    code, out = _run(
        hub, "privacy", "task-done", request.id, "crm", "--note", "deleted row k1 by hand"
    )
    assert code == 0, out
    code, out = _run(hub, "privacy", "status", request.id, "--json")
    status = json.loads(out)
    assert status["request"]["status"] == "done"
    crm = next(t for t in status["tasks"] if t["connector"] == "crm")
    assert crm["note_recorded"] is True


def test_a_subject_the_hub_never_held_is_done_at_once_and_kept_out(hub: Path) -> None:
    code, out = _run(hub, "privacy", "erase", "--email", "nobody@fastmail.com")
    assert "the hub holds no record of this subject" in out
    request_id = json.loads(_run(hub, "privacy", "list", "--json")[1])[0]["id"]
    code, out = _run(hub, "privacy", "verify", request_id)
    assert code == 0 and "verified" in out
    code, out = _run(hub, "privacy", "erase", "--request", request_id, "--confirm")
    assert code == 0 and "erased in the hub: 0 source records" in out
    assert "done" in out
    # Should they turn up later, they are dropped.
    _write(hub / "shop.csv", [*ROWS, ("c8", "No", "Body", "nobody@fastmail.com", "", "")])
    code, out = _run(hub, "sync", "--full", "--json")
    assert sum(r.get("suppressed", 0) for r in json.loads(out)) == 1


def test_a_subject_named_by_a_placeholder_address_is_still_found(hub: Path) -> None:
    # Matching ignores example.com addresses (no keys), yet someone may really hold one.
    _write(hub / "shop.csv", [*ROWS, ("c7", "Ada", "Byron", "ada@example.com", "", "")])
    assert _run(hub, "sync", "--full")[0] == 0
    code, out = _run(hub, "privacy", "erase", "--email", "ada@example.com", "--confirm")
    assert code == 0, out
    assert "erased in the hub: 1 source records" in out
    assert "Byron" not in (hub / "shop.csv").read_text()


def test_a_connector_that_crashes_fails_its_task_and_not_the_others() -> None:
    from crmhub.privacy.fanout import call_system

    def broken(ids: list[str]) -> object:
        raise RuntimeError("bug in a plugin for ann@example.com")

    results = call_system(broken, ["1", "2"])
    assert [r.status for r in results] == ["failed", "failed"]
    assert all(r.retriable for r in results)
    assert "RuntimeError" in (results[0].error or "")
    assert "ann@example.com" not in (results[0].error or "")


@pytest.mark.parametrize("secret", [b"short", b"k" * 64, b"a long secret " * 10])
def test_the_suppression_check_is_exactly_the_stored_hmac(secret: bytes) -> None:
    from crmhub.model import Person
    from crmhub.suppression import SuppressionList, identifier_hash

    held = Person(source="shop", stream="people", external_id="c1", emails=["a@b.co"])
    other = Person(source="shop", stream="people", external_id="c2", emails=["x@b.co"])
    for kind, value in (("email", "a@b.co"), ("source_id", "shop/people/c1")):
        entries = SuppressionList(secret, [(kind, identifier_hash(secret, kind, value))])
        assert entries.matches(held) and not entries.matches(other)


def test_a_batch_check_names_exactly_the_suppressed_positions() -> None:
    from datetime import UTC, datetime

    from crmhub.model import Activity, Person
    from crmhub.suppression import SuppressionList, identifier_hash

    secret = b"batch-secret"
    entries = SuppressionList(
        secret,
        [
            ("email", identifier_hash(secret, "email", "gone@b.co")),
            ("phone", identifier_hash(secret, "phone", "+447700900123")),
            ("source_id", identifier_hash(secret, "source_id", "shop/people/c9")),
        ],
    )

    def person(external_id: str, **values: list[str]) -> Person:
        return Person(source="shop", stream="people", external_id=external_id, **values)

    def invoice(external_id: str, owner: str | None) -> Activity:
        return Activity(
            source="shop",
            stream="invoices",
            external_id=external_id,
            kind="invoice",
            occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
            person_stream="people",
            person_external_id=owner,
        )

    batch = [
        person("c1", emails=["kept@b.co"]),
        person("c2", emails=["kept2@b.co", "gone@b.co"]),  # its second email
        None,  # a record that did not map
        person("c3", phones=["+447700900123"]),
        person("c9"),  # its source id
        invoice("i1", "c9"),  # an erased person's invoice
        invoice("i2", "c1"),
        invoice("i3", None),
        person("c4", emails=["gone@b.co.uk"], phones=["+447700900124"]),
    ]
    assert entries.suppressed(batch) == {1, 3, 4, 5}
    assert SuppressionList.empty().suppressed(batch) == set()
    assert entries.suppressed([]) == set()
    assert entries.matches_activity(batch[5]) and not entries.matches_activity(batch[6])

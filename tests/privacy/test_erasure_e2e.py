"""End to end against the five sandbox systems: a person present in all of them, and twice
in one (the hub merges the two), is erased everywhere and provably gone, on SQLite and on
PostgreSQL."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import structlog
from sqlalchemy import Text, cast, func, or_, select
from sqlalchemy.engine import make_url

from crmhub import audit
from crmhub.logs import configure_logging
from crmhub.privacy.fanout import LEASE, MAX_ATTEMPTS
from crmhub.resolution.steward import Steward
from crmhub.store.schema import (
    activities,
    customers,
    privacy_tasks,
    source_records,
    suppressions,
)

from .conftest import (
    SUBJECT,
    SUBJECT_STRINGS,
    desk_for,
    open_subject_hub,
    subject_identifiers,
    subject_sandbox,
)

ERASE_ROUTES = {
    "stripe": "DELETE /v1/customers/{id}",
    "zendesk": "DELETE /api/v2/deleted_users/{id}",
    "mailchimp": "POST /3.0/lists/{list_id}/members/{subscriber_hash}/actions/delete-permanent",
    "typeform": "DELETE /forms/{form_id}/responses",
    "hubspot": "POST /crm/v3/objects/contacts/gdpr-delete",
}


def _holding_subject(hub: object) -> int:
    """Source records whose stored data mentions the subject (by email or surname)."""
    t = source_records.c
    text = cast(t.data, Text)
    with hub.engine.connect() as conn:  # type: ignore[attr-defined]
        return int(
            conn.execute(
                select(func.count()).where(
                    or_(text.contains("quenby"), text.contains("Quenby"), text.contains("900123"))
                )
            ).scalar_one()
        )


def _database_files(database_url: str) -> list[Path]:
    path = Path(make_url(database_url).database or "")
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]


def test_a_person_in_every_system_is_erased_everywhere_and_provably_gone(
    tmp_path: Path, database_url: str
) -> None:
    log_stream = io.StringIO()
    configure_logging("debug", stream=log_stream, json=True)
    sandbox = subject_sandbox()
    hub = open_subject_hub(sandbox, tmp_path / "hub", database_url)
    try:
        desk = desk_for(hub)
        identifiers = subject_identifiers()
        receipt = desk.receive("erasure", identifiers)
        subject = desk.resolve(receipt.request.id, identifiers)

        # Shown before anything is deleted: every system, both support records, one person.
        assert set(subject.systems()) == set(ERASE_ROUTES)
        assert len(subject.systems()["zendesk"]) == 2
        assert len(subject.records) == 6 and len(subject.customers) >= 1
        assert _holding_subject(hub) == 6
        # The second support record has another email: it was reached through the golden
        # record (or the shared phone), and says so.
        reasons = {r.reason for r in subject.records}
        assert any("email" in reason for reason in reasons)
        assert any("email" not in reason for reason in reasons)
        with hub.engine.connect() as conn:
            others_before = dict(
                conn.execute(
                    select(customers.c.id, customers.c.data).where(
                        customers.c.id.not_in(subject.customers)
                    )
                ).all()
            )

        for app in sandbox.apps.values():
            app.reset_counters()
        outcome = desk.erase(receipt.request.id, identifiers)

        # The hub part.
        assert outcome.removed.source_records == 6
        assert outcome.removed.activities == subject.activities
        assert outcome.suppressed >= 3  # two emails, the phone, six source ids
        assert _holding_subject(hub) == 0
        with hub.engine.connect() as conn:
            assert (
                conn.execute(
                    select(func.count()).where(customers.c.id.in_(subject.customers))
                ).scalar_one()
                == 0
            )
            keys = {(r.connector, r.external_id) for r in subject.records}
            left = conn.execute(
                select(activities.c.connector, activities.c.person_external_id)
            ).all()
            assert not keys & {tuple(row) for row in left}
            others_after = dict(conn.execute(select(customers.c.id, customers.c.data)).all())
            assert others_after == others_before  # nobody else's golden record changed
            assert conn.execute(select(func.count()).select_from(suppressions)).scalar_one() == (
                outcome.suppressed
            )
            assert audit.verify(conn)[1] is None

        # Every system's erase endpoint was called, and each task is done.
        for system, route in ERASE_ROUTES.items():
            assert sandbox.app(system).calls[route] >= 1, system
        status = desk.status(receipt.request.id)
        assert {t.connector: t.status for t in status.tasks} == dict.fromkeys(ERASE_ROUTES, "done")
        assert status.request.status == "done" and status.request.completed_at is not None
        assert sum((t.result or {}).get("erased", 0) for t in status.tasks) == 6

        # The certificate proves it without naming anyone.
        certificate = desk.certificate(receipt.request.id)
        text = orjson.dumps(certificate).decode()
        for value in (*SUBJECT_STRINGS, *(r.external_id for r in subject.records)):
            assert value not in text
        assert certificate["request"]["status"] == "done"
        assert {s["system"] for s in certificate["systems"]} == set(ERASE_ROUTES)
        assert certificate["hub"]["removed"]["source_records"] == 6
        assert [e["action"] for e in certificate["audit"]][-1] == "privacy.completed"

        # A full sync brings nobody back: every system forgot them.
        hub.sync(full=True)
        assert _holding_subject(hub) == 0
    finally:
        hub.close()
        structlog.reset_defaults()

    logs = log_stream.getvalue()
    assert "privacy.erased" in logs and "privacy.task" in logs  # the run was logged
    for value in SUBJECT_STRINGS:
        assert value not in logs, value
    if database_url.startswith("sqlite"):
        files = _database_files(database_url)
        assert files
        for path in files:
            data = path.read_bytes()
            # Short numeric ids (HubSpot's) occur by chance in any file: the long ones prove it.
            ids = [r.external_id for r in subject.records if len(r.external_id) >= 8]
            for value in (*SUBJECT_STRINGS, *ids):
                assert value.encode() not in data, (path.name, value)


def test_a_system_whose_erasure_fails_never_brings_the_person_back(
    tmp_path: Path, database_url: str
) -> None:
    sandbox = subject_sandbox()
    hub = open_subject_hub(sandbox, tmp_path / "hub", database_url)
    now = datetime.now(UTC)
    clock = [now]
    try:
        desk = desk_for(hub)
        desk.clock = lambda: clock[0]
        identifiers = subject_identifiers()
        stripe = sandbox.app("stripe")
        stripe.faults.route_failures[ERASE_ROUTES["stripe"]] = 10_000  # down for good
        request = desk.receive("erasure", identifiers).request
        desk.erase(request.id, identifiers)

        status = desk.status(request.id)
        tasks = {t.connector: t for t in status.tasks}
        assert tasks["stripe"].status == "pending" and tasks["stripe"].attempts == 1
        assert tasks["stripe"].next_attempt_at is not None
        assert all(t.status == "done" for name, t in tasks.items() if name != "stripe")
        assert status.request.status_label == "waiting on systems"

        # Stripe still holds them: a full sync reads them again, and drops them.
        results = hub.sync(["stripe"], full=True)
        customers_run = next(r for r in results if r.stream == "customers")
        assert customers_run.counts.suppressed >= 1
        assert _holding_subject(hub) == 0

        # Not due before its backoff; then retried until it gives up.
        assert desk.run_tasks(request.id) == []
        for _ in range(MAX_ATTEMPTS):
            clock[0] += timedelta(days=2)
            desk.run_tasks(request.id)
        stripe_task = next(t for t in desk.status(request.id).tasks if t.connector == "stripe")
        assert stripe_task.status == "failed" and stripe_task.attempts == MAX_ATTEMPTS
        assert desk.request(request.id).status == "partially_done"

        # Fixed: the officer retries, and the request completes.
        stripe.faults.route_failures.clear()
        assert desk.retry_failed(request.id) == 1
        desk.run_tasks(request.id)
        assert desk.request(request.id).status == "done"
        with hub.engine.connect() as conn:
            left = conn.execute(
                select(func.count()).where(privacy_tasks.c.status != "done")
            ).scalar_one()
        assert left == 0
    finally:
        hub.close()


def test_a_system_failing_twice_with_500_then_succeeding_completes(tmp_path: Path) -> None:
    sandbox = subject_sandbox()
    # One attempt per call: the task itself must retry, after its backoff.
    hub = open_subject_hub(sandbox, tmp_path / "hub", None)
    hub.config.connectors["zendesk"].settings.max_attempts = 1  # type: ignore[attr-defined]
    clock = [datetime.now(UTC)]
    try:
        desk = desk_for(hub)
        desk.clock = lambda: clock[0]
        zendesk = sandbox.app("zendesk")
        zendesk.faults.route_failures["DELETE /api/v2/users/{id}"] = 2
        identifiers = subject_identifiers()
        request = desk.receive("erasure", identifiers).request
        desk.erase(request.id, identifiers)
        task = next(t for t in desk.status(request.id).tasks if t.connector == "zendesk")
        assert task.status == "pending" and task.attempts == 1
        assert (task.result or {}).get("last_error")
        clock[0] += timedelta(hours=1)
        desk.run_tasks(request.id)
        task = next(t for t in desk.status(request.id).tasks if t.connector == "zendesk")
        assert task.status == "done", task
        assert task.attempts in (2, 3)
        assert zendesk.faults_sent[500] == 2
        assert desk.request(request.id).status == "done"
    finally:
        hub.close()


@pytest.mark.parametrize("exclude_second", [False, True])
def test_a_record_the_officer_excludes_stays_and_its_customer_is_rebuilt(
    tmp_path: Path, exclude_second: bool
) -> None:
    sandbox = subject_sandbox()
    hub = open_subject_hub(sandbox, tmp_path / "hub", None)
    try:
        desk = desk_for(hub)
        identifiers = subject_identifiers()
        request = desk.receive("erasure", identifiers).request
        subject = desk.resolve(request.id, identifiers)
        second = next(
            r for r in subject.records if r.connector == "zendesk" and "email" not in r.reason
        )
        exclude = [second.id] if exclude_second else []
        # A steward copied the subject's address onto the golden record: it must not stay.
        Steward(hub.resolver(), "ana").override(
            second.customer_id or "", "emails", [SUBJECT["email"]], reason="seen on a form"
        )
        outcome = desk.erase(request.id, identifiers, exclude=exclude, fan_out=False)
        assert outcome.removed.overrides == 1
        with hub.engine.connect() as conn:
            kept = conn.execute(
                select(source_records.c.customer_id).where(source_records.c.id == second.id)
            ).scalar_one_or_none()
            if exclude_second:
                assert kept is not None  # still there, in a golden record of its own data
                data = conn.execute(
                    select(customers.c.data).where(customers.c.id == kept)
                ).scalar_one()
                assert SUBJECT["email"] not in orjson.dumps(data).decode()
                assert outcome.removed.source_records == 5
                # The phone it shares with the erased records is not suppressed: that would
                # drop the record the officer kept on the next sync.
                assert outcome.shared >= 1
            else:
                assert kept is None and outcome.removed.source_records == 6
    finally:
        hub.close()


def test_a_killed_fan_out_resumes_without_doing_a_task_twice(tmp_path: Path) -> None:
    """The fan-out runs in a child process killed with SIGKILL right after a system erased
    (before the result was written); a rerun finishes, calling no finished task again."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    from crmhub.sandbox.server import serve

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    sandbox = subject_sandbox(ports={system: free_port() for system in ERASE_ROUTES})
    servers = serve(sandbox)
    hub = open_subject_hub(sandbox, tmp_path / "hub", None, transport=None)
    try:
        desk = desk_for(hub)
        identifiers = subject_identifiers()
        request = desk.receive("erasure", identifiers).request
        desk.erase(request.id, identifiers, fan_out=False)
        for app in sandbox.apps.values():
            app.reset_counters()
        script = tmp_path / "fanout.py"
        script.write_text(
            "import os, signal, sys\n"
            "import crmhub.privacy.fanout as fanout\n"
            "from crmhub.hub import Hub\n"
            "from crmhub.privacy import PrivacyDesk\n"
            "real, calls = fanout.call_system, [0]\n"
            "def call_then_die(erase, ids):\n"
            "    results = real(erase, ids)\n"
            "    calls[0] += 1\n"
            "    if calls[0] == 3:\n"
            "        os.kill(os.getpid(), signal.SIGKILL)\n"
            "    return results\n"
            "fanout.call_system = call_then_die\n"
            "with Hub.open(sys.argv[1]) as hub:\n"
            "    PrivacyDesk(hub, 'dpo').run_tasks(sys.argv[2])\n",
            encoding="utf-8",
        )
        env = {**os.environ, **sandbox.environ()}
        child = subprocess.run(
            [sys.executable, str(script), str(tmp_path / "hub" / "crmhub.toml"), request.id],
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
        tasks = {t.connector: t for t in desk.status(request.id).tasks}
        done_before = {name for name, t in tasks.items() if t.status == "done"}
        interrupted = {name for name, t in tasks.items() if t.status == "pending" and t.attempts}
        assert len(done_before) == 2 and len(interrupted) == 1
        called_before = {s: dict(sandbox.app(s).calls) for s in ERASE_ROUTES}
        # The tasks never started run now; the interrupted one is leased until later.
        ran = {outcome.connector for outcome in desk.run_tasks(request.id)}
        assert ran == set(ERASE_ROUTES) - done_before - interrupted
        assert desk.request(request.id).status == "waiting"

        later = datetime.now(UTC) + LEASE + timedelta(seconds=1)
        desk.clock = lambda: later
        desk.run_tasks(request.id)
        status = desk.status(request.id)
        assert status.request.status == "done"
        for system in done_before:  # a finished task is never called again
            assert dict(sandbox.app(system).calls) == called_before[system]
        (name,) = interrupted
        task = next(t for t in status.tasks if t.connector == name)
        assert task.attempts == 2
        assert (task.result or {}).get("already_gone", 0) + (task.result or {}).get(
            "erased", 0
        ) >= 1
    finally:
        hub.close()
        for server in servers:
            server.shutdown()
            server.server_close()

"""The privacy desk: a compliance officer's requests, from receipt to certificate.

One class for the CLI and the web::

    desk = PrivacyDesk(hub, actor="dpo")
    receipt = desk.receive("erasure", parse_identifiers(emails=["ann@example.com"]))
    subject = desk.resolve(receipt.request.id, identifiers)      # shown before anything goes
    outcome = desk.erase(receipt.request.id, identifiers)        # hub, then every system
    desk.certificate(receipt.request.id)

Every step that changes something holds the hub's write lock and appends an audit event
holding ids, counts and keyed hashes only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from crmhub import audit
from crmhub.errors import ConfigError, PrivacyError
from crmhub.logs import mask_text, sensitive
from crmhub.privacy.certificate import build_certificate
from crmhub.privacy.erasure import (
    CleanupResult,
    ErasureCounts,
    drop_overrides_mentioning,
    erase_records,
    secure_cleanup,
)
from crmhub.privacy.export import access_export
from crmhub.privacy.fanout import (
    PrivacyTask,
    TaskOutcome,
    insert_tasks,
    list_tasks,
    request_state,
    run_task,
)
from crmhub.privacy.identifiers import Identifier, external_id_hash, keyed_all, require_secret
from crmhub.privacy.ledger import build_ledger, ledger_record_hashes
from crmhub.privacy.requests import (
    PrivacyRequest,
    RequestKind,
    add_months,
    find_open,
    get_request,
    insert_request,
    list_requests,
    set_status,
)
from crmhub.privacy.subject import (
    Subject,
    holders,
    quarantine_rows,
    resolve_subject,
    subject_words,
)
from crmhub.resolution.resolver import Resolver
from crmhub.store.dialect import in_chunks, lock_hub, upsert
from crmhub.store.schema import (
    audit_log,
    privacy_requests,
    privacy_tasks,
    source_records,
    suppressions,
)

if TYPE_CHECKING:
    from crmhub.hub import Hub

__all__ = ["ErasureOutcome", "PrivacyDesk", "Receipt", "ReplayOutcome", "RequestStatus"]

log = structlog.get_logger("crmhub.privacy")


@dataclass
class Receipt:
    """A received request: the request to work on (the earlier open one, when this names
    a subject that one already names), and the duplicate recorded for it, if any."""

    request: PrivacyRequest
    created: bool
    duplicate: PrivacyRequest | None = None


@dataclass
class ErasureOutcome:
    """What an erasure did in the hub and in the systems."""

    request: PrivacyRequest
    removed: ErasureCounts
    suppressed: int
    shared: int
    cleanup: CleanupResult
    tasks: list[TaskOutcome] = field(default_factory=list)


@dataclass
class RequestStatus:
    """A request with its tasks."""

    request: PrivacyRequest
    tasks: list[PrivacyTask]


@dataclass
class ReplayOutcome:
    """What replaying a ledger did."""

    records: int
    suppressions_added: int
    removed: ErasureCounts


class PrivacyDesk:
    """Privacy requests on ``hub``, handled by ``actor``.

    Args:
        clock: the current time (tests).
    """

    def __init__(
        self, hub: Hub, actor: str, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.hub = hub
        self.engine = hub.engine
        self.actor = actor
        self.clock = clock or (lambda: datetime.now(UTC))

    @property
    def secret(self) -> bytes:
        """The hub secret.

        Raises:
            PrivacyError: none is configured.
        """
        return require_secret(self.hub.secret())

    # ------------------------------------------------------------------ requests
    def receive(
        self,
        kind: RequestKind,
        identifiers: Sequence[Identifier],
        *,
        received_at: datetime | None = None,
        new_receipt: bool = False,
    ) -> Receipt:
        """Record a request, or find the open one that already names this subject.

        A request naming any identifier an open request of the same kind names is the same
        subject's: without ``new_receipt`` the open request is returned (the officer is
        carrying on with it); with it (a new message from the subject), a new request is
        recorded as its duplicate and linked to it.
        """
        if kind not in ("erasure", "access"):
            raise PrivacyError(f"unknown request kind {kind!r} (erasure or access)")
        secret = self.secret
        keyed = keyed_all(identifiers, secret)
        hashes = {(i["kind"], i["hash"]) for i in keyed}
        now = self.clock()
        received = received_at or now
        if received.tzinfo is None:  # a date and time without a zone is read as UTC
            received = received.replace(tzinfo=UTC)
        if received > now:
            raise PrivacyError("a request cannot be received in the future")
        with self.engine.begin() as conn:
            lock_hub(conn)
            existing = find_open(conn, kind, hashes)
            if existing is not None and not new_receipt:
                return Receipt(existing, created=False)
            subject = {"identifiers": keyed, "records": []}
            request = insert_request(
                conn,
                kind,
                subject,
                received_at=received,
                actor=self.actor,
                duplicate_of=existing.id if existing else None,
            )
            self._audit(
                conn,
                "privacy.received",
                request.id,
                {"kind": kind, "identifiers": keyed, "duplicate_of": request.duplicate_of},
                now,
            )
        if existing is not None:
            log.info("privacy.duplicate", request=request.id, duplicate_of=existing.id)
            return Receipt(self.request(existing.id), created=True, duplicate=request)
        log.info("privacy.received", request=request.id, kind=kind)
        return Receipt(request, created=True)

    def request(self, request_id: str) -> PrivacyRequest:
        """The request with this id (or unique prefix)."""
        with self.engine.connect() as conn:
            return get_request(conn, request_id)

    def status(self, request_id: str) -> RequestStatus:
        """The request with its per-system tasks."""
        with self.engine.connect() as conn:
            request = get_request(conn, request_id)
            return RequestStatus(request, list_tasks(conn, request.id))

    def requests(
        self, *, status: str | None = None, kind: str | None = None
    ) -> list[PrivacyRequest]:
        """Requests, open ones first by due date (``status`` may be ``open``)."""
        with self.engine.connect() as conn:
            return list_requests(conn, status=status, kind=kind)

    def resolve(
        self,
        request_id: str,
        identifiers: Sequence[Identifier] = (),
        *,
        exclude: Iterable[int] = (),
        remember: bool = True,
    ) -> Subject:
        """Find the subject's records (nothing is deleted), and remember which were found,
        so the request can be carried on by its id alone."""
        request = self.request(request_id)
        self._check_identifiers(request, identifiers)
        with self.engine.connect() as conn:
            subject = self._resolve(conn, request, identifiers, exclude)
        if remember and request.open and request.ledger is None:
            with self.engine.begin() as conn:
                self._remember(conn, request, subject)
        return subject

    def verify(self, request_id: str) -> PrivacyRequest:
        """Record that the requester's identity was verified."""
        request = self.request(request_id)
        self._require_open(request)
        if request.status != "received":
            return request
        with self.engine.begin() as conn:
            lock_hub(conn)
            set_status(conn, request.id, "verified")
            self._audit(conn, "privacy.verified", request.id, {}, self.clock())
        return self.request(request.id)

    def extend(self, request_id: str, reason: str) -> PrivacyRequest:
        """Extend the deadline by two further months (once), for a recorded reason."""
        request = self.request(request_id)
        self._require_open(request)
        reason = mask_text(reason.strip())
        if not reason:
            raise PrivacyError("an extension needs a reason (GDPR Art. 12(3))")
        if request.extended:
            raise PrivacyError(
                f"request {request.id} was already extended (to {request.due_at:%Y-%m-%d}): "
                "one extension of two months is all the regulation allows"
            )
        due = add_months(request.received_at, 3)
        with self.engine.begin() as conn:
            lock_hub(conn)
            conn.execute(
                update(privacy_requests)
                .where(privacy_requests.c.id == request.id)
                .values(due_at=due, extension_reason=reason)
            )
            self._audit(
                conn, "privacy.extended", request.id, {"due_at": due.isoformat()}, self.clock()
            )
        return self.request(request.id)

    def refuse(self, request_id: str, reason: str) -> PrivacyRequest:
        """Refuse the request (e.g. identity not verified, manifestly unfounded), with the
        reason the subject is told."""
        request = self.request(request_id)
        self._require_open(request)
        reason = mask_text(reason.strip())
        if not reason:
            raise PrivacyError("a refusal needs its reason (GDPR Art. 12(4))")
        if request.ledger is not None:
            raise PrivacyError(
                f"request {request.id} has already erased data: it cannot be refused"
            )
        with self.engine.begin() as conn:
            lock_hub(conn)
            set_status(conn, request.id, "refused", now=self.clock(), refusal_reason=reason)
            self._audit(conn, "privacy.refused", request.id, {}, self.clock())
        return self.request(request.id)

    # ------------------------------------------------------------------ erasure
    def erase(
        self,
        request_id: str,
        identifiers: Sequence[Identifier] = (),
        *,
        exclude: Iterable[int] = (),
        fan_out: bool = True,
    ) -> ErasureOutcome:
        """Erase the subject: in the hub in one transaction (ledger, tasks, suppression
        entries and deletions together), then the secure clean-up, then every system
        (unless ``fan_out`` is false; :meth:`run_tasks` does it later).

        A request whose hub part is done only has its due tasks run again.
        """
        secret = self.secret
        request = self.request(request_id)
        self._require_erasure(request)
        if request.ledger is not None:  # erased in the hub already: carry on with the systems
            tasks = self.run_tasks(request.id) if fan_out else []
            before = CleanupResult(True, "done when the hub part was erased")
            return ErasureOutcome(self.request(request.id), ErasureCounts(), 0, 0, before, tasks)
        self._require_open(request)
        self._check_identifiers(request, identifiers)
        # Whatever is logged from here on, the subject's names never are.
        with contextlib.ExitStack() as masking:
            now = self.clock()
            resolver = self.hub.resolver()
            with self.engine.begin() as conn:
                lock_hub(conn)
                if request.status == "received":
                    self._audit(conn, "privacy.verified", request.id, {}, now)
                subject = self._resolve(conn, request, identifiers, exclude)
                masking.enter_context(sensitive(subject_words(subject)))
                kinds = self._erase_kinds(subject)
                systems = {
                    connector: [r.external_id for r in records]
                    for connector, records in subject.systems().items()
                }
                scrubbed = drop_overrides_mentioning(
                    conn, subject.customers, subject_words(subject)
                )
                removed = erase_records(
                    conn,
                    subject.record_ids,
                    now=now,
                    resolver=resolver,
                    quarantine_ids=quarantine_rows(conn, subject),
                    customer_ids=subject.customers,
                )
                removed.overrides += scrubbed
                wanted = [i for i in subject.all_identifiers()]
                shared = self._still_held(conn, wanted, resolver)
                suppressed = [i for i in wanted if i not in shared]
                ledger = build_ledger(
                    request.id,
                    subject,
                    secret=secret,
                    kinds=kinds,
                    suppressed=suppressed,
                    shared=shared,
                    now=now,
                    actor=self.actor,
                )
                conn.execute(
                    update(privacy_requests)
                    .where(privacy_requests.c.id == request.id)
                    .values(
                        ledger=ledger,
                        subject={**request.subject, "records": [], "customers": subject.customers},
                    )
                )
                insert_tasks(conn, request.id, systems, kinds, now)
                # The identifiers the request names are suppressed too, even those nothing
                # held (the subject does not want to come in later either): by their hashes.
                shared_hashes = {(i["kind"], i["hash"]) for i in keyed_all(shared, secret)}
                named = sorted(request.identifier_hashes - shared_hashes)
                own = [(i["kind"], i["hash"]) for i in keyed_all(suppressed, secret)]
                added = self._suppress_hashes(conn, sorted({*own, *named}), request.id, now)
                set_status(conn, request.id, "waiting" if systems else "done", now=now)
                self._audit(
                    conn,
                    "privacy.erased",
                    request.id,
                    {
                        "removed": removed.as_dict(),
                        "suppressed": added,
                        "shared": len(shared),
                        "systems": sorted(systems),
                        "customers": subject.customers,
                    },
                    now,
                )
            cleanup = secure_cleanup(self.engine)
            with self.engine.begin() as conn:
                conn.execute(
                    update(privacy_requests)
                    .where(privacy_requests.c.id == request.id)
                    .values(
                        ledger={
                            **ledger,
                            "cleanup": {"done": cleanup.done, "detail": cleanup.detail},
                        }
                    )
                )
            log.info(
                "privacy.erased",
                request=request.id,
                records=removed.source_records,
                systems=len(systems),
                cleanup=cleanup.done,
            )
            tasks = self.run_tasks(request.id) if fan_out else []
            return ErasureOutcome(
                self.request(request.id), removed, added, len(shared), cleanup, tasks
            )

    def preview_erasure(
        self,
        request_id: str,
        identifiers: Sequence[Identifier] = (),
        *,
        exclude: Iterable[int] = (),
    ) -> Subject:
        """What :meth:`erase` would erase now (nothing changes).

        Raises:
            PrivacyError: the request is not an open erasure still to be carried out.
        """
        request = self.request(request_id)
        self._require_erasure(request)
        if request.ledger is not None or not request.open:
            raise PrivacyError(f"request {request.id} is {request.status_label}")
        return self.resolve(request.id, identifiers, exclude=exclude, remember=False)

    def run_tasks(self, request_id: str | None = None) -> list[TaskOutcome]:
        """Work on every due system task (of one request, or of all), and bring the requests'
        statuses up to date."""
        secret = self.secret
        with self.engine.connect() as conn:
            query = select(privacy_tasks.c.request_id).distinct()
            if request_id is not None:
                query = query.where(privacy_tasks.c.request_id == get_request(conn, request_id).id)
            request_ids = list(conn.execute(query).scalars())
            due = [
                task
                for rid in request_ids
                for task in list_tasks(conn, rid)
                if task.due(self.clock())
            ]
        outcomes: list[TaskOutcome] = []
        for task in due:
            connector = None
            with contextlib.suppress(ConfigError):  # unconfigured: the task fails, saying so
                connector = self.hub.connector(task.connector)
            try:
                outcome = run_task(
                    task,
                    begin=self.engine.begin,
                    erase=connector.erase if connector is not None else None,
                    secret=secret,
                    now=self.clock,
                )
            finally:
                if connector is not None:
                    connector.close()
            if outcome is not None:
                outcomes.append(outcome)
        for rid in request_ids:
            self._settle_request(rid)
        if outcomes:  # the tasks' rows held external ids until now: no copy may stay behind
            secure_cleanup(self.engine)
        return outcomes

    def complete_manual(self, request_id: str, connector: str, note: str) -> PrivacyTask:
        """Close a system's task by hand (a system without an erase API, or one the officer
        erased in by other means), with a note of what was done."""
        note = mask_text(note.strip())
        if not note:
            raise PrivacyError("say what was done in the system (a note is required)")
        status = self.status(request_id)
        task = next((t for t in status.tasks if t.connector == connector), None)
        if task is None:
            systems = ", ".join(t.connector for t in status.tasks) or "none"
            raise PrivacyError(
                f"request {status.request.id} has no task for {connector!r} (tasks: {systems})"
            )
        if task.status == "done":
            raise PrivacyError(f"the {connector} task is already done")
        now = self.clock()
        with self.engine.begin() as conn:
            lock_hub(conn)
            result = {
                **(task.result or {}),
                "completed_by": self.actor,
                "done_hashes": sorted(
                    {
                        *(task.result or {}).get("done_hashes", []),
                        *(
                            external_id_hash(self.secret, connector, i)
                            for i in task.targets.get("external_ids", [])
                        ),
                    }
                ),
            }
            conn.execute(
                update(privacy_tasks)
                .where(privacy_tasks.c.id == task.id)
                .values(
                    status="done",
                    note=note,
                    result=result,
                    targets={"count": task.records, "external_ids": []},
                    updated_at=now,
                )
            )
            self._audit(
                conn, "privacy.task_completed", status.request.id, {"system": connector}, now
            )
        self._settle_request(status.request.id)
        secure_cleanup(self.engine)  # the task's row held external ids until now
        return next(t for t in self.status(request_id).tasks if t.connector == connector)

    def retry_failed(self, request_id: str) -> int:
        """Make a request's failed system tasks due again (after the cause was fixed)."""
        request = self.request(request_id)
        now = self.clock()
        with self.engine.begin() as conn:
            lock_hub(conn)
            changed = conn.execute(
                update(privacy_tasks)
                .where(
                    privacy_tasks.c.request_id == request.id,
                    privacy_tasks.c.status == "failed",
                    privacy_tasks.c.kind == "api",
                )
                .values(status="pending", attempts=0, next_attempt_at=None, updated_at=now)
            ).rowcount
            if changed:
                set_status(conn, request.id, "waiting")
                self._audit(conn, "privacy.tasks_retried", request.id, {"tasks": changed}, now)
        return int(changed or 0)

    # ------------------------------------------------------------------ access
    def access(
        self,
        request_id: str,
        identifiers: Sequence[Identifier] = (),
        *,
        exclude: Iterable[int] = (),
    ) -> dict[str, Any]:
        """The access export of the subject (see :mod:`crmhub.privacy.export`); the request
        is done once it is handed over. A done request can be exported again (a download
        that failed), each time audited."""
        request = self.request(request_id)
        if request.kind != "access":
            raise PrivacyError(f"request {request.id} is an erasure, not an access request")
        if request.status == "refused" or request.duplicate_of:
            raise PrivacyError(
                f"request {request.id} is "
                + (f"a duplicate of {request.duplicate_of}" if request.duplicate_of else "refused")
            )
        self._check_identifiers(request, identifiers)
        now = self.clock()
        with self.engine.begin() as conn:
            lock_hub(conn)
            subject = self._resolve(conn, request, identifiers, exclude)
            with sensitive(subject_words(subject)):
                document = access_export(conn, subject, request_id=request.id, now=now)
            counts = {
                "customers": len(document["customers"]),
                "source_records": len(document["source_records"]),
                "activities": len(document["activities"]),
                "decisions": len(document["decisions"]),
            }
            if request.open:
                set_status(conn, request.id, "done", now=now)
            self._audit(conn, "privacy.exported", request.id, {"counts": counts}, now)
        return document

    # ------------------------------------------------------------------ proof
    def certificate(self, request_id: str) -> dict[str, Any]:
        """The PII-free certificate of the request (see :mod:`crmhub.privacy.certificate`)."""
        with self.engine.connect() as conn:
            request = get_request(conn, request_id)
            tasks = list_tasks(conn, request.id)
            a = audit_log.c
            rows = conn.execute(
                select(a.id, a.hash)
                .where(a.subject_type == "privacy_request", a.subject_id == request.id)
                .order_by(a.id)
            ).all()
            events = []
            for event_id, digest in rows:
                found = audit.event(conn, event_id)
                assert found is not None
                events.append((found, digest))
        return build_certificate(request, tasks, events, now=self.clock())

    def ledger(self, request_id: str) -> dict[str, Any]:
        """The request's erasure ledger (hashes only), for keeping beside the backups."""
        request = self.request(request_id)
        if request.ledger is None:
            raise PrivacyError(f"request {request.id} has erased nothing yet: it has no ledger")
        return request.ledger

    def replay(self, ledger: Mapping[str, Any]) -> ReplayOutcome:
        """Apply an erasure ledger again (on a hub restored from a backup older than the
        erasure): its suppression entries come back, and the records it lists, found again
        by their keyed hashes, are erased.

        Raises:
            PrivacyError: the document is not a ledger.
        """
        secret = self.secret
        try:
            wanted = ledger_record_hashes(ledger)
        except ValueError as exc:
            raise PrivacyError(str(exc)) from None
        now = self.clock()
        t = source_records.c
        with self.engine.begin() as conn:
            lock_hub(conn)
            ids: list[int] = []
            for connector, hashes in wanted.items():
                rows = conn.execute(select(t.id, t.external_id).where(t.connector == connector))
                ids += [
                    rid
                    for rid, external_id in rows
                    if external_id_hash(secret, connector, external_id) in hashes
                ]
            removed = erase_records(conn, ids, now=now, resolver=self.hub.resolver())
            entries = [(item["kind"], item["hash"]) for item in ledger.get("suppressed", [])]
            request_id = ledger.get("request")
            known = conn.execute(
                select(privacy_requests.c.id).where(privacy_requests.c.id == request_id)
            ).scalar_one_or_none()
            added = self._suppress_hashes(conn, entries, known, now)
            self._audit(
                conn,
                "privacy.replayed",
                str(request_id),
                {"records": len(ids), "suppressed": added, "removed": removed.as_dict()},
                now,
            )
        secure_cleanup(self.engine)
        return ReplayOutcome(len(ids), added, removed)

    def reconsent(self, identifiers: Sequence[Identifier], reason: str) -> int:
        """Lift the suppression of identifiers whose owner gave consent again (an explicit,
        audited act: nothing else lifts it). Returns the entries removed."""
        reason = mask_text(reason.strip())
        if not reason:
            raise PrivacyError("lifting a suppression needs the reason (the new consent)")
        keyed = keyed_all(identifiers, self.secret)
        now = self.clock()
        s = suppressions.c
        with self.engine.begin() as conn:
            lock_hub(conn)
            removed = 0
            for item in keyed:
                removed += int(
                    conn.execute(
                        delete(suppressions).where(s.kind == item["kind"], s.hash == item["hash"])
                    ).rowcount
                    or 0
                )
            self._audit(
                conn,
                "privacy.reconsented",
                None,
                {"identifiers": keyed, "removed": removed, "reason": reason},
                now,
            )
        return removed

    # ------------------------------------------------------------------ helpers
    def _resolve(
        self,
        conn: Connection,
        request: PrivacyRequest,
        identifiers: Sequence[Identifier],
        exclude: Iterable[int],
    ) -> Subject:
        excluded = set(exclude) | {int(i) for i in request.subject.get("excluded", [])}
        subject = resolve_subject(
            conn,
            identifiers,
            rules=self.hub.resolver().settings.rules,
            seeds=request.record_ids,
            exclude=excluded,
        )
        if not identifiers and not request.subject.get("resolved"):
            raise PrivacyError(
                f"request {request.id} has no records remembered: "
                "give the subject's identifiers again"
            )
        return subject

    def _remember(self, conn: Connection, request: PrivacyRequest, subject: Subject) -> None:
        """Keep the ids of the records found (not personal data) on the request."""
        conn.execute(
            update(privacy_requests)
            .where(privacy_requests.c.id == request.id)
            .values(
                subject={
                    **request.subject,
                    "resolved": True,
                    "records": subject.record_ids,
                    "reasons": subject.reasons,
                    "excluded": subject.excluded,
                    "customers": subject.customers,
                }
            )
        )

    def _check_identifiers(
        self, request: PrivacyRequest, identifiers: Sequence[Identifier]
    ) -> None:
        """Identifiers handed in again must include one the request was received with."""
        if not identifiers:
            return
        given = {(i["kind"], i["hash"]) for i in keyed_all(identifiers, self.secret)}
        if not given & request.identifier_hashes:
            raise PrivacyError(
                f"none of these identifiers is one request {request.id} was received with"
            )

    def _erase_kinds(self, subject: Subject) -> dict[str, str]:
        """How each system holding the subject is erased: by its API, or by hand."""
        kinds: dict[str, str] = {}
        for connector in subject.systems():
            entry = self.hub.config.connectors.get(connector)
            can = False
            if entry is not None:
                try:
                    can = "erase" in self.hub.plugins.connector(entry.type).capabilities()
                except Exception:  # a plugin that fails to load erases nothing
                    can = False
            kinds[connector] = "api" if can else "manual"
        return kinds

    def _still_held(
        self, conn: Connection, identifiers: Sequence[Identifier], resolver: Resolver
    ) -> list[Identifier]:
        """Contact identifiers that records staying in the hub also hold (after the
        deletion, in the same transaction): suppressing them would drop those people."""
        rules = resolver.settings.rules
        return [
            identifier
            for identifier in identifiers
            if identifier.kind in ("email", "phone") and holders(conn, [identifier], rules)
        ]

    def _suppress_hashes(
        self,
        conn: Connection,
        entries: Sequence[tuple[str, str]],
        request_id: str | None,
        now: datetime,
    ) -> int:
        s = suppressions.c
        existing: set[tuple[str, str]] = set()
        for chunk in in_chunks([h for _, h in entries]):
            existing.update(
                (kind, digest)
                for kind, digest in conn.execute(select(s.kind, s.hash).where(s.hash.in_(chunk)))
            )
        new = sorted(set(entries) - existing)
        if new:
            upsert(
                conn,
                suppressions,
                [
                    {"kind": kind, "hash": digest, "request_id": request_id, "created_at": now}
                    for kind, digest in new
                ],
                keys=["kind", "hash"],
                update=[],
            )
        return len(new)

    def _settle_request(self, request_id: str) -> None:
        """Bring the request's status in line with its tasks."""
        with self.engine.begin() as conn:
            request = get_request(conn, request_id)
            if request.ledger is None or request.status in ("refused",):
                return
            tasks = list_tasks(conn, request.id)
            state = request_state(tasks) if tasks else "done"
            if state == request.status:
                return
            lock_hub(conn)
            set_status(conn, request.id, state, now=self.clock())
            if state in ("done", "partially_done"):
                self._audit(
                    conn,
                    "privacy.completed",
                    request.id,
                    {"status": state, "systems": {t.connector: t.status for t in tasks}},
                    self.clock(),
                )

    def _require_erasure(self, request: PrivacyRequest) -> None:
        if request.kind != "erasure":
            raise PrivacyError(f"request {request.id} is an access request, not an erasure")
        if request.duplicate_of:
            raise PrivacyError(
                f"request {request.id} is a duplicate of {request.duplicate_of}: carry that one on"
            )

    def _require_open(self, request: PrivacyRequest) -> None:
        if not request.open:
            raise PrivacyError(f"request {request.id} is {request.status_label}")

    def _audit(
        self,
        conn: Connection,
        action: str,
        request_id: str | None,
        details: dict[str, Any],
        now: datetime,
    ) -> None:
        audit.append(
            conn,
            self.actor,
            action,
            subject_type="privacy_request" if request_id else None,
            subject_id=request_id,
            details=details,
            at=now,
        )

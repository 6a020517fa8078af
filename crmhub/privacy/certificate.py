"""The certificate of a privacy request: a PII-free JSON report of what was done, where, when
and by whom, for the officer's records and the supervisory authority.

It names the subject only by keyed hashes, lists every system with its outcome, quotes the
audit events of the request with their chain hashes (so it can be checked against
``crmhub audit verify``), and carries a digest over its own content.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from crmhub.audit import AuditEvent
from crmhub.privacy.fanout import PrivacyTask
from crmhub.privacy.requests import PrivacyRequest

__all__ = ["CERTIFICATE_VERSION", "build_certificate", "certificate_digest"]

CERTIFICATE_VERSION = 1


def certificate_digest(body: dict[str, Any]) -> str:
    """SHA-256 of the certificate without its digest, over its canonical JSON form."""
    content = {k: v for k, v in body.items() if k != "digest"}
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


def build_certificate(
    request: PrivacyRequest,
    tasks: Sequence[PrivacyTask],
    events: Sequence[tuple[AuditEvent, str]],
    *,
    now: datetime,
) -> dict[str, Any]:
    """The certificate of ``request`` from its tasks and its audit events (with their hashes)."""
    ledger = request.ledger or {}
    erased = next((e for e, _ in events if e.action == "privacy.erased"), None)
    exported = next((e for e, _ in events if e.action == "privacy.exported"), None)
    body: dict[str, Any] = {
        "certificate": "crmhub privacy request certificate",
        "version": CERTIFICATE_VERSION,
        "generated_at": now.isoformat(),
        "request": {
            "id": request.id,
            "kind": request.kind,
            "status": request.status,
            "status_label": request.status_label,
            "received_at": request.received_at.isoformat(),
            "due_at": request.due_at.isoformat(),
            "extended": request.extended,
            "completed_at": request.completed_at.isoformat() if request.completed_at else None,
            "on_time": (request.completed_at or now) <= request.due_at,
            "duplicates": request.duplicates,
            "refused": request.status == "refused",
        },
        "subject": {
            "identifiers": request.subject.get("identifiers", []),
            "hash": "HMAC-SHA256 keyed with the hub secret",
        },
        "hub": None,
        "systems": [_system(task, ledger) for task in tasks],
        "audit": [
            {"event": e.id, "at": e.at.isoformat(), "by": e.actor, "action": e.action, "hash": h}
            for e, h in events
        ],
    }
    if erased is not None:
        details = erased.details
        body["hub"] = {
            "erased_at": erased.at.isoformat(),
            "erased_by": erased.actor,
            "removed": details.get("removed", {}),
            "suppression_entries": details.get("suppressed", 0),
            "identifiers_shared_with_others": details.get("shared", 0),
            "secure_cleanup": (request.ledger or {}).get("cleanup"),
        }
    elif exported is not None:
        body["hub"] = {
            "exported_at": exported.at.isoformat(),
            "exported_by": exported.actor,
            "exported": exported.details.get("counts", {}),
        }
    body["digest"] = certificate_digest(body)
    return body


def _system(task: PrivacyTask, ledger: dict[str, Any]) -> dict[str, Any]:
    result = task.result or {}
    return {
        "system": task.connector,
        "erasure": task.kind,
        "status": task.status,
        "records": task.records,
        "erased": result.get("erased", 0),
        "already_gone": result.get("already_gone", 0),
        "failed": result.get("failed", 0) if task.status != "done" else 0,
        "attempts": task.attempts,
        "completed_at": task.updated_at.isoformat() if task.status == "done" else None,
        "completed_by": result.get("completed_by"),
        "record_hashes": sorted(
            h
            for hashes in ((ledger.get("systems") or {}).get(task.connector, {}))
            .get("streams", {})
            .values()
            for h in hashes
        ),
        "note_recorded": bool(task.note),
    }

"""The erasure ledger: what an erasure removes where, by keyed hash only.

The ledger is written in the erasure's own transaction before anything is deleted, and stays
with the request after the subject is gone. It holds no personal data: the subject's
identifiers and the ids of their records appear only as HMACs keyed with the hub secret, so
the ledger can be exported and kept beside backups. Replaying it on a hub restored from a
backup taken before the erasure finds the records again by those hashes, erases them and
restores the suppression entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from crmhub.privacy.identifiers import Identifier, external_id_hash, keyed_all
from crmhub.privacy.subject import Subject

__all__ = ["LEDGER_VERSION", "build_ledger", "ledger_record_hashes"]

LEDGER_VERSION = 1


def build_ledger(
    request_id: str,
    subject: Subject,
    *,
    secret: bytes,
    kinds: Mapping[str, str],
    suppressed: Sequence[Identifier],
    shared: Sequence[Identifier],
    now: datetime,
    actor: str,
) -> dict[str, Any]:
    """The ledger of erasing ``subject`` (see the module docstring).

    Args:
        kinds: per system holding the subject, how it is erased there (api or manual).
        suppressed: the identifiers that become suppression entries.
        shared: identifiers also held by records that stay (not suppressed: that would
            drop someone else).
    """
    systems: dict[str, Any] = {}
    for connector, records in subject.systems().items():
        streams: dict[str, list[str]] = {}
        for record in records:
            streams.setdefault(record.stream, []).append(
                external_id_hash(secret, connector, record.external_id)
            )
        systems[connector] = {
            "erase": kinds.get(connector, "manual"),
            "records": len(records),
            "streams": {stream: sorted(hashes) for stream, hashes in sorted(streams.items())},
        }
    return {
        "version": LEDGER_VERSION,
        "request": request_id,
        "written_at": now.isoformat(),
        "written_by": actor,
        "identifiers": keyed_all(subject.all_identifiers(), secret),
        "suppressed": keyed_all(suppressed, secret),
        "shared_not_suppressed": len(shared),
        "customers": list(subject.customers),
        "excluded_records": list(subject.excluded),
        "systems": systems,
        "hub": {
            "source_records": len(subject.records),
            "activities": subject.activities,
            "quarantine": subject.quarantine,
            "outbox": subject.outbox,
        },
    }


def ledger_record_hashes(ledger: Mapping[str, Any]) -> dict[str, set[str]]:
    """The keyed hashes of the erased records' external ids, by system.

    Raises:
        ValueError: the document is not a ledger of a known version.
    """
    if not isinstance(ledger, Mapping) or ledger.get("version") != LEDGER_VERSION:
        raise ValueError("not a crmhub erasure ledger (version 1)")
    out: dict[str, set[str]] = {}
    for connector, entry in (ledger.get("systems") or {}).items():
        for hashes in (entry.get("streams") or {}).values():
            out.setdefault(connector, set()).update(hashes)
    return out

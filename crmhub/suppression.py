"""Suppression: identifiers of erased people, kept only as keyed hashes, never stored again.

An erasure adds the HMAC (keyed with the hub secret) of each normalised identifier; every
pull drops a person whose email, phone or source id matches one (and the activities of such a
source id), and every push refuses to write one. The raw identifier is never stored, so the
list itself holds no personal data.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from crmhub.errors import ConfigError
from crmhub.model import Activity, Person
from crmhub.store.schema import suppressions

__all__ = ["SuppressionList", "identifier_hash"]

_BLOCK = 64  # SHA-256's block size: the HMAC key is padded (or hashed) to it


def identifier_hash(secret: bytes, kind: str, value: str) -> str:
    """The keyed hash of one normalised identifier (``kind`` is email, phone or source_id)."""
    return hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


class SuppressionList:
    """The suppression hashes, loaded once per run (the list is small: one entry per erased
    identifier)."""

    def __init__(self, secret: bytes | None, hashes: Iterable[tuple[str, str]]) -> None:
        by_kind: dict[str, set[bytes]] = {}
        for kind, digest in hashes:
            by_kind.setdefault(kind, set()).add(bytes.fromhex(digest))
        if by_kind and not secret:
            raise ConfigError(
                "the hub has suppressed identifiers but no secret to match them: "
                'set hub.secret = "env:CRMHUB_SECRET"',
                key="hub.secret",
            )
        self._digests = {kind: frozenset(digests) for kind, digests in by_kind.items()}
        self._size = sum(len(digests) for digests in self._digests.values())
        # The check runs for every record of every pull, so the HMAC (RFC 2104) is computed
        # from keyed SHA-256 states set up once: the inner one per kind, already fed the
        # "kind:" prefix; each value costs two C-level state copies instead of a key set-up.
        key = secret or b""
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
        self._inner: dict[str, Any] = {}
        for kind in self._digests:
            self._inner[kind] = state = inner.copy()
            state.update(f"{kind}:".encode())

    def _held_digests(self, kind: str, values: Sequence[str]) -> list[bytes]:
        """The keyed digests of ``values`` of one kind (equal to :func:`identifier_hash`)."""
        inner_copy = self._inner[kind].copy
        outer_copy = self._outer.copy
        digests = []
        for value in values:
            inner = inner_copy()
            inner.update(value.encode())
            outer = outer_copy()
            outer.update(inner.digest())
            digests.append(outer.digest())
        return digests

    @classmethod
    def empty(cls) -> SuppressionList:
        """A list that suppresses nobody."""
        return cls(None, ())

    @classmethod
    def load(cls, conn: Connection, secret: bytes | None) -> SuppressionList:
        """Read the suppression list from the store."""
        rows = conn.execute(select(suppressions.c.kind, suppressions.c.hash))
        return cls(secret, ((kind, digest) for kind, digest in rows))

    def __bool__(self) -> bool:
        return self._size > 0

    def __len__(self) -> int:
        return self._size

    def suppressed(self, records: Sequence[Person | Activity | None]) -> set[int]:
        """The positions of the records that belong to a suppressed person (``None`` entries,
        records that did not map, are skipped).

        A person is suppressed when any of its identifiers is; an activity when its person's
        source id is: an invoice a billing system keeps after the customer's erasure must not
        bring their id (or what the invoice copied of them) back into the hub. A whole batch
        is checked at once, one kind at a time: the hashing runs in one tight loop, and a
        batch without a match (nearly every one) is settled by one set comparison per kind;
        only a batch with a match is gone through record by record.
        """
        if not self._digests:
            return set()
        values = _identifiers(records)
        found: set[int] = set()
        for kind, held in self._digests.items():
            if held.isdisjoint(self._held_digests(kind, values.get(kind, ()))):
                continue
            found.update(
                position
                for position, record in enumerate(records)
                if not held.isdisjoint(
                    self._held_digests(kind, _identifiers([record]).get(kind, ()))
                )
            )
        return found

    def matches(self, person: Person) -> bool:
        """Whether any identifier of the person is suppressed."""
        return bool(self.suppressed([person]))

    def matches_activity(self, activity: Activity) -> bool:
        """Whether the activity belongs to a suppressed (erased) person of its source."""
        return bool(self.suppressed([activity]))


def _identifiers(records: Sequence[Person | Activity | None]) -> dict[str, list[str]]:
    """The identifiers the records are checked by, by kind: the emails, phones and source
    ids of the people, and the source ids of the people the activities belong to (one pass:
    this runs for every record of every pull)."""
    emails: list[str] = []
    phones: list[str] = []
    source_ids: list[str] = []
    add_emails, add_phones, add_source_id = emails.extend, phones.extend, source_ids.append
    for record in records:
        if isinstance(record, Person):
            add_emails(record.emails)
            add_phones(record.phones)
            add_source_id(f"{record.source}/{record.stream}/{record.external_id}")
        elif record is not None and record.person_external_id:
            add_source_id(
                f"{record.source}/{record.person_stream or ''}/{record.person_external_id}"
            )
    return {"email": emails, "phone": phones, "source_id": source_ids}

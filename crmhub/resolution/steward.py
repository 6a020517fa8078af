"""A data steward's decisions: merge, unmerge, accept or reject a pair, and undo any of them;
and golden values set by hand (:meth:`Steward.override`, :meth:`Steward.clear_override`).

Every decision is stored as pair statuses — the same constraints clustering honours on every
later run (an accepted pair is a must-link, a rejected one a cannot-link) — so a decision
survives re-scoring and full re-runs. Each one is an audit event listing the pairs it changed
and their previous status (ids only), which is exactly what :meth:`Steward.undo` restores.

An override is a golden value a steward sets for one field of one customer, with a reason; it
wins over every survivorship rule on every later rebuild, and moves to the surviving customer
when its customer is merged into one that has no override of that field. Its audit event holds
the field and a hash of the value, never the value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import ValidationError
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from crmhub import audit
from crmhub.dedupe.normalize import match_frame
from crmhub.dedupe.pipeline import score_pairs
from crmhub.dedupe.survive import EMPTY_VALUES, GOLDEN_FIELDS
from crmhub.errors import DedupeError
from crmhub.model import Person
from crmhub.resolution.golden import GoldenBuilder
from crmhub.resolution.pairs import DECIDED, changed_since_scored, comparisons_of
from crmhub.resolution.records import load_records, persons
from crmhub.resolution.resolver import Resolver
from crmhub.resolution.search import search_text
from crmhub.store.dialect import lock_hub
from crmhub.store.schema import audit_log, customers, match_pairs, overrides, source_records

__all__ = [
    "MAX_REASON",
    "StalePair",
    "Steward",
    "StewardError",
    "StewardResult",
    "canonical_value",
    "override_value_hash",
    "resolve_customer",
]

_p = match_pairs.c
UNDOABLE = frozenset({"customer.merged", "customer.unmerged", "pair.accepted", "pair.rejected"})


class StewardError(DedupeError):
    """A decision that cannot be made (unknown customer, record not a member, ...)."""


class StalePair(StewardError):
    """A record of the pair changed since the pair was scored: look at it again."""


def _require_fresh(conn: Connection, pair_id: int, scored: Mapping[int, str | None]) -> None:
    changed = changed_since_scored(conn, scored)
    if changed:
        which = ", ".join(str(rid) for rid in changed)
        raise StalePair(
            f"pair {pair_id}: source record {which} changed since the pair was scored; "
            "nothing was decided: look at the pair again"
        )


@dataclass
class StewardResult:
    """What a decision did: its audit event, and the customers it left."""

    event_id: int
    action: str
    customers: list[str] = field(default_factory=list)
    pairs_changed: int = 0


def resolve_customer(conn: Connection, customer_id: str) -> str | None:
    """The customer an id stands for now, following ``merged_into``; None if unknown."""
    seen: set[str] = set()
    current = customer_id
    while current not in seen:
        seen.add(current)
        row = conn.execute(select(customers.c.merged_into).where(customers.c.id == current)).first()
        if row is None:
            return None
        if row[0] is None:
            return current
        current = row[0]
    return current  # a cycle cannot be written, but never loop on one


MAX_REASON = 2000
"""The longest reason an override takes (characters)."""


def canonical_value(field_name: str, value: Any, *, region: str | None = None) -> Any:
    """``value`` as the canonical model stores it in golden field ``field_name``, normalised
    by the model's own rules (emails lower-cased and syntax-checked, phones E.164 with
    national numbers read in ``region``, countries ISO-2, names NFC-normalised, ...).

    Raises:
        StewardError: the field is not a golden field, or the value does not fit it, or is
            empty (an empty override would hide the field: clear the override instead).
    """
    if field_name not in GOLDEN_FIELDS:
        raise StewardError(
            f"{field_name!r} is not a golden field (fields: {', '.join(GOLDEN_FIELDS)})"
        )
    if _has_nul(value):
        raise StewardError(f"{field_name}: the value holds a NUL character")
    data = {"source": "steward", "stream": "override", "external_id": "override"}
    try:
        person = Person.model_validate(
            {**data, field_name: value}, context={"region": region} if region else None
        )
    except ValidationError as exc:
        problems = "; ".join(
            ".".join(str(part) for part in error["loc"]) + f": {error['msg']}"
            for error in exc.errors(include_url=False, include_context=False, include_input=False)
        )
        raise StewardError(f"not a valid {field_name}: {problems}") from None
    dumped = person.model_dump(mode="json", exclude_none=True, include={field_name})
    canonical = dumped.get(field_name)
    if canonical in EMPTY_VALUES:
        raise StewardError(
            f"{field_name}: an override needs a value (to let the rules choose again, clear it)"
        )
    return canonical


def override_value_hash(customer_id: str, field_name: str, value: Any) -> str:
    """The hash an audit event records instead of an override's value: SHA-256 over the
    customer, the field and the canonical value (JSON, sorted keys), so that equal values of
    two customers do not hash alike."""
    body = json.dumps(
        [customer_id, field_name, value], sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def _members(conn: Connection, customer_id: str) -> list[int]:
    t = source_records.c
    return list(
        conn.execute(
            select(t.id).where(t.customer_id == customer_id, t.deleted_at.is_(None)).order_by(t.id)
        ).scalars()
    )


class Steward:
    """Makes steward decisions on a hub, as ``actor`` (see the module docstring)."""

    def __init__(self, resolver: Resolver, actor: str) -> None:
        self.resolver = resolver
        self.actor = actor

    # ------------------------------------------------------------------ decisions
    def merge(self, into: str, other: str, reason: str = "") -> StewardResult:
        """Make ``other`` and ``into`` one customer, keeping the id ``into``."""
        with self._transaction() as conn:
            a, b = self._customer(conn, into), self._customer(conn, other)
            if a == b:
                raise StewardError(f"{into} and {other} are already one customer ({a})")
            members_a, members_b = _members(conn, a), _members(conn, b)
            wanted = [
                (x, y, "accepted")
                for x in members_a
                for y in members_b
                if self._status(conn, x, y) == "rejected"
            ]
            wanted.append((members_a[0], members_b[0], "accepted"))
            now = datetime.now(UTC)
            changes = self._set_pairs(conn, wanted, reason, now)
            self.resolver.settle_group(conn, members_a + members_b, now=now, prefer=[a])
            event_id = audit.append(
                conn,
                self.actor,
                "customer.merged",
                subject_type="customer",
                subject_id=a,
                details={"merged": b, "members": members_b, "changes": changes},
                at=now,
            )
            return StewardResult(event_id, "customer.merged", [a], len(changes))

    def unmerge(self, customer_id: str, record_id: int, reason: str = "") -> StewardResult:
        """Take source record ``record_id`` out of its customer; both golden records are
        rebuilt from their remaining members."""
        with self._transaction() as conn:
            c = self._customer(conn, customer_id)
            members = _members(conn, c)
            if record_id not in members:
                raise StewardError(f"source record {record_id} is not a member of customer {c}")
            if len(members) == 1:
                raise StewardError(f"source record {record_id} is the only member of {c}")
            now = datetime.now(UTC)
            wanted = [(record_id, other, "rejected") for other in members if other != record_id]
            changes = self._set_pairs(conn, wanted, reason, now)
            self.resolver.settle_group(conn, members, now=now, prefer=[c], claims={record_id: None})
            new_customer = conn.execute(
                select(source_records.c.customer_id).where(source_records.c.id == record_id)
            ).scalar_one()
            event_id = audit.append(
                conn,
                self.actor,
                "customer.unmerged",
                subject_type="customer",
                subject_id=c,
                details={"record": record_id, "new_customer": new_customer, "changes": changes},
                at=now,
            )
            return StewardResult(event_id, "customer.unmerged", [c, new_customer], len(changes))

    def decide(
        self, pair_id: int, accept: bool, reason: str = "", *, check_fresh: bool = False
    ) -> StewardResult:
        """Accept (a match) or reject (not a match) a scored pair, usually a suggestion.

        With ``check_fresh`` (a steward looking at the pair as it was scored), the decision
        is refused with :class:`StalePair` when the pair is no longer pending or either
        record changed or was deleted since it was scored; the check runs under the hub's
        write lock, so nothing can change in between.
        """
        with self._transaction() as conn:
            row = conn.execute(
                select(_p.left_id, _p.right_id, _p.left_hash, _p.right_hash, _p.status).where(
                    _p.id == pair_id
                )
            ).first()
            if row is None:
                raise StewardError(f"no pair {pair_id}")
            if check_fresh:
                if row[4] != "pending":
                    raise StalePair(f"pair {pair_id} was decided meanwhile ({row[4]})")
                _require_fresh(conn, pair_id, {row[0]: row[2], row[1]: row[3]})
            now = datetime.now(UTC)
            status = "accepted" if accept else "rejected"
            changes = self._set_pairs(conn, [(row[0], row[1], status)], reason, now)
            self.resolver.settle_group(conn, [row[0], row[1]], now=now)
            action = f"pair.{status}"
            event_id = audit.append(
                conn,
                self.actor,
                action,
                subject_type="pair",
                subject_id=str(pair_id),
                details={"changes": changes},
                at=now,
            )
            return StewardResult(event_id, action, [], len(changes))

    def undo(self, event_id: int, reason: str = "") -> StewardResult:
        """Undo a merge, unmerge or pair decision: its pairs get their previous status back
        (pairs it created are removed) and the customers are rebuilt."""
        with self._transaction() as conn:
            event = audit.event(conn, event_id)
            if event is None or event.action not in UNDOABLE:
                raise StewardError(f"event {event_id} is not a decision that can be undone")
            undone = conn.execute(
                select(audit_log.c.id).where(
                    audit_log.c.action == "undo", audit_log.c.subject_id == str(event_id)
                )
            ).first()
            if undone is not None:
                raise StewardError(f"event {event_id} was already undone (event {undone[0]})")
            now = datetime.now(UTC)
            touched: set[int] = set()
            for pair_id, before in event.details.get("changes", []):
                row = conn.execute(select(_p.left_id, _p.right_id).where(_p.id == pair_id)).first()
                if row is None:
                    continue  # the records were erased since
                touched.update(row)
                if before is None:
                    conn.execute(delete(match_pairs).where(_p.id == pair_id))
                else:
                    decided = before in DECIDED
                    conn.execute(
                        update(match_pairs)
                        .where(_p.id == pair_id)
                        .values(
                            status=before,
                            decided_by=self.actor if decided else None,
                            decided_at=now if decided else None,
                            reason=f"undo of event {event_id}" if decided else None,
                        )
                    )
            claims: dict[int, str | None] = {}
            prefer: list[str] = []
            if event.action == "customer.merged":
                claims = dict.fromkeys(event.details.get("members", []), event.details["merged"])
                prefer = [event.details["merged"]]
            elif event.action == "customer.unmerged" and event.subject_id:
                prefer = [event.subject_id]
            if touched:
                self.resolver.settle_group(conn, touched, now=now, prefer=prefer, claims=claims)
            new_event = audit.append(
                conn,
                self.actor,
                "undo",
                subject_type="event",
                subject_id=str(event_id),
                details={"undone": event.action, "pairs": len(touched)},
                at=now,
            )
            return StewardResult(new_event, "undo", [], len(event.details.get("changes", [])))

    def override(
        self,
        customer_id: str,
        field_name: str,
        value: Any,
        reason: str,
        *,
        region: str | None = None,
    ) -> StewardResult:
        """Set the golden value of ``field_name`` by hand (it wins over every rule until
        cleared) and rebuild the golden record; ``reason`` is required and kept with the
        override. ``value`` is normalised by the canonical model (:func:`canonical_value`;
        national phone numbers are read in the customer's address country, else ``region``).

        Raises:
            StewardError: unknown customer, no reason, not a golden field, a value that
                does not fit the field.
        """
        reason = (reason or "").strip()
        if not reason:
            raise StewardError("an override needs a reason")
        if len(reason) > MAX_REASON or _has_nul(reason):
            raise StewardError(f"a reason is plain text of at most {MAX_REASON} characters")
        if field_name not in GOLDEN_FIELDS:
            canonical_value(field_name, value)  # raises with the list of fields
        with self._transaction() as conn:
            c = self._customer(conn, customer_id)
            if field_name == "phones":
                region = self._country(conn, c) or region
            canonical = canonical_value(field_name, value, region=region)
            o = overrides.c
            before = conn.execute(
                select(o.id).where(o.customer_id == c, o.field == field_name)
            ).first()
            now = datetime.now(UTC)
            values = {
                "value": canonical,
                "set_by": self.actor[:64],
                "set_at": now,
                "reason": reason,
            }
            if before is None:
                conn.execute(insert(overrides).values(customer_id=c, field=field_name, **values))
            else:
                conn.execute(update(overrides).where(o.id == before[0]).values(**values))
            self._rebuild(conn, c, now)
            event_id = audit.append(
                conn,
                self.actor,
                "customer.override_set",
                subject_type="customer",
                subject_id=c,
                details={
                    "field": field_name,
                    "value_hash": override_value_hash(c, field_name, canonical),
                    "replaced": before is not None,
                },
                at=now,
            )
            return StewardResult(event_id, "customer.override_set", [c])

    def clear_override(self, customer_id: str, field_name: str) -> StewardResult:
        """Remove the override of ``field_name``: the survivorship rules choose its golden
        value again, and the golden record is rebuilt.

        Raises:
            StewardError: unknown customer, or no override of that field.
        """
        with self._transaction() as conn:
            c = self._customer(conn, customer_id)
            o = overrides.c
            row = conn.execute(
                select(o.id, o.value).where(o.customer_id == c, o.field == field_name)
            ).first()
            if row is None:
                raise StewardError(f"customer {c} has no override of {field_name!r}")
            now = datetime.now(UTC)
            conn.execute(delete(overrides).where(o.id == row[0]))
            self._rebuild(conn, c, now)
            event_id = audit.append(
                conn,
                self.actor,
                "customer.override_cleared",
                subject_type="customer",
                subject_id=c,
                details={
                    "field": field_name,
                    "value_hash": override_value_hash(c, field_name, row[1]),
                },
                at=now,
            )
            return StewardResult(event_id, "customer.override_cleared", [c])

    # ------------------------------------------------------------------ helpers
    def _rebuild(self, conn: Connection, customer_id: str, now: datetime) -> None:
        """Build the golden record of ``customer_id`` from its members and overrides again
        (as settling does), and store it if it changed."""
        members = _members(conn, customer_id)
        if not members:
            return
        records = load_records(conn, members)
        o = overrides.c
        chosen = {
            name: value
            for name, value in conn.execute(
                select(o.field, o.value).where(o.customer_id == customer_id)
            )
        }
        data = GoldenBuilder(self.resolver.survivorship).build(
            [records[rid] for rid in members], chosen or None
        )
        row = conn.execute(
            select(customers.c.data, customers.c.version).where(customers.c.id == customer_id)
        ).one()
        if row[0] != data:
            conn.execute(
                update(customers)
                .where(customers.c.id == customer_id)
                .values(
                    data=data, version=row[1] + 1, updated_at=now, search_text=search_text(data)
                )
            )

    def _country(self, conn: Connection, customer_id: str) -> str | None:
        """The country of the customer's golden address, if it has one."""
        data = conn.execute(
            select(customers.c.data).where(customers.c.id == customer_id)
        ).scalar_one()
        address = (data.get("address") or {}).get("value")
        country = address.get("country") if isinstance(address, dict) else None
        return country if isinstance(country, str) else None

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self.resolver.engine.begin() as conn:
            lock_hub(conn)
            yield conn

    def _customer(self, conn: Connection, customer_id: str) -> str:
        resolved = resolve_customer(conn, customer_id)
        if resolved is None:
            raise StewardError(f"no customer {customer_id}")
        return resolved

    def _status(self, conn: Connection, a: int, b: int) -> str | None:
        a, b = min(a, b), max(a, b)
        return conn.execute(
            select(_p.status).where(_p.left_id == a, _p.right_id == b)
        ).scalar_one_or_none()

    def _set_pairs(
        self,
        conn: Connection,
        wanted: Sequence[tuple[int, int, str]],
        reason: str,
        now: datetime,
    ) -> list[list[Any]]:
        """Give pairs a steward status, scoring those not stored yet; returns the changes as
        ``[pair id, previous status or None]``."""
        changes: list[list[Any]] = []
        missing: list[tuple[int, int, str]] = []
        decided = {"decided_by": self.actor, "decided_at": now, "reason": reason or None}
        for a, b, status in wanted:
            a, b = min(a, b), max(a, b)
            row = conn.execute(
                select(_p.id, _p.status).where(_p.left_id == a, _p.right_id == b)
            ).first()
            if row is None:
                missing.append((a, b, status))
            elif row[1] != status:
                conn.execute(
                    update(match_pairs).where(_p.id == row[0]).values(status=status, **decided)
                )
                changes.append([row[0], row[1]])
        if missing:
            changes.extend(self._insert_pairs(conn, missing, decided, now))
        return changes

    def _insert_pairs(
        self,
        conn: Connection,
        wanted: Sequence[tuple[int, int, str]],
        decided: dict[str, Any],
        now: datetime,
    ) -> list[list[Any]]:
        records = load_records(conn, {rid for a, b, _ in wanted for rid in (a, b)})
        frame = match_frame(persons([records[rid] for rid in sorted(records)]))
        row_of = {rid: row for row, rid in enumerate(frame.ids.tolist())}
        stored = self.resolver.model(conn)
        scored = score_pairs(
            frame,
            np.array([row_of[a] for a, _, _ in wanted], dtype=np.int64),
            np.array([row_of[b] for _, b, _ in wanted], dtype=np.int64),
            stored.model,
            self.resolver.settings.comparisons,
        )
        changes: list[list[Any]] = []
        explained = comparisons_of(scored, stored.model, range(len(wanted)))
        for index, (a, b, status) in enumerate(wanted):
            result = conn.execute(
                insert(match_pairs).values(
                    left_id=a,
                    right_id=b,
                    probability=float(scored.probability[index]),
                    weight=float(scored.weight[index]),
                    comparison=explained[index],
                    status=status,
                    model_version=stored.version,
                    left_hash=records[a].content_hash,
                    right_hash=records[b].content_hash,
                    created_at=now,
                    **decided,
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            changes.append([int(key[0]), None])
        return changes

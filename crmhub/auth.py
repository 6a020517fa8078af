"""Who may do what: API tokens with a role, browser sessions, and the permission matrix.

A token is 32 random bytes shown once when created (``crmhub tokens create``); the hub keeps
only its SHA-256, so a copy of the database signs nobody in. A browser signs in with a token
and gets a session (an HttpOnly cookie whose value is likewise stored hashed) with its own
CSRF token. Every creation, revocation and sign-in is an audit event (ids only).

Roles and what they may do are one table, :data:`PERMISSIONS`; routes ask for a permission,
never for a role, so the matrix is the single place to read or change access.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from crmhub import audit
from crmhub.errors import CrmhubError
from crmhub.store.dialect import lock_hub
from crmhub.store.schema import principals, web_sessions

__all__ = [
    "PERMISSIONS",
    "ROLES",
    "AuthError",
    "Principal",
    "allowed",
    "authenticate",
    "create_session",
    "create_token",
    "end_session",
    "list_tokens",
    "revoke_token",
    "session_principal",
]

ROLES = ("ops", "steward", "compliance", "auditor")

PERMISSIONS: dict[str, frozenset[str]] = {
    # The review queue and pair decisions
    "review.read": frozenset({"steward", "auditor"}),
    "review.decide": frozenset({"steward"}),
    # Golden records, their members and timelines; overrides, merges, unmerges
    "customers.read": frozenset({"steward", "auditor", "compliance"}),
    "customers.edit": frozenset({"steward"}),
    # Runs, quarantine, pushes
    "ops.read": frozenset({"ops", "auditor"}),
    "ops.act": frozenset({"ops"}),
    # Privacy requests: never a steward's
    "privacy.read": frozenset({"compliance", "auditor"}),
    "privacy.act": frozenset({"compliance"}),
    # The audit log itself
    "audit.read": frozenset({"auditor", "compliance"}),
}
"""Each permission and the roles that hold it. An auditor reads and changes nothing."""

SESSION_HOURS = 12
_TOKEN_PREFIX = "crmhub_"


class AuthError(CrmhubError):
    """A token or session is unknown, revoked or expired, or lacks a permission."""


@dataclass(frozen=True)
class Principal:
    """A token holder: who (``name``), with which ``role``."""

    id: int
    name: str
    role: str

    def can(self, permission: str) -> bool:
        """Whether this principal's role holds ``permission``."""
        return allowed(self.role, permission)

    @property
    def actor(self) -> str:
        """How audit events name this principal."""
        return f"{self.role}:{self.name}"


def allowed(role: str, permission: str) -> bool:
    """Whether ``role`` holds ``permission`` (an unknown permission is held by nobody)."""
    return role in PERMISSIONS.get(permission, frozenset())


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(conn: Connection, name: str, role: str, *, actor: str = "cli") -> str:
    """Create a principal and return its token (shown once; only its hash is kept).

    Raises:
        AuthError: for an unknown role or a name already in use.
    """
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
    if not name or len(name) > 48:  # "role:name" must fit the 64 characters of an actor
        raise AuthError("a token needs a name of 1 to 48 characters")
    lock_hub(conn)
    taken = conn.execute(select(principals.c.id).where(principals.c.name == name)).first()
    if taken is not None:
        raise AuthError(f"a token named {name!r} exists already (revoke it first)")
    token = _TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    result = conn.execute(
        insert(principals).values(name=name, role=role, token_hash=_hash(token), created_at=now)
    )
    key = result.inserted_primary_key
    assert key is not None
    audit.append(
        conn, actor, "token.created", subject_type="principal", subject_id=str(key[0]),
        details={"role": role}, at=now,
    )  # fmt: skip
    return token


def revoke_token(conn: Connection, name: str, *, actor: str = "cli") -> None:
    """Revoke a principal's token and end its sessions.

    Raises:
        AuthError: if no active token has that name.
    """
    lock_hub(conn)
    row = conn.execute(
        select(principals.c.id).where(principals.c.name == name, principals.c.revoked_at.is_(None))
    ).first()
    if row is None:
        raise AuthError(f"no active token named {name!r}")
    now = datetime.now(UTC)
    conn.execute(update(principals).where(principals.c.id == row.id).values(revoked_at=now))
    conn.execute(delete(web_sessions).where(web_sessions.c.principal_id == row.id))
    audit.append(
        conn, actor, "token.revoked", subject_type="principal", subject_id=str(row.id), at=now
    )


def list_tokens(conn: Connection) -> list[dict[str, Any]]:
    """Every principal: name, role, created, last used, revoked (never a token)."""
    p = principals.c
    rows = conn.execute(
        select(p.id, p.name, p.role, p.created_at, p.last_used_at, p.revoked_at).order_by(p.id)
    )
    return [dict(row._mapping) for row in rows]


def authenticate(conn: Connection, token: str) -> Principal:
    """The principal of an active token (and note when it was last used).

    Raises:
        AuthError: if the token is unknown or revoked (the message never repeats it).
    """
    p = principals.c
    row = conn.execute(
        select(p.id, p.name, p.role).where(p.token_hash == _hash(token), p.revoked_at.is_(None))
    ).first()
    if row is None:
        raise AuthError("unknown or revoked token")
    conn.execute(update(principals).where(p.id == row.id).values(last_used_at=datetime.now(UTC)))
    return Principal(int(row.id), row.name, row.role)


def create_session(conn: Connection, token: str) -> tuple[str, str, Principal]:
    """Sign in with a token: returns (session cookie value, CSRF token, principal); audited.

    Raises:
        AuthError: if the token is unknown or revoked.
    """
    principal = authenticate(conn, token)
    session, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    lock_hub(conn)
    conn.execute(
        insert(web_sessions).values(
            id_hash=_hash(session),
            principal_id=principal.id,
            csrf_token=csrf,
            created_at=now,
            expires_at=now + timedelta(hours=SESSION_HOURS),
        )
    )
    audit.append(
        conn, principal.actor, "session.signed_in", subject_type="principal",
        subject_id=str(principal.id), at=now,
    )  # fmt: skip
    return session, csrf, principal


def session_principal(conn: Connection, session: str) -> tuple[Principal, str]:
    """The principal and CSRF token of a live session.

    Raises:
        AuthError: if the session is unknown, expired, or its token was revoked.
    """
    s, p = web_sessions.c, principals.c
    row = conn.execute(
        select(p.id, p.name, p.role, s.csrf_token, s.expires_at)
        .join(principals, p.id == s.principal_id)
        .where(s.id_hash == _hash(session), p.revoked_at.is_(None))
    ).first()
    if row is None:
        raise AuthError("not signed in")
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    if expires <= datetime.now(UTC):
        raise AuthError("the session has expired: sign in again")
    return Principal(int(row.id), row.name, row.role), row.csrf_token


def end_session(conn: Connection, session: str) -> None:
    """Sign out: forget the session."""
    conn.execute(delete(web_sessions).where(web_sessions.c.id_hash == _hash(session)))

"""What every route needs: the hub, who is asking (a bearer token or a session cookie), the
permission the route requires, and a CSRF check on forms posted by a signed-in browser."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request

from crmhub.auth import AuthError, Principal, authenticate, session_principal
from crmhub.hub import Hub

__all__ = ["SESSION_COOKIE", "NotSignedIn", "Viewer", "check_csrf", "get_hub", "require"]

SESSION_COOKIE = "crmhub_session"


class NotSignedIn(Exception):
    """No valid token or session: a browser is sent to the sign-in page, an API client gets
    401 (see the app's exception handler)."""


@dataclass(frozen=True)
class Viewer:
    """Who is asking, and how: ``csrf`` is the session's CSRF token (None for a bearer
    token, which a browser never sends on its own, so needs no CSRF check)."""

    principal: Principal
    csrf: str | None

    def can(self, permission: str) -> bool:
        """Whether the viewer holds ``permission``."""
        return self.principal.can(permission)


def get_hub(request: Request) -> Hub:
    """The hub the app serves."""
    hub: Hub = request.app.state.hub
    return hub


def viewer(request: Request, hub: Hub = Depends(get_hub)) -> Viewer:
    """The token holder behind this request.

    Raises:
        NotSignedIn: without a valid bearer token or session cookie.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    try:
        with hub.engine.begin() as conn:
            if scheme.lower() == "bearer" and token.strip():
                return Viewer(authenticate(conn, token.strip()), None)
            session = request.cookies.get(SESSION_COOKIE)
            if session:
                principal, csrf = session_principal(conn, session)
                return Viewer(principal, csrf)
    except AuthError as exc:
        raise NotSignedIn(str(exc)) from None
    raise NotSignedIn("not signed in")


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def require(permission: str) -> Callable[..., Awaitable[Viewer]]:
    """A dependency: the viewer, if their role holds ``permission`` (403 otherwise); for a
    state-changing request from a browser session, only with the session's CSRF token (checked
    here, before anything of the request is read, so no route can forget it)."""

    async def check(request: Request, who: Viewer = Depends(viewer)) -> Viewer:
        if not who.can(permission):
            raise HTTPException(403, f"your role ({who.principal.role}) may not do this")
        if request.method not in SAFE_METHODS:
            await check_csrf(request, who)
        return who

    check.__name__ = f"require_{permission.replace('.', '_')}"
    return check


async def check_csrf(request: Request, who: Viewer) -> None:
    """Refuse a state-changing request from a browser session without its CSRF token (a
    form field ``csrf_token`` or the ``X-CSRF-Token`` header).

    Raises:
        HTTPException: 403 when the token is missing or wrong.
    """
    if who.csrf is None:
        return  # a bearer token: not something a browser attaches by itself
    sent = request.headers.get("x-csrf-token")
    if sent is None and "form" in request.headers.get("content-type", ""):
        sent = str((await request.form()).get("csrf_token") or "")
    if not sent or not hmac.compare_digest(sent, who.csrf):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")

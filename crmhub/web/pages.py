"""Signing in and out, and the home page."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crmhub.auth import AuthError, create_session, end_session
from crmhub.hub import Hub
from crmhub.web.deps import SESSION_COOKIE, Viewer, check_csrf, get_hub, viewer
from crmhub.web.rendering import render

router = APIRouter(include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> Response:
    """The sign-in form: paste a token."""
    return render(request, "login.html", {"next": _local(next), "error": None})


@router.post("/login")
def login(
    request: Request,
    token: str = Form(...),
    next: str = Form("/"),
    hub: Hub = Depends(get_hub),
) -> Response:
    """Exchange a token for a session cookie (HttpOnly, SameSite=Strict)."""
    try:
        with hub.engine.begin() as conn:
            session, _csrf, _principal = create_session(conn, token.strip())
    except AuthError:
        context = {"next": _local(next), "error": "That token is unknown or revoked."}
        return render(request, "login.html", context, status_code=401)
    response = RedirectResponse(_local(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=12 * 3600,
    )
    return response


@router.post("/logout")
async def logout(
    request: Request, who: Viewer = Depends(viewer), hub: Hub = Depends(get_hub)
) -> Response:
    """End the session."""
    await check_csrf(request, who)
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        with hub.engine.begin() as conn:
            end_session(conn, session)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/", response_class=HTMLResponse)
def home(request: Request, who: Viewer = Depends(viewer)) -> Response:
    """Where each role starts."""
    return render(request, "home.html", {"who": who})


def _local(path: str) -> str:
    """Only paths on this site are followed after sign-in (no open redirect)."""
    return path if path.startswith("/") and not path.startswith("//") else "/"

"""Every route, every role: without a token or session a route answers 401 (or sends a
browser to sign in), with a role that lacks the route's permission 403, never data; with the
permission it does not refuse. Every state-changing route refuses a browser session without
its CSRF token. Routes are found by walking the app, so a new route is covered at once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from crmhub.auth import PERMISSIONS, ROLES
from crmhub.web import create_app

from .conftest import sign_in

PUBLIC = {"/login", "/webhooks/{connector}"}  # a webhook's signature is its authentication


def _routes(routes: Any) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _routes(inner.routes)


def _permission(route: APIRoute) -> str | None:
    """The permission a route's dependencies require (``require("x.y")``), if any."""
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        name = getattr(dependency.call, "__name__", "")
        if name.startswith("require_"):
            for permission in PERMISSIONS:
                if name == f"require_{permission.replace('.', '_')}":
                    return permission
        pending.extend(dependency.dependencies)
    return None


ROUTES = sorted(
    ((method, route.path, _permission(route)) for route in _routes(create_app(None).routes)  # type: ignore[arg-type]
     for method in sorted(route.methods or ()) if method != "HEAD"),
)  # fmt: skip


def _url(path: str) -> str:
    # Any id will do: the answer must be refused before the id is looked at.
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_route_but_sign_in_and_webhooks_needs_a_permission() -> None:
    assert len(ROUTES) > 10
    missing = [
        (method, path)
        for method, path, permission in ROUTES
        if permission is None and path not in PUBLIC and path not in ("/", "/logout")
    ]
    assert missing == []


@pytest.mark.parametrize(("method", "path", "permission"), ROUTES)
def test_each_role_gets_exactly_what_its_permission_allows(
    client: TestClient, tokens: dict[str, str], method: str, path: str, permission: str | None
) -> None:
    if path in PUBLIC:
        return
    anonymous = client.request(method, _url(path))
    assert anonymous.status_code == 401, (method, path)
    for role in ROLES:
        headers = {"authorization": f"Bearer {tokens[role]}"}
        response = client.request(method, _url(path), headers=headers)
        allowed = permission is None or role in PERMISSIONS[permission]
        if allowed:
            assert response.status_code not in (401, 403), (method, path, role)
        else:
            assert response.status_code == 403, (method, path, role)
            assert "detail" in response.json() and len(response.content) < 300


STATE_CHANGING = [r for r in ROUTES if r[0] in ("POST", "PUT", "PATCH", "DELETE")]


@pytest.mark.parametrize(("method", "path", "permission"), STATE_CHANGING)
def test_a_session_without_the_csrf_token_changes_nothing(
    client: TestClient, tokens: dict[str, str], method: str, path: str, permission: str | None
) -> None:
    if path in PUBLIC or path == "/login":
        return
    role = next(r for r in ROLES if permission is None or r in PERMISSIONS[permission])
    sign_in(client, tokens[role])
    response = client.request(method, _url(path), data={"csrf_token": "forged"})
    assert response.status_code == 403, (method, path)
    assert "CSRF" in response.text

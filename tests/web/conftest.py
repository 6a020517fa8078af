"""A hub served by the web app in-process, and tokens for each role."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from crmhub.auth import ROLES, create_token
from crmhub.config import parse_config
from crmhub.hub import Hub
from crmhub.plugins import Plugins
from crmhub.web import create_app


@pytest.fixture
def web_hub(engine: Engine, tmp_path: Path) -> Hub:
    """An empty hub on each backend."""
    plugins = Plugins(load_entry_points=False)
    config = parse_config({}, connector_types=plugins.connectors(), path=tmp_path / "crmhub.toml")
    return Hub(config, engine, plugins)


@pytest.fixture
def tokens(web_hub: Hub) -> dict[str, str]:
    """A token per role, named after it."""
    with web_hub.engine.begin() as conn:
        return {role: create_token(conn, role, role) for role in ROLES}


@pytest.fixture
def client(web_hub: Hub) -> Iterator[TestClient]:
    """An HTTP client of the app (no network: in-process)."""
    with TestClient(create_app(web_hub), follow_redirects=False) as test_client:
        yield test_client


def sign_in(client: TestClient, token: str) -> str:
    """Sign the client in with ``token``; returns the session's CSRF token."""
    response = client.post("/login", data={"token": token, "next": "/"})
    assert response.status_code == 303
    page = client.get("/", headers={"accept": "text/html"})
    marker = 'name="csrf_token" value="'
    start = page.text.index(marker) + len(marker)
    return page.text[start : page.text.index('"', start)]

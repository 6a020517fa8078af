"""Signing in with a token, sessions, CSRF, roles: a request without the right role gets
401 or 403, never data; every sign-in and token change is audited."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from crmhub.auth import PERMISSIONS, ROLES, revoke_token
from crmhub.hub import Hub
from crmhub.store.schema import audit_log, web_sessions

from .conftest import sign_in


def test_a_browser_without_a_session_is_sent_to_sign_in_and_an_api_client_gets_401(
    client: TestClient,
) -> None:
    page = client.get("/", headers={"accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/"
    assert client.get("/").status_code == 401


def test_signing_in_sets_a_strict_httponly_cookie_and_shows_the_role(
    client: TestClient, tokens: dict[str, str], web_hub: Hub
) -> None:
    response = client.post("/login", data={"token": tokens["steward"], "next": "/review"})
    assert response.status_code == 303 and response.headers["location"] == "/review"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert tokens["steward"] not in response.headers["set-cookie"]  # a session, not the token
    home = client.get("/", headers={"accept": "text/html"})
    assert home.status_code == 200 and "steward" in home.text
    assert "Review" in home.text and "Privacy" not in home.text  # a steward's navigation
    with web_hub.engine.connect() as conn:
        actions = conn.execute(select(audit_log.c.action).order_by(audit_log.c.id)).scalars()
        assert list(actions)[-1] == "session.signed_in"


def test_a_wrong_token_is_refused_without_a_session(client: TestClient) -> None:
    response = client.post("/login", data={"token": "crmhub_nope", "next": "/"})
    assert response.status_code == 401 and "unknown or revoked" in response.text
    assert "set-cookie" not in response.headers


def test_sign_out_needs_the_csrf_token_and_ends_the_session(
    client: TestClient, tokens: dict[str, str], web_hub: Hub
) -> None:
    csrf = sign_in(client, tokens["ops"])
    assert client.post("/logout").status_code == 403
    assert client.post("/logout", data={"csrf_token": "forged"}).status_code == 403
    assert client.post("/logout", data={"csrf_token": csrf}).status_code == 303
    with web_hub.engine.connect() as conn:
        assert conn.execute(select(web_sessions)).all() == []
    assert client.get("/").status_code == 401


def test_a_revoked_token_signs_in_no_more_and_its_sessions_end(
    client: TestClient, tokens: dict[str, str], web_hub: Hub
) -> None:
    sign_in(client, tokens["auditor"])
    with web_hub.engine.begin() as conn:
        revoke_token(conn, "auditor")
    assert client.get("/").status_code == 401
    bearer = {"authorization": f"Bearer {tokens['auditor']}"}
    assert client.get("/", headers=bearer).status_code == 401
    assert client.get("/", headers={"authorization": f"Bearer {tokens['ops']}"}).status_code == 200


def test_the_permission_matrix_gives_auditors_no_change_and_stewards_no_privacy() -> None:
    assert set(ROLES) == {"ops", "steward", "compliance", "auditor"}
    for permission, roles in PERMISSIONS.items():
        if not permission.endswith(".read"):
            assert "auditor" not in roles, permission
        if permission.startswith("privacy."):
            assert "steward" not in roles, permission


def test_pages_carry_security_headers(client: TestClient) -> None:
    response = client.get("/login")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"


def test_audit_verify_names_the_first_tampered_event(
    client: TestClient, tokens: dict[str, str], web_hub: Hub, tmp_path: Path
) -> None:
    from sqlalchemy import update
    from typer.testing import CliRunner

    from crmhub.cli.main import app

    sign_in(client, tokens["steward"])
    with web_hub.engine.connect() as conn:
        ids = list(conn.execute(select(audit_log.c.id).order_by(audit_log.c.id)).scalars())
    assert len(ids) >= 5  # four tokens created, one sign-in
    config = tmp_path / "crmhub.toml"
    config.write_text(f'[hub]\ndatabase_url = "{web_hub.engine.url.render_as_string(False)}"\n')
    runner = CliRunner()
    ok = runner.invoke(app, ["--config", str(config), "audit", "verify"])
    assert ok.exit_code == 0 and f"{len(ids)} events" in ok.output
    with web_hub.engine.begin() as conn:  # someone edits history
        conn.execute(update(audit_log).where(audit_log.c.id == ids[2]).values(actor="ops:mallory"))
    bad = runner.invoke(app, ["--config", str(config), "audit", "verify"])
    assert bad.exit_code == 1 and f"event {ids[2]}" in bad.output

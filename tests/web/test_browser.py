"""End to end in a real browser (the distribution's Chromium, headless, driven by
Playwright): a steward signs in, clears pairs with the keyboard, merges, opens the customer
page and unmerges; screenshots of each step are saved in the test's output folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from crmhub.auth import create_token
from crmhub.sandbox.world import Sandbox
from crmhub.store.schema import audit_log, match_pairs, source_records

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


def test_a_steward_clears_pairs_with_the_keyboard_merges_and_unmerges(tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    # A wide review band: plenty of suggestions for the steward to go through.
    band = "\n[dedupe]\nauto_merge = 0.995\nreview = 0.3\n"
    with Sandbox(300).open_hub(tmp_path / "hub", extra_config=band, sleep=lambda _s: None) as hub:
        hub.sync()
        with hub.engine.begin() as conn:
            token = create_token(conn, "ana", "steward")
            pending = conn.execute(
                select(func.count()).where(match_pairs.c.status == "pending")
            ).scalar_one()
        assert pending >= 3, "the sandbox world should leave suggestions for a steward"
        with serving(hub) as url, browser_page(shots) as page:
            page.goto(f"{url}/login?next=/review")
            page.fill("#token", token)
            page.click("button[type=submit]")
            page.wait_for_url(f"{url}/review")
            page.screenshot(path=str(shots / "queue.png"))
            page.click("table a[href^='/review/']")  # the first pair of the queue
            page.wait_for_selector("#waterfall")
            first = page.url
            page.screenshot(path=str(shots / "pair.png"))
            with page.expect_navigation():
                page.keyboard.press("s")  # skip
            second = page.url
            assert second != first
            with page.expect_navigation():
                page.keyboard.press("y")  # merge
            with page.expect_navigation():
                page.keyboard.press("u")  # undo it ...
            page.goto(second)
            with page.expect_navigation():
                page.keyboard.press("y")  # ... and merge again
            page.screenshot(path=str(shots / "after-merge.png"))
        merged_pair = int(second.rstrip("/").split("/")[-1].split("?")[0])
        with hub.engine.connect() as conn:
            status, left = conn.execute(
                select(match_pairs.c.status, match_pairs.c.left_id).where(
                    match_pairs.c.id == merged_pair
                )
            ).one()
            customer = conn.execute(
                select(source_records.c.customer_id).where(source_records.c.id == left)
            ).scalar_one()
        assert status == "accepted"
        with serving(hub) as url, browser_page(shots) as page:
            page.goto(f"{url}/login?next=/customers/{customer}")
            page.fill("#token", token)
            page.click("button[type=submit]")
            page.wait_for_url(f"{url}/customers/{customer}*")
            page.screenshot(path=str(shots / "customer.png"))
            page.select_option("#override-field", "title")
            page.fill("#override-value", "Head of Data")
            page.fill("#override-reason", "confirmed by phone")
            with page.expect_navigation():
                page.click("form[action$='/override'] button[type=submit]")
            assert "Head of Data" in page.text_content("main")
            with page.expect_navigation():
                page.locator("form[action$='/unmerge'] button").first.click()
            page.screenshot(path=str(shots / "after-unmerge.png"))
        with hub.engine.connect() as conn:
            actions = list(conn.execute(select(audit_log.c.action)).scalars())
            members = conn.execute(
                select(func.count()).where(source_records.c.customer_id == customer)
            ).scalar_one()
    assert actions.count("pair.accepted") == 2 and "undo" in actions
    assert "customer.override_set" in actions and "customer.unmerged" in actions
    assert members >= 1
    for name in ("queue", "pair", "after-merge", "customer", "after-unmerge"):
        assert (shots / f"{name}.png").stat().st_size > 1000, name

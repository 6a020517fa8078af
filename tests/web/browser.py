"""Browser test plumbing: the web app served on a loopback port by uvicorn in a thread, and
the distribution's Chromium driven headless by Playwright (never a downloaded browser).

Without Chromium the browser tests are skipped with the reason (``CRMHUB_CHROMIUM`` names
the binary; default ``/usr/bin/chromium``); with ``CRMHUB_REQUIRE_BROWSER=1`` (CI) a missing
browser is an error instead.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from crmhub.hub import Hub
from crmhub.web import create_app

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """The Chromium binary, or skip (fail in CI) with the reason."""
    path = os.environ.get("CRMHUB_CHROMIUM", "/usr/bin/chromium")
    if Path(path).exists():
        return path
    message = f"no Chromium at {path}: install the distribution's chromium package"
    if os.environ.get("CRMHUB_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(hub: Hub) -> Iterator[str]:
    """Serve ``hub``'s web app on a loopback port; yields its base URL."""
    port = _free_port()
    config = uvicorn.Config(create_app(hub), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the web app did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def browser_page(screenshots: Path) -> Iterator[Any]:
    """A fresh headless Chromium page (Playwright); screenshots go under ``screenshots``."""
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    screenshots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()

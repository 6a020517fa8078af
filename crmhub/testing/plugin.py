"""The crmhub pytest plugin (entry point ``pytest11``): fixtures for connector tests.

Installed with crmhub, so any connector package's tests can use them without imports:

- ``crmhub_sandbox(people=60, systems=None, faults=None)`` makes seeded sandbox systems;
- ``crmhub_hub(sandbox, database_url=None)`` opens a hub in the test's folder connected to
  them in-process (retry waits are skipped), closed after the test.

The conformance suite itself is :func:`crmhub.testing.conformance_suite`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import crmhub
from crmhub.hub import Hub
from crmhub.sandbox.app import Faults
from crmhub.sandbox.world import Sandbox


def pytest_report_header(config: pytest.Config) -> str:
    """Name the crmhub version in the test run's header."""
    return f"crmhub {crmhub.__version__} (conformance suite: crmhub.testing)"


@pytest.fixture
def crmhub_sandbox() -> Callable[..., Sandbox]:
    """Factory of seeded sandbox systems: ``crmhub_sandbox(people=60, systems=("stripe",))``."""

    def make(
        people: int = 60,
        *,
        systems: tuple[str, ...] | None = None,
        faults: Faults | None = None,
        seed: int = 7,
    ) -> Sandbox:
        return Sandbox(people, seed=seed, systems=systems, faults=faults)

    return make


@pytest.fixture
def crmhub_hub(tmp_path: Path) -> Iterator[Callable[..., Hub]]:
    """Factory of hubs connected to a sandbox: ``crmhub_hub(sandbox, database_url=None)``."""
    opened: list[Hub] = []

    def make(sandbox: Sandbox, database_url: str | None = None, **http_options: Any) -> Hub:
        http_options.setdefault("sleep", lambda _seconds: None)
        hub = sandbox.open_hub(tmp_path / f"hub{len(opened)}", database_url, **http_options)
        opened.append(hub)
        return hub

    yield make
    for hub in opened:
        hub.close()

"""The example third-party connector package: once pip-installed, crmhub finds it through its
entry point and syncs from it, with nothing registered by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "crmhub-example-connector"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The example installed into its own folder, and an environment that sees it."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    path = os.pathsep.join(p for p in (str(target), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "CRMHUB_LOG_LEVEL": "warning"}


def _crmhub(env: dict[str, str], *args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "crmhub.cli", *args],
        env=env,
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


def test_the_example_package_stays_small() -> None:
    source = (EXAMPLE / "crmhub_example" / "__init__.py").read_text().splitlines()
    assert len(source) < 100


def test_an_installed_example_connector_is_listed_with_its_capabilities(
    installed: dict[str, str],
) -> None:
    listing = json.loads(_crmhub(installed, "connectors", "list", "--json"))
    guestbook = next(c for c in listing["connectors"] if c["name"] == "guestbook")
    assert guestbook["capabilities"] == ["read", "erase"]
    assert guestbook["streams"]["guests"] == {
        "primary_key": "id",
        "cursor": "signed_at",
        "kind": "person",
    }
    assert listing["failed_plugins"] == []


def test_an_installed_example_connector_syncs_into_the_hub(
    installed: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "book.json").write_text(
        json.dumps(
            [
                {
                    "id": 1,
                    "name": "Ada Lovelace",
                    "email": "ADA@example.com",
                    "signed_at": "2024-01-01T10:00:00Z",
                },
                {
                    "id": 2,
                    "name": "Alan Turing",
                    "email": "alan@example.com",
                    "signed_at": "2024-01-02T10:00:00Z",
                },
            ]
        )
    )
    (tmp_path / "crmhub.toml").write_text(
        textwrap.dedent("""
        [connectors.lobby]
        type = "guestbook"
        path = "book.json"
    """)
    )
    result = json.loads(_crmhub(installed, "sync", "--json", cwd=tmp_path))
    assert [(r["connector"], r["inserted"], r["status"]) for r in result] == [
        ("lobby", 2, "succeeded")
    ]
    again = json.loads(_crmhub(installed, "sync", "--json", cwd=tmp_path))
    assert again[0]["read"] == 0  # incremental: nothing signed since

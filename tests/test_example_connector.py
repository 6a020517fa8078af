"""The example third-party connector (``examples/crmhub-guestbook``): it is exactly what
``crmhub connectors new guestbook`` creates; once pip-installed, crmhub finds it through its
entry point, its own conformance test passes, and it syncs into a hub over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from crmhub.sandbox.server import SandboxServer
from crmhub.scaffold import package_files

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "crmhub-guestbook"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The example installed into its own folder, and an environment that sees it."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
            "--no-build-isolation", "--target", str(target), str(EXAMPLE),
        ],
        check=True,
        capture_output=True,
        text=True,
    )  # fmt: skip
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


def _build_output(path: Path) -> bool:
    """Whether a file was made by building or running the package (git ignores these)."""
    return any(
        part in ("build", "__pycache__", ".pytest_cache") or part.endswith(".egg-info")
        for part in path.parts
    )


def test_the_example_is_what_the_scaffold_makes() -> None:
    committed = {
        str(p.relative_to(EXAMPLE)): p.read_text(encoding="utf-8")
        for p in EXAMPLE.rglob("*")
        if p.is_file() and not _build_output(p.relative_to(EXAMPLE))
    }
    assert committed == package_files("guestbook")


def test_the_example_connector_stays_small() -> None:
    source = (EXAMPLE / "crmhub_guestbook" / "__init__.py").read_text().splitlines()
    assert len(source) < 120
    test = (EXAMPLE / "tests" / "test_conformance.py").read_text().splitlines()
    assert len(test) <= 15  # one call gives the whole conformance suite


def test_an_installed_example_connector_is_listed_with_its_capabilities(
    installed: dict[str, str],
) -> None:
    listing = json.loads(_crmhub(installed, "connectors", "list", "--json"))
    guestbook = next(c for c in listing["connectors"] if c["name"] == "guestbook")
    assert guestbook["capabilities"] == ["read", "write", "erase"]
    assert guestbook["streams"]["people"] == {
        "primary_key": "id",
        "cursor": "updated_at",
        "kind": "person",
    }
    assert listing["failed_plugins"] == []


def test_the_installed_example_passes_its_conformance_suite(
    installed: dict[str, str], tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        env=installed,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert "13 passed" in done.stdout


def test_an_installed_example_connector_syncs_into_the_hub_over_http(
    installed: dict[str, str], tmp_path: Path
) -> None:
    sys.path.insert(0, str(EXAMPLE))
    try:
        from crmhub_guestbook.server import GuestbookServer
    finally:
        sys.path.remove(str(EXAMPLE))
    server = SandboxServer(GuestbookServer.seeded(people=25), 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (tmp_path / "crmhub.toml").write_text(
            textwrap.dedent(f"""
            [connectors.lobby]
            type = "guestbook"
            base_url = "{server.url}"
            api_key = "env:GUESTBOOK_API_KEY"
            """)
        )
        env = {**installed, "GUESTBOOK_API_KEY": "test-key"}
        result = json.loads(_crmhub(env, "sync", "--json", "--no-push", cwd=tmp_path))
        [stream] = [r for r in result if r["mode"] != "push"]
        assert (stream["connector"], stream["status"]) == ("lobby", "succeeded")
        assert stream["inserted"] == len(server.app.people) > 25  # some have two records
        again = json.loads(_crmhub(env, "sync", "--json", "--no-push", cwd=tmp_path))
        assert again[0]["inserted"] == 0 and again[0]["updated"] == 0
    finally:
        server.shutdown()
        server.server_close()


def test_connectors_new_writes_the_package_and_refuses_bad_names(tmp_path: Path) -> None:
    env = {**os.environ, "CRMHUB_LOG_LEVEL": "warning"}
    out = _crmhub(env, "connectors", "new", "acme_crm", "--folder", str(tmp_path))
    root = tmp_path / "crmhub-acme-crm"
    assert "next: cd" in out
    assert (root / "crmhub_acme_crm" / "__init__.py").read_text().count("class AcmeCrm(") == 1
    assert 'acme_crm = "crmhub_acme_crm"' in (root / "pyproject.toml").read_text()
    new = [sys.executable, "-m", "crmhub.cli", "connectors", "new", "--folder", str(tmp_path)]
    for bad in ("Acme", "1acme", "acme-crm"):
        done = subprocess.run([*new, bad], env=env, capture_output=True, text=True)
        assert done.returncode == 2 and "not a usable connector name" in done.stderr
    again = subprocess.run([*new, "acme_crm"], env=env, capture_output=True, text=True)
    assert again.returncode == 2 and "not empty" in again.stderr

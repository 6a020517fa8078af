"""The demo: the README's first command, on a fresh embedded hub with five sandbox systems."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crmhub.demo import run_demo
from crmhub.sandbox.world import SYSTEM_APPS


def test_the_demo_syncs_matches_and_pushes_on_a_fresh_hub(tmp_path: Path) -> None:
    summary = run_demo(tmp_path / "demo", people=120)
    assert summary.ok, [(s.connector, s.stream, s.error) for s in summary.streams if not s.ok]
    assert set(summary.records_by_system) == set(SYSTEM_APPS)
    records = sum(summary.records_by_system.values())
    assert all(count > 0 for count in summary.records_by_system.values())
    assert summary.activities > 0
    # People sit in several systems: fewer golden records than records, more than people/2.
    assert 120 * 0.8 <= summary.customers < records - summary.activities
    assert summary.auto_links > 0
    assert {(p.target, p.status) for p in summary.pushes} >= {("stripe", "succeeded")}
    again = run_demo(tmp_path / "demo", people=120)  # a fresh hub again, the same story
    assert again.customers == summary.customers and again.pushed == summary.pushed


@pytest.mark.slow
def test_crmhub_demo_prints_the_summary_and_where_to_look_next(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "crmhub.cli", "demo", "--people", "60"],
        cwd=tmp_path,
        env={**os.environ, "CRMHUB_LOG_LEVEL": "warning"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "golden records" in done.stdout and "Where to look next" in done.stdout
    for system in SYSTEM_APPS:
        assert system in done.stdout
    assert (tmp_path / "crmhub-demo" / "crmhub.db").exists()
    # The commands it suggests work in a shell that exported nothing.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CRMHUB_SANDBOX_")}
    runs = subprocess.run(
        [sys.executable, "-m", "crmhub.cli", "-c", "crmhub-demo/crmhub.toml", "runs", "--json"],
        cwd=tmp_path,
        env={**clean, "CRMHUB_LOG_LEVEL": "warning"},
        capture_output=True,
        text=True,
    )
    assert runs.returncode == 0, runs.stderr
    assert {run["connector"] for run in json.loads(runs.stdout)} >= set(SYSTEM_APPS)

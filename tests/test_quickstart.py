"""The README's first command: a real sync of the sample sources in examples/quickstart into
a fresh embedded hub."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart"


def test_committed_sample_data_is_what_the_generator_makes(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(QUICKSTART / "generate.py"), str(tmp_path)], check=True)
    for made in sorted(tmp_path.iterdir()):
        assert made.read_bytes() == (QUICKSTART / "data" / made.name).read_bytes(), made.name


@pytest.mark.slow
def test_quickstart_syncs_every_sample_source_into_a_fresh_hub(tmp_path: Path) -> None:
    folder = tmp_path / "quickstart"
    shutil.copytree(QUICKSTART, folder, ignore=shutil.ignore_patterns("*.db*"))
    command = [
        sys.executable,
        "-m",
        "crmhub.cli",
        "--config",
        str(folder / "crmhub.toml"),
        "sync",
        "--json",
    ]
    env = {**os.environ, "CRMHUB_LOG_LEVEL": "warning"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    streams = {(r["connector"], r["stream"]): r for r in json.loads(done.stdout)}
    assert set(streams) == {
        ("crm", "contacts"),
        ("shop", "customers"),
        ("newsletter", "subscribers"),
        ("orders", "orders"),
    }
    assert all(r["status"] == "succeeded" for r in streams.values())
    assert streams["crm", "contacts"]["inserted"] > 250
    assert streams["crm", "contacts"]["quarantined"] > 0  # broken rows on purpose
    assert streams["shop", "customers"]["quarantined"] > 0  # a truncated JSON line
    assert streams["orders", "orders"]["inserted"] == 400
    assert (folder / "crmhub-quickstart.db").exists()
    again = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    assert sum(r["inserted"] + r["updated"] for r in json.loads(again.stdout)) == 0

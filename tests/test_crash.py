"""Crash safety: a sync killed with SIGKILL at any point, then rerun, ends in exactly the state
of an uninterrupted sync: every record once, the same quarantine, the same stream state."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crmhub.sampledata import SampleOptions, write_jsonl

pytestmark = pytest.mark.slow

PEOPLE = 12_000

# Runs one sync in a child process. KILL_AT="before_commit:3" kills the process inside the
# third page's transaction (rows written, not committed); "page:5" right after the fifth
# commit, while the next page is being read and mapped; "page:2:25" 25 ms after the second
# commit, wherever the engine then is (mapping, writing, inside the commit).
DRIVER = textwrap.dedent(
    """
    import os, signal, sys, threading
    from crmhub.hub import Hub

    event, nth, delay_ms = (os.environ.get("KILL_AT", "none:0") + ":0").split(":")[:3]
    seen = {"n": 0}

    def kill():
        os.kill(os.getpid(), signal.SIGKILL)

    def observer(name, details):
        if name == event:
            seen["n"] += 1
            if seen["n"] == int(nth):
                if int(delay_ms):
                    threading.Timer(int(delay_ms) / 1000, kill).start()
                else:
                    kill()

    with Hub.open(sys.argv[1]) as hub:
        results = hub.sync(observer=observer)
    sys.exit(0 if all(r.ok for r in results) else 1)
    """
)


def _hub_folder(root: Path, data: Path, workers: int) -> Path:
    root.mkdir()
    (root / "crmhub.toml").write_text(
        textwrap.dedent(f"""
        [hub]
        database_url = "sqlite:///hub.db"
        default_region = "GB"
        workers = {workers}

        [connectors.people]
        type = "jsonl"
        path = "{data}"
        cursor = "updated_at"
        mapping = "people_file"
        page_size = 500
    """)
    )
    return root


def _sync(folder: Path, kill_at: str | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CRMHUB_LOG_LEVEL": "warning"}
    if kill_at:
        env["KILL_AT"] = kill_at
    with (folder / "sync.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, str(folder.parent / "driver.py"), str(folder / "crmhub.toml")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def _snapshot(folder: Path) -> dict[str, object]:
    db = sqlite3.connect(folder / "hub.db")
    try:
        records = db.execute(
            "SELECT external_id, content_hash, data, deleted_at IS NULL FROM source_records "
            "ORDER BY external_id"
        ).fetchall()
        ids = [row[0] for row in records]
        assert len(ids) == len(set(ids)), "a record was stored twice"
        return {
            "records": records,
            "quarantine": sorted(db.execute("SELECT record_hash, errors FROM quarantine")),
            "state": db.execute("SELECT state FROM sync_state").fetchall(),
            "integrity": db.execute("PRAGMA integrity_check").fetchone(),
        }
    finally:
        db.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    root = tmp_path_factory.mktemp("crash")
    data = root / "people.jsonl"
    write_jsonl(data, PEOPLE, SampleOptions(seed=11, duplicate_rate=0.1, invalid_rate=0.02))
    (root / "driver.py").write_text(DRIVER)
    folder = _hub_folder(root / "reference", data, workers=1)
    process = _sync(folder)
    assert process.wait(timeout=300) == 0, (folder / "sync.log").read_text()
    return data, _snapshot(folder)


@pytest.mark.parametrize(
    ("workers", "kills"),
    [
        (1, ["before_commit:3", "page:4", "before_commit:9", "page:1"]),
        (2, ["page:2", "before_commit:5", "before_commit:1", "page:7"]),
    ],
)
def test_sync_killed_at_chosen_points_converges_to_the_uninterrupted_result(
    reference: tuple[Path, dict[str, object]], tmp_path: Path, workers: int, kills: list[str]
) -> None:
    data, expected = reference
    (tmp_path / "driver.py").write_text(DRIVER)
    folder = _hub_folder(tmp_path / "hub", data, workers)
    for kill_at in kills:
        process = _sync(folder, kill_at)
        assert process.wait(timeout=300) == -signal.SIGKILL, f"not killed at {kill_at}"
    final = _sync(folder)
    assert final.wait(timeout=300) == 0
    assert _snapshot(folder) == expected
    db = sqlite3.connect(folder / "hub.db")
    statuses = [row[0] for row in db.execute("SELECT status FROM sync_runs ORDER BY id")]
    db.close()
    assert statuses == ["interrupted"] * len(kills) + ["succeeded"]


def test_sync_killed_at_random_moments_converges_to_the_uninterrupted_result(
    reference: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    data, expected = reference
    (tmp_path / "driver.py").write_text(DRIVER)
    folder = _hub_folder(tmp_path / "hub", data, workers=2)
    rng = random.Random(5)
    for _ in range(6):
        kill_at = f"{rng.choice(['page', 'before_commit'])}:{rng.randint(1, 3)}"
        process = _sync(folder, f"{kill_at}:{rng.randint(1, 40)}")
        assert process.wait(timeout=300) == -signal.SIGKILL, f"not killed at {kill_at}"
    final = _sync(folder)
    assert final.wait(timeout=300) == 0
    assert _snapshot(folder) == expected

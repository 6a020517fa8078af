"""The hub's full matching pass at scale: N records deduplicated end to end in the store.

Builds an embedded (SQLite) hub of ``--records`` synthetic people from the ``world``
generator (several sources, households, common names, typos), mapped by the built-in
``people_file`` mapping and upserted as a sync would (this is ingest, timed on its own),
then times ``Resolver.full()`` on it: read the records, match them in memory (normalise,
block, compare, train, score, cluster), write the match keys, write the scored pairs, write
the customers, links and matched marks, commit.

Each pass runs in its own process on a fresh copy of the built hub, so its peak RSS is the
pass's own (not the generator's), and every pass starts from the same state.

Usage::

    python benchmarks/hub_dedupe.py --records 100000 --repeat 3
    python benchmarks/hub_dedupe.py --records 1000000 --keep /tmp/hub_1m.db
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from crmhub.mapping import load_mapping
from crmhub.model import Person
from crmhub.store import open_engine, upgrade
from crmhub.store.dialect import RawJson
from crmhub.store.records import upsert_records

PAGE = 5_000


def world_rows(records: int, seed: int) -> Iterator[dict[str, Any]]:
    """Source-record rows of ``records`` synthetic people records, mapped and validated as a
    sync maps them."""
    from crmhub.sandbox.people import WorldOptions, iter_world

    mapping = load_mapping("people_file").stream("people")
    now = datetime.now(UTC)
    made = 0
    # The generator makes ~1.6 records per person; ask for enough people, stop at N.
    for index, (source, raw) in enumerate(
        iter_world(int(records / 1.5) + 100, WorldOptions(seed=seed))
    ):
        person = mapping.apply(raw, source=source, stream="people", region="GB").record
        if not isinstance(person, Person):
            continue
        made += 1
        if made > records:
            return
        yield {
            "connector": source, "stream": "people", "external_id": f"{source}-{index}",
            "data": RawJson(person.model_dump_json(exclude_none=True)),
            "content_hash": f"{index:032x}", "source_updated_at": now, "first_seen": now,
            "last_seen": now, "deleted_at": None,
        }  # fmt: skip


def build_hub(
    path: Path, records: int, seed: int, extra: int = 0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A fresh hub at ``path`` holding ``records`` people records; returns the timings, and
    the ``extra`` rows of the same world that follow them (not stored)."""
    started = time.perf_counter()
    engine = open_engine(f"sqlite:///{path}")
    upgrade(engine)
    page: list[dict[str, Any]] = []
    stored = 0
    rows = world_rows(records + extra, seed)
    with engine.begin() as conn:
        for row in rows:
            page.append(row)
            if len(page) == PAGE:
                upsert_records(conn, "person", page)
                stored += len(page)
                page = []
            if stored + len(page) == records:
                break
        if page:
            upsert_records(conn, "person", page)
            stored += len(page)
    engine.dispose()
    timings = {"records": stored, "build_seconds": round(time.perf_counter() - started, 1)}
    return timings, list(rows)


def fresh_copy(source: Path, target: Path) -> None:
    """Copy a closed SQLite hub file, on disk before it is used: otherwise the first
    checkpoint's fsync would write out the whole copy (seconds for a 2 GB hub) and be timed
    as matching. A log left beside the target would be applied to it: removed first."""
    for suffix in ("-wal", "-shm"):
        target.with_name(target.name + suffix).unlink(missing_ok=True)
    shutil.copyfile(source, target)
    with target.open("rb+") as copied:
        os.fsync(copied.fileno())


def run_full(path: Path, train: bool) -> dict[str, Any]:
    """One full pass on the hub at ``path`` (this process); its timings and peak RSS."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    from crmhub.resolution import Resolver

    engine = open_engine(f"sqlite:///{path}")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    report = Resolver(engine).full(train=train)
    seconds = time.perf_counter() - started
    engine.dispose()
    return {
        "seconds": round(seconds, 2),
        "stages": {name: round(value, 2) for name, value in report.stages.items()},
        "records": report.records,
        "pairs_scored": report.pairs_scored,
        "customers": report.settled.customers_created,
        "oversized_blocks": report.oversized_blocks,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rss_before_mb": round(before),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="keep the built hub here (reused if it exists)")
    parser.add_argument("--run-full", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.run_full:
        print(json.dumps(run_full(args.run_full, train=True)))
        return
    with tempfile.TemporaryDirectory() as folder:
        built = args.keep or Path(folder) / "built.db"
        if built.exists():
            print(json.dumps({"phase": "build", "reused": str(built)}), flush=True)
        else:
            print(json.dumps({"phase": "build", **build_hub(built, args.records, args.seed)[0]}))
        runs = []
        for attempt in range(1, args.repeat + 1):
            work = Path(folder) / "work.db"
            fresh_copy(built, work)
            child = subprocess.run(
                [sys.executable, __file__, "--run-full", str(work)],
                check=True,
                capture_output=True,
                text=True,
            )
            run = json.loads(child.stdout.strip().splitlines()[-1])
            runs.append(run)
            print(json.dumps({"phase": "full", "attempt": attempt, **run}), flush=True)
            work.unlink()
        if runs:
            middle = sorted(runs, key=lambda run: run["seconds"])[len(runs) // 2]
            print(
                json.dumps(
                    {
                        "phase": "median",
                        "seconds": statistics.median(run["seconds"] for run in runs),
                        "stages_of_median_run": middle["stages"],
                        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
                    }
                )
            )


if __name__ == "__main__":
    main()

"""Incremental matching latency: one new record matched against a hub of N records.

Builds an embedded (SQLite) hub of ``--records`` synthetic people (several sources,
households, common names) with one full matching pass, then adds new records one at a time,
each followed by incremental matching (key lookup, scoring, clustering of the touched group,
golden record), and reports the latency distribution of those single-record runs.

Usage::

    python benchmarks/match_one.py --records 100000 --probes 200
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from crmhub.mapping import load_mapping
from crmhub.model import Person
from crmhub.resolution import Resolver
from crmhub.sandbox.people import WorldOptions, iter_world
from crmhub.store import open_engine, upgrade
from crmhub.store.dialect import RawJson
from crmhub.store.records import upsert_records


def _rows(records: int, seed: int) -> list[dict[str, object]]:
    mapping = load_mapping("people_file").stream("people")
    now = datetime.now(UTC)
    rows: list[dict[str, object]] = []
    for index, (source, raw) in enumerate(
        iter_world(int(records / 1.6) + 50, WorldOptions(seed=seed))
    ):
        if len(rows) >= records:
            break
        person = mapping.apply(raw, source=source, stream="people", region="GB").record
        if isinstance(person, Person):
            rows.append({
                "connector": source, "stream": "people", "external_id": f"{source}-{index}",
                "data": RawJson(person.model_dump_json(exclude_none=True)),
                "content_hash": f"{index:032x}", "source_updated_at": now, "first_seen": now,
                "last_seen": now, "deleted_at": None,
            })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rows = _rows(args.records + args.probes, args.seed)
    hub_rows, probes = rows[: args.records], rows[args.records :]
    with tempfile.TemporaryDirectory() as folder:
        engine = open_engine(f"sqlite:///{Path(folder) / 'hub.db'}")
        upgrade(engine)
        started = time.perf_counter()
        with engine.begin() as conn:
            for start in range(0, len(hub_rows), 5000):
                upsert_records(conn, "person", hub_rows[start : start + 5000])
        loaded = time.perf_counter() - started
        resolver = Resolver(engine)
        started = time.perf_counter()
        full = resolver.full(train=len(hub_rows) >= 2000)
        full_seconds = time.perf_counter() - started
        latencies = []
        for row in probes:
            with engine.begin() as conn:
                upsert_records(conn, "person", [row])
            started = time.perf_counter()
            report = resolver.resolve()
            latencies.append((time.perf_counter() - started) * 1000)
            assert report.mode == "incremental" and report.records == 1
        latencies.sort()
        print(json.dumps({
            "hub_records": len(hub_rows),
            "load_seconds": round(loaded, 1),
            "full_pass_seconds": round(full_seconds, 1),
            "full_pass_pairs": full.pairs_scored,
            "probes": len(latencies),
            "p50_ms": round(statistics.median(latencies), 1),
            "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
            "max_ms": round(latencies[-1], 1),
        }))  # fmt: skip
        engine.dispose()


if __name__ == "__main__":
    main()

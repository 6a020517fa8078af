"""Incremental matching latency: one new record matched against a hub of N records.

Builds an embedded (SQLite) hub of ``--records`` synthetic people (several sources,
households, common names; see ``hub_dedupe.py``) with one full matching pass (model trained
on the hub), then adds new records one at a time, each followed by incremental matching (key
lookup, scoring, clustering of the touched group, golden record), and reports the latency
distribution of those single-record runs. Each round starts from a fresh copy of the matched
hub, so rounds are repeats of the same work.

The resolver is made once and reused, as by a process that keeps running; with
``--fresh-resolver`` every probe gets a new one, as every ``crmhub sync`` does (it then reads
the model once more).

Usage::

    python benchmarks/match_one.py --records 100000 --probes 200 --rounds 3
    python benchmarks/match_one.py --records 1000000 --keep /tmp/hub_1m_matched.db
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from hub_dedupe import build_hub, fresh_copy

from crmhub.resolution import Resolver
from crmhub.store import open_engine
from crmhub.store.dialect import RawJson
from crmhub.store.records import upsert_records


def _percentile(ordered: list[float], share: float) -> float:
    return ordered[int(share * (len(ordered) - 1))]


def matched_hub(
    path: Path, records: int, probes: int, seed: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Build the hub at ``path``, run its first full pass (training a model); the timings,
    and ``probes`` new records of the same world."""
    built, extra = build_hub(path, records, seed, probes)
    engine = open_engine(f"sqlite:///{path}")
    started = time.perf_counter()
    full = Resolver(engine).full(train=records >= 2000)
    engine.dispose()
    timings = {
        **built,
        "full_pass_seconds": round(time.perf_counter() - started, 1),
        "full_pass_pairs": full.pairs_scored,
    }
    return timings, extra


def probe_round(path: Path, probes: list[dict[str, Any]], fresh_resolver: bool) -> dict[str, float]:
    """Add ``probes`` one at a time, matching after each; latencies in milliseconds."""
    engine = open_engine(f"sqlite:///{path}")
    resolver = Resolver(engine)
    latencies: list[float] = []
    for row in probes:
        with engine.begin() as conn:
            upsert_records(conn, "person", [row])
        started = time.perf_counter()
        if fresh_resolver:
            resolver = Resolver(engine)
        report = resolver.resolve()
        latencies.append((time.perf_counter() - started) * 1000)
        assert report.mode == "incremental" and report.records == 1
    engine.dispose()
    latencies.sort()
    return {
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(_percentile(latencies, 0.95), 1),
        "max_ms": round(latencies[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="keep the matched hub here (reused if it exists)")
    parser.add_argument("--fresh-resolver", action="store_true")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory() as folder:
        hub = args.keep or Path(folder) / "matched.db"
        saved = hub.with_name(hub.name + ".probes.json")
        if hub.exists() and saved.exists():
            probes = json.loads(saved.read_text())[: args.probes]
            print(json.dumps({"hub": str(hub), "reused": True}), flush=True)
        else:
            timings, probes = matched_hub(hub, args.records, args.probes, args.seed)
            kept = ("connector", "stream", "external_id", "data", "content_hash", "deleted_at")
            saved.write_text(json.dumps([{k: row[k] for k in kept} for row in probes]))
            print(json.dumps({"hub_records": args.records, **timings}), flush=True)
        now = datetime.now(UTC)
        probes = [
            {**row, "data": RawJson(row["data"]), "source_updated_at": now, "first_seen": now,
             "last_seen": now}
            for row in probes
        ]  # fmt: skip
        rounds = []
        for attempt in range(1, args.rounds + 1):
            work = Path(folder) / "work.db"
            fresh_copy(hub, work)
            result = probe_round(work, probes, args.fresh_resolver)
            rounds.append(result)
            print(json.dumps({"round": attempt, "probes": len(probes), **result}), flush=True)
            work.unlink()
        print(
            json.dumps(
                {
                    "hub_records": args.records,
                    "probes_per_round": len(probes),
                    "rounds": len(rounds),
                    "fresh_resolver": args.fresh_resolver,
                    **{
                        f"median_{name}": statistics.median(r[name] for r in rounds)
                        for name in ("p50_ms", "p95_ms", "max_ms")
                    },
                }
            )
        )


if __name__ == "__main__":
    main()

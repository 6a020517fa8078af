"""HTTP sync benchmark: N synthetic people across the five sandbox systems (Stripe, Zendesk,
Mailchimp, Typeform, HubSpot), synced into a fresh SQLite hub through their APIs.

Every record travels the whole way: an HTTP request through the hub's client (retries, rate
limit, response policy) to the in-process sandbox app, JSON pages, the connector's paginator,
mapping, validation, the store; then matching into golden records. Phases, each timed:

- ``sync``: the full pull of every stream (records/s end to end, the issue's target);
- ``match``: matching the pulled people into customers (reported, not part of ``sync``);
- ``incremental``: a second sync with nothing changed: the requests each system answered,
  which must be only what the cursors need (one per stream and form).

Seeding the sandbox (building the systems' state in memory) is not timed. Each run is its own
process, so peak memory (max RSS, including the mapping workers) is its own.

Usage::

    python benchmarks/http_sync.py --people 100000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(people: int, folder: Path) -> dict[str, object]:
    from crmhub.sandbox.world import Sandbox

    started = time.monotonic()
    sandbox = Sandbox(people)
    seeded = time.monotonic() - started
    hub = sandbox.open_hub(folder)
    try:
        started = time.monotonic()
        results = hub.sync(match=False)
        sync_seconds = time.monotonic() - started
        failed = [f"{r.connector}/{r.stream}: {r.error}" for r in results if not r.ok]
        records = sum(r.counts.read for r in results)
        started = time.monotonic()
        report = hub.resolver().resolve()
        match_seconds = time.monotonic() - started
        for app in sandbox.apps.values():
            app.reset_counters()
        started = time.monotonic()
        again = hub.sync(match=False)
        incremental_seconds = time.monotonic() - started
        requests = {system: dict(app.calls) for system, app in sandbox.apps.items()}
    finally:
        hub.close()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "people": people,
        "records": records,
        "by_stream": {f"{r.connector}/{r.stream}": r.counts.read for r in results},
        "failed": failed,
        "seed_seconds": round(seeded, 2),
        "sync_seconds": round(sync_seconds, 2),
        "records_per_second": round(records / sync_seconds),
        "match_seconds": round(match_seconds, 2),
        "customers_created": report.settled.customers_created if report else None,
        "incremental_seconds": round(incremental_seconds, 2),
        "incremental_read": sum(r.counts.read for r in again),
        "incremental_requests": requests,
        "peak_mb": round(own / 1024),
        "peak_worker_mb": round(children / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # a single run, in-process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_run(args.people, args.one)))
        return
    runs = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run(
                [sys.executable, __file__, "--people", str(args.people), "--one", tmp],
                check=True,
                capture_output=True,
                text=True,
            )
        run = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps(run))
        runs.append(run)
    summary = {
        key: statistics.median(float(r[key]) for r in runs)  # type: ignore[arg-type]
        for key in ("records_per_second", "sync_seconds", "match_seconds", "peak_mb")
    }
    print(json.dumps({"median": summary, "runs": len(runs)}))


if __name__ == "__main__":
    main()

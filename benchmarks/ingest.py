"""Ingest benchmark: sync N synthetic people from JSON lines into a fresh SQLite hub, then
sync again with no change.

Each phase runs in its own process, so its peak memory (max RSS) is its own:

- ``first``: a fresh hub, every record mapped, validated and inserted;
- ``resync``: ``--full`` re-read of the same unchanged file: every record read and hashed,
  none mapped or written (the unchanged path);
- ``incremental``: a normal incremental sync with nothing new (the cursor filters).

Matching (which ``crmhub sync`` runs after the streams) is not part of these figures: it has
benchmarks of its own (``dedupe.py``, ``hub_dedupe.py``); ``--match`` adds it to each phase.

Usage::

    python benchmarks/ingest.py --people 100000 --repeat 3
    python benchmarks/ingest.py --people 1000000 --repeat 3 --phases first,resync

Prints one JSON object per run and a summary with medians.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """
[hub]
database_url = "sqlite:///hub.db"
default_region = "GB"

[connectors.people]
type = "jsonl"
path = "{data}"
cursor = "updated_at"
mapping = "people_file"
page_size = {page_size}
"""


def _data_file(people: int, seed: int, cache: Path) -> Path:
    from crmhub.sampledata import SampleOptions, write_jsonl

    path = cache / f"people-{people}-{seed}.jsonl"
    if not path.exists():
        started = time.monotonic()
        partial = path.with_suffix(".partial")
        write_jsonl(partial, people, SampleOptions(seed=seed, duplicate_rate=0.1))
        partial.rename(path)
        print(f"generated {path} in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return path


def _phase(folder: Path, phase: str, match: bool) -> dict[str, object]:
    """Run one phase in this process and report its numbers."""
    from crmhub.hub import Hub

    started = time.perf_counter()
    with Hub.open(folder / "crmhub.toml") as hub:
        [result] = hub.sync(full=phase == "resync", match=match)
    elapsed = time.perf_counter() - started
    counts = result.counts
    assert result.ok, result.error
    return {
        "phase": phase,
        "seconds": round(elapsed, 3),
        "records": counts.read,
        "records_per_s": round(counts.read / elapsed) if elapsed else None,
        "inserted": counts.inserted,
        "unchanged": counts.unchanged,
        "quarantined": counts.quarantined,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        # mapping workers (forked, so much of their memory is shared with the engine's)
        "worker_peak_rss_mb": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--page-size", type=int, default=5000)
    parser.add_argument("--phases", default="first,resync,incremental")
    parser.add_argument("--match", action="store_true", help="match after each phase's sync")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "crmhub-bench")
    parser.add_argument("--run-phase", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.run_phase:  # child process: one phase
        print(json.dumps(_phase(args.folder, args.run_phase, args.match)))
        return

    args.cache.mkdir(parents=True, exist_ok=True)
    data = _data_file(args.people, args.seed, args.cache)
    phases = args.phases.split(",")
    results: dict[str, list[dict[str, object]]] = {phase: [] for phase in phases}
    for attempt in range(args.repeat):
        folder = Path(tempfile.mkdtemp(prefix="crmhub-ingest-"))
        try:
            (folder / "crmhub.toml").write_text(CONFIG.format(data=data, page_size=args.page_size))
            for phase in ["first", *[p for p in phases if p != "first"]]:
                output = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--run-phase",
                        phase,
                        "--folder",
                        str(folder),
                        *(["--match"] if args.match else []),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                    env={**os.environ, "CRMHUB_LOG_LEVEL": "warning"},
                ).stdout
                numbers = json.loads(output.strip().splitlines()[-1])
                numbers["attempt"] = attempt + 1
                print(json.dumps(numbers), flush=True)
                if phase in results:
                    results[phase].append(numbers)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    print(
        f"\nN = {args.people:,} people, median of {args.repeat} runs "
        f"(page size {args.page_size}, {os.cpu_count()} cores"
        f"{', matching included' if args.match else ''})"
    )
    for phase, runs in results.items():
        if not runs:
            continue
        rate = statistics.median(float(r["records_per_s"]) for r in runs)  # type: ignore[arg-type]
        secs = statistics.median(float(r["seconds"]) for r in runs)  # type: ignore[arg-type]
        rss = max(float(r["peak_rss_mb"]) for r in runs)  # type: ignore[arg-type]
        workers = max(float(r["worker_peak_rss_mb"]) for r in runs)  # type: ignore[arg-type]
        print(
            f"  {phase:<12} {rate:>10,.0f} records/s   {secs:8.2f} s   "
            f"peak RSS {rss:,.0f} MB (each worker {workers:,.0f} MB)"
        )


if __name__ == "__main__":
    main()

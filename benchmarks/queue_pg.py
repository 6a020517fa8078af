"""Review queue pages on PostgreSQL: the first page and deep offsets, server-side query time.

A scratch database on the given server gets the hub's schema, ``--records`` minimal source
records and ``--pairs`` match pairs, ``--pending`` of them pending (probabilities in the
review band) and the rest decided; then each page of :func:`crmhub.resolution.queue.list_pending`
is read ``--repeat`` times and the median kept. ``--index-with-id`` first replaces the
``(status, probability)`` index by ``(status, probability, id)``, to compare the two.

Usage::

    python benchmarks/queue_pg.py --url postgresql://postgres@127.0.0.1:55432/postgres
    python benchmarks/queue_pg.py --url postgresql://... --index-with-id

Prints one JSON object: milliseconds per page.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from datetime import UTC, datetime
from typing import Any

SCRATCH = "crmhub_queue_bench"
CHUNK = 20_000


def _fill(engine: Any, records: int, pairs: int, pending: int, seed: int) -> None:
    from sqlalchemy import insert, text

    from crmhub.store.schema import match_pairs, source_records

    now = datetime.now(UTC)
    rng = random.Random(seed)
    with engine.begin() as conn:
        for start in range(0, records, CHUNK):
            conn.execute(
                insert(source_records),
                [
                    {
                        "connector": "people",
                        "stream": "people",
                        "external_id": f"p{i}",
                        "data": {"first_name": f"N{i}"},
                        "content_hash": "h",
                        "first_seen": now,
                        "last_seen": now,
                    }
                    for i in range(start, min(start + CHUNK, records))
                ],
            )
        seen: set[tuple[int, int]] = set()
        rows: list[dict[str, Any]] = []
        while len(rows) < pairs:
            left, right = sorted(rng.sample(range(1, records + 1), 2))
            if (left, right) in seen:
                continue
            seen.add((left, right))
            waiting = len(rows) < pending
            rows.append(
                {
                    "left_id": left,
                    "right_id": right,
                    "probability": rng.uniform(0.5, 0.95) if waiting else rng.random(),
                    "weight": 1.0,
                    "comparison": {},
                    "status": "pending"
                    if waiting
                    else rng.choice(["auto", "rejected", "accepted"]),
                    "left_hash": "h",
                    "right_hash": "h",
                    "created_at": now,
                }
            )
        for start in range(0, len(rows), CHUNK):
            conn.execute(insert(match_pairs), rows[start : start + CHUNK])
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="a PostgreSQL server (any database on it)")
    parser.add_argument("--records", type=int, default=400_000)
    parser.add_argument("--pairs", type=int, default=400_000)
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--index-with-id", action="store_true")
    args = parser.parse_args()

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from crmhub.resolution.queue import list_pending
    from crmhub.store import open_engine, upgrade

    server = make_url(args.url)
    admin = create_engine(server.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {SCRATCH}"))
        conn.execute(text(f"CREATE DATABASE {SCRATCH}"))
    engine = open_engine(server.set(database=SCRATCH).render_as_string(hide_password=False))
    try:
        upgrade(engine)
        _fill(engine, args.records, args.pairs, args.pending, args.seed)
        if args.index_with_id:
            with engine.begin() as conn:
                conn.execute(text("DROP INDEX ix_match_pairs_status_probability"))
                conn.execute(
                    text(
                        "CREATE INDEX ix_bench_status_probability_id"
                        " ON match_pairs (status, probability, id)"
                    )
                )
                conn.execute(text("ANALYZE match_pairs"))
        pages: dict[str, dict[str, Any]] = {
            "first page": {},
            "offset 50,000": {"offset": 50_000},
            "offset 90,000 by score": {"offset": 90_000, "sort": "score"},
            "offset 99,000": {"offset": 99_000},
        }
        out: dict[str, Any] = {"index_with_id": args.index_with_id, "pending": args.pending}
        for name, options in pages.items():
            times = []
            for _ in range(args.repeat):
                with engine.connect() as conn:
                    started = time.perf_counter()
                    list_pending(conn, limit=50, **options)
                    times.append(time.perf_counter() - started)
            out[f"{name} ms"] = round(1000 * statistics.median(times), 1)
        print(json.dumps(out))
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {SCRATCH}"))


if __name__ == "__main__":
    main()

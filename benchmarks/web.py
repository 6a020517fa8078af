"""Web benchmark: the review queue page and the pair view, server time, on a big hub.

The hub: about 1,000,000 source records (synthetic people from JSON lines, synced through the
``jsonl`` connector and matched by the hub's full pass) and 100,000 pending suggestions (the
pass's own, topped up with pairs of records in the review band that copy a real pair's stored
comparison). It is built once into ``benchmarks/out/web-hub`` and reused.

Measured in process (the ASGI app called through its test client, so the figure is the
server's time: routing, auth, queries, rendering), as a signed-in steward:

- ``queue``: the queue page, first page and deep pages, sorted by uncertainty and by score,
  filtered by source system and score band;
- ``pair``: the pair view of random pending pairs;
- ``search``: the customer search page for what stewards type (surnames, full names, cities,
  companies, parts of emails of random customers), at most 100 of them.

Usage::

    python benchmarks/web.py --records 1000000 --pending 100000 --requests 300
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

OUT = Path(__file__).resolve().parent / "out" / "web-hub"

CONFIG = """
[hub]
database_url = "sqlite:///hub.db"
default_region = "GB"

[connectors.people]
type = "jsonl"
path = "people.jsonl"
mapping = "people_file"
page_size = 20000
"""


def _build(records: int, pending: int) -> None:
    """Write the world, sync it, match it, top the pending suggestions up."""
    import orjson
    from sqlalchemy import func, insert, select

    from crmhub.hub import Hub
    from crmhub.sandbox.people import iter_world
    from crmhub.store.schema import match_pairs, source_records

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "crmhub.toml").write_text(CONFIG)
    people = int(records / 1.6)
    started = time.monotonic()
    with (OUT / "people.jsonl").open("wb") as out:
        for _source, row in iter_world(people):
            out.write(orjson.dumps(row) + b"\n")
    print(f"world: {people:,} people in {time.monotonic() - started:.0f} s", file=sys.stderr)
    with Hub.open(OUT / "crmhub.toml") as hub:
        started = time.monotonic()
        [result] = hub.sync(match=False)
        print(
            f"sync: {result.counts.read:,} in {time.monotonic() - started:.0f} s", file=sys.stderr
        )
        started = time.monotonic()
        hub.resolver().resolve()
        print(f"match: {time.monotonic() - started:.0f} s", file=sys.stderr)
        settings = hub.config.dedupe
        with hub.engine.begin() as conn:
            have = conn.execute(
                select(func.count()).where(match_pairs.c.status == "pending")
            ).scalar_one()
            example = conn.execute(select(match_pairs.c.comparison).limit(1)).scalar_one()
            ids = list(conn.execute(select(source_records.c.id, source_records.c.content_hash)))
            rng = random.Random(7)
            rows: list[dict[str, Any]] = []
            seen: set[tuple[int, int]] = {
                (left_id, right_id)
                for left_id, right_id in conn.execute(
                    select(match_pairs.c.left_id, match_pairs.c.right_id)
                )
            }
            stamp = datetime.now(UTC)
            while len(rows) < pending - have:
                (a, ha), (b, hb) = rng.sample(ids, 2)
                left, right = (a, ha), (b, hb)
                if a > b:
                    left, right = right, left
                if (left[0], right[0]) in seen:
                    continue
                seen.add((left[0], right[0]))
                probability = rng.uniform(settings.review, settings.auto_merge)
                rows.append(
                    {
                        "left_id": left[0],
                        "right_id": right[0],
                        "probability": probability,
                        "weight": 3.0,
                        "comparison": example,
                        "status": "pending",
                        "model_version": 0,
                        "left_hash": left[1],
                        "right_hash": right[1],
                        "created_at": stamp,
                    }
                )
            for start in range(0, len(rows), 20_000):
                conn.execute(insert(match_pairs), rows[start : start + 20_000])
        print(f"pending: {have:,} scored + {len(rows):,} added", file=sys.stderr)


def _measure(requests: int) -> dict[str, object]:
    import warnings

    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient
    from sqlalchemy import func, select

    from crmhub.auth import create_token
    from crmhub.hub import Hub
    from crmhub.store.schema import match_pairs, source_records
    from crmhub.web import create_app

    with Hub.open(OUT / "crmhub.toml") as hub:
        with hub.engine.begin() as conn:
            token = create_token(conn, f"bench-{time.time_ns()}", "steward")
            pending_ids = list(
                conn.execute(
                    select(match_pairs.c.id).where(match_pairs.c.status == "pending")
                ).scalars()
            )
            total = conn.execute(select(func.count()).select_from(source_records)).scalar_one()
        rng = random.Random(11)
        headers = {"authorization": f"Bearer {token}", "accept": "text/html"}
        queue_urls = [
            "/review",
            "/review?sort=score",
            "/review?offset=50000",
            "/review?sort=score&offset=90000",
            "/review?connector=people",
            "/review?min_probability=0.7&max_probability=0.8",
        ]
        search_urls = [f"/customers?q={quote(term)}" for term in _search_terms(hub, rng)]
        timings: dict[str, list[float]] = {"queue": [], "pair": [], "search": []}
        with TestClient(create_app(hub)) as client:
            for url in queue_urls:  # warm the caches once, as a running server has them
                assert client.get(url, headers=headers).status_code == 200, url
            for i in range(requests):
                url = queue_urls[i % len(queue_urls)]
                started = time.perf_counter()
                response = client.get(url, headers=headers)
                timings["queue"].append(time.perf_counter() - started)
                assert response.status_code == 200, url
                pair = rng.choice(pending_ids)
                started = time.perf_counter()
                response = client.get(f"/review/{pair}", headers=headers)
                timings["pair"].append(time.perf_counter() - started)
                assert response.status_code == 200, pair
                if i < len(search_urls):
                    started = time.perf_counter()
                    response = client.get(search_urls[i], headers=headers)
                    timings["search"].append(time.perf_counter() - started)
                    assert response.status_code == 200, search_urls[i]
    out: dict[str, object] = {"source_records": total, "pending": len(pending_ids)}
    for name, values in timings.items():
        values.sort()
        out[name] = {
            "p50_ms": round(1000 * statistics.median(values), 1),
            "p95_ms": round(1000 * values[int(0.95 * (len(values) - 1))], 1),
            "max_ms": round(1000 * values[-1], 1),
            "n": len(values),
        }
    return out


def _search_terms(hub: Any, rng: random.Random) -> list[str]:
    """What stewards type into the customer search: surnames, first and last names, cities,
    companies and parts of emails of random customers (the text search, not the exact
    email or phone look-up through the match keys)."""
    from sqlalchemy import func, select

    from crmhub.store.schema import customers

    with hub.engine.connect() as conn:
        rows = conn.execute(
            select(customers.c.data)
            .where(customers.c.merged_into.is_(None))
            .order_by(func.random())
            .limit(200)
        ).scalars()
        terms: list[str] = []
        for raw in rows:
            data = json.loads(raw) if isinstance(raw, str) else raw
            values = {name: (entry or {}).get("value") for name, entry in data.items()}
            last, first, city = (
                values.get("last_name"),
                values.get("first_name"),
                values.get("address"),
            )
            emails, company = values.get("emails") or [], values.get("company")
            choices = [
                last,
                f"{first} {last}" if first and last else None,
                (city or {}).get("city"),
                company,
                emails[0].split("@")[0] if emails else None,
            ]
            terms.extend(c for c in choices if c)
    rng.shuffle(terms)
    return terms[:100]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rebuild", action="store_true", help="build the hub again")
    parser.add_argument("--build-only", action="store_true", help="build, measure nothing")
    args = parser.parse_args()
    if args.rebuild or not (OUT / "hub.db").exists():
        _build(args.records, args.pending)
    if not args.build_only:
        print(json.dumps(_measure(args.requests)))


if __name__ == "__main__":
    main()

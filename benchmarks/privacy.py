"""Privacy benchmark: erasing one subject from a hub of 1M source records, and what the
suppression check adds to a sync.

- ``erase``: the hub part of an erasure request (``PrivacyDesk.erase(..., fan_out=False)``:
  subject resolution, ledger, deletions, suppression entries, golden records rebuilt, commit,
  then the secure clean-up, a ``wal_checkpoint(TRUNCATE)``) on the 1,000,000-record hub that
  ``benchmarks/web.py`` builds into ``benchmarks/out/web-hub`` (built here if missing, which
  takes about 15 minutes). That hub is never written to: its database is copied once into a
  scratch folder and brought to the current schema revision there ("base"), and every run
  erases one random subject (a person whose email at least two source records hold) from a
  fresh copy of the base, in its own process. Each run checks that records were removed, that
  the clean-up emptied the write-ahead log, and that the email is no longer anywhere in the
  database file's bytes. The copy is flushed to disk before the run (the clean-up's fsync
  must not pay for writing it) and stays in the OS cache, as a busy hub's file would;
  ``--cold`` drops the copy's pages from the OS cache first (the worst case: nothing read yet).
- ``suppression``: the same JSON lines (``benchmarks/ingest.py``'s synthetic people) synced
  (``match=False``) into fresh hubs, alternately with an empty suppression list and with
  ``--entries`` random identifier hashes in it (none matching) plus a few that match records
  of the file (which the run must drop: its ``suppressed`` count is checked). Each sync runs
  in its own process; the overhead is the difference of the medians, of wall time and of
  CPU time (the process and its mapping workers: steadier on a shared machine). With
  ``--workers 1`` the records are mapped inline, and the time spent in the check itself is
  measured where it runs (``check_seconds_inline``): the steadiest figure of the three.

Usage::

    python benchmarks/privacy.py --scenarios erase --runs 7
    python benchmarks/privacy.py --scenarios erase --runs 5 --cold
    python benchmarks/privacy.py --scenarios suppression --people 150000 --repeat 5
    python benchmarks/privacy.py --scenarios suppression --people 150000 --repeat 5 --workers 1

Prints one JSON object per run and a summary line (JSON) per scenario with medians.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/web.py, ingest.py

SECRET_ENV = "CRMHUB_BENCH_SECRET"

ERASE_CONFIG = """
[hub]
database_url = "sqlite:///hub.db"
default_region = "GB"
secret = "env:{secret_env}"

[connectors.people]
type = "jsonl"
path = "{data}"
mapping = "people_file"
page_size = 20000
"""

SYNC_CONFIG = """
[hub]
database_url = "sqlite:///hub.db"
default_region = "GB"
secret = "env:{secret_env}"
{workers}
[connectors.people]
type = "jsonl"
path = "{data}"
cursor = "updated_at"
mapping = "people_file"
page_size = {page_size}
"""


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def _child(args: list[str]) -> dict[str, Any]:
    """Run this file with ``args`` in a new process; its last output line is JSON."""
    output = subprocess.run(
        [sys.executable, __file__, *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "CRMHUB_LOG_LEVEL": "warning"},
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def _checkpoint(db: Path) -> None:
    """Fold the write-ahead log into ``db`` and truncate it (so the file alone is the hub)."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    conn.close()


def _copy(source: Path, target: Path) -> None:
    """Copy a database file and flush it to disk: a hub's file is not all dirty pages in the
    OS cache, and the checkpoint's fsync would otherwise pay for writing the whole copy."""
    shutil.copyfile(source, target)
    with target.open("rb+") as handle:
        os.fsync(handle.fileno())


def _find(path: Path, needles: list[bytes]) -> dict[bytes, bool]:
    """Which of ``needles`` occur anywhere in the file's bytes."""
    if not path.exists() or path.stat().st_size == 0:
        return {n: False for n in needles}
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as m:
        return {n: m.find(n) != -1 for n in needles}


# ---------------------------------------------------------------------------------- erase
def _web_hub(records: int, pending: int) -> Path:
    """The cached 1M-record hub of ``benchmarks/web.py`` (built by it when missing)."""
    import web

    if not (web.OUT / "hub.db").exists():
        started = time.monotonic()
        web._build(records, pending)
        print(f"web hub built in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return web.OUT


def _write_erase_config(folder: Path, source: Path) -> None:
    (folder / "crmhub.toml").write_text(
        ERASE_CONFIG.format(secret_env=SECRET_ENV, data=source / "people.jsonl")
    )


def _prepare_base(source: Path, scratch: Path) -> Path:
    """A copy of the web hub's database at the current schema revision, made once.

    The web hub itself is only read (its log is checkpointed first if it holds anything,
    which changes no content)."""
    from crmhub.hub import Hub
    from crmhub.store.migrate import head_revision, upgrade

    base = scratch / "base"
    db = source / "hub.db"
    stamp = f"{db.stat().st_size}:{db.stat().st_mtime_ns}:{head_revision()}"
    marker = base / "source.txt"
    if (base / "hub.db").exists() and marker.exists() and marker.read_text() == stamp:
        return base
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    wal = source / "hub.db-wal"
    if wal.exists() and wal.stat().st_size:
        _checkpoint(db)
    started = time.monotonic()
    _copy(db, base / "hub.db")
    _write_erase_config(base, source)
    with Hub.open(base / "crmhub.toml", check_schema=False) as hub:
        upgrade(hub.engine)
    _checkpoint(base / "hub.db")
    marker.write_text(stamp)
    print(f"base prepared in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return base


def _pick_subjects(base: Path, count: int, seed: int) -> list[dict[str, Any]]:
    """Random people with several source records: an email that two or more records hold,
    and the whole subject (what an erasure will take) of a modest size."""
    import orjson
    from sqlalchemy import func, select

    from crmhub.hub import Hub
    from crmhub.privacy.identifiers import Identifier
    from crmhub.privacy.subject import resolve_subject
    from crmhub.store.schema import source_records

    t = source_records.c
    rng = random.Random(seed)
    picked: list[dict[str, Any]] = []
    seen: set[str] = set()
    with Hub.open(base / "crmhub.toml") as hub, hub.engine.connect() as conn:
        rules = hub.resolver().settings.rules
        low, high = conn.execute(select(func.min(t.id), func.max(t.id))).one()
        while len(picked) < count:
            ids = [rng.randint(low, high) for _ in range(200)]
            rows = conn.execute(select(t.id, t.data).where(t.id.in_(ids), t.deleted_at.is_(None)))
            for _rid, data in rows:
                data = orjson.loads(data) if isinstance(data, str | bytes) else data
                emails = data.get("emails") or []
                if not emails or emails[0] in seen:
                    continue
                email = emails[0]
                seen.add(email)
                subject = resolve_subject(conn, [Identifier("email", email)], rules=rules)
                holders = [r for r in subject.records if email in (r.data.get("emails") or [])]
                if len(holders) < 2 or len(subject.records) > 50:
                    continue
                picked.append(
                    {
                        "email": email,
                        "records": len(subject.records),
                        "email_holders": len(holders),
                        "customers": len(subject.customers),
                    }
                )
                if len(picked) == count:
                    break
    found = _find(base / "hub.db", [_needle(s["email"]) for s in picked])
    assert all(found.values()), "a picked email is not in the database bytes: the check is void"
    return picked


def _needle(email: str) -> bytes:
    return json.dumps(email).encode()  # as JSON text stores it, quoted


def _run_erase(folder: Path, email: str) -> dict[str, Any]:
    """Child process: erase the subject of ``email`` from the hub in ``folder``."""
    from sqlalchemy import func, select

    import crmhub.privacy.desk as desk_module
    from crmhub.hub import Hub
    from crmhub.privacy.desk import PrivacyDesk
    from crmhub.privacy.identifiers import parse_identifiers
    from crmhub.store.schema import source_records

    spent: dict[str, float] = {}
    wal_before: list[int] = []

    def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - started

        return wrapper

    def cleanup(*args: Any, **kwargs: Any) -> Any:
        wal = folder / "hub.db-wal"
        wal_before.append(wal.stat().st_size if wal.exists() else 0)
        return timed("cleanup", original_cleanup)(*args, **kwargs)

    original_cleanup = desk_module.secure_cleanup
    desk_module.secure_cleanup = cleanup
    desk_module.erase_records = timed("delete_and_rebuild", desk_module.erase_records)
    for name, part in (
        ("quarantine_rows", "quarantine_scan"),
        ("drop_overrides_mentioning", "overrides_scrub"),
    ):
        if hasattr(desk_module, name):
            setattr(desk_module, name, timed(part, getattr(desk_module, name)))
    PrivacyDesk._resolve = timed("resolve", PrivacyDesk._resolve)  # type: ignore[method-assign]
    PrivacyDesk._still_held = timed("shared_check", PrivacyDesk._still_held)  # type: ignore[method-assign]

    with Hub.open(folder / "crmhub.toml") as hub:
        with hub.engine.connect() as conn:
            before = conn.execute(select(func.count()).select_from(source_records)).scalar_one()
        desk = PrivacyDesk(hub, actor="bench")
        identifiers = parse_identifiers(emails=[email], region="GB")
        started = time.perf_counter()
        receipt = desk.receive("erasure", identifiers)
        received = time.perf_counter() - started
        started = time.perf_counter()
        outcome = desk.erase(receipt.request.id, identifiers, fan_out=False)
        elapsed = time.perf_counter() - started
        with hub.engine.connect() as conn:
            after = conn.execute(select(func.count()).select_from(source_records)).scalar_one()
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the mmap
    removed = outcome.removed
    assert removed.source_records > 0, "nothing was erased"
    assert before - after == removed.source_records, (before, after, removed.source_records)
    assert outcome.cleanup.done, outcome.cleanup.detail
    needle = _needle(email)
    left = (
        _find(folder / "hub.db", [needle])[needle] or _find(folder / "hub.db-wal", [needle])[needle]
    )
    assert not left, "the erased email is still in the database file"
    parts = {name: round(value, 3) for name, value in spent.items()}
    parts["other"] = round(elapsed - sum(spent.values()), 3)
    return {
        "seconds": round(elapsed, 3),
        "parts": parts,
        "cleanup_share": round(spent.get("cleanup", 0.0) / elapsed, 3),
        "wal_mb_before_cleanup": round(wal_before[0] / 2**20, 1) if wal_before else None,
        "receive_seconds": round(received, 3),
        "removed": {k: v for k, v in removed.as_dict().items() if v},
        "suppressed": outcome.suppressed,
        "shared": outcome.shared,
        "email_left_in_file": left,
        "hub_records": before,
        "peak_rss_mb": round(peak_rss, 1),
    }


def erase_scenario(args: argparse.Namespace) -> dict[str, Any]:
    source = _web_hub(args.records, args.pending)
    base = _prepare_base(source, args.scratch)
    subjects = _pick_subjects(base, args.runs, args.seed)
    runs: list[dict[str, Any]] = []
    for attempt, subject in enumerate(subjects, 1):
        folder = args.scratch / f"erase-{attempt}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        try:
            _copy(base / "hub.db", folder / "hub.db")
            if args.cold:  # this file's pages out of the OS cache (no other file's)
                with (folder / "hub.db").open("rb") as handle:
                    os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            _write_erase_config(folder, source)
            numbers = _child(["--run-erase", str(folder), "--email", subject["email"]])
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        numbers = {
            "scenario": "erase",
            "cold": args.cold,
            "attempt": attempt,
            "subject_records": subject["records"],
            "email_holders": subject["email_holders"],
            **numbers,
        }
        print(json.dumps(numbers), flush=True)
        runs.append(numbers)
    seconds = [float(r["seconds"]) for r in runs]
    names = sorted({name for r in runs for name in r["parts"]})
    return {
        "scenario": "erase",
        "cold": args.cold,
        "hub_records": runs[0]["hub_records"],
        "runs": len(runs),
        "median_s": _median(seconds),
        "max_s": round(max(seconds), 3),
        "median_parts_s": {
            n: _median([float(r["parts"].get(n, 0.0)) for r in runs]) for n in names
        },
        "median_cleanup_share": _median([float(r["cleanup_share"]) for r in runs]),
        "target_s": 2.0,
        "met": max(seconds) < 2.0,
    }


# ---------------------------------------------------------------------------- suppression
def _random_entries(count: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    kinds = ("email", "phone", "source_id")
    return [(kinds[i % 3], rng.randbytes(32).hex()) for i in range(count)]


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the mapping workers, which the
    sync joins before it returns): steadier than wall time on a shared machine."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _run_sync(folder: Path, entries_file: Path | None) -> dict[str, Any]:
    """Child process: a fresh hub, the suppression entries (if any) stored, then the sync."""
    from datetime import UTC, datetime

    from sqlalchemy import insert

    import crmhub.suppression
    from crmhub.hub import Hub
    from crmhub.store.schema import suppressions

    # The check itself, timed where it runs (inline with workers = 1; in forked workers it is
    # not seen here): two clock reads per batch of records.
    spent = [0.0]
    checks = crmhub.suppression.SuppressionList
    checks.suppressed = _timed_check(checks.suppressed, spent)  # type: ignore[method-assign]

    with Hub.open(folder / "crmhub.toml") as hub:
        entries = json.loads(entries_file.read_text()) if entries_file else []
        if entries:
            now = datetime.now(UTC)
            with hub.engine.begin() as conn:
                conn.execute(
                    insert(suppressions),
                    [
                        {"kind": k, "hash": h, "request_id": None, "created_at": now}
                        for k, h in entries
                    ],
                )
        cpu_before = _cpu_seconds()
        started = time.perf_counter()
        [result] = hub.sync(match=False)
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu_before
    assert result.ok, result.error
    counts = result.counts
    return {
        "seconds": round(elapsed, 3),
        "cpu_seconds": round(cpu, 3),
        "records": counts.read,
        "records_per_s": round(counts.read / elapsed),
        "inserted": counts.inserted,
        "quarantined": counts.quarantined,
        "suppressed": counts.suppressed,
        "entries": len(entries),
        "check_seconds_inline": round(spent[0], 3),
    }


def _timed_check(check: Callable[..., Any], spent: list[float]) -> Callable[..., Any]:
    def timed(*args: Any) -> Any:
        started = time.perf_counter()
        try:
            return check(*args)
        finally:
            spent[0] += time.perf_counter() - started

    return timed


def _matching_entries(db: Path, secret: bytes, seed: int) -> tuple[list[tuple[str, str]], int]:
    """A few entries that match records of a synced hub (3 source ids, 2 emails, 1 phone),
    and how many of its records they suppress."""
    from crmhub.suppression import identifier_hash

    rng = random.Random(seed)
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT id, connector, stream, external_id, data FROM source_records "
            "ORDER BY id LIMIT 5000"
        ).fetchall()
        chosen = rng.sample(rows, 3)
        ids = {row[0] for row in chosen}
        wanted = [("source_id", f"{c}/{s}/{e}") for _, c, s, e, _ in chosen]
        with_emails = [json.loads(r[4]) for r in rows if json.loads(r[4]).get("emails")]
        with_phones = [json.loads(r[4]) for r in rows if json.loads(r[4]).get("phones")]
        for kind, field, pool, n in (
            ("email", "emails", with_emails, 2),
            ("phone", "phones", with_phones, 1),
        ):
            for data in rng.sample(pool, n):
                value = data[field][0]
                wanted.append((kind, value))
                ids.update(
                    rid
                    for (rid,) in conn.execute(
                        f"SELECT s.id FROM source_records s, json_each(s.data, '$.{field}') j "
                        "WHERE j.value = ?",
                        (value,),
                    )
                )
    conn.close()
    return [(kind, identifier_hash(secret, kind, value)) for kind, value in wanted], len(ids)


def suppression_scenario(args: argparse.Namespace) -> dict[str, Any]:
    from ingest import _data_file

    args.cache.mkdir(parents=True, exist_ok=True)
    data = _data_file(args.people, args.data_seed, args.cache)
    secret = os.environ[SECRET_ENV].encode()
    entries_file = args.scratch / "suppressions.json"
    entries = _random_entries(args.entries, args.seed)
    expected: int | None = None
    results: dict[str, list[dict[str, Any]]] = {"empty": [], "suppressed": []}
    for attempt in range(args.repeat):
        # ABBA: the empty list first on even attempts (and always first on the first one,
        # which finds the matching entries).
        order = ["empty", "suppressed"] if attempt % 2 == 0 else ["suppressed", "empty"]
        for variant in order:
            folder = args.scratch / f"sync-{variant}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            try:
                (folder / "crmhub.toml").write_text(
                    SYNC_CONFIG.format(
                        secret_env=SECRET_ENV,
                        data=data,
                        page_size=args.page_size,
                        workers=f"workers = {args.workers}\n" if args.workers else "",
                    )
                )
                child = ["--run-sync", str(folder)]
                if variant == "suppressed":
                    assert expected is not None
                    child += ["--entries-file", str(entries_file)]
                numbers = _child(child)
                if expected is None:
                    matching, expected = _matching_entries(folder / "hub.db", secret, args.seed)
                    entries_file.write_text(json.dumps(entries + matching))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            if variant == "suppressed":
                assert numbers["suppressed"] == expected, (numbers["suppressed"], expected)
            else:
                assert numbers["suppressed"] == 0, numbers
            numbers = {
                "scenario": "suppression",
                "variant": variant,
                "attempt": attempt + 1,
                **numbers,
            }
            print(json.dumps(numbers), flush=True)
            results[variant].append(numbers)
    empty = _median([float(r["seconds"]) for r in results["empty"]])
    suppressed = _median([float(r["seconds"]) for r in results["suppressed"]])
    overhead = 100 * (suppressed - empty) / empty
    empty_cpu = _median([float(r["cpu_seconds"]) for r in results["empty"]])
    suppressed_cpu = _median([float(r["cpu_seconds"]) for r in results["suppressed"]])
    overhead_cpu = 100 * (suppressed_cpu - empty_cpu) / empty_cpu
    inline = [float(r["check_seconds_inline"]) for r in results["suppressed"]]
    return {
        "scenario": "suppression",
        "people": args.people,
        "workers": args.workers or "default",
        "records": results["empty"][0]["records"],
        "entries": args.entries,
        "matching_suppressed": expected,
        "runs_each": args.repeat,
        "median_empty_s": empty,
        "median_suppressed_s": suppressed,
        "runs_empty_s": [r["seconds"] for r in results["empty"]],
        "runs_suppressed_s": [r["seconds"] for r in results["suppressed"]],
        "overhead_pct": round(overhead, 1),
        "median_empty_cpu_s": empty_cpu,
        "median_suppressed_cpu_s": suppressed_cpu,
        "overhead_cpu_pct": round(overhead_cpu, 1),
        "median_check_s_inline": _median(inline) if any(inline) else None,
        "check_share_of_sync_pct": (
            round(100 * statistics.median(inline) / suppressed, 1) if any(inline) else None
        ),
        "target_pct": 5.0,
        "met": overhead < 5.0 and overhead_cpu < 5.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default="erase,suppression")
    parser.add_argument("--runs", type=int, default=7, help="erase: subjects (one run each)")
    parser.add_argument(
        "--cold", action="store_true", help="erase: the copy's pages dropped from the OS cache"
    )
    parser.add_argument("--records", type=int, default=1_000_000, help="web hub, if built")
    parser.add_argument("--pending", type=int, default=100_000, help="web hub, if built")
    parser.add_argument("--people", type=int, default=150_000, help="suppression: sync size")
    parser.add_argument("--repeat", type=int, default=5, help="suppression: runs of each")
    parser.add_argument("--entries", type=int, default=10_000, help="suppression list size")
    parser.add_argument("--page-size", type=int, default=5000)
    parser.add_argument(
        "--workers", type=int, help="suppression: mapping processes (default: the hub's)"
    )
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--data-seed", type=int, default=7)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "crmhub-bench")
    parser.add_argument(
        "--scratch", type=Path, default=Path(tempfile.gettempdir()) / "crmhub-privacy-bench"
    )
    parser.add_argument("--run-erase", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--email", help=argparse.SUPPRESS)
    parser.add_argument("--run-sync", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--entries-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault(SECRET_ENV, "privacy-benchmark-secret-" + "0" * 16)

    if args.run_erase:  # child processes: one run
        print(json.dumps(_run_erase(args.run_erase, args.email)))
        return
    if args.run_sync:
        print(json.dumps(_run_sync(args.run_sync, args.entries_file)))
        return

    args.scratch.mkdir(parents=True, exist_ok=True)
    scenarios = {
        "erase": erase_scenario,
        "suppression": suppression_scenario,
    }
    for name in args.scenarios.split(","):
        summary = scenarios[name](args)
        summary["cores"] = os.cpu_count()
        print(json.dumps({"summary": True, **summary}), flush=True)


if __name__ == "__main__":
    main()

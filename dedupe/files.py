"""Deduplicating a file before it is loaded: clusters and scored pairs as CSV.

A steward about to import a spreadsheet can see which of its rows are the same person, and
clean it first. Rows are mapped to canonical records with the same mapping files a sync uses;
a row that fails mapping is kept in the output, marked, with the reason — nothing is dropped.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crmhub.dedupe.builtin import MIN_TRAINING_RECORDS, builtin_model
from crmhub.dedupe.compare import explain_levels
from crmhub.dedupe.pipeline import MatchResult, MatchSettings, match_records
from crmhub.errors import ConfigError
from crmhub.mapping import StreamMapping
from crmhub.model import Person

__all__ = ["FileDedupeReport", "dedupe_file", "dedupe_people", "read_rows"]


@dataclass
class FileDedupeReport:
    """What a file dedupe found."""

    rows: int
    mapped: int
    unmapped: int
    clusters: int
    duplicate_rows: int  # rows in a cluster of two or more
    unmatchable: int  # rows with no name, email, phone or identifier: each its own cluster
    pairs_written: int
    trained: bool


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a ``.csv`` (header row) or ``.jsonl`` (one object per line) file."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as handle:
            yield from csv.DictReader(handle)
    elif suffix in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as exc:
                        yield {"__error__": f"line {number}: not JSON ({exc.msg})"}
    else:
        raise ConfigError(
            f"{path}: cannot read {suffix or 'files without a suffix'} (use .csv or .jsonl)"
        )


def dedupe_people(
    records: Sequence[tuple[int, Person]], settings: MatchSettings | None = None, *, seed: int = 0
) -> MatchResult:
    """Deduplicate canonical records: a model is trained on them when there are enough,
    otherwise the built-in model scores them."""
    model = None if len(records) >= MIN_TRAINING_RECORDS else builtin_model()
    return match_records(records, settings, model=model, seed=seed)


def dedupe_file(
    path: Path,
    mapping: StreamMapping,
    out_dir: Path,
    settings: MatchSettings | None = None,
    *,
    region: str | None = None,
) -> FileDedupeReport:
    """Write ``clusters.csv`` (every input row with its cluster) and ``pairs.csv`` (scored
    pairs at or above the review threshold, with each field's level) to ``out_dir``."""
    settings = settings or MatchSettings()
    if mapping.kind != "person":
        raise ConfigError("file dedupe needs a mapping of people, not of activities")
    rows = list(read_rows(path))
    records: list[tuple[int, Person]] = []
    errors: dict[int, str] = {}
    for number, row in enumerate(rows, start=1):
        if "__error__" in row:
            errors[number] = str(row["__error__"])
            continue
        outcome = mapping.apply(row, source=path.name, stream="file", region=region)
        if not isinstance(outcome.record, Person):
            errors[number] = "; ".join(str(problem) for problem in outcome.problems) or "not mapped"
        else:
            records.append((number, outcome.record))
    result = dedupe_people(records, settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    cluster_of = result.cluster_of()
    sizes: dict[int, int] = {}
    for label in cluster_of.values():
        sizes[label] = sizes.get(label, 0) + 1
    _write_clusters(out_dir / "clusters.csv", rows, cluster_of, sizes, errors)
    written = _write_pairs(out_dir / "pairs.csv", result, settings)
    return FileDedupeReport(
        rows=len(rows),
        mapped=len(records),
        unmapped=len(errors),
        clusters=len(sizes),
        duplicate_rows=sum(size for size in sizes.values() if size > 1),
        unmatchable=result.unmatchable,
        pairs_written=written,
        trained=result.training is not None,
    )


def _write_clusters(
    path: Path,
    rows: list[dict[str, Any]],
    cluster_of: dict[int, int],
    sizes: dict[int, int],
    errors: dict[int, str],
) -> None:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(k for k in row if k != "__error__"))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "cluster", "cluster_size", "error", *columns])
        for number, row in enumerate(rows, start=1):
            label = cluster_of.get(number)
            writer.writerow(
                [
                    number,
                    label if label is not None else "",
                    sizes.get(label, "") if label is not None else "",
                    errors.get(number, ""),
                    *(_cell(row.get(column)) for column in columns),
                ]
            )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _write_pairs(path: Path, result: MatchResult, settings: MatchSettings) -> int:
    pairs = result.pairs
    keep = np.flatnonzero(pairs.probability >= settings.review)
    keep = keep[np.argsort(-pairs.probability[keep], kind="stable")]
    ids = result.frame.ids
    names = [c.name for c in settings.comparisons]
    same = result.labels[pairs.left[keep]] == result.labels[pairs.right[keep]]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["left_row", "right_row", "probability", "weight", "same_cluster", *names])
        for position, index in enumerate(keep.tolist()):
            writer.writerow(
                [
                    int(ids[pairs.left[index]]),
                    int(ids[pairs.right[index]]),
                    f"{pairs.probability[index]:.6f}",
                    f"{pairs.weight[index]:.3f}",
                    "yes" if same[position] else "no",
                    *(
                        explain_levels(c, int(pairs.levels[c.name][index]))
                        for c in settings.comparisons
                    ),
                ]
            )
    return len(keep)

"""Turning raw records into store rows: inline, or in worker processes for large pages.

Mapping and validating a record (pydantic, phone parsing) is the CPU-heavy part of a sync;
reading, hashing and writing are not. With ``workers > 1`` large batches are mapped in forked
worker processes while the engine reads and writes the neighbouring pages, which puts every
core to work. Results come back in input order, so what is stored does not depend on how many
workers there are.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from crmhub.mapping import StreamMapping
from crmhub.model import Activity, Person
from crmhub.store.dialect import RawJson
from crmhub.suppression import SuppressionList

__all__ = ["Mapped", "Mapper", "default_workers", "map_batch"]

MIN_BATCH_FOR_WORKERS = 1000
"""Smaller batches are mapped inline: shipping them to a process costs more than it saves."""


@dataclass(frozen=True)
class _Context:
    mapping: StreamMapping
    source: str
    stream: str
    region: str | None
    suppressions: SuppressionList


Mapped = tuple[str, Any]
"""One outcome: ``("row", columns)``, ``("problems", [reasons])`` or ``("suppressed", None)``.
``columns`` are the record's own store columns (data and, for activities, the indexed
fields); the engine adds ids, hashes and times."""


def _validate(context: _Context, raw: Any, external_id: str) -> Person | Activity | list[str]:
    """One raw record as its canonical record, or the reasons it is not one."""
    result = context.mapping.apply(
        raw, source=context.source, stream=context.stream, region=context.region
    )
    record = result.record
    if record is None:
        return result.problems
    if record.external_id != external_id:
        record = record.model_copy(update={"external_id": external_id})
    return record


def _columns(record: Person | Activity) -> dict[str, Any]:
    """The record's own store columns."""
    columns: dict[str, Any] = {
        "data": RawJson(record.model_dump_json(exclude_none=True)),
        "deleted": record.deleted,
    }
    if isinstance(record, Activity):
        columns.update(
            kind=record.kind,
            occurred_at=record.occurred_at,
            person_stream=record.person_stream,
            person_external_id=record.person_external_id,
            amount=record.amount,
            currency=record.currency,
            status=record.status,
        )
    else:
        columns["source_updated_at"] = record.updated_at
    return columns


def map_batch(context: _Context, batch: Sequence[tuple[Any, str]]) -> list[Mapped]:
    """Map and validate ``(raw, external_id)`` pairs into their store columns, in order
    (never raises)."""
    validated = [_validate(context, raw, external_id) for raw, external_id in batch]
    # Suppression is checked after the id is the store's (an erased record's source id was
    # suppressed by that id), for the whole batch at once.
    suppressed = context.suppressions.suppressed(
        [None if isinstance(record, list) else record for record in validated]
    )
    mapped: list[Mapped] = []
    for position, record in enumerate(validated):
        if isinstance(record, list):
            mapped.append(("problems", record))
        elif position in suppressed:
            mapped.append(("suppressed", None))
        else:
            mapped.append(("row", _columns(record)))
    return mapped


# The context of a worker process: inherited through fork, never pickled.
_worker_context: _Context | None = None


def _init_worker(context: _Context) -> None:
    global _worker_context
    _worker_context = context


def _map_batch(batch: Sequence[tuple[Any, str]]) -> list[Mapped]:
    assert _worker_context is not None
    return map_batch(_worker_context, batch)


def default_workers() -> int:
    """Worker processes to use by default: one per core, at most four, none on one core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(cores or 1, 4)


class _Done:
    """A finished result with the interface of a future (for inline mapping)."""

    def __init__(self, value: list[Mapped]) -> None:
        self._value = value

    def result(self) -> list[Mapped]:
        return self._value


class Mapper:
    """Maps batches of raw records for one stream.

    Args:
        mapping: the stream's mapping.
        source, stream: the connector instance and stream the records come from.
        region: default phone region.
        suppressions: people never to store again.
        workers: processes to map large batches in (1: always inline).
    """

    def __init__(
        self,
        mapping: StreamMapping,
        *,
        source: str,
        stream: str,
        region: str | None,
        suppressions: SuppressionList,
        workers: int = 1,
    ) -> None:
        self.context = _Context(mapping, source, stream, region, suppressions)
        self.workers = workers if "fork" in multiprocessing.get_all_start_methods() else 1
        self._pool: ProcessPoolExecutor | None = None

    def submit(self, batch: Sequence[tuple[Any, str]]) -> list[Future[list[Mapped]] | _Done]:
        """Start mapping ``(raw, external_id)`` pairs; the parts come back in order."""
        if self.workers <= 1 or len(batch) < MIN_BATCH_FOR_WORKERS:
            return [_Done(map_batch(self.context, batch))]
        pool = self._ensure_pool()
        size = -(-len(batch) // (self.workers * 2))  # two parts per worker balance the load
        return [pool.submit(_map_batch, batch[i : i + size]) for i in range(0, len(batch), size)]

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("fork"),
                initializer=_init_worker,
                initargs=(self.context,),
            )
        return self._pool

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

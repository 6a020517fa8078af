"""The columnar form records take for matching: one array per match field.

Matching a million records works on columns, not on objects: every stage (blocking,
comparison, scoring) reads whole arrays and produces whole arrays. A :class:`MatchFrame`
holds, for N records in a fixed order:

- ``ids``: the records' ids (``source_records.id`` in the hub, or positions in a file),
- ``scalars``: one object array of length N per single-valued field, ``None`` where unknown,
- ``multis``: one list of length N per multi-valued field (emails, phones, identifiers),
  each entry a tuple of values (empty when unknown).

Row ``i`` of every column describes the record ``ids[i]``. Frames are built by
:func:`crmhub.dedupe.normalize.match_frame` and never modified afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["MULTI_FIELDS", "SCALAR_FIELDS", "MatchFrame", "concat_frames", "factorise_sets"]

SCALAR_FIELDS = (
    "first_name",  # case- and accent-folded, letters and spaces only
    "last_name",
    "full_name",  # "first last", folded
    "first_initial",
    "first_root",  # the nickname group's canonical name ("bob" -> "robert"), else first_name
    "first_phonetic",  # a phonetic code of the first name
    "last_phonetic",
    "company",  # folded, legal suffixes (Ltd, GmbH, Inc., ...) removed
    "postcode",  # upper-case, no spaces
    "city",
    "country",  # ISO 3166-1 alpha-2
    "birth_date",  # ISO date
    "street",  # folded first address line
)
"""Single-valued match fields, in a fixed order."""

MULTI_FIELDS = (
    "emails",  # matching forms: provider rules applied (gmail dots and +tags), never stored
    "phones",  # E.164
    "identifiers",  # "kind:value" (customer numbers, tax ids)
)
"""Multi-valued match fields, in a fixed order."""


@dataclass(frozen=True)
class MatchFrame:
    """Match fields of N records as columns (see the module docstring)."""

    ids: npt.NDArray[np.int64]
    scalars: dict[str, npt.NDArray[np.object_]] = field(default_factory=dict)
    multis: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)
    # Derived arrays (factorised columns, comparison helpers), built once per frame: the
    # frame never changes, and blocking, training and comparison all read the same ones.
    _derived: dict[tuple[str, str], Any] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def cached(self, kind: str, name: str, build: Callable[[], Any]) -> Any:
        """``build()`` the first time ``(kind, name)`` is asked for, the same object after."""
        key = (kind, name)
        if key not in self._derived:
            self._derived[key] = build()
        return self._derived[key]

    def codes(self, name: str) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.object_]]:
        """A single-valued field factorised: each row's code (-1 where unknown) and the
        distinct values, code ``k`` being ``values[k]``."""

        def build() -> tuple[npt.NDArray[np.int32], npt.NDArray[np.object_]]:
            index: dict[str, int] = {}
            column = self.scalar(name)
            codes = np.fromiter(
                (index.setdefault(v, len(index)) if v else -1 for v in column),
                dtype=np.int32,
                count=len(column),
            )
            values = np.empty(len(index), dtype=object)
            values[:] = list(index)
            return codes, values

        found: tuple[npt.NDArray[np.int32], npt.NDArray[np.object_]] = self.cached(
            "codes", name, build
        )
        return found

    def value_codes(self, name: str) -> tuple[npt.NDArray[np.int64], int]:
        """A multi-valued field factorised: sorted keys ``row * width + code``, one per
        distinct (row, value), and ``width`` (the number of distinct values, at least 1)."""

        found: tuple[npt.NDArray[np.int64], int] = self.cached(
            "value_codes", name, lambda: factorise_sets(self.multi(name))
        )
        return found

    def cached_any(self) -> bool:
        """Whether anything was derived from this frame yet."""
        return bool(self._derived)

    def __len__(self) -> int:
        return len(self.ids)

    def scalar(self, name: str) -> npt.NDArray[np.object_]:
        """The column of a single-valued field (all None when the frame lacks it)."""
        column = self.scalars.get(name)
        return column if column is not None else np.full(len(self), None, dtype=object)

    def multi(self, name: str) -> list[tuple[str, ...]]:
        """The column of a multi-valued field (all empty when the frame lacks it)."""
        column = self.multis.get(name)
        return column if column is not None else [()] * len(self)

    def unmatchable(self) -> npt.NDArray[np.bool_]:
        """Rows with nothing to match on: no name, no email, no phone and no identifier.
        Such a record becomes its own customer (an address or a birth date alone says too
        little about who it is); callers count them for the operator."""
        nothing = np.ones(len(self), dtype=bool)
        for name in ("first_name", "last_name"):
            column = self.scalar(name)
            nothing &= np.fromiter((value is None for value in column), bool, len(column))
        for name in MULTI_FIELDS:
            nothing &= np.fromiter((not values for values in self.multi(name)), bool, len(self))
        return nothing


def factorise_sets(column: list[tuple[str, ...]]) -> tuple[npt.NDArray[np.int64], int]:
    """Rows of value tuples factorised: sorted keys ``row * width + code``, one per distinct
    (row, value) (empty values left out), and ``width``, the number of distinct values (at
    least 1)."""
    index: dict[str, int] = {}
    counts = np.fromiter(map(len, column), dtype=np.int64, count=len(column))
    codes = np.fromiter(
        (index.setdefault(v, len(index)) if v else -1 for v in chain.from_iterable(column)),
        dtype=np.int64,
        count=int(counts.sum()),
    )
    width = max(len(index), 1)
    rows = np.repeat(np.arange(len(column), dtype=np.int64), counts)
    keys = np.sort(rows[codes >= 0] * width + codes[codes >= 0])
    return keys[np.diff(keys, prepend=-1) != 0], width


def concat_frames(frames: Sequence[MatchFrame]) -> MatchFrame:
    """One frame holding the rows of ``frames``, in order."""
    if len(frames) == 1:
        return frames[0]
    scalars = {
        name: np.concatenate([f.scalar(name) for f in frames]) if frames else np.empty(0, object)
        for name in SCALAR_FIELDS
    }
    multis = {name: [row for f in frames for row in f.multi(name)] for name in MULTI_FIELDS}
    ids = np.concatenate([f.ids for f in frames]) if frames else np.empty(0, dtype=np.int64)
    return MatchFrame(ids.astype(np.int64), scalars, multis)

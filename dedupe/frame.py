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

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["MULTI_FIELDS", "SCALAR_FIELDS", "MatchFrame"]

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

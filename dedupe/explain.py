"""Why two records do or do not match: the waterfall of one pair, as plain data.

Starting from the prior (how likely any candidate pair is a match), each field adds its
weight, ``log2(m / u)`` of the level the pair reached on it (for a common value, such as the
surname "smith", less: the term-frequency adjustment, shown on its own too); a model with a
household class then takes back what the pair's agreement says only about living together
(the household step, 0 for a model without one); the total weight gives the probability.
Stewards see exactly the arithmetic the matcher did, field by field, so a suggestion can be
judged on its evidence (the review screens and ``crmhub review`` render this).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from crmhub.dedupe.compare import DEFAULT_COMPARISONS, Comparison, compare
from crmhub.dedupe.frame import MatchFrame
from crmhub.dedupe.model import FellegiSunter

__all__ = ["FieldEvidence", "PairExplanation", "explain_pair"]


@dataclass(frozen=True)
class FieldEvidence:
    """One field's step of the waterfall."""

    field: str
    left: Any
    right: Any
    level: int
    label: str
    weight: float
    cumulative: float  # the running total after this field
    adjustment: float = 0.0  # of ``weight``, the term-frequency adjustment


@dataclass(frozen=True)
class PairExplanation:
    """A pair's whole waterfall: prior, each field, total and probability."""

    left_id: int
    right_id: int
    prior_weight: float
    fields: tuple[FieldEvidence, ...]
    total_weight: float
    probability: float
    household_weight: float = 0.0  # after the fields: <= 0, see :mod:`crmhub.dedupe.model`

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for the API and the CLI."""
        return {
            "left_id": self.left_id,
            "right_id": self.right_id,
            "prior_weight": self.prior_weight,
            "fields": [vars(f) for f in self.fields],
            "household_weight": self.household_weight,
            "total_weight": self.total_weight,
            "probability": self.probability,
        }


def _value(frame: MatchFrame, name: str, row: int) -> Any:
    if name in frame.multis:
        return list(frame.multis[name][row])
    return frame.scalar(name)[row]


def explain_pair(
    frame: MatchFrame,
    left_row: int,
    right_row: int,
    model: FellegiSunter,
    comparisons: Sequence[Comparison] = DEFAULT_COMPARISONS,
) -> PairExplanation:
    """The waterfall of the pair (``left_row``, ``right_row``) of ``frame`` under ``model``."""
    left = np.array([left_row], dtype=np.int64)
    right = np.array([right_row], dtype=np.int64)
    levels = compare(frame, left, right, comparisons)
    weights = model.field_weights(levels)
    plain = {name: params.weights for name, params in model.fields.items()}
    prior_weight = math.log2(model.prior / (1.0 - model.prior))
    running = prior_weight
    steps: list[FieldEvidence] = []
    for comparison in comparisons:
        if comparison.name not in model.fields:
            continue
        level = int(levels[comparison.name][0])
        weight = float(weights[comparison.name][0])
        running += weight
        steps.append(
            FieldEvidence(
                field=comparison.name,
                left=_value(frame, comparison.field, left_row),
                right=_value(frame, comparison.field, right_row),
                level=level,
                label=comparison.levels[level],
                weight=weight,
                cumulative=running,
                adjustment=weight - float(plain[comparison.name][level]),
            )
        )
    household = float(model.household_weight(levels)[0])
    total = running + household - prior_weight
    probability = float(model.probability_of_weight(np.array([total]))[0])
    return PairExplanation(
        left_id=int(frame.ids[left_row]),
        right_id=int(frame.ids[right_row]),
        prior_weight=prior_weight,
        fields=tuple(steps),
        total_weight=total,
        probability=probability,
        household_weight=household,
    )

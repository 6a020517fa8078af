"""Fellegi-Sunter scoring: how much each field's comparison level says "same person".

For every field and level, ``m`` is the probability of that level among true matches and
``u`` among non-matches. A pair's match weight is the sum over fields of ``log2(m / u)`` of
its levels (level 0, "null", is no evidence: weight 0); with the prior ``lambda`` (the share
of candidate pairs that match) the weight becomes a probability.

- ``u`` is estimated from random record pairs, which are almost all non-matches;
- ``m`` and ``lambda`` by expectation-maximisation over the blocked candidate pairs, with
  ``u`` held fixed (as Splink does), or directly from pairs a steward accepted or rejected.

Everything is vectorised over pairs: a level array per field (``int8``, one entry per pair,
as :mod:`crmhub.dedupe.compare` produces) in, a float array out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from crmhub.errors import DedupeError

__all__ = ["FellegiSunter", "FieldParams", "FitReport"]

Levels = Mapping[str, npt.NDArray[np.integer[Any]]]
FloatArray = npt.NDArray[np.float64]

_FLOOR = 1e-6  # no level is impossible: an unseen level must not give an infinite weight


@dataclass
class FieldParams:
    """m and u of one field, per level (index 0, "null", is unused and kept at 1)."""

    m: FloatArray
    u: FloatArray

    @property
    def weights(self) -> FloatArray:
        """``log2(m / u)`` per level; 0 for the null level."""
        weights = np.log2(np.maximum(self.m, _FLOOR) / np.maximum(self.u, _FLOOR))
        weights[0] = 0.0
        return weights


@dataclass
class FitReport:
    """How a fit went: EM iterations, whether it converged, the pairs it used."""

    iterations: int = 0
    converged: bool = False
    pairs: int = 0
    history: list[float] = field(default_factory=list)  # lambda after each iteration


@dataclass
class FellegiSunter:
    """A Fellegi-Sunter model over named fields with a known number of levels each."""

    fields: dict[str, FieldParams]
    prior: float = 1e-4

    @classmethod
    def initial(cls, level_counts: Mapping[str, int], prior: float = 1e-4) -> FellegiSunter:
        """A starting model: agreement levels likelier among matches, disagreement among
        non-matches (EM converges from here; the exact start matters little)."""
        fields = {}
        for name, count in level_counts.items():
            if count < 2:
                raise DedupeError(f"field {name!r} needs at least a null and one more level")
            ramp = np.linspace(0.05, 1.0, count - 1) ** 2
            m = np.r_[1.0, ramp / ramp.sum()]
            u = np.r_[1.0, ramp[::-1] / ramp.sum()]
            fields[name] = FieldParams(m=m, u=u)
        return cls(fields=fields, prior=prior)

    # ------------------------------------------------------------------ scoring
    def match_weight(self, levels: Levels) -> FloatArray:
        """The total match weight of each pair (bits of evidence for a match)."""
        total: FloatArray | None = None
        for name, params in self.fields.items():
            contribution = params.weights[np.asarray(levels[name], dtype=np.intp)]
            total = contribution if total is None else total + contribution
        if total is None:
            raise DedupeError("the model has no fields")
        return total

    def probability(self, levels: Levels) -> FloatArray:
        """The match probability of each pair, given the prior."""
        return self.probability_of_weight(self.match_weight(levels))

    def probability_of_weight(self, weight: FloatArray) -> FloatArray:
        """Turn match weights into probabilities with the model's prior."""
        prior_odds = self.prior / (1.0 - self.prior)
        odds = prior_odds * np.exp2(np.clip(weight, -1000, 1000))
        return odds / (1.0 + odds)

    # ------------------------------------------------------------------ fitting
    def fit_u(self, random_levels: Levels) -> None:
        """Set u from the levels of random record pairs (nearly all non-matches)."""
        for name, params in self.fields.items():
            params.u = _level_frequencies(random_levels[name], len(params.u))

    def fit_em(
        self,
        levels: Levels,
        *,
        max_iterations: int = 50,
        tolerance: float = 1e-5,
        fix_u: bool = True,
        exclude: frozenset[str] = frozenset(),
    ) -> FitReport:
        """Estimate m (and the prior) by expectation-maximisation over candidate pairs.

        Args:
            levels: comparison levels of the blocked candidate pairs.
            max_iterations: stop after this many rounds.
            tolerance: stop when no parameter moves by more than this.
            fix_u: keep u as estimated from random pairs (recommended: EM alone can learn a
                different "match" class, such as "same household").
            exclude: fields that neither count as evidence nor get estimated: the fields the
                pairs were blocked on, which agree by construction (see
                :mod:`crmhub.dedupe.training`).
        """
        names = [name for name in self.fields if name not in exclude]
        coded = {name: np.asarray(levels[name], dtype=np.intp) for name in names}
        pairs = len(next(iter(coded.values()))) if coded else 0
        report = FitReport(pairs=pairs)
        if pairs == 0:
            return report
        for iteration in range(1, max_iterations + 1):
            log_m = sum(np.log(np.maximum(self.fields[n].m, _FLOOR))[coded[n]] for n in names)
            log_u = sum(np.log(np.maximum(self.fields[n].u, _FLOOR))[coded[n]] for n in names)
            # Posterior probability that each pair is a match (in log space: many fields).
            a = np.log(self.prior) + log_m
            b = np.log1p(-self.prior) + log_u
            posterior = np.exp(a - np.logaddexp(a, b))
            moved = 0.0
            for name in names:
                params = self.fields[name]
                new_m = _weighted_frequencies(coded[name], posterior, len(params.m))
                moved = max(moved, float(np.abs(new_m - params.m).max()))
                params.m = new_m
                if not fix_u:
                    new_u = _weighted_frequencies(coded[name], 1.0 - posterior, len(params.u))
                    moved = max(moved, float(np.abs(new_u - params.u).max()))
                    params.u = new_u
            new_prior = float(np.clip(posterior.mean(), _FLOOR, 1.0 - _FLOOR))
            moved = max(moved, abs(new_prior - self.prior))
            self.prior = new_prior
            report.iterations = iteration
            report.history.append(new_prior)
            if moved < tolerance:
                report.converged = True
                break
        return report

    def fit_prior(self, levels: Levels, total_pairs: int, *, max_iterations: int = 100) -> float:
        """Set the prior to the probability that two random records match.

        A fixed point over all ``total_pairs`` record pairs: the expected number of matches
        is the sum of the candidates' match probabilities (pairs blocking did not propose
        count as non-matches), and the prior is that number over ``total_pairs``. With u from
        random pairs and m from training sessions, this is the prior the posterior needs.
        """
        if total_pairs <= 0:
            raise DedupeError("no record pairs to estimate the prior over")
        weight = self.match_weight(levels)
        for _ in range(max_iterations):
            expected = float(self.probability_of_weight(weight).sum())
            prior = min(max(expected / total_pairs, 1e-12), 0.5)
            if abs(prior - self.prior) <= 1e-3 * self.prior:
                self.prior = prior
                break
            self.prior = prior
        return self.prior

    def fit_labels(self, levels: Levels, is_match: npt.NDArray[np.bool_]) -> None:
        """Set m from pairs a steward accepted (``is_match``) and, when there are enough
        rejected ones, u from those; the rest of the model is kept."""
        is_match = np.asarray(is_match, dtype=bool)
        if not is_match.any():
            raise DedupeError("no accepted pairs to learn m from")
        for name, params in self.fields.items():
            coded = np.asarray(levels[name], dtype=np.intp)
            params.m = _level_frequencies(coded[is_match], len(params.m))
            if (~is_match).sum() >= 50:
                params.u = _level_frequencies(coded[~is_match], len(params.u))

    # ------------------------------------------------------------------ storage
    def to_json(self) -> dict[str, Any]:
        """The model as plain JSON (for ``dedupe_models.params``)."""
        return {
            "prior": self.prior,
            "fields": {
                name: {"m": p.m.tolist(), "u": p.u.tolist()} for name, p in self.fields.items()
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FellegiSunter:
        """Rebuild a model saved with :meth:`to_json`."""
        try:
            fields = {
                name: FieldParams(m=np.asarray(p["m"], float), u=np.asarray(p["u"], float))
                for name, p in data["fields"].items()
            }
            return cls(fields=fields, prior=float(data["prior"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DedupeError(f"stored dedupe model is not readable: {exc}") from None


def _level_frequencies(levels: npt.NDArray[np.integer[Any]], count: int) -> FloatArray:
    """Share of each non-null level among the non-null entries (add-one smoothed)."""
    counts = np.bincount(np.asarray(levels, dtype=np.intp), minlength=count)[:count].astype(float)
    counts[0] = 0.0
    counts[1:] += 1.0
    out = np.r_[1.0, counts[1:] / counts[1:].sum()]
    return out


def _weighted_frequencies(
    levels: npt.NDArray[np.intp], weights: FloatArray, count: int
) -> FloatArray:
    """Like :func:`_level_frequencies`, each pair counted with its weight (EM's M-step)."""
    sums = np.bincount(levels, weights=weights, minlength=count)[:count]
    sums[0] = 0.0
    total = sums[1:].sum()
    if total <= 0:
        return np.r_[1.0, np.full(count - 1, 1.0 / (count - 1))]
    smoothed = (sums[1:] + _FLOOR) / (total + _FLOOR * (count - 1))
    return np.r_[1.0, smoothed]

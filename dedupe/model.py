"""Fellegi-Sunter scoring: how much each field's comparison level says "same person".

For every field and level, ``m`` is the probability of that level among true matches and
``u`` among non-matches. A pair's match weight is the sum over fields of ``log2(m / u)`` of
its levels (level 0, "null", is no evidence: weight 0); with the prior ``lambda`` (the share
of record pairs that match) the weight becomes a probability.

- ``u`` is estimated from random record pairs, which are almost all non-matches (the few
  matches among them are taken out once ``m`` and the prior are known: for levels such as
  "same email" they would otherwise be most of the count);
- ``m`` and ``lambda`` by expectation-maximisation over the blocked candidate pairs, with
  ``u`` held fixed (as Splink does), or directly from pairs a steward accepted or rejected.

Two refinements, each optional and stored with the model:

- **term frequencies** (Splink's tf adjustment): agreeing on a common value is weaker
  evidence than agreeing on a rare one. For the levels of a comparison that mean "same
  value", the average ``u`` is replaced by the value's own frequency ``f``: the weight gains
  ``log2(u / f)``. Frequencies are kept per value digest (never the value itself), for values
  seen at least a few times; the others share one "rare value" frequency.
- **households**: family members share a surname, an address and often a phone, so among
  non-matches those agreements are not independent, and an independent model counts them
  as three strong pieces of evidence for a match. A third class, "same household, another
  person", with its own level probabilities ``h`` and share ``household_prior``, absorbs
  them: the match weight gains ``-log2((lambda_u + lambda_h * 2**W_h) / (lambda_u +
  lambda_h))``, where ``W_h`` is the household weight ``sum log2(h / u)``. That term is
  near 0 unless the pair looks like two people of one household (agreeing where a family
  agrees, disagreeing on first name and birth date), when it takes the household evidence
  back.

Everything is vectorised over pairs: a level array per field (``int8``, one entry per pair,
as :mod:`crmhub.dedupe.compare` produces) in, a float array out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from crmhub.dedupe.compare import PairLevels, field_digests
from crmhub.dedupe.frame import MatchFrame
from crmhub.errors import DedupeError

__all__ = ["FellegiSunter", "FieldParams", "FitReport", "TermFrequencies"]

Levels = Mapping[str, npt.NDArray[np.integer[Any]]]
FloatArray = npt.NDArray[np.float64]

_FLOOR = 1e-6  # no level is impossible: an unseen level must not give an infinite weight
_PSEUDO_COUNT = 1.0  # EM's estimates are add-one smoothed, like frequencies of counted pairs


@dataclass
class FieldParams:
    """m, u and (optionally) h of one field, per level (index 0, "null", is unused, kept at
    1). ``h`` is the level distribution of household members (another person of the same
    household); None when the model has no household class."""

    m: FloatArray
    u: FloatArray
    h: FloatArray | None = None

    @property
    def weights(self) -> FloatArray:
        """``log2(m / u)`` per level; 0 for the null level."""
        return _log_ratio(self.m, self.u)

    @property
    def household_weights(self) -> FloatArray:
        """``log2(h / u)`` per level (0 everywhere without ``h``)."""
        return _log_ratio(self.h, self.u) if self.h is not None else np.zeros(len(self.u))


def _log_ratio(top: FloatArray, bottom: FloatArray) -> FloatArray:
    weights = np.log2(np.maximum(top, _FLOOR) / np.maximum(bottom, _FLOOR))
    weights[0] = 0.0
    return weights


@dataclass
class TermFrequencies:
    """How often each common value of a frame field occurs, by value digest.

    Attributes:
        field: the frame field counted (``"last_name"``).
        levels: the comparison levels that mean "same value of ``field``".
        digests: sorted :func:`~crmhub.dedupe.blocking.key_digest` of each counted value.
        counts: occurrences of each, in ``digests`` order.
        total: the non-null values counted.
        rare: the frequency given to any value not in the table (seen too seldom to keep,
            or never seen): the mean frequency of the values left out.
        given: another field (comparison) name; when a pair agrees on it too, this value's
            frequency is its frequency among records sharing that value: the ``joint``
            count over the ``given`` one (see ``Comparison.tf_given``).
        joint: counts of the joint field (both values together), for ``given``.
    """

    field: str
    levels: tuple[int, ...]
    digests: npt.NDArray[np.bytes_]
    counts: npt.NDArray[np.int64]
    total: int
    rare: float
    given: str | None = None
    joint: TermFrequencies | None = None

    @classmethod
    def count(
        cls,
        frame: MatchFrame,
        field: str,
        levels: tuple[int, ...],
        *,
        min_count: int = 5,
        max_values: int = 50_000,
    ) -> TermFrequencies:
        """Count the values of ``field`` in ``frame``. Only values seen ``min_count`` times
        or more are kept (a rarer value is no one's "common name", and keeping it would
        store a near-unique personal value), at most ``max_values`` of them, most common
        first."""
        codes, digests = field_digests(frame, field)
        counts = np.bincount(codes[codes >= 0], minlength=len(digests)).astype(np.int64)
        total = int(counts.sum())
        keep = np.flatnonzero(counts >= min_count)
        keep = keep[np.argsort(-counts[keep], kind="stable")[:max_values]]
        left_out = np.ones(len(counts), dtype=bool)
        left_out[keep] = False
        rare_values = int(left_out.sum())
        rare = float(counts[left_out].sum()) / rare_values / total if rare_values else 0.0
        order = np.argsort(digests[keep])
        return cls(field, levels, digests[keep][order], counts[keep][order], total, rare)

    @property
    def rare_frequency(self) -> float:
        """The frequency of a value not in the table (never below one in ``total``: a value
        seen once is as rare as it gets)."""
        return max(self.rare, 1.0 / max(self.total, 1))

    def frequencies(self, digests: npt.NDArray[np.bytes_]) -> FloatArray:
        """The frequency of each value (given as its digest) among the counted values."""
        out = np.full(len(digests), self.rare_frequency, dtype=np.float64)
        at, found = self._find(digests)
        out[found] = self.counts[at[found]] / self.total
        return out

    def holds(self, digests: npt.NDArray[np.bytes_]) -> npt.NDArray[np.bool_]:
        """Whether each value (given as its digest) is in the table."""
        return self._find(digests)[1]

    def _find(
        self, digests: npt.NDArray[np.bytes_]
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
        if not (len(self.digests) and len(digests)):
            return np.zeros(len(digests), dtype=np.intp), np.zeros(len(digests), dtype=bool)
        at = np.searchsorted(self.digests, digests).clip(max=len(self.digests) - 1)
        return at, self.digests[at] == digests

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: digests as hex text, never the values."""
        data: dict[str, Any] = {
            "field": self.field,
            "levels": list(self.levels),
            "digests": [d.decode("ascii") for d in self.digests.tolist()],
            "counts": self.counts.tolist(),
            "total": self.total,
            "rare": self.rare,
        }
        if self.given is not None and self.joint is not None:
            data["given"] = self.given
            data["joint"] = self.joint.to_json()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TermFrequencies:
        """Rebuild a table saved with :meth:`to_json`."""
        digests = np.array([str(d).encode("ascii") for d in data["digests"]], dtype="S20")
        counts = np.asarray(data["counts"], dtype=np.int64)
        if len(digests) != len(counts) or bool(np.any(digests[1:] < digests[:-1])):
            raise ValueError("term frequencies are not sorted digests with one count each")
        levels = tuple(int(level) for level in data["levels"])
        joint = cls.from_json(data["joint"]) if data.get("joint") else None
        total, rare, given = int(data["total"]), float(data["rare"]), data.get("given")
        return cls(str(data["field"]), levels, digests, counts, total, rare, given, joint)


@dataclass
class FitReport:
    """How a fit went: EM iterations, whether it converged, the pairs it used."""

    iterations: int = 0
    converged: bool = False
    pairs: int = 0
    history: list[float] = field(default_factory=list)  # the share of matches, by iteration
    matches: float = 0.0  # the expected number of matches among the pairs, at the end


@dataclass
class FellegiSunter:
    """A Fellegi-Sunter model over named fields with a known number of levels each.

    Attributes:
        fields: m, u (and h) per field.
        prior: the probability that two random records are one person.
        household_prior: the probability that two random records are two people of one
            household (0: no household class).
        tf: term-frequency tables, by field (comparison) name.
    """

    fields: dict[str, FieldParams]
    prior: float = 1e-4
    household_prior: float = 0.0
    tf: dict[str, TermFrequencies] = field(default_factory=dict)

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

    @property
    def has_households(self) -> bool:
        """Whether the household class takes part in scoring."""
        return self.household_prior > 0 and all(p.h is not None for p in self.fields.values())

    # ------------------------------------------------------------------ scoring
    def field_weights(self, levels: Levels) -> dict[str, FloatArray]:
        """Each field's weight per pair: ``log2(m / u)`` of its level, plus the
        term-frequency adjustment where the model has a table for the field and ``levels``
        came from :func:`~crmhub.dedupe.compare.compare` (which remembers the rows)."""
        weights: dict[str, FloatArray] = {}
        self._evidence(levels, weights)
        return weights

    def household_weight(self, levels: Levels) -> FloatArray:
        """The household term of each pair's match weight: ``<= 0``, near 0 unless the pair
        looks like two people of one household (see the module docstring)."""
        total, household = self._evidence(levels)
        return np.zeros(len(total)) if household is None else self._household_term(household)

    def match_weight(self, levels: Levels) -> FloatArray:
        """The total match weight of each pair (bits of evidence for a match): the fields'
        weights and the household term."""
        total, household = self._evidence(levels)
        return total if household is None else total + self._household_term(household)

    def _evidence(
        self, levels: Levels, fields: dict[str, FloatArray] | None = None
    ) -> tuple[FloatArray, FloatArray | None]:
        """The sum of the fields' weights of each pair (term frequencies included), and the
        household evidence ``W_h`` of each pair (None without a household class). Each
        field's weights go into ``fields`` when given (summing alone keeps two arrays, not
        one per field, on millions of pairs)."""
        if not self.fields:
            raise DedupeError("the model has no fields")
        missing = [name for name in self.fields if name not in levels]
        if missing:
            raise DedupeError(
                f"no comparison levels for {', '.join(missing)}: the model was trained with "
                "other comparisons (train it again)"
            )
        adjustments = self._tf_adjustments(levels)
        size = len(np.asarray(levels[next(iter(self.fields))]))
        total = np.zeros(size)
        household = np.zeros(size) if self.has_households else None
        for name, params in self.fields.items():
            coded = np.asarray(levels[name], dtype=np.intp)
            adjustment = adjustments.get(name)
            weight = params.weights[coded]
            if adjustment is not None:
                weight += adjustment
            total += weight
            if fields is not None:
                fields[name] = weight
            if household is not None:
                household += params.household_weights[coded]
                if adjustment is not None:  # a common surname is as common among families
                    household += adjustment
        return total, household

    def probability(self, levels: Levels) -> FloatArray:
        """The match probability of each pair, given the prior."""
        return self.probability_of_weight(self.match_weight(levels))

    def probability_of_weight(self, weight: FloatArray) -> FloatArray:
        """Turn match weights into probabilities with the model's prior."""
        prior_odds = self.prior / (1.0 - self.prior)
        odds = prior_odds * np.exp2(np.clip(weight, -1000, 1000))
        return odds / (1.0 + odds)

    def _household_term(self, evidence: FloatArray) -> FloatArray:
        """``-log2((lu + lh * 2**evidence) / (lu + lh))`` of household evidence ``W_h``."""
        lh = self.household_prior
        lu = max(1.0 - self.prior - lh, _FLOOR)
        return -(np.logaddexp2(np.log2(lu), np.log2(lh) + evidence) - np.log2(lu + lh))

    def _tf_adjustments(self, levels: Levels) -> dict[str, FloatArray]:
        """Per field with a table: ``log2(u / f)`` for pairs at its "same value" levels,
        ``f`` the frequency of the (left) value; 0 elsewhere. Empty when the rows of the
        pairs are unknown (levels not from :func:`~crmhub.dedupe.compare.compare`)."""
        if not (self.tf and isinstance(levels, PairLevels)):
            return {}
        if levels.frame is None or levels.left is None:
            return {}
        out: dict[str, FloatArray] = {}
        for name, table in self.tf.items():
            if name not in self.fields:
                continue
            level = np.asarray(levels[name], dtype=np.intp)
            on = np.flatnonzero(_at_levels(level, table.levels))
            adjustment = np.zeros(len(level))
            if on.size:
                rows = levels.left[on]
                frequency = _frequencies_of_rows(table, levels.frame, rows)
                given_name = table.given
                given = self.tf.get(given_name) if given_name else None
                if given_name and given and table.joint is not None and given_name in levels:
                    given_level = np.asarray(levels[given_name], dtype=np.intp)[on]
                    both = _at_levels(given_level, given.levels)
                    frequency[both] = _conditional_frequencies(
                        table, given, levels.frame, rows[both], frequency[both]
                    )
                u = np.maximum(self.fields[name].u[level[on]], _FLOOR)
                adjustment[on] = np.log2(u / frequency)
            out[name] = adjustment
        return out

    # ------------------------------------------------------------------ fitting
    def fit_u(
        self, random_levels: Levels, *, match_share: float = 0.0, household_share: float = 0.0
    ) -> None:
        """Set u from the levels of random record pairs.

        Args:
            random_levels: levels of random record pairs, nearly all strangers.
            match_share: the share of them expected to match (the prior, once known): their
                expected levels, from m, are taken out of the counts first. For a level
                such as "same email", the few true matches among random pairs would
                otherwise be most of what is counted, and its u far too high.
            household_share: likewise, the share expected to be two people of one household
                (the household prior), whose expected levels come from h.
        """
        for name, params in self.fields.items():
            coded = np.asarray(random_levels[name], dtype=np.intp)
            counts = np.bincount(coded, minlength=len(params.u))[: len(params.u)].astype(float)
            counts[0] = 0.0
            if match_share > 0 or household_share > 0:
                expected = match_share * params.m[1:]
                if params.h is not None:
                    expected = expected + household_share * params.h[1:]
                # What is left is at least half a pair: an unseen level stays possible, and
                # rarer the more pairs were drawn.
                counts[1:] = np.maximum(counts[1:] - counts.sum() * expected, 0.5)
            else:
                counts[1:] += 1.0
            params.u = np.r_[1.0, counts[1:] / counts[1:].sum()]

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
            report.matches = float(posterior.sum())
            if moved < tolerance:
                report.converged = True
                break
        return report

    def fit_household(
        self,
        levels: Levels,
        *,
        exclude: frozenset[str] = frozenset(),
        max_iterations: int = 100,
        tolerance: float = 1e-5,
    ) -> FitReport:
        """Estimate h, the level distribution of household members, by EM over pairs
        blocked on what a household shares (surname and address, say).

        Two classes among these pairs: matches (m fixed) and household members (h estimated,
        starting from u). Strangers are not a third class: blocked on a surname and an
        address, the few there are belong with the family members, and with the blocking
        fields left out, family members look much like strangers, so the two classes would
        trade pairs without end. The pairs' own blocking fields (``exclude``) agree by
        construction, so nothing is learnt about them here: their h is set to m (members of
        a household share a surname and an address as reliably as one person's records do).
        The share of matches among these pairs is estimated too, but the model's priors are
        not changed (see :meth:`fit_prior`).
        """
        names = [name for name in self.fields if name not in exclude]
        coded = {name: np.asarray(levels[name], dtype=np.intp) for name in names}
        pairs = len(next(iter(coded.values()))) if coded else 0
        report = FitReport(pairs=pairs)
        h = {name: self.fields[name].u.copy() for name in names}
        if pairs:
            log_m = sum(np.log(np.maximum(self.fields[n].m, _FLOOR))[coded[n]] for n in names)
            share = 0.5  # of matches among the pairs
            for iteration in range(1, max_iterations + 1):
                log_h = sum(np.log(np.maximum(h[n], _FLOOR))[coded[n]] for n in names)
                a, b = np.log(share) + log_m, np.log1p(-share) + log_h
                posterior = np.exp(b - np.logaddexp(a, b))  # of being family members
                moved = 0.0
                for name in names:
                    new_h = _weighted_frequencies(coded[name], posterior, len(h[name]))
                    moved = max(moved, float(np.abs(new_h - h[name]).max()))
                    h[name] = new_h
                new_share = float(np.clip(1.0 - posterior.mean(), _FLOOR, 1.0 - _FLOOR))
                moved = max(moved, abs(new_share - share))
                share = new_share
                report.iterations = iteration
                report.history.append(share)
                report.matches = float(pairs - posterior.sum())
                if moved < tolerance:
                    report.converged = True
                    break
        for name, params in self.fields.items():
            params.h = h[name] if name in h else params.m.copy()
        return report

    def drop_households(self) -> None:
        """Remove the household class (when training found no households to speak of)."""
        self.household_prior = 0.0
        for params in self.fields.values():
            params.h = None

    def fit_prior(self, levels: Levels, total_pairs: int, *, max_iterations: int = 100) -> float:
        """Set the prior to the probability that two random records match (and, with a
        household class, the household prior to the probability that they are two people
        of one household).

        A fixed point over all ``total_pairs`` record pairs: the expected number of matches
        is the sum of the candidates' match probabilities (pairs blocking did not propose
        count as non-matches), and the prior is that number over ``total_pairs``. With u from
        random pairs and m from training sessions, this is the prior the posterior needs.
        """
        if total_pairs <= 0:
            raise DedupeError("no record pairs to estimate the prior over")
        match, household = self._evidence(levels)
        # A pair with 60 bits against both classes adds under 2**-60 to either, whatever
        # the priors (at most 0.5): most candidates, left out of the iterations.
        keep = match > -60 if household is None else (match > -60) | (household > -60)
        match = match[keep]
        household = None if household is None else household[keep]
        for _ in range(max_iterations):
            lm, lh = self.prior, self.household_prior
            lu = max(1.0 - lm - lh, _FLOOR)
            # Posteriors of the classes, each class's log-odds against strangers.
            odds = [np.log2(lm / lu) + match]
            if household is not None:
                odds.append(np.log2(max(lh, 1e-300) / lu) + household)
            top = np.maximum(np.maximum.reduce(odds), 0.0)
            scaled = [np.exp2(o - top) for o in odds]
            norm = np.exp2(-top) + sum(scaled)
            prior = min(max(float((scaled[0] / norm).sum()) / total_pairs, 1e-12), 0.5)
            moved = abs(prior - lm) / lm
            if household is not None:
                share = float((scaled[1] / norm).sum()) / total_pairs
                self.household_prior = min(max(share, 1e-12), 0.5)
                moved = max(moved, abs(self.household_prior - lh) / max(lh, 1e-12))
            self.prior = prior
            if moved <= 1e-3:
                break
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

    def make_monotone(self, names: Iterable[str]) -> None:
        """Raise m where needed so that the weights of each named field do not decrease
        from one level to the next (for levels that are nested bands of one similarity: a
        band few pairs reach must not weigh less than a looser one)."""
        for name in names:
            params = self.fields[name]
            m = params.m.copy()
            for level in range(2, len(m)):
                # Weight of the previous level, from the m as raised so far.
                floor = params.u[level] * m[level - 1] / max(params.u[level - 1], _FLOOR)
                m[level] = max(m[level], floor)
            m[1:] /= m[1:].sum()
            params.m = m

    # ------------------------------------------------------------------ storage
    def to_json(self) -> dict[str, Any]:
        """The model as plain JSON (for ``dedupe_models.params``): parameters, and term
        frequencies by value digest only."""
        fields: dict[str, dict[str, list[float]]] = {}
        for name, p in self.fields.items():
            fields[name] = {"m": p.m.tolist(), "u": p.u.tolist()}
            if p.h is not None:
                fields[name]["h"] = p.h.tolist()
        return {
            "prior": self.prior,
            "household_prior": self.household_prior,
            "fields": fields,
            "tf": {name: table.to_json() for name, table in self.tf.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FellegiSunter:
        """Rebuild a model saved with :meth:`to_json` (models saved before households and
        term frequencies existed load without them)."""
        try:
            fields = {
                name: FieldParams(
                    m=np.asarray(p["m"], float),
                    u=np.asarray(p["u"], float),
                    h=np.asarray(p["h"], float) if p.get("h") is not None else None,
                )
                for name, p in data["fields"].items()
            }
            tf = {name: TermFrequencies.from_json(t) for name, t in data.get("tf", {}).items()}
            return cls(
                fields=fields,
                prior=float(data["prior"]),
                household_prior=float(data.get("household_prior", 0.0)),
                tf=tf,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DedupeError(f"stored dedupe model is not readable: {exc}") from None


def _at_levels(level: npt.NDArray[np.intp], levels: tuple[int, ...]) -> npt.NDArray[np.bool_]:
    """Whether each pair's level is one of ``levels``: ``np.isin`` by a lookup table, several
    times faster on millions of pairs."""
    table = np.zeros(max(int(level.max(initial=0)), *levels, 0) + 1, dtype=bool)
    table[list(levels)] = True
    return table[level]


def _frequencies_of_rows(
    table: TermFrequencies, frame: MatchFrame, rows: npt.NDArray[np.intp]
) -> FloatArray:
    """The frequency of the value of ``table.field`` in each of ``rows`` (a row without a
    value reads the rare-value frequency)."""
    codes, digests = field_digests(frame, table.field)
    frequencies = np.append(table.frequencies(digests), table.rare_frequency)
    return frequencies[np.where(codes[rows] >= 0, codes[rows], len(digests))]


def _conditional_frequencies(
    table: TermFrequencies,
    given: TermFrequencies,
    frame: MatchFrame,
    rows: npt.NDArray[np.intp],
    marginal: FloatArray,
) -> FloatArray:
    """The frequency of each row's ``table.field`` value among records sharing its ``given``
    value: the count of both together over the count of the given value alone. Where the
    given value is not in its table (too rare to know what goes with it) or the frame has no
    joint value, the ``marginal`` frequency stands."""
    assert table.joint is not None
    joint_codes, _ = field_digests(frame, table.joint.field)
    given_codes, given_digests = field_digests(frame, given.field)
    known = (joint_codes[rows] >= 0) & (given_codes[rows] >= 0)
    known[known] = given.holds(given_digests)[given_codes[rows[known]]]
    joint = _frequencies_of_rows(table.joint, frame, rows) * table.joint.total
    alone = _frequencies_of_rows(given, frame, rows) * given.total
    conditional = np.clip(joint / np.maximum(alone, 1.0), 1.0 / max(table.total, 1), 1.0)
    return np.where(known, conditional, marginal)


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
    # Add-one: a level no pair reached in this sample is rare, not impossible (its weight
    # would otherwise be set by the floor, -20 bits, whatever the data).
    smoothed = (sums[1:] + _PSEUDO_COUNT) / (total + _PSEUDO_COUNT * (count - 1))
    return np.r_[1.0, smoothed]

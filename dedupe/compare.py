"""Field comparisons: each candidate pair gets a small integer level per field, in bulk.

As in Fellegi-Sunter (and Splink), a comparison maps a pair of records to a level: 0 is
"null" (one side unknown: no evidence either way), 1 is disagreement, and higher levels are
stronger agreement up to the top level, exact. :mod:`crmhub.dedupe.model` turns levels into
weights, so the level order only decides which level a pair falls into when several hold.

Everything works on arrays of pairs (``left``/``right`` are row indices into a
:class:`~crmhub.dedupe.frame.MatchFrame`). Per frame and field, values are factorised once to
integer codes (cached until the frame is garbage-collected; frames are never modified), so
null and exact tests are integer comparisons. String similarity runs in rapidfuzz's
``cpdist`` only for pairs that could reach a threshold: a cheap bound from lengths and
character-set bitmasks rules out most pairs first, because ``cpdist`` costs ~150 ns a pair in
conversion alone. Empty strings count as unknown, like ``None``.

:func:`compare` returns a :class:`PairLevels`: the levels per comparison, plus the frame and
rows they were computed on, so a model can look up term frequencies of the compared values
(a common surname agreeing is weaker evidence than a rare one) without another argument.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from dataclasses import field as dc_field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
from rapidfuzz.distance import OSA, JaroWinkler, Levenshtein
from rapidfuzz.process import cpdist

from crmhub.dedupe.blocking import key_digest
from crmhub.dedupe.frame import MatchFrame, factorise_sets
from crmhub.hookspecs import hookimpl

__all__ = [
    "BUILTIN_COMPARATORS", "DEFAULT_COMPARISONS", "Comparison", "PairLevels",
    "address_comparison", "compare", "date_comparison", "exact", "explain_levels",
    "field_digests", "jaro_winkler", "levenshtein", "name_comparison",
    "register_comparators", "set_comparison", "surname_comparison",
]  # fmt: skip

Rows = npt.NDArray[np.intp]
Codes = npt.NDArray[np.int32]
LevelArray = npt.NDArray[np.int8]
Kernel = Callable[["Comparison", MatchFrame, Rows, Rows], LevelArray]


@dataclass(frozen=True)
class Comparison:
    """One field's comparison: name, the frame field(s) it reads, and its level labels.

    Attributes:
        name: key of its levels in :func:`compare`'s result.
        field: the frame field it reads (some also read derived fields, see their factory).
        levels: labels, index = level; ``levels[0] == "null"``, the last is the strongest.
        kernel: ``kernel(comparison, frame, left, right)`` returns the levels; plugins may
            supply their own.
        params: the thresholds the kernel reads.
        tf_field: the frame field whose value frequencies adjust the weight of ``tf_levels``
            (term-frequency adjustment, as in Splink): two records agreeing on a common value
            ("smith") are less alike than two agreeing on a rare one. None: no adjustment.
        tf_levels: the levels (agreement on ``tf_field``'s value) the adjustment applies to.
        tf_given: ``(comparison, joint field)``: when that other comparison agrees too (at
            its own ``tf_levels``), the value's frequency is taken among records sharing the
            other value, from the counts of the frame field holding both (a surname given the
            first name, from ``full_name``). Names are not independent: "murphy" is a rare
            first name, but given it, "sean" is the usual surname (a swapped "Sean Murphy").
        monotone: the levels are nested bands of one similarity (``else`` < ``jw>=0.85`` <
            ``jw>=0.92`` < ``exact``): training keeps their weights in that order, so a level
            few pairs reach cannot weigh less than a looser one.
    """

    name: str
    field: str
    levels: tuple[str, ...]
    kernel: Kernel = dc_field(repr=False, compare=False)
    params: tuple[float, ...] = ()
    tf_field: str | None = None
    tf_levels: tuple[int, ...] = ()
    monotone: bool = False
    tf_given: tuple[str, str] | None = None

    def compute(self, frame: MatchFrame, left: npt.ArrayLike, right: npt.ArrayLike) -> LevelArray:
        """Levels of the pairs ``(left[i], right[i])``, row indices into ``frame``.

        Returns:
            an ``int8`` array, one level per pair, each in ``range(len(self.levels))``.
        """
        lrows, rrows = np.asarray(left, dtype=np.intp), np.asarray(right, dtype=np.intp)
        if lrows.ndim != 1 or lrows.shape != rrows.shape:
            raise ValueError("left and right must be 1-D arrays of equal length")
        return np.asarray(self.kernel(self, frame, lrows, rrows), dtype=np.int8)


class PairLevels(dict[str, LevelArray]):
    """Comparison name -> ``int8`` levels, one per pair, as :func:`compare` returns them.

    A plain dict to its readers; it also remembers the frame and the rows of each pair
    (``frame``, ``left``, ``right``, None when built by hand), which is all a model needs to
    look up the term frequencies of the compared values
    (:meth:`~crmhub.dedupe.model.FellegiSunter.match_weight`).
    """

    def __init__(
        self,
        levels: Mapping[str, LevelArray],
        frame: MatchFrame | None = None,
        left: Rows | None = None,
        right: Rows | None = None,
    ) -> None:
        super().__init__(levels)
        self.frame = frame
        self.left = left
        self.right = right

    def take(self, index: npt.ArrayLike) -> PairLevels:
        """The levels of the pairs at ``index`` (positions or a boolean mask), still knowing
        their rows."""
        pick = np.asarray(index)
        return PairLevels(
            {name: level[pick] for name, level in self.items()},
            self.frame,
            None if self.left is None else self.left[pick],
            None if self.right is None else self.right[pick],
        )


def _cached(frame: MatchFrame, kind: str, name: str, build: Callable[[], Any]) -> Any:
    """``build()`` once per frame and field (see :meth:`MatchFrame.cached`)."""
    return frame.cached(kind, name, build)


def _bit(char: str) -> int:
    # a-z and digits get a bit each so folded names rarely collide; a collision only weakens
    # the similarity bounds, never breaks them.
    code = ord(char)
    return 1 << (
        code - 97 if 97 <= code <= 122 else code - 22 if 48 <= code <= 57 else 36 + code % 28
    )


class _Column:
    """A scalar field as integer codes (-1 unknown) over its distinct values."""

    def __init__(self, codes: Codes, values: npt.NDArray[np.object_]) -> None:
        self.codes = codes
        self.values = values

    @cached_property
    def index(self) -> dict[str, int]:
        """Value -> code."""
        return {value: code for code, value in enumerate(self.values.tolist())}

    @cached_property
    def lengths(self) -> npt.NDArray[np.int32]:
        return np.fromiter(map(len, self.values), dtype=np.int32, count=len(self.values))

    @cached_property
    def heads(self) -> npt.NDArray[np.uint32]:
        """The first four characters of each value as code points (0-padded)."""
        return np.array(self.values.tolist(), dtype="U4").view(np.uint32).reshape(-1, 4)

    @cached_property
    def masks(self) -> npt.NDArray[np.uint64]:
        """Bitmask of the characters in each value (see :func:`_bit`)."""
        bits: dict[str, int] = {}
        # A set of bits, then summed: two characters may share a bit.
        masks = (sum({bits.get(c) or bits.setdefault(c, _bit(c)) for c in v}) for v in self.values)
        return np.fromiter(masks, dtype=np.uint64, count=len(self.values))


def _column(frame: MatchFrame, name: str) -> _Column:
    column: _Column = _cached(frame, "scalar", name, lambda: _Column(*frame.codes(name)))
    return column


def _popcount(x: npt.NDArray[np.uint64]) -> npt.NDArray[Any]:
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(x)  # uint8: callers subtract it from int32 lengths
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)  # numpy 1.26
    return table[x.view(np.uint8).reshape(-1, 8)].sum(axis=1)


def _scalar_pairs(c: Comparison, frame: MatchFrame, left: Rows, right: Rows) -> tuple[Any, ...]:
    """The column, both sides' codes, and the pairs known on both sides / exactly equal."""
    col = _column(frame, c.field)
    a, b = col.codes[left], col.codes[right]
    known = (a >= 0) & (b >= 0)
    return col, a, b, known, known & (a == b)


def _cpdist(col: _Column, a: Codes, b: Codes, scorer: Any, cutoff: float) -> npt.NDArray[Any]:
    """``scorer`` of values ``a[i]``, ``b[i]``, element-wise, on all cores."""
    if not a.size:  # spare the thread pool
        return np.zeros(0)
    values = col.values[a], col.values[b]
    return cpdist(*values, scorer=scorer, score_cutoff=cutoff, dtype=np.float64, workers=-1)


def _jw_scores(col: _Column, a: Codes, b: Codes, cutoff: float) -> npt.NDArray[np.float64]:
    """Jaro-Winkler similarity of values ``a[i]``, ``b[i]``; 0 where it is below ``cutoff``."""
    la, lb = col.lengths[a], col.lengths[b]
    ma, mb = col.masks[a], col.masks[b]
    # Characters of one side whose bit the other lacks cannot match, so m (matching
    # characters) has an upper bound; Jaro <= (m/|a| + m/|b| + 1)/3, and the Winkler bonus
    # adds 0.1 * (1 - Jaro) per common leading character, at most four.
    m = np.minimum(la - _popcount(ma & ~mb), lb - _popcount(mb & ~ma)).clip(0)
    jaro = (m / la + m / lb + 1.0) / 3.0 * (m > 0)
    maybe = np.flatnonzero(jaro + 0.4 * (1.0 - jaro) >= cutoff - 1e-9)
    # Then, for the few left, with their real common prefix (of up to four characters).
    same = col.heads[a[maybe]] == col.heads[b[maybe]]
    run = [same[:, 0], same[:, 0] & same[:, 1]]
    run += [run[1] & same[:, 2], run[1] & same[:, 2] & same[:, 3]]
    prefix = sum(r.astype(np.int8) for r in run)
    maybe = maybe[jaro[maybe] + 0.1 * prefix * (1.0 - jaro[maybe]) >= cutoff - 1e-9]
    scores = np.zeros(len(a), dtype=np.float64)
    # rapidfuzz's own cutoff test rounds (a score of exactly 0.85 fails 0.85): pass a lower
    # cutoff and compare the scores here.
    scores[maybe] = _cpdist(
        col, a[maybe], b[maybe], JaroWinkler.normalized_similarity, cutoff - 1e-6
    )
    return scores


def _lev_distances(col: _Column, a: Codes, b: Codes, cutoff: int) -> npt.NDArray[np.int64]:
    """Levenshtein distance of values ``a[i]``, ``b[i]``; ``cutoff + 1`` where larger."""
    # One edit changes the character-bit set by at most two bits, and the length by one.
    bound = np.maximum(
        np.abs(col.lengths[a] - col.lengths[b]), (_popcount(col.masks[a] ^ col.masks[b]) + 1) // 2
    )
    maybe = np.flatnonzero(bound <= cutoff)
    distances = np.full(len(a), cutoff + 1, dtype=np.int64)
    distances[maybe] = _cpdist(col, a[maybe], b[maybe], Levenshtein.distance, cutoff)
    return distances


def _exact_kernel(c: Comparison, frame: MatchFrame, left: Rows, right: Rows) -> LevelArray:
    _, _, _, known, same = _scalar_pairs(c, frame, left, right)
    return (known.astype(np.int8) + same).astype(np.int8)


def _jw_kernel(c: Comparison, frame: MatchFrame, left: Rows, right: Rows) -> LevelArray:
    col, a, b, known, same = _scalar_pairs(c, frame, left, right)
    levels = known.astype(np.int8)
    todo = np.flatnonzero(known & ~same)
    scores = _jw_scores(col, a[todo], b[todo], min(c.params))
    levels[todo] += sum((scores >= t).astype(np.int8) for t in c.params)
    levels[same] = len(c.levels) - 1
    return levels


def _lev_kernel(c: Comparison, frame: MatchFrame, left: Rows, right: Rows) -> LevelArray:
    col, a, b, known, same = _scalar_pairs(c, frame, left, right)
    levels = known.astype(np.int8)
    todo = np.flatnonzero(known & ~same)
    distances = _lev_distances(col, a[todo], b[todo], int(max(c.params)))
    levels[todo] += sum((distances <= t).astype(np.int8) for t in c.params)
    levels[same] = len(c.levels) - 1
    return levels


def _osa_distances(col: _Column, a: Codes, b: Codes) -> npt.NDArray[np.int64]:
    """Optimal-string-alignment distance (edits and adjacent transpositions) of values
    ``a[i]``, ``b[i]``, where it is at most 1; 2 where larger."""
    # A transposition keeps the character set; one other edit changes it by up to two bits.
    bound = np.maximum(
        np.abs(col.lengths[a] - col.lengths[b]), (_popcount(col.masks[a] ^ col.masks[b]) + 1) // 2
    )
    maybe = np.flatnonzero(bound <= 1)
    distances = np.full(len(a), 2, dtype=np.int64)
    distances[maybe] = _cpdist(col, a[maybe], b[maybe], OSA.distance, 1)
    return distances


def _nickname_groups(values: npt.NDArray[np.object_]) -> _Sets:
    """Per distinct first name, the name itself and every name the ``nicknames`` table calls
    it a nickname of: two names are related iff their groups intersect ("tony" and
    "anthony", "rick" and "richard", or two nicknames of one name)."""
    from crmhub.dedupe.normalize import nickname_canonicals  # the table loads on first use

    groups = [(v, *sorted(nickname_canonicals(v))) for v in values.tolist()]
    return _Sets(*factorise_sets(groups), len(groups))


def _swapped(frame: MatchFrame, left: Rows, right: Rows) -> npt.NDArray[np.bool_]:
    """Pairs whose names are crosswise equal: one record's first name is the other's last
    name ("John Smith" and, entered the wrong way round, first "Smith" last "John"). One
    crosswise pair must be equal; the other equal, unknown on a side, or close (a typo, a
    nickname such as "johnny"/"john", an initial). Both first names must be known."""
    first, last = _column(frame, "first_name"), _column(frame, "last_name")

    def last_as_first() -> Codes:
        # Each distinct last name's code among first names; -2 where no first name has it,
        # and a trailing -3 that code -1 (unknown) reads.
        codes = [first.index.get(v, -2) for v in last.values.tolist()]
        return np.array([*codes, -3], dtype=np.int32)

    cross: Codes = _cached(frame, "cross", "last_name", last_as_first)
    fa, fb = first.codes[left], first.codes[right]
    la, lb = last.codes[left], last.codes[right]
    ab = (fa >= 0) & (fa == cross[lb])  # the left's first name is the right's last name
    ba = (fb >= 0) & (fb == cross[la])
    swapped = ab & ba
    for hit, f, lc in ((ab & ~ba, fb, la), (ba & ~ab, fa, lb)):
        # The other crosswise pair: a last name against a first name.
        rows = np.flatnonzero(hit)
        known = (f[rows] >= 0) & (lc[rows] >= 0)
        close = ~known
        if known.any():
            a, b = f[rows][known], lc[rows][known]
            scores = cpdist(
                first.values[a],
                last.values[b],
                scorer=JaroWinkler.normalized_similarity,
                dtype=np.float64,
                workers=-1,
            )
            similar = scores >= 0.85
            single = (first.lengths[a] == 1) | (last.lengths[b] == 1)
            initial = single & (first.heads[a, 0] == last.heads[b, 0])
            close[known] = similar | initial
        swapped[rows[close]] = True
    # Both first names known: the first-name comparison is the one that scores a swap.
    return swapped & (fa >= 0) & (fb >= 0)


def _name_kernel(c: Comparison, frame: MatchFrame, left: Rows, right: Rows) -> LevelArray:
    col, a, b, known, same = _scalar_pairs(c, frame, left, right)
    roots, initials = _column(frame, "first_root").codes, _column(frame, "first_initial").codes
    levels = known.astype(np.int8)  # 1: different
    lengths = np.append(col.lengths, 0)  # code -1 (unknown) reads the trailing 0
    single = (lengths[a] == 1) | (lengths[b] == 1)
    ia, ib = initials[left], initials[right]
    levels[known & single & (ia >= 0) & (ia == ib)] = 2
    todo = np.flatnonzero(known & ~same & ~single)
    # One slip on a short name ("lea"/"lae", "sean"/"swan") that Jaro-Winkler misses.
    long_enough = (lengths[a[todo]] >= 3) & (lengths[b[todo]] >= 3)
    typo = todo[long_enough][_osa_distances(col, a[todo][long_enough], b[todo][long_enough]) <= 1]
    levels[typo] = 3
    groups: _Sets = _cached(frame, "nicknames", c.field, lambda: _nickname_groups(col.values))
    ra, rb = roots[left], roots[right]
    related = (ra >= 0) & (ra == rb)
    related[todo] |= _shared(groups, a[todo], b[todo])
    levels[known & related] = 4
    todo = np.flatnonzero(known & ~same)
    levels[todo[_jw_scores(col, a[todo], b[todo], c.params[0]) >= c.params[0]]] = 5
    levels[_swapped(frame, left, right) & ~same] = 6
    levels[same] = 7
    return levels


def _surname_kernel(c: Comparison, frame: MatchFrame, left: Rows, right: Rows) -> LevelArray:
    levels = _jw_kernel(c, frame, left, right)
    # A transposed pair is scored once, by the first-name comparison's "swapped" level.
    levels[_swapped(frame, left, right) & (levels < len(c.levels) - 1)] = 0
    return levels


def _house_numbers(column: _Column) -> Codes:
    """Per distinct street line, a code of its digits ("12 high st" and "high street 12"
    share one; lines without digits share another)."""
    index: dict[str, int] = {}
    digits = ("".join(ch for ch in v if ch.isdigit()) for v in column.values.tolist())
    return np.fromiter(
        (index.setdefault(d, len(index)) for d in digits), dtype=np.int32, count=len(column.values)
    )


def _address_kernel(c: Comparison, frame: MatchFrame, left: Rows, right: Rows) -> LevelArray:
    """Street line, postcode and city as one comparison: they are one fact (where a person
    lives), and scored separately they would count it three times. Levels keep apart what
    could be compared: the same city says much when nothing finer is known on both sides,
    little when the postcodes are known and differ."""
    parts = {}
    for name in ("street", "postcode", "city"):
        col = _column(frame, name)
        a, b = col.codes[left], col.codes[right]
        known = (a >= 0) & (b >= 0)
        parts[name] = (col, a, b, known, known & (a == b))
    street, postcode, city = parts["street"], parts["postcode"], parts["city"]
    levels = (street[3] | postcode[3] | city[3]).astype(np.int8)  # 1: different
    todo = np.flatnonzero(city[3] & ~city[4])
    near_city = city[4].copy()
    near_city[todo] = _jw_scores(city[0], city[1][todo], city[2][todo], 0.92) >= 0.92
    levels[near_city] = 2  # city_moved, unless nothing finer is known:
    levels[near_city & ~street[3] & ~postcode[3]] = 3
    levels[postcode[4] & street[3]] = 4  # streets known: a neighbour, or moved nearby
    levels[postcode[4] & ~street[3]] = 5
    # Street lines within two edits, with the same house number: "12 High St" and
    # "12 Hihg Street", not the neighbours at 12 and 14.
    numbers: Codes = _cached(frame, "numbers", "street", lambda: _house_numbers(street[0]))
    todo = np.flatnonzero(street[3] & ~street[4])
    todo = todo[numbers[street[1][todo]] == numbers[street[2][todo]]]
    near_street = np.zeros(len(left), dtype=bool)
    near_street[todo] = _lev_distances(street[0], street[1][todo], street[2][todo], 2) <= 2
    # The same street line in another postcode, or in another town when a postcode is
    # unknown, is another place ("1 High Street").
    elsewhere = np.where(postcode[3], ~postcode[4], city[3] & ~near_city)
    levels[near_street & ~elsewhere] = 6
    levels[street[4] & ~elsewhere] = 7
    return levels


_ISO_DATE = re.compile(r"([0-9]{4})(?:-([0-9]{2})-([0-9]{2}))?")


class _Dates:
    """Per distinct date value: year (-1 unparsable), month, day, and its 8 digits as nibbles."""

    def __init__(self, values: npt.NDArray[np.object_]) -> None:
        parts = np.full((len(values), 4), -1, dtype=np.int64)
        for i, value in enumerate(values):  # once per distinct value, not per pair
            found = _ISO_DATE.fullmatch(value)
            if found:
                parts[i, 0] = int(found[1])
                if found[2]:
                    digits = found[1] + found[2] + found[3]
                    parts[i, 1:] = int(found[2]), int(found[3]), int(digits, 16)
        self.year, self.month, self.day = parts[:, 0], parts[:, 1], parts[:, 2]
        # "19900304" read as hex: one nibble per digit, so digits compare with bit operations.
        self.nibbles = parts[:, 3].clip(0).astype(np.uint64)


def _date_kernel(c: Comparison, frame: MatchFrame, left: Rows, right: Rows) -> LevelArray:
    col, a, b, known, same = _scalar_pairs(c, frame, left, right)
    dates: _Dates = _cached(frame, "date", c.field, lambda: _Dates(col.values))
    levels = known.astype(np.int8)
    todo = np.flatnonzero(known & ~same)
    a, b = a[todo], b[todo]
    full = (dates.month[a] >= 0) & (dates.month[b] >= 0)
    same_year = (dates.year[a] >= 0) & (dates.year[a] == dates.year[b])
    swapped = full & (dates.month[a] == dates.day[b]) & (dates.day[a] == dates.month[b])
    # Two full ISO dates are one edit apart iff exactly one of their 8 digits differs.
    diff = dates.nibbles[a] ^ dates.nibbles[b]
    one_digit = _popcount((diff | diff >> 1 | diff >> 2 | diff >> 3) & 0x1111_1111) == 1
    one_off = np.where(full, one_digit, False)
    other = np.flatnonzero(~full)  # partial or malformed values: a real edit distance
    one_off[other] = _lev_distances(col, a[other], b[other], 1) <= 1
    levels[todo] = np.select([one_off, same_year & swapped, same_year], [4, 3, 2], 1)
    levels[same] = 5
    return levels


class _Sets:
    """A multi-valued field as sorted ``row * width + code`` keys, one per distinct value."""

    def __init__(self, keys: npt.NDArray[np.int64], width: int, size: int) -> None:
        self.keys, self.width = keys, width  # sorted, each (row, value) once
        rows, codes = np.divmod(self.keys, self.width)
        self.counts = np.bincount(rows, minlength=size).astype(np.int32)
        self.starts = np.cumsum(self.counts) - self.counts
        # A row's first two values (the first twice if it has one): pairs of rows with at most
        # two values each, nearly all, are then decided by four integer comparisons.
        codes = np.append(codes, -1).astype(np.int32)  # -1 at the end, for empty rows
        self.first = codes[np.where(self.counts > 0, self.starts, len(codes) - 1)]
        self.second = codes[np.where(self.counts > 1, self.starts + 1, len(codes) - 1)]
        self.second[self.counts == 1] = self.first[self.counts == 1]


def _shared(sets: _Sets, left: npt.NDArray[Any], right: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Whether rows ``left[i]`` and ``right[i]`` of ``sets`` have a value in common."""
    left, right = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    cl, cr = sets.counts[left], sets.counts[right]
    known = (cl > 0) & (cr > 0)
    a, a2, b, b2 = sets.first[left], sets.second[left], sets.first[right], sets.second[right]
    shared = known & ((a == b) | (a == b2) | (a2 == b) | (a2 == b2))
    rest = np.flatnonzero(known & ~shared & ((cl > 2) | (cr > 2)))
    if rest.size:
        # Look each value of the side with fewer values up among the other row's keys.
        flip = cl[rest] > cr[rest]
        probe = np.where(flip, right[rest], left[rest])
        other = np.where(flip, left[rest], right[rest])
        counts = sets.counts[probe]
        owner = np.repeat(np.arange(rest.size), counts)
        offset = np.arange(owner.size) - np.repeat(np.cumsum(counts) - counts, counts)
        values = sets.keys[sets.starts[probe][owner] + offset] % sets.width
        wanted = other[owner] * sets.width + values
        at = np.searchsorted(sets.keys, wanted).clip(max=sets.keys.size - 1)
        shared[rest[owner[sets.keys[at] == wanted]]] = True
    return shared


def _set_kernel(c: Comparison, frame: MatchFrame, left: Rows, right: Rows) -> LevelArray:
    sets: _Sets = _cached(
        frame, "multi", c.field, lambda: _Sets(*frame.value_codes(c.field), len(frame))
    )
    known = (sets.counts[left] > 0) & (sets.counts[right] > 0)
    return (known.astype(np.int8) + _shared(sets, left, right)).astype(np.int8)


def exact(name: str, field: str) -> Comparison:
    """Levels null / different / exact."""
    return Comparison(name, field, ("null", "different", "exact"), _exact_kernel)


def jaro_winkler(
    name: str,
    field: str,
    thresholds: tuple[float, ...] = (0.92, 0.85),
    *,
    term_frequencies: bool = False,
) -> Comparison:
    """Levels null / else / Jaro-Winkler >= each threshold, weakest first / exact. With
    ``term_frequencies``, an exact match weighs by how common the value is."""
    ordered = tuple(sorted(set(thresholds)))
    if not ordered or not all(0.0 < t <= 1.0 for t in ordered):
        raise ValueError("jaro_winkler thresholds must be in (0, 1]")
    labels = ("null", "else", *(f"jw>={t:g}" for t in ordered), "exact")
    tf_levels = (len(labels) - 1,) if term_frequencies else ()
    tf_field = field if term_frequencies else None
    return Comparison(name, field, labels, _jw_kernel, ordered, tf_field, tf_levels, monotone=True)


def levenshtein(name: str, field: str, thresholds: tuple[int, ...] = (1, 2)) -> Comparison:
    """Levels null / else / edit distance <= each threshold, largest first / exact."""
    ordered = tuple(sorted(set(thresholds), reverse=True))
    if not ordered or not all(int(t) == t >= 1 for t in ordered):
        raise ValueError("levenshtein thresholds must be integers >= 1")
    labels = ("null", "else", *(f"lev<={t:g}" for t in ordered), "exact")
    params = tuple(float(t) for t in ordered)
    return Comparison(name, field, labels, _lev_kernel, params, monotone=True)


def name_comparison(name: str = "first_name") -> Comparison:
    """First names, also reading ``first_root``, ``first_initial`` and ``last_name``.

    Levels: null / different / initial (one side is a single letter, the other's initial) /
    typo (one edit or transposition, names of three letters or more) / nickname (same
    nickname root, or related in the ``nicknames`` table) / Jaro-Winkler >= 0.88 / swapped
    (first and last names entered the wrong way round) / exact. The order is expected
    strength, and decides the level when several hold: a bare initial fits many names; a
    nickname is a lookup in a noisy table that relates distinct names ("alex" stands for
    Alexander, Alexandra and Alexis), while folded names within 0.88 are nearly always one
    name typed twice, so a close spelling outranks a nickname. An exact match weighs by how
    common the name is (term frequency).
    """
    labels = ("null", "different", "initial", "typo", "nickname", "jw>=0.88", "swapped", "exact")
    return Comparison(
        name, "first_name", labels, _name_kernel, (0.88,), tf_field="first_name", tf_levels=(7,)
    )


def surname_comparison(
    name: str = "last_name", thresholds: tuple[float, ...] = (0.92, 0.85)
) -> Comparison:
    """Last names as :func:`jaro_winkler` with term frequencies (of the surname among people
    of the same first name, when first names agree too: together, the frequency of the full
    name); a pair whose first and last names are transposed is null here, as
    :func:`name_comparison` scores it ("swapped")."""
    base = jaro_winkler(name, "last_name", thresholds, term_frequencies=True)
    return replace(base, kernel=_surname_kernel, tf_given=("first_name", "full_name"))


def address_comparison(name: str = "address") -> Comparison:
    """Street line, postcode and city together (reads ``street``, ``postcode``, ``city``).

    Levels, by the finest part known on both sides: null (no part) / different / city_moved
    (same or nearly the same city, finer parts known and different) / city (same city,
    nothing finer known on both sides) / postcode_neighbour (same postcode, street lines
    known and different) / postcode (same postcode, a street line unknown) / street_close
    (street lines within two edits and with the same house number, in the same place) /
    exact (same street line, postcodes equal or unknown). A street line in another postcode
    (or, without postcodes, another town) is another place. The same-postcode levels weigh
    by how common the postcode is: some cover a street, others a town district.
    """
    labels = ("null", "different", "city_moved", "city", "postcode_neighbour", "postcode",
              "street_close", "exact")  # fmt: skip
    return Comparison(
        name, "street", labels, _address_kernel, tf_field="postcode", tf_levels=(4, 5)
    )


def date_comparison(name: str = "birth_date", field: str = "birth_date") -> Comparison:
    """ISO dates. Levels: null / different / same year only / day and month transposed /
    one digit off (Levenshtein 1) / exact."""
    labels = ("null", "different", "same_year", "transposed", "one_digit", "exact")
    return Comparison(name, field, labels, _date_kernel)


def set_comparison(name: str, field: str) -> Comparison:
    """A multi-valued field. Levels: null (a side has no value) / disjoint / a value shared."""
    return Comparison(name, field, ("null", "disjoint", "shared"), _set_kernel)


DEFAULT_COMPARISONS: tuple[Comparison, ...] = (
    name_comparison(),
    surname_comparison(),
    date_comparison(),
    set_comparison("emails", "emails"),
    set_comparison("phones", "phones"),
    address_comparison(),
    jaro_winkler("company", "company"),
    set_comparison("identifiers", "identifiers"),
)
"""The comparisons :func:`compare` runs unless told otherwise."""


def compare(
    frame: MatchFrame,
    left: npt.ArrayLike,
    right: npt.ArrayLike,
    comparisons: Sequence[Comparison] = DEFAULT_COMPARISONS,
) -> PairLevels:
    """Every comparison's levels for the pairs ``(left[i], right[i])`` (frame row indices).

    Returns:
        comparison name -> ``int8`` levels, one per pair (a :class:`PairLevels`, which also
        remembers the frame and rows, for term-frequency look-ups).
    """
    names = [c.name for c in comparisons]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate comparison names: {names}")
    lrows, rrows = np.asarray(left, dtype=np.intp), np.asarray(right, dtype=np.intp)
    if not frame.cached_any() and lrows.shape == rrows.shape and len(frame) > 64 * lrows.size:
        # A few pairs (one being explained, say) on a large frame never compared before:
        # factorising just the rows they touch beats factorising whole columns.
        rows, inverse = np.unique(np.concatenate([lrows, rrows]), return_inverse=True)
        scalars = {name: column[rows] for name, column in frame.scalars.items()}
        multis = {name: [column[i] for i in rows] for name, column in frame.multis.items()}
        frame = MatchFrame(frame.ids[rows], scalars, multis)
        lrows, rrows = inverse[: lrows.size], inverse[lrows.size :]
    levels = {c.name: c.compute(frame, lrows, rrows) for c in comparisons}
    return PairLevels(levels, frame, lrows, rrows)


def explain_levels(comparison: Comparison, level: int) -> str:
    """The label of ``level`` of ``comparison`` (``"null"``, ``"exact"``, ...)."""
    if not 0 <= level < len(comparison.levels):
        raise ValueError(f"{comparison.name} has no level {level}")
    return comparison.levels[level]


BUILTIN_COMPARATORS: dict[str, Callable[..., Comparison]] = {
    "exact": exact, "jaro_winkler": jaro_winkler, "levenshtein": levenshtein,
    "name": name_comparison, "surname": surname_comparison, "address": address_comparison,
    "date": date_comparison, "set": set_comparison,
}  # fmt: skip
"""Comparison factories by the name configuration and plugins refer to them with."""


@hookimpl
def register_comparators(register: Callable[..., None]) -> None:
    """Register the built-in comparison factories."""
    for name, factory in BUILTIN_COMPARATORS.items():
        register(name, factory)


def field_digests(frame: MatchFrame, field: str) -> tuple[Codes, npt.NDArray[np.bytes_]]:
    """A scalar field factorised: each row's code (-1 unknown), and each distinct value as
    its :func:`~crmhub.dedupe.blocking.key_digest` (the form term-frequency tables hold);
    cached per frame, like the comparisons' codes."""
    column = _column(frame, field)

    def digests() -> npt.NDArray[np.bytes_]:
        return np.array([key_digest(v) for v in column.values.tolist()], dtype="S20")

    return column.codes, _cached(frame, "digest", field, digests)

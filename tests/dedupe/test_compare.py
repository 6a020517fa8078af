"""Comparison levels: hand-made pairs per comparison, the bulk path against a per-pair
reference, plugins, and a synthetic frame generator (also used for benchmarking)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import OSA, JaroWinkler, Levenshtein

from crmhub.dedupe.compare import (
    BUILTIN_COMPARATORS,
    DEFAULT_COMPARISONS,
    Comparison,
    PairLevels,
    address_comparison,
    compare,
    date_comparison,
    exact,
    explain_levels,
    jaro_winkler,
    levenshtein,
    name_comparison,
    set_comparison,
    surname_comparison,
)
from crmhub.dedupe.frame import MULTI_FIELDS, MatchFrame
from crmhub.dedupe.normalize import nickname_canonicals
from crmhub.hookspecs import hookimpl
from crmhub.plugins import Plugins


def frame_of(**columns: Sequence[Any]) -> MatchFrame:
    """A frame from columns given as lists: multi-valued fields as lists of tuples."""
    n = len(next(iter(columns.values())))
    scalars, multis = {}, {}
    for name, values in columns.items():
        if name in MULTI_FIELDS:
            multis[name] = [tuple(v) for v in values]
        else:
            column = np.empty(n, dtype=object)
            column[:] = list(values)
            scalars[name] = column
    return MatchFrame(np.arange(n, dtype=np.int64), scalars, multis)


def side_by_side(comparison: Comparison, field: str, pairs: list[tuple[Any, Any]]) -> list[str]:
    """Labels of ``pairs``, each a (left value, right value) of ``field``."""
    frame = frame_of(**{field: [v for pair in pairs for v in pair]})
    left = np.arange(0, 2 * len(pairs), 2)
    levels = comparison.compute(frame, left, left + 1)
    return [explain_levels(comparison, int(level)) for level in levels]


def test_exact_levels_are_null_different_exact() -> None:
    pairs = [("sw1a1aa", "sw1a1aa"), ("sw1a1aa", "ec1a1bb"), (None, "ec1a1bb"), ("x", None)]
    labels = side_by_side(exact("postcode", "postcode"), "postcode", pairs)
    assert labels == ["exact", "different", "null", "null"]


def test_jaro_winkler_levels_split_near_and_close_spellings() -> None:
    pairs = [
        ("smith", "smith"),
        ("jonathan", "jonathon"),  # 0.95
        ("smith", "smyth"),  # 0.89
        ("miller", "mueller"),  # 0.80
        ("smith", "jones"),
        (None, "smith"),
        ("smith", None),
        ("", "smith"),  # empty is unknown, like None
    ]
    labels = side_by_side(jaro_winkler("last_name", "last_name"), "last_name", pairs)
    assert labels == ["exact", "jw>=0.92", "jw>=0.85", "else", "else", "null", "null", "null"]


def test_levenshtein_levels_count_edits() -> None:
    pairs = [
        ("12 high street", "12 high street"),
        ("12 high street", "12 high stret"),
        ("12 high street", "12 hgh stret"),
        ("12 high street", "12 hgh strt"),
        ("12 high street", "4 mill lane"),
        (None, None),
    ]
    labels = side_by_side(levenshtein("street", "street"), "street", pairs)
    assert labels == ["exact", "lev<=1", "lev<=2", "else", "else", "null"]


def test_name_levels_rank_initial_below_nickname_below_spelling() -> None:
    names = [
        ("john", "john"),
        ("jon", "john"),  # same nickname root, but also JW 0.93: the stronger level wins
        ("bob", "robert"),
        ("j", "john"),
        ("john", "j"),
        ("j", "k"),
        ("john", "mary"),
        (None, "john"),
    ]
    roots = {"jon": "john", "bob": "robert"}
    flat = [name for pair in names for name in pair]
    frame = frame_of(
        first_name=flat,
        first_root=[roots.get(n, n) if n else None for n in flat],
        first_initial=[n[0] if n else None for n in flat],
    )
    comparison = name_comparison()
    left = np.arange(0, len(flat), 2)
    labels = [comparison.levels[i] for i in comparison.compute(frame, left, left + 1)]
    assert labels == [
        "exact", "jw>=0.88", "nickname", "initial", "initial", "different", "different", "null",
    ]  # fmt: skip
    assert comparison.levels.index("initial") < comparison.levels.index("typo")
    assert comparison.levels.index("nickname") < comparison.levels.index("jw>=0.88")


def _name_frame(pairs: list[tuple[tuple[Any, Any], tuple[Any, Any]]]) -> MatchFrame:
    """A frame of (first, last) names, two rows per pair, with roots and initials as
    match_frame derives them."""
    from crmhub.dedupe.normalize import first_root

    people = [person for pair in pairs for person in pair]
    firsts = [first for first, _ in people]
    return frame_of(
        first_name=firsts,
        last_name=[last for _, last in people],
        first_root=[first_root(f) if f else None for f in firsts],
        first_initial=[f[0] if f else None for f in firsts],
    )


def test_name_levels_catch_short_typos_and_nicknames_the_root_misses() -> None:
    pairs = [
        (("lea", "x"), ("lae", "y")),  # one transposition: Jaro-Winkler is below 0.88
        (("sean", "x"), ("swan", "y")),  # one substitution on a short name
        (("tony", "x"), ("anthony", "y")),  # the table knows tony as anthony's nickname
        (("rick", "x"), ("richard", "y")),
        (("jo", "x"), ("ja", "y")),  # too short for a typo
        (("anna", "x"), ("maria", "y")),
    ]
    frame = _name_frame(pairs)
    comparison = name_comparison()
    left = np.arange(0, 2 * len(pairs), 2)
    labels = [comparison.levels[i] for i in comparison.compute(frame, left, left + 1)]
    assert labels == ["typo", "typo", "nickname", "nickname", "different", "different"]


def test_swapped_names_are_one_level_of_the_first_name_and_null_for_the_surname() -> None:
    pairs = [
        (("john", "smith"), ("smith", "john")),  # entered the wrong way round
        (("wilson", "sarah"), ("sarah", None)),  # swapped, the surname missing on one side
        (("johnny", "smith"), ("smith", "john")),  # swapped, and a nickname
        (("john", "smith"), ("smith", "jones")),  # one crosswise match is not a swap
        (("smith", "smith"), ("smith", "smith")),  # equal names are exact, not swapped
    ]
    frame = _name_frame(pairs)
    left = np.arange(0, 2 * len(pairs), 2)
    levels = compare(frame, left, left + 1, (name_comparison(), surname_comparison()))
    first = [name_comparison().levels[i] for i in levels["first_name"]]
    last = [surname_comparison().levels[i] for i in levels["last_name"]]
    assert first == ["swapped", "swapped", "swapped", "different", "exact"]
    assert last == ["null", "null", "null", "else", "exact"]


def test_address_levels_go_by_the_finest_part_known_on_both_sides() -> None:
    rows = [  # (street, postcode, city) of each side
        (("12 high st", "LS11AA", "leeds"), ("12 high st", "LS11AA", "leeds")),
        (("12 high st", None, "leeds"), ("12 high st", "LS11AA", "leeds")),
        (("12 high street", "LS11AA", "leeds"), ("12 hihg street", "LS11AA", "leeds")),
        (("12 high st", "LS11AA", "leeds"), ("14 high st", "LS11AA", "leeds")),  # neighbours
        ((None, "LS11AA", "leeds"), ("14 high st", "LS11AA", "leeds")),
        (("12 high st", "LS11AA", "leeds"), ("9 low rd", "LS29ZZ", "leeds")),
        ((None, None, "leeds"), ("9 low rd", "LS29ZZ", "leeds")),
        (("12 high st", "LS11AA", "leeds"), ("12 high st", "M11AA", "manchester")),
        (("12 high st", None, "leeds"), ("12 high st", None, "york")),  # another town
        (("12 high st", None, None), (None, "LS11AA", None)),  # nothing comparable
    ]
    flat = [side for pair in rows for side in pair]
    frame = frame_of(
        street=[s for s, _, _ in flat], postcode=[p for _, p, _ in flat], city=[c for *_, c in flat]
    )
    comparison = address_comparison()
    left = np.arange(0, len(flat), 2)
    labels = [comparison.levels[i] for i in comparison.compute(frame, left, left + 1)]
    assert labels == [
        "exact", "exact", "street_close", "postcode_neighbour", "postcode", "city_moved",
        "city", "different", "different", "null",
    ]  # fmt: skip


def test_compare_remembers_the_rows_for_term_frequency_look_ups() -> None:
    frame = synthetic_frame(3000, seed=2)
    levels = compare(frame, [5, 7], [9, 2])
    assert isinstance(levels, PairLevels) and isinstance(levels, dict)
    # A few pairs on a large frame are compared on a frame of just their rows: the rows
    # remembered are that frame's, and read the same values.
    assert levels.frame is not None and levels.left is not None and levels.right is not None
    names = levels.frame.scalar("last_name")
    assert names[levels.left].tolist() == frame.scalar("last_name")[[5, 7]].tolist()
    assert names[levels.right].tolist() == frame.scalar("last_name")[[9, 2]].tolist()


def test_date_levels_find_transposed_and_one_digit_off() -> None:
    pairs = [
        ("1990-03-04", "1990-03-04"),
        ("1990-03-04", "1990-04-03"),  # day and month transposed
        ("1990-03-04", "1990-03-05"),  # one digit off
        ("1990-03-04", "1980-03-04"),  # one digit off, in the year
        ("1990-03-04", "1990-11-23"),  # same year only
        ("1990-03-04", "1991-04-03"),  # transposed, but another year
        ("1990-03-04", None),
        ("1990", "1990-07-01"),  # a partial date still gives the year
        ("1990-03-04", "199O-03-04"),  # malformed: a real edit distance
        ("not a date", "1990-03-04"),
    ]
    labels = side_by_side(date_comparison(), "birth_date", pairs)
    assert labels == [
        "exact", "transposed", "one_digit", "one_digit", "same_year", "different", "null",
        "same_year", "one_digit", "different",
    ]  # fmt: skip


def test_set_levels_need_one_shared_value() -> None:
    emails = [
        (("a@x.com",), ("a@x.com",)),
        (("a@x.com",), ("b@x.com",)),
        (("a@x.com", "c@y.com"), ("d@z.com", "c@y.com")),
        (("a@x.com", "c@y.com", "e@q.com"), ("f@q.com",)),
        (("f@q.com",), ("a@x.com", "f@q.com", "e@q.com")),
        ((), ("a@x.com",)),
        (("a@x.com", "a@x.com"), ("a@x.com",)),
        (("",), ("",)),  # an empty string is no value
    ]
    labels = side_by_side(set_comparison("emails", "emails"), "emails", emails)
    assert labels == [
        "shared", "disjoint", "shared", "disjoint", "shared", "null", "shared", "null",
    ]  # fmt: skip


def test_levels_are_int8_one_per_pair_and_zero_pairs_give_empty_arrays() -> None:
    frame = synthetic_frame(300, seed=1)
    rng = np.random.default_rng(0)
    left, right = rng.integers(0, 300, 1000), rng.integers(0, 300, 1000)
    levels = compare(frame, left, right)
    assert list(levels) == [c.name for c in DEFAULT_COMPARISONS]
    for comparison in DEFAULT_COMPARISONS:
        assert levels[comparison.name].dtype == np.int8
        assert levels[comparison.name].shape == (1000,)
        assert 0 <= levels[comparison.name].min() <= levels[comparison.name].max()
        assert levels[comparison.name].max() < len(comparison.levels)
    empty = compare(frame, np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    assert all(v.dtype == np.int8 and v.shape == (0,) for v in empty.values())
    assert all(
        v.shape == (0,) for v in compare(MatchFrame(np.array([], np.int64)), [], []).values()
    )


def test_a_field_the_frame_lacks_is_null_everywhere() -> None:
    frame = frame_of(last_name=["a", "b"])
    levels = compare(frame, [0, 1], [1, 0])
    assert all(not v.any() for name, v in levels.items() if name != "last_name")


def test_bad_arguments_are_rejected() -> None:
    frame = frame_of(city=["a", "b"])
    with pytest.raises(ValueError, match="equal length"):
        exact("city", "city").compute(frame, [0, 1], [1])
    with pytest.raises(ValueError, match="duplicate"):
        compare(frame, [0], [1], (exact("city", "city"), jaro_winkler("city", "city")))
    with pytest.raises(ValueError):
        jaro_winkler("city", "city", thresholds=(1.5,))
    with pytest.raises(ValueError):
        levenshtein("city", "city", thresholds=(0,))
    with pytest.raises(ValueError, match="no level 3"):
        explain_levels(exact("city", "city"), 3)


def test_a_frame_factorises_each_column_once_for_every_stage() -> None:
    frame = frame_of(city=["leeds", "leeds", "york"])
    assert not frame.cached_any()
    assert compare(frame, [0], [1], (exact("city", "city"),))["city"].tolist() == [2]
    codes, values = frame.codes("city")
    assert codes.tolist() == [0, 0, 1] and values.tolist() == ["leeds", "york"]
    assert frame.codes("city")[0] is codes  # blocking and training reuse the same arrays


def test_a_few_pairs_on_a_large_frame_only_factorise_the_rows_they_touch() -> None:
    frame = synthetic_frame(2000, seed=5)
    left, right = np.array([3, 1999, 7]), np.array([1999, 3, 3])
    few = compare(frame, left, right)
    assert not frame.cached_any()
    everything = compare(frame, np.r_[left, np.arange(100)], np.r_[right, np.arange(100)])
    assert frame.cached_any()
    assert all((few[name] == levels[:3]).all() for name, levels in everything.items())


class _PostcodeAreaPlugin:
    @hookimpl
    def register_comparators(self, register: Callable[..., None]) -> None:
        register("postcode_area", lambda name="postcode_area": exact(name, "postcode"))


def test_a_plugin_comparator_is_listed_next_to_the_built_ins() -> None:
    plugins = Plugins(load_entry_points=False, extra=(_PostcodeAreaPlugin(),))
    comparators = plugins.comparators()
    assert set(BUILTIN_COMPARATORS) | {"postcode_area"} <= set(comparators)
    assert comparators["postcode_area"]().field == "postcode"
    assert comparators["jaro_winkler"]("city", "city").levels[-1] == "exact"
    assert not plugins.failures


# --- the bulk path against a per-pair reference -------------------------------------------

_DATE = re.compile(r"([0-9]{4})(?:-([0-9]{2})-([0-9]{2}))?")


def _close_names(first: str, last: str) -> bool:
    """A first name and a last name that are nearly the same (for a swap with a slip)."""
    initial = 1 in (len(first), len(last)) and first[0] == last[0]
    return JaroWinkler.normalized_similarity(first, last) >= 0.85 or initial


def reference_swapped(frame: MatchFrame, i: int, j: int) -> bool:
    """Whether rows i and j have their names crosswise, the slow, obvious way."""
    firsts, lasts = frame.scalar("first_name"), frame.scalar("last_name")
    fi, fj, li, lj = firsts[i] or None, firsts[j] or None, lasts[i] or None, lasts[j] or None
    if fi is None or fj is None:
        return False
    ij, ji = fi == lj, fj == li
    if ij and ji:
        return True
    if not (ij or ji):
        return False
    first, last = (fj, li) if ij else (fi, lj)
    return first is None or last is None or _close_names(first, last)


def reference_name_level(frame: MatchFrame, i: int, j: int, a: str, b: str) -> int:
    """The first-name level of a pair with two different known names."""
    if reference_swapped(frame, i, j):
        return 6
    if JaroWinkler.normalized_similarity(a, b) >= 0.88:
        return 5
    single = 1 in (len(a), len(b))
    roots = frame.scalar("first_root")
    related = {a, *nickname_canonicals(a)} & {b, *nickname_canonicals(b)}
    if (roots[i] and roots[i] == roots[j]) or (related and not single):
        return 4
    if not single and min(len(a), len(b)) >= 3 and OSA.distance(a, b) <= 1:
        return 3
    initials = frame.scalar("first_initial")
    return 2 if single and initials[i] and initials[i] == initials[j] else 1


def reference_address_level(frame: MatchFrame, i: int, j: int) -> int:
    """The address level of a pair, the slow, obvious way."""
    street, postcode, city = (
        (frame.scalar(name)[i] or None, frame.scalar(name)[j] or None)
        for name in ("street", "postcode", "city")
    )
    known = [a is not None and b is not None for a, b in (street, postcode, city)]
    if not any(known):
        return 0
    level = 1
    near_city = known[2] and JaroWinkler.normalized_similarity(*city) >= 0.92
    if near_city:
        level = 3 if not (known[0] or known[1]) else 2
    if known[1] and postcode[0] == postcode[1]:
        level = 4 if known[0] else 5
    elsewhere = postcode[0] != postcode[1] if known[1] else known[2] and not near_city
    if known[0] and not elsewhere:
        a, b = street
        numbers = ["".join(ch for ch in s if ch.isdigit()) for s in (a, b)]
        if a == b:
            level = 7
        elif numbers[0] == numbers[1] and Levenshtein.distance(a, b) <= 2:
            level = 6
    return level


def reference_level(comparison: Comparison, frame: MatchFrame, i: int, j: int) -> int:
    """The level of one pair, computed the slow, obvious way."""
    top = len(comparison.levels) - 1
    if comparison.levels[1] == "disjoint":
        a, b = ({v for v in frame.multi(comparison.field)[k] if v} for k in (i, j))
        return 0 if not (a and b) else 2 if a & b else 1
    kind = comparison.kernel.__name__
    if kind == "_address_kernel":
        return reference_address_level(frame, i, j)
    a, b = frame.scalar(comparison.field)[i], frame.scalar(comparison.field)[j]
    if not a or not b:
        return 0
    if a == b:
        return top
    if kind == "_surname_kernel" and reference_swapped(frame, i, j):
        return 0
    if kind in ("_jw_kernel", "_surname_kernel"):
        return 1 + sum(JaroWinkler.normalized_similarity(a, b) >= t for t in comparison.params)
    if kind == "_lev_kernel":
        return 1 + sum(Levenshtein.distance(a, b) <= t for t in comparison.params)
    if kind == "_name_kernel":
        return reference_name_level(frame, i, j, a, b)
    if kind == "_date_kernel":
        if Levenshtein.distance(a, b) == 1:
            return 4
        da, db = _DATE.fullmatch(a), _DATE.fullmatch(b)
        if not (da and db and da[1] == db[1]):
            return 1
        return 3 if da[2] and db[2] and (da[2], da[3]) == (db[3], db[2]) else 2
    return 1


def assert_matches_reference(frame: MatchFrame, left: np.ndarray, right: np.ndarray) -> None:
    levels = compare(frame, left, right)
    for comparison in DEFAULT_COMPARISONS:
        assert levels[comparison.name].dtype == np.int8
        assert levels[comparison.name].shape == left.shape
        got = levels[comparison.name].tolist()
        assert all(0 <= level < len(comparison.levels) for level in got)
        want = [reference_level(comparison, frame, i, j) for i, j in zip(left, right, strict=True)]
        assert got == want, comparison.name


def test_bulk_levels_equal_the_per_pair_reference_on_synthetic_people() -> None:
    frame = synthetic_frame(400, seed=7)
    rng = np.random.default_rng(3)
    left = rng.integers(0, 400, 3000)
    right = rng.integers(0, 400, 3000)
    # Half the pairs are neighbours by last name, as blocking would pair them: similar
    # values exercise the similarity thresholds, which random pairs rarely reach.
    order = np.argsort(frame.scalar("last_name").astype(str), kind="stable")
    rank = np.argsort(order)
    right[1::2] = order[np.minimum(rank[left[1::2]] + 1, 399)]
    assert_matches_reference(frame, left, right)


_values = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.text(alphabet="ab -é😀", max_size=5),  # a small alphabet: near matches are common
    st.dates(date(1900, 1, 1), date(2030, 12, 31)).map(date.isoformat),
)


@st.composite
def _frames(draw: st.DrawFn) -> tuple[MatchFrame, np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 12))
    column = st.lists(_values, min_size=n, max_size=n)
    values = st.lists(st.sampled_from(["", "a", "b", "c", "ü"]), max_size=3)
    multi = st.lists(values, min_size=n, max_size=n)
    scalars = {name: draw(column) for name in ("first_name", "last_name", "birth_date", "city")}
    scalars["first_root"] = [
        draw(st.sampled_from([v, "robert", None])) for v in scalars["first_name"]
    ]
    scalars["first_initial"] = [v[:1] or None if v else None for v in scalars["first_name"]]
    frame = frame_of(**scalars, street=draw(column), emails=draw(multi))
    pairs = st.lists(st.integers(0, n - 1), min_size=0, max_size=20)
    left = np.array(draw(pairs), dtype=np.int64)
    right = np.array(draw(st.lists(st.integers(0, n - 1), min_size=len(left), max_size=len(left))))
    return frame, left, right.astype(np.int64)


@settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(_frames())
def test_arbitrary_text_never_raises_and_matches_the_reference(
    case: tuple[MatchFrame, np.ndarray, np.ndarray],
) -> None:
    frame, left, right = case
    assert_matches_reference(frame, left, right)


# --- synthetic people ---------------------------------------------------------------------

_NICKNAMES = {
    "bob": "robert", "rob": "robert", "bill": "william", "will": "william", "liz": "elizabeth",
    "beth": "elizabeth", "jon": "john", "johnny": "john", "kate": "katherine",
    "katie": "katherine", "alex": "alexander", "sasha": "alexander", "mike": "michael",
    "jim": "james", "jimmy": "james", "peggy": "margaret", "maggie": "margaret",
}  # fmt: skip
_FIRST = [
    "john", "mary", "james", "anna", "robert", "maria", "michael", "sophie", "william", "laura",
    "david", "emma", "thomas", "julia", "peter", "sarah", "paul", "elizabeth", "daniel", "lucy",
    "alexander", "katherine", "margaret", "jean", "pierre", "marie", "hans", "ingrid", "jose",
    "carmen", "luca", "giulia", "ahmed", "fatima", "jonathan", "jonathon", "stephen", "steven",
    *_NICKNAMES,
]  # fmt: skip
_SYLLABLES = "ber,man,son,ley,ton,wick,ford,ham,mil,lar,row,den,stein,berg,ach,ov,ski,ez,ri,ca"
_STREETS = ["street", "road", "lane", "avenue", "strasse", "rue de la paix", "close"]


def synthetic_frame(n: int, seed: int = 0) -> MatchFrame:
    """``n`` synthetic people, already folded, with Zipf-like name frequencies and typos."""
    rng = np.random.default_rng(seed)
    syl = np.array(_SYLLABLES.split(","), dtype=object)

    def words(count: int, parts: int, pool: int) -> np.ndarray:
        made = syl[rng.integers(0, len(syl), (pool, parts))].sum(axis=1)
        weights = 1.0 / np.arange(1, pool + 1)
        return made[rng.choice(pool, count, p=weights / weights.sum())]

    def typo(values: np.ndarray, rate: float) -> np.ndarray:
        for i in np.flatnonzero(rng.random(len(values)) < rate):
            v, k = values[i], int(rng.integers(0, max(len(values[i]), 1)))
            values[i] = v[:k] + "aeiou"[int(rng.integers(0, 5))] + v[k + 1 :]
        return values

    def sometimes(values: np.ndarray, known: float) -> np.ndarray:
        values = values.astype(object)
        values[rng.random(n) >= known] = None
        return values

    first_pool = np.array(_FIRST + list(words(3000, 2, 3000)), dtype=object)
    weights = 1.0 / np.arange(1, len(first_pool) + 1) ** 0.8
    first = typo(first_pool[rng.choice(len(first_pool), n, p=weights / weights.sum())], 0.03)
    last = typo(words(n, 3, 20_000), 0.03)
    days = rng.integers(0, 65 * 365, n)
    birth = np.array([(date(1940, 1, 1) + timedelta(int(d))).isoformat() for d in days])
    domains = np.array(["gmail.com", "web.de", "orange.fr", "yahoo.com", "acme.com"])

    def multi(make: Callable[[int], str], rates: tuple[float, float]) -> list[tuple[str, ...]]:
        counts = np.searchsorted(np.cumsum(rates), rng.random(n))
        return [tuple(make(i) for _ in range(c)) for i, c in enumerate(counts)]

    scalars = {
        "first_name": sometimes(first, 0.97),
        "last_name": sometimes(last, 0.99),
        "first_root": np.array([_NICKNAMES.get(f, f) for f in first], dtype=object),
        "first_initial": np.array([f[:1] for f in first], dtype=object),
        "birth_date": sometimes(typo(birth.astype(object), 0.01), 0.7),
        "postcode": sometimes(rng.integers(10000, 13000, n).astype(str), 0.9),
        "city": sometimes(typo(words(n, 2, 400), 0.02), 0.9),
        "street": sometimes(
            np.array([f"{rng.integers(1, 200)} " for _ in range(n)], dtype=object)
            + words(n, 2, 5000)
            + " "
            + np.array(_STREETS, dtype=object)[rng.integers(0, 7, n)],
            0.85,
        ),
        "company": sometimes(words(n, 2, 8000) + " " + words(n, 1, 20), 0.4),
    }
    multis = {
        "emails": multi(lambda i: f"{first[i]}.{last[i]}{rng.integers(0, 99)}@"
                        f"{domains[rng.integers(0, 5)]}", (0.15, 0.7)),
        "phones": multi(lambda i: f"+44{rng.integers(10**9, 10**10)}", (0.3, 0.6)),
        "identifiers": multi(lambda i: f"cust:{rng.integers(0, 10**7)}", (0.7, 0.3)),
    }  # fmt: skip
    scalars["first_root"][scalars["first_name"] == None] = None  # noqa: E711
    scalars["first_initial"][scalars["first_name"] == None] = None  # noqa: E711
    return MatchFrame(np.arange(n, dtype=np.int64), scalars, multis)

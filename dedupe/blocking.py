"""Blocking: which pairs of records are worth comparing at all.

A blocking rule names match fields whose values together form a key (``last_phonetic`` +
``first_initial``, ``postcode`` + the first three letters of ``last_name``, any one email,
...). Records that share a key under any rule become candidate pairs. Rules are unioned and
the pairs de-duplicated, all as integer arrays: no Python loop per pair.

Blocking decides both speed and recall, and a rule on a common value (the surname "smith", a
shared office phone) can produce millions of pairs; so a block larger than
``max_block_size`` is skipped and reported (rule, how many blocks, how many records), never
silently exploded. The same keys, stored in ``match_keys``, let a new record find its
candidates in the hub without recomputing anything (:func:`record_keys`).

A field is written ``name`` or ``name:N`` (the first N characters of the value). A rule may
use at most one multi-valued field (emails, phones, identifiers): each of its values gives
the record one key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import numpy.typing as npt

from crmhub.dedupe.frame import MULTI_FIELDS, SCALAR_FIELDS, MatchFrame
from crmhub.errors import ConfigError

__all__ = [
    "DEFAULT_RULES",
    "BlockingReport",
    "BlockingRule",
    "CandidatePairs",
    "block",
    "key_digest",
    "record_keys",
]

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class BlockingRule:
    """Records whose ``fields`` all have values, equal between them, are candidates.

    Raises:
        ConfigError: if a field is unknown, a prefix is not a positive number, or the rule
            uses more than one multi-valued field.
    """

    name: str
    fields: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.fields:
            raise ConfigError(f"blocking rule {self.name!r} has no fields")
        multis = 0
        for spec in self.fields:
            name, _, prefix = spec.partition(":")
            if name not in SCALAR_FIELDS and name not in MULTI_FIELDS:
                known = ", ".join(SCALAR_FIELDS + MULTI_FIELDS)
                raise ConfigError(
                    f"blocking rule {self.name!r}: unknown field {name!r} (known: {known})"
                )
            if prefix and (not prefix.isdigit() or int(prefix) < 1):
                raise ConfigError(f"blocking rule {self.name!r}: {spec!r} needs a positive length")
            multis += name in MULTI_FIELDS
        if multis > 1:
            raise ConfigError(f"blocking rule {self.name!r} uses more than one multi-valued field")

    @property
    def scalar_parts(self) -> list[tuple[str, str]]:
        """(field, prefix length or "") of each single-valued field, in order."""
        parts = [spec.partition(":") for spec in self.fields]
        return [(name, prefix) for name, _, prefix in parts if name not in MULTI_FIELDS]

    @property
    def multi_field(self) -> str | None:
        """The rule's multi-valued field, if it has one."""
        names = [spec.partition(":")[0] for spec in self.fields]
        return next((name for name in names if name in MULTI_FIELDS), None)


DEFAULT_RULES: tuple[BlockingRule, ...] = (
    BlockingRule("email", ("emails",)),
    BlockingRule("phone", ("phones",)),
    BlockingRule("identifier", ("identifiers",)),
    BlockingRule("name", ("first_root", "last_name")),
    BlockingRule("names_sound", ("last_phonetic", "first_phonetic")),
    BlockingRule("postcode_surname", ("postcode", "last_name:3")),
    BlockingRule("birth_date_initial", ("birth_date", "first_initial")),
)
"""Rules tuned for people: each catches duplicates the others miss (a changed email, a typo
in a name, a moved address), and none blocks on a household trait alone (surname or
address without a first-name part), which would flood the candidates with family members.

Typos are caught by the sound of both names, not the sound of the surname and the first
initial: on 100,000 multi-source records the initial made 5.6 times the candidates
(1,023,764 against 181,702, most of them namesakes in blocks of hundreds) for no more
duplicates found at the ``auto_merge`` threshold (cluster recall 0.8906 against 0.8909), and
at a million records 68 million candidates; see ``benchmarks/BENCHMARKS.md``."""


@dataclass(frozen=True)
class CandidatePairs:
    """Candidate pairs as row indices into a frame, ``left < right``, each pair once.

    ``rule`` holds, per pair, the index of the first rule (in the order given) that found it.
    """

    left: IntArray
    right: IntArray
    rule: npt.NDArray[np.int16]

    def __len__(self) -> int:
        return len(self.left)


@dataclass
class BlockingReport:
    """What blocking did, for the operator: pairs per rule (before the union), the union, and
    the blocks skipped for their size. Keys themselves are never reported: they are personal
    data (emails, phones)."""

    pairs_per_rule: dict[str, int] = field(default_factory=dict)
    total_pairs: int = 0
    oversized_blocks: dict[str, int] = field(default_factory=dict)
    oversized_records: dict[str, int] = field(default_factory=dict)


def key_digest(key: str) -> str:
    """The form a key is stored in (``match_keys.value``): a short hash, so the table holds no
    readable personal data and every key has the same small size."""
    return hashlib.blake2b(key.encode(), digest_size=10).hexdigest()


def record_keys(frame: MatchFrame, rule: BlockingRule) -> tuple[IntArray, list[str]]:
    """Every (row, key) of ``rule`` in ``frame``: rows without a value for a field have none,
    and a multi-valued field gives one key per value. Built column by column: a full pass
    keys every record of the hub under every rule, and a loop per record and rule was most
    of that time."""
    parts: list[list[str | None]] = []
    for name, prefix in rule.scalar_parts:
        column: list[str | None] = frame.scalar(name).tolist()
        if prefix:
            size = int(prefix)
            column = [None if v is None else v[:size] for v in column]
        parts.append(column)
    # A record has a stem when every part is known (None and "" are not), "" without parts.
    stems: list[str | None]
    if not parts:
        stems = [""] * len(frame)
    elif len(parts) == 1:
        stems = [v or None for v in parts[0]]
    elif len(parts) == 2:
        stems = [f"{a}\x1f{b}" if a and b else None for a, b in zip(*parts, strict=True)]
    else:
        stems = ["\x1f".join(v) if all(v) else None for v in zip(*parts, strict=True)]
    rows: list[int] = []
    keys: list[str] = []
    multi_name = rule.multi_field
    if multi_name is None:
        rows = [row for row, stem in enumerate(stems) if stem is not None]
        keys = [stems[row] for row in rows]  # type: ignore[misc]
    else:
        for row, (stem, values) in enumerate(zip(stems, frame.multi(multi_name), strict=True)):
            if stem is None or not values:
                continue
            for value in values:
                if not value:
                    continue
                rows.append(row)
                keys.append(f"{stem}\x1f{value}" if stem else value)
    return np.asarray(rows, dtype=np.int64), keys


def block(
    frame: MatchFrame,
    rules: Sequence[BlockingRule] = DEFAULT_RULES,
    *,
    max_block_size: int = 500,
) -> tuple[CandidatePairs, BlockingReport]:
    """Candidate pairs of ``frame`` under ``rules``, unioned and de-duplicated.

    Args:
        frame: the records.
        rules: blocking rules, most specific first (a pair is credited to the first rule).
        max_block_size: blocks with more records than this are skipped and reported.
    """
    report = BlockingReport()
    found: list[IntArray] = []
    found_rule: list[npt.NDArray[np.int16]] = []
    n = max(len(frame), 1)
    for index, rule in enumerate(rules):
        rows, keys = _key_codes(frame, rule)
        left, right, skipped_blocks, skipped_records = _pairs_in_blocks(rows, keys, max_block_size)
        report.pairs_per_rule[rule.name] = len(left)
        if skipped_blocks:
            report.oversized_blocks[rule.name] = skipped_blocks
            report.oversized_records[rule.name] = skipped_records
        found.append(left * n + right)
        found_rule.append(np.full(len(left), index, dtype=np.int16))
    codes = np.concatenate(found) if found else np.empty(0, dtype=np.int64)
    rule_of = np.concatenate(found_rule) if found_rule else np.empty(0, dtype=np.int16)
    # Sorting by (code, rule) and keeping each code's first entry credits the earliest rule.
    order = np.lexsort((rule_of, codes))
    codes, rule_of = codes[order], rule_of[order]
    first = np.ones(len(codes), dtype=bool)
    first[1:] = codes[1:] != codes[:-1]
    codes, rule_of = codes[first], rule_of[first]
    report.total_pairs = len(codes)
    pairs = CandidatePairs(left=codes // n, right=codes % n, rule=rule_of)
    return pairs, report


def _combine(first: IntArray, second: IntArray) -> IntArray:
    """Codes of the pairs ``(first[i], second[i])``, compacted to ``0..k-1``; -1 where either
    is missing. (Compacting after every field keeps products of codes far from overflow.)"""
    out = np.full(len(first), -1, dtype=np.int64)
    known = np.flatnonzero((first >= 0) & (second >= 0))
    if known.size:
        mixed = first[known] * (int(second.max()) + 1) + second[known]
        out[known] = np.unique(mixed, return_inverse=True)[1].reshape(-1)
    return out


def _key_codes(frame: MatchFrame, rule: BlockingRule) -> tuple[IntArray, IntArray]:
    """Every (row, key) of ``rule``, as :func:`record_keys` gives them, but with each key as
    an integer code: equal keys, equal codes. Blocking sorts millions of keys, and sorting
    integers is many times faster than sorting strings."""
    combined: IntArray | None = None
    for name, prefix in rule.scalar_parts:
        spec = f"{name}:{prefix}"
        codes = frame.cached("prefix_codes", spec, partial(_prefix_codes, frame, name, prefix))
        combined = codes if combined is None else _combine(combined, codes)
    multi_name = rule.multi_field
    if multi_name is None:
        assert combined is not None  # a rule has at least one field
        rows = np.flatnonzero(combined >= 0)
        return rows, combined[rows]
    keys, width = frame.value_codes(multi_name)
    value_rows, value_codes = np.divmod(keys, width)
    if combined is not None:
        value_codes = _combine(combined[value_rows], value_codes)
    keep = value_codes >= 0
    return value_rows[keep], value_codes[keep]


def _prefix_codes(frame: MatchFrame, name: str, prefix: str) -> IntArray:
    """Each row's code of field ``name`` cut to ``prefix`` characters (all of it if empty);
    -1 where unknown. Cut once per distinct value, not once per row."""
    short_codes, values = frame.codes(name)
    codes: IntArray = short_codes.astype(np.int64)
    if not prefix:
        return codes
    size = int(prefix)
    index: dict[str, int] = {}
    cut = np.fromiter(
        (index.setdefault(v[:size], len(index)) for v in values.tolist()),
        dtype=np.int64,
        count=len(values),
    )
    return np.where(codes >= 0, cut[codes.clip(min=0)], -1)


def _pairs_in_blocks(
    rows: IntArray, keys: IntArray, max_block_size: int
) -> tuple[IntArray, IntArray, int, int]:
    """All pairs of distinct rows sharing a key (an integer code), ``left < right``; and the
    skipped blocks."""
    empty = np.empty(0, dtype=np.int64)
    if len(rows) < 2:
        return empty, empty, 0, 0
    codes = np.unique(keys, return_inverse=True)[1].reshape(-1)
    # One row may hold the same key twice (two emails with one matching form): once is enough.
    code_row = np.unique(codes.astype(np.int64) * (int(rows.max()) + 1) + rows)
    codes, rows = code_row // (int(rows.max()) + 1), code_row % (int(rows.max()) + 1)
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    sizes = np.diff(np.r_[starts, len(codes)])
    too_big = sizes > max_block_size
    lefts: list[IntArray] = []
    rights: list[IntArray] = []
    # Vectorised per block size: all blocks of size g share one upper-triangle pattern.
    for size in np.unique(sizes[(sizes >= 2) & ~too_big]):
        block_starts = starts[sizes == size]
        i, j = np.triu_indices(int(size), k=1)
        lefts.append(rows[(block_starts[:, None] + i[None, :]).ravel()])
        rights.append(rows[(block_starts[:, None] + j[None, :]).ravel()])
    if not lefts:
        return empty, empty, int(too_big.sum()), int(sizes[too_big].sum())
    left, right = np.concatenate(lefts), np.concatenate(rights)
    swap = left > right
    left[swap], right[swap] = right[swap], left[swap]
    return left, right, int(too_big.sum()), int(sizes[too_big].sum())

"""Blocking: candidate pairs from shared keys, unioned, de-duplicated, oversized blocks
skipped and reported, and the same keys for storage."""

from __future__ import annotations

import numpy as np
import pytest

from crmhub.dedupe.blocking import BlockingRule, block, key_digest, record_keys
from crmhub.dedupe.frame import MatchFrame
from crmhub.errors import ConfigError


def _frame(**columns: list[object]) -> MatchFrame:
    n = len(next(iter(columns.values())))
    scalars = {k: np.array(v, dtype=object) for k, v in columns.items() if k != "emails"}
    multis = {"emails": [tuple(e) for e in columns["emails"]]} if "emails" in columns else {}
    return MatchFrame(ids=np.arange(100, 100 + n), scalars=scalars, multis=multis)


def _pairs(frame: MatchFrame, rules: list[BlockingRule], **kw: int) -> set[tuple[int, int]]:
    pairs, _ = block(frame, rules, **kw)
    return set(zip(pairs.left.tolist(), pairs.right.tolist(), strict=True))


def test_records_sharing_a_key_become_candidate_pairs_once() -> None:
    frame = _frame(
        last_name=["smith", "smith", "jones", "smith", None],
        first_initial=["j", "j", "j", "a", "j"],
    )
    rule = BlockingRule("surname_initial", ("last_name", "first_initial"))
    assert _pairs(frame, [rule]) == {(0, 1)}


def test_rules_are_unioned_and_each_pair_is_credited_to_the_first_rule() -> None:
    frame = _frame(
        last_name=["smith", "smith", "smyth"],
        first_initial=["j", "j", "j"],
        emails=[["j@x.com"], ["j@x.com"], ["j@x.com", "other@y.com"]],
    )
    rules = [
        BlockingRule("email", ("emails",)),
        BlockingRule("surname_initial", ("last_name", "first_initial")),
    ]
    pairs, report = block(frame, rules)
    found = dict(
        zip(
            zip(pairs.left.tolist(), pairs.right.tolist(), strict=True),
            pairs.rule.tolist(),
            strict=True,
        )
    )
    assert found == {(0, 1): 0, (0, 2): 0, (1, 2): 0}
    assert report.pairs_per_rule == {"email": 3, "surname_initial": 1}
    assert report.total_pairs == 3


def test_a_prefix_field_uses_the_first_characters() -> None:
    frame = _frame(
        postcode=["SW1A1AA", "SW1A1AA", "SW1A1AA"], last_name=["smith", "smithers", "jones"]
    )
    rule = BlockingRule("postcode_surname", ("postcode", "last_name:3"))
    assert _pairs(frame, [rule]) == {(0, 1)}


def test_oversized_blocks_are_skipped_and_reported_without_their_keys() -> None:
    n = 2_000
    frame = _frame(emails=[["shared@office.com"]] * n)
    pairs, report = block(frame, [BlockingRule("email", ("emails",))], max_block_size=500)
    assert len(pairs) == 0
    assert report.oversized_blocks == {"email": 1}
    assert report.oversized_records == {"email": n}
    assert "office" not in repr(report)


def test_a_million_identical_keys_make_one_skipped_block_not_half_a_trillion_pairs() -> None:
    n = 1_000_000
    frame = MatchFrame(
        ids=np.arange(n),
        scalars={"last_name": np.full(n, "unknown", dtype=object)},
        multis={"emails": [("noreply@shop.example",)] * n},
    )
    rules = [BlockingRule("email", ("emails",)), BlockingRule("surname", ("last_name",))]
    pairs, report = block(frame, rules, max_block_size=500)
    assert len(pairs) == 0
    assert report.oversized_blocks == {"email": 1, "surname": 1}
    assert report.oversized_records == {"email": n, "surname": n}


def test_a_record_with_the_same_key_twice_does_not_pair_with_itself() -> None:
    frame = _frame(emails=[["a@x.com", "a@x.com"], ["a@x.com"]])
    assert _pairs(frame, [BlockingRule("email", ("emails",))]) == {(0, 1)}


def test_block_sizes_are_vectorised_correctly_for_many_blocks() -> None:
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 300, size=3_000)
    frame = _frame(postcode=[f"P{k}" for k in keys])
    got = _pairs(frame, [BlockingRule("postcode", ("postcode",))])
    expected = {(i, j) for i in range(3_000) for j in range(i + 1, 3_000) if keys[i] == keys[j]}
    assert got == expected


def test_record_keys_give_one_key_per_value_and_digests_are_stable() -> None:
    frame = _frame(emails=[["a@x.com", "b@y.com"], []], last_name=["lee", "lee"])
    rows, keys = record_keys(frame, BlockingRule("email", ("emails",)))
    assert rows.tolist() == [0, 0] and keys == ["a@x.com", "b@y.com"]
    assert key_digest("a@x.com") == key_digest("a@x.com") != key_digest("b@y.com")
    assert "a@x.com" not in key_digest("a@x.com")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ((), "has no fields"),
        (("shoe_size",), "unknown field 'shoe_size'"),
        (("last_name:x",), "positive length"),
        (("emails", "phones"), "more than one multi"),
    ],
)
def test_misconfigured_rules_are_config_errors(fields: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BlockingRule("bad", fields)


def test_an_empty_frame_gives_no_pairs() -> None:
    frame = MatchFrame(ids=np.empty(0, dtype=np.int64))
    pairs, report = block(frame)
    assert len(pairs) == 0 and report.total_pairs == 0


def test_blocking_pairs_are_exactly_the_pairs_of_the_stored_keys() -> None:
    # The hub finds a new record's candidates through the keys record_keys stores, a full
    # pass through block(): both must give the same pairs, or incremental != full.
    rng = np.random.default_rng(11)
    n = 600

    def pick(options: list[object]) -> list[object]:
        return [options[i] for i in rng.integers(0, len(options), n)]

    frame = _frame(
        last_name=pick(["lee", "leeds", "li", None, "", "smith", "smithers"]),
        first_initial=pick(["a", "b", None]),
        postcode=pick(["SW1A1AA", "SW1A2BB", None]),
        emails=[list(e) for e in pick([(), ("a@x.com",), ("a@x.com", "b@y.com"), ("b@y.com",)])],
    )
    rules = [
        BlockingRule("email_surname", ("last_name:3", "emails")),
        BlockingRule("surname_initial", ("last_name", "first_initial")),
        BlockingRule("postcode_surname", ("postcode", "last_name:2")),
    ]
    for rule in rules:
        rows, keys = record_keys(frame, rule)
        by_key: dict[str, set[int]] = {}
        for row, key in zip(rows.tolist(), keys, strict=True):
            by_key.setdefault(key, set()).add(row)
        expected = {
            (a, b) for members in by_key.values() for a in members for b in members if a < b
        }
        assert _pairs(frame, [rule], max_block_size=n) == expected, rule.name

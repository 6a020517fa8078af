"""The garbage-collection scopes of the bulk passes: what they change, and that they always
give it back."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from crmhub.collector import collector_paused, young_collections_only


@pytest.fixture(autouse=True)
def _known_thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*saved)


def test_full_collections_wait_for_the_scope_and_young_ones_do_not() -> None:
    with young_collections_only():
        young, middle, full = gc.get_threshold()
        assert (young, middle) == (700, 10)
        assert full > 1_000_000
    assert gc.get_threshold() == (700, 10, 10)


def test_the_thresholds_come_back_after_an_error() -> None:
    with pytest.raises(RuntimeError), young_collections_only():
        raise RuntimeError("the run failed")
    assert gc.get_threshold() == (700, 10, 10)


def test_nested_scopes_restore_only_when_the_outermost_ends() -> None:
    with young_collections_only():
        with young_collections_only():
            pass
        assert gc.get_threshold()[2] > 1_000_000
    assert gc.get_threshold() == (700, 10, 10)


def test_overlapping_scopes_in_threads_restore_the_original_thresholds() -> None:
    # Thread A enters, then B; A leaves first, then B: a naive save/restore per scope would
    # leave the raised threshold behind for good.
    a_entered, b_entered, a_left = threading.Event(), threading.Event(), threading.Event()
    inside: list[int] = []

    def first() -> None:
        with young_collections_only():
            a_entered.set()
            b_entered.wait(5)
        a_left.set()

    def second() -> None:
        a_entered.wait(5)
        with young_collections_only():
            b_entered.set()
            a_left.wait(5)
            inside.append(gc.get_threshold()[2])

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert inside and inside[0] > 1_000_000  # still deferred while B runs
    assert gc.get_threshold() == (700, 10, 10)


def test_a_paused_collector_comes_back_on_only_if_it_was_on() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()

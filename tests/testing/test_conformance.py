"""The conformance suite catches what it promises to catch: a connector that breaks one rule
fails the test for that rule (and a correct one, the scaffold's, passes them all: see
tests/test_example_connector.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crmhub.connector import Page
from crmhub.testing import ConformanceSuite, conformance_suite

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "crmhub-guestbook"
sys.path.insert(0, str(EXAMPLE))
from crmhub_guestbook import Guestbook  # noqa: E402
from crmhub_guestbook.server import GuestbookServer  # noqa: E402

sys.path.remove(str(EXAMPLE))


def _suite(connector: type[Guestbook]) -> ConformanceSuite:
    suite_class = conformance_suite(
        connector,
        server=lambda: GuestbookServer.seeded(people=12),
        settings={"base_url": GuestbookServer.base_url, "api_key": "test-key"},
        bad_settings={"api_key": "wrong-key"},
        small_pages={"page_size": 3},
    )
    return suite_class()


class IgnoresState(Guestbook):
    """Reads everything every time."""

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        return super().read(stream, None)


class NeverChecks(Guestbook):
    """Accepts any credentials without asking the API."""

    def check(self) -> None:
        pass


class DuplicatesRecords(Guestbook):
    """Yields the first page twice."""

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        pages = list(super().read(stream, state))
        yield from pages[:1] + pages


class LosesRecordsOnSmallPages(Guestbook):
    """Stops after the first page."""

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        yield from list(super().read(stream, state))[:1]


class EraseNotIdempotent(Guestbook):
    """Reports a second erase of the same person as a failure."""

    def erase(self, external_ids: Any) -> Any:
        for result in super().erase(external_ids):
            if result.status == "already_gone":
                yield type(result)(result.external_id, "failed", error="404")
            else:
                yield result


@pytest.mark.parametrize(
    ("connector", "test"),
    [
        (IgnoresState, "test_incremental_read_returns_only_newer_records"),
        (IgnoresState, "test_a_state_from_the_far_future_returns_nothing"),
        (NeverChecks, "test_check_fails_clearly_on_bad_credentials"),
        (DuplicatesRecords, "test_primary_keys_are_unique_and_non_null"),
        (LosesRecordsOnSmallPages, "test_small_pages_give_the_same_records_and_end"),
        (EraseNotIdempotent, "test_erase_is_idempotent"),
    ],
)
def test_a_connector_breaking_a_rule_fails_that_test(connector: type[Guestbook], test: str) -> None:
    with pytest.raises(AssertionError):
        getattr(_suite(connector), test)()
    getattr(_suite(Guestbook), test)()  # the unbroken connector passes the same test


def test_retries_are_checked_against_the_retry_after_header() -> None:
    class NoRetries(Guestbook):
        def http_settings(self) -> dict[str, Any]:
            from crmhub.http import RetryPolicy

            return {**super().http_settings(), "retry": RetryPolicy(attempts=1)}

    with pytest.raises(Exception, match="429"):
        _suite(NoRetries).test_429_and_5xx_are_retried_honouring_retry_after()
    _suite(Guestbook).test_429_and_5xx_are_retried_honouring_retry_after()

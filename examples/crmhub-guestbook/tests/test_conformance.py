"""crmhub's conformance suite for the guestbook connector, against the fake API."""

from crmhub.testing import conformance_suite

from crmhub_guestbook import Guestbook
from crmhub_guestbook.server import GuestbookServer

TestConformance = conformance_suite(
    Guestbook,
    server=lambda: GuestbookServer.seeded(people=30),
    settings={"base_url": GuestbookServer.base_url, "api_key": "test-key"},
    bad_settings={"api_key": "wrong-key"},
    small_pages={"page_size": 3},
)

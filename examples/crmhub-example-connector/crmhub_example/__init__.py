"""A complete third-party crmhub connector: guests signed into a JSON guest book.

The book is a JSON list of {"id", "name", "email", "signed_at"} objects. Install this package
and `crmhub connectors list` shows `guestbook`; configure it with
`[connectors.lobby] type = "guestbook"` and `path = "book.json"`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import crmhub
from crmhub import ConnectorConfig, EraseResult, Page, Stream
from crmhub.errors import FatalError

MAPPING = Path(__file__).with_name("guestbook.yaml")


class GuestBook(crmhub.Connector):
    """Guests from a JSON guest book; incremental on `signed_at`."""

    name = "guestbook"
    description = "Guests signed into a JSON guest book"
    streams = {"guests": Stream(primary_key="id", cursor="signed_at")}
    default_mapping = str(MAPPING)

    class Config(ConnectorConfig):
        path: Path

    def _guests(self) -> list[dict[str, Any]]:
        try:
            return list(json.loads(self.config.path.read_text()))  # type: ignore[attr-defined]
        except (OSError, ValueError) as exc:
            raise FatalError(f"cannot read the guest book: {exc}", connector=self.name) from None

    def check(self) -> None:
        self._guests()

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        since = (state or {}).get("signed_at", "")
        guests = sorted(
            (g for g in self._guests() if g.get("signed_at", "") > since),
            key=lambda g: g.get("signed_at", ""),
        )
        for start in range(0, len(guests), 100):
            page = guests[start : start + 100]
            yield Page(records=page, state={"signed_at": page[-1].get("signed_at", since)})

    def erase(self, external_ids: Iterable[str]) -> Iterator[EraseResult]:
        ids = set(external_ids)
        guests = self._guests()
        kept = [g for g in guests if str(g.get("id")) not in ids]
        self.config.path.write_text(json.dumps(kept))  # type: ignore[attr-defined]
        found = {str(g.get("id")) for g in guests} & ids
        for external_id in sorted(ids):
            yield EraseResult(external_id, "erased" if external_id in found else "already_gone")


@crmhub.hookimpl
def register_connectors(register: Any) -> None:
    register(GuestBook)

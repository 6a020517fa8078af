"""A crmhub connector for Guestbook: people from its HTTP API, incremental on ``updated_at``.

The API it talks to (see ``server.py``, the fake the tests use):

- ``GET /v1/people?updated_since=&after=&limit=``: people by (updated_at, id), ascending,
  ``{"data": [...], "next_cursor": "..." | null}``;
- ``PATCH /v1/people/{id}``: update fields (with an ``Idempotency-Key`` header);
- ``DELETE /v1/people/{id}``: erase a person (404 once gone).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr

import crmhub
from crmhub import Change, EraseResult, HttpConnectorConfig, Page, Stream, WriteResult
from crmhub.errors import ConnectorError, RetriableError, SkippableRecordError
from crmhub.paginators import CursorPaginator

MAPPING = Path(__file__).with_name("guestbook.yaml")


class Guestbook(crmhub.Connector):
    """People from Guestbook."""

    name = "guestbook"
    description = "People from Guestbook"
    streams = {"people": Stream(primary_key="id", cursor="updated_at", description="people")}
    default_mapping = str(MAPPING)

    class Config(HttpConnectorConfig):
        base_url: str = "https://api.example.com"
        api_key: SecretStr
        page_size: int = Field(default=100, ge=1, le=100)

    config: Config

    def http_settings(self) -> dict[str, Any]:
        settings = super().http_settings()
        settings["headers"] = {"Authorization": f"Bearer {self.config.api_key.get_secret_value()}"}
        return settings

    def check(self) -> None:
        try:
            self.http.get("/v1/people", params={"limit": 1})
        except RetriableError as exc:
            raise ConnectorError(f"cannot reach the API: {exc}", connector=self.name) from None

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        # Ascending by updated_at, so each page's last record is a safe place to resume.
        since = (state or {}).get("updated_at", "")
        params = {"limit": self.config.page_size, "updated_since": since}
        paginator = CursorPaginator(param="after", cursor="next_cursor")
        for _response, body in paginator.pages(self.http, "/v1/people", params):
            records = body.get("data") or []
            if records:
                yield Page(records=records, state={"updated_at": records[-1]["updated_at"]})

    def state_since(self, stream: str, since: datetime) -> dict[str, Any]:
        return {"updated_at": since.isoformat().replace("+00:00", "Z")}

    def write(self, stream: str, changes: Iterable[Change]) -> Iterator[WriteResult]:
        for change in changes:
            key = change.idempotency_key
            try:
                self.http.patch(
                    f"/v1/people/{change.external_id}",
                    json=dict(change.fields),
                    headers={"Idempotency-Key": key},
                )
            except SkippableRecordError as exc:
                yield WriteResult(key, ok=False, error=str(exc))
            except RetriableError as exc:
                yield WriteResult(key, ok=False, error=str(exc), retriable=True)
            else:
                yield WriteResult(key, ok=True, external_id=change.external_id)

    def erase(self, external_ids: Iterable[str]) -> Iterator[EraseResult]:
        for external_id in external_ids:
            try:
                self.http.delete(f"/v1/people/{external_id}")
            except SkippableRecordError:
                yield EraseResult(external_id, "already_gone")
            except RetriableError as exc:
                yield EraseResult(external_id, "failed", error=str(exc), retriable=True)
            else:
                yield EraseResult(external_id, "erased")


@crmhub.hookimpl
def register_connectors(register: Any) -> None:
    register(Guestbook)

"""A fake of the Guestbook API for the tests: people in memory, real HTTP shapes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from crmhub.sandbox import SandboxApp
from crmhub.sandbox.app import ApiError, SandboxRequest, bearer_token, int_param, route


class GuestbookServer(SandboxApp):
    """People behind ``/v1/people``, with cursor pages, updates and erasure."""

    system = "guestbook"
    host = "api.guestbook.test"
    default_credentials = "test-key"
    base_url = f"https://{host}"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.people: dict[str, dict[str, Any]] = {}
        self._last_id = 0

    def authorized(self, request: SandboxRequest) -> bool:
        return bearer_token(request) == self.credentials

    def error_body(self, status: int, message: str, code: str | None) -> Any:
        return {"error": {"message": message, "code": code or str(status)}}

    def seed(self, rows: Iterable[Mapping[str, str]]) -> None:
        for row in rows:
            fields = {k: row[k] for k in ("first_name", "last_name", "email", "phone", "country")}
            self._add(fields, row["updated_at"])

    def add_record(self, stream: str) -> str:
        return self._add({"first_name": "New", "last_name": "Person"}, "2999-01-01T00:00:00Z")

    def _add(self, fields: dict[str, Any], updated_at: str) -> str:
        self._last_id += 1
        person_id = f"p{self._last_id}"
        self.people[person_id] = {"id": person_id, **fields, "updated_at": updated_at}
        return person_id

    @route("GET", "/v1/people")
    def list_people(self, request: SandboxRequest) -> httpx.Response:
        limit = int_param(request, "limit", 100, lo=1, hi=100)
        since = request.query.get("updated_since", "")
        after = request.query.get("after", "")
        ordered = sorted(self.people.values(), key=lambda p: (p["updated_at"], p["id"]))
        rows = [p for p in ordered if p["updated_at"] >= since]
        if after:
            rows = [p for p in rows if (p["updated_at"], p["id"]) > tuple(after.split("|"))]
        page = rows[:limit]
        more = len(rows) > limit
        cursor = f"{page[-1]['updated_at']}|{page[-1]['id']}" if more else None
        return self.json({"data": page, "next_cursor": cursor})

    @route("PATCH", "/v1/people/{id}")
    def update_person(self, request: SandboxRequest) -> httpx.Response:
        person = self._person(request.params["id"])
        person.update(request.json() or {})
        person["updated_at"] = "2999-01-01T00:00:01Z"
        return self.json(person)

    @route("DELETE", "/v1/people/{id}")
    def delete_person(self, request: SandboxRequest) -> httpx.Response:
        self._person(request.params["id"])
        del self.people[request.params["id"]]
        return self.empty()

    def _person(self, person_id: str) -> dict[str, Any]:
        if person_id not in self.people:
            raise ApiError(404, "no such person", code="not_found")
        return self.people[person_id]

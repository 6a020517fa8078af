"""The ``typeform`` connector: form responses as people and as submissions, read incrementally,
erased on request, and received by signed webhooks.

::

    [connectors.typeform]
    type = "typeform"
    token = "env:TYPEFORM_TOKEN"          # a personal access token (forms:read, responses:read,
    forms = ["u6nXL7"]                    #   responses:write to erase); [] reads every form
    webhook_secret = "env:TYPEFORM_WEBHOOK_SECRET"

Two streams read the same responses of the Responses API: ``responses`` (people) and
``submissions`` (one activity per response). Each record is the API's response item plus
``form_id``, ``form_title`` and ``answers_by_ref``, the answers as ``{field ref: value}`` (a
choice as its label), so that the mapping finds a question by its ``ref`` whatever its
position in the form. Give the questions refs in the form editor (``email``, ``first_name``,
...): the built-in mapping reads those.

Incremental reads follow submission time, per form. The state is
``{"forms": {form_id: {"since": "2024-05-01T10:00:00Z", "seen": [tokens]}}}``: the latest
``submitted_at`` read and the tokens read at that very second. A read asks for responses
``since`` that second (the API's ``since`` is inclusive and to the second), oldest first
(``sort=submitted_at,asc``, then ``after`` the last token of each page), and leaves out the
tokens already seen, so ties at a second are neither read twice nor skipped. Every page's
state covers exactly what was read up to it, so a crash after any page loses nothing.

Typeform does not tell of deleted responses, so no deletions are reported; forms are
read-only here (no write). Responses are erased with ``DELETE /forms/{id}/responses``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
import orjson
from pydantic import Field, SecretStr

from crmhub.connector import (
    Connector,
    EraseResult,
    HttpConnectorConfig,
    Page,
    Stream,
    WebhookDelivery,
)
from crmhub.errors import (
    AuthError,
    ConnectorError,
    FatalError,
    RetriableError,
    SkippableRecordError,
    WebhookSignatureError,
)
from crmhub.hookspecs import hookimpl
from crmhub.paginators import Body, CursorPaginator, NextPage, PageNumberPaginator

__all__ = ["TypeformConfig", "TypeformConnector", "answers_by_ref"]

_ERASE_BATCH = 100  # tokens per request: the API takes 1000, but they all go in the URL
_FORMS_PAGE = 200  # GET /forms's largest page


class TypeformConfig(HttpConnectorConfig):
    """Settings of the ``typeform`` connector (see the module docstring)."""

    base_url: str = "https://api.typeform.com"
    """``https://api.eu.typeform.com`` for accounts in Typeform's EU data center."""
    token: SecretStr
    """A personal access token, sent as ``Authorization: Bearer``."""
    forms: list[str] = Field(default_factory=list)
    """Ids of the forms to read; empty: every form the token can see (``GET /forms``)."""
    page_size: int = Field(1000, ge=1, le=1000)
    """Responses per request (the API allows at most 1000)."""
    webhook_secret: SecretStr | None = None
    """The secret of the form's webhook; deliveries are refused without it."""
    webhook_tolerance: float | None = Field(300.0, ge=0)
    """Seconds a delivery's ``submitted_at`` may lie from now (None: no limit). Typeform signs
    no timestamp, so the submission time bounds replays instead; Typeform redelivers failed
    webhooks for hours, and those retries are refused past this age (the next poll reads the
    responses anyway)."""


def answers_by_ref(answers: Any) -> dict[str, Any]:
    """A response's answers as ``{field ref: value}`` (the field id where a field has no ref).

    A value is the answer's field named by its ``type`` (``text``, ``email``, ``boolean``,
    ...), a choice as its label, several choices as a list of labels.
    """
    out: dict[str, Any] = {}
    if not isinstance(answers, list):
        return out
    # Plain dict checks, not Mapping: this runs for every answer of every response read.
    for answer in answers:
        if not isinstance(answer, dict):
            continue
        field = answer.get("field")
        key = (field.get("ref") or field.get("id")) if isinstance(field, dict) else None
        if not key or not isinstance(key, str):
            continue
        kind = answer.get("type")
        value = answer.get(kind) if isinstance(kind, str) else None
        if isinstance(value, dict):
            if kind == "choice":
                value = value.get("label") or value.get("other")
            elif kind == "choices":
                labels = list(value.get("labels") or [])
                value = [*labels, value["other"]] if value.get("other") else labels
        out[key] = value
    return out


def _second(value: Any) -> str | None:
    """A timestamp as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC, to the second: the precision of the API's
    ``since``), so that timestamps compare as text; None when unreadable."""
    if not isinstance(value, str) or not value:
        return None
    if len(value) == 20 and value[10] == "T" and value[19] == "Z" and value[:4].isdigit():
        return value  # already in that form, as Typeform writes it
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _OldestFirst(CursorPaginator):
    """Pages of a form's responses, oldest first: the first page sorted by ``submitted_at``
    ascending, the next ones ``after`` the last token (``after`` and ``sort`` cannot go
    together: ``after`` pages in the order Typeform processed the responses)."""

    page_size: int = 1000

    def first_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """The caller's parameters, sorted oldest first."""
        return {**params, "sort": "submitted_at,asc"}

    def next_page(self, response: httpx.Response, body: Body) -> NextPage | None:
        items = body.get("items") if isinstance(body, Mapping) else None
        if not isinstance(items, list):
            raise FatalError(f"GET {response.request.url.path}: the page has no list of items")
        total = body.get("total_items")
        if len(items) < self.page_size or (isinstance(total, int) and total <= len(items)):
            return None
        token = items[-1].get("token") if isinstance(items[-1], Mapping) else None
        return NextPage(params=(("after", str(token)),)) if token else None


class TypeformConnector(Connector):
    """Reads Typeform responses as people and submissions; erases responses; verifies and
    ingests ``form_response`` webhooks (see the module docstring)."""

    name = "typeform"
    Config = TypeformConfig
    config: TypeformConfig
    default_mapping = "typeform"
    description = "Typeform form responses: people and form submissions, erasure, webhooks"
    streams: ClassVar[dict[str, Stream]] = {
        "responses": Stream(
            primary_key="token",
            cursor="submitted_at",
            kind="person",
            description="form responses, answers by field ref: the respondents",
        ),
        "submissions": Stream(
            primary_key="token",
            cursor="submitted_at",
            kind="activity",
            description="one form_submission activity per response",
        ),
    }

    def __init__(self, config: Any, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._titles: dict[str, str] = {}  # form id -> title, learnt once per instance
        self._listed: list[str] | None = None  # the forms of GET /forms, when none configured

    def http_settings(self) -> dict[str, Any]:
        """The hub's client settings plus the bearer token."""
        options = super().http_settings()
        token = self.config.token.get_secret_value()
        options["headers"] = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        return options

    # ------------------------------------------------------------------ check
    def check(self) -> None:
        """List one form (and fetch each configured form) with the token.

        Raises:
            AuthError: the token is refused.
            FatalError: a configured form does not exist or the token cannot see it.
            ConnectorError: the API cannot be reached.
        """
        try:
            self.http.get("/forms", params={"page_size": 1})
            for form_id in self.config.forms:
                self._form_title(form_id)
        except AuthError as exc:
            status = exc.response.status_code if exc.response is not None else "401"
            raise AuthError(
                f"Typeform refused the personal access token (HTTP {status}): check `token` "
                "and that it has the forms:read and responses:read scopes",
                connector=self.instance_name,
            ) from None
        except RetriableError as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: RetriableError) -> ConnectorError:
        host = httpx.URL(self.config.base_url).host
        if exc.response is None:
            what = f"cannot reach the Typeform API at {host}"
        else:
            what = f"the Typeform API at {host} kept failing (HTTP {exc.response.status_code})"
        return ConnectorError(
            f"{what}: check `base_url` and the network", connector=self.instance_name
        )

    # ------------------------------------------------------------------ forms
    def _form_ids(self) -> list[str]:
        """The configured forms, or every form the token sees (listed once per instance)."""
        if self.config.forms:
            return list(self.config.forms)
        if self._listed is None:
            listed: list[str] = []
            paginator = PageNumberPaginator(
                records="items", page_size=_FORMS_PAGE, size_param="page_size"
            )
            for _, body in paginator.pages(self.http, "/forms"):
                for form in body.get("items") or []:
                    listed.append(str(form["id"]))
                    self._titles[str(form["id"])] = str(form.get("title") or "")
            self._listed = listed
        return list(self._listed)

    def _form_title(self, form_id: str) -> str:
        """The form's title (``GET /forms/{id}`` the first time)."""
        if form_id not in self._titles:
            try:
                body = self.http.get(f"/forms/{form_id}").json()
            except SkippableRecordError:
                raise self._no_form(form_id) from None
            self._titles[form_id] = str(body.get("title") or "")
        return self._titles[form_id]

    def _no_form(self, form_id: str) -> FatalError:
        return FatalError(
            f"form {form_id!r} does not exist or the token cannot see it: check `forms`",
            connector=self.instance_name,
        )

    @staticmethod
    def _record(item: dict[str, Any], form_id: str, title: str) -> dict[str, Any]:
        """A response item as both streams give it: the item, its form and its answers by ref."""
        record = dict(item)
        record["form_id"] = form_id
        record["form_title"] = title
        record["answers_by_ref"] = answers_by_ref(item.get("answers"))
        return record

    # ------------------------------------------------------------------ read
    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        """Yield pages of responses submitted since ``state`` (None: all), form by form.

        Args:
            stream: ``responses`` or ``submissions`` (the same records, mapped differently).
            state: the state of the last committed page (see the module docstring).

        Yields:
            Pages of at most ``page_size`` records, each with the state that covers it.
        """
        if stream not in self.streams:
            raise FatalError(f"unknown stream {stream!r}", connector=self.instance_name)
        forms = (state or {}).get("forms")
        positions: dict[str, Any] = dict(forms) if isinstance(forms, Mapping) else {}
        start = (state or {}).get("since")  # for forms without a position (state_since)
        for form_id in self._form_ids():
            if start and form_id not in positions:
                positions[form_id] = {"since": start, "seen": []}
            yield from self._read_form(form_id, positions)

    def state_since(self, stream: str, since: datetime) -> dict[str, Any]:
        """Every form read from ``since`` (to the second)."""
        stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"since": stamp, "forms": {}}

    def _read_form(self, form_id: str, positions: dict[str, Any]) -> Iterator[Page]:
        position = positions.get(form_id)
        position = position if isinstance(position, Mapping) else {}
        since: str | None = _second(position.get("since"))
        seen = {str(t) for t in position.get("seen") or ()} if since else set()
        params: dict[str, Any] = {"page_size": self.config.page_size}
        if since is not None:
            params["since"] = since[:-1]  # the API's form: UTC, to the second, no zone
        paginator = _OldestFirst(param="after", page_size=self.config.page_size)
        try:
            for _, body in paginator.pages(self.http, f"/forms/{form_id}/responses", params):
                records: list[dict[str, Any]] = []
                for item in body.get("items") or []:
                    token = str(item.get("token") or "")
                    submitted = _second(item.get("submitted_at"))
                    if submitted is not None:
                        if since is None or submitted > since:
                            since, seen = submitted, {token}
                        elif submitted == since:
                            if token in seen:
                                continue  # read at this second by an earlier run
                            seen.add(token)
                    records.append(self._record(item, form_id, self._form_title(form_id)))
                if since is not None:
                    positions[form_id] = {"since": since, "seen": sorted(seen)}
                if records:
                    yield Page(records=records, state={"forms": dict(positions)})
        except SkippableRecordError:
            raise self._no_form(form_id) from None

    # ------------------------------------------------------------------ erase
    def erase(self, external_ids: Iterable[str]) -> Iterator[EraseResult]:
        """Delete responses by token from whichever form holds them.

        Each form is asked which of the tokens it holds (``included_response_ids``), those
        are deleted (``DELETE /forms/{id}/responses``), and a token that no form lists is
        ``already_gone``, so erasing twice is harmless.
        """
        wanted = [str(external_id) for external_id in external_ids]
        try:
            forms = self._form_ids()
        except ConnectorError as exc:
            for token in wanted:
                yield self._failed(token, exc)
            return
        unique = list(dict.fromkeys(wanted))
        results: dict[str, EraseResult] = {}
        for start in range(0, len(unique), _ERASE_BATCH):
            results.update(self._erase_batch(forms, unique[start : start + _ERASE_BATCH]))
        for token in wanted:
            yield results[token]

    def _erase_batch(self, forms: list[str], tokens: list[str]) -> dict[str, EraseResult]:
        """Erase up to ``_ERASE_BATCH`` tokens: one look-up per form, one delete where found."""
        results: dict[str, EraseResult] = {}
        left = set(tokens)
        for form_id in forms:
            if not left:
                break
            path = f"/forms/{form_id}/responses"
            try:
                body = self.http.get(
                    path,
                    params={
                        "included_response_ids": ",".join(sorted(left)),
                        "response_type": "started,partial,completed",
                        "page_size": 1000,
                    },
                ).json()
                found = sorted({str(i.get("token")) for i in body.get("items") or []} & left)
                if found:
                    self.http.delete(path, params={"included_response_ids": ",".join(found)})
            except SkippableRecordError:
                continue  # the form is gone, and its responses with it
            except ConnectorError as exc:
                # Not looked for in every form: neither erased nor known to be gone.
                return results | {token: self._failed(token, exc) for token in left}
            for token in found:
                results[token] = EraseResult(token, "erased")
            left.difference_update(found)
        return results | {token: EraseResult(token, "already_gone") for token in left}

    @staticmethod
    def _failed(token: str, exc: ConnectorError) -> EraseResult:
        return EraseResult(
            token,
            "failed",
            error=f"Typeform: {type(exc).__name__}: {exc}",
            retriable=isinstance(exc, RetriableError),
        )

    # ------------------------------------------------------------------ webhooks
    def webhook(
        self, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> list[WebhookDelivery]:
        """Verify a Typeform delivery and turn its ``form_response`` into records.

        The ``Typeform-Signature`` header must be ``sha256=`` and the base64 HMAC-SHA256 of
        the body under ``webhook_secret`` (compared in constant time). Typeform signs no
        timestamp, so ``webhook_tolerance`` is applied to the response's ``submitted_at``: a
        delivery of an older submission is refused as a possible replay. Events other than
        ``form_response`` are verified and ignored.

        Returns:
            One delivery for ``responses`` and one for ``submissions``, each with the
            response as :meth:`read` gives it.

        Raises:
            WebhookSignatureError: no secret configured, the signature is missing or wrong,
                or the submission is outside the tolerance.
            FatalError: a signed body that is not a Typeform event.
        """
        self._verify(headers, body)
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise FatalError("the webhook body is not JSON", connector=self.instance_name) from None
        if not isinstance(event, dict) or event.get("event_type") != "form_response":
            return []
        response = event.get("form_response")
        if not isinstance(response, dict) or not response.get("token"):
            raise FatalError(
                "the form_response event has no response token", connector=self.instance_name
            )
        self._check_age(response.get("submitted_at"), now)
        event_id = str(event["event_id"]) if event.get("event_id") else None
        return [
            WebhookDelivery(stream, Page(records=[self._webhook_record(response)]), event_id)
            for stream in self.streams
        ]

    def _verify(self, headers: Mapping[str, str], body: bytes) -> None:
        secret = self.config.webhook_secret
        if secret is None:
            raise WebhookSignatureError(
                "no webhook_secret is configured: Typeform deliveries cannot be verified",
                connector=self.instance_name,
            )
        given = next((v for k, v in headers.items() if k.lower() == "typeform-signature"), "")
        if not given:
            raise WebhookSignatureError(
                "the delivery has no Typeform-Signature header", connector=self.instance_name
            )
        digest = hmac.new(secret.get_secret_value().encode(), body, hashlib.sha256).digest()
        expected = b"sha256=" + base64.b64encode(digest)
        if not hmac.compare_digest(given.strip().encode(), expected):
            raise WebhookSignatureError(
                "the Typeform-Signature does not match the body", connector=self.instance_name
            )

    def _check_age(self, submitted_at: Any, now: float | None) -> None:
        tolerance = self.config.webhook_tolerance
        if tolerance is None:
            return
        submitted = _second(submitted_at)
        if submitted is None:
            raise WebhookSignatureError(
                "the delivery has no readable submitted_at to check its age against",
                connector=self.instance_name,
            )
        at = datetime.fromisoformat(submitted).timestamp()
        age = (time.time() if now is None else now) - at
        if abs(age) > tolerance:
            raise WebhookSignatureError(
                f"the delivery's submission is {abs(age):.0f} s from now, beyond the "
                f"tolerance of {tolerance:.0f} s",
                connector=self.instance_name,
            )

    def _webhook_record(self, response: dict[str, Any]) -> dict[str, Any]:
        """A webhook's ``form_response`` in the shape :meth:`read` gives (a webhook carries
        no ``metadata``; the next poll fills it in)."""
        token = str(response["token"])
        form_id = str(response.get("form_id") or "")
        definition = response.get("definition")
        title = definition.get("title") if isinstance(definition, Mapping) else None
        item = {
            "landing_id": token,
            "token": token,
            "response_id": token,
            "response_type": "completed",
            "landed_at": response.get("landed_at"),
            "submitted_at": response.get("submitted_at"),
            "metadata": {},
            "hidden": response.get("hidden") or {},
            "calculated": response.get("calculated") or {},
            "answers": response.get("answers") or [],
        }
        return self._record(item, form_id, str(title or self._titles.get(form_id, "")))


@hookimpl
def register_connectors(register: Callable[[type[Any]], None]) -> None:
    """Register the ``typeform`` connector."""
    register(TypeformConnector)

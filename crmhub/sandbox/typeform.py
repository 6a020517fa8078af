"""The Typeform sandbox: forms and their responses, as the Create and Responses APIs serve them.

The synthetic world's ``shop`` people are respondents of two forms, a "Contact us" form and a
"Product feedback" form, whose questions carry ``ref`` s (``first_name``, ``email``,
``newsletter``, ...) so that a connector can find answers by ref. Each respondent's
``person_key`` travels as a hidden field, as a tracking id would.

Routes (the real paths, parameters and shapes; errors as ``{"code", "description"}``):

- ``GET /forms`` (``page``, ``page_size`` up to 200, ``search``): ``{total_items, page_count,
  items}``;
- ``GET /forms/{form_id}``: the form definition with its ``fields``; 404 ``FORM_NOT_FOUND``;
- ``GET /forms/{form_id}/responses``: ``page_size`` (default 25, at most 1000), ``since`` and
  ``until`` (inclusive, epoch seconds or ISO-8601 to the second), ``after`` and ``before``
  (response tokens, exclusive; responses in the order they were processed, which here is
  submission order; not together with ``sort``), ``sort=submitted_at,asc|desc`` (default
  newest first), ``included_response_ids``, ``excluded_response_ids``, ``response_type`` and
  ``completed``;
- ``DELETE /forms/{form_id}/responses?included_response_ids=a,b`` (or the ids in a JSON body):
  200, unknown ids ignored, as the real API does. Whether a response is still there is told
  by listing it with ``included_response_ids``: an erased one is no longer listed.

Each form's responses sit in a dict by token plus a list of ``(submitted epoch, token)`` kept
sorted, so a page costs a bisect and the page itself, never a scan of every response.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from crmhub.sandbox.app import (
    ApiError,
    SandboxApp,
    SandboxRequest,
    bearer_token,
    e164,
    int_param,
    route,
)

__all__ = ["CONTACT_FORM", "FEEDBACK_FORM", "TypeformSandbox", "sign_webhook"]

CONTACT_FORM = "cOnT4cT1"
"""The id of the "Contact us" form."""
FEEDBACK_FORM = "fDbK7q2W"
"""The id of the "Product feedback" form."""

_ACCOUNT = "https://sandbox.typeform.com"
_DEFAULT_COUNTRY = "GB"  # the phone questions' preselected country
_LAST = "\U0010ffff"  # sorts after every token: the upper end of one second's range
_MAX_IDS = 1000  # tokens one request may name (the real API's limit)

# (ref, field type, title, answer type) per question, in form order.
_Question = tuple[str, str, str, str]
_CONTACT_QUESTIONS: tuple[_Question, ...] = (
    ("first_name", "short_text", "What is your first name?", "text"),
    ("last_name", "short_text", "And your last name?", "text"),
    ("email", "email", "Your email address", "email"),
    ("phone", "phone_number", "A phone number we can call you on", "phone_number"),
    ("company", "short_text", "Which company are you with?", "text"),
    ("street", "short_text", "Street address", "text"),
    ("city", "short_text", "City", "text"),
    ("postcode", "short_text", "Postcode", "text"),
    ("country", "dropdown", "Country", "choice"),
    ("birth_date", "date", "Date of birth", "date"),
    ("newsletter", "yes_no", "Would you like our newsletter?", "boolean"),
    ("message", "long_text", "How can we help?", "text"),
)
_FEEDBACK_QUESTIONS: tuple[_Question, ...] = (
    ("first_name", "short_text", "What is your first name?", "text"),
    ("last_name", "short_text", "And your last name?", "text"),
    ("email", "email", "Your email address", "email"),
    ("country", "dropdown", "Where are you based?", "choice"),
    ("rating", "opinion_scale", "How likely are you to recommend us?", "number"),
    ("newsletter", "yes_no", "Can we send you product news?", "boolean"),
    ("message", "long_text", "Anything else you want to tell us?", "text"),
)
_MESSAGES = (
    "Do you ship abroad?",
    "I would like a quote for a bulk order.",
    "My order arrived damaged.",
    "Can I change the delivery address of my order?",
    "Great service, thank you!",
    "When will the item be back in stock?",
    "Please call me back about my last invoice.",
)
_AGENTS = (
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0", "other"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 Safari/17.2", "other"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) Mobile/15E148", "mobile"),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/120.0 Mobile", "mobile"),
)


def _iso(epoch: int) -> str:
    """Typeform's timestamp form: UTC to the second, ``2024-05-01T10:00:00Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _epoch(text: str) -> int:
    """Whole seconds since the epoch of an ISO-8601 timestamp (UTC when it names no zone)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def sign_webhook(body: bytes, secret: str) -> str:
    """The ``Typeform-Signature`` header value of ``body``: ``sha256=`` and the base64 of its
    HMAC-SHA256 under the webhook's secret."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


def _field_id(form_id: str, ref: str) -> str:
    """A stable 12-character field id, in the style of Typeform's."""
    return hashlib.blake2b(f"{form_id}:{ref}".encode(), digest_size=9).hexdigest()[:12]


class TypeformSandbox(SandboxApp):
    """Typeform's Create (forms) and Responses APIs over in-memory forms (see the module
    docstring). ``webhook_secret`` signs the deliveries of :meth:`webhook_delivery`."""

    system = "typeform"
    host = "api.typeform.sandbox"
    default_credentials = "tfp_sandbox_personal_access_token"
    webhook_secret = "sandbox-typeform-webhook-secret"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.forms: dict[str, dict[str, Any]] = {}
        """Form definitions by id, as ``GET /forms/{id}`` returns them."""
        self.responses: dict[str, dict[str, dict[str, Any]]] = {}
        """Each form's responses by token, as the Responses API lists them."""
        self._order: dict[str, list[tuple[int, str]]] = {}
        # The last position of every token ever seen, erased ones included: a reader paging
        # with `after` a token that was erased meanwhile still gets the responses after it.
        self._position: dict[str, tuple[int, str]] = {}
        self._form_of: dict[str, str] = {}
        self._questions: dict[str, list[tuple[str, str, dict[str, str]]]] = {}
        self._add_form(CONTACT_FORM, "Contact us", _CONTACT_QUESTIONS)
        self._add_form(FEEDBACK_FORM, "Product feedback", _FEEDBACK_QUESTIONS)

    # ------------------------------------------------------------------ SandboxApp
    def authorized(self, request: SandboxRequest) -> bool:
        """A personal access token as ``Authorization: Bearer``."""
        return bearer_token(request) == self.credentials

    def error_body(self, status: int, message: str, code: str | None) -> Any:
        """Typeform's error shape: ``{"code": "FORM_NOT_FOUND", "description": "..."}``."""
        if status == 401:
            code, message = (
                "AUTHENTICATION_FAILED",
                "Authentication credentials not found on the Request Headers",
            )
        elif code is None or code.islower():
            code = {
                400: "VALIDATION_ERROR",
                403: "FORBIDDEN",
                404: "NOT_FOUND",
                405: "METHOD_NOT_ALLOWED",
                429: "RATE_LIMIT_EXCEEDED",
            }.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")
        return {"code": code, "description": message}

    def environ(self) -> dict[str, str]:
        """The token and the webhook secret."""
        return {**super().environ(), self.secret_env_name: self.webhook_secret}

    @property
    def secret_env_name(self) -> str:
        """The environment variable the webhook secret is handed over in."""
        return f"CRMHUB_SANDBOX_{self.system.upper()}_WEBHOOK_SECRET"

    def connector_settings(self, base_url: str) -> dict[str, Any]:
        """The token, the forms to read and the webhook secret (secrets as ``env:``)."""
        return {
            "base_url": base_url,
            "token": f"env:{self.env_name}",
            "forms": list(self.forms),
            "webhook_secret": f"env:{self.secret_env_name}",
        }

    def seed(self, rows: Iterable[Mapping[str, str]]) -> None:
        """One response per row: three in four to "Contact us", the rest to "Product
        feedback", submitted at the row's ``updated_at``; blank values are unanswered."""
        r = self.random
        for row in rows:
            form_id = CONTACT_FORM if r.random() < 0.75 else FEEDBACK_FORM
            values: dict[str, Any] = dict(row)
            values["newsletter"] = {"yes": True, "no": False}.get(row.get("newsletter", ""))
            values["phone"] = _phone_answer(row.get("phone", ""), row.get("country", ""))
            values["message"] = _MESSAGES[int(r.random() * len(_MESSAGES))]
            values["rating"] = int(r.random() * 11)
            hidden = {"person_key": row["person_key"]} if row.get("person_key") else {}
            self._store(form_id, values, hidden, _epoch(row["updated_at"]), sort=False)
        for order in self._order.values():
            order.sort()

    def add_record(self, stream: str) -> str:
        """A new "Contact us" response, submitted after every other one; its token is the
        external id in both streams (``responses`` and ``submissions``)."""
        if stream not in ("responses", "submissions"):
            raise KeyError(stream)
        n = len(self._position) + 1
        return self.submit(
            CONTACT_FORM,
            {
                "first_name": "Robin",
                "last_name": f"Newcomer{n}",
                "email": f"robin.newcomer{n}@example.org",
                "country": "GB",
                "newsletter": True,
                "message": _MESSAGES[self.random.randrange(len(_MESSAGES))],
            },
        )

    # ------------------------------------------------------------------ state helpers
    def submit(
        self,
        form_id: str,
        answers: Mapping[str, Any],
        *,
        hidden: Mapping[str, str] | None = None,
        submitted_at: int | None = None,
    ) -> str:
        """Store a new response to ``form_id`` with answers by ref, submitted at
        ``submitted_at`` (default: now, or a second after the form's newest response if that
        is later); return its token."""
        with self._lock:
            if submitted_at is None:
                submitted_at = max(self.now(), self._newest(form_id))
            return self._store(form_id, dict(answers), dict(hidden or {}), submitted_at)

    def edit_response(self, token: str, answers: Mapping[str, Any]) -> None:
        """Change some answers of a response (by ref) and stamp it submitted now, as a
        respondent re-submitting it would: it moves to the end of the submission order."""
        with self._lock:
            form_id = self._form_of[token]
            item = self.responses[form_id][token]
            values = self._answer_values(item)
            values.update(answers)
            submitted = max(self.now(), self._newest(form_id))
            self._unlink(form_id, token)
            self._store(form_id, values, dict(item["hidden"]), submitted, token=token)

    def delete_responses(self, form_id: str, tokens: Iterable[str]) -> int:
        """Remove responses (state helper behind the DELETE route); returns how many existed."""
        with self._lock:
            held = self.responses[form_id]
            gone = [token for token in dict.fromkeys(tokens) if token in held]
            for token in gone:
                self._unlink(form_id, token)
            return len(gone)

    def webhook_delivery(
        self, token: str, secret: str | None = None, *, event_id: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """The headers and body Typeform would POST for the ``form_response`` event of
        response ``token``, signed with ``secret`` (default: :attr:`webhook_secret`)."""
        form_id = self._form_of[token]
        item = self.responses[form_id][token]
        form = self.forms[form_id]
        payload = {
            "event_id": event_id or f"01HSANDBOX{token[:16].upper()}",
            "event_type": "form_response",
            "form_response": {
                "form_id": form_id,
                "token": token,
                "landed_at": item["landed_at"],
                "submitted_at": item["submitted_at"],
                "hidden": item["hidden"],
                "calculated": item["calculated"],
                "definition": {
                    "id": form_id,
                    "title": form["title"],
                    "fields": [
                        {k: field[k] for k in ("id", "ref", "type", "title")}
                        for field in form["fields"]
                    ],
                },
                "answers": item["answers"],
            },
        }
        body = orjson.dumps(payload)
        signature = sign_webhook(body, secret if secret is not None else self.webhook_secret)
        return {"Typeform-Signature": signature, "Content-Type": "application/json"}, body

    # ------------------------------------------------------------------ routes
    @route("GET", "/forms")
    def list_forms(self, request: SandboxRequest) -> httpx.Response:
        """``GET /forms``: the forms, a page at a time (``page`` from 1, ``page_size``)."""
        page = int_param(request, "page", 1, lo=1, hi=1_000_000)
        size = int_param(request, "page_size", 10, lo=1, hi=200)
        search = request.query.get("search", "").lower()
        forms = [f for f in self.forms.values() if search in f["title"].lower()]
        chunk = forms[(page - 1) * size : page * size]
        items = [
            {
                "id": form["id"],
                "type": "form",
                "title": form["title"],
                "created_at": form["created_at"],
                "last_updated_at": form["last_updated_at"],
                "settings": {"is_public": True},
                "self": {"href": f"https://{self.host}/forms/{form['id']}"},
                "theme": form["theme"],
                "_links": form["_links"],
            }
            for form in chunk
        ]
        return self.json(
            {"total_items": len(forms), "page_count": math.ceil(len(forms) / size), "items": items}
        )

    @route("GET", "/forms/{form_id}")
    def get_form(self, request: SandboxRequest) -> httpx.Response:
        """``GET /forms/{form_id}``: the form definition."""
        return self.json(self._form(request.params["form_id"]))

    @route("GET", "/forms/{form_id}/responses")
    def list_responses(self, request: SandboxRequest) -> httpx.Response:
        """``GET /forms/{form_id}/responses`` (see the module docstring for parameters)."""
        form_id = request.params["form_id"]
        self._form(form_id)
        query = request.query
        size = int_param(request, "page_size", 25, lo=1, hi=1000)
        after, before, sort = query.get("after"), query.get("before"), query.get("sort")
        if sort and (after or before):
            raise ApiError(400, "sort cannot be used together with after or before")
        if after and before:
            raise ApiError(400, "after and before cannot be used together")
        if sort not in (None, "", "submitted_at,asc", "submitted_at,desc"):
            raise ApiError(400, "sort must be submitted_at,asc or submitted_at,desc")
        ascending = bool(after) or sort == "submitted_at,asc"
        order, held = self._order[form_id], self.responses[form_id]
        lo, hi = 0, len(order)
        since, until = self._time(query, "since"), self._time(query, "until")
        if since is not None:
            lo = bisect_left(order, (since, ""))
        if until is not None:
            hi = bisect_right(order, (until, _LAST))
        if after:
            lo = max(lo, bisect_right(order, self._token_position(after)))
        if before:
            hi = min(hi, bisect_left(order, self._token_position(before)))
        if not self._wants_completed(query):
            lo = hi  # every sandbox response is completed
        excluded = set(_ids(query.get("excluded_response_ids")))
        included = _ids(query.get("included_response_ids"))
        if included:
            keys = [self._position[t] for t in dict.fromkeys(included) if t in held]
            picked = sorted(k for k in keys if lo <= bisect_left(order, k) < hi)
            tokens = [t for _, t in picked if t not in excluded]
            total = len(tokens)
            page = tokens[:size] if ascending else tokens[::-1][:size]
        else:
            total = (
                hi
                - lo
                - sum(
                    1
                    for t in excluded
                    if t in held and lo <= bisect_left(order, self._position[t]) < hi
                )
            )
            page = list(_walk(order, lo, hi, ascending, excluded, size))
        body = {
            "total_items": total,
            "page_count": math.ceil(total / size),
            "items": [held[token] for token in page],
        }
        return self.json(body)

    @route("DELETE", "/forms/{form_id}/responses")
    def delete_responses_route(self, request: SandboxRequest) -> httpx.Response:
        """``DELETE /forms/{form_id}/responses``: 200 with no body; unknown ids are ignored."""
        form_id = request.params["form_id"]
        self._form(form_id)
        ids = _ids(request.query.get("included_response_ids"))
        if not ids:
            body = request.json()
            listed = body.get("included_response_ids") if isinstance(body, dict) else None
            ids = [str(i) for i in listed] if isinstance(listed, list) else []
        if not ids:
            raise ApiError(400, "included_response_ids is required")
        if len(ids) > _MAX_IDS:
            raise ApiError(400, f"included_response_ids can list at most {_MAX_IDS} ids")
        self.delete_responses(form_id, ids)
        return httpx.Response(200)

    # ------------------------------------------------------------------ internals
    def _add_form(self, form_id: str, title: str, questions: tuple[_Question, ...]) -> None:
        created = "2023-01-09T09:00:00Z"
        self.forms[form_id] = {
            "id": form_id,
            "type": "form",
            "title": title,
            "created_at": created,
            "last_updated_at": created,
            "workspace": {"href": f"https://{self.host}/workspaces/sandbox"},
            "theme": {"href": f"https://{self.host}/themes/qHWOQ7"},
            "settings": {"language": "en", "is_public": True, "show_progress_bar": True},
            "hidden": ["person_key"],
            "fields": [
                {
                    "id": _field_id(form_id, ref),
                    "title": question,
                    "ref": ref,
                    "type": kind,
                    "properties": (
                        {"default_country_code": _DEFAULT_COUNTRY.lower()}
                        if kind == "phone_number"
                        else {}
                    ),
                    "validations": {"required": ref == "email"},
                }
                for ref, kind, question, _ in questions
            ],
            "_links": {"display": f"{_ACCOUNT}/to/{form_id}"},
        }
        self.responses[form_id] = {}
        self._order[form_id] = []
        self._questions[form_id] = [
            (
                field["ref"],
                _ANSWER_TYPES[field["type"]],
                {k: field[k] for k in ("id", "type", "ref")},
            )
            for field in self.forms[form_id]["fields"]
        ]

    def _form(self, form_id: str) -> dict[str, Any]:
        form = self.forms.get(form_id)
        if form is None:
            raise ApiError(404, f"Non existing form with uid {form_id}", code="FORM_NOT_FOUND")
        return form

    def _newest(self, form_id: str) -> int:
        """A second after the form's newest submission (0 for a form without responses)."""
        order = self._order[form_id]
        return order[-1][0] + 1 if order else 0

    def _store(
        self,
        form_id: str,
        values: Mapping[str, Any],
        hidden: dict[str, str],
        submitted: int,
        *,
        token: str | None = None,
        sort: bool = True,
    ) -> str:
        """Build and index one response from answer values by ref."""
        r = self.random
        token = token or f"{r.getrandbits(128):032x}"
        answers = []
        for ref, kind, field in self._questions[form_id]:
            value = values.get(ref)
            if value is None or value == "":
                continue  # an optional question left unanswered is not in `answers`
            # `field` is shared by every answer to the question: responses are only ever
            # serialised, never changed in place.
            answers.append(
                {
                    "field": field,
                    "type": kind,
                    kind: {"label": value} if kind == "choice" else value,
                }
            )
        agent, platform = _AGENTS[int(r.random() * len(_AGENTS))]
        self.responses[form_id][token] = {
            "landing_id": token,
            "token": token,
            "response_id": token,
            "response_type": "completed",
            "landed_at": _iso(submitted - 20 - int(r.random() * 880)),
            "submitted_at": _iso(submitted),
            "metadata": {
                "user_agent": agent,
                "platform": platform,
                "referer": f"{_ACCOUNT}/to/{form_id}",
                "network_id": f"{r.getrandbits(40):010x}",
                "browser": "touch" if platform == "mobile" else "default",
            },
            "hidden": hidden,
            "calculated": {"score": 0},
            "answers": answers,
        }
        key = (submitted, token)
        if sort:
            insort(self._order[form_id], key)
        else:
            self._order[form_id].append(key)
        self._position[token] = key
        self._form_of[token] = form_id
        return token

    def _unlink(self, form_id: str, token: str) -> None:
        order = self._order[form_id]
        index = bisect_left(order, self._position[token])
        del order[index]
        del self.responses[form_id][token]
        del self._form_of[token]

    @staticmethod
    def _answer_values(item: Mapping[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for answer in item["answers"]:
            value = answer[answer["type"]]
            values[answer["field"]["ref"]] = value["label"] if answer["type"] == "choice" else value
        return values

    def _token_position(self, token: str) -> tuple[int, str]:
        position = self._position.get(token)
        if position is None:
            raise ApiError(400, "the given response token does not exist")
        return position

    @staticmethod
    def _time(query: Mapping[str, str], name: str) -> int | None:
        """``since`` / ``until`` as epoch seconds: an integer, or ISO-8601 to the second."""
        text = query.get(name, "").strip()
        if not text:
            return None
        if text.isdigit():
            return int(text)
        try:
            return _epoch(text)
        except ValueError:
            raise ApiError(
                400, f"{name} must be epoch seconds or ISO-8601 (2020-03-20T14:00:59)"
            ) from None

    @staticmethod
    def _wants_completed(query: Mapping[str, str]) -> bool:
        completed = query.get("completed", "").lower()
        if completed == "false":
            return False
        types = _ids(query.get("response_type"))
        return not types or "completed" in types


_ANSWER_TYPES = {
    "short_text": "text",
    "long_text": "text",
    "email": "email",
    "phone_number": "phone_number",
    "dropdown": "choice",
    "date": "date",
    "yes_no": "boolean",
    "opinion_scale": "number",
}


def _phone_answer(typed: str, country: str) -> str:
    """A phone answer as Typeform stores it: E.164, the number read in the respondent's
    country or else the question's preselected one (kept as typed if it does not parse)."""
    if not typed or typed.startswith("+"):
        return "+" + "".join(ch for ch in typed if ch.isdigit()) if typed else ""
    return e164(typed, country, _DEFAULT_COUNTRY) or typed


def _ids(text: str | None) -> list[str]:
    """A comma-separated list of ids (blank items dropped)."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _walk(
    order: list[tuple[int, str]], lo: int, hi: int, ascending: bool, skip: set[str], size: int
) -> Iterator[str]:
    """Up to ``size`` tokens of ``order[lo:hi]`` from one end, leaving out ``skip``."""
    indexes = range(lo, hi) if ascending else range(hi - 1, lo - 1, -1)
    taken = 0
    for index in indexes:
        if taken == size:
            return
        token = order[index][1]
        if token in skip:
            continue
        taken += 1
        yield token

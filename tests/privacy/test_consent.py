"""Consent and lawful basis (GDPR): per-channel consent keeps its source and time, "most
restrictive wins" across a merge with the provenance of the record that said so, the lawful
basis survives like any other field, and no push ever re-subscribes someone who opted out in
any of the customer's records, not even after a steward set the golden consent to granted."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

import crmhub
from crmhub.config import SurvivorshipSettings, parse_config
from crmhub.connector import Change, Page, Stream, WriteResult
from crmhub.connectors.mailchimp import subscriber_hash
from crmhub.hub import Hub
from crmhub.model import Person
from crmhub.plugins import Plugins
from crmhub.push import PlanReport, plan_pushes
from crmhub.resolution import Resolver
from crmhub.resolution.steward import Steward
from crmhub.store.schema import customers, outbox, source_records

from ..resolution.conftest import partition, record_id, store_people

# ---------------------------------------------------------------------- golden records

T_CRM = datetime(2024, 1, 10, 9, 0, tzinfo=UTC)
T_SHOP = datetime(2024, 3, 5, 17, 30, tzinfo=UTC)
T_NEWS = datetime(2024, 2, 1, 12, 0, tzinfo=UTC)


def _ada(external_id: str, source: str, **fields: Any) -> tuple[str, str, Person]:
    data = {
        "source": source,
        "stream": "people",
        "external_id": external_id,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "emails": ["ada@example.com"],
        "phones": ["+447400123456"],
        "birth_date": "1815-12-10",
        "address": {"line1": "12 St James's Square", "city": "London", "country": "GB"},
        **fields,
    }
    return source, external_id, Person.model_validate(data)


def _consent(status: str, at: datetime, source: str) -> dict[str, Any]:
    return {"status": status, "at": at.isoformat(), "source": source}


CRM = _ada(
    "crm-1",
    "crm",
    consent={
        "email": _consent("granted", T_CRM, "crm signup form"),
        "sms": _consent("granted", T_CRM, "crm signup form"),
    },
    lawful_basis="contract",
)
SHOP = _ada(
    "shop-1",
    "shop",
    consent={
        "email": _consent("denied", T_SHOP, "shop preference centre"),
        "sms": {"status": "unknown"},
    },
)
NEWS = _ada(
    "news-1",
    "news",
    consent={
        "email": _consent("granted", T_NEWS, "newsletter double opt-in"),
        "post": _consent("unknown", T_NEWS, "newsletter double opt-in"),
    },
    lawful_basis="consent",
)


def _golden(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        [data] = conn.execute(select(customers.c.data).where(customers.c.merged_into.is_(None)))
    golden: dict[str, Any] = data[0]
    return golden


def _as_stored(consent: dict[str, Any]) -> dict[str, Any]:
    """A channel's consent as the canonical model stores it (time in ISO-8601 UTC)."""
    return {**consent, "at": consent["at"].replace("+00:00", "Z")}


def _resolve(engine: Engine, people: list[tuple[str, str, Person]], **settings: Any) -> None:
    store_people(engine, people)
    Resolver(engine, survivorship=SurvivorshipSettings(**settings)).resolve()
    assert len(partition(engine)) == 1, "the records are one person"


def test_one_source_consent_keeps_its_source_and_time_in_the_golden_record(
    engine: Engine,
) -> None:
    _resolve(engine, [CRM])
    consent = _golden(engine)["consent"]
    assert consent["value"] == {
        "email": _as_stored(_consent("granted", T_CRM, "crm signup form")),
        "sms": _as_stored(_consent("granted", T_CRM, "crm signup form")),
    }
    assert (consent["source_record_id"], consent["rule"]) == (
        record_id(engine, "crm-1"),
        "most_restrictive",
    )


def test_across_a_merge_the_most_restrictive_consent_wins_per_channel_with_its_provenance(
    engine: Engine,
) -> None:
    _resolve(engine, [CRM, SHOP, NEWS])
    consent = _golden(engine)["consent"]
    assert consent["rule"] == "most_restrictive"
    # Denied beats granted (twice, from two more recent records: most recent is no excuse),
    # granted beats unknown, and unknown is kept where nothing else is known. Each channel
    # is the winning record's own statement: its status, time and source.
    assert consent["value"] == {
        "email": _as_stored(_consent("denied", T_SHOP, "shop preference centre")),
        "sms": _as_stored(_consent("granted", T_CRM, "crm signup form")),
        "post": _as_stored(_consent("unknown", T_NEWS, "newsletter double opt-in")),
    }
    # The field's provenance is the record that denied.
    assert consent["source_record_id"] == record_id(engine, "shop-1")


def test_a_denial_wins_whatever_the_order_of_the_records(engine: Engine) -> None:
    # The denying record stored first (lowest id) and the granting ones after it.
    _resolve(engine, [SHOP, NEWS, CRM])
    consent = _golden(engine)["consent"]
    assert consent["value"]["email"]["status"] == "denied"
    assert consent["source_record_id"] == record_id(engine, "shop-1")


def test_the_lawful_basis_survives_with_its_provenance(engine: Engine) -> None:
    # No rule of its own: the configured default, most recent here (every record is
    # equally recent, so the higher record id: NEWS). A record without one does not blank it.
    _resolve(engine, [CRM, SHOP, NEWS])
    assert _golden(engine)["lawful_basis"] == {
        "value": "consent",
        "source_record_id": record_id(engine, "news-1"),
        "rule": "most_recent",
    }


def test_the_lawful_basis_follows_the_trusted_source_when_one_is_configured(
    engine: Engine,
) -> None:
    _resolve(engine, [CRM, SHOP, NEWS], source_priority=["crm", "news"])
    assert _golden(engine)["lawful_basis"] == {
        "value": "contract",
        "source_record_id": record_id(engine, "crm-1"),
        "rule": "source_priority",
    }


# ---------------------------------------------------------------------- pushes

CRM_PEOPLE: dict[str, dict[str, str]] = {}
"""The CRM's people (people_file field names: ``newsletter`` is the email consent)."""
MEMBERS: dict[str, dict[str, Any]] = {}
"""The mailing list's members, shaped as Mailchimp's (``status`` is the email consent)."""
SENT: list[Change] = []
FAIL_NEXT: list[str] = []


class ConsentCrm(crmhub.Connector):
    """A CRM held in CRM_PEOPLE; read only."""

    name = "consent_crm"
    streams = {"people": Stream(primary_key="id", cursor="updated_at")}
    default_mapping = "people_file"

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        yield Page(records=[dict(r) for r in CRM_PEOPLE.values()], state={"n": len(CRM_PEOPLE)})


def _deep_update(target: dict[str, Any], fields: dict[str, Any]) -> None:
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


class ConsentList(crmhub.Connector):
    """A Mailchimp-shaped audience held in MEMBERS, read and written through the built-in
    Mailchimp mapping: consent is pushed as ``status`` (subscribed / unsubscribed)."""

    name = "consent_list"
    streams = {"members": Stream(primary_key="id", cursor="last_changed")}
    default_mapping = "mailchimp"

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        yield Page(records=[dict(r) for r in MEMBERS.values()], state={"n": len(MEMBERS)})

    def write(self, stream: str, changes: Iterable[Change]) -> Iterator[WriteResult]:
        for change in changes:
            SENT.append(change)
            if FAIL_NEXT:
                yield WriteResult(
                    change.idempotency_key, ok=False, error=FAIL_NEXT.pop(0), retriable=True
                )
                continue
            member = MEMBERS[str(change.external_id)]
            _deep_update(member, dict(change.fields))
            member["last_changed"] = "2024-06-01T00:00:00Z"
            yield WriteResult(change.idempotency_key, ok=True, external_id=change.external_id)


class _Plugin:
    @crmhub.hookimpl
    def register_connectors(self, register: Any) -> None:
        register(ConsentCrm)
        register(ConsentList)


def _crm(pid: str, first: str, last: str, newsletter: str, **fields: str) -> dict[str, str]:
    email = f"{first}@example.com".lower()
    return {
        "id": pid, "first_name": first, "last_name": last, "email": email,
        "phone": "+44 7400 123456", "city": "London", "newsletter": newsletter,
        "updated_at": "2024-03-01T00:00:00Z", **fields,
    }  # fmt: skip


def _member(first: str, last: str, status: str, phone: str = "") -> dict[str, Any]:
    email = f"{first}@example.com".lower()
    return {
        "id": subscriber_hash(email),
        "email_address": email,
        "status": status,
        "merge_fields": {"FNAME": first, "LNAME": last, "PHONE": phone},
        "last_changed": "2024-01-01T00:00:00Z",
    }


def _member_id(first: str) -> str:
    return str(_member(first, "", "")["id"])


@pytest.fixture
def hub(engine: Engine, tmp_path: Path) -> Iterator[Hub]:
    CRM_PEOPLE.clear()
    MEMBERS.clear()
    SENT.clear()
    FAIL_NEXT.clear()
    # Ada said no to the newsletter in the CRM; the list knows her, but only for receipts
    # ("transactional": no decision either way). Grace said yes in the CRM.
    CRM_PEOPLE["c1"] = _crm("c1", "Ada", "Lovelace", "no")
    CRM_PEOPLE["c2"] = _crm("c2", "Grace", "Hopper", "yes", phone="+44 7400 654321")
    for first, last, phone in (
        ("Ada", "Lovelace", "+44 7400 123456"),
        ("Grace", "Hopper", "+44 7400 654321"),
    ):
        member = _member(first, last, "transactional", phone)
        MEMBERS[member["id"]] = member
    plugins = Plugins(extra=(_Plugin(),))
    raw = {
        "hub": {"default_region": "GB", "secret": "env:SECRET"},
        "connectors": {
            "crm": {"type": "consent_crm", "push": False},
            "list": {"type": "consent_list"},
        },
    }
    config = parse_config(
        raw,
        connector_types=plugins.connectors(),
        environ={"SECRET": "s3cret-for-tests"},
        path=tmp_path / "crmhub.toml",
    )
    yield Hub(config, engine, plugins)


def _sent_to(first: str) -> list[dict[str, Any]]:
    return [dict(c.fields) for c in SENT if c.external_id == _member_id(first)]


def _customer_of(engine: Engine, member_id: str) -> str:
    t = source_records.c
    with engine.connect() as conn:
        return str(
            conn.execute(select(t.customer_id).where(t.external_id == member_id)).scalar_one()
        )


def _plan(hub: Hub) -> PlanReport:
    [push] = hub.last_push or []
    assert push.plan is not None
    return push.plan


def _override_to_granted(hub: Hub, first: str) -> None:
    customer = _customer_of(hub.engine, _member_id(first))
    Steward(hub.resolver(), "steward:ana").override(
        customer, "consent", {"email": "granted"}, "the customer asked on the phone"
    )


def _statuses(first: str) -> list[Any]:
    """The ``status`` of every change sent to a member (None: the change had none)."""
    return [fields.get("status") for fields in _sent_to(first)]


def test_consent_granted_everywhere_is_pushed_as_subscribed(hub: Hub) -> None:
    hub.sync(push=True)
    [change] = _sent_to("Grace")
    assert change.get("status") == "subscribed"
    assert change["merge_fields"]["ADDRESS"]["city"] == "London"  # the rest goes along
    assert MEMBERS[_member_id("Grace")]["status"] == "subscribed"
    plan = _plan(hub)
    assert (plan.queued, plan.consent_withheld) == (2, 0)


def test_an_opt_out_in_another_source_is_pushed_and_never_turned_into_subscribed(
    hub: Hub, engine: Engine
) -> None:
    hub.sync(push=True)
    # Most restrictive wins: the CRM's "no" reaches the list as an unsubscribe.
    assert _statuses("Ada") == ["unsubscribed"]
    assert MEMBERS[_member_id("Ada")]["status"] == "unsubscribed"

    # A steward sets Ada's golden email consent to granted; the CRM still says no. Her
    # city changes in the CRM too.
    _override_to_granted(hub, "Ada")
    golden = _golden_of(engine, _member_id("Ada"))
    assert golden["consent"] == {
        "value": {"email": {"status": "granted", "source": "steward"}},
        "source_record_id": None,
        "rule": "steward_override",
    }
    CRM_PEOPLE["c1"].update(city="Bath", updated_at="2024-07-01T00:00:00Z")
    hub.sync(push=True)
    # The new city goes out; the subscription is left out of the change, and that is no
    # failure.
    assert _statuses("Ada") == ["unsubscribed", None]
    assert _sent_to("Ada")[1]["merge_fields"]["ADDRESS"]["city"] == "Bath"
    assert MEMBERS[_member_id("Ada")]["status"] == "unsubscribed"
    plan = _plan(hub)
    assert (plan.consent_withheld, plan.invalid, plan.problems) == (1, 0, [])
    [push] = hub.last_push or []
    assert (push.status, push.counts.push_failed) == ("succeeded", 0)

    # Planned again (and again): the subscription is still never sent.
    hub.sync(push=True)
    hub.push()
    assert "subscribed" not in _statuses("Ada")
    assert MEMBERS[_member_id("Ada")]["status"] == "unsubscribed"


def test_an_opt_out_in_the_target_itself_is_not_undone_by_an_override(hub: Hub) -> None:
    # Grace unsubscribes on the list; the CRM still says yes: the golden consent is denied.
    MEMBERS[_member_id("Grace")].update(status="unsubscribed", last_changed="2024-02-01T00:00:00Z")
    hub.sync(push=True)
    assert _statuses("Grace") == [None]  # the list has it already (the CRM's city goes)
    _override_to_granted(hub, "Grace")
    hub.sync(push=True)
    assert _statuses("Grace") == [None]  # nothing more was sent
    assert MEMBERS[_member_id("Grace")]["status"] == "unsubscribed"
    plan = _plan(hub)
    assert (plan.consent_withheld, plan.unchanged) == (1, 2)


def test_a_queued_subscribe_is_dropped_once_an_opt_out_is_known(hub: Hub, engine: Engine) -> None:
    CRM_PEOPLE["c1"]["newsletter"] = "yes"
    MEMBERS[_member_id("Ada")]["merge_fields"]["ADDRESS"] = {"city": "London"}
    FAIL_NEXT.extend(["HTTP 503", "HTTP 503"])  # both first pushes wait for a retry
    hub.sync(push=True)
    assert _pending(engine) == {_member_id("Ada"): "subscribed", _member_id("Grace"): "subscribed"}
    assert _sent_to("Ada") == [{"status": "subscribed"}]  # the list knows the rest already
    # Before the retry, a steward sets Ada's consent to granted and the CRM learns that she
    # opted out: the queued subscribe must not go out (nothing else is left to send).
    _override_to_granted(hub, "Ada")
    CRM_PEOPLE["c1"].update(newsletter="no", updated_at="2024-07-01T00:00:00Z")
    hub.sync()
    report = plan_pushes(engine, hub.push_targets(["list"])[0], hub.suppressions())
    assert (report.consent_withheld, report.dropped) == (1, 1)
    assert _pending(engine) == {_member_id("Grace"): "subscribed"}


@pytest.mark.parametrize("retry_only", [False, True], ids=["push", "retry-only"])
def test_a_queued_subscribe_is_taken_back_when_the_person_unsubscribes_in_the_system(
    hub: Hub, engine: Engine, retry_only: bool
) -> None:
    # The list holds all Grace's values but the subscription: only that is queued, and it
    # waits for a retry.
    MEMBERS[_member_id("Grace")]["merge_fields"]["ADDRESS"] = {"city": "London"}
    FAIL_NEXT.extend(["HTTP 503", "HTTP 503"])
    hub.sync(push=True)
    assert _pending(engine)[_member_id("Grace")] == "subscribed"
    assert _sent_to("Grace") == [{"status": "subscribed"}]
    # Before the retry Grace unsubscribes in the list itself: it now holds the golden values
    # (her consent is denied there, so it is denied in the hub), and nothing is left to send.
    MEMBERS[_member_id("Grace")].update(status="unsubscribed", last_changed="2024-08-01T00:00:00Z")
    hub.sync()
    with engine.begin() as conn:  # the retries are due now
        conn.execute(update(outbox).values(next_attempt_at=None))
    [outcome] = hub.push(plan=not retry_only)
    assert outcome.plan is not None and outcome.plan.dropped == 1
    assert outcome.plan.queued == 0
    assert _member_id("Grace") not in _pending(engine)
    assert _statuses("Grace") == ["subscribed"]  # the first, failed attempt only
    assert MEMBERS[_member_id("Grace")]["status"] == "unsubscribed"
    assert MEMBERS[_member_id("Ada")]["status"] == "unsubscribed"  # Ada's retry went out


def _pending(engine: Engine) -> dict[str, Any]:
    """The status each pending push would send, by member id."""
    o = outbox.c
    with engine.connect() as conn:
        rows = conn.execute(select(o.external_id, o.fields).where(o.status == "pending"))
        return {external_id: fields.get("status") for external_id, fields in rows}


def _golden_of(engine: Engine, member_id: str) -> dict[str, Any]:
    customer = _customer_of(engine, member_id)
    with engine.connect() as conn:
        data: dict[str, Any] = conn.execute(
            select(customers.c.data).where(customers.c.id == customer)
        ).scalar_one()
    return data

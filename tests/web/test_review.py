"""The review queue and the pair view, in pages and JSON: order, filters, paging, the
side-by-side view and its waterfall, decisions through the page with the keyboard's
attributes and CSRF, stale decisions refused, undo, bulk accept one audit event per pair,
blind mode, and who may do what."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from crmhub.auth import ROLES, create_token
from crmhub.hub import Hub
from crmhub.resolution.steward import Steward
from crmhub.sandbox.world import Sandbox
from crmhub.store.schema import audit_log, match_pairs, source_records
from crmhub.web import create_app

from .conftest import sign_in

# More suggestions than the defaults leave in a 200-person world, on both sides of 0.5.
THRESHOLDS = "\n[dedupe]\nauto_merge = 0.9999\nreview = 0.3\n"
HTML = {"accept": "text/html"}

_p = match_pairs.c
_s = source_records.c


@pytest.fixture
def hub(database_url: str, tmp_path: Path) -> Iterator[Hub]:
    """A synced sandbox hub with pending suggestions."""
    sandbox = Sandbox(200)
    with sandbox.open_hub(
        tmp_path / "hub", database_url, sleep=lambda _s: None, extra_config=THRESHOLDS
    ) as opened:
        opened.sync()
        yield opened


@pytest.fixture
def tokens(hub: Hub) -> dict[str, str]:
    with hub.engine.begin() as conn:
        return {role: create_token(conn, role, role) for role in ROLES}


@pytest.fixture
def client(hub: Hub) -> Iterator[TestClient]:
    with TestClient(create_app(hub), follow_redirects=False) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def pending(hub: Hub) -> list[Any]:
    """Every pending pair, read straight from the store."""
    with hub.engine.connect() as conn:
        return list(
            conn.execute(
                select(_p.id, _p.probability, _p.weight, _p.left_id, _p.right_id).where(
                    _p.status == "pending"
                )
            )
        )


def connectors_of(hub: Hub) -> dict[int, str]:
    with hub.engine.connect() as conn:
        return dict(conn.execute(select(_s.id, _s.connector)).all())


def status_of(hub: Hub, pair_id: int) -> str:
    with hub.engine.connect() as conn:
        return str(conn.execute(select(_p.status).where(_p.id == pair_id)).scalar_one())


def events(hub: Hub) -> list[Any]:
    with hub.engine.connect() as conn:
        return list(
            conn.execute(
                select(
                    audit_log.c.id, audit_log.c.actor, audit_log.c.action, audit_log.c.subject_id
                )
                .where(audit_log.c.action.in_(("pair.accepted", "pair.rejected", "undo")))
                .order_by(audit_log.c.id)
            )
        )


def snapshot(hub: Hub) -> tuple[Any, ...]:
    """What a refused decision must leave alone: pair statuses, customers, the audit log."""
    with hub.engine.connect() as conn:
        return (
            sorted(conn.execute(select(_p.id, _p.status)).all()),
            sorted(conn.execute(select(_s.id, _s.customer_id)).all()),
            conn.execute(
                select(func.count()).where(  # sign-ins and tokens are events of their own
                    ~audit_log.c.action.startswith("session."),
                    ~audit_log.c.action.startswith("token."),
                )
            ).scalar_one(),
        )


def whole_queue(client: TestClient, token: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of the queue through the API, page after page by cursor."""
    items: list[dict[str, Any]] = []
    after = None
    for _ in range(1000):
        query = {**params, **({"after": after} if after else {})}
        page = client.get("/api/review", params=query, headers=bearer(token)).json()
        items += page["items"]
        after = page["next_after"]
        if after is None:
            return items
    raise AssertionError("the queue never ended")


# ---------------------------------------------------------------------------------- queue
def test_the_queue_is_sorted_by_uncertainty_or_by_score(
    hub: Hub, client: TestClient, tokens: dict[str, str]
) -> None:
    stored = pending(hub)
    assert len(stored) > 20
    assert any(row.probability < 0.5 for row in stored)  # both walks of the index are used
    by_uncertainty = whole_queue(client, tokens["steward"], limit=7)
    assert sorted(i["pair_id"] for i in by_uncertainty) == sorted(row.id for row in stored)
    distances = [abs(i["probability"] - 0.5) for i in by_uncertainty]
    assert distances == sorted(distances)
    by_score = whole_queue(client, tokens["steward"], sort="score", limit=7)
    assert sorted(i["pair_id"] for i in by_score) == sorted(row.id for row in stored)
    scores = [i["probability"] for i in by_score]
    assert scores == sorted(scores, reverse=True)

    page = client.get("/review", headers=bearer(tokens["steward"]) | HTML)
    assert page.status_code == 200
    assert f"{len(stored)}\n  pending suggestions" in page.text
    shown = re.findall(r'<tr data-pair="(\d+)">', page.text)
    assert [int(i) for i in shown] == [i["pair_id"] for i in by_uncertainty[:50]]


def test_the_queue_filters_by_source_system_and_score_band(
    hub: Hub, client: TestClient, tokens: dict[str, str]
) -> None:
    system = connectors_of(hub)
    stored = pending(hub)
    for name in ("stripe", "hubspot"):
        wanted = {r.id for r in stored if name in (system[r.left_id], system[r.right_id])}
        assert 0 < len(wanted) < len(stored)
        items = whole_queue(client, tokens["auditor"], connector=name, limit=5)
        assert {i["pair_id"] for i in items} == wanted
        assert all(name in (i["left"]["connector"], i["right"]["connector"]) for i in items)
        first = client.get(
            "/api/review", params={"connector": name}, headers=bearer(tokens["auditor"])
        )
        assert first.json()["total"] == len(wanted) and first.json()["total_exact"]
    band = {"min_probability": 0.9, "max_probability": 0.999}
    wanted = {r.id for r in stored if 0.9 <= r.probability <= 0.999}
    assert 0 < len(wanted) < len(stored)
    items = whole_queue(client, tokens["steward"], limit=4, **band)
    assert {i["pair_id"] for i in items} == wanted
    page = client.get("/review", params=band, headers=bearer(tokens["steward"]) | HTML)
    assert f"{len(wanted)}\n  pending suggestion" in page.text and "in this filter" in page.text
    # An empty field of the filters form means "any"; a wrong one is refused.
    empty = {"connector": "", "min_probability": "", "max_probability": ""}
    assert client.get("/review", params=empty, headers=bearer(tokens["steward"])).status_code == 200
    bad = client.get(
        "/api/review", params={"min_probability": 2}, headers=bearer(tokens["steward"])
    )
    assert bad.status_code == 422


def test_the_queue_pages_by_cursor_and_by_offset(
    hub: Hub, client: TestClient, tokens: dict[str, str]
) -> None:
    headers = bearer(tokens["steward"])
    everything = [i["pair_id"] for i in whole_queue(client, tokens["steward"], limit=200)]
    first = client.get("/api/review", params={"limit": 10}, headers=headers).json()
    assert [i["pair_id"] for i in first["items"]] == everything[:10]
    assert first["total"] == len(everything) and first["prev_before"] is None
    second = client.get(
        "/api/review", params={"limit": 10, "after": first["next_after"]}, headers=headers
    ).json()
    assert [i["pair_id"] for i in second["items"]] == everything[10:20]
    back = client.get(
        "/api/review", params={"limit": 10, "before": second["prev_before"]}, headers=headers
    ).json()
    assert [i["pair_id"] for i in back["items"]] == everything[:10]
    at = client.get("/api/review", params={"limit": 10, "offset": 15}, headers=headers).json()
    assert [i["pair_id"] for i in at["items"]] == everything[15:25]

    # The page's own links: next, then previous, keep the filters (here the page size).
    page = client.get("/review", params={"limit": 10}, headers=headers | HTML)
    link = re.search(r'<a rel="next" href="([^"]+)"', page.text)
    assert link is not None and "limit=10" in link.group(1)
    following = client.get(link.group(1).replace("&amp;", "&"), headers=headers | HTML)
    shown = [int(i) for i in re.findall(r'<tr data-pair="(\d+)">', following.text)]
    assert shown == everything[10:20]
    assert 'rel="prev"' in following.text


# ---------------------------------------------------------------------------------- pair
def test_the_pair_view_shows_differences_sources_and_a_waterfall_adding_up(
    hub: Hub, client: TestClient, tokens: dict[str, str]
) -> None:
    headers = bearer(tokens["steward"])
    checked = 0
    for row in pending(hub)[:12]:
        view = client.get(f"/api/review/{row.id}", headers=headers).json()
        steps = view["waterfall"]
        assert steps and sum(step["weight"] for step in steps) == pytest.approx(
            row.weight, abs=1e-3
        )
        assert view["waterfall_total"] == pytest.approx(row.weight, abs=1e-3)
        assert view["probability"] == pytest.approx(row.probability)
        assert {view["left"]["record_id"], view["right"]["record_id"]} == {
            row.left_id,
            row.right_id,
        }
        different = [f for f in view["fields"] if f["state"] == "different"]
        for entry in view["fields"]:
            if entry["state"] == "same":
                assert entry["left"].casefold() == entry["right"].casefold()
        page = client.get(f"/review/{row.id}", headers=headers | HTML)
        assert page.status_code == 200
        diff_rows = re.findall(
            r'<tr data-field="(\w+)" data-state="different" class="diff">', page.text
        )
        assert diff_rows == [f["field"] for f in different]
        assert (
            view["left"]["external_id"] in page.text and view["right"]["external_id"] in page.text
        )
        steps_shown = re.findall(r'<td class="num[^"]*" data-weight="([^"]+)">[+-]', page.text)
        total_shown = re.search(r'id="total-weight" data-weight="([^"]+)"', page.text)
        assert total_shown is not None and float(total_shown.group(1)) == pytest.approx(row.weight)
        assert sum(map(float, steps_shown)) == pytest.approx(row.weight, abs=1e-3)
        assert 'class="num pos"' in page.text or 'class="num neg"' in page.text
        checked += bool(different)
    assert checked, "no pair with a differing field in the sample"
    assert client.get("/api/review/999999999", headers=headers).status_code == 404
    assert client.get("/api/review/0", headers=headers).status_code == 422
    assert client.get("/review/999999999", headers=headers | HTML).status_code == 404


# ---------------------------------------------------------------------------------- decisions
def test_merge_reject_skip_and_undo_through_the_page(
    hub: Hub, client: TestClient, tokens: dict[str, str]
) -> None:
    csrf = sign_in(client, tokens["steward"])
    first = client.get("/api/review", headers=bearer(tokens["steward"])).json()["items"]
    a, b, c = (item["pair_id"] for item in first[:3])
    page = client.get(f"/review/{a}", headers=HTML)
    for key in ("y", "n", "s", "u"):
        assert f'data-key="{key}"' in page.text
    assert f'name="csrf_token" value="{csrf}"' in page.text
    before = snapshot(hub)

    # Without the CSRF token: refused, nothing done.
    assert client.post(f"/review/{a}/decision", data={"decision": "merge"}).status_code == 403
    forged = {"decision": "merge", "csrf_token": "forged"}
    assert client.post(f"/review/{a}/decision", data=forged).status_code == 403
    assert snapshot(hub) == before

    merged = client.post(
        f"/review/{a}/decision",
        data={"decision": "merge", "reason": "same person", "csrf_token": csrf},
    )
    assert merged.status_code == 303
    assert merged.headers["location"].startswith(f"/review/{b}?")  # the next pair of the queue
    assert "done=merge" in merged.headers["location"]
    assert status_of(hub, a) == "accepted"
    with hub.engine.connect() as conn:
        left, right = conn.execute(select(_p.left_id, _p.right_id).where(_p.id == a)).one()
        owners = dict(
            conn.execute(select(_s.id, _s.customer_id).where(_s.id.in_((left, right)))).all()
        )
    assert owners[left] == owners[right]  # one customer now
    shown = client.get(merged.headers["location"], headers=HTML)
    assert f"Merged pair {a}" in shown.text

    skipped = client.post(f"/review/{b}/decision", data={"decision": "skip", "csrf_token": csrf})
    assert skipped.status_code == 303 and skipped.headers["location"].startswith(f"/review/{c}?")
    assert status_of(hub, b) == "pending"

    rejected = client.post(f"/review/{c}/decision", data={"decision": "reject", "csrf_token": csrf})
    assert rejected.status_code == 303 and status_of(hub, c) == "rejected"
    decisions = events(hub)
    assert [(e.action, e.subject_id, e.actor) for e in decisions] == [
        ("pair.accepted", str(a), "steward:steward"),
        ("pair.rejected", str(c), "steward:steward"),
    ]

    # Undo last, twice: the rejection, then the merge; then nothing is left to undo.
    assert client.post("/review/undo", data={}).status_code == 403  # no CSRF token
    undone = client.post("/review/undo", data={"csrf_token": csrf})
    assert undone.status_code == 303 and undone.headers["location"].startswith(f"/review/{c}?")
    assert status_of(hub, c) == "pending"
    undone = client.post("/review/undo", data={"csrf_token": csrf, "from_pair": str(c)})
    assert undone.status_code == 303 and undone.headers["location"].startswith(f"/review/{a}?")
    assert status_of(hub, a) == "pending"
    nothing = client.post("/review/undo", data={"csrf_token": csrf, "from_pair": str(a)})
    assert nothing.status_code == 409 and "no review decision left to undo" in nothing.text
    assert [e.action for e in events(hub)] == ["pair.accepted", "pair.rejected", "undo", "undo"]


def test_a_decision_on_a_record_changed_since_scoring_is_refused(
    hub: Hub, client: TestClient, tokens: dict[str, str]
) -> None:
    pair = pending(hub)[0]
    with hub.engine.begin() as conn:
        conn.execute(
            update(source_records).where(_s.id == pair.left_id).values(content_hash="0" * 32)
        )
    before = snapshot(hub)
    api = client.post(
        f"/api/review/{pair.id}/decision",
        json={"decision": "merge"},
        headers=bearer(tokens["steward"]),
    )
    assert api.status_code == 409 and "changed since the pair was scored" in api.json()["detail"]
    csrf = sign_in(client, tokens["steward"])
    page = client.post(
        f"/review/{pair.id}/decision", data={"decision": "merge", "csrf_token": csrf}
    )
    assert page.status_code == 409 and "changed since the pair was scored" in page.text
    assert 'role="alert"' in page.text
    assert snapshot(hub) == before  # no merge, no event, no customer touched
    listed = client.get("/api/review", params={"limit": 200}, headers=bearer(tokens["steward"]))
    assert {i["pair_id"]: i["stale"] for i in listed.json()["items"]}[pair.id] is True


def test_a_decided_pair_is_not_decided_again(
    hub: Hub, client: TestClient, tokens: dict[str, str]
) -> None:
    headers = bearer(tokens["steward"])
    pair = pending(hub)[0]
    first = client.post(
        f"/api/review/{pair.id}/decision", json={"decision": "reject"}, headers=headers
    )
    assert first.status_code == 200 and first.json()["event_id"] and first.json()["next_pair_id"]
    again = client.post(
        f"/api/review/{pair.id}/decision", json={"decision": "merge"}, headers=headers
    )
    assert again.status_code == 409 and "not pending" in again.json()["detail"]
    assert status_of(hub, pair.id) == "rejected"
    undo = client.post(
        "/api/review/undo", json={"event_id": first.json()["event_id"]}, headers=headers
    )
    assert undo.status_code == 200 and undo.json()["pair_id"] == pair.id
    twice = client.post(
        "/api/review/undo", json={"event_id": first.json()["event_id"]}, headers=headers
    )
    assert twice.status_code == 409
    assert status_of(hub, pair.id) == "pending"
    bad = client.post(
        f"/api/review/{pair.id}/decision", json={"decision": "maybe"}, headers=headers
    )
    assert bad.status_code == 422
    nul = client.post(
        f"/api/review/{pair.id}/decision",
        json={"decision": "skip", "reason": "a\x00b"},
        headers=headers,
    )
    assert nul.status_code == 422
    missing = client.post(
        "/api/review/999999999/decision", json={"decision": "merge"}, headers=headers
    )
    assert missing.status_code == 404


def test_bulk_accept_is_one_audited_decision_per_pair(
    hub: Hub, client: TestClient, tokens: dict[str, str]
) -> None:
    threshold = 0.999
    above = sorted(r.id for r in pending(hub) if r.probability >= threshold)
    assert len(above) >= 3
    stale = pending(hub)[[r.id for r in pending(hub)].index(above[0])]
    with hub.engine.begin() as conn:
        conn.execute(
            update(source_records).where(_s.id == stale.right_id).values(content_hash="f" * 32)
        )
    csrf = sign_in(client, tokens["steward"])
    before = snapshot(hub)
    form = {"min_probability": str(threshold), "csrf_token": csrf}
    confirm = client.post("/review/bulk-accept", data=form)
    assert confirm.status_code == 200
    assert f"<strong>{len(above)}</strong> pending pairs" in confirm.text
    assert 'name="confirm" value="1"' in confirm.text
    assert snapshot(hub) == before  # counting changes nothing
    assert client.post("/review/bulk-accept", data={**form, "csrf_token": "x"}).status_code == 403

    done = client.post("/review/bulk-accept", data={**form, "confirm": "1"})
    assert done.status_code == 303 and "done=bulk" in done.headers["location"]
    assert f"accepted={len(above) - 1}" in done.headers["location"]
    assert "stale=1" in done.headers["location"]
    accepted = [e for e in events(hub) if e.action == "pair.accepted"]
    assert sorted(int(e.subject_id) for e in accepted) == [i for i in above if i != stale.id]
    assert len({e.id for e in accepted}) == len(above) - 1  # one event each
    assert status_of(hub, stale.id) == "pending"
    assert all(status_of(hub, i) == "accepted" for i in above if i != stale.id)

    again = client.post(
        "/api/review/bulk-accept",
        json={"min_probability": threshold, "dry_run": True},
        headers=bearer(tokens["steward"]),
    )
    assert again.status_code == 200 and again.json()["matched"] == 1  # the stale one


def test_blind_mode_shows_no_probability_or_weight(
    hub: Hub, client: TestClient, tokens: dict[str, str]
) -> None:
    headers = bearer(tokens["steward"]) | HTML
    stored = pending(hub)
    seen = client.get("/review", headers=headers).text
    assert "Score</th>" in seen and f"{stored[0].probability:.4f}" in seen  # seen unless blind
    page = client.get("/review", params={"blind": "1"}, headers=headers).text
    assert "Score</th>" not in page
    for row in stored:
        assert f"{row.probability:.4f}" not in page
    links = re.findall(r'href="(/review/\d+[^"]*)"', page)
    assert links and all("blind=1" in link for link in links)
    pair = stored[0]
    view = client.get(f"/review/{pair.id}", params={"blind": "1"}, headers=headers).text
    assert 'id="probability"' not in view and "Total match weight" not in view
    assert "data-weight" not in view and f"{pair.probability:.4f}" not in view
    assert f"{pair.weight:+.2f}" not in view
    actions = re.findall(r'<form method="post" action="([^"]+)"', view)
    assert any("/decision" in a for a in actions) and all("blind=1" in a for a in actions)
    api = client.get(
        f"/api/review/{pair.id}", params={"blind": "true"}, headers=bearer(tokens["steward"])
    )
    body = api.json()
    assert body["probability"] is None and body["weight"] is None and body["prior_weight"] is None
    assert all(step["weight"] is None for step in body["waterfall"])
    listed = client.get("/api/review", params={"blind": "true"}, headers=bearer(tokens["steward"]))
    assert all(i["probability"] is None and i["weight"] is None for i in listed.json()["items"])


# ---------------------------------------------------------------------------------- roles
def test_auditors_read_but_never_decide_and_other_roles_see_nothing(
    hub: Hub, client: TestClient, tokens: dict[str, str]
) -> None:
    pair = pending(hub)[0].id
    auditor = bearer(tokens["auditor"])
    assert client.get("/api/review", headers=auditor).status_code == 200
    assert client.get(f"/api/review/{pair}", headers=auditor).status_code == 200
    read_only = client.get(f"/review/{pair}", headers=auditor | HTML)
    assert read_only.status_code == 200 and 'data-key="y"' not in read_only.text
    assert "bulk-accept" not in client.get("/review", headers=auditor | HTML).text
    before = snapshot(hub)
    posts = [
        (f"/api/review/{pair}/decision", {"decision": "merge"}),
        ("/api/review/undo", {}),
        ("/api/review/bulk-accept", {"min_probability": 0.5}),
    ]
    for path, body in posts:
        assert client.post(path, json=body, headers=auditor).status_code == 403, path
    csrf = sign_in(client, tokens["auditor"])
    for path in (f"/review/{pair}/decision", "/review/undo", "/review/bulk-accept"):
        form = {"decision": "merge", "min_probability": "0.5", "confirm": "1", "csrf_token": csrf}
        assert client.post(path, data=form).status_code == 403, path
    assert snapshot(hub) == before

    for role in ("ops", "compliance"):
        headers = bearer(tokens[role])
        for path in ("/api/review", f"/api/review/{pair}", "/review", f"/review/{pair}"):
            response = client.get(path, headers=headers)
            assert response.status_code == 403, (role, path)
            assert "Harry" not in response.text and "@" not in response.text
        decided = client.post(
            f"/api/review/{pair}/decision", json={"decision": "merge"}, headers=headers
        )
        assert decided.status_code == 403
    fresh = TestClient(create_app(hub), follow_redirects=False)
    assert fresh.get("/api/review").status_code == 401
    assert fresh.get("/review", headers=HTML).headers["location"].startswith("/login")
    assert snapshot(hub) == before


def test_a_browser_session_needs_the_csrf_header_for_the_json_api(
    hub: Hub, client: TestClient, tokens: dict[str, str]
) -> None:
    pair = pending(hub)[0].id
    csrf = sign_in(client, tokens["steward"])
    body = {"decision": "skip"}
    assert client.post(f"/api/review/{pair}/decision", json=body).status_code == 403
    sent = client.post(f"/api/review/{pair}/decision", json=body, headers={"x-csrf-token": csrf})
    assert sent.status_code == 200 and sent.json()["event_id"] is None  # a skip: no event
    assert status_of(hub, pair) == "pending"


def test_undo_last_passes_over_a_decision_someone_else_undid(
    hub: Hub, client: TestClient, tokens: dict[str, str]
) -> None:
    headers = bearer(tokens["steward"])
    first, second = (row.id for row in pending(hub)[:2])
    made = [
        client.post(f"/api/review/{pair}/decision", json={"decision": "reject"}, headers=headers)
        for pair in (first, second)
    ]
    assert [m.status_code for m in made] == [200, 200]
    Steward(hub.resolver(), "cli:ops").undo(made[1].json()["event_id"])  # `crmhub undo`
    undone = client.post("/api/review/undo", headers=headers)
    assert undone.status_code == 200
    assert undone.json()["undone_event_id"] == made[0].json()["event_id"]
    assert status_of(hub, first) == "pending" and status_of(hub, second) == "pending"
    assert client.post("/api/review/undo", headers=headers).status_code == 409

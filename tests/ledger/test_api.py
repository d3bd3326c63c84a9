"""The points REST API: operators move and read points, members read their own."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, text

from siyu.ledger import models as m
from siyu.ledger import service as ledger
from tests.factories import (
    grant,
    make_member,
    make_operator,
    make_tenant,
    member_headers,
    spend,
    token_headers,
)

PROBLEM = "application/problem+json"


def assert_problem(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    body = resp.json()
    assert (body["status"], body["code"], body["type"]) == (status, code, f"/errors/{code}")
    assert body["title"]
    return body


@pytest.fixture
def shop(db):
    """A tenant with an owner's token and one member."""
    tenant = make_tenant(db)
    op = make_operator(db, tenant)
    member = make_member(db, tenant)
    return tenant, member, token_headers(db, op)


def balance(db, member) -> int:
    return db.scalar(select(m.Account.balance).where(m.Account.member_id == member.id))


def count_entries(db, member) -> int:
    return db.scalar(
        select(func.count())
        .select_from(m.JournalEntry)
        .where(m.JournalEntry.member_id == member.id)
    )


def post(client, url: str, headers: dict, key: str | None, **body):
    if key is not None:
        headers = headers | {"Idempotency-Key": key}
    return client.post(url, json=body, headers=headers)


# --- grant and spend --------------------------------------------------------------------------


def test_grant_credits_the_member_and_returns_the_entry(db, client, clock, shop):
    tenant, member, headers = shop
    resp = post(
        client,
        f"/api/v1/members/{member.id}/points/grant",
        headers,
        "order-1",
        points=100,
        reason="purchase",
        memo="双11直播间订单",
        reference="tb:123",
    )
    assert resp.status_code == 201
    entry = resp.json()
    assert entry["id"] > 0
    assert {
        k: entry[k] for k in ("member_id", "kind", "points", "reason", "memo", "reference")
    } == {
        "member_id": member.id,
        "kind": "credit",
        "points": 100,
        "reason": "purchase",
        "memo": "双11直播间订单",
        "reference": "tb:123",
    }
    assert (entry["actor_type"], entry["idempotency_key"]) == ("operator", "order-1")
    assert (entry["reverses_id"], entry["reversed_points"]) == (None, 0)
    assert dt.datetime.fromisoformat(entry["created_at"]) == clock.now
    bal = client.get(f"/api/v1/members/{member.id}/points", headers=headers).json()
    assert bal == {"member_id": member.id, "balance": 100, "growth": 100, "expiring": []}


def test_grant_retry_with_same_key_returns_the_first_entry(db, client, shop):
    tenant, member, headers = shop
    url = f"/api/v1/members/{member.id}/points/grant"
    first = post(client, url, headers, "order-2", points=100, reason="purchase")
    again = post(client, url, headers, "order-2", points=100, reason="purchase")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert (balance(db, member), count_entries(db, member)) == (100, 1)


def test_same_key_for_a_different_change_is_409_conflict(db, client, shop):
    tenant, member, headers = shop
    url = f"/api/v1/members/{member.id}/points/grant"
    first = post(client, url, headers, "order-3", points=100, reason="purchase").json()
    resp = post(client, url, headers, "order-3", points=150, reason="purchase")
    body = assert_problem(resp, 409, "points.idempotency_conflict")
    assert body["params"] == {"key": "order-3", "entry_id": first["id"]}
    spent = post(
        client,
        f"/api/v1/members/{member.id}/points/spend",
        headers,
        "order-3",
        points=10,
        reason="redeem",
    )
    assert_problem(spent, 409, "points.idempotency_conflict")
    assert (balance(db, member), count_entries(db, member)) == (100, 1)


def test_spend_retry_with_same_key_debits_once(db, client, shop):
    tenant, member, headers = shop
    grant(db, member, 500)
    url = f"/api/v1/members/{member.id}/points/spend"
    first = post(client, url, headers, "spend-1", points=120, reason="redeem")
    again = post(client, url, headers, "spend-1", points=120, reason="redeem")
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert (first.json()["kind"], first.json()["points"]) == ("debit", -120)
    bal = client.get(f"/api/v1/members/{member.id}/points", headers=headers).json()
    assert (bal["balance"], bal["growth"]) == (380, 500)


def test_spend_beyond_the_balance_is_409_and_takes_nothing(db, client, shop):
    tenant, member, headers = shop
    grant(db, member, 50)
    resp = post(
        client,
        f"/api/v1/members/{member.id}/points/spend",
        headers,
        "spend-2",
        points=51,
        reason="redeem",
    )
    body = assert_problem(resp, 409, "points.insufficient")
    assert body["params"] == {"balance": 50, "wanted": 51}
    assert body["detail"]
    assert (balance(db, member), count_entries(db, member)) == (50, 1)


def test_grant_with_explicit_expiry_lists_it_as_expiring(db, client, clock, shop):
    tenant, member, headers = shop
    resp = post(
        client,
        f"/api/v1/members/{member.id}/points/grant",
        headers,
        "promo-1",
        points=40,
        reason="purchase",
        expires_at="2027-01-01T00:00:00+08:00",
    )
    assert resp.status_code == 201
    bal = client.get(f"/api/v1/members/{member.id}/points", headers=headers).json()
    [expiring] = bal["expiring"]
    assert dt.datetime.fromisoformat(expiring["expires_at"]) == dt.datetime(
        2026, 12, 31, 16, 0, tzinfo=dt.UTC
    )
    assert (expiring["points"], expiring["expires_on"]) == (40, "2026-12-31")


def test_grant_with_past_expiry_is_422(db, client, clock, shop):
    tenant, member, headers = shop
    resp = post(
        client,
        f"/api/v1/members/{member.id}/points/grant",
        headers,
        "promo-2",
        points=40,
        reason="purchase",
        expires_at="2026-01-01T00:00:00+08:00",
    )
    assert_problem(resp, 422, "points.invalid_expiry")
    assert count_entries(db, member) == 0


# --- reversals --------------------------------------------------------------------------------


def test_reverse_a_credit_in_parts_then_no_further(db, client, shop):
    tenant, member, headers = shop
    credit = grant(db, member, 100)
    url = f"/api/v1/points/entries/{credit.id}/reverse"
    part = post(client, url, headers, "refund-1", points=30, reason="refund")
    assert part.status_code == 201
    assert {k: part.json()[k] for k in ("kind", "points", "reverses_id", "reason")} == {
        "kind": "reversal",
        "points": -30,
        "reverses_id": credit.id,
        "reason": "refund",
    }
    rest = post(client, url, headers, "refund-2")
    assert rest.status_code == 201
    assert rest.json()["points"] == -70
    again = post(client, url, headers, "refund-3", points=1)
    body = assert_problem(again, 409, "points.reversal_too_large")
    assert body["params"] == {"entry_id": credit.id, "reversible": 0}
    read = client.get(f"/api/v1/points/entries/{credit.id}", headers=headers).json()
    assert read["reversed_points"] == 100
    bal = client.get(f"/api/v1/members/{member.id}/points", headers=headers).json()
    assert (bal["balance"], bal["growth"]) == (0, 0)


def test_reverse_a_debit_returns_the_points(db, client, shop):
    tenant, member, headers = shop
    grant(db, member, 100)
    debit = spend(db, member, 60)
    resp = post(client, f"/api/v1/points/entries/{debit.id}/reverse", headers, "undo-1")
    assert resp.status_code == 201
    assert (resp.json()["kind"], resp.json()["points"]) == ("reversal", 60)
    assert balance(db, member) == 100


def test_reversing_a_reversal_is_409_not_reversible(db, client, shop):
    tenant, member, headers = shop
    credit = grant(db, member, 100)
    rev = post(client, f"/api/v1/points/entries/{credit.id}/reverse", headers, "r1").json()
    resp = post(client, f"/api/v1/points/entries/{rev['id']}/reverse", headers, "r2")
    body = assert_problem(resp, 409, "points.not_reversible")
    assert body["params"] == {"entry_id": rev["id"], "kind": "reversal"}


def test_reversing_a_credit_already_spent_is_409_insufficient(db, client, shop):
    tenant, member, headers = shop
    credit = grant(db, member, 100)
    spend(db, member, 90)
    resp = post(client, f"/api/v1/points/entries/{credit.id}/reverse", headers, "r1")
    assert_problem(resp, 409, "points.insufficient")
    assert balance(db, member) == 10


def test_reversing_an_unknown_entry_is_404(db, client, shop):
    tenant, member, headers = shop
    resp = post(client, "/api/v1/points/entries/999999999/reverse", headers, "r1")
    assert_problem(resp, 404, "points.entry_not_found")


# --- reads ------------------------------------------------------------------------------------


def test_entries_page_newest_first_with_next_before_id(db, client, shop):
    tenant, member, headers = shop
    for n in range(1, 6):
        grant(db, member, n)
    url = f"/api/v1/members/{member.id}/points/entries"
    seen: list[int] = []
    pages = 0
    params: dict[str, int] = {"limit": 2}
    while True:
        resp = client.get(url, headers=headers, params=params)
        assert resp.status_code == 200
        page = resp.json()
        pages += 1
        seen += [e["points"] for e in page["items"]]
        if page["next_before_id"] is None:
            break
        assert page["next_before_id"] == page["items"][-1]["id"]
        params = {"limit": 2, "before_id": page["next_before_id"]}
    assert seen == [5, 4, 3, 2, 1]
    assert pages == 3


@pytest.mark.parametrize("limit", [0, 201, "many"])
def test_entries_page_size_out_of_range_is_422(db, client, shop, limit):
    tenant, member, headers = shop
    resp = client.get(
        f"/api/v1/members/{member.id}/points/entries", headers=headers, params={"limit": limit}
    )
    body = assert_problem(resp, 422, "request.invalid")
    assert [e["loc"] for e in body["errors"]] == [["query", "limit"]]


def test_read_entry(db, client, shop):
    tenant, member, headers = shop
    credit = grant(db, member, 25, memo="签到")
    resp = client.get(f"/api/v1/points/entries/{credit.id}", headers=headers)
    assert resp.status_code == 200
    assert (resp.json()["id"], resp.json()["points"], resp.json()["memo"]) == (
        credit.id,
        25,
        "签到",
    )


def test_verify_reports_ok_then_the_tampered_balance(db, client, shop):
    tenant, member, headers = shop
    grant(db, member, 100)
    spend(db, member, 30)
    ok = client.get("/api/v1/ledger/verify", headers=headers)
    assert ok.status_code == 200
    assert ok.json() == {"ok": True, "entries": 2, "accounts": 4, "lots": 1, "problems": []}
    db.execute(
        text("UPDATE ledger_accounts SET balance = 1000 WHERE member_id = :id"), {"id": member.id}
    )
    bad = client.get("/api/v1/ledger/verify", headers=headers).json()
    assert bad["ok"] is False
    assert bad["problems"] == [
        {"kind": "balance_mismatch", "ref": f"wallet:{member.id}", "expected": 70, "actual": 1000}
    ]


# --- request errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", "   "])
def test_writes_without_an_idempotency_key_are_400(db, client, shop, key):
    tenant, member, headers = shop
    credit = grant(db, member, 100)
    for url, body in (
        (f"/api/v1/members/{member.id}/points/grant", {"points": 5, "reason": "purchase"}),
        (f"/api/v1/members/{member.id}/points/spend", {"points": 5, "reason": "redeem"}),
        (f"/api/v1/points/entries/{credit.id}/reverse", {}),
    ):
        resp = post(client, url, headers, key, **body)
        assert_problem(resp, 400, "request.idempotency_key_required")
    assert (balance(db, member), count_entries(db, member)) == (100, 1)


@pytest.mark.parametrize(
    ("key", "code"),
    [("k" * 201, "request.invalid"), ("expire:1:0", "request.invalid_field")],
)
def test_an_oversized_or_reserved_idempotency_key_is_422(db, client, shop, key, code):
    tenant, member, headers = shop
    resp = post(
        client,
        f"/api/v1/members/{member.id}/points/grant",
        headers,
        key,
        points=5,
        reason="purchase",
    )
    body = assert_problem(resp, 422, code)
    assert "idempotency" in str(body.get("errors") or body["params"]).lower()
    assert count_entries(db, member) == 0


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"points": 0, "reason": "purchase"}, [["body", "points"]]),
        ({"points": -5, "reason": "purchase"}, [["body", "points"]]),
        ({"points": 1_000_000_001, "reason": "purchase"}, [["body", "points"]]),
        ({"points": "ten", "reason": "purchase"}, [["body", "points"]]),
        ({"points": 5, "reason": "Not A Code"}, [["body", "reason"]]),
        ({"reason": "purchase"}, [["body", "points"]]),
        (
            {"points": 5, "reason": "purchase", "expires_at": "2030-01-01T00:00:00"},
            [["body", "expires_at"]],
        ),
    ],
)
def test_a_bad_body_is_422_with_the_fields_in_errors(db, client, shop, body, fields):
    tenant, member, headers = shop
    resp = post(client, f"/api/v1/members/{member.id}/points/grant", headers, "bad-1", **body)
    problem = assert_problem(resp, 422, "request.invalid")
    assert [e["loc"] for e in problem["errors"]] == fields
    assert all(e["msg"] and e["type"] for e in problem["errors"])
    assert count_entries(db, member) == 0


def test_a_body_that_is_not_json_is_422(db, client, shop):
    tenant, member, headers = shop
    resp = client.post(
        f"/api/v1/members/{member.id}/points/spend",
        content=b"points=5",
        headers=headers | {"Idempotency-Key": "k", "Content-Type": "application/json"},
    )
    assert_problem(resp, 422, "request.invalid")


# --- auth and tenancy -------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["analyst", "service"])
def test_read_only_roles_cannot_move_points_but_can_read(db, client, role):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    credit = grant(db, member, 100)
    headers = token_headers(db, make_operator(db, tenant, role=role))
    for url, body in (
        (f"/api/v1/members/{member.id}/points/grant", {"points": 5, "reason": "purchase"}),
        (f"/api/v1/members/{member.id}/points/spend", {"points": 5, "reason": "redeem"}),
        (f"/api/v1/points/entries/{credit.id}/reverse", {}),
    ):
        resp = post(client, url, headers, "k1", **body)
        problem = assert_problem(resp, 403, "auth.forbidden")
        assert problem["params"] == {"action": "points.adjust"}
    assert (balance(db, member), count_entries(db, member)) == (100, 1)
    for url in (
        f"/api/v1/members/{member.id}/points",
        f"/api/v1/members/{member.id}/points/entries",
        f"/api/v1/points/entries/{credit.id}",
        "/api/v1/ledger/verify",
    ):
        assert client.get(url, headers=headers).status_code == 200


def test_no_token_is_401(db, client, shop):
    tenant, member, headers = shop
    for method, url in (
        ("GET", f"/api/v1/members/{member.id}/points"),
        ("GET", f"/api/v1/members/{member.id}/points/entries"),
        ("GET", "/api/v1/ledger/verify"),
        ("POST", f"/api/v1/members/{member.id}/points/grant"),  # no key either: 401 first
        ("GET", "/api/v1/me/points"),
        ("GET", "/api/v1/me/points/entries"),
    ):
        resp = client.request(method, url, json={"points": 5, "reason": "purchase"})
        assert_problem(resp, 401, "auth.required")
        assert resp.headers["www-authenticate"] == "Bearer"


def test_member_and_operator_tokens_do_not_open_each_others_routes(db, client, shop):
    tenant, member, headers = shop
    resp = client.get(f"/api/v1/members/{member.id}/points", headers=member_headers(member))
    assert_problem(resp, 401, "auth.invalid_token")
    assert_problem(client.get("/api/v1/me/points", headers=headers), 401, "auth.invalid_token")


def test_another_tenants_member_is_404(db, client, shop):
    tenant, member, headers = shop
    stranger = make_member(db, make_tenant(db))
    credit = grant(db, stranger, 100)
    for method, url, body in (
        ("POST", f"/api/v1/members/{stranger.id}/points/grant", {"points": 5, "reason": "p"}),
        ("POST", f"/api/v1/members/{stranger.id}/points/spend", {"points": 5, "reason": "r"}),
        ("GET", f"/api/v1/members/{stranger.id}/points", None),
        ("GET", f"/api/v1/members/{stranger.id}/points/entries", None),
    ):
        resp = client.request(method, url, json=body, headers=headers | {"Idempotency-Key": "x"})
        problem = assert_problem(resp, 404, "member.not_found")
        assert problem["params"] == {"member_id": stranger.id}
    for method, url in (
        ("GET", f"/api/v1/points/entries/{credit.id}"),
        ("POST", f"/api/v1/points/entries/{credit.id}/reverse"),
    ):
        resp = client.request(method, url, json={}, headers=headers | {"Idempotency-Key": "y"})
        assert_problem(resp, 404, "points.entry_not_found")
    assert (balance(db, stranger), count_entries(db, stranger)) == (100, 1)


# --- member-facing ----------------------------------------------------------------------------


def test_member_reads_own_balance_and_entries(db, client, clock, shop):
    tenant, member, headers = shop
    other = make_member(db, tenant)
    grant(db, other, 999)
    grant(db, member, 200, expires_at=clock.now + dt.timedelta(days=10))
    grant(db, member, 50)
    spend(db, member, 30)
    mine = member_headers(member)
    bal = client.get("/api/v1/me/points", headers=mine)
    assert bal.status_code == 200
    body = bal.json()
    assert (body["member_id"], body["balance"], body["growth"]) == (member.id, 220, 250)
    assert [e["points"] for e in body["expiring"]] == [170]
    page = client.get("/api/v1/me/points/entries", headers=mine, params={"limit": 2}).json()
    assert [(e["kind"], e["points"]) for e in page["items"]] == [("debit", -30), ("credit", 50)]
    rest = client.get(
        "/api/v1/me/points/entries",
        headers=mine,
        params={"limit": 2, "before_id": page["next_before_id"]},
    ).json()
    assert [(e["kind"], e["points"]) for e in rest["items"]] == [("credit", 200)]
    assert rest["next_before_id"] is None
    mine_ids = {
        e.id
        for e in ledger.list_entries(db, tenant_id=member.tenant_id, member_id=member.id, limit=10)
    }
    assert {e["id"] for e in page["items"] + rest["items"]} == mine_ids
    # Members see their entries, not the ledger's internals.
    assert not {"idempotency_key", "actor_id", "actor_type"} & set(page["items"][0])

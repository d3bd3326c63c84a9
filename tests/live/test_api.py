"""The live and check-in API: operators build and run a session, members reserve and check in."""

from __future__ import annotations

import io

import pytest
from openpyxl import load_workbook

from tests.factories import (
    add_product,
    grant,
    make_member,
    make_operator,
    make_session,
    make_tenant,
    member_headers,
    token_headers,
)


@pytest.fixture
def shop(db, clock):
    tenant = make_tenant(db)
    owner = make_operator(db, tenant)
    analyst = make_operator(db, tenant, role="analyst")
    fan = make_member(db, tenant)
    return {
        "tenant": tenant,
        "op": token_headers(db, owner),
        "analyst": token_headers(db, analyst),
        "fan": fan,
        "me": member_headers(fan),
    }


SESSION = {
    "platform": "taobao",
    "theme": "零食节",
    "starts_at": "2026-12-06T20:00:00+08:00",
    "ends_at": "2026-12-06T23:30:00+08:00",
    "taobao_password": "￥MDGGba1MLQh￥",
}


def create(client, shop, key="s1", **over):
    return client.post(
        "/api/v1/live/sessions",
        json={**SESSION, **over},
        headers={**shop["op"], "Idempotency-Key": key},
    )


def test_operator_builds_a_session_and_its_lineup(client, shop):
    resp = create(client, shop)
    again = create(client, shop)
    sid = resp.json()["id"]
    p1 = client.post(
        f"/api/v1/live/sessions/{sid}/lineup",
        json={
            "title": "每日坚果",
            "brand": "三只松鼠",
            "live_price_fen": 5990,
            "list_price_fen": 9900,
            "link": "https://item.example/1",
        },
        headers={**shop["op"], "Idempotency-Key": "p1"},
    )
    p2 = client.post(
        f"/api/v1/live/sessions/{sid}/lineup",
        json={"title": "辣条", "live_price_fen": 990, "list_price_fen": 1500},
        headers={**shop["op"], "Idempotency-Key": "p2"},
    )
    order = client.put(
        f"/api/v1/live/sessions/{sid}/lineup",
        json={"product_ids": [p2.json()["id"]]},
        headers=shop["op"],
    )
    detail = client.get(f"/api/v1/live/sessions/{sid}", headers=shop["analyst"])
    month = client.get("/api/v1/live/sessions", params={"month": "2026-12"}, headers=shop["op"])

    assert resp.status_code == 201
    assert again.json()["id"] == sid
    assert (p1.status_code, p2.status_code) == (201, 201)
    assert [p["title"] for p in order.json()] == ["辣条", "每日坚果"]
    assert [p["title"] for p in detail.json()["lineup"]] == ["辣条", "每日坚果"]
    assert [s["id"] for s in month.json()] == [sid]


def test_invalid_taobao_password_is_a_problem(client, shop):
    resp = create(client, shop, taobao_password="没有口令")

    assert resp.status_code == 422
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["code"] == "live.invalid"
    assert resp.json()["params"]["field"] == "taobao_password"


def test_analyst_cannot_put_a_product_on_sale(client, shop, db):
    s = make_session(db, shop["tenant"])
    p = add_product(db, s)

    resp = client.post(f"/api/v1/live/products/{p.id}/on-sale", headers=shop["analyst"])

    assert resp.status_code == 403
    assert resp.json()["code"] == "auth.forbidden"


def test_member_reserves_then_on_sale_marks_the_reservation_once(client, shop, db):
    s = make_session(db, shop["tenant"])
    p = add_product(db, s)

    reserved = client.post(
        "/api/v1/me/reservations",
        json={"session_id": s.id, "product_id": p.id},
        headers=shop["me"],
    )
    twice = client.post(
        "/api/v1/me/reservations",
        json={"session_id": s.id, "product_id": p.id},
        headers=shop["me"],
    )
    sale = client.post(f"/api/v1/live/products/{p.id}/on-sale", headers=shop["op"])
    sale_again = client.post(f"/api/v1/live/products/{p.id}/on-sale", headers=shop["op"])
    mine = client.get("/api/v1/me/reservations", headers=shop["me"]).json()
    funnel = client.get(f"/api/v1/live/sessions/{s.id}/funnel", headers=shop["op"]).json()
    late = client.post(
        "/api/v1/me/reservations",
        json={"session_id": s.id, "product_id": p.id},
        headers=member_headers(make_member(db, shop["tenant"])),
    )

    assert reserved.status_code == 201
    assert twice.json()["id"] == reserved.json()["id"]
    assert (sale.json()["changed"], sale.json()["marked"]) == (True, 1)
    assert (sale_again.json()["changed"], sale_again.json()["marked"]) == (False, 0)
    assert [r["remind_state"] for r in mine] == ["due"]
    product_row = next(r for r in funnel if r["kind"] == "product")
    assert (product_row["reserved"], product_row["reminded"], product_row["purchased"]) == (
        1,
        1,
        0,
    )
    assert late.status_code == 409
    assert late.json()["code"] == "live.reservation_closed"


def test_session_start_via_transitions(client, shop, db):
    s = make_session(db, shop["tenant"])
    client.post("/api/v1/me/reservations", json={"session_id": s.id}, headers=shop["me"])

    start = client.post(
        f"/api/v1/live/sessions/{s.id}/transitions", json={"action": "start"}, headers=shop["op"]
    )
    cancel = client.post(
        f"/api/v1/live/sessions/{s.id}/transitions", json={"action": "cancel"}, headers=shop["op"]
    )

    assert (start.json()["changed"], start.json()["marked"]) == (True, 1)
    assert start.json()["session"]["status"] == "live"
    assert cancel.status_code == 409
    assert cancel.json()["code"] == "live.invalid_transition"


def test_member_cancels_and_cannot_touch_anothers_reservation(client, shop, db):
    s = make_session(db, shop["tenant"])
    other = make_member(db, shop["tenant"])
    theirs = client.post(
        "/api/v1/me/reservations", json={"session_id": s.id}, headers=member_headers(other)
    ).json()
    mine = client.post("/api/v1/me/reservations", json={"session_id": s.id}, headers=shop["me"])

    steal = client.delete(f"/api/v1/me/reservations/{theirs['id']}", headers=shop["me"])
    cancel = client.delete(f"/api/v1/me/reservations/{mine.json()['id']}", headers=shop["me"])

    assert steal.status_code == 404
    assert steal.json()["code"] == "live.reservation_not_found"
    assert cancel.json()["cancelled_at"] is not None
    assert client.get("/api/v1/me/reservations", headers=shop["me"]).json() == []


def test_guide_downloads_and_share_link(client, shop, db):
    s = make_session(db, shop["tenant"], theme="零食节")
    add_product(db, s, title="每日坚果", live_price_fen=5990, list_price_fen=9900)

    xlsx = client.get(f"/api/v1/live/sessions/{s.id}/guide.xlsx", headers=shop["analyst"])
    csv_ = client.get(f"/api/v1/live/sessions/{s.id}/guide.csv", headers=shop["analyst"])
    share = client.post(f"/api/v1/live/sessions/{s.id}/share", headers=shop["op"]).json()
    public = client.get(share["url"].replace("http://testserver", ""))
    client.delete(f"/api/v1/live/sessions/{s.id}/share", headers=shop["op"])
    revoked = client.get(share["url"].replace("http://testserver", ""))

    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    assert sheet["C2"].value == "每日坚果"
    assert "attachment" in xlsx.headers["content-disposition"]
    assert "每日坚果" in csv_.content.decode("utf-8-sig")
    assert public.status_code == 200
    assert "每日坚果" in public.text
    assert "¥59.9" in public.text
    assert revoked.status_code == 404


def test_preview_endpoint(client, shop, db):
    s = make_session(db, shop["tenant"], theme="零食节")
    add_product(db, s, title="每日坚果")

    card = client.get(f"/api/v1/live/sessions/{s.id}/preview", headers=shop["op"]).json()

    assert "零食节" in card["text"]
    assert card["layout"]["items"][0]["title"] == "每日坚果"


def test_click_link_redirects_and_counts(client, shop, db):
    s = make_session(db, shop["tenant"])
    p = add_product(db, s, link="https://item.example/9")
    r = client.post(
        "/api/v1/me/reservations",
        json={"session_id": s.id, "product_id": p.id},
        headers=shop["me"],
    ).json()
    from siyu.live.models import Reservation

    token = db.get(Reservation, r["id"]).click_token

    resp = client.get(f"/r/{token}", follow_redirects=False)
    missing = client.get("/r/not-a-token", follow_redirects=False)
    funnel = client.get(f"/api/v1/live/sessions/{s.id}/funnel", headers=shop["op"]).json()

    assert resp.status_code == 303
    assert resp.headers["location"] == "https://item.example/9"
    assert missing.status_code == 404
    assert next(f for f in funnel if f["kind"] == "product")["clicked"] == 1


def test_member_checks_in_through_the_api(client, shop, db, clock):
    rule = client.put(
        "/api/v1/checkin/rule",
        json={"base": 3, "bonuses": [{"day": 2, "points": 4}], "makeup_days": 2, "makeup_cost": 50},
        headers=shop["op"],
    )
    first = client.post("/api/v1/me/checkins", headers=shop["me"]).json()
    again = client.post("/api/v1/me/checkins", headers=shop["me"]).json()
    clock.advance(days=1)
    second = client.post("/api/v1/me/checkins", headers=shop["me"]).json()
    no_points = client.post(
        "/api/v1/me/checkins/makeup", json={"day": "2026-11-10"}, headers=shop["me"]
    )
    month = client.get("/api/v1/me/checkins", params={"month": "2026-11"}, headers=shop["me"])
    balance = client.get("/api/v1/me/points", headers=shop["me"]).json()["balance"]

    assert rule.status_code == 200
    assert (first["created"], again["created"]) == (True, False)
    assert (second["streak"], second["checkin"]["points"]) == (2, 7)
    assert no_points.status_code == 409
    assert no_points.json()["code"] == "points.insufficient"
    assert month.json()["streak"] == 2
    assert len(month.json()["checkins"]) == 2
    assert balance == 10


def test_bad_rule_is_refused(client, shop):
    resp = client.put(
        "/api/v1/checkin/rule",
        json={
            "base": 3,
            "bonuses": [{"day": 7, "points": 1}, {"day": 7, "points": 2}],
            "makeup_days": 0,
            "makeup_cost": 0,
        },
        headers=shop["op"],
    )

    assert resp.status_code == 422
    assert resp.json()["code"] == "checkin.invalid_rule"


def test_make_up_with_points_fills_the_day(client, shop, db, clock):
    grant(db, shop["fan"], 50)
    client.post("/api/v1/me/checkins", headers=shop["me"])  # 11-11
    clock.advance(days=2)  # 11-13

    made = client.post("/api/v1/me/checkins/makeup", json={"day": "2026-11-12"}, headers=shop["me"])
    month = client.get("/api/v1/me/checkins", headers=shop["me"]).json()

    assert made.status_code == 200
    assert made.json()["checkin"]["kind"] == "makeup"
    assert month["streak"] == 2
    assert month["makeup_days"] == ["2026-11-10"]  # the default rule: 3 days back

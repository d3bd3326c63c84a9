"""Messaging over the API and pages: operators send and follow, members read their inbox."""

from __future__ import annotations

import re

from siyu.messaging import service
from tests.factories import make_member, make_operator, make_tenant, member_headers, token_headers
from tests.messaging.conftest import drain


def test_operator_sends_and_member_reads_the_inbox_over_the_api(db, client):
    tenant = make_tenant(db)
    op = make_operator(db, tenant, role="operator")
    fan = make_member(db, tenant, nickname="小鱼")
    headers = token_headers(db, op)

    resp = client.post(
        "/api/v1/messages",
        headers=headers,
        json={
            "purpose": "live:1:start",
            "member_ids": [fan.id],
            "title": "开播啦",
            "body": "{{ member.nickname }}，{{ session.theme }} 开始了",
            "context": {"session": {"theme": "美妆专场"}},
        },
    )
    assert resp.status_code == 201, resp.text
    message_id = resp.json()["id"]
    assert resp.json()["counts"]["queued"] == 1
    drain()

    detail = client.get(f"/api/v1/messages/{message_id}", headers=headers).json()
    assert detail["counts"]["sent"] == 1
    assert detail["progress"] == 100
    assert detail["status"] == "done"
    deliveries = client.get(f"/api/v1/messages/{message_id}/deliveries", headers=headers).json()
    assert [(d["member_id"], d["channel"], d["status"]) for d in deliveries["items"]] == [
        (fan.id, "inbox", "sent")
    ]
    inbox = client.get("/api/v1/me/messages", headers=member_headers(fan)).json()
    assert inbox["unread"] == 1
    assert inbox["items"][0]["body"] == "小鱼，美妆专场 开始了"
    read = client.post(
        "/api/v1/me/messages/read",
        headers=member_headers(fan),
        json={"ids": [inbox["items"][0]["id"]]},
    )
    assert read.json()["marked"] == 1
    assert client.get("/api/v1/me/messages", headers=member_headers(fan)).json()["unread"] == 0


def test_analyst_may_read_but_not_send(db, client):
    tenant = make_tenant(db)
    analyst = make_operator(db, tenant, role="analyst")
    headers = token_headers(db, analyst)

    assert client.get("/api/v1/messages", headers=headers).status_code == 200
    resp = client.post(
        "/api/v1/messages", headers=headers, json={"purpose": "x", "member_ids": [], "body": "x"}
    )
    assert resp.status_code == 403
    assert resp.json()["code"] == "auth.forbidden"


def test_invalid_send_is_a_problem_not_a_500(db, client):
    tenant = make_tenant(db)
    headers = token_headers(db, make_operator(db, tenant))

    resp = client.post(
        "/api/v1/messages",
        headers=headers,
        json={"purpose": "x", "member_ids": [1], "body": "{% for %}"},
    )
    assert resp.status_code == 422
    assert resp.json()["code"] == "messages.invalid"
    resp = client.post(
        "/api/v1/messages",
        headers=headers,
        json={"purpose": "x", "template": "nope", "member_ids": [1]},
    )
    assert resp.status_code == 404
    assert resp.json()["code"] == "messages.template_not_found"


def test_member_consent_over_the_api_accumulates(db, client):
    tenant = make_tenant(db)
    fan = make_member(db, tenant)

    for _ in range(2):
        resp = client.post(
            "/api/v1/me/consents", headers=member_headers(fan), json={"template_key": "TPL-1"}
        )
        assert resp.status_code == 200
    assert resp.json() == {"template_key": "TPL-1", "remaining": 2}


def test_member_h5_messages_page_shows_own_messages_and_marks_them_read(db, client):
    tenant = make_tenant(db)
    fan = make_member(db, tenant, openid="o-fan", nickname="小鱼")
    other = make_member(db, tenant, openid="o-other")
    service.send(
        db,
        tenant_id=tenant.id,
        purpose="p1",
        member_ids=[fan.id],
        title="签到提醒",
        body="{{ member.nickname }} 今天签到了吗",
    )
    service.send(
        db,
        tenant_id=tenant.id,
        purpose="p2",
        member_ids=[other.id],
        title="别人的",
        body="不该看到",
    )
    db.commit()
    drain()
    login = client.get(f"/m/{tenant.slug}/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
    client.post(f"/m/{tenant.slug}/login", data={"openid": "o-fan", "csrf_token": csrf})

    page = client.get(f"/m/{tenant.slug}/messages")

    assert page.status_code == 200
    assert "小鱼 今天签到了吗" in page.text
    assert "不该看到" not in page.text
    assert 'class="unread"' in page.text
    assert service.unread_count(db, tenant_id=tenant.id, member_id=fan.id) == 0
    assert 'class="unread"' not in client.get(f"/m/{tenant.slug}/messages").text


def test_operator_restores_the_ready_made_daily_rhythm_without_touching_edits(db, client):
    """A tenant whose 13:00 preview was deleted and whose 19:30 was moved to 20:00 gets the
    missing one back, paused; the edited one stays as edited; repeating changes nothing; an
    analyst may not."""
    from sqlalchemy import delete

    from siyu.messaging.models import Schedule
    from tests.messaging.test_schedules import sop

    tenant = make_tenant(db)
    headers = token_headers(db, make_operator(db, tenant))
    db.execute(
        delete(Schedule).where(Schedule.tenant_id == tenant.id, Schedule.key == "live-preview")
    )
    moved = sop(db, tenant, key="live-start", time="20:00", paused=False)
    db.flush()

    first = client.post("/api/v1/schedules/defaults", headers=headers)
    again = client.post("/api/v1/schedules/defaults", headers=headers)
    analyst = client.post(
        "/api/v1/schedules/defaults",
        headers=token_headers(db, make_operator(db, tenant, role="analyst")),
    )

    assert first.status_code == 200, first.text
    rows = {s["key"]: s for s in first.json()}
    assert set(rows) == {"checkin-reminder", "live-preview", "live-start"}
    assert rows["live-preview"]["paused"] is True
    assert (rows["live-start"]["id"], rows["live-start"]["paused"]) == (moved.id, False)
    assert rows["live-start"]["next_runs"]  # still running, at 20:00
    assert [s["id"] for s in again.json()] == [s["id"] for s in first.json()]
    assert analyst.status_code == 403
    assert analyst.headers["content-type"].startswith("application/problem+json")


def test_console_button_adds_the_ready_made_daily_rhythm(db, client, clock):
    from sqlalchemy import delete

    from siyu.messaging.models import Schedule
    from tests.tenants.test_pages import sign_in

    tenant = make_tenant(db)
    csrf = sign_in(client, tenant, make_operator(db, tenant, role="owner").username)
    db.execute(delete(Schedule).where(Schedule.tenant_id == tenant.id))
    db.flush()
    empty = client.get("/admin/schedules")
    assert 'data-testid="install-defaults"' in empty.text

    done = client.post("/admin/schedules/defaults", data={"csrf_token": csrf})

    assert done.status_code == 200  # followed the redirect back to the list
    assert 'role="status"' in done.text
    for key in ("checkin-reminder", "live-preview", "live-start"):
        assert f'data-key="{key}"' in done.text

"""Console and member pages of the live calendar and the check-in, through TestClient."""

from __future__ import annotations

import re

import pytest

from siyu.live import service as live
from tests.factories import (
    PASSWORD,
    add_product,
    make_member,
    make_operator,
    make_session,
    make_tenant,
)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found
    return found.group(1)


@pytest.fixture
def console(client, db, clock):
    tenant = make_tenant(db)
    make_operator(db, tenant, username="boss")
    token = csrf_of(client.get("/admin/login").text)
    resp = client.post(
        "/admin/login",
        data={"tenant": tenant.slug, "username": "boss", "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert resp.status_code == 303
    return tenant, csrf_of(client.get("/admin/live").text)


@pytest.fixture
def phone(client, db, clock):
    tenant = make_tenant(db)
    make_member(db, tenant, openid="o-fan", nickname="小鱼")
    token = csrf_of(client.get(f"/m/{tenant.slug}/login").text)
    resp = client.post(
        f"/m/{tenant.slug}/login",
        data={"openid": "o-fan", "csrf_token": token},
        follow_redirects=False,
    )
    assert resp.status_code == 303
    return tenant, token


def test_operator_creates_a_session_in_tenant_time_and_adds_products(client, db, console):
    tenant, csrf = console
    resp = client.post(
        "/admin/live/sessions",
        data={
            "csrf_token": csrf,
            "platform": "taobao",
            "theme": "零食节",
            "starts_at": "2026-12-06T20:00",
            "ends_at": "2026-12-06T23:00",
            "key": "k",
        },
        follow_redirects=False,
    )
    sid = int(resp.headers["location"].split("/")[-1].split("?")[0])
    added = client.post(
        f"/admin/live/sessions/{sid}/lineup",
        data={
            "csrf_token": csrf,
            "title": "每日坚果",
            "live_price": "59.9",
            "list_price": "99",
            "slot_at": "2026-12-06T20:30",
            "key": "p",
        },
        follow_redirects=False,
    )
    bad = client.post(
        f"/admin/live/sessions/{sid}/lineup",
        data={
            "csrf_token": csrf,
            "title": "辣条",
            "live_price": "9.999",
            "list_price": "15",
            "key": "q",
        },
    )
    page = client.get(f"/admin/live/sessions/{sid}")
    cal = client.get("/admin/live", params={"month": "2026-12"})

    session = live.get_session(db, tenant_id=tenant.id, session_id=sid)
    (product,) = live.lineup(db, tenant_id=tenant.id, session_id=sid)
    assert session.starts_at.isoformat() == "2026-12-06T12:00:00+00:00"  # 20:00 Shanghai
    assert added.status_code == 303
    assert product.live_price_fen == 5990
    assert bad.status_code == 422
    assert "live_price" in bad.text
    assert "每日坚果" in page.text
    assert "¥59.9" in page.text
    assert "零食节" in cal.text


def test_control_panel_on_sale_button_and_counters(client, db, console):
    tenant, csrf = console
    s = make_session(db, tenant)
    p = add_product(db, s, title="每日坚果")
    fan = make_member(db, tenant)
    live.reserve(db, tenant_id=tenant.id, member_id=fan.id, session_id=s.id, product_id=p.id)

    first = client.post(f"/admin/live/products/{p.id}/on-sale", data={"csrf_token": csrf})
    second = client.post(f"/admin/live/products/{p.id}/on-sale", data={"csrf_token": csrf})
    counters = client.get(f"/admin/live/sessions/{s.id}/counters")

    assert first.status_code == 200  # followed to the panel
    assert "已开售" in first.text
    assert "不会重复提醒" in second.text
    row = re.search(rf'data-product="{p.id}">(.*?)</tr>', counters.text, re.S).group(1)
    assert re.search(r'data-count="reserved">1<', row)
    assert re.search(r'data-count="reminded">1<', row)


def test_rule_editor_saves_and_rejects(client, db, console):
    tenant, csrf = console
    ok = client.post(
        "/admin/checkin",
        data={
            "csrf_token": csrf,
            "base": "8",
            "makeup_days": "2",
            "makeup_cost": "30",
            "bonus_day": ["7", ""],
            "bonus_points": ["50", ""],
        },
        follow_redirects=False,
    )
    bad = client.post(
        "/admin/checkin",
        data={"csrf_token": csrf, "base": "x", "makeup_days": "2", "makeup_cost": "30"},
    )

    from siyu.checkin import service as checkin

    db.expire_all()  # the request changed the tenant row behind this session
    assert ok.status_code == 303
    assert checkin.get_rule(db, tenant_id=tenant.id).as_dict() == {
        "base": 8,
        "bonuses": [{"day": 7, "points": 50}],
        "makeup_days": 2,
        "makeup_cost": 30,
    }
    assert bad.status_code == 422


def test_member_calendar_session_reserve_and_my_reservations(client, db, phone, clock):
    tenant, csrf = phone
    # Today in Shanghai (clock: 2026-11-11 20:00 local); the session starts at 21:00.
    s = make_session(db, tenant, theme="零食节", starts_at=clock.now.replace(hour=13))
    p = add_product(db, s, title="每日坚果")

    cal = client.get(f"/m/{tenant.slug}/live")
    reserve = client.post(
        f"/m/{tenant.slug}/live/{s.id}/reserve",
        data={"csrf_token": csrf, "product_id": str(p.id)},
        follow_redirects=False,
    )
    page = client.get(reserve.headers["location"])
    mine = client.get(f"/m/{tenant.slug}/reservations")

    assert 'data-testid="today-preview"' in cal.text
    assert "零食节" in cal.text
    assert reserve.status_code == 303
    assert "预约成功" in page.text
    assert 'data-state="waiting"' in page.text
    assert "每日坚果" in mine.text


def test_member_check_in_page(client, db, phone, clock):
    tenant, csrf = phone
    s = make_session(db, tenant, theme="零食节", starts_at=clock.now.replace(hour=13))

    before = client.get(f"/m/{tenant.slug}/checkin")
    done = client.post(f"/m/{tenant.slug}/checkin", data={"csrf_token": csrf})
    twice = client.post(f"/m/{tenant.slug}/checkin", data={"csrf_token": csrf})
    reserve = client.post(
        f"/m/{tenant.slug}/live/{s.id}/reserve",
        data={"csrf_token": csrf, "back": "checkin"},
    )

    assert 'data-testid="tonight"' in before.text
    assert "零食节" in before.text
    assert "签到成功" in done.text
    assert 'data-checked="daily"' in done.text
    assert "今天已经签到过了" in twice.text
    assert "预约成功" in reserve.text


def test_shared_guide_needs_no_sign_in(client, db, clock):
    tenant = make_tenant(db)
    s = make_session(db, tenant, theme="零食节")
    add_product(db, s, title="每日坚果", delivery_note="48小时内发货")
    token = live.share_guide(db, tenant_id=tenant.id, session_id=s.id).share_token

    page = client.get(f"/m/{tenant.slug}/guide/{token}")
    wrong = client.get(f"/m/{tenant.slug}/guide/nope")

    assert page.status_code == 200
    assert "48小时内发货" in page.text
    assert wrong.status_code == 404
    assert "购物攻略不存在" in wrong.text


def test_operator_edits_a_product_in_place(client, db, console):
    tenant, csrf = console
    s = make_session(db, tenant)
    p = add_product(db, s, title="每日坚果", live_price_fen=5990)

    ok = client.post(
        f"/admin/live/products/{p.id}",
        data={"csrf_token": csrf, "live_price": "49.9", "stock_note": "限量 3000 件"},
        follow_redirects=False,
    )
    bad = client.post(
        f"/admin/live/products/{p.id}", data={"csrf_token": csrf, "link": "去直播间买"}
    )

    db.refresh(p)
    assert ok.status_code == 303
    assert (p.live_price_fen, p.stock_note, p.title) == (4990, "限量 3000 件", "每日坚果")
    assert bad.status_code == 422
    assert p.link == ""


def test_control_panel_asks_for_the_real_subscribe_template_id_before_reminders_go_out(
    client, db, console
):
    """With the mini program set up, the ready-made reminder template's placeholder id would
    make WeChat refuse every reminder: the panel says so and links to the template, until the
    operator has pasted a real id."""
    from siyu.live import reminders
    from siyu.messaging import service as messaging

    tenant, csrf = console
    s = make_session(db, tenant)
    url = f"/admin/live/sessions/{s.id}/control"
    assert "reminder-template-missing" not in client.get(url).text  # no mini program yet

    tenant.settings = {**(tenant.settings or {}), "wechat": {"appid": "wx1", "secret": "s"}}
    db.flush()
    warned = client.get(url).text
    assert 'data-testid="reminder-template-missing"' in warned
    assert "/admin/message-templates?key=live.reminder" in warned

    row = reminders.ensure_template(db, tenant_id=tenant.id)
    messaging.save_template(
        db,
        tenant_id=tenant.id,
        key=row.key,
        name=row.name,
        title=row.title,
        body=row.body,
        subscribe={**(row.subscribe or {}), "template_id": "AbC-real-template-id"},
    )
    assert "reminder-template-missing" not in client.get(url).text

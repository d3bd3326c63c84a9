"""The on-sale / session-start reminder: consent at reservation, the fan-out through messaging
(subscribe message with consent, inbox without), the tracked link, the template, the funnel."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from siyu.live import reminders
from siyu.live import service as live
from siyu.live.models import Reservation
from siyu.messaging import service as messaging
from siyu.messaging.errors import InvalidTemplate
from siyu.messaging.models import Delivery, InboxItem, Message
from siyu.tenants import service as tenants
from tests.factories import (
    add_product,
    make_member,
    make_operator,
    make_session,
    make_tenant,
    member_headers,
    token_headers,
)
from tests.fakes import weixin as fake
from tests.fakes.weixin import weixin, weixin_server  # noqa: F401
from tests.messaging.conftest import _empty_queue, drain  # noqa: F401

TOKEN = re.compile(r"/r/([A-Za-z0-9_-]+)")


@pytest.fixture
def shop(db, clock):
    tenant = make_tenant(db)
    tenants.update_settings(
        db, tenant_id=tenant.id, changes={"wechat": {"appid": fake.APPID, "secret": fake.SECRET}}
    )
    s = make_session(db, tenant, theme="零食节")
    nuts = add_product(
        db, s, title="每日坚果 30 包礼盒装 超值家庭分享装大礼包", link="https://m.tb.cn/h.nuts"
    )
    tea = add_product(db, s, title="花果茶", link="￥MDGGba1MLQh￥ 打开淘宝")
    return {
        "tenant": tenant,
        "session": s,
        "nuts": nuts,
        "tea": tea,
        "op": token_headers(db, make_operator(db, tenant)),
    }


def reserve_api(client, member, session, product=None, subscribe=None):
    body = {"session_id": session.id, "product_id": product.id if product else None}
    if subscribe is not None:
        body["subscribe"] = subscribe
    resp = client.post("/api/v1/me/reservations", json=body, headers=member_headers(member))
    assert resp.status_code == 201, resp.text
    return resp.json()


def inbox(db, member):
    return messaging.list_inbox(db, tenant_id=member.tenant_id, member_id=member.id)


def test_reserving_with_the_subscribe_result_records_one_consent_per_accepted_template(
    client, db, shop
):
    fan = make_member(db, shop["tenant"])
    reserve_api(
        client,
        fan,
        shop["session"],
        shop["nuts"],
        subscribe={"live-reminder": "accept", "other": "reject"},
    )
    reserve_api(client, fan, shop["session"], shop["tea"], subscribe={"live-reminder": "accept"})

    assert messaging.consents_of(db, tenant_id=shop["tenant"].id, member_id=fan.id) == {
        "live-reminder": 2
    }
    bad = client.post(
        "/api/v1/me/reservations",
        json={"session_id": shop["session"].id, "subscribe": {"x" * 65: "accept"}},
        headers=member_headers(fan),
    )
    assert bad.status_code == 422


def test_on_sale_sends_the_link_by_subscribe_message_or_the_inbox_once(
    client,
    db,
    shop,
    weixin,  # noqa: F811
):
    tenant, nuts = shop["tenant"], shop["nuts"]
    consented, plain, bystander = (make_member(db, tenant) for _ in range(3))
    weixin.grant(consented.openid, reminders.DEFAULT_SUBSCRIBE_ID)
    reserve_api(
        client,
        consented,
        shop["session"],
        nuts,
        subscribe={reminders.DEFAULT_SUBSCRIBE_ID: "accept"},
    )
    reserve_api(client, plain, shop["session"], nuts)
    reserve_api(client, bystander, shop["session"], shop["tea"])

    first = client.post(f"/api/v1/live/products/{nuts.id}/on-sale", headers=shop["op"])
    again = client.post(f"/api/v1/live/products/{nuts.id}/on-sale", headers=shop["op"])
    assert first.json()["marked"] == 2
    assert again.json()["changed"] is False
    drain()

    # The consented fan got the subscribe message: title cut to the thing limit, page carrying
    # their own tracked link.
    assert len(weixin.requests) == 1
    sent = weixin.requests[0]
    assert sent["touser"] == consented.openid
    assert sent["data"]["thing1"]["value"] == nuts.title[:19] + "…"
    mine = live.reserved_targets(
        db, tenant_id=tenant.id, member_id=consented.id, session_id=shop["session"].id
    )[f"p{nuts.id}"]
    assert sent["page"] == f"pages/live/reminder?t={mine.click_token}"
    assert inbox(db, consented) == []
    # The other got it in the inbox, with their tracked link that leads to the product.
    [item] = inbox(db, plain)
    assert item.title.startswith("每日坚果")
    assert item.title.endswith("开抢啦")
    token = TOKEN.search(item.body).group(1)
    plain_res = live.reserved_targets(
        db, tenant_id=tenant.id, member_id=plain.id, session_id=shop["session"].id
    )[f"p{nuts.id}"]
    assert token == plain_res.click_token
    follow = client.get(f"/r/{token}", follow_redirects=False)
    assert follow.headers["location"] == "https://m.tb.cn/h.nuts"
    assert inbox(db, bystander) == []
    # One message, one delivery per reserver, whatever was clicked twice.
    assert db.scalar(select(func.count()).select_from(Message)) == 1
    assert db.scalar(select(func.count()).select_from(Delivery)) == 2


def test_funnel_counts_reserved_reminded_delivered_clicked(client, db, shop):
    tenant, nuts, s = shop["tenant"], shop["nuts"], shop["session"]
    fans = [make_member(db, tenant) for _ in range(3)]
    for f in fans:
        reserve_api(client, f, s, nuts)
    reserve_api(client, fans[0], s)
    client.post(f"/api/v1/live/products/{nuts.id}/on-sale", headers=shop["op"])
    drain()
    token = TOKEN.search(inbox(db, fans[1])[0].body).group(1)
    client.get(f"/r/{token}", follow_redirects=False)
    client.get(f"/r/{token}", follow_redirects=False)

    rows = client.get(f"/api/v1/live/sessions/{s.id}/funnel", headers=shop["op"]).json()
    by = {(r["kind"], r["id"]): r for r in rows}
    assert {
        k: by[("product", nuts.id)][k] for k in ("reserved", "reminded", "delivered", "clicked")
    } == {
        "reserved": 3,
        "reminded": 3,
        "delivered": 3,
        "clicked": 1,
    }
    assert by[("product", nuts.id)]["purchased"] == 0
    assert by[("session", s.id)]["reserved"] == 1
    assert by[("session", s.id)]["delivered"] == 0
    assert by[("product", shop["tea"].id)]["delivered"] == 0


def test_session_start_reminds_session_reservers_with_the_room_password(client, db, shop):
    tenant, s = shop["tenant"], shop["session"]
    live.update_session(
        db, tenant_id=tenant.id, session_id=s.id, changes={"taobao_password": "￥MDGGba1MLQh￥"}
    )
    fan, product_only = make_member(db, tenant), make_member(db, tenant)
    reserve_api(client, fan, s)
    reserve_api(client, product_only, s, shop["nuts"])

    started = client.post(
        f"/api/v1/live/sessions/{s.id}/transitions", json={"action": "start"}, headers=shop["op"]
    )
    assert started.status_code == 200, started.text
    drain()

    [item] = inbox(db, fan)
    assert item.title == "零食节开播啦"
    assert "/r/" in item.body
    assert inbox(db, product_only) == []


def test_the_ready_made_template_is_editable_and_kept(db, shop):
    tenant = shop["tenant"]
    row = reminders.ensure_template(db, tenant_id=tenant.id)
    assert row.subscribe["template_id"] == reminders.DEFAULT_SUBSCRIBE_ID
    messaging.save_template(
        db,
        tenant_id=tenant.id,
        key=reminders.TEMPLATE_KEY,
        name="开抢提醒",
        title="{{ subject }} 来了",
        body="快抢 {{ reminder.path }}",
        subscribe={**row.subscribe, "template_id": "REAL-TPL-ID"},
    )
    assert reminders.subscribe_template_id(db, tenant_id=tenant.id) == "REAL-TPL-ID"
    assert reminders.ensure_template(db, tenant_id=tenant.id).title == "{{ subject }} 来了"
    with pytest.raises(InvalidTemplate):
        messaging.save_template(
            db,
            tenant_id=tenant.id,
            key=reminders.TEMPLATE_KEY,
            name="x",
            body="x",
            subscribe={
                **row.subscribe,
                "data": {"thing1": "这是一段超过二十个字符的固定提醒文字内容啊"},
            },
        )


def test_an_edited_template_drives_the_reminder_text(client, db, shop):
    tenant, nuts = shop["tenant"], shop["nuts"]
    messaging.save_template(
        db,
        tenant_id=tenant.id,
        key=reminders.TEMPLATE_KEY,
        name="开抢提醒",
        title="{{ subject }} 来了",
        body="{{ member.nickname }}，快抢 {{ price }}：{{ reminder.path }}",
    )
    fan = make_member(db, tenant, nickname="小鱼")
    reserve_api(client, fan, shop["session"], nuts)
    live.mark_on_sale(db, tenant_id=tenant.id, product_id=nuts.id)
    db.commit()
    drain()

    [item] = inbox(db, fan)
    assert item.title == f"{nuts.title} 来了"
    price = re.escape(live.format_fen(nuts.live_price_fen))
    assert re.fullmatch(rf"小鱼，快抢 {price}：/r/[A-Za-z0-9_-]+", item.body), item.body


def test_member_h5_reserve_with_the_wechat_box_records_consent(client, db, clock):
    from tests.live.test_pages import csrf_of

    tenant = make_tenant(db)
    s = make_session(db, tenant)
    p = add_product(db, s)
    token = csrf_of(client.get(f"/m/{tenant.slug}/login").text)
    client.post(f"/m/{tenant.slug}/login", data={"openid": "o-fan", "csrf_token": token})
    page = client.get(f"/m/{tenant.slug}/live/{s.id}")
    csrf = csrf_of(page.text)
    assert f'data-testid="notify-{p.id}"' in page.text

    client.post(
        f"/m/{tenant.slug}/live/{s.id}/reserve",
        data={"csrf_token": csrf, "product_id": str(p.id), "notify": "1"},
        follow_redirects=False,
    )
    client.post(
        f"/m/{tenant.slug}/live/{s.id}/reserve", data={"csrf_token": csrf}, follow_redirects=False
    )

    fan = live.my_reservations(db, tenant_id=tenant.id, member_id=_member_id(db, tenant))
    assert len(fan) == 2
    assert messaging.consents_of(
        db, tenant_id=tenant.id, member_id=fan[0].reservation.member_id
    ) == {reminders.DEFAULT_SUBSCRIBE_ID: 1}


def _member_id(db, tenant):
    from siyu.members.models import Member

    return db.scalar(select(Member.id).where(Member.tenant_id == tenant.id))


def test_inbox_page_shows_the_tracked_link_as_a_link(client, db, shop):
    from tests.live.test_pages import csrf_of

    tenant, nuts = shop["tenant"], shop["nuts"]
    token = csrf_of(client.get(f"/m/{tenant.slug}/login").text)
    client.post(f"/m/{tenant.slug}/login", data={"openid": "o-h5", "csrf_token": token})
    member_id = _member_id(db, tenant)
    live.reserve(
        db,
        tenant_id=tenant.id,
        member_id=member_id,
        session_id=shop["session"].id,
        product_id=nuts.id,
    )
    live.mark_on_sale(db, tenant_id=tenant.id, product_id=nuts.id)
    db.commit()
    drain()

    page = client.get(f"/m/{tenant.slug}/messages").text
    assert re.search(r'<a href="/r/[A-Za-z0-9_-]+">/r/', page)


def test_another_tenants_reservers_are_never_reached(client, db, shop):
    other = make_tenant(db)
    s2 = make_session(db, other)
    p2 = add_product(db, s2)
    stranger = make_member(db, other)
    live.reserve(db, tenant_id=other.id, member_id=stranger.id, session_id=s2.id, product_id=p2.id)
    fan = make_member(db, shop["tenant"])
    reserve_api(client, fan, shop["session"], shop["nuts"])

    live.mark_on_sale(db, tenant_id=shop["tenant"].id, product_id=shop["nuts"].id)
    db.commit()
    drain()

    assert len(inbox(db, fan)) == 1
    assert inbox(db, stranger) == []


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    plan=st.lists(st.sampled_from(["reserve", "reserve+cancel", "none"]), min_size=1, max_size=6),
    clicks=st.integers(min_value=1, max_value=3),
)
def test_each_active_reservation_is_reminded_exactly_once(db, clock, plan, clicks):
    tenant = make_tenant(db)
    s = make_session(db, tenant)
    p = add_product(db, s)
    expected = set()
    members = []
    for step in plan:
        m = make_member(db, tenant)
        members.append(m)
        if step == "none":
            continue
        r = live.reserve(db, tenant_id=tenant.id, member_id=m.id, session_id=s.id, product_id=p.id)
        if step == "reserve+cancel":
            live.cancel_reservation(db, tenant_id=tenant.id, member_id=m.id, reservation_id=r.id)
        else:
            expected.add(m.id)
    for _ in range(clicks):
        live.mark_on_sale(db, tenant_id=tenant.id, product_id=p.id)
        db.commit()
        drain()

    got = list(db.scalars(select(InboxItem.member_id).where(InboxItem.tenant_id == tenant.id)))
    assert sorted(got) == sorted(expected)


def test_the_on_sale_click_marks_only_the_first_chunk_and_the_expansion_the_rest(
    db, shop, monkeypatch
):
    """The operator's click writes the message and the first chunk of reminders; the expansion
    worker queues and marks the rest chunk by chunk, each reserver once, cancelled ones never."""
    monkeypatch.setattr(messaging, "FIRST_CHUNK", 3)
    monkeypatch.setattr(messaging, "EXPAND_CHUNK", 4)
    tenant, s, nuts, tea = shop["tenant"], shop["session"], shop["nuts"], shop["tea"]
    fans = [make_member(db, tenant) for _ in range(11)]
    for fan in fans:
        live.reserve(db, tenant_id=tenant.id, member_id=fan.id, session_id=s.id, product_id=nuts.id)
    gone = live.reserved_targets(db, tenant_id=tenant.id, member_id=fans[4].id, session_id=s.id)
    live.cancel_reservation(
        db, tenant_id=tenant.id, member_id=fans[4].id, reservation_id=gone[f"p{nuts.id}"].id
    )
    live.reserve(db, tenant_id=tenant.id, member_id=fans[0].id, session_id=s.id, product_id=tea.id)

    def states(product):
        rows = db.execute(
            select(Reservation.member_id, Reservation.remind_state)
            .where(Reservation.product_id == product.id)
            .order_by(Reservation.member_id)
            .execution_options(populate_existing=True)
        )
        return [state for _, state in rows]

    result = live.mark_on_sale(db, tenant_id=tenant.id, product_id=nuts.id)
    db.commit()
    assert result.marked == 10
    # In the click's transaction: the first three reservers (by member id), nothing else.
    assert states(nuts) == ["due"] * 3 + ["waiting"] * 8
    assert db.scalar(select(func.count()).select_from(Delivery)) == 3

    drain()  # expanded, marked due chunk by chunk, then delivered (the inbox): sent
    assert states(nuts) == ["sent"] * 4 + ["waiting"] + ["sent"] * 6  # fans[4] cancelled
    assert states(tea) == ["waiting"]
    reminded = sorted(
        db.scalars(select(InboxItem.member_id).where(InboxItem.tenant_id == tenant.id))
    )
    assert reminded == sorted(f.id for i, f in enumerate(fans) if i != 4)


def test_my_reservations_say_reminded_or_failed_once_the_channel_answered(
    client,
    db,
    shop,
    weixin,  # noqa: F811
):
    """The fan's own list follows the reminder to its end: sent (WeChat or the inbox took it)
    or failed (WeChat refused: the consent was withdrawn on the phone)."""
    tenant, nuts = shop["tenant"], shop["nuts"]
    consented, withdrawn = make_member(db, tenant), make_member(db, tenant)
    weixin.grant(consented.openid, reminders.DEFAULT_SUBSCRIBE_ID)  # not for `withdrawn`
    for fan in (consented, withdrawn):
        reserve_api(
            client, fan, shop["session"], nuts, subscribe={reminders.DEFAULT_SUBSCRIBE_ID: "accept"}
        )
    client.post(f"/api/v1/live/products/{nuts.id}/on-sale", headers=shop["op"])
    drain()

    def mine(fan):
        [row] = client.get("/api/v1/me/reservations", headers=member_headers(fan)).json()
        return row["remind_state"], row["reminded_at"] is not None

    assert mine(consented) == ("sent", True)
    assert mine(withdrawn) == ("failed", False)

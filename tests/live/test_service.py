"""Live sessions, lineups, reservations and the on-sale marking, through the service."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from siyu.live import service as live
from siyu.live.errors import (
    InvalidLive,
    InvalidTransition,
    LinkNotFound,
    ProductNotFound,
    ReservationClosed,
    SessionNotFound,
    ShareNotFound,
)
from siyu.live.models import DUE, WAITING, Reservation
from tests.factories import add_product, make_member, make_session, make_tenant, reserve

PASSWORD_TEXT = "【淘宝】https://m.tb.cn/h.5abc 复制￥MDGGba1MLQh￥打开淘宝"
UTC = dt.UTC


@pytest.fixture
def tenant(db, clock):
    return make_tenant(db)


def test_taobao_password_is_found_in_share_text():
    assert live.taobao_token(PASSWORD_TEXT) == "MDGGba1MLQh"
    assert live.taobao_token("(MDGGba1MLQh)") == "MDGGba1MLQh"
    assert live.taobao_token("￥MDGGba1MLQ￥") is None  # 10 characters
    assert live.taobao_token("￥MDGGba1MLQh$") is None  # delimiters differ
    assert live.taobao_token("") is None


def test_session_rejects_a_text_without_a_taobao_password(db, tenant):
    with pytest.raises(InvalidLive) as err:
        make_session(db, tenant, taobao_password="快来直播间")

    assert err.value.params["field"] == "taobao_password"


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"theme": "  "}, "theme"),
        ({"platform": "weibo"}, "platform"),
        ({"hours": -1}, "ends_at"),
        ({"hours": 25}, "ends_at"),
        ({"room_url": "javascript:alert(1)"}, "room_url"),
    ],
)
def test_session_validation_names_the_field(db, tenant, kw, field):
    with pytest.raises(InvalidLive) as err:
        make_session(db, tenant, **kw)

    assert err.value.params["field"] == field


def test_session_create_with_the_same_key_returns_the_first(db, tenant):
    first = make_session(db, tenant, idempotency_key="k1")
    again = make_session(db, tenant, theme="别的主题", idempotency_key="k1")

    assert again.id == first.id
    assert again.theme == "零食节"


def test_month_calendar_uses_the_tenant_timezone(db, tenant):
    # 2026-11-30 16:30 UTC is 2026-12-01 00:30 in Shanghai: a December session.
    late = make_session(db, tenant, starts_at=dt.datetime(2026, 11, 30, 16, 30, tzinfo=UTC))
    early = make_session(db, tenant, starts_at=dt.datetime(2026, 11, 30, 15, 30, tzinfo=UTC))

    dec = live.month_sessions(db, tenant_id=tenant.id, year=2026, month=12, tz=tenant.timezone)
    nov = live.month_sessions(db, tenant_id=tenant.id, year=2026, month=11, tz=tenant.timezone)

    assert [s.id for s in dec] == [late.id]
    assert [s.id for s in nov] == [early.id]


def test_transitions_follow_the_status_machine(db, tenant):
    s = make_session(db, tenant)

    started = live.transition(db, tenant_id=tenant.id, session_id=s.id, action="start")
    again = live.transition(db, tenant_id=tenant.id, session_id=s.id, action="start")
    with pytest.raises(InvalidTransition):
        live.transition(db, tenant_id=tenant.id, session_id=s.id, action="cancel")
    ended = live.transition(db, tenant_id=tenant.id, session_id=s.id, action="end")

    assert (started.changed, again.changed, ended.changed) == (True, False, True)
    assert ended.session.status == "ended"
    assert ended.session.started_at is not None
    with pytest.raises(InvalidTransition):
        live.transition(db, tenant_id=tenant.id, session_id=s.id, action="start")


def test_lineup_appends_and_reorders(db, tenant):
    s = make_session(db, tenant)
    a, b, c = (add_product(db, s, title=t) for t in ("A", "B", "C"))

    live.reorder(db, tenant_id=tenant.id, session_id=s.id, product_ids=[c.id])
    order = [p.title for p in live.lineup(db, tenant_id=tenant.id, session_id=s.id)]
    live.move_product(db, tenant_id=tenant.id, product_id=b.id, delta=-1)
    moved = [p.title for p in live.lineup(db, tenant_id=tenant.id, session_id=s.id)]

    assert order == ["C", "A", "B"]
    assert moved == ["C", "B", "A"]
    with pytest.raises(InvalidLive):
        live.reorder(db, tenant_id=tenant.id, session_id=s.id, product_ids=[a.id, a.id])


def test_product_link_must_be_a_url_or_a_taobao_password(db, tenant):
    s = make_session(db, tenant)

    ok = add_product(db, s, link=PASSWORD_TEXT)
    with pytest.raises(InvalidLive) as err:
        add_product(db, s, link="去直播间买")

    assert ok.link == PASSWORD_TEXT
    assert err.value.params["field"] == "link"


def test_on_sale_marks_each_waiting_reservation_due_exactly_once(db, tenant, clock):
    s = make_session(db, tenant)
    p, other = add_product(db, s), add_product(db, s, title="别的")
    fans = [make_member(db, tenant) for _ in range(3)]
    for fan in fans:
        reserve(db, fan, s, p)
    reserve(db, fans[0], s, other)
    reserve(db, fans[1], s)  # the session itself: not this product's reminder
    cancelled = reserve(db, make_member(db, tenant), s, p)
    live.cancel_reservation(
        db, tenant_id=tenant.id, member_id=cancelled.member_id, reservation_id=cancelled.id
    )

    first = live.mark_on_sale(db, tenant_id=tenant.id, product_id=p.id)
    clock.advance(seconds=5)
    second = live.mark_on_sale(db, tenant_id=tenant.id, product_id=p.id)

    states = {
        (r.product_id, r.remind_state)
        for r in db.scalars(select(Reservation).where(Reservation.session_id == s.id))
    }
    due_at = {
        r.remind_due_at
        for r in db.scalars(select(Reservation).where(Reservation.remind_state == DUE))
    }
    assert (first.changed, first.marked) == (True, 3)
    assert (second.changed, second.marked) == (False, 0)
    assert states == {(p.id, DUE), (p.id, WAITING), (other.id, WAITING), (None, WAITING)}
    assert len(due_at) == 1  # the second click did not touch them
    assert first.product.status == "on_sale"


def test_session_start_marks_only_session_reservations(db, tenant):
    s = make_session(db, tenant)
    p = add_product(db, s)
    fan = make_member(db, tenant)
    session_res, product_res = reserve(db, fan, s), reserve(db, fan, s, p)

    started = live.transition(db, tenant_id=tenant.id, session_id=s.id, action="start")
    db.refresh(session_res)
    db.refresh(product_res)

    assert started.marked == 1
    assert (session_res.remind_state, product_res.remind_state) == (DUE, WAITING)


def test_due_hooks_run_after_commit_only_when_something_was_marked(db, tenant, monkeypatch):
    calls: list[tuple[int, str, int]] = []
    monkeypatch.setattr(live, "_due_hooks", [])
    live.on_reminders_due(lambda *a: calls.append(a))
    s = make_session(db, tenant)
    p, empty = add_product(db, s), add_product(db, s)
    reserve(db, make_member(db, tenant), s, p)

    live.mark_on_sale(db, tenant_id=tenant.id, product_id=p.id)
    live.mark_on_sale(db, tenant_id=tenant.id, product_id=empty.id)
    assert calls == []  # not committed yet
    db.commit()  # the test's outer transaction still rolls everything back

    assert calls == [(tenant.id, "product", p.id)]


def test_reserving_twice_returns_one_reservation_and_reactivates_a_cancelled_one(db, tenant):
    s = make_session(db, tenant)
    p = add_product(db, s)
    fan = make_member(db, tenant)

    first = reserve(db, fan, s, p)
    live.cancel_reservation(db, tenant_id=tenant.id, member_id=fan.id, reservation_id=first.id)
    again = reserve(db, fan, s, p)

    assert again.id == first.id
    assert again.cancelled_at is None
    assert len(live.my_reservations(db, tenant_id=tenant.id, member_id=fan.id)) == 1


def test_reservations_close_once_live_or_over(db, tenant):
    s = make_session(db, tenant)
    p, q = add_product(db, s), add_product(db, s)
    fan = make_member(db, tenant)
    live.mark_on_sale(db, tenant_id=tenant.id, product_id=p.id)
    live.transition(db, tenant_id=tenant.id, session_id=s.id, action="start")

    with pytest.raises(ReservationClosed):
        reserve(db, fan, s, p)  # already on sale
    with pytest.raises(ReservationClosed):
        reserve(db, fan, s)  # session already live
    assert reserve(db, fan, s, q).remind_state == WAITING  # still planned: fine


def test_a_product_of_another_session_cannot_be_reserved_through_this_one(db, tenant):
    s, t = make_session(db, tenant), make_session(db, tenant)
    p = add_product(db, t)

    with pytest.raises(ProductNotFound):
        live.reserve(
            db,
            tenant_id=tenant.id,
            member_id=make_member(db, tenant).id,
            session_id=s.id,
            product_id=p.id,
        )


def test_another_tenants_ids_are_not_found(db, tenant):
    other = make_tenant(db)
    s = make_session(db, other)
    p = add_product(db, s)

    with pytest.raises(SessionNotFound):
        live.get_session(db, tenant_id=tenant.id, session_id=s.id)
    with pytest.raises(ProductNotFound):
        live.mark_on_sale(db, tenant_id=tenant.id, product_id=p.id)


def test_click_link_counts_and_redirects(db, tenant, clock):
    s = make_session(db, tenant, room_url="https://live.example/room")
    url_product = add_product(db, s, link="https://item.example/1")
    pw_product = add_product(db, s, link=PASSWORD_TEXT)
    fan = make_member(db, tenant)
    r1, r2, r3 = (
        reserve(db, fan, s, url_product),
        reserve(db, fan, s, pw_product),
        reserve(db, fan, s),
    )

    first = live.follow_link(db, click_token=r1.click_token)
    clicked_at = clock.now
    clock.advance(minutes=1)
    live.follow_link(db, click_token=r1.click_token)
    db.refresh(r1)

    assert first == "https://item.example/1"
    assert live.click_path(r1) == f"/r/{r1.click_token}"
    assert live.follow_link(db, click_token=r2.click_token) == f"/m/{tenant.slug}/live/{s.id}"
    assert live.follow_link(db, click_token=r3.click_token) == "https://live.example/room"
    assert (r1.clicks, r1.clicked_at) == (2, clicked_at)
    with pytest.raises(LinkNotFound):
        live.follow_link(db, click_token="nope")


def test_funnel_counts_reserved_reminded_and_clicked(db, tenant):
    s = make_session(db, tenant)
    p = add_product(db, s)
    fans = [make_member(db, tenant) for _ in range(4)]
    rows = [reserve(db, f, s, p) for f in fans]
    reserve(db, fans[0], s)
    live.mark_on_sale(db, tenant_id=tenant.id, product_id=p.id)
    live.follow_link(db, click_token=rows[0].click_token)

    funnel = {(r.kind, r.id): r for r in live.funnel(db, tenant_id=tenant.id, session_id=s.id)}

    prod = funnel[("product", p.id)]
    sess = funnel[("session", s.id)]
    assert (prod.reserved, prod.reminded, prod.delivered, prod.clicked) == (4, 4, 0, 1)
    assert prod.purchased == 0  # nobody claimed an order of the session yet
    assert (sess.reserved, sess.reminded) == (1, 0)


def test_preview_card_lists_the_lineup_in_tenant_time(db, tenant):
    start = dt.datetime(2026, 12, 6, 12, 0, tzinfo=UTC)  # 20:00 in Shanghai
    s = make_session(db, tenant, starts_at=start, theme="零食节", taobao_password=PASSWORD_TEXT)
    add_product(
        db,
        s,
        title="每日坚果",
        brand="三只松鼠",
        live_price_fen=5990,
        list_price_fen=9900,
        slot_at=start + dt.timedelta(minutes=30),
    )
    add_product(db, s, title="辣条", live_price_fen=990, list_price_fen=1500)

    card = live.preview_card(db, tenant_id=tenant.id, session_id=s.id)

    # zh_CN is the default language: the card reads as the SOP will send it.
    assert card.text.startswith(f"【{tenant.name}】12月6日 20:00 淘宝直播：零食节\n")
    assert "零食节" in card.text
    assert "1. 三只松鼠 每日坚果" in card.text
    assert "直播价 ¥59.9（日常价 ¥99） · 约 20:30 开抢" in card.text
    assert "2. 辣条" in card.text
    assert PASSWORD_TEXT in card.text
    assert [i["title"] for i in card.layout["items"]] == ["每日坚果", "辣条"]
    assert card.layout["items"][0]["slot"] == "20:30"


def test_shopping_guide_exports_csv_and_xlsx_with_exact_prices(db, tenant):
    start = dt.datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    s = make_session(db, tenant, starts_at=start)
    add_product(
        db,
        s,
        title="每日坚果",
        brand="三只松鼠",
        live_price_fen=5990,
        list_price_fen=9900,
        slot_at=start,
        delivery_note="48小时内发货",
        link=PASSWORD_TEXT,
    )

    text = live.guide_csv(db, tenant_id=tenant.id, session_id=s.id).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    wb = load_workbook(io.BytesIO(live.guide_xlsx(db, tenant_id=tenant.id, session_id=s.id)))
    sheet = [list(r) for r in wb.active.iter_rows(values_only=True)]

    assert len(rows) == 2
    assert rows[1][:6] == ["1", "三只松鼠", "每日坚果", "59.90", "99.00", "2026-12-06 20:00"]
    assert rows[1][7:] == [PASSWORD_TEXT, "48小时内发货"]
    assert sheet[1][2] == "每日坚果"
    assert float(sheet[1][3]) == 59.9
    assert sheet[1][5] == "2026-12-06 20:00"


def test_share_link_is_unguessable_stable_and_revocable(db, tenant):
    s = make_session(db, tenant)

    token = live.share_guide(db, tenant_id=tenant.id, session_id=s.id).share_token
    same = live.share_guide(db, tenant_id=tenant.id, session_id=s.id).share_token
    found = live.shared_guide(db, slug=tenant.slug, share_token=token)
    live.revoke_guide(db, tenant_id=tenant.id, session_id=s.id)

    assert token == same
    assert len(token) >= 32
    assert found.session.id == s.id
    with pytest.raises(ShareNotFound):
        live.shared_guide(db, slug=tenant.slug, share_token=token)
    with pytest.raises(ShareNotFound):
        live.shared_guide(db, slug=tenant.slug, share_token="")


def test_share_token_of_one_tenant_does_not_open_under_another_slug(db, tenant):
    other = make_tenant(db)
    s = make_session(db, tenant)
    token = live.share_guide(db, tenant_id=tenant.id, session_id=s.id).share_token

    with pytest.raises(ShareNotFound):
        live.shared_guide(db, slug=other.slug, share_token=token)

"""The demo tenant: an anchor's team with a few fans and some points history."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from siyu.core import clock
from siyu.ledger import service as ledger
from siyu.members import service as members
from siyu.tenants import service as tenants

SLUG = "demo"
OPERATORS = [
    ("admin", "siyu-demo-2026", "owner"),
    ("yunying", "siyu-demo-2026", "operator"),
    ("kefu", "siyu-demo-2026", "service"),
    ("fenxi", "siyu-demo-2026", "analyst"),
]
FANS = [
    ("demo-openid-xiaoyu", "小鱼", ["上海-干皮", "双11"], "taobao", "xiaoyu_tb", 3280),
    ("demo-openid-mimi", "咪咪酱", ["杭州-油皮"], "douyin", "mimi_dy", 860),
    ("demo-openid-lan", "阿兰", ["北京-混合皮", "铁粉团"], "taobao", "alan1999", 12600),
    ("demo-openid-tao", "桃桃", [], None, None, 0),
]


def seed(db: Session) -> dict[str, Any]:
    """Create the demo tenant once; rerunning changes nothing."""
    tenant = tenants.find_tenant(db, slug=SLUG)
    if tenant is None:
        tenant = tenants.create_tenant(db, slug=SLUG, name="所有女生 · 演示直播间")
        for username, password, role in OPERATORS:
            tenants.create_operator(
                db, tenant_id=tenant.id, username=username, password=password, role=role
            )
    for openid, nick, tags, platform, account, points in FANS:
        member = members.find_by_openid(db, tenant_id=tenant.id, openid=openid)
        if member is None:
            member = members.create_member(
                db,
                tenant_id=tenant.id,
                openid=openid,
                nickname=nick,
                tags=tags,
                source_channel="live-qr",
            )
            if platform and account:
                members.bind_account(
                    db, tenant_id=tenant.id, member_id=member.id, platform=platform, account=account
                )
        if points:
            ledger.grant(
                db,
                tenant_id=tenant.id,
                member_id=member.id,
                points=points,
                reason="purchase",
                memo="双11直播间订单",
                reference="demo",
                idempotency_key=f"demo:grant:{openid}",
                actor=ledger.CLI,
            )
            ledger.spend(
                db,
                tenant_id=tenant.id,
                member_id=member.id,
                points=points // 4,
                reason="redeem",
                memo="积分商城兑换",
                idempotency_key=f"demo:spend:{openid}",
                actor=ledger.CLI,
            )
    # A lot that expires soon, so the member center shows its "points expire on …" notice.
    first = members.find_by_openid(db, tenant_id=tenant.id, openid=FANS[0][0])
    assert first is not None
    ledger.grant(
        db,
        tenant_id=tenant.id,
        member_id=first.id,
        points=120,
        reason="checkin",
        memo="连续签到7天奖励",
        idempotency_key=f"demo:checkin:{FANS[0][0]}",
        actor=ledger.JOB,
        expires_at=clock.now() + dt.timedelta(days=20),
    )
    seed_orders(db, tenant.id)
    seed_live(db, tenant_id=tenant.id, member_id=first.id)
    seed_mall(db, tenant_id=tenant.id, member_id=first.id)
    seed_messaging(db, tenant_id=tenant.id)
    return {
        "tenant": SLUG,
        "tenant_id": tenant.id,
        "operator": OPERATORS[0][0],
        "password": OPERATORS[0][1],
        "member_openid": FANS[0][0],
    }


def seed_orders(db: Session, tenant_id: int) -> None:
    """Live-room orders of session 1 and the fans' claims: credited, pending, in review."""
    from sqlalchemy import select

    from siyu.orders import models as om
    from siyu.orders import service as orders
    from siyu.orders.readers import Record

    if db.scalar(select(om.Order.id).where(om.Order.tenant_id == tenant_id).limit(1)):
        return
    paid = clock.now() - dt.timedelta(days=2)
    rows = [
        ("3901000000000000001", "xiaoyu_tb", 29900, "finished", "【直播专享】精华液 30ml"),
        ("3901000000000000002", "alan1999", 15800, "shipped", "气垫粉底 双11加赠"),
        ("3901000000000000003", "someone_tb", 8900, "paid", "洁面乳 2 支装"),
        ("3901000000000000004", "xiaoyu_tb", 4990, "closed", "面膜 5 片装"),
    ]
    imp = orders.create_import(
        db, tenant_id=tenant_id, filename="ExportOrderList-demo.csv", fmt="taobao", session_id=1
    )
    records: list[Any] = [
        Record(n + 2, "taobao", no, buyer, fen, 0, status, paid, paid, title, 1)
        for n, (no, buyer, fen, status, title) in enumerate(rows)
    ]
    result = orders.import_batch(db, tenant_id=tenant_id, import_id=imp.id, items=records)
    orders.count_batch(db, imp, result, position=0)
    orders.finish_import(db, imp, status="done")
    xiaoyu = members.find_by_openid(db, tenant_id=tenant_id, openid=FANS[0][0])
    alan = members.find_by_openid(db, tenant_id=tenant_id, openid=FANS[2][0])
    assert xiaoyu is not None
    assert alan is not None
    for member, no, account in (
        (xiaoyu, rows[0][0], "xiaoyu_tb"),
        (alan, rows[1][0], "alan1999"),
        (xiaoyu, "3901000000000000999", "xiaoyu_tb"),  # not imported yet: pending
    ):
        orders.claim_order(
            db,
            tenant_id=tenant_id,
            member_id=member.id,
            platform="taobao",
            order_no=no,
            account=account,
            ip="demo",
        )


# --- live calendar and check-in (issue 6) -----------------------------------------------------

DEMO_PASSWORD = "【淘宝】https://m.tb.cn/h.demo 复制￥MDGGba1MLQh￥打开手机淘宝"
LINEUP = [
    (
        "三只松鼠",
        "每日坚果 30包",
        5990,
        9900,
        30,
        "https://item.taobao.com/item.htm?id=1",
        "48小时内发货",
    ),
    ("卫龙", "大面筋辣条 礼盒", 2990, 4590, 50, DEMO_PASSWORD, "72小时内发货"),
    (
        "良品铺子",
        "猪肉脯 500g",
        3990,
        6800,
        70,
        "https://item.taobao.com/item.htm?id=3",
        "48小时内发货",
    ),
    ("百草味", "冻干草莓脆", 1990, 2990, 90, DEMO_PASSWORD, "7天内发货"),
]


def seed_live(db: Session, *, tenant_id: int, member_id: int) -> None:
    """Tonight's 零食节 with a lineup and a shared guide, two more sessions on the calendar,
    a fan's reservations and today's check-in. Keyed: rerunning changes nothing."""
    from zoneinfo import ZoneInfo

    from siyu.checkin import service as checkin
    from siyu.live import service as live
    from siyu.live.errors import ReservationClosed
    from siyu.tenants.models import Tenant

    tenant = db.get(Tenant, tenant_id)
    assert tenant is not None
    today = clock.local_date(clock.now(), tenant.timezone)
    zone = ZoneInfo(tenant.timezone)

    def at(days: int, hour: int) -> dt.datetime:
        day = today + dt.timedelta(days=days)
        return dt.datetime(day.year, day.month, day.day, hour, tzinfo=zone).astimezone(clock.UTC)

    tonight = live.create_session(
        db,
        tenant_id=tenant_id,
        platform="taobao",
        theme="零食节",
        starts_at=at(0, 20),
        ends_at=at(0, 23),
        room_url="https://m.tb.cn/h.demo-room",
        taobao_password=DEMO_PASSWORD,
        idempotency_key="demo:live:tonight",
    )
    for n, (brand, title, live_fen, list_fen, minutes, link, delivery) in enumerate(LINEUP):
        live.add_product(
            db,
            tenant_id=tenant_id,
            session_id=tonight.id,
            brand=brand,
            title=title,
            live_price_fen=live_fen,
            list_price_fen=list_fen,
            slot_at=tonight.starts_at + dt.timedelta(minutes=minutes),
            link=link,
            delivery_note=delivery,
            stock_note="限量 5000 件",
            idempotency_key=f"demo:live:tonight:{n}",
        )
    live.share_guide(db, tenant_id=tenant_id, session_id=tonight.id)
    for days, theme in ((2, "美妆节"), (5, "家居好物")):
        live.create_session(
            db,
            tenant_id=tenant_id,
            platform="taobao",
            theme=theme,
            starts_at=at(days, 20),
            ends_at=at(days, 23),
            idempotency_key=f"demo:live:{theme}",
        )
    products = live.lineup(db, tenant_id=tenant_id, session_id=tonight.id)
    for product in (None, products[0]):
        # A rerun after the broadcast started has nothing left to reserve.
        with contextlib.suppress(ReservationClosed):
            live.reserve(
                db,
                tenant_id=tenant_id,
                member_id=member_id,
                session_id=tonight.id,
                product_id=product.id if product else None,
            )
    checkin.check_in(db, tenant_id=tenant_id, member_id=member_id)


def seed_mall(db: Session, *, tenant_id: int, member_id: int) -> None:
    """Mall items (goods, coupons, a welfare qualification) and an open trial (idempotent)."""
    from siyu.mall import service as mall
    from siyu.trials import service as trials

    if mall.list_items(db, tenant_id=tenant_id):
        return
    mall.create_item(
        db,
        tenant_id=tenant_id,
        title="直播间定制保温杯",
        description="主播同款，限量 50 个。",
        category="周边",
        points_price=300,
        stock=50,
        per_member_total=1,
    )
    coupon = mall.create_item(
        db, tenant_id=tenant_id, kind="coupon", title="满 199 减 20 店铺券", points_price=80
    )
    mall.upload_codes(
        db, tenant_id=tenant_id, item_id=coupon.id, codes=[f"DEMO-20-{i:04d}" for i in range(30)]
    )
    mall.create_item(
        db,
        tenant_id=tenant_id,
        kind="gift",
        title="下场直播福利购资格",
        points_price=150,
        stock=20,
        per_member_daily=1,
    )
    if not mall.list_addresses(db, tenant_id=tenant_id, member_id=member_id):
        mall.add_address(
            db,
            tenant_id=tenant_id,
            member_id=member_id,
            name="小鱼",
            phone="13800138000",
            region="浙江省 杭州市 西湖区",
            detail="文三路 1 号",
        )
    now = clock.now()
    trials.create_trial(
        db,
        tenant_id=tenant_id,
        title="新品修护精华 30ml 试用",
        description="20 个名额，试用 7 天后提交使用报告可得 100 积分。",
        slots=20,
        apply_from=now,
        apply_until=now + dt.timedelta(days=3),
        report_deadline=now + dt.timedelta(days=17),
        report_reward=100,
    )


def seed_messaging(db: Session, *, tenant_id: int) -> None:
    """Messaging in the demo: the daily SOP rhythm running, two WeCom groups, and a welcome
    message already in every fan's inbox (delivered in this transaction: no worker needed)."""
    from siyu.messaging import schedules
    from siyu.messaging import service as messaging

    schedules.install_defaults(db, tenant_id=tenant_id)
    for s in schedules.list_schedules(db, tenant_id=tenant_id):
        if s.paused and s.key in {sop["key"] for sop in schedules.DEFAULT_SOPS}:
            schedules.set_paused(db, tenant_id=tenant_id, schedule_id=s.id, paused=False)
    messaging.save_group(
        db,
        tenant_id=tenant_id,
        chat_id="wr-demo-beauty",
        name="所有女生·美妆1群",
        owner_userid="yunying",
        tags=["美妆"],
    )
    messaging.save_group(
        db,
        tenant_id=tenant_id,
        chat_id="wr-demo-food",
        name="所有女生·零食群",
        owner_userid="yunying",
        tags=["零食"],
    )
    msg = messaging.send(
        db,
        tenant_id=tenant_id,
        purpose="demo:welcome",
        target=messaging.Target(kind="all_members"),
        title="欢迎加入所有女生会员中心",
        body="{{ member.nickname }}，欢迎你！每天 10:00 签到领积分，19:30 直播间见～",
        channels=["inbox"],
        kind="broadcast",
        created_by="demo",
    )
    while messaging.expand_chunk(db, message_id=msg.id):
        pass
    while messaging.claim_batch(db, message_id=msg.id).claimed:
        pass
    messaging.finish_if_done(db, message_id=msg.id)

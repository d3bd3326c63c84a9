"""The demo tenant: an anchor's team with a few fans and some points history."""

from __future__ import annotations

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
    seed_mall(db, tenant_id=tenant.id, member_id=first.id)
    return {
        "tenant": SLUG,
        "tenant_id": tenant.id,
        "operator": OPERATORS[0][0],
        "password": OPERATORS[0][1],
        "member_openid": FANS[0][0],
    }


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

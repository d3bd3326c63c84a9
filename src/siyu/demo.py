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
    seed_messaging(db, tenant_id=tenant.id)
    return {
        "tenant": SLUG,
        "tenant_id": tenant.id,
        "operator": OPERATORS[0][0],
        "password": OPERATORS[0][1],
        "member_openid": FANS[0][0],
    }


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

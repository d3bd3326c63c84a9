"""Typed, keyword-only factories for tests. They go through the services, like users do."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy.orm import Session

from siyu.ledger import service as ledger
from siyu.ledger.models import JournalEntry
from siyu.live.models import LiveProduct, LiveSession, Reservation
from siyu.members import service as members
from siyu.members.models import Member
from siyu.tenants import service as tenants
from siyu.tenants.models import Operator, Tenant

PASSWORD = "correct-horse-battery"
_seq = itertools.count(1)


def make_tenant(
    db: Session,
    *,
    slug: str | None = None,
    name: str = "测试主播",
    timezone: str = "Asia/Shanghai",
    expiry: dict[str, object] | None = None,
) -> Tenant:
    n = next(_seq)
    return tenants.create_tenant(
        db,
        slug=slug or f"anchor-{n}",
        name=f"{name}{n}",
        timezone=timezone,
        settings={"points_expiry": expiry or {"kind": "never"}},
    )


def make_operator(
    db: Session,
    tenant: Tenant,
    *,
    role: str = "owner",
    username: str | None = None,
    password: str = PASSWORD,
) -> Operator:
    return tenants.create_operator(
        db,
        tenant_id=tenant.id,
        username=username or f"op{next(_seq)}",
        password=password,
        role=role,
    )


def make_member(
    db: Session,
    tenant: Tenant,
    *,
    nickname: str = "小鱼",
    openid: str | None = None,
    tags: list[str] | None = None,
) -> Member:
    return members.create_member(
        db,
        tenant_id=tenant.id,
        openid=openid or f"openid-{next(_seq)}",
        nickname=nickname,
        tags=tags or [],
    )


def grant(
    db: Session, member: Member, points: int, *, key: str | None = None, **kw: object
) -> JournalEntry:
    return ledger.grant(
        db,
        tenant_id=member.tenant_id,
        member_id=member.id,
        points=points,
        reason=str(kw.pop("reason", "purchase")),
        idempotency_key=key or f"test-grant-{next(_seq)}",
        actor=ledger.CLI,
        **kw,
    )  # type: ignore[arg-type]


def spend(db: Session, member: Member, points: int, *, key: str | None = None) -> JournalEntry:
    return ledger.spend(
        db,
        tenant_id=member.tenant_id,
        member_id=member.id,
        points=points,
        reason="redeem",
        idempotency_key=key or f"test-spend-{next(_seq)}",
        actor=ledger.CLI,
    )


def token_headers(db: Session, op: Operator) -> dict[str, str]:
    issued = tenants.issue_token(db, operator=op)
    return {"Authorization": f"Bearer {issued.secret}"}


def member_headers(member: Member) -> dict[str, str]:
    from siyu.core.security import sign_member_token

    token = sign_member_token(tenant_id=member.tenant_id, member_id=member.id)
    return {"Authorization": f"Bearer {token}"}


# --- live (issue 6) ---------------------------------------------------------------------------


def make_session(
    db: Session,
    tenant: Tenant,
    *,
    theme: str = "零食节",
    starts_at: object = None,
    hours: float = 3,
    platform: str = "taobao",
    **kw: object,
) -> LiveSession:
    """A scheduled session; by default tomorrow 20:00 UTC (from the current clock)."""
    import datetime as dt

    from siyu.core import clock
    from siyu.live import service as live

    start = starts_at or (clock.now() + dt.timedelta(days=1)).replace(
        hour=20, minute=0, second=0, microsecond=0
    )
    assert isinstance(start, dt.datetime)
    return live.create_session(
        db,
        tenant_id=tenant.id,
        platform=platform,
        theme=theme,
        starts_at=start,
        ends_at=start + dt.timedelta(hours=hours),
        **kw,  # type: ignore[arg-type]
    )


def add_product(
    db: Session,
    session: LiveSession,
    *,
    title: str = "每日坚果",
    live_price_fen: int = 5990,
    list_price_fen: int = 9900,
    **kw: object,
) -> LiveProduct:
    from siyu.live import service as live

    return live.add_product(
        db,
        tenant_id=session.tenant_id,
        session_id=session.id,
        title=title,
        live_price_fen=live_price_fen,
        list_price_fen=list_price_fen,
        **kw,  # type: ignore[arg-type]
    )


def reserve(
    db: Session, member: Member, session: LiveSession, product: LiveProduct | None = None
) -> Reservation:
    from siyu.live import service as live

    return live.reserve(
        db,
        tenant_id=member.tenant_id,
        member_id=member.id,
        session_id=session.id,
        product_id=product.id if product else None,
    )


# --- mall and trials --------------------------------------------------------------------------


def make_item(db: Session, tenant: Tenant, *, kind: str = "physical", **fields: Any) -> Any:
    from siyu.mall import service as mall

    fields.setdefault("title", "定制保温杯")
    fields.setdefault("points_price", 100)
    if kind != "coupon":
        fields.setdefault("stock", 10)
    return mall.create_item(db, tenant_id=tenant.id, kind=kind, **fields)


def make_address(db: Session, member: Member, **fields: str) -> Any:
    from siyu.mall import service as mall

    values = {
        "name": "王小鱼",
        "phone": "13800138000",
        "region": "浙江省 杭州市",
        "detail": "文三路 1 号",
    }
    values.update(fields)
    return mall.add_address(db, tenant_id=member.tenant_id, member_id=member.id, **values)


def make_trial(db: Session, tenant: Tenant, **fields: Any) -> Any:
    """An open trial: applications from an hour ago for a day, reports due in a week."""
    import datetime as dt

    from siyu.core import clock
    from siyu.trials import service as trials

    now = clock.now()
    values: dict[str, object] = {
        "title": "新品精华试用",
        "slots": 2,
        "apply_from": now - dt.timedelta(hours=1),
        "apply_until": now + dt.timedelta(days=1),
        "report_deadline": now + dt.timedelta(days=8),
    }
    values.update(fields)
    return trials.create_trial(db, tenant_id=tenant.id, **values)


def mall_world(
    db: Session, tenant: Tenant, member: Member, *, marker: str = ""
) -> dict[str, object]:
    """Path values for the route walkers: a listed coupon item with codes, a pending order of a
    physical item, an address, a drawn trial the member won with a submitted report."""
    import datetime as dt

    from sqlalchemy import update

    from siyu.mall import service as mall
    from siyu.trials import models as trial_models
    from siyu.trials import service as trials

    coupon = make_item(db, tenant, kind="coupon", title=f"优惠券{marker}", points_price=10)
    mall.upload_codes(
        db, tenant_id=tenant.id, item_id=coupon.id, codes=[f"C{tenant.id}-{i}" for i in range(8)]
    )
    cup = make_item(db, tenant, title=f"保温杯{marker}", points_price=10)
    address = make_address(db, member, name=f"收件人{marker}"[:40])
    order = mall.redeem(
        db,
        tenant_id=tenant.id,
        member_id=member.id,
        item_id=cup.id,
        address_id=address.id,
        idempotency_key=f"world-{tenant.id}",
    )
    trial = make_trial(db, tenant, title=f"试用{marker}", slots=1)
    trials.apply(
        db,
        tenant_id=tenant.id,
        trial_id=trial.id,
        member_id=member.id,
        address_id=address.id,
    )
    # Close the window (as if a day had passed), then draw: the member wins the one slot.
    db.execute(
        update(trial_models.Trial)
        .where(trial_models.Trial.id == trial.id)
        .values(apply_until=trial.apply_from + dt.timedelta(minutes=1))
    )
    db.expire_all()
    trials.draw(db, tenant_id=tenant.id, trial_id=trial.id)
    report = trials.submit_report(
        db,
        tenant_id=tenant.id,
        trial_id=trial.id,
        member_id=member.id,
        text=f"很好用{marker}",
        images=[],
    )
    return {
        "item_id": coupon.id,
        "order_id": order.id,
        "address_id": address.id,
        "trial_id": trial.id,
        "report_id": report.id,
        "code": trial.public_code,
    }

"""Typed, keyword-only factories for tests. They go through the services, like users do."""

from __future__ import annotations

import itertools

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

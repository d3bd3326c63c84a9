"""Members, their platform accounts, tags and tiers."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from siyu.core import clock
from siyu.core.errors import InvalidField
from siyu.core.i18n import gettext as _
from siyu.ledger import models as lm
from siyu.ledger import service as ledger
from siyu.members.errors import (
    InvalidTiers,
    MemberExists,
    MemberNotFound,
    PlatformAccountTaken,
    PlatformAlreadyBound,
    UnknownPlatform,
)
from siyu.members.models import PLATFORMS, Member, MemberTag, PlatformAccount, Tier

DEFAULT_TIERS: list[tuple[str, int]] = [
    ("粉丝", 0),
    ("铁粉", 1000),
    ("挚爱粉", 5000),
    ("钻石粉", 20000),
]
_TAG = re.compile(r"^[^\s,][^,]{0,39}$")


def _clean_tags(tags: list[str]) -> list[str]:
    out = sorted({t.strip() for t in tags if t and t.strip()})
    for t in out:
        if not _TAG.match(t):
            raise InvalidField(field="tags", problem=_("not a valid tag: {tag}").format(tag=t))
    return out


def create_member(
    db: Session,
    *,
    tenant_id: int,
    openid: str,
    unionid: str | None = None,
    nickname: str = "",
    avatar_url: str = "",
    phone: str | None = None,
    tags: list[str] | None = None,
    source_channel: str = "",
) -> Member:
    """Create a member and open their wallet. Raises MemberExists for a known openid."""
    openid = (openid or "").strip()
    if not openid or len(openid) > 64:
        raise InvalidField(field="openid", problem=_("1–64 characters"))
    member = Member(
        tenant_id=tenant_id,
        openid=openid,
        unionid=unionid or None,
        nickname=nickname[:64],
        avatar_url=avatar_url[:500],
        phone=phone or None,
        source_channel=source_channel[:40],
        joined_at=clock.now(),
    )
    try:
        with db.begin_nested():
            db.add(member)
    except IntegrityError:
        existing = find_by_openid(db, tenant_id=tenant_id, openid=openid)
        raise MemberExists(openid=openid, member_id=existing.id if existing else None) from None
    member.tag_rows = [
        MemberTag(tenant_id=tenant_id, member_id=member.id, tag=t) for t in _clean_tags(tags or [])
    ]
    ledger.open_wallet(db, tenant_id=tenant_id, member_id=member.id)
    db.flush()
    return member


def login_openid(
    db: Session,
    *,
    tenant_id: int,
    openid: str,
    unionid: str | None = None,
    source_channel: str = "",
) -> Member:
    """The member for this openid, created on first login (a repeat or a race is harmless)."""
    member = find_by_openid(db, tenant_id=tenant_id, openid=openid)
    if member is None:
        try:
            member = create_member(
                db,
                tenant_id=tenant_id,
                openid=openid,
                unionid=unionid,
                source_channel=source_channel,
            )
        except MemberExists:
            member = find_by_openid(db, tenant_id=tenant_id, openid=openid)
            assert member is not None
    elif unionid and member.unionid != unionid:
        member.unionid = unionid
        db.flush()
    return member


def find_by_openid(db: Session, *, tenant_id: int, openid: str) -> Member | None:
    return db.scalar(select(Member).where(Member.tenant_id == tenant_id, Member.openid == openid))


def get_member(db: Session, *, tenant_id: int, member_id: int) -> Member:
    member = db.scalar(select(Member).where(Member.id == member_id, Member.tenant_id == tenant_id))
    if member is None:
        raise MemberNotFound(member_id=member_id)
    return member


def update_member(
    db: Session,
    *,
    tenant_id: int,
    member_id: int,
    nickname: str | None = None,
    avatar_url: str | None = None,
    phone: str | None = None,
    tags: list[str] | None = None,
    source_channel: str | None = None,
) -> Member:
    member = get_member(db, tenant_id=tenant_id, member_id=member_id)
    if nickname is not None:
        member.nickname = nickname[:64]
    if avatar_url is not None:
        member.avatar_url = avatar_url[:500]
    if phone is not None:
        member.phone = phone or None
    if source_channel is not None:
        member.source_channel = source_channel[:40]
    if tags is not None:
        wanted = _clean_tags(tags)
        keep = [row for row in member.tag_rows if row.tag in wanted]
        have = {row.tag for row in keep}
        member.tag_rows = keep + [
            MemberTag(tenant_id=tenant_id, member_id=member.id, tag=t)
            for t in wanted
            if t not in have
        ]
    db.flush()
    return member


def bind_account(
    db: Session, *, tenant_id: int, member_id: int, platform: str, account: str
) -> PlatformAccount:
    """Bind a platform account. Idempotent for the same pair; refuses a taken account."""
    if platform not in PLATFORMS:
        raise UnknownPlatform(allowed=", ".join(PLATFORMS))
    account = (account or "").strip()
    if not account or len(account) > 64:
        raise InvalidField(field="account", problem=_("1–64 characters"))
    member = get_member(db, tenant_id=tenant_id, member_id=member_id)
    owner = db.scalar(
        select(PlatformAccount).where(
            PlatformAccount.tenant_id == tenant_id,
            PlatformAccount.platform == platform,
            PlatformAccount.account == account,
        )
    )
    if owner is not None:
        if owner.member_id == member.id:
            return owner
        raise PlatformAccountTaken(platform=platform, account=account)
    mine = next((a for a in member.accounts if a.platform == platform), None)
    if mine is not None:
        raise PlatformAlreadyBound(platform=platform, account=mine.account)
    row = PlatformAccount(
        tenant_id=tenant_id,
        member_id=member.id,
        platform=platform,
        account=account,
        bound_at=clock.now(),
    )
    try:
        with db.begin_nested():
            db.add(row)
    except IntegrityError:  # lost a race for the same account
        raise PlatformAccountTaken(platform=platform, account=account) from None
    db.refresh(member, ["accounts"])
    return row


def unbind_account(db: Session, *, tenant_id: int, member_id: int, platform: str) -> None:
    get_member(db, tenant_id=tenant_id, member_id=member_id)
    db.execute(
        delete(PlatformAccount).where(
            PlatformAccount.tenant_id == tenant_id,
            PlatformAccount.member_id == member_id,
            PlatformAccount.platform == platform,
        )
    )
    db.flush()


# --- search -----------------------------------------------------------------------------------


@dataclass
class Page:
    items: list[Member]
    next_cursor: str | None
    total: int


def _encode_cursor(member_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"id": member_id}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return int(json.loads(raw)["id"])
    except (ValueError, KeyError, TypeError):
        raise InvalidField(field="cursor", problem=_("not a cursor from this list")) from None


def search_members(
    db: Session,
    *,
    tenant_id: int,
    q: str = "",
    tag: str | None = None,
    tier_id: int | None = None,
    source_channel: str | None = None,
    cursor: str | None = None,
    limit: int = 20,
) -> Page:
    """Members newest first, filtered; ``q`` matches nickname, openid, phone or platform
    account. Keyset-paginated by id so pages stay stable while members join."""
    limit = max(1, min(limit, 100))
    cond = [Member.tenant_id == tenant_id]
    if q := (q or "").strip():
        # Taobao nicks contain "_": escape LIKE wildcards instead of dropping them.
        like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        cond.append(
            or_(
                Member.nickname.ilike(like, escape="\\"),
                Member.openid == q,
                Member.phone == q,
                # At most 9 digits: a phone number would overflow PostgreSQL's integer id.
                Member.id == (int(q) if q.isdigit() and len(q) <= 9 else -1),
                Member.id.in_(
                    select(PlatformAccount.member_id).where(
                        PlatformAccount.tenant_id == tenant_id,
                        PlatformAccount.account.ilike(like, escape="\\"),
                    )
                ),
            )
        )
    if tag:
        cond.append(
            Member.id.in_(
                select(MemberTag.member_id).where(
                    MemberTag.tenant_id == tenant_id, MemberTag.tag == tag
                )
            )
        )
    if source_channel:
        cond.append(Member.source_channel == source_channel)
    if tier_id is not None:
        lo, hi = _tier_range(db, tenant_id=tenant_id, tier_id=tier_id)
        growth = select(lm.Account.member_id).where(
            lm.Account.tenant_id == tenant_id, lm.Account.growth >= lo
        )
        if hi is not None:
            growth = growth.where(lm.Account.growth < hi)
        cond.append(Member.id.in_(growth))
    total = db.scalar(select(func.count()).select_from(Member).where(and_(*cond))) or 0
    if cursor:
        cond.append(Member.id < _decode_cursor(cursor))
    rows = list(
        db.scalars(select(Member).where(and_(*cond)).order_by(Member.id.desc()).limit(limit + 1))
    )
    nxt = _encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return Page(items=rows[:limit], next_cursor=nxt, total=int(total))


def all_tags(db: Session, *, tenant_id: int) -> list[tuple[str, int]]:
    return [
        (t, int(n))
        for t, n in db.execute(
            select(MemberTag.tag, func.count())
            .where(MemberTag.tenant_id == tenant_id)
            .group_by(MemberTag.tag)
            .order_by(func.count().desc(), MemberTag.tag)
            .limit(200)
        )
    ]


# --- tiers ------------------------------------------------------------------------------------


@dataclass
class TierProgress:
    growth: int
    tier: Tier
    next_tier: Tier | None
    to_next: int  # growth still needed for the next tier (0 at the top)
    percent: int  # 0–100 progress from this tier to the next


def list_tiers(db: Session, *, tenant_id: int) -> list[Tier]:
    return list(
        db.scalars(select(Tier).where(Tier.tenant_id == tenant_id).order_by(Tier.min_growth))
    )


def set_tiers(db: Session, *, tenant_id: int, tiers: list[tuple[str, int]]) -> list[Tier]:
    """Replace the tenant's tiers. The lowest starts at 0; names and thresholds distinct."""
    names = [n.strip() for n, _ in tiers]
    mins = [g for _, g in tiers]
    if (
        not tiers
        or 0 not in mins
        or len(set(mins)) != len(mins)
        or len(set(names)) != len(names)
        or any(not n or len(n) > 40 for n in names)
        or any(g < 0 for g in mins)
    ):
        raise InvalidTiers()
    db.execute(delete(Tier).where(Tier.tenant_id == tenant_id))
    rows = [
        Tier(tenant_id=tenant_id, name=n, min_growth=g)
        for n, g in sorted(zip(names, mins, strict=True), key=lambda t: t[1])
    ]
    db.add_all(rows)
    db.flush()
    return rows


def _tier_range(db: Session, *, tenant_id: int, tier_id: int) -> tuple[int, int | None]:
    tiers = list_tiers(db, tenant_id=tenant_id)
    for i, t in enumerate(tiers):
        if t.id == tier_id:
            return t.min_growth, tiers[i + 1].min_growth if i + 1 < len(tiers) else None
    raise InvalidField(field="tier_id", problem=_("no tier {tier_id}").format(tier_id=tier_id))


def tier_for(tiers: list[Tier], growth: int) -> TierProgress:
    current = tiers[0]
    nxt: Tier | None = None
    for i, t in enumerate(tiers):
        if growth >= t.min_growth:
            current = t
            nxt = tiers[i + 1] if i + 1 < len(tiers) else None
    if nxt is None:
        return TierProgress(growth, current, None, 0, 100)
    span = nxt.min_growth - current.min_growth
    done = growth - current.min_growth
    return TierProgress(growth, current, nxt, nxt.min_growth - growth, done * 100 // span)


def tier_progress(db: Session, *, tenant_id: int, member_id: int) -> TierProgress:
    get_member(db, tenant_id=tenant_id, member_id=member_id)
    _, growth = ledger.wallets_of(db, tenant_id=tenant_id, member_ids=[member_id]).get(
        member_id, (0, 0)
    )
    return tier_for(list_tiers(db, tenant_id=tenant_id), growth)


# --- WeChat login -----------------------------------------------------------------------------


def wechat_login(
    db: Session,
    *,
    tenant_id: int,
    code: str,
    source_channel: str = "",
) -> Member:
    """Resolve a mini-program login code through WeChat and sign the member in."""
    from siyu.core.settings import get_settings
    from siyu.members.errors import WechatNotConfigured
    from siyu.members.wechat import MiniProgramClient
    from siyu.tenants.models import Tenant

    tenant = db.get(Tenant, tenant_id)
    assert tenant is not None
    creds = tenant.settings.get("wechat") or {}
    if not creds.get("appid") or not creds.get("secret"):
        raise WechatNotConfigured()
    client = MiniProgramClient(
        appid=creds["appid"], secret=creds["secret"], base_url=get_settings().wechat_api_base
    )
    try:
        ident = client.code_to_session(code)
    finally:
        client.close()
    return login_openid(
        db,
        tenant_id=tenant_id,
        openid=ident.openid,
        unionid=ident.unionid,
        source_channel=source_channel,
    )

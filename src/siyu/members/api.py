from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from siyu.core.errors import Forbidden, NotFound
from siyu.core.security import sign_member_token
from siyu.core.settings import get_settings
from siyu.core.web import DbSession, TxRoute, api_member, problems, requires
from siyu.ledger import service as ledger
from siyu.members import service
from siyu.members.errors import (
    InvalidTiers,
    MemberExists,
    MemberNotFound,
    PlatformAccountTaken,
    PlatformAlreadyBound,
    UnknownPlatform,
    WechatLoginFailed,
    WechatNotConfigured,
    WechatUnavailable,
)
from siyu.members.models import Member
from siyu.members.schemas import (
    AccountBind,
    DevLogin,
    MemberCreate,
    MemberDetail,
    MemberPage,
    MemberRead,
    MemberToken,
    MemberUpdate,
    PlatformAccountRead,
    TierIn,
    TierProgressRead,
    TierRead,
    WechatLogin,
)
from siyu.tenants import service as tenants
from siyu.tenants.errors import TenantNotFound
from siyu.tenants.models import Operator

router = APIRouter(prefix="/api/v1", route_class=TxRoute, tags=["members"])
CurrentMember = Annotated[Member, Depends(api_member)]


def detail(db: Session, member: Member) -> MemberDetail:
    progress = service.tier_progress(db, tenant_id=member.tenant_id, member_id=member.id)
    bal = ledger.get_balance(db, tenant_id=member.tenant_id, member_id=member.id)
    return MemberDetail(
        **MemberRead.model_validate(member).model_dump(),
        balance=bal.balance,
        tier=TierProgressRead.model_validate(progress, from_attributes=True),
    )


@router.get("/members", responses=problems(Forbidden))
def search_members(
    db: DbSession,
    op: Annotated[Operator, requires("members.read")],
    q: Annotated[
        str, Query(max_length=64, description="nickname, openid, phone, id or platform account")
    ] = "",
    tag: Annotated[str | None, Query(max_length=40)] = None,
    tier_id: int | None = None,
    source_channel: Annotated[str | None, Query(max_length=40)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> MemberPage:
    page = service.search_members(
        db,
        tenant_id=op.tenant_id,
        q=q,
        tag=tag,
        tier_id=tier_id,
        source_channel=source_channel,
        cursor=cursor,
        limit=limit,
    )
    return MemberPage(
        items=[MemberRead.model_validate(m) for m in page.items],
        next_cursor=page.next_cursor,
        total=page.total,
    )


@router.post("/members", status_code=201, responses=problems(Forbidden, MemberExists))
def create_member(
    body: MemberCreate, db: DbSession, op: Annotated[Operator, requires("members.write")]
) -> MemberDetail:
    member = service.create_member(db, tenant_id=op.tenant_id, **body.model_dump())
    return detail(db, member)


@router.get("/members/{member_id}", responses=problems(Forbidden, MemberNotFound))
def read_member(
    member_id: int, db: DbSession, op: Annotated[Operator, requires("members.read")]
) -> MemberDetail:
    return detail(db, service.get_member(db, tenant_id=op.tenant_id, member_id=member_id))


@router.patch("/members/{member_id}", responses=problems(Forbidden, MemberNotFound))
def update_member(
    member_id: int,
    body: MemberUpdate,
    db: DbSession,
    op: Annotated[Operator, requires("members.write")],
) -> MemberDetail:
    member = service.update_member(
        db, tenant_id=op.tenant_id, member_id=member_id, **body.model_dump(exclude_unset=True)
    )
    return detail(db, member)


@router.post(
    "/members/{member_id}/accounts",
    status_code=201,
    responses=problems(
        Forbidden, MemberNotFound, UnknownPlatform, PlatformAccountTaken, PlatformAlreadyBound
    ),
)
def bind_account(
    member_id: int,
    body: AccountBind,
    db: DbSession,
    op: Annotated[Operator, requires("members.write")],
) -> PlatformAccountRead:
    row = service.bind_account(
        db,
        tenant_id=op.tenant_id,
        member_id=member_id,
        platform=body.platform,
        account=body.account,
    )
    return PlatformAccountRead.model_validate(row)


@router.delete(
    "/members/{member_id}/accounts/{platform}",
    status_code=204,
    responses=problems(Forbidden, MemberNotFound),
)
def unbind_account(
    member_id: int, platform: str, db: DbSession, op: Annotated[Operator, requires("members.write")]
) -> None:
    service.unbind_account(db, tenant_id=op.tenant_id, member_id=member_id, platform=platform)


@router.get("/tiers", responses=problems(Forbidden))
def list_tiers(db: DbSession, op: Annotated[Operator, requires("members.read")]) -> list[TierRead]:
    return [TierRead.model_validate(t) for t in service.list_tiers(db, tenant_id=op.tenant_id)]


@router.put("/tiers", responses=problems(Forbidden, InvalidTiers))
def set_tiers(
    body: list[TierIn], db: DbSession, op: Annotated[Operator, requires("tenant.manage")]
) -> list[TierRead]:
    rows = service.set_tiers(
        db, tenant_id=op.tenant_id, tiers=[(t.name, t.min_growth) for t in body]
    )
    return [TierRead.model_validate(t) for t in rows]


# --- the member's own API (mini program / H5) -------------------------------------------------


def _token(member: Member) -> MemberToken:
    return MemberToken(
        token=sign_member_token(tenant_id=member.tenant_id, member_id=member.id),
        member=MemberRead.model_validate(member),
    )


@router.post(
    "/m/{slug}/login",
    tags=["member"],
    responses=problems(
        TenantNotFound, WechatLoginFailed, WechatUnavailable, WechatNotConfigured, auth=False
    ),
)
def wechat_login(slug: str, body: WechatLogin, db: DbSession) -> MemberToken:
    """Mini-program login: send the ``wx.login()`` code, get a member token (30 days)."""
    tenant = tenants.get_tenant(db, slug=slug)
    return _token(service.wechat_login(db, tenant_id=tenant.id, code=body.code))


@router.post(
    "/m/{slug}/dev-login", tags=["member"], responses=problems(NotFound, TenantNotFound, auth=False)
)
def dev_login(slug: str, body: DevLogin, db: DbSession) -> MemberToken:
    """Development only (``SIYU_DEV_LOGIN``): sign in as any openid."""
    if not get_settings().dev_login:
        raise NotFound(resource="dev login")
    tenant = tenants.get_tenant(db, slug=slug)
    return _token(service.login_openid(db, tenant_id=tenant.id, openid=body.openid))


@router.get("/me", tags=["member"], responses=problems())
def me(db: DbSession, member: CurrentMember) -> MemberDetail:
    return detail(db, member)

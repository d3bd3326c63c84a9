"""/api/v1 for the daily check-in: the tenant's rule, and members' own check-ins."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from siyu.checkin import service
from siyu.checkin.errors import InvalidRule, MakeupNotAllowed
from siyu.checkin.schemas import CheckinRead, CheckinResult, MakeupIn, MonthRead, RuleIO
from siyu.core import db as dbmod
from siyu.core import security
from siyu.core.errors import Forbidden, InvalidToken
from siyu.core.web import (
    DbSession,
    MemberClaim,
    TxRoute,
    api_member,
    db_slots,
    problems,
    requires,
)
from siyu.ledger.errors import InsufficientPoints
from siyu.live import service as live
from siyu.live.api import parse_month
from siyu.members.models import Member
from siyu.tenants.models import Operator, Tenant

router = APIRouter(prefix="/api/v1", route_class=TxRoute, tags=["check-in"])
CurrentMember = Annotated[Member, Depends(api_member)]


@router.get("/checkin/rule", responses=problems(Forbidden))
def read_rule(db: DbSession, op: Annotated[Operator, requires("live.read")]) -> RuleIO:
    return RuleIO.model_validate(service.get_rule(db, tenant_id=op.tenant_id).as_dict())


@router.put("/checkin/rule", responses=problems(Forbidden, InvalidRule))
def write_rule(
    body: RuleIO, db: DbSession, op: Annotated[Operator, requires("live.manage")]
) -> RuleIO:
    """Base points, streak-day bonuses and the make-up check-in; applies from the next one."""
    rule = service.set_rule(db, tenant_id=op.tenant_id, rule=body.model_dump())
    return RuleIO.model_validate(rule.as_dict())


def _result(r: service.Result) -> CheckinResult:
    return CheckinResult(
        checkin=CheckinRead.model_validate(r.checkin), created=r.created, streak=r.streak
    )


async def check_in(request: Request, ids: MemberClaim) -> Response:
    """Today's check-in (tenant-local day). Safe to repeat: points are paid once a day."""
    # The busiest member route (everyone taps it when a broadcast starts): no request-wide
    # Session (a plain APIRoute, not TxRoute), the token read without a query, and on
    # PostgreSQL one call on an asyncio connection, no thread. Otherwise, or for the cases the
    # one call leaves to Python, one thread hop for the whole check-in and its commit.
    tenant_id, member_id = ids
    try:
        result = await service.check_in_one_call(tenant_id=tenant_id, member_id=member_id)
    except service.OneCallUnavailable:
        async with db_slots(request):
            result = await run_in_threadpool(
                service.check_in_member,
                tenant_id=tenant_id,
                member_id=member_id,
                one_call=dbmod.async_pool() is None,
            )
    if result is None:
        raise InvalidToken()
    return Response(_result(result).model_dump_json(), media_type="application/json")


async def check_in_hot(headers: Mapping[bytes, bytes]) -> tuple[int, bytes] | None:
    """``check_in``'s common case ahead of the framework (app.HotPaths): a valid member token
    and PostgreSQL's one call, which commits or changes nothing. None otherwise (no or a bad
    token, SQLite, a case the one call leaves to Python): the route above answers."""
    scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    found = security.read_member_token(token.strip()) if scheme.lower() == "bearer" else None
    if found is None:
        return None
    try:
        result = await service.check_in_one_call(tenant_id=found[0], member_id=found[1])
    except service.OneCallUnavailable:
        return None
    if result is None:
        return None
    return 200, _result(result).model_dump_json().encode()


router.add_api_route(
    "/me/checkins",
    check_in,
    methods=["POST"],
    response_model=CheckinResult,
    tags=["member"],
    responses=problems(),
    route_class_override=APIRoute,
)


@router.post(
    "/me/checkins/makeup",
    tags=["member"],
    responses=problems(MakeupNotAllowed, InsufficientPoints),
)
def make_up(body: MakeupIn, db: DbSession, member: CurrentMember) -> CheckinResult:
    """Fill a missed day for points (the tenant's rule says how far back and how much)."""
    return _result(
        service.make_up(db, tenant_id=member.tenant_id, member_id=member.id, day=body.day)
    )


def month_themes(db: Session, tenant: Tenant, year: int, month: int) -> dict[str, list[str]]:
    """Local day (ISO) → themes of the sessions starting that day."""
    out: dict[str, list[str]] = {}
    for s in live.month_sessions(
        db, tenant_id=tenant.id, year=year, month=month, tz=tenant.timezone
    ):
        if s.status != "cancelled":
            day = live.local(s.starts_at, tenant.timezone).date().isoformat()
            out.setdefault(day, []).append(s.theme)
    return out


@router.get("/me/checkins", tags=["member"], responses=problems())
def my_month(
    db: DbSession,
    member: CurrentMember,
    month: Annotated[str | None, Query(description="Tenant-local month, YYYY-MM")] = None,
) -> MonthRead:
    """The member's check-ins of a month, the streak, the days open to make-up and the live
    themes of each day."""
    tenant = db.get(Tenant, member.tenant_id)
    assert tenant is not None
    if month:
        year, mon = parse_month(month)
    else:
        today = service.today_for(tenant)
        year, mon = today.year, today.month
    view = service.month_view(db, tenant_id=tenant.id, member_id=member.id, year=year, month=mon)
    return MonthRead(
        year=year,
        month=mon,
        today=view.today,
        streak=view.streak,
        checked_today=view.checked_today,
        checkins=[CheckinRead.model_validate(c) for c in view.checkins.values()],
        makeup_days=view.makeup_days,
        themes=month_themes(db, tenant, year, mon),
    )

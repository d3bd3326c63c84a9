"""Console: the check-in rule. Member H5: the check-in page (month calendar with the member's
check-ins and each day's live themes, tonight's session with a reserve button)."""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from siyu.checkin import service
from siyu.checkin.api import month_themes
from siyu.core.errors import SiyuError
from siyu.core.web import CsrfChecked, DbSession, TxRoute, page_member, render, requires
from siyu.live import service as live
from siyu.live.pages import _helpers, _month, _shift
from siyu.members.models import Member
from siyu.tenants import service as tenants
from siyu.tenants.models import Operator, Tenant

router = APIRouter(route_class=TxRoute, include_in_schema=False)
PageMember = Annotated[Member, Depends(page_member)]


def _rule_page(
    request: Request,
    db: Session,
    op: Operator,
    *,
    rule: dict[str, Any] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    tenant = db.get(Tenant, op.tenant_id)
    assert tenant is not None
    return render(
        request,
        "admin/checkin_rule.html",
        status_code=status_code,
        op=op,
        tenant=tenant,
        rule=rule or service.rule_of(tenant).as_dict(),
        can_manage=tenants.can(op.role, "live.manage"),
        error=error,
    )


@router.get("/admin/checkin")
def rule_page(
    request: Request, db: DbSession, op: Annotated[Operator, requires("live.read", page=True)]
) -> HTMLResponse:
    return _rule_page(request, db, op)


def _int(value: str) -> int | str:
    value = value.strip()
    return int(value) if value.isdigit() and len(value) < 10 else value


@router.post("/admin/checkin", dependencies=[CsrfChecked])
def save_rule(
    request: Request,
    db: DbSession,
    op: Annotated[Operator, requires("live.manage", page=True)],
    base: Annotated[str, Form(max_length=12)] = "0",
    makeup_days: Annotated[str, Form(max_length=12)] = "0",
    makeup_cost: Annotated[str, Form(max_length=12)] = "0",
    bonus_day: Annotated[list[str] | None, Form()] = None,
    bonus_points: Annotated[list[str] | None, Form()] = None,
) -> Response:
    """Rows with an empty day are dropped (that is how a bonus is removed)."""
    rule: dict[str, Any] = {
        "base": _int(base),
        "makeup_days": _int(makeup_days),
        "makeup_cost": _int(makeup_cost),
        "bonuses": [
            {"day": _int(d), "points": _int(p)}
            for d, p in zip(bonus_day or [], bonus_points or [], strict=False)
            if d.strip()
        ],
    }
    try:
        service.set_rule(db, tenant_id=op.tenant_id, rule=rule)
    except SiyuError as err:
        return _rule_page(request, db, op, rule=rule, error=err.message(), status_code=err.status)
    return RedirectResponse("/admin/checkin?notice=saved", status_code=303)


# --- member H5 --------------------------------------------------------------------------------


def _page(
    request: Request,
    db: Session,
    slug: str,
    member: Member,
    *,
    month: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    tenant = db.get(Tenant, member.tenant_id)
    assert tenant is not None
    today = service.today_for(tenant)
    year, mon = _month(month, today)
    view = service.month_view(db, tenant_id=tenant.id, member_id=member.id, year=year, month=mon)
    tonight = live.next_session(db, tenant_id=tenant.id, tz=tenant.timezone)
    reserved = (
        live.reserved_targets(db, tenant_id=tenant.id, member_id=member.id, session_id=tonight.id)
        if tonight
        else {}
    )
    return render(
        request,
        "m/checkin.html",
        status_code=status_code,
        tenant=tenant,
        slug=slug,
        member=member,
        view=view,
        weeks=calendar.Calendar(firstweekday=0).monthdatescalendar(year, mon),
        themes={
            dt.date.fromisoformat(k): v for k, v in month_themes(db, tenant, year, mon).items()
        },
        prev=_shift(year, mon, -1),
        next=_shift(year, mon, 1),
        tonight=tonight,
        tonight_reserved=tonight is not None and f"s{tonight.id}" in reserved,
        notice=request.query_params.get("notice"),
        error=error,
        **_helpers(tenant),
    )


@router.get("/m/{slug}/checkin")
def checkin_page(
    request: Request, slug: str, db: DbSession, member: PageMember, month: str = ""
) -> HTMLResponse:
    return _page(request, db, slug, member, month=month)


@router.post("/m/{slug}/checkin", dependencies=[CsrfChecked])
def check_in(slug: str, db: DbSession, member: PageMember) -> Response:
    result = service.check_in(db, tenant_id=member.tenant_id, member_id=member.id)
    notice = "checked_in" if result.created else "already"
    return RedirectResponse(f"/m/{slug}/checkin?notice={notice}", status_code=303)


@router.post("/m/{slug}/checkin/makeup", dependencies=[CsrfChecked])
def make_up(
    request: Request,
    slug: str,
    db: DbSession,
    member: PageMember,
    day: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    try:
        when = dt.date.fromisoformat(day)
    except ValueError:
        from siyu.core.i18n import gettext as _

        return _page(request, db, slug, member, error=_("Choose a day"), status_code=422)
    try:
        service.make_up(db, tenant_id=member.tenant_id, member_id=member.id, day=when)
    except SiyuError as err:
        return _page(request, db, slug, member, error=err.message(), status_code=err.status)
    return RedirectResponse(f"/m/{slug}/checkin?notice=made_up", status_code=303)

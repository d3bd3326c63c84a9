"""Admin member list and detail; member H5 sign-in and home."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from siyu.core.errors import NotFound, SiyuError
from siyu.core.security import sign_member_token
from siyu.core.settings import get_settings
from siyu.core.web import CsrfChecked, DbSession, TxRoute, page_member, render, requires
from siyu.ledger import service as ledger
from siyu.ledger.api import balance_read, last_day
from siyu.members import service
from siyu.members.models import Member
from siyu.tenants import service as tenants
from siyu.tenants.models import Operator, Tenant

router = APIRouter(route_class=TxRoute, include_in_schema=False)
PageMember = Annotated[Member, Depends(page_member)]


@router.get("/admin/members")
def member_list(
    request: Request,
    db: DbSession,
    op: Annotated[Operator, requires("members.read", page=True)],
    q: str = "",
    tag: str = "",
    tier_id: str = "",
    cursor: str = "",
) -> HTMLResponse:
    tiers = service.list_tiers(db, tenant_id=op.tenant_id)
    tier = int(tier_id) if tier_id.isdigit() else None
    page = service.search_members(
        db,
        tenant_id=op.tenant_id,
        q=q[:64],
        tag=tag[:40] or None,
        tier_id=tier,
        cursor=cursor or None,
        limit=20,
    )
    wallets = ledger.wallets_of(db, tenant_id=op.tenant_id, member_ids=[m.id for m in page.items])
    rows = [
        (m, service.tier_for(tiers, wallets.get(m.id, (0, 0))[1]).tier.name) for m in page.items
    ]
    balances = {m.id: wallets.get(m.id, (0, 0))[0] for m in page.items}
    return render(
        request,
        "admin/members.html",
        op=op,
        tenant=db.get(Tenant, op.tenant_id),
        rows=rows,
        balances=balances,
        page=page,
        q=q,
        tag=tag,
        tier_id=tier,
        tiers=tiers,
        tags=service.all_tags(db, tenant_id=op.tenant_id),
    )


@router.get("/admin/members/{member_id}")
def member_detail(
    request: Request,
    member_id: int,
    db: DbSession,
    op: Annotated[Operator, requires("members.read", page=True)],
    before_id: int | None = None,
) -> HTMLResponse:
    member = service.get_member(db, tenant_id=op.tenant_id, member_id=member_id)
    return _detail(request, db, op, member, before_id=before_id)


def _detail(
    request: Request,
    db: DbSession,
    op: Operator,
    member: Member,
    *,
    before_id: int | None = None,
    error: str | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    tenant = db.get(Tenant, op.tenant_id)
    assert tenant is not None
    entries = ledger.list_entries(
        db, tenant_id=op.tenant_id, member_id=member.id, before_id=before_id, limit=25
    )
    return render(
        request,
        "admin/member_detail.html",
        op=op,
        tenant=tenant,
        member=member,
        balance=balance_read(db, tenant_id=op.tenant_id, member_id=member.id),
        progress=service.tier_progress(db, tenant_id=op.tenant_id, member_id=member.id),
        entries=entries,
        next_before=entries[-1].id if len(entries) == 25 else None,
        can_adjust=tenants.can(op.role, "points.adjust"),
        error=error,
        form=form or {},
        status_code=status_code,
        adjust_key=uuid.uuid4().hex,
    )


@router.post("/admin/members/{member_id}/adjust", dependencies=[CsrfChecked])
def adjust_points(
    request: Request,
    member_id: int,
    db: DbSession,
    op: Annotated[Operator, requires("points.adjust", page=True)],
    direction: Annotated[str, Form()] = "grant",
    points: Annotated[str, Form(max_length=12)] = "",
    memo: Annotated[str, Form(max_length=500)] = "",
    key: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """A manual adjustment: a grant or a deduction with a written reason."""
    from siyu.core.i18n import gettext as _

    member = service.get_member(db, tenant_id=op.tenant_id, member_id=member_id)
    form = {"direction": direction, "points": points, "memo": memo}
    error = None
    if not points.strip().isdigit() or not 0 < int(points) <= ledger.MAX_POINTS:
        error = _("Enter a whole number of points greater than 0")
    elif not memo.strip():
        error = _("A reason is required for every manual adjustment")
    elif direction not in ("grant", "deduct") or not key:
        error = _("Reload the page and try again")
    if error is None:
        fn = ledger.grant if direction == "grant" else ledger.spend
        try:
            fn(
                db,
                tenant_id=op.tenant_id,
                member_id=member.id,
                points=int(points),
                reason="manual_adjust",
                memo=memo.strip(),
                idempotency_key=f"admin:{key}",
                actor=ledger.Actor.operator(op.id),
            )
        except SiyuError as err:
            error = err.message()
    if error is not None:
        return _detail(request, db, op, member, error=error, form=form, status_code=422)
    return RedirectResponse(f"/admin/members/{member.id}?notice=adjusted", status_code=303)


# --- member H5 --------------------------------------------------------------------------------


@router.get("/m/{slug}/login")
def member_login_form(request: Request, slug: str, db: DbSession) -> HTMLResponse:
    tenant = tenants.get_tenant(db, slug=slug)
    return render(
        request,
        "m/login.html",
        tenant=tenant,
        slug=slug,
        dev_login=get_settings().dev_login,
        openid="",
    )


@router.post("/m/{slug}/login", dependencies=[CsrfChecked])
def member_login(
    request: Request, slug: str, db: DbSession, openid: Annotated[str, Form(max_length=64)] = ""
) -> Response:
    """The embedded default's dev sign-in: type an openid (the mini program uses the API)."""
    from siyu.core.i18n import gettext as _

    tenant = tenants.get_tenant(db, slug=slug)
    if not get_settings().dev_login:
        raise NotFound(resource="dev login")
    if not openid.strip():
        return render(
            request,
            "m/login.html",
            tenant=tenant,
            slug=slug,
            dev_login=True,
            openid=openid,
            error=_("Enter your openid"),
            status_code=422,
        )
    member = service.login_openid(
        db, tenant_id=tenant.id, openid=openid.strip(), source_channel="h5"
    )
    request.session[f"member:{tenant.id}"] = sign_member_token(
        tenant_id=tenant.id, member_id=member.id
    )
    return RedirectResponse(f"/m/{slug}", status_code=303)


@router.post("/m/{slug}/logout", dependencies=[CsrfChecked])
def member_logout(request: Request, slug: str, db: DbSession) -> RedirectResponse:
    tenant = tenants.get_tenant(db, slug=slug)
    request.session.pop(f"member:{tenant.id}", None)
    return RedirectResponse(f"/m/{slug}/login", status_code=303)


@router.get("/m/{slug}")
def member_home(request: Request, slug: str, db: DbSession, member: PageMember) -> HTMLResponse:
    tenant = db.get(Tenant, member.tenant_id)
    assert tenant is not None
    return render(
        request,
        "m/home.html",
        tenant=tenant,
        slug=slug,
        member=member,
        balance=balance_read(db, tenant_id=tenant.id, member_id=member.id),
        progress=service.tier_progress(db, tenant_id=tenant.id, member_id=member.id),
        recent=ledger.list_entries(db, tenant_id=tenant.id, member_id=member.id, limit=5),
        last_day=last_day,
    )


@router.get("/m/{slug}/points")
def member_points(
    request: Request, slug: str, db: DbSession, member: PageMember, before_id: int | None = None
) -> HTMLResponse:
    tenant = db.get(Tenant, member.tenant_id)
    assert tenant is not None
    entries = ledger.list_entries(
        db, tenant_id=tenant.id, member_id=member.id, before_id=before_id, limit=20
    )
    return render(
        request,
        "m/points.html",
        tenant=tenant,
        slug=slug,
        member=member,
        balance=balance_read(db, tenant_id=tenant.id, member_id=member.id),
        entries=entries,
        next_before=entries[-1].id if len(entries) == 20 else None,
    )

"""Admin console: sign in and out; tenant settings (points expiry, tiers, operators)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from siyu.core.errors import BadCredentials, SiyuError, TooManySignIns
from siyu.core.web import CsrfChecked, DbSession, TxRoute, render, requires
from siyu.tenants import service
from siyu.tenants.models import ROLES, Operator, Tenant

router = APIRouter(route_class=TxRoute, include_in_schema=False)


@router.get("/admin")
def admin_home() -> RedirectResponse:
    return RedirectResponse("/admin/members", status_code=303)


@router.get("/admin/login")
def login_form(request: Request) -> HTMLResponse:
    return render(
        request, "admin/login.html", tenant=request.query_params.get("tenant", ""), username=""
    )


@router.post("/admin/login", dependencies=[CsrfChecked])
def login(
    request: Request,
    db: DbSession,
    tenant: Annotated[str, Form(max_length=40)] = "",
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    try:
        op = service.authenticate(
            db,
            tenant_slug=tenant.strip(),
            username=username.strip(),
            password=password,
            ip=request.client.host if request.client else "",
        )
    except (BadCredentials, TooManySignIns) as err:
        return render(
            request,
            "admin/login.html",
            status_code=err.status,
            error=err.message(),
            tenant=tenant,
            username=username,
        )
    request.session.clear()  # a fresh session (and CSRF token) on every sign-in
    request.session.update(operator_id=op.id, tenant_id=op.tenant_id)
    return RedirectResponse("/admin/members", status_code=303)


@router.post("/admin/logout", dependencies=[CsrfChecked])
def logout(request: Request) -> RedirectResponse:
    request.session.pop("operator_id", None)
    request.session.pop("tenant_id", None)
    return RedirectResponse("/admin/login", status_code=303)


# --- settings: points expiry, tiers, operators ------------------------------------------------


def _settings_page(
    request: Request,
    db: Session,
    op: Operator,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    from siyu.members import service as members

    tenant = db.get(Tenant, op.tenant_id)
    assert tenant is not None
    return render(
        request,
        "admin/settings.html",
        status_code=status_code,
        op=op,
        tenant=tenant,
        policy=tenant.settings.get("points_expiry") or {"kind": "never"},
        wechat_appid=(tenant.settings.get("wechat") or {}).get("appid", ""),
        tiers=members.list_tiers(db, tenant_id=op.tenant_id),
        operators=service.list_operators(db, tenant_id=op.tenant_id)
        if service.can(op.role, "operators.manage")
        else [],
        can_manage=service.can(op.role, "tenant.manage"),
        roles=ROLES,
        error=error,
    )


@router.get("/admin/settings")
def settings_page(
    request: Request, db: DbSession, op: Annotated[Operator, requires("tenant.read", page=True)]
) -> HTMLResponse:
    return _settings_page(request, db, op)


def _redirect(notice: str) -> RedirectResponse:
    return RedirectResponse(f"/admin/settings?notice={notice}", status_code=303)


@router.post("/admin/settings/expiry", dependencies=[CsrfChecked])
def save_expiry(
    request: Request,
    db: DbSession,
    op: Annotated[Operator, requires("tenant.manage", page=True)],
    kind: Annotated[str, Form(max_length=16)] = "never",
    amount: Annotated[str, Form(max_length=6)] = "",
) -> Response:
    policy: dict[str, object] = {"kind": kind}
    if kind in ("days", "year_end"):
        field = "days" if kind == "days" else "years"
        policy[field] = int(amount) if amount.strip().isdigit() else -1
    try:
        service.update_settings(db, tenant_id=op.tenant_id, changes={"points_expiry": policy})
    except SiyuError as err:
        return _settings_page(request, db, op, error=err.message(), status_code=err.status)
    return _redirect("saved")


@router.post("/admin/settings/tiers", dependencies=[CsrfChecked])
def save_tiers(
    request: Request,
    db: DbSession,
    op: Annotated[Operator, requires("tenant.manage", page=True)],
    name: Annotated[list[str] | None, Form()] = None,
    min_growth: Annotated[list[str] | None, Form()] = None,
) -> Response:
    from siyu.members import service as members
    from siyu.members.errors import InvalidTiers

    rows = [
        (n.strip(), g.strip())
        for n, g in zip(name or [], min_growth or [], strict=False)
        if n.strip() or g.strip()
    ]
    try:
        if any(not g.isdigit() for _, g in rows):
            raise InvalidTiers()
        members.set_tiers(db, tenant_id=op.tenant_id, tiers=[(n, int(g)) for n, g in rows])
    except SiyuError as err:
        return _settings_page(request, db, op, error=err.message(), status_code=err.status)
    return _redirect("saved")


@router.post("/admin/settings/wechat", dependencies=[CsrfChecked])
def save_wechat(
    request: Request,
    db: DbSession,
    op: Annotated[Operator, requires("tenant.manage", page=True)],
    appid: Annotated[str, Form(max_length=40)] = "",
    secret: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    from pydantic import ValidationError

    from siyu.core.i18n import gettext as _
    from siyu.tenants.schemas import WechatCredentials

    try:
        creds = WechatCredentials(appid=appid.strip(), secret=secret.strip())
    except ValidationError:
        error = _("Enter the AppID (wx followed by 16 characters) and the AppSecret")
        return _settings_page(request, db, op, error=error, status_code=422)
    service.update_settings(db, tenant_id=op.tenant_id, changes={"wechat": creds.model_dump()})
    return _redirect("saved")


@router.post("/admin/operators", dependencies=[CsrfChecked])
def add_operator(
    request: Request,
    db: DbSession,
    op: Annotated[Operator, requires("operators.manage", page=True)],
    username: Annotated[str, Form(max_length=64)] = "",
    display_name: Annotated[str, Form(max_length=100)] = "",
    role: Annotated[str, Form(max_length=16)] = "operator",
    password: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    try:
        service.create_operator(
            db,
            tenant_id=op.tenant_id,
            username=username.strip(),
            password=password,
            role=role,
            display_name=display_name.strip(),
        )
    except SiyuError as err:
        return _settings_page(request, db, op, error=err.message(), status_code=err.status)
    return _redirect("operator_added")

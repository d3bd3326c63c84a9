"""Admin console: sign in and out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from siyu.core.errors import BadCredentials
from siyu.core.web import CsrfChecked, DbSession, TxRoute, render
from siyu.tenants import service

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
            db, tenant_slug=tenant.strip(), username=username.strip(), password=password
        )
    except BadCredentials as err:
        return render(
            request,
            "admin/login.html",
            status_code=401,
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

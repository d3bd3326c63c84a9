"""Admin console: order imports (upload with live progress, history, report download), the
claim review queue, account rebinding and per-session statistics; member H5: claim an order,
my claims."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from siyu.core.errors import SiyuError
from siyu.core.i18n import gettext
from siyu.core.web import CsrfChecked, DbSession, TxRoute, page_member, render, requires
from siyu.members.models import Member
from siyu.orders import models as m
from siyu.orders import service
from siyu.orders.api import store_upload
from siyu.tenants import service as tenants
from siyu.tenants.models import Operator, Tenant

router = APIRouter(route_class=TxRoute, include_in_schema=False)
PageMember = Annotated[Member, Depends(page_member)]


def _imports_page(
    request: Request, db: DbSession, op: Operator, *, error: str | None = None, status: int = 200
) -> HTMLResponse:
    return render(
        request,
        "admin/orders.html",
        status_code=status,
        op=op,
        tenant=db.get(Tenant, op.tenant_id),
        imports=service.list_imports(db, tenant_id=op.tenant_id),
        can_import=tenants.can(op.role, "orders.import"),
        error=error,
    )


@router.get("/admin/orders")
def imports_page(
    request: Request, db: DbSession, op: Annotated[Operator, requires("orders.read", page=True)]
) -> HTMLResponse:
    return _imports_page(request, db, op)


@router.post("/admin/orders/imports", dependencies=[CsrfChecked])
def upload(
    request: Request,
    db: DbSession,
    op: Annotated[Operator, requires("orders.import", page=True)],
    file: Annotated[UploadFile | None, File()] = None,
    format: Annotated[str, Form(max_length=16)] = "",  # noqa: A002
    session_id: Annotated[str, Form(max_length=12)] = "",
) -> Response:
    from siyu.core.i18n import gettext as _

    if file is None or not file.filename:
        return _imports_page(request, db, op, error=_("Choose a file to import"), status=422)
    if session_id.strip() and not session_id.strip().isdigit():
        return _imports_page(request, db, op, error=_("The session is a number"), status=422)
    try:
        imp = store_upload(
            db,
            op=op,
            upload=file,
            fmt=format or None,
            session_id=int(session_id) if session_id.strip() else None,
        )
    except SiyuError as err:
        return _imports_page(request, db, op, error=err.message(), status=err.status)
    return RedirectResponse(f"/admin/orders/imports/{imp.id}", status_code=303)


@router.get("/admin/orders/imports/{import_id}")
def import_detail(
    request: Request,
    import_id: int,
    db: DbSession,
    op: Annotated[Operator, requires("orders.read", page=True)],
) -> HTMLResponse:
    imp = service.get_import(db, tenant_id=op.tenant_id, import_id=import_id)
    return render(
        request,
        "admin/order_import.html",
        op=op,
        tenant=db.get(Tenant, op.tenant_id),
        imp=imp,
        rejects=service.list_rejects(db, tenant_id=op.tenant_id, import_id=imp.id, limit=200),
        running=imp.status in (m.QUEUED, m.RUNNING),
        max_attempts=service.MAX_ATTEMPTS,
    )


@router.get("/admin/orders/imports/{import_id}/progress")
def import_progress(
    request: Request,
    import_id: int,
    db: DbSession,
    op: Annotated[Operator, requires("orders.read", page=True)],
) -> HTMLResponse:
    """The progress fragment htmx polls while the job runs (it stops polling when done)."""
    imp = service.get_import(db, tenant_id=op.tenant_id, import_id=import_id)
    return render(
        request,
        "admin/_import_progress.html",
        imp=imp,
        running=imp.status in (m.QUEUED, m.RUNNING),
        max_attempts=service.MAX_ATTEMPTS,
    )


@router.get("/admin/orders/imports/{import_id}/report.csv")
def import_report(
    import_id: int, db: DbSession, op: Annotated[Operator, requires("orders.read", page=True)]
) -> StreamingResponse:
    """The import report: counts, then every rejected row (line, column, reason)."""
    imp = service.get_import(db, tenant_id=op.tenant_id, import_id=import_id)
    rejects = service.list_rejects(db, tenant_id=op.tenant_id, import_id=imp.id)

    def lines() -> Iterator[bytes]:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["rows", "imported", "updated", "rejected"])
        w.writerow([imp.rows, imp.imported, imp.updated, imp.rejected])
        w.writerow([])
        w.writerow(["line", "column", "reason"])
        yield ("\ufeff" + buf.getvalue()).encode()
        for i in range(0, len(rejects), 1000):
            buf = io.StringIO()
            csv.writer(buf).writerows(
                (r.line, r.column, gettext(r.reason)) for r in rejects[i : i + 1000]
            )
            yield buf.getvalue().encode()

    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="import-{imp.id}-report.csv"'},
    )


def _claims_page(
    request: Request,
    db: DbSession,
    op: Operator,
    *,
    status: str,
    error: str | None = None,
    code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "admin/order_claims.html",
        status_code=code,
        op=op,
        tenant=db.get(Tenant, op.tenant_id),
        claims=service.list_claims(db, tenant_id=op.tenant_id, status=status or None, limit=100),
        status=status,
        stats=service.session_stats(db, tenant_id=op.tenant_id),
        rebinds=service.list_rebinds(db, tenant_id=op.tenant_id, limit=20),
        can_review=tenants.can(op.role, "orders.review"),
        can_rebind=tenants.can(op.role, "orders.import"),
        reason_text=service.reason_text,
        error=error,
    )


@router.get("/admin/orders/claims")
def claims_page(
    request: Request,
    db: DbSession,
    op: Annotated[Operator, requires("orders.read", page=True)],
    status: str = "review",
) -> HTMLResponse:
    return _claims_page(request, db, op, status=status[:16])


@router.post("/admin/orders/claims/{claim_id}/approve", dependencies=[CsrfChecked])
def approve(
    request: Request,
    claim_id: int,
    db: DbSession,
    op: Annotated[Operator, requires("orders.review", page=True)],
) -> Response:
    try:
        service.approve_claim(db, tenant_id=op.tenant_id, claim_id=claim_id, operator_id=op.id)
    except SiyuError as err:
        return _claims_page(request, db, op, status="review", error=err.message(), code=err.status)
    return RedirectResponse("/admin/orders/claims?notice=saved", status_code=303)


@router.post("/admin/orders/claims/{claim_id}/reject", dependencies=[CsrfChecked])
def reject(
    request: Request,
    claim_id: int,
    db: DbSession,
    op: Annotated[Operator, requires("orders.review", page=True)],
    reason: Annotated[str, Form(max_length=150)] = "",
) -> Response:
    try:
        service.reject_claim(
            db, tenant_id=op.tenant_id, claim_id=claim_id, operator_id=op.id, reason=reason
        )
    except SiyuError as err:
        return _claims_page(request, db, op, status="review", error=err.message(), code=err.status)
    return RedirectResponse("/admin/orders/claims?notice=saved", status_code=303)


@router.post("/admin/orders/rebind", dependencies=[CsrfChecked])
def rebind(
    request: Request,
    db: DbSession,
    op: Annotated[Operator, requires("orders.import", page=True)],
    platform: Annotated[str, Form(max_length=16)] = "taobao",
    account: Annotated[str, Form(max_length=64)] = "",
    member_id: Annotated[str, Form(max_length=12)] = "",
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    from siyu.core.i18n import gettext as _

    if not member_id.strip().isdigit():
        return _claims_page(
            request, db, op, status="review", error=_("Enter the member's id"), code=422
        )
    try:
        service.rebind_account(
            db,
            tenant_id=op.tenant_id,
            platform=platform,
            account=account,
            to_member_id=int(member_id),
            operator_id=op.id,
            reason=reason,
        )
    except SiyuError as err:
        return _claims_page(request, db, op, status="review", error=err.message(), code=err.status)
    return RedirectResponse("/admin/orders/claims?notice=saved", status_code=303)


# --- member H5 --------------------------------------------------------------------------------


def _my_claims(
    request: Request,
    db: DbSession,
    slug: str,
    member: Member,
    *,
    form: dict[str, str] | None = None,
    error: str | None = None,
    result: m.Claim | None = None,
    code: int = 200,
) -> HTMLResponse:
    tenant = db.get(Tenant, member.tenant_id)
    assert tenant is not None
    bound = {a.platform: a.account for a in member.accounts}
    return render(
        request,
        "m/claims.html",
        status_code=code,
        tenant=tenant,
        slug=slug,
        member=member,
        claims=service.list_claims(db, tenant_id=tenant.id, member_id=member.id, limit=50),
        debt=service.member_debt(db, tenant_id=tenant.id, member_id=member.id),
        form=form or {"platform": "taobao", "account": bound.get("taobao", ""), "order_no": ""},
        bound=bound,
        result=result,
        reason_text=service.reason_text,
        error=error,
    )


@router.get("/m/{slug}/claims")
def my_claims(request: Request, slug: str, db: DbSession, member: PageMember) -> HTMLResponse:
    return _my_claims(request, db, slug, member)


@router.post("/m/{slug}/claims", dependencies=[CsrfChecked])
def claim(
    request: Request,
    slug: str,
    db: DbSession,
    member: PageMember,
    platform: Annotated[str, Form(max_length=16)] = "taobao",
    order_no: Annotated[str, Form(max_length=64)] = "",
    account: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    form = {"platform": platform, "order_no": order_no, "account": account}
    try:
        c = service.claim_order(
            db,
            tenant_id=member.tenant_id,
            member_id=member.id,
            platform=platform,
            order_no=order_no,
            account=account,
            ip=request.client.host if request.client else "",
        )
    except SiyuError as err:
        return _my_claims(
            request, db, slug, member, form=form, error=err.message(), code=err.status
        )
    db.refresh(member, ["accounts"])
    return _my_claims(request, db, slug, member, result=c)

"""Mall pages: the console's items and orders (export, tracking import, fulfillment) and the
member H5's mall, item and redeem flow, redemptions with tracking, and address book."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from siyu.core.errors import SiyuError
from siyu.core.i18n import gettext as _
from siyu.core.web import CsrfChecked, DbSession, TxRoute, page_member, render, requires
from siyu.ledger import service as ledger
from siyu.mall import models as m
from siyu.mall import service
from siyu.mall.errors import InvalidItem
from siyu.members import service as members
from siyu.members.models import Member
from siyu.tenants import service as tenants
from siyu.tenants.models import Operator, Tenant

router = APIRouter(route_class=TxRoute, include_in_schema=False)
PageMember = Annotated[Member, Depends(page_member)]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _tenant(db: Session, tenant_id: int) -> Tenant:
    tenant = db.get(Tenant, tenant_id)
    assert tenant is not None
    return tenant


def _int_or_none(raw: str, name: str) -> int | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise InvalidItem(field=name, problem=_("a whole number"))
    return int(raw)


def _local_dt(raw: str, tz: str, name: str) -> dt.datetime | None:
    """A ``datetime-local`` form value, read in the tenant's timezone."""
    from zoneinfo import ZoneInfo

    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        return dt.datetime.fromisoformat(raw).replace(tzinfo=ZoneInfo(tz)).astimezone(dt.UTC)
    except ValueError:
        raise InvalidItem(field=name, problem=_("a date and time")) from None


def _item_fields(form: dict[str, str], tz: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "title": form.get("title", "").strip(),
        "description": form.get("description", "").strip(),
        "category": form.get("category", "").strip(),
        "images": [u.strip() for u in form.get("images", "").splitlines() if u.strip()],
        "points_price": _int_or_none(form.get("points_price", ""), "points_price") or 0,
        "cash_fen": _int_or_none(form.get("cash_fen", ""), "cash_fen") or 0,
        "per_member_total": _int_or_none(form.get("per_member_total", ""), "per_member_total"),
        "per_member_daily": _int_or_none(form.get("per_member_daily", ""), "per_member_daily"),
        "min_growth": _int_or_none(form.get("min_growth", ""), "min_growth"),
        "available_from": _local_dt(form.get("available_from", ""), tz, "available_from"),
        "available_until": _local_dt(form.get("available_until", ""), tz, "available_until"),
        "is_listed": form.get("is_listed", "") == "on",
    }
    if form.get("stock", "").strip():
        out["stock"] = _int_or_none(form["stock"], "stock")
    return out


# --- console: items ---------------------------------------------------------------------------


@router.get("/admin/mall")
def admin_items(
    request: Request, db: DbSession, op: Annotated[Operator, requires("mall.read", page=True)]
) -> HTMLResponse:
    return _items_page(request, db, op)


def _items_page(
    request: Request,
    db: Session,
    op: Operator,
    *,
    error: str | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "admin/mall_items.html",
        op=op,
        tenant=_tenant(db, op.tenant_id),
        items=service.list_items(db, tenant_id=op.tenant_id),
        tiers=members.list_tiers(db, tenant_id=op.tenant_id),
        can_manage=tenants.can(op.role, "mall.manage"),
        form=form or {"is_listed": "on"},
        error=error,
        status_code=status_code,
    )


@router.post("/admin/mall/items", dependencies=[CsrfChecked])
async def admin_create_item(
    request: Request, db: DbSession, op: Annotated[Operator, requires("mall.manage", page=True)]
) -> Response:
    form = {k: str(v) for k, v in (await request.form()).items() if k != "csrf_token"}
    from starlette.concurrency import run_in_threadpool

    def create() -> Response:
        tenant = _tenant(db, op.tenant_id)
        try:
            fields = _item_fields(form, tenant.timezone)
            kind = form.get("kind", m.PHYSICAL)
            if kind == m.COUPON:
                fields.pop("stock", None)
            item = service.create_item(db, tenant_id=op.tenant_id, kind=kind, **fields)
        except SiyuError as err:
            return _items_page(request, db, op, error=err.message(), form=form, status_code=422)
        return RedirectResponse(f"/admin/mall/items/{item.id}?notice=saved", status_code=303)

    return await run_in_threadpool(create)


@router.get("/admin/mall/items/{item_id}")
def admin_item(
    request: Request,
    item_id: int,
    db: DbSession,
    op: Annotated[Operator, requires("mall.read", page=True)],
) -> HTMLResponse:
    item = service.get_item(db, tenant_id=op.tenant_id, item_id=item_id)
    return _item_page(request, db, op, item)


def _item_page(
    request: Request,
    db: Session,
    op: Operator,
    item: m.Item,
    *,
    error: str | None = None,
    upload: service.CodeUpload | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    tenant = _tenant(db, op.tenant_id)
    return render(
        request,
        "admin/mall_item.html",
        op=op,
        tenant=tenant,
        item=item,
        tiers=members.list_tiers(db, tenant_id=op.tenant_id),
        local=lambda v: (
            v.astimezone(_zone(tenant.timezone)).strftime("%Y-%m-%dT%H:%M") if v else ""
        ),
        can_manage=tenants.can(op.role, "mall.manage"),
        upload=upload,
        error=error,
        status_code=status_code,
    )


def _zone(tz: str) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(tz)


@router.post("/admin/mall/items/{item_id}", dependencies=[CsrfChecked])
async def admin_update_item(
    request: Request,
    item_id: int,
    db: DbSession,
    op: Annotated[Operator, requires("mall.manage", page=True)],
) -> Response:
    form = {k: str(v) for k, v in (await request.form()).items() if k != "csrf_token"}
    from starlette.concurrency import run_in_threadpool

    def update() -> Response:
        item = service.get_item(db, tenant_id=op.tenant_id, item_id=item_id)
        tenant = _tenant(db, op.tenant_id)
        try:
            fields = _item_fields(form, tenant.timezone)
            if not fields["points_price"]:
                fields.pop("points_price")
            if not fields["title"]:
                fields.pop("title")
            with db.begin_nested():
                service.update_item(db, tenant_id=op.tenant_id, item_id=item.id, **fields)
        except SiyuError as err:
            db.refresh(item)
            return _item_page(request, db, op, item, error=err.message(), status_code=422)
        return RedirectResponse(f"/admin/mall/items/{item.id}?notice=saved", status_code=303)

    return await run_in_threadpool(update)


@router.post("/admin/mall/items/{item_id}/codes", dependencies=[CsrfChecked])
def admin_upload_codes(
    request: Request,
    item_id: int,
    db: DbSession,
    op: Annotated[Operator, requires("mall.manage", page=True)],
    codes: Annotated[str, Form(max_length=5_000_000)] = "",
) -> HTMLResponse:
    item = service.get_item(db, tenant_id=op.tenant_id, item_id=item_id)
    try:
        result = service.upload_codes(
            db, tenant_id=op.tenant_id, item_id=item.id, codes=codes.splitlines()
        )
    except SiyuError as err:
        return _item_page(request, db, op, item, error=err.message(), status_code=422)
    return _item_page(request, db, op, item, upload=result)


# --- console: orders --------------------------------------------------------------------------


@router.get("/admin/mall/orders")
def admin_orders(
    request: Request,
    db: DbSession,
    op: Annotated[Operator, requires("mall.read", page=True)],
    status: str = "pending",
    before_id: int | None = None,
) -> HTMLResponse:
    status = status if status in (*m.STATUSES, "all") else "pending"
    orders = service.list_orders(
        db,
        tenant_id=op.tenant_id,
        status=None if status == "all" else status,
        before_id=before_id,
        limit=50,
    )
    return render(
        request,
        "admin/mall_orders.html",
        op=op,
        tenant=_tenant(db, op.tenant_id),
        orders=orders,
        status=status,
        next_before=orders[-1].id if len(orders) == 50 else None,
        can_fulfill=tenants.can(op.role, "mall.fulfill"),
        result=None,
    )


@router.get("/admin/mall/orders/export")
def admin_export(
    db: DbSession,
    op: Annotated[Operator, requires("mall.fulfill", page=True)],
    format: str = "csv",  # noqa: A002 - the query parameter's name
) -> Response:
    fmt = "xlsx" if format == "xlsx" else "csv"
    data = service.export_pending(db, tenant_id=op.tenant_id, fmt=fmt)
    return Response(
        data,
        media_type=XLSX if fmt == "xlsx" else "text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="pending-orders.{fmt}"'},
    )


@router.post("/admin/mall/orders/tracking", dependencies=[CsrfChecked])
async def admin_import_tracking(
    request: Request,
    db: DbSession,
    op: Annotated[Operator, requires("mall.fulfill", page=True)],
    file: Annotated[UploadFile | None, File()] = None,
) -> HTMLResponse:
    data = await file.read() if file is not None else b""
    name = (file.filename or "upload.csv") if file is not None else "upload.csv"
    from starlette.concurrency import run_in_threadpool

    def run() -> HTMLResponse:
        error, result = None, None
        try:
            result = service.import_tracking(
                db,
                tenant_id=op.tenant_id,
                data=data,
                filename=name,
                actor=ledger.Actor.operator(op.id),
            )
        except SiyuError as err:
            error = err.message()
        return render(
            request,
            "admin/mall_orders.html",
            op=op,
            tenant=_tenant(db, op.tenant_id),
            orders=service.list_orders(db, tenant_id=op.tenant_id, status=m.PENDING, limit=50),
            status=m.PENDING,
            next_before=None,
            can_fulfill=True,
            result=result,
            error=error,
            status_code=422 if error else 200,
        )

    return await run_in_threadpool(run)


@router.get("/admin/mall/orders/{order_id}")
def admin_order(
    request: Request,
    order_id: int,
    db: DbSession,
    op: Annotated[Operator, requires("mall.read", page=True)],
) -> HTMLResponse:
    order = service.get_order(db, tenant_id=op.tenant_id, order_id=order_id)
    return _order_page(request, db, op, order)


def _order_page(
    request: Request,
    db: Session,
    op: Operator,
    order: m.Order,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    member = members.get_member(db, tenant_id=op.tenant_id, member_id=order.member_id)
    return render(
        request,
        "admin/mall_order.html",
        op=op,
        tenant=_tenant(db, op.tenant_id),
        order=order,
        member=member,
        can_fulfill=tenants.can(op.role, "mall.fulfill"),
        error=error,
        status_code=status_code,
    )


@router.post("/admin/mall/orders/{order_id}/status", dependencies=[CsrfChecked])
def admin_order_status(
    request: Request,
    order_id: int,
    db: DbSession,
    op: Annotated[Operator, requires("mall.fulfill", page=True)],
    status: Annotated[str, Form(max_length=16)] = "",
    carrier: Annotated[str, Form(max_length=40)] = "",
    tracking_no: Annotated[str, Form(max_length=64)] = "",
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    order = service.get_order(db, tenant_id=op.tenant_id, order_id=order_id)
    try:
        with db.begin_nested():
            service.set_status(
                db,
                tenant_id=op.tenant_id,
                order_id=order.id,
                status=status,
                carrier=carrier,
                tracking_no=tracking_no,
                reason=reason,
                actor=ledger.Actor.operator(op.id),
            )
    except SiyuError as err:
        db.refresh(order)
        return _order_page(request, db, op, order, error=err.message(), status_code=err.status)
    return RedirectResponse(f"/admin/mall/orders/{order.id}?notice=saved", status_code=303)


# --- member H5 --------------------------------------------------------------------------------


def _balance(db: Session, member: Member) -> int:
    return ledger.wallets_of(db, tenant_id=member.tenant_id, member_ids=[member.id]).get(
        member.id, (0, 0)
    )[0]


@router.get("/m/{slug}/mall")
def member_mall(request: Request, slug: str, db: DbSession, member: PageMember) -> HTMLResponse:
    return render(
        request,
        "m/mall.html",
        tenant=_tenant(db, member.tenant_id),
        slug=slug,
        member=member,
        balance=_balance(db, member),
        items=service.list_items(db, tenant_id=member.tenant_id, listed_only=True),
    )


@router.get("/m/{slug}/mall/items/{item_id}")
def member_item(
    request: Request, slug: str, item_id: int, db: DbSession, member: PageMember
) -> HTMLResponse:
    item = service.get_item(db, tenant_id=member.tenant_id, item_id=item_id)
    if not item.is_listed:
        from siyu.mall.errors import ItemNotFound

        raise ItemNotFound(item_id=item_id)
    return _member_item(request, db, slug, member, item)


def _member_item(
    request: Request,
    db: Session,
    slug: str,
    member: Member,
    item: m.Item,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    tenant = _tenant(db, member.tenant_id)
    return render(
        request,
        "m/mall_item.html",
        tenant=tenant,
        slug=slug,
        member=member,
        item=item,
        balance=_balance(db, member),
        addresses=service.list_addresses(db, tenant_id=member.tenant_id, member_id=member.id),
        tier=service._tier_name(db, tenant.id, item.min_growth)
        if item.min_growth is not None
        else None,
        key=uuid.uuid4().hex,
        error=error,
        status_code=status_code,
    )


@router.post("/m/{slug}/mall/items/{item_id}/redeem", dependencies=[CsrfChecked])
def member_redeem(
    request: Request,
    slug: str,
    item_id: int,
    db: DbSession,
    member: PageMember,
    key: Annotated[str, Form(max_length=64)] = "",
    address_id: Annotated[str, Form(max_length=12)] = "",
    quantity: Annotated[str, Form(max_length=3)] = "1",
) -> Response:
    item = service.get_item(db, tenant_id=member.tenant_id, item_id=item_id)
    try:
        if not key:
            raise InvalidItem(field="key", problem=_("reload the page and try again"))
        order = service.redeem(
            db,
            tenant_id=member.tenant_id,
            member_id=member.id,
            item_id=item.id,
            quantity=int(quantity) if quantity.isdigit() else 0,
            address_id=int(address_id) if address_id.isdigit() else None,
            idempotency_key=f"h5:{member.id}:{key}",
        )
    except SiyuError as err:
        db.refresh(item)
        return _member_item(
            request, db, slug, member, item, error=err.message(), status_code=err.status
        )
    return RedirectResponse(f"/m/{slug}/mall/orders/{order.id}?notice=redeemed", status_code=303)


@router.get("/m/{slug}/mall/orders")
def member_orders(
    request: Request, slug: str, db: DbSession, member: PageMember, before_id: int | None = None
) -> HTMLResponse:
    orders = service.list_orders(
        db, tenant_id=member.tenant_id, member_id=member.id, before_id=before_id, limit=20
    )
    return render(
        request,
        "m/mall_orders.html",
        tenant=_tenant(db, member.tenant_id),
        slug=slug,
        member=member,
        orders=orders,
        next_before=orders[-1].id if len(orders) == 20 else None,
    )


@router.get("/m/{slug}/mall/orders/{order_id}")
def member_order(
    request: Request, slug: str, order_id: int, db: DbSession, member: PageMember
) -> HTMLResponse:
    order = service.get_order(
        db, tenant_id=member.tenant_id, order_id=order_id, member_id=member.id
    )
    return render(
        request,
        "m/mall_order.html",
        tenant=_tenant(db, member.tenant_id),
        slug=slug,
        member=member,
        order=order,
    )


@router.get("/m/{slug}/addresses")
def member_addresses(
    request: Request,
    slug: str,
    db: DbSession,
    member: PageMember,
    next: str = "",  # noqa: A002
) -> HTMLResponse:
    return _addresses_page(request, db, slug, member, next_url=next)


def _safe_next(slug: str, next_url: str) -> str:
    # Only back into this tenant's H5: never an open redirect.
    if next_url.startswith(f"/m/{slug}/") and "//" not in next_url and "\\" not in next_url:
        return next_url
    return f"/m/{slug}/addresses"


def _addresses_page(
    request: Request,
    db: Session,
    slug: str,
    member: Member,
    *,
    next_url: str = "",
    form: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "m/addresses.html",
        tenant=_tenant(db, member.tenant_id),
        slug=slug,
        member=member,
        addresses=service.list_addresses(db, tenant_id=member.tenant_id, member_id=member.id),
        next_url=_safe_next(slug, next_url),
        form=form or {},
        error=error,
        status_code=status_code,
    )


@router.post("/m/{slug}/addresses", dependencies=[CsrfChecked])
def member_add_address(
    request: Request,
    slug: str,
    db: DbSession,
    member: PageMember,
    name: Annotated[str, Form(max_length=40)] = "",
    phone: Annotated[str, Form(max_length=20)] = "",
    region: Annotated[str, Form(max_length=100)] = "",
    detail: Annotated[str, Form(max_length=200)] = "",
    is_default: Annotated[str, Form(max_length=4)] = "",
    next: Annotated[str, Form(max_length=300)] = "",  # noqa: A002
) -> Response:
    form = {"name": name, "phone": phone, "region": region, "detail": detail}
    try:
        service.add_address(
            db,
            tenant_id=member.tenant_id,
            member_id=member.id,
            is_default=is_default == "on",
            **form,
        )
    except SiyuError as err:
        return _addresses_page(
            request,
            db,
            slug,
            member,
            next_url=next,
            form=form,
            error=err.message(),
            status_code=err.status,
        )
    return RedirectResponse(_safe_next(slug, next), status_code=303)


@router.post("/m/{slug}/addresses/{address_id}/delete", dependencies=[CsrfChecked])
def member_delete_address(
    slug: str, address_id: int, db: DbSession, member: PageMember
) -> RedirectResponse:
    service.delete_address(
        db, tenant_id=member.tenant_id, member_id=member.id, address_id=address_id
    )
    return RedirectResponse(f"/m/{slug}/addresses", status_code=303)

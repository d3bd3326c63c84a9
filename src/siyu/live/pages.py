"""Console: calendar editor, session and lineup editor, live control panel with the on-sale
buttons and counters. Member H5: calendar with today's preview, session page, reservations.
Public: the shared shopping guide and the reminders' tracked links."""

from __future__ import annotations

import calendar
import datetime as dt
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from siyu.core import clock
from siyu.core.errors import SiyuError
from siyu.core.web import CsrfChecked, DbSession, TxRoute, page_member, render, requires
from siyu.live import reminders, service
from siyu.live.errors import LinkNotFound, ReservationClosed
from siyu.live.models import LiveSession
from siyu.members.models import Member
from siyu.tenants import service as tenants
from siyu.tenants.models import Operator, Tenant

router = APIRouter(route_class=TxRoute, include_in_schema=False)
PageMember = Annotated[Member, Depends(page_member)]
Reader = Annotated[Operator, requires("live.read", page=True)]
Manager = Annotated[Operator, requires("live.manage", page=True)]


def _month(value: str, today: dt.date) -> tuple[int, int]:
    try:
        year, month = (int(x) for x in value.split("-", 1))
        if 2000 <= year <= 2100 and 1 <= month <= 12:
            return year, month
    except ValueError:
        pass
    return today.year, today.month


def _shift(year: int, month: int, delta: int) -> str:
    n = year * 12 + month - 1 + delta
    return f"{n // 12:04d}-{n % 12 + 1:02d}"


def month_grid(db: Session, tenant: Tenant, year: int, month: int) -> dict[str, Any]:
    """Weeks (Monday first) of a tenant-local month and the sessions of each day."""
    sessions = service.month_sessions(
        db, tenant_id=tenant.id, year=year, month=month, tz=tenant.timezone
    )
    by_day: dict[dt.date, list[LiveSession]] = {}
    for s in sessions:
        by_day.setdefault(service.local(s.starts_at, tenant.timezone).date(), []).append(s)
    return {
        "year": year,
        "month": month,
        "weeks": calendar.Calendar(firstweekday=0).monthdatescalendar(year, month),
        "by_day": by_day,
        "prev": _shift(year, month, -1),
        "next": _shift(year, month, 1),
        "today": clock.local_date(clock.now(), tenant.timezone),
    }


def _helpers(tenant: Tenant) -> dict[str, Any]:
    tz = tenant.timezone

    def hm(value: dt.datetime | None) -> str:
        return service.local(value, tz).strftime("%H:%M") if value else ""

    def dtl(value: dt.datetime | None) -> str:
        """For <input type=datetime-local>."""
        return service.local(value, tz).strftime("%Y-%m-%dT%H:%M") if value else ""

    def day(value: dt.datetime) -> str:
        return service.local(value, tz).strftime("%Y-%m-%d")

    return {
        "yuan": service.format_fen,
        "hm": hm,
        "dtl": dtl,
        "day": day,
        "platforms": service.PLATFORM_LABELS,
        "is_url": service.is_url,
    }


def _tenant(db: Session, tenant_id: int) -> Tenant:
    tenant = db.get(Tenant, tenant_id)
    assert tenant is not None
    return tenant


def _fen(value: str, field: str) -> int:
    """ "59.9" yuan from a form → 5990 fen, exactly."""
    from decimal import Decimal, InvalidOperation

    from siyu.core.i18n import gettext as _
    from siyu.live.errors import InvalidLive

    try:
        yuan = Decimal(value.strip() or "x")
    except InvalidOperation:
        raise InvalidLive(field=field, problem=_("a price in yuan, e.g. 59.9")) from None
    fen = yuan * 100
    if fen != fen.to_integral_value() or not 0 <= fen <= service.MAX_PRICE_FEN:
        raise InvalidLive(field=field, problem=_("a price in yuan, e.g. 59.9"))
    return int(fen)


# --- console: calendar ------------------------------------------------------------------------


@router.get("/admin/live")
def calendar_editor(request: Request, db: DbSession, op: Reader, month: str = "") -> HTMLResponse:
    return _calendar(request, db, op, month=month)


def _calendar(
    request: Request,
    db: Session,
    op: Operator,
    *,
    month: str = "",
    error: str | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    tenant = _tenant(db, op.tenant_id)
    year, mon = _month(month, clock.local_date(clock.now(), tenant.timezone))
    return render(
        request,
        "admin/live_calendar.html",
        status_code=status_code,
        op=op,
        tenant=tenant,
        cal=month_grid(db, tenant, year, mon),
        can_manage=tenants.can(op.role, "live.manage"),
        form=form or {},
        error=error,
        key=uuid.uuid4().hex,
        **_helpers(tenant),
    )


@router.post("/admin/live/sessions", dependencies=[CsrfChecked])
def create_session(
    request: Request,
    db: DbSession,
    op: Manager,
    platform: Annotated[str, Form(max_length=16)] = "taobao",
    theme: Annotated[str, Form(max_length=200)] = "",
    starts_at: Annotated[str, Form(max_length=40)] = "",
    ends_at: Annotated[str, Form(max_length=40)] = "",
    cover_url: Annotated[str, Form(max_length=1000)] = "",
    room_url: Annotated[str, Form(max_length=1000)] = "",
    taobao_password: Annotated[str, Form(max_length=1000)] = "",
    key: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    tenant = _tenant(db, op.tenant_id)
    form = {
        "platform": platform,
        "theme": theme,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "cover_url": cover_url,
        "room_url": room_url,
        "taobao_password": taobao_password,
    }
    try:
        start = service.parse_local(starts_at, tenant.timezone, "starts_at")
        end = service.parse_local(ends_at, tenant.timezone, "ends_at")
        if start is None or end is None:
            from siyu.core.i18n import gettext as _
            from siyu.live.errors import InvalidLive

            raise InvalidLive(
                field="starts_at" if start is None else "ends_at", problem=_("required")
            )
        session = service.create_session(
            db,
            tenant_id=op.tenant_id,
            platform=platform,
            theme=theme,
            starts_at=start,
            ends_at=end,
            cover_url=cover_url,
            room_url=room_url,
            taobao_password=taobao_password,
            idempotency_key=f"admin:{key}" if key else None,
        )
    except SiyuError as err:
        return _calendar(
            request,
            db,
            op,
            month=starts_at[:7],
            error=err.message(),
            form=form,
            status_code=err.status,
        )
    return RedirectResponse(f"/admin/live/sessions/{session.id}?notice=saved", status_code=303)


# --- console: session and lineup editor -------------------------------------------------------


def _editor(
    request: Request,
    db: Session,
    op: Operator,
    session_id: int,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    tenant = _tenant(db, op.tenant_id)
    session = service.get_session(db, tenant_id=op.tenant_id, session_id=session_id)
    return render(
        request,
        "admin/live_session.html",
        status_code=status_code,
        op=op,
        tenant=tenant,
        s=session,
        products=service.lineup(db, tenant_id=op.tenant_id, session_id=session.id),
        preview=service.preview_card(db, tenant_id=op.tenant_id, session_id=session.id),
        can_manage=tenants.can(op.role, "live.manage"),
        share_url=(
            str(request.base_url).rstrip("/") + f"/m/{tenant.slug}/guide/{session.share_token}"
            if session.share_token
            else None
        ),
        error=error,
        key=uuid.uuid4().hex,
        **_helpers(tenant),
    )


@router.get("/admin/live/sessions/{session_id}")
def session_editor(request: Request, session_id: int, db: DbSession, op: Reader) -> HTMLResponse:
    return _editor(request, db, op, session_id)


@router.post("/admin/live/sessions/{session_id}", dependencies=[CsrfChecked])
def update_session(
    request: Request,
    session_id: int,
    db: DbSession,
    op: Manager,
    platform: Annotated[str | None, Form(max_length=16)] = None,
    theme: Annotated[str | None, Form(max_length=200)] = None,
    starts_at: Annotated[str | None, Form(max_length=40)] = None,
    ends_at: Annotated[str | None, Form(max_length=40)] = None,
    cover_url: Annotated[str | None, Form(max_length=1000)] = None,
    room_url: Annotated[str | None, Form(max_length=1000)] = None,
    taobao_password: Annotated[str | None, Form(max_length=1000)] = None,
) -> Response:
    """Save the fields sent; fields left out keep their value."""
    tenant = _tenant(db, op.tenant_id)
    service.get_session(db, tenant_id=op.tenant_id, session_id=session_id)  # 404 first
    try:
        changes: dict[str, Any] = {
            "platform": platform,
            "theme": theme,
            "cover_url": cover_url,
            "room_url": room_url,
            "taobao_password": taobao_password,
        }
        if starts_at:
            changes["starts_at"] = service.parse_local(starts_at, tenant.timezone, "starts_at")
        if ends_at:
            changes["ends_at"] = service.parse_local(ends_at, tenant.timezone, "ends_at")
        service.update_session(db, tenant_id=op.tenant_id, session_id=session_id, changes=changes)
    except SiyuError as err:
        return _editor(request, db, op, session_id, error=err.message(), status_code=err.status)
    return RedirectResponse(f"/admin/live/sessions/{session_id}?notice=saved", status_code=303)


@router.post("/admin/live/sessions/{session_id}/status", dependencies=[CsrfChecked])
def change_status(
    request: Request,
    session_id: int,
    db: DbSession,
    op: Manager,
    action: Annotated[str, Form(max_length=16)] = "",
    back: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """Start, end or cancel; starting marks the session reservations due for reminding."""
    try:
        service.transition(db, tenant_id=op.tenant_id, session_id=session_id, action=action)
    except SiyuError as err:
        if err.status == 404:
            raise
        return _editor(request, db, op, session_id, error=err.message(), status_code=err.status)
    where = "control" if back == "control" else ""
    return RedirectResponse(
        f"/admin/live/sessions/{session_id}{'/' + where if where else ''}?notice=saved",
        status_code=303,
    )


@router.post("/admin/live/sessions/{session_id}/lineup", dependencies=[CsrfChecked])
def add_product(
    request: Request,
    session_id: int,
    db: DbSession,
    op: Manager,
    title: Annotated[str, Form(max_length=400)] = "",
    brand: Annotated[str, Form(max_length=200)] = "",
    image_url: Annotated[str, Form(max_length=1000)] = "",
    live_price: Annotated[str, Form(max_length=20)] = "",
    list_price: Annotated[str, Form(max_length=20)] = "",
    stock_note: Annotated[str, Form(max_length=400)] = "",
    slot_at: Annotated[str, Form(max_length=40)] = "",
    link: Annotated[str, Form(max_length=1000)] = "",
    delivery_note: Annotated[str, Form(max_length=400)] = "",
    key: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    tenant = _tenant(db, op.tenant_id)
    service.get_session(db, tenant_id=op.tenant_id, session_id=session_id)  # 404 first
    try:
        service.add_product(
            db,
            tenant_id=op.tenant_id,
            session_id=session_id,
            title=title,
            brand=brand,
            image_url=image_url,
            live_price_fen=_fen(live_price, "live_price"),
            list_price_fen=_fen(list_price, "list_price"),
            stock_note=stock_note,
            slot_at=service.parse_local(slot_at, tenant.timezone, "slot_at"),
            link=link,
            delivery_note=delivery_note,
            idempotency_key=f"admin:{key}" if key else None,
        )
    except SiyuError as err:
        return _editor(request, db, op, session_id, error=err.message(), status_code=err.status)
    return RedirectResponse(
        f"/admin/live/sessions/{session_id}?notice=saved#lineup", status_code=303
    )


@router.post("/admin/live/products/{product_id}", dependencies=[CsrfChecked])
def update_product(
    request: Request,
    product_id: int,
    db: DbSession,
    op: Manager,
    title: Annotated[str | None, Form(max_length=400)] = None,
    brand: Annotated[str | None, Form(max_length=200)] = None,
    image_url: Annotated[str | None, Form(max_length=1000)] = None,
    live_price: Annotated[str | None, Form(max_length=20)] = None,
    list_price: Annotated[str | None, Form(max_length=20)] = None,
    stock_note: Annotated[str | None, Form(max_length=400)] = None,
    slot_at: Annotated[str | None, Form(max_length=40)] = None,
    link: Annotated[str | None, Form(max_length=1000)] = None,
    delivery_note: Annotated[str | None, Form(max_length=400)] = None,
) -> Response:
    """Save the fields sent; fields left out keep their value."""
    tenant = _tenant(db, op.tenant_id)
    product = service.get_product(db, tenant_id=op.tenant_id, product_id=product_id)
    try:
        changes: dict[str, Any] = {
            "title": title,
            "brand": brand,
            "image_url": image_url,
            "stock_note": stock_note,
            "link": link,
            "delivery_note": delivery_note,
        }
        if live_price is not None:
            changes["live_price_fen"] = _fen(live_price, "live_price")
        if list_price is not None:
            changes["list_price_fen"] = _fen(list_price, "list_price")
        if slot_at:
            changes["slot_at"] = service.parse_local(slot_at, tenant.timezone, "slot_at")
        service.update_product(db, tenant_id=op.tenant_id, product_id=product.id, changes=changes)
    except SiyuError as err:
        return _editor(
            request, db, op, product.session_id, error=err.message(), status_code=err.status
        )
    return RedirectResponse(
        f"/admin/live/sessions/{product.session_id}?notice=saved#lineup", status_code=303
    )


@router.post("/admin/live/products/{product_id}/move", dependencies=[CsrfChecked])
def move_product(
    product_id: int,
    db: DbSession,
    op: Manager,
    direction: Annotated[str, Form(max_length=8)] = "down",
) -> Response:
    product = service.get_product(db, tenant_id=op.tenant_id, product_id=product_id)
    service.move_product(
        db, tenant_id=op.tenant_id, product_id=product.id, delta=-1 if direction == "up" else 1
    )
    return RedirectResponse(f"/admin/live/sessions/{product.session_id}#lineup", status_code=303)


@router.post("/admin/live/sessions/{session_id}/share", dependencies=[CsrfChecked])
def share(
    session_id: int,
    db: DbSession,
    op: Manager,
    action: Annotated[str, Form(max_length=16)] = "create",
) -> Response:
    if action == "revoke":
        service.revoke_guide(db, tenant_id=op.tenant_id, session_id=session_id)
    else:
        service.share_guide(db, tenant_id=op.tenant_id, session_id=session_id)
    return RedirectResponse(
        f"/admin/live/sessions/{session_id}?notice=saved#guide", status_code=303
    )


def _download(db: Session, op: Operator, session_id: int, ext: str) -> Response:
    tenant = _tenant(db, op.tenant_id)
    session = service.get_session(db, tenant_id=op.tenant_id, session_id=session_id)
    if ext == "csv":
        body = service.guide_csv(db, tenant_id=op.tenant_id, session_id=session.id)
        media = "text/csv; charset=utf-8"
    else:
        body = service.guide_xlsx(db, tenant_id=op.tenant_id, session_id=session.id)
        media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    name = service.guide_filename(session, tenant.timezone, ext)
    return Response(
        body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@router.get("/admin/live/sessions/{session_id}/guide.csv")
def guide_csv(session_id: int, db: DbSession, op: Reader) -> Response:
    return _download(db, op, session_id, "csv")


@router.get("/admin/live/sessions/{session_id}/guide.xlsx")
def guide_xlsx(session_id: int, db: DbSession, op: Reader) -> Response:
    return _download(db, op, session_id, "xlsx")


# --- console: live control panel ---------------------------------------------------------------


@router.get("/admin/live/sessions/{session_id}/control")
def control_panel(request: Request, session_id: int, db: DbSession, op: Reader) -> HTMLResponse:
    tenant = _tenant(db, op.tenant_id)
    session = service.get_session(db, tenant_id=op.tenant_id, session_id=session_id)
    return render(
        request,
        "admin/live_control.html",
        op=op,
        tenant=tenant,
        s=session,
        rows=reminders.funnel(db, tenant_id=op.tenant_id, session_id=session.id),
        needs_template_id=reminders.needs_subscribe_template_id(db, tenant_id=op.tenant_id),
        reminder_template_key=reminders.TEMPLATE_KEY,
        products={
            p.id: p for p in service.lineup(db, tenant_id=op.tenant_id, session_id=session.id)
        },
        can_manage=tenants.can(op.role, "live.manage"),
        **_helpers(tenant),
    )


@router.get("/admin/live/sessions/{session_id}/counters")
def counters(request: Request, session_id: int, db: DbSession, op: Reader) -> HTMLResponse:
    """The control panel's counters table alone: htmx polls it during the broadcast."""
    tenant = _tenant(db, op.tenant_id)
    session = service.get_session(db, tenant_id=op.tenant_id, session_id=session_id)
    return render(
        request,
        "admin/_live_counters.html",
        s=session,
        can_manage=tenants.can(op.role, "live.manage"),
        rows=reminders.funnel(db, tenant_id=op.tenant_id, session_id=session.id),
        **_helpers(tenant),
    )


@router.post("/admin/live/products/{product_id}/on-sale", dependencies=[CsrfChecked])
def on_sale(product_id: int, db: DbSession, op: Manager) -> Response:
    """The "on sale now" button: a second click changes nothing."""
    result = service.mark_on_sale(db, tenant_id=op.tenant_id, product_id=product_id)
    notice = "on_sale" if result.changed else "already_on_sale"
    return RedirectResponse(
        f"/admin/live/sessions/{result.product.session_id}/control?notice={notice}",
        status_code=303,
    )


# --- member H5 --------------------------------------------------------------------------------


@router.get("/m/{slug}/live")
def member_calendar(
    request: Request, slug: str, db: DbSession, member: PageMember, month: str = ""
) -> HTMLResponse:
    """The month's sessions and their themes; today's preview on top."""
    tenant = _tenant(db, member.tenant_id)
    today = clock.local_date(clock.now(), tenant.timezone)
    year, mon = _month(month, today)
    todays = [
        s
        for s in service.day_sessions(db, tenant_id=tenant.id, day=today, tz=tenant.timezone)
        if s.status != "cancelled"
    ]
    previews = [(s, service.preview_card(db, tenant_id=tenant.id, session_id=s.id)) for s in todays]
    return render(
        request,
        "m/live_calendar.html",
        tenant=tenant,
        slug=slug,
        member=member,
        cal=month_grid(db, tenant, year, mon),
        previews=previews,
        **_helpers(tenant),
    )


@router.get("/m/{slug}/live/{session_id}")
def member_session(
    request: Request, slug: str, session_id: int, db: DbSession, member: PageMember
) -> HTMLResponse:
    tenant = _tenant(db, member.tenant_id)
    session = service.get_session(db, tenant_id=tenant.id, session_id=session_id)
    return render(
        request,
        "m/live_session.html",
        tenant=tenant,
        slug=slug,
        member=member,
        s=session,
        products=service.lineup(db, tenant_id=tenant.id, session_id=session.id),
        reserved=service.reserved_targets(
            db, tenant_id=tenant.id, member_id=member.id, session_id=session.id
        ),
        notice=request.query_params.get("notice"),
        **_helpers(tenant),
    )


@router.post("/m/{slug}/live/{session_id}/reserve", dependencies=[CsrfChecked])
def member_reserve(
    slug: str,
    session_id: int,
    db: DbSession,
    member: PageMember,
    product_id: Annotated[str, Form(max_length=12)] = "",
    back: Annotated[str, Form(max_length=16)] = "",
    notify: Annotated[str, Form(max_length=4)] = "",
) -> Response:
    """Reserve the session (no product) or one product; a closed target says so, no error.
    ``notify`` (the "remind me by WeChat message" box) records the subscribe consent."""
    pid = int(product_id) if product_id.strip().isdigit() else None
    try:
        service.reserve(
            db,
            tenant_id=member.tenant_id,
            member_id=member.id,
            session_id=session_id,
            product_id=pid,
        )
        if notify:
            reminders.consent_to_reminder(db, tenant_id=member.tenant_id, member_id=member.id)
        notice = "reserved"
    except ReservationClosed:
        notice = "closed"
    where = f"/m/{slug}/checkin" if back == "checkin" else f"/m/{slug}/live/{session_id}"
    return RedirectResponse(f"{where}?notice={notice}", status_code=303)


@router.get("/m/{slug}/reservations")
def member_reservations(
    request: Request, slug: str, db: DbSession, member: PageMember
) -> HTMLResponse:
    tenant = _tenant(db, member.tenant_id)
    return render(
        request,
        "m/reservations.html",
        tenant=tenant,
        slug=slug,
        member=member,
        rows=service.my_reservations(db, tenant_id=tenant.id, member_id=member.id),
        **_helpers(tenant),
    )


@router.post("/m/{slug}/reservations/{reservation_id}/cancel", dependencies=[CsrfChecked])
def member_cancel(slug: str, reservation_id: int, db: DbSession, member: PageMember) -> Response:
    service.cancel_reservation(
        db, tenant_id=member.tenant_id, member_id=member.id, reservation_id=reservation_id
    )
    return RedirectResponse(f"/m/{slug}/reservations?notice=cancelled", status_code=303)


# --- public -----------------------------------------------------------------------------------


@router.get("/m/{slug}/guide/{share_token}")
def shared_guide(request: Request, slug: str, share_token: str, db: DbSession) -> HTMLResponse:
    """The public, read-only shopping guide: no sign-in, revocable."""
    guide = service.shared_guide(db, slug=slug, share_token=share_token[:64])
    return render(
        request,
        "m/guide.html",
        tenant=guide.tenant,
        slug=slug,
        s=guide.session,
        products=guide.products,
        **_helpers(guide.tenant),
    )


@router.get("/r/{click_token}")
def follow(request: Request, click_token: str, db: DbSession) -> Response:
    """A reminder's tracked link: counts the click and sends the member on."""
    try:
        url = service.follow_link(db, click_token=click_token[:32])
    except LinkNotFound as err:
        return render(request, "m/error.html", status_code=404, err=err, slug="")
    return RedirectResponse(url, status_code=303)

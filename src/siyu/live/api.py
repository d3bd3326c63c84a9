"""/api/v1 for live sessions, lineups, the on-sale action, funnels, previews, the shopping
guide; members' reservations under /api/v1/me."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from siyu.core import clock
from siyu.core.errors import Forbidden, InvalidField
from siyu.core.web import DbSession, IdempotencyKey, TxRoute, api_member, problems, requires
from siyu.live import reminders, service
from siyu.live.errors import (
    InvalidLive,
    InvalidTransition,
    ProductNotFound,
    ReservationClosed,
    ReservationNotFound,
    SessionNotFound,
)
from siyu.live.schemas import (
    FunnelRowRead,
    LineupOrder,
    MemberSessionRead,
    OnSaleRead,
    PreviewRead,
    ProductCreate,
    ProductRead,
    ProductUpdate,
    ReservationCreate,
    ReservationRead,
    SessionCreate,
    SessionDetail,
    SessionRead,
    SessionUpdate,
    ShareRead,
    TransitionIn,
    TransitionRead,
)
from siyu.members.models import Member
from siyu.tenants.models import Operator, Tenant

router = APIRouter(prefix="/api/v1", route_class=TxRoute, tags=["live"])
CurrentMember = Annotated[Member, Depends(api_member)]
Reader = Annotated[Operator, requires("live.read")]
Manager = Annotated[Operator, requires("live.manage")]
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def parse_month(value: str) -> tuple[int, int]:
    found = _MONTH.match(value)
    if not found or not 1 <= int(found.group(2)) <= 12 or int(found.group(1)) < 2000:
        raise InvalidField(field="month", problem="YYYY-MM")
    return int(found.group(1)), int(found.group(2))


def _tz(db: DbSession, tenant_id: int) -> str:
    tenant = db.get(Tenant, tenant_id)
    assert tenant is not None
    return tenant.timezone


def _year_month(db: DbSession, tenant_id: int, month: str | None) -> tuple[int, int]:
    if month:
        return parse_month(month)
    today = clock.local_date(clock.now(), _tz(db, tenant_id))
    return today.year, today.month


def _detail(db: DbSession, tenant_id: int, session_id: int) -> SessionDetail:
    session = service.get_session(db, tenant_id=tenant_id, session_id=session_id)
    products = service.lineup(db, tenant_id=tenant_id, session_id=session.id)
    return SessionDetail.model_validate(
        {
            **SessionRead.model_validate(session).model_dump(),
            "share_token": session.share_token,
            "lineup": [ProductRead.model_validate(p) for p in products],
        }
    )


@router.get("/live/sessions", responses=problems(Forbidden))
def list_sessions(
    db: DbSession,
    op: Reader,
    month: Annotated[str | None, Query(description="Tenant-local month, YYYY-MM")] = None,
) -> list[SessionRead]:
    """Sessions starting in a tenant-local month (default: this month): the calendar."""
    year, mon = _year_month(db, op.tenant_id, month)
    rows = service.month_sessions(
        db, tenant_id=op.tenant_id, year=year, month=mon, tz=_tz(db, op.tenant_id)
    )
    return [SessionRead.model_validate(s) for s in rows]


@router.post("/live/sessions", status_code=201, responses=problems(Forbidden, InvalidLive))
def create_session(
    body: SessionCreate, db: DbSession, op: Manager, key: IdempotencyKey
) -> SessionDetail:
    """Schedule a session. Send an ``Idempotency-Key``: a retry returns the first session."""
    session = service.create_session(
        db, tenant_id=op.tenant_id, idempotency_key=key, **body.model_dump()
    )
    return _detail(db, op.tenant_id, session.id)


@router.get("/live/sessions/{session_id}", responses=problems(Forbidden, SessionNotFound))
def read_session(session_id: int, db: DbSession, op: Reader) -> SessionDetail:
    return _detail(db, op.tenant_id, session_id)


@router.patch(
    "/live/sessions/{session_id}", responses=problems(Forbidden, SessionNotFound, InvalidLive)
)
def update_session(
    session_id: int, body: SessionUpdate, db: DbSession, op: Manager
) -> SessionDetail:
    service.update_session(
        db, tenant_id=op.tenant_id, session_id=session_id, changes=body.model_dump()
    )
    return _detail(db, op.tenant_id, session_id)


@router.post(
    "/live/sessions/{session_id}/transitions",
    responses=problems(Forbidden, SessionNotFound, InvalidTransition),
)
def transition(session_id: int, body: TransitionIn, db: DbSession, op: Manager) -> TransitionRead:
    """start (scheduled → live), end (live → ended) or cancel (scheduled → cancelled).

    Starting marks every session reservation due for its reminder, once. Repeating the action
    that brought the session to its state changes nothing (``changed`` false)."""
    t = service.transition(db, tenant_id=op.tenant_id, session_id=session_id, action=body.action)
    return TransitionRead(
        session=SessionRead.model_validate(t.session), changed=t.changed, marked=t.marked
    )


@router.post(
    "/live/sessions/{session_id}/lineup",
    status_code=201,
    responses=problems(Forbidden, SessionNotFound, InvalidLive, InvalidTransition),
)
def add_product(
    session_id: int, body: ProductCreate, db: DbSession, op: Manager, key: IdempotencyKey
) -> ProductRead:
    """Append a product to the lineup. Send an ``Idempotency-Key``."""
    product = service.add_product(
        db, tenant_id=op.tenant_id, session_id=session_id, idempotency_key=key, **body.model_dump()
    )
    return ProductRead.model_validate(product)


@router.put(
    "/live/sessions/{session_id}/lineup",
    responses=problems(Forbidden, SessionNotFound, InvalidLive),
)
def reorder_lineup(
    session_id: int, body: LineupOrder, db: DbSession, op: Manager
) -> list[ProductRead]:
    """Reorder: the listed products go first, in that order; the rest keep their order after
    them (send every id to set the whole order)."""
    rows = service.reorder(
        db, tenant_id=op.tenant_id, session_id=session_id, product_ids=body.product_ids
    )
    return [ProductRead.model_validate(p) for p in rows]


@router.patch(
    "/live/products/{product_id}", responses=problems(Forbidden, ProductNotFound, InvalidLive)
)
def update_product(product_id: int, body: ProductUpdate, db: DbSession, op: Manager) -> ProductRead:
    product = service.update_product(
        db, tenant_id=op.tenant_id, product_id=product_id, changes=body.model_dump()
    )
    return ProductRead.model_validate(product)


@router.post(
    "/live/products/{product_id}/on-sale",
    responses=problems(Forbidden, ProductNotFound, InvalidTransition),
)
def on_sale(product_id: int, db: DbSession, op: Manager) -> OnSaleRead:
    """ "On sale now": marks the product on sale and each of its reservations due for its
    reminder, exactly once; a repeat changes nothing (``changed`` false, ``marked`` 0)."""
    r = service.mark_on_sale(db, tenant_id=op.tenant_id, product_id=product_id)
    return OnSaleRead(
        product=ProductRead.model_validate(r.product), changed=r.changed, marked=r.marked
    )


@router.get("/live/sessions/{session_id}/funnel", responses=problems(Forbidden, SessionNotFound))
def read_funnel(session_id: int, db: DbSession, op: Reader) -> list[FunnelRowRead]:
    """Reserved → reminded → delivered → clicked for the session and each product."""
    rows = reminders.funnel(db, tenant_id=op.tenant_id, session_id=session_id)
    return [FunnelRowRead.model_validate(r.__dict__) for r in rows]


@router.get("/live/sessions/{session_id}/preview", responses=problems(Forbidden, SessionNotFound))
def read_preview(session_id: int, db: DbSession, op: Reader) -> PreviewRead:
    """The preview card (text and rich layout) the 13:00 SOP sends."""
    card = service.preview_card(db, tenant_id=op.tenant_id, session_id=session_id)
    return PreviewRead(text=card.text, layout=card.layout)


def _download(db: DbSession, op: Operator, session_id: int, ext: str) -> Response:
    if ext == "csv":
        body = service.guide_csv(db, tenant_id=op.tenant_id, session_id=session_id)
        media = "text/csv; charset=utf-8"
    else:
        body = service.guide_xlsx(db, tenant_id=op.tenant_id, session_id=session_id)
        media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    session = service.get_session(db, tenant_id=op.tenant_id, session_id=session_id)
    name = service.guide_filename(session, _tz(db, op.tenant_id), ext)
    return Response(
        body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


GUIDE_MEDIA: dict[str, dict[str, Any]] = {
    "csv": {"text/csv": {}},
    "xlsx": {"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {}},
}


@router.get(
    "/live/sessions/{session_id}/guide.csv",
    response_class=Response,
    responses={200: {"content": GUIDE_MEDIA["csv"]}, **problems(Forbidden, SessionNotFound)},
)
def guide_csv(session_id: int, db: DbSession, op: Reader) -> Response:
    """The shopping guide (lineup, prices, on-sale slots, delivery) as CSV."""
    return _download(db, op, session_id, "csv")


@router.get(
    "/live/sessions/{session_id}/guide.xlsx",
    response_class=Response,
    responses={200: {"content": GUIDE_MEDIA["xlsx"]}, **problems(Forbidden, SessionNotFound)},
)
def guide_xlsx(session_id: int, db: DbSession, op: Reader) -> Response:
    """The shopping guide as an Excel workbook."""
    return _download(db, op, session_id, "xlsx")


def share_read(request: Request, session_id: int, slug: str, token: str | None) -> ShareRead:
    url = str(request.base_url).rstrip("/") + f"/m/{slug}/guide/{token}" if token else None
    return ShareRead(session_id=session_id, share_token=token, url=url)


@router.post("/live/sessions/{session_id}/share", responses=problems(Forbidden, SessionNotFound))
def share_guide(request: Request, session_id: int, db: DbSession, op: Manager) -> ShareRead:
    """The public, read-only shopping-guide link (no sign-in); repeating keeps the same link."""
    session = service.share_guide(db, tenant_id=op.tenant_id, session_id=session_id)
    tenant = db.get(Tenant, op.tenant_id)
    assert tenant is not None
    return share_read(request, session.id, tenant.slug, session.share_token)


@router.delete("/live/sessions/{session_id}/share", responses=problems(Forbidden, SessionNotFound))
def revoke_share(request: Request, session_id: int, db: DbSession, op: Manager) -> ShareRead:
    """Revoke the share link: it answers 404 from now on."""
    session = service.revoke_guide(db, tenant_id=op.tenant_id, session_id=session_id)
    return ShareRead(session_id=session.id, share_token=None, url=None)


# --- members ----------------------------------------------------------------------------------


@router.get("/me/live/sessions", tags=["member"], responses=problems())
def my_calendar(
    db: DbSession,
    member: CurrentMember,
    month: Annotated[str | None, Query(description="Tenant-local month, YYYY-MM")] = None,
) -> list[SessionRead]:
    """Sessions starting in a tenant-local month (default: this month)."""
    year, mon = _year_month(db, member.tenant_id, month)
    rows = service.month_sessions(
        db, tenant_id=member.tenant_id, year=year, month=mon, tz=_tz(db, member.tenant_id)
    )
    return [SessionRead.model_validate(s) for s in rows]


@router.get("/me/live/sessions/{session_id}", tags=["member"], responses=problems(SessionNotFound))
def my_session(session_id: int, db: DbSession, member: CurrentMember) -> MemberSessionRead:
    """A session with its lineup and the member's reservations in it."""
    session = service.get_session(db, tenant_id=member.tenant_id, session_id=session_id)
    reserved = service.reserved_targets(
        db, tenant_id=member.tenant_id, member_id=member.id, session_id=session.id
    )
    return MemberSessionRead.model_validate(
        {
            **SessionRead.model_validate(session).model_dump(),
            "lineup": [
                ProductRead.model_validate(p)
                for p in service.lineup(db, tenant_id=member.tenant_id, session_id=session.id)
            ],
            "reserved": [ReservationRead.model_validate(r) for r in reserved.values()],
        }
    )


@router.post(
    "/me/reservations",
    tags=["member"],
    status_code=201,
    responses=problems(SessionNotFound, ProductNotFound, ReservationClosed),
)
def reserve(body: ReservationCreate, db: DbSession, member: CurrentMember) -> ReservationRead:
    """Reserve a session or one product; reserving again returns the same reservation."""
    row = service.reserve(
        db,
        tenant_id=member.tenant_id,
        member_id=member.id,
        session_id=body.session_id,
        product_id=body.product_id,
    )
    reminders.record_consents(
        db, tenant_id=member.tenant_id, member_id=member.id, subscribe=body.subscribe
    )
    return ReservationRead.model_validate(row)


@router.get("/me/reservations", tags=["member"], responses=problems())
def my_reservations(db: DbSession, member: CurrentMember) -> list[ReservationRead]:
    rows = service.my_reservations(db, tenant_id=member.tenant_id, member_id=member.id)
    return [ReservationRead.model_validate(r.reservation) for r in rows]


@router.delete(
    "/me/reservations/{reservation_id}",
    tags=["member"],
    responses=problems(ReservationNotFound),
)
def cancel_reservation(
    reservation_id: int, db: DbSession, member: CurrentMember
) -> ReservationRead:
    row = service.cancel_reservation(
        db, tenant_id=member.tenant_id, member_id=member.id, reservation_id=reservation_id
    )
    return ReservationRead.model_validate(row)

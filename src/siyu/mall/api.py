from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.orm import Session

from siyu.core.errors import Forbidden
from siyu.core.web import (
    DbSession,
    IdempotencyKey,
    MemberClaim,
    TxRoute,
    api_member,
    in_one_thread,
    member_of,
    problems,
    requires,
)
from siyu.ledger import service as ledger
from siyu.ledger.errors import InsufficientPoints
from siyu.mall import models as m
from siyu.mall import service
from siyu.mall.errors import (
    AddressNotFound,
    AddressRequired,
    IdempotencyConflict,
    InvalidAddress,
    InvalidItem,
    InvalidTransition,
    ItemNotFound,
    LimitReached,
    NotAvailable,
    NotCouponItem,
    OrderNotFound,
    OutOfStock,
    TierRequired,
    UnreadableFile,
)
from siyu.mall.schemas import (
    AddressCreate,
    AddressList,
    AddressRead,
    CodesIn,
    CodesRead,
    ItemCreate,
    ItemList,
    ItemRead,
    ItemUpdate,
    OrderPage,
    OrderRead,
    RedeemIn,
    StatusIn,
    TrackingImportRead,
)
from siyu.members.models import Member
from siyu.tenants.models import Operator

router = APIRouter(prefix="/api/v1", route_class=TxRoute, tags=["mall"])
CurrentMember = Annotated[Member, Depends(api_member)]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def order_page(orders: list[m.Order], limit: int) -> OrderPage:
    items = [OrderRead.model_validate(o) for o in orders]
    return OrderPage(items=items, next_before_id=items[-1].id if len(items) == limit else None)


# --- operators: items -------------------------------------------------------------------------


@router.get("/mall/items", responses=problems(Forbidden))
def list_items(
    db: DbSession,
    op: Annotated[Operator, requires("mall.read")],
    category: Annotated[str | None, Query(max_length=40)] = None,
) -> ItemList:
    items = service.list_items(db, tenant_id=op.tenant_id, category=category)
    return ItemList(items=[ItemRead.model_validate(i) for i in items])


@router.post("/mall/items", status_code=201, responses=problems(Forbidden, InvalidItem))
def create_item(
    body: ItemCreate, db: DbSession, op: Annotated[Operator, requires("mall.manage")]
) -> ItemRead:
    fields = body.model_dump(exclude={"kind"})
    item = service.create_item(db, tenant_id=op.tenant_id, kind=body.kind, **fields)
    return ItemRead.model_validate(item)


@router.get("/mall/items/{item_id}", responses=problems(Forbidden, ItemNotFound))
def read_item(
    item_id: int, db: DbSession, op: Annotated[Operator, requires("mall.read")]
) -> ItemRead:
    return ItemRead.model_validate(service.get_item(db, tenant_id=op.tenant_id, item_id=item_id))


@router.patch("/mall/items/{item_id}", responses=problems(Forbidden, ItemNotFound, InvalidItem))
def update_item(
    item_id: int, body: ItemUpdate, db: DbSession, op: Annotated[Operator, requires("mall.manage")]
) -> ItemRead:
    """Change the fields sent (``null`` clears a limit, a window end or a tier)."""
    item = service.update_item(
        db, tenant_id=op.tenant_id, item_id=item_id, **body.model_dump(exclude_unset=True)
    )
    return ItemRead.model_validate(item)


@router.post(
    "/mall/items/{item_id}/codes",
    responses=problems(Forbidden, ItemNotFound, NotCouponItem, InvalidItem),
)
def upload_codes(
    item_id: int, body: CodesIn, db: DbSession, op: Annotated[Operator, requires("mall.manage")]
) -> CodesRead:
    """Add coupon codes to a coupon item's pool (its stock grows by the codes added)."""
    result = service.upload_codes(db, tenant_id=op.tenant_id, item_id=item_id, codes=body.codes)
    return CodesRead(added=result.added, duplicates=result.duplicates, stock=result.stock)


# --- operators: orders ------------------------------------------------------------------------


@router.get("/mall/orders", responses=problems(Forbidden))
def list_orders(
    db: DbSession,
    op: Annotated[Operator, requires("mall.read")],
    status: Literal["pending", "shipped", "delivered", "cancelled"] | None = None,
    member_id: int | None = None,
    before_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> OrderPage:
    orders = service.list_orders(
        db,
        tenant_id=op.tenant_id,
        status=status,
        member_id=member_id,
        before_id=before_id,
        limit=limit,
    )
    return order_page(orders, limit)


@router.get(
    "/mall/orders/export",
    responses={
        **problems(Forbidden),
        200: {"content": {"text/csv": {}, XLSX: {}}, "description": "The pending orders"},
    },
)
def export_orders(
    db: DbSession,
    op: Annotated[Operator, requires("mall.fulfill")],
    format: Literal["csv", "xlsx"] = "csv",  # noqa: A002 - the query parameter's name
) -> Response:
    """Pending physical orders for the warehouse; fill in 快递公司 and 快递单号 and import it
    back with ``POST /mall/orders/tracking``."""
    data = service.export_pending(db, tenant_id=op.tenant_id, fmt=format)
    media = XLSX if format == "xlsx" else "text/csv; charset=utf-8"
    return Response(
        data,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="pending-orders.{format}"'},
    )


@router.post(
    "/mall/orders/tracking",
    responses=problems(Forbidden, UnreadableFile),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                XLSX: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def import_tracking(
    request: Request, db: DbSession, op: Annotated[Operator, requires("mall.fulfill")]
) -> TrackingImportRead:
    """Ship orders from the warehouse sheet (CSV or XLSX body). Bad rows are reported by row
    number and reason; good rows are applied."""
    from starlette.concurrency import run_in_threadpool

    data = await request.body()
    kind = request.headers.get("content-type", "")
    name = "upload.xlsx" if XLSX in kind or data[:2] == b"PK" else "upload.csv"
    result = await run_in_threadpool(
        service.import_tracking,
        db,
        tenant_id=op.tenant_id,
        data=data,
        filename=name,
        actor=ledger.Actor.operator(op.id),
    )
    return TrackingImportRead(
        shipped=result.shipped,
        unchanged=result.unchanged,
        problems=[p.__dict__ for p in result.problems],
    )


@router.get("/mall/orders/{order_id}", responses=problems(Forbidden, OrderNotFound))
def read_order(
    order_id: int, db: DbSession, op: Annotated[Operator, requires("mall.read")]
) -> OrderRead:
    return OrderRead.model_validate(
        service.get_order(db, tenant_id=op.tenant_id, order_id=order_id)
    )


@router.post(
    "/mall/orders/{order_id}/status",
    responses=problems(Forbidden, OrderNotFound, InvalidTransition, InvalidItem),
)
def set_status(
    order_id: int, body: StatusIn, db: DbSession, op: Annotated[Operator, requires("mall.fulfill")]
) -> OrderRead:
    """Ship (carrier + tracking number; again to correct them), deliver, or cancel (refunds
    the points through a ledger reversal and puts the stock back)."""
    order = service.set_status(
        db,
        tenant_id=op.tenant_id,
        order_id=order_id,
        status=body.status,
        carrier=body.carrier,
        tracking_no=body.tracking_no,
        reason=body.reason,
        actor=ledger.Actor.operator(op.id),
    )
    return OrderRead.model_validate(order)


# --- members ----------------------------------------------------------------------------------


def _member_item(db: Session, member: Member, item_id: int) -> m.Item:
    item = service.get_item(db, tenant_id=member.tenant_id, item_id=item_id)
    if not item.is_listed:
        raise ItemNotFound(item_id=item_id)
    return item


@router.get("/me/mall/items", tags=["member"], responses=problems())
def my_mall(
    db: DbSession,
    member: CurrentMember,
    category: Annotated[str | None, Query(max_length=40)] = None,
) -> ItemList:
    """What the member can redeem now (listed, inside the availability window)."""
    items = service.list_items(db, tenant_id=member.tenant_id, listed_only=True, category=category)
    return ItemList(items=[ItemRead.model_validate(i) for i in items])


@router.get("/me/mall/items/{item_id}", tags=["member"], responses=problems(ItemNotFound))
def my_item(item_id: int, db: DbSession, member: CurrentMember) -> ItemRead:
    return ItemRead.model_validate(_member_item(db, member, item_id))


@router.post(
    "/me/mall/items/{item_id}/redeem",
    status_code=201,
    tags=["member"],
    responses=problems(
        ItemNotFound,
        NotAvailable,
        TierRequired,
        AddressRequired,
        AddressNotFound,
        OutOfStock,
        InsufficientPoints,
        LimitReached,
        IdempotencyConflict,
    ),
)
async def redeem(
    item_id: int,
    claim: MemberClaim,  # first: no token, no look at the body
    body: RedeemIn,
    db: DbSession,
    key: IdempotencyKey,
) -> OrderRead:
    """Spend points on an item. Send an ``Idempotency-Key``: a retry returns the first order.
    Every refusal (``mall.*``, ``points.insufficient``) takes nothing."""
    # async, the work in one thread: a flash sale sends thousands of these at once, and each
    # thread hop is a wait for a thread and for the event loop (benchmarks/flash_redeem.py).
    # The order is read after COMMIT: the item's row, which every buyer waits for, is unlocked
    # before anything else is done.
    return OrderRead.model_validate(await in_one_thread(_redeem, db, claim, item_id, body, key))


def _redeem(db: Session, claim: tuple[int, int], item_id: int, body: RedeemIn, key: str) -> m.Order:
    member = member_of(db, claim)
    return service.redeem(
        db,
        tenant_id=member.tenant_id,
        member_id=member.id,
        item_id=item_id,
        quantity=body.quantity,
        address_id=body.address_id,
        idempotency_key=key,
        listed_only=True,
        savepoint=False,  # in_one_thread rolls the request back whole on any error
    )


@router.get("/me/mall/orders", tags=["member"], responses=problems())
def my_orders(
    db: DbSession,
    member: CurrentMember,
    before_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> OrderPage:
    orders = service.list_orders(
        db, tenant_id=member.tenant_id, member_id=member.id, before_id=before_id, limit=limit
    )
    return order_page(orders, limit)


@router.get("/me/mall/orders/{order_id}", tags=["member"], responses=problems(OrderNotFound))
def my_order(order_id: int, db: DbSession, member: CurrentMember) -> OrderRead:
    order = service.get_order(
        db, tenant_id=member.tenant_id, order_id=order_id, member_id=member.id
    )
    return OrderRead.model_validate(order)


@router.get("/me/addresses", tags=["member"], responses=problems())
def my_addresses(db: DbSession, member: CurrentMember) -> AddressList:
    items = service.list_addresses(db, tenant_id=member.tenant_id, member_id=member.id)
    return AddressList(items=[AddressRead.model_validate(a) for a in items])


@router.post("/me/addresses", status_code=201, tags=["member"], responses=problems(InvalidAddress))
def add_address(body: AddressCreate, db: DbSession, member: CurrentMember) -> AddressRead:
    address = service.add_address(
        db, tenant_id=member.tenant_id, member_id=member.id, **body.model_dump()
    )
    return AddressRead.model_validate(address)


@router.delete(
    "/me/addresses/{address_id}",
    status_code=204,
    tags=["member"],
    responses=problems(AddressNotFound),
)
def delete_address(address_id: int, db: DbSession, member: CurrentMember) -> Response:
    """Remove an address from the book; orders keep their copy. Repeating changes nothing."""
    service.delete_address(
        db, tenant_id=member.tenant_id, member_id=member.id, address_id=address_id
    )
    return Response(status_code=204)

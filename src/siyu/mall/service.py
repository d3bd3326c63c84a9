"""The points mall: the only code that writes mall tables.

Redemption (``redeem``), in one transaction:
1. checks that write nothing, so a member gets the reason before anything is taken:
   ``mall.not_available`` (unlisted or outside its window), ``mall.tier_required``,
   ``mall.address_required``, ``mall.out_of_stock`` (stock as last read), ``points.insufficient``
   (balance as last read), ``mall.limit_reached`` (per member per tenant-local day / in total);
2. inside a SAVEPOINT (a failure leaves nothing behind, even for a caller that goes on; the
   API, which rolls its whole transaction back on any error, skips it: ``savepoint=False``):
   lock the member row (serialises one member's redemptions, so limits hold under
   concurrency), ``ledger.spend`` with the key ``mall:<idempotency key>``, re-count the limits,
   take stock with a conditional ``UPDATE … SET stock = stock - q WHERE stock >= q`` (no
   oversell: racing redemptions cannot both pass), insert the order, give a coupon code
   (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; the pool has exactly ``stock`` free codes).
Lock order everywhere: member → wallet (ledger) → item → code; cancelling takes order →
wallet → item. A repeat with the same idempotency key returns the first order.

Fulfillment: pending → shipped (carrier + tracking; re-shipping corrects them) → delivered;
pending or shipped → cancelled, which reverses the spend (``ledger.reverse``) and puts the
stock back. Coupon and gift orders are delivered at once.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from siyu.core import clock
from siyu.core.i18n import gettext as _
from siyu.ledger import service as ledger
from siyu.ledger.errors import InsufficientPoints
from siyu.mall import models as m
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
from siyu.members import service as members
from siyu.members.models import Member
from siyu.tenants.models import Tenant

MAX_QUANTITY = 10
MAX_CODES_PER_UPLOAD = 100_000


# --- items ------------------------------------------------------------------------------------

_ITEM_FIELDS = (
    "title",
    "description",
    "images",
    "category",
    "points_price",
    "cash_fen",
    "stock",
    "per_member_total",
    "per_member_daily",
    "min_growth",
    "available_from",
    "available_until",
    "is_listed",
)


def _check_item(item: m.Item) -> None:
    if not (item.title or "").strip() or len(item.title) > 100:
        raise InvalidItem(field="title", problem=_("1–100 characters"))
    if item.kind not in m.KINDS:
        raise InvalidItem(field="kind", problem=_("physical, coupon or gift"))
    if not isinstance(item.points_price, int) or not 1 <= item.points_price <= ledger.MAX_POINTS:
        raise InvalidItem(field="points_price", problem=_("a whole number of points from 1"))
    if item.cash_fen < 0:
        raise InvalidItem(field="cash_fen", problem=_("0 or more"))
    if item.stock < 0:
        raise InvalidItem(field="stock", problem=_("0 or more"))
    for name in ("per_member_total", "per_member_daily"):
        value = getattr(item, name)
        if value is not None and value < 1:
            raise InvalidItem(field=name, problem=_("1 or more, or empty for no limit"))
    if item.min_growth is not None and item.min_growth < 0:
        raise InvalidItem(field="min_growth", problem=_("0 or more"))
    for name in ("available_from", "available_until"):
        value = getattr(item, name)
        if value is not None and value.tzinfo is None:
            raise InvalidItem(field=name, problem=_("an instant with a timezone"))
    if item.available_from and item.available_until and item.available_until <= item.available_from:
        raise InvalidItem(field="available_until", problem=_("after available_from"))
    if len(item.images) > 9 or any(
        not isinstance(u, str) or not u.startswith(("https://", "http://", "/")) or len(u) > 500
        for u in item.images
    ):
        raise InvalidItem(field="images", problem=_("up to 9 http(s) URLs"))


def create_item(db: Session, *, tenant_id: int, kind: str = m.PHYSICAL, **fields: Any) -> m.Item:
    """A new item. Coupon items start with no stock: their stock is their pool of codes."""
    unknown = set(fields) - set(_ITEM_FIELDS)
    assert not unknown, unknown
    item = m.Item(
        tenant_id=tenant_id,
        kind=kind,
        description="",
        images=[],
        category="",
        cash_fen=0,
        stock=0,
        is_listed=True,
        created_at=clock.now(),
    )
    for name, value in fields.items():
        setattr(item, name, value)
    if item.title:
        item.title = item.title.strip()
    if kind == m.COUPON:
        if item.stock:
            raise InvalidItem(field="stock", problem=_("a coupon item's stock is its code pool"))
        item.stock = 0
    _check_item(item)
    db.add(item)
    db.flush()
    return item


def get_item(db: Session, *, tenant_id: int, item_id: int) -> m.Item:
    # get(): the second look-up of a request (the API checks the item, then redeem) is free.
    item = db.get(m.Item, item_id)
    if item is None or item.tenant_id != tenant_id:
        raise ItemNotFound(item_id=item_id)
    return item


def update_item(db: Session, *, tenant_id: int, item_id: int, **fields: Any) -> m.Item:
    """Change an item. Stock set here is absolute (a stock count); not for coupon items."""
    unknown = set(fields) - set(_ITEM_FIELDS)
    assert not unknown, unknown
    item = db.scalar(
        select(m.Item)
        .where(m.Item.id == item_id, m.Item.tenant_id == tenant_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if item is None:
        raise ItemNotFound(item_id=item_id)
    if "stock" in fields and item.kind == m.COUPON and fields["stock"] != item.stock:
        raise InvalidItem(field="stock", problem=_("a coupon item's stock is its code pool"))
    for name, value in fields.items():
        setattr(item, name, value.strip() if name == "title" and value else value)
    _check_item(item)
    db.flush()
    return item


def list_items(
    db: Session,
    *,
    tenant_id: int,
    listed_only: bool = False,
    category: str | None = None,
    at: dt.datetime | None = None,
) -> list[m.Item]:
    """Items, newest first. ``listed_only``: what members may see now (listed, in window)."""
    q = select(m.Item).where(m.Item.tenant_id == tenant_id)
    if category:
        q = q.where(m.Item.category == category)
    if listed_only:
        now = at or clock.now()
        q = q.where(
            m.Item.is_listed.is_(True),
            (m.Item.available_from.is_(None)) | (m.Item.available_from <= now),
            (m.Item.available_until.is_(None)) | (m.Item.available_until > now),
        )
    return list(db.scalars(q.order_by(m.Item.id.desc()).limit(500)))


@dataclass
class CodeUpload:
    added: int
    duplicates: list[str]
    stock: int


def upload_codes(db: Session, *, tenant_id: int, item_id: int, codes: list[str]) -> CodeUpload:
    """Add coupon codes to a coupon item's pool; its stock grows by the codes added.

    Codes already in the pool (or twice in the upload) are reported, not added again.
    """
    item = db.scalar(
        select(m.Item)
        .where(m.Item.id == item_id, m.Item.tenant_id == tenant_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if item is None:
        raise ItemNotFound(item_id=item_id)
    if item.kind != m.COUPON:
        raise NotCouponItem()
    cleaned = [c.strip() for c in codes if c and c.strip()]
    if not cleaned or len(cleaned) > MAX_CODES_PER_UPLOAD:
        raise InvalidItem(field="codes", problem=_("1 to 100,000 codes, one per line"))
    if any(len(c) > 200 for c in cleaned):
        raise InvalidItem(field="codes", problem=_("a code is at most 200 characters"))
    existing = set(
        db.scalars(select(m.Code.code).where(m.Code.item_id == item.id, m.Code.code.in_(cleaned)))
        if len(cleaned) <= 5000
        else db.scalars(select(m.Code.code).where(m.Code.item_id == item.id))
    )
    seen: set[str] = set()
    new: list[str] = []
    duplicates: list[str] = []
    for c in cleaned:
        if c in existing or c in seen:
            duplicates.append(c)
        else:
            seen.add(c)
            new.append(c)
    if new:
        db.execute(
            insert(m.Code),
            [{"tenant_id": tenant_id, "item_id": item.id, "code": c} for c in new],
        )
        db.execute(update(m.Item).where(m.Item.id == item.id).values(stock=m.Item.stock + len(new)))
        db.refresh(item)
    return CodeUpload(added=len(new), duplicates=duplicates, stock=item.stock)


# --- addresses --------------------------------------------------------------------------------


def add_address(
    db: Session,
    *,
    tenant_id: int,
    member_id: int,
    name: str,
    phone: str,
    region: str,
    detail: str,
    is_default: bool = False,
) -> m.Address:
    members.get_member(db, tenant_id=tenant_id, member_id=member_id)
    values = {
        "name": (name or "").strip(),
        "phone": (phone or "").strip(),
        "region": (region or "").strip(),
        "detail": (detail or "").strip(),
    }
    limits = {"name": 40, "phone": 20, "region": 100, "detail": 200}
    for key, value in values.items():
        if not value or len(value) > limits[key]:
            raise InvalidAddress(field=key, problem=_("1–{n} characters").format(n=limits[key]))
    digits = values["phone"].replace("-", "").replace(" ", "").lstrip("+")
    if not digits.isdigit() or not 5 <= len(digits) <= 15:
        raise InvalidAddress(field="phone", problem=_("a phone number"))
    book = list_addresses(db, tenant_id=tenant_id, member_id=member_id)
    if is_default or not book:
        db.execute(
            update(m.Address)
            .where(m.Address.tenant_id == tenant_id, m.Address.member_id == member_id)
            .values(is_default=False)
        )
    address = m.Address(
        tenant_id=tenant_id,
        member_id=member_id,
        is_default=is_default or not book,
        created_at=clock.now(),
        **values,
    )
    db.add(address)
    db.flush()
    return address


def list_addresses(db: Session, *, tenant_id: int, member_id: int) -> list[m.Address]:
    """The member's address book, the default first."""
    return list(
        db.scalars(
            select(m.Address)
            .where(
                m.Address.tenant_id == tenant_id,
                m.Address.member_id == member_id,
                m.Address.deleted_at.is_(None),
            )
            .order_by(m.Address.is_default.desc(), m.Address.id.desc())
            .execution_options(populate_existing=True)
        )
    )


def get_address(db: Session, *, tenant_id: int, member_id: int, address_id: int) -> m.Address:
    address = db.scalar(
        select(m.Address).where(
            m.Address.id == address_id,
            m.Address.tenant_id == tenant_id,
            m.Address.member_id == member_id,
            m.Address.deleted_at.is_(None),
        )
    )
    if address is None:
        raise AddressNotFound(address_id=address_id)
    return address


def delete_address(db: Session, *, tenant_id: int, member_id: int, address_id: int) -> None:
    """Remove an address from the book (orders keep their copy). Deleting twice is a no-op."""
    address = db.scalar(
        select(m.Address).where(
            m.Address.id == address_id,
            m.Address.tenant_id == tenant_id,
            m.Address.member_id == member_id,
        )
    )
    if address is None:
        raise AddressNotFound(address_id=address_id)
    if address.deleted_at is None:
        address.deleted_at = clock.now()
        address.is_default = False
        db.flush()


# --- redemption -------------------------------------------------------------------------------


def _tier_name(db: Session, tenant_id: int, min_growth: int) -> str:
    for tier in reversed(members.list_tiers(db, tenant_id=tenant_id)):
        if tier.min_growth <= min_growth:
            return tier.name
    return str(min_growth)


def _count_orders(
    db: Session, tenant_id: int, member_id: int, item_id: int, day: dt.date | None
) -> int:
    q = select(func.coalesce(func.sum(m.Order.quantity), 0)).where(
        m.Order.tenant_id == tenant_id,
        m.Order.member_id == member_id,
        m.Order.item_id == item_id,
        m.Order.status != m.CANCELLED,
    )
    if day is not None:
        q = q.where(m.Order.local_day == day)
    return int(db.scalar(q) or 0)


def _check_limits(db: Session, item: m.Item, member_id: int, quantity: int, today: dt.date) -> None:
    if item.per_member_daily is not None:
        used = _count_orders(db, item.tenant_id, member_id, item.id, today)
        if used + quantity > item.per_member_daily:
            raise LimitReached(title=item.title, limit=item.per_member_daily, period=_("per day"))
    if item.per_member_total is not None:
        used = _count_orders(db, item.tenant_id, member_id, item.id, None)
        if used + quantity > item.per_member_total:
            raise LimitReached(title=item.title, limit=item.per_member_total, period=_("in total"))


def _find_order(db: Session, tenant_id: int, key: str) -> m.Order | None:
    return db.scalar(
        select(m.Order).where(m.Order.tenant_id == tenant_id, m.Order.idempotency_key == key)
    )


def _replay(order: m.Order, *, member_id: int, item_id: int, quantity: int) -> m.Order:
    if (order.member_id, order.item_id, order.quantity) != (member_id, item_id, quantity):
        raise IdempotencyConflict(key=order.idempotency_key, order_id=order.id)
    return order


def _check_key(key: str) -> None:
    if not key or len(key) > 190:
        raise InvalidItem(field="idempotency_key", problem=_("1–190 characters"))


def redeem(
    db: Session,
    *,
    tenant_id: int,
    member_id: int,
    item_id: int,
    idempotency_key: str,
    quantity: int = 1,
    address_id: int | None = None,
    listed_only: bool = False,
    savepoint: bool = True,
) -> m.Order:
    """Spend the member's points on an item and take its stock, all or nothing.

    Raises (before taking anything, in this order) ItemNotFound, NotAvailable, OutOfStock,
    TierRequired, AddressRequired, AddressNotFound, InsufficientPoints, LimitReached. A repeat
    with the same key returns the first order; the same key for another item raises
    IdempotencyConflict. ``listed_only`` (members): an unlisted item is ItemNotFound, before
    anything else, replays included. ``savepoint=False``: only for a caller that rolls back its
    whole transaction when this raises; the item's row is then held from the stock UPDATE to
    COMMIT without a RELEASE SAVEPOINT round trip in between.
    """
    _check_key(idempotency_key)
    if not isinstance(quantity, int) or not 1 <= quantity <= MAX_QUANTITY:
        raise InvalidItem(field="quantity", problem=_("1 to {n}").format(n=MAX_QUANTITY))
    # The item and the key's order in one round trip: in a flash sale nearly every attempt is
    # answered from this row alone (sold out), with no write and no other query.
    row = db.execute(
        select(
            m.Item,
            select(m.Order.id)
            .where(m.Order.tenant_id == tenant_id, m.Order.idempotency_key == idempotency_key)
            .scalar_subquery(),
        ).where(m.Item.id == item_id, m.Item.tenant_id == tenant_id)
    ).first()
    item, found_id = (row[0], row[1]) if row is not None else (None, None)
    if listed_only and (item is None or not item.is_listed):
        raise ItemNotFound(item_id=item_id)
    if item is None:
        if (found := _find_order(db, tenant_id, idempotency_key)) is not None:
            return _replay(found, member_id=member_id, item_id=item_id, quantity=quantity)
        raise ItemNotFound(item_id=item_id)
    if found_id is not None:
        found = db.get(m.Order, found_id)
        assert found is not None
        return _replay(found, member_id=member_id, item_id=item_id, quantity=quantity)
    if item.kind == m.COUPON and quantity != 1:
        raise InvalidItem(field="quantity", problem=_("one code per redemption"))
    now = clock.now()

    # 1. Checks that write nothing. Sold out first: in a flash sale nearly every attempt ends
    # here, so it should cost no more queries than it must.
    if (
        not item.is_listed
        or (item.available_from is not None and now < item.available_from)
        or (item.available_until is not None and now >= item.available_until)
    ):
        raise NotAvailable(title=item.title)
    if item.stock < quantity:
        raise OutOfStock(title=item.title)
    tenant = db.get(Tenant, tenant_id)
    assert tenant is not None
    today = clock.local_date(now, tenant.timezone)
    balance, growth = ledger.wallets_of(db, tenant_id=tenant_id, member_ids=[member_id]).get(
        member_id, (0, 0)
    )
    if item.min_growth is not None and growth < item.min_growth:
        raise TierRequired(title=item.title, tier=_tier_name(db, tenant_id, item.min_growth))
    address = None
    if item.kind == m.PHYSICAL:
        if address_id is None:
            raise AddressRequired()
        address = get_address(db, tenant_id=tenant_id, member_id=member_id, address_id=address_id)
    cost = item.points_price * quantity
    if balance < cost:
        raise InsufficientPoints(balance=balance, wanted=cost)
    _check_limits(db, item, member_id, quantity, today)

    # 2. The writes, all or nothing.
    with db.begin_nested() if savepoint else nullcontext():
        # FOR NO KEY UPDATE: serialises this member's redemptions (so the limits re-counted
        # below hold) without blocking inserts that merely reference the member row.
        locked = db.scalar(
            select(Member.id)
            .where(Member.id == member_id, Member.tenant_id == tenant_id)
            .with_for_update(key_share=True)
        )
        if locked is None:
            members.get_member(db, tenant_id=tenant_id, member_id=member_id)  # raises
        if (found := _find_order(db, tenant_id, idempotency_key)) is not None:
            # The same request committed while we waited for the lock.
            return _replay(found, member_id=member_id, item_id=item_id, quantity=quantity)
        if item.per_member_daily is not None or item.per_member_total is not None:
            _check_limits(db, item, member_id, quantity, today)
        entry = ledger.spend(
            db,
            tenant_id=tenant_id,
            member_id=member_id,
            points=cost,
            reason="redeem",
            memo=item.title,
            reference=f"mall_item:{item.id}",
            idempotency_key=f"mall:{idempotency_key}",
            actor=ledger.Actor.member(member_id),
        )
        order = m.Order(
            tenant_id=tenant_id,
            member_id=member_id,
            source=m.REDEEM,
            source_ref="",
            item_id=item.id,
            title=item.title,
            kind=item.kind,
            quantity=quantity,
            points=cost,
            cash_fen=item.cash_fen * quantity,
            spend_entry_id=entry.id,
            status=m.PENDING if item.kind == m.PHYSICAL else m.DELIVERED,
            ship_name=address.name if address else "",
            ship_phone=address.phone if address else "",
            ship_address=address.full if address else "",
            idempotency_key=idempotency_key,
            local_day=today,
            created_at=now,
            delivered_at=None if item.kind == m.PHYSICAL else now,
        )
        db.add(order)
        db.flush()
        # The stock last: its row is the one every buyer of the item waits for, so it stays
        # locked only from here to COMMIT (which the endpoint's thread sends right after).
        taken = db.execute(
            update(m.Item)
            .where(m.Item.id == item.id, m.Item.stock >= quantity)
            .values(stock=m.Item.stock - quantity)
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        if not taken:
            raise OutOfStock(title=item.title)
        if item.kind == m.COUPON:
            order.coupon_code = _give_code(db, item, order)
            db.flush()
    db.expire(item, ["stock"])
    return order


def _give_code(db: Session, item: m.Item, order: m.Order) -> str:
    """Give one free code of the pool to ``order``. SKIP LOCKED: concurrent redemptions each
    take a different row instead of queueing on the first free one; the pool holds exactly
    ``stock`` free codes, so after taking stock there is always one for us."""
    row = db.execute(
        select(m.Code.id, m.Code.code)
        .where(m.Code.item_id == item.id, m.Code.order_id.is_(None))
        .order_by(m.Code.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if row is None:
        raise OutOfStock(title=item.title)
    db.execute(update(m.Code).where(m.Code.id == row.id).values(order_id=order.id))
    return str(row.code)


def create_trial_order(
    db: Session,
    *,
    tenant_id: int,
    member_id: int,
    title: str,
    application_id: int,
    ship_name: str,
    ship_phone: str,
    ship_address: str,
) -> m.Order:
    """The fulfillment order of a trial winner (no points, no stock). Once per application."""
    key = f"trial:{application_id}"
    if (found := _find_order(db, tenant_id, key)) is not None:
        return found
    tenant = db.get(Tenant, tenant_id)
    assert tenant is not None
    now = clock.now()
    order = m.Order(
        tenant_id=tenant_id,
        member_id=member_id,
        source=m.TRIAL,
        source_ref=key,
        item_id=None,
        title=title[:100],
        kind=m.PHYSICAL,
        quantity=1,
        points=0,
        cash_fen=0,
        status=m.PENDING,
        ship_name=ship_name,
        ship_phone=ship_phone,
        ship_address=ship_address,
        idempotency_key=key,
        local_day=clock.local_date(now, tenant.timezone),
        created_at=now,
    )
    db.add(order)
    db.flush()
    return order


# --- orders and fulfillment -------------------------------------------------------------------


def get_order(
    db: Session, *, tenant_id: int, order_id: int, member_id: int | None = None
) -> m.Order:
    q = select(m.Order).where(m.Order.id == order_id, m.Order.tenant_id == tenant_id)
    if member_id is not None:
        q = q.where(m.Order.member_id == member_id)
    order = db.scalar(q)
    if order is None:
        raise OrderNotFound(order_id=order_id)
    return order


def list_orders(
    db: Session,
    *,
    tenant_id: int,
    member_id: int | None = None,
    status: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[m.Order]:
    q = select(m.Order).where(m.Order.tenant_id == tenant_id)
    if member_id is not None:
        q = q.where(m.Order.member_id == member_id)
    if status:
        q = q.where(m.Order.status == status)
    if before_id is not None:
        q = q.where(m.Order.id < before_id)
    return list(db.scalars(q.order_by(m.Order.id.desc()).limit(limit)))


def set_status(
    db: Session,
    *,
    tenant_id: int,
    order_id: int,
    status: str,
    actor: ledger.Actor,
    carrier: str = "",
    tracking_no: str = "",
    reason: str = "",
) -> m.Order:
    """Move an order along pending → shipped → delivered, or cancel it (refund + restock).

    Shipping a shipped order corrects its carrier and tracking number; repeating delivered
    or cancelled changes nothing. Raises InvalidTransition otherwise.
    """
    order = db.scalar(
        select(m.Order)
        .where(m.Order.id == order_id, m.Order.tenant_id == tenant_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if order is None:
        raise OrderNotFound(order_id=order_id)
    if status not in m.STATUSES or status == m.PENDING:
        raise InvalidTransition(order_id=order.id, status=order.status, wanted=status)
    if status == order.status and status in (m.DELIVERED, m.CANCELLED):
        return order
    now = clock.now()
    allowed = {
        m.SHIPPED: (m.PENDING, m.SHIPPED),
        m.DELIVERED: (m.SHIPPED,),
        m.CANCELLED: (m.PENDING, m.SHIPPED),
    }[status]
    if order.status not in allowed or (status == m.SHIPPED and order.kind != m.PHYSICAL):
        raise InvalidTransition(order_id=order.id, status=order.status, wanted=status)
    if status == m.SHIPPED:
        carrier, tracking_no = (carrier or "").strip(), (tracking_no or "").strip()
        if not carrier or len(carrier) > 40:
            raise InvalidItem(field="carrier", problem=_("1–40 characters"))
        if not tracking_no or len(tracking_no) > 64:
            raise InvalidItem(field="tracking_no", problem=_("1–64 characters"))
        order.carrier, order.tracking_no = carrier, tracking_no
        if order.status == m.PENDING:
            order.shipped_at = now
    elif status == m.DELIVERED:
        order.delivered_at = now
    else:
        if order.spend_entry_id is not None:
            refund = ledger.reverse(
                db,
                tenant_id=tenant_id,
                entry_id=order.spend_entry_id,
                idempotency_key=f"mall-refund:{order.id}",
                reason="mall_refund",
                memo=order.title,
                actor=actor,
            )
            order.refund_entry_id = refund.id
        if order.item_id is not None:
            db.execute(
                update(m.Item)
                .where(m.Item.id == order.item_id)
                .values(stock=m.Item.stock + order.quantity)
            )
        order.cancelled_at = now
        order.cancel_reason = (reason or "").strip()[:200]
    order.status = status
    db.flush()
    return order


# --- warehouse export and tracking import -----------------------------------------------------

EXPORT_HEADER = [
    "订单号",
    "下单时间",
    "商品",
    "数量",
    "收件人",
    "电话",
    "地址",
    "快递公司",
    "快递单号",
]
_ID_HEADERS = ("订单号", "order_id", "order")
_CARRIER_HEADERS = ("快递公司", "carrier")
_TRACKING_HEADERS = ("快递单号", "tracking_no", "tracking")


def pending_rows(db: Session, *, tenant_id: int) -> list[list[str]]:
    """The pending physical orders, oldest first, as the warehouse sheet's rows."""
    tenant = db.get(Tenant, tenant_id)
    assert tenant is not None
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(tenant.timezone)
    orders = db.scalars(
        select(m.Order)
        .where(
            m.Order.tenant_id == tenant_id,
            m.Order.status == m.PENDING,
            m.Order.kind == m.PHYSICAL,
        )
        .order_by(m.Order.id)
    )
    return [
        [
            str(o.id),
            o.created_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            o.title,
            str(o.quantity),
            o.ship_name,
            o.ship_phone,
            o.ship_address,
            "",
            "",
        ]
        for o in orders
    ]


def export_pending(db: Session, *, tenant_id: int, fmt: str) -> bytes:
    """The pending orders as CSV (UTF-8 with BOM, so Excel reads the Chinese) or XLSX."""
    rows = pending_rows(db, tenant_id=tenant_id)
    if fmt == "xlsx":
        from openpyxl import Workbook

        wb = Workbook()
        ws = wb.active
        assert ws is not None
        ws.title = "pending"
        ws.append(EXPORT_HEADER)
        for row in rows:
            # Text cells: order ids and phone numbers must not turn into numbers.
            ws.append(row)
            for cell in ws[ws.max_row]:
                cell.number_format = "@"
        out = io.BytesIO()
        wb.save(out)
        return out.getvalue()
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(EXPORT_HEADER)
    writer.writerows(rows)
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


@dataclass
class ImportProblem:
    row: int
    code: str
    message: str


@dataclass
class TrackingImport:
    shipped: int = 0
    unchanged: int = 0
    problems: list[ImportProblem] = field(default_factory=list)


def _read_sheet(data: bytes, filename: str) -> list[list[str]]:
    if filename.lower().endswith(".xlsx") or data[:2] == b"PK":
        from openpyxl import load_workbook

        try:
            wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable workbook is the user's file
            raise UnreadableFile(problem=_("not a readable XLSX file")) from err
        ws = wb.worksheets[0]
        return [
            ["" if v is None else str(v).strip() for v in row]
            for row in ws.iter_rows(values_only=True)
        ]
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise UnreadableFile(problem=_("not UTF-8 or GB18030 text"))
    return [[c.strip() for c in row] for row in csv.reader(io.StringIO(text))]


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name.lower() in lowered:
            return lowered.index(name.lower())
    return None


def import_tracking(
    db: Session, *, tenant_id: int, data: bytes, filename: str, actor: ledger.Actor
) -> TrackingImport:
    """Ship the orders of a warehouse sheet (the export with carrier and tracking filled in).

    Every row is applied or reported with its row number and a reason; a bad row never stops
    the good ones. Re-importing a row already applied changes nothing.
    """
    rows = _read_sheet(data, filename)
    if not rows:
        raise UnreadableFile(problem=_("the file is empty"))
    header = rows[0]
    cols = (
        _column(header, _ID_HEADERS),
        _column(header, _CARRIER_HEADERS),
        _column(header, _TRACKING_HEADERS),
    )
    if None in cols:
        raise UnreadableFile(problem=_("the header needs columns 订单号, 快递公司 and 快递单号"))
    id_col, carrier_col, tracking_col = (c for c in cols if c is not None)
    result = TrackingImport()
    for number, row in enumerate(rows[1:], start=2):
        if not any(row):
            continue
        padded = row + [""] * (max(id_col, carrier_col, tracking_col) + 1 - len(row))
        raw_id, carrier, tracking = padded[id_col], padded[carrier_col], padded[tracking_col]
        raw_id = raw_id.removeprefix("=").strip('"').strip("'")
        if not raw_id.isdigit():
            result.problems.append(
                ImportProblem(number, "mall.order_not_found", _("not an order number"))
            )
            continue
        if not carrier and not tracking:
            continue  # not shipped yet: the warehouse left the row empty
        try:
            with db.begin_nested():
                order = get_order(db, tenant_id=tenant_id, order_id=int(raw_id))
                if (
                    order.status == m.SHIPPED
                    and order.carrier == carrier.strip()
                    and order.tracking_no == tracking.strip()
                ):
                    result.unchanged += 1
                    continue
                set_status(
                    db,
                    tenant_id=tenant_id,
                    order_id=order.id,
                    status=m.SHIPPED,
                    carrier=carrier,
                    tracking_no=tracking,
                    actor=actor,
                )
                result.shipped += 1
        except (OrderNotFound, InvalidTransition, InvalidItem) as err:
            result.problems.append(ImportProblem(number, err.code, err.message()))
        except IntegrityError as err:  # pragma: no cover - a constraint we did not foresee
            result.problems.append(ImportProblem(number, "mall.invalid_row", str(err.orig)))
    return result

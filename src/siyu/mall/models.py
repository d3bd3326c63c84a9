"""Points mall: items, coupon-code pools, members' shipping addresses and the orders that
redemptions (and trial wins) create."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from siyu.core import clock
from siyu.core.db import Base, UTCDateTime

# Item kinds: shipped goods, coupon codes from an uploaded pool, points-only gifts (e.g. a
# live-room welfare purchase qualification), delivered at once.
PHYSICAL, COUPON, GIFT = "physical", "coupon", "gift"
KINDS = (PHYSICAL, COUPON, GIFT)

# Order states: pending → shipped → delivered, or cancelled (refunded) from pending/shipped.
PENDING, SHIPPED, DELIVERED, CANCELLED = "pending", "shipped", "delivered", "cancelled"
STATUSES = (PENDING, SHIPPED, DELIVERED, CANCELLED)

# Where an order came from.
REDEEM, TRIAL = "redeem", "trial"


class Item(Base):
    __tablename__ = "mall_items"
    __table_args__ = (
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        CheckConstraint("points_price >= 1", name="points_price_positive"),
        Index("ix_mall_items_tenant_category", "tenant_id", "category"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    title: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    images: Mapped[list[str]] = mapped_column(JSON, default=list)
    category: Mapped[str] = mapped_column(String(40), default="")
    kind: Mapped[str] = mapped_column(String(16), default=PHYSICAL)
    points_price: Mapped[int]
    # An optional cash part, paid elsewhere (shown to the member; never charged here).
    cash_fen: Mapped[int] = mapped_column(default=0)
    stock: Mapped[int] = mapped_column(default=0)
    per_member_total: Mapped[int | None]
    per_member_daily: Mapped[int | None]
    # The growth a member needs (the threshold of the required tier); None: anyone.
    min_growth: Mapped[int | None]
    available_from: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    available_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    is_listed: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)


class Code(Base):
    """One coupon code of a coupon item's pool; ``order_id`` set once it is given out."""

    __tablename__ = "mall_codes"
    __table_args__ = (
        UniqueConstraint("item_id", "code"),
        Index("ix_mall_codes_free", "item_id", "order_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("mall_items.id"))
    code: Mapped[str] = mapped_column(String(200))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("mall_orders.id"), unique=True)


class Address(Base):
    """A shipping address in a member's address book (orders keep a copy)."""

    __tablename__ = "mall_addresses"
    __table_args__ = (Index("ix_mall_addresses_member", "tenant_id", "member_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    name: Mapped[str] = mapped_column(String(40))
    phone: Mapped[str] = mapped_column(String(20))
    region: Mapped[str] = mapped_column(String(100))
    detail: Mapped[str] = mapped_column(String(200))
    is_default: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    @property
    def full(self) -> str:
        return f"{self.region} {self.detail}"


class Order(Base):
    """What a member gets: from a redemption (points spent) or a trial win (free)."""

    __tablename__ = "mall_orders"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_mall_orders_limits", "tenant_id", "member_id", "item_id", "local_day"),
        Index("ix_mall_orders_status", "tenant_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    source: Mapped[str] = mapped_column(String(16), default=REDEEM)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("mall_items.id"))
    # "trial:<application id>" for a trial win; "" for redemptions.
    source_ref: Mapped[str] = mapped_column(String(64), default="")
    title: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[int] = mapped_column(default=1)
    points: Mapped[int] = mapped_column(default=0)
    cash_fen: Mapped[int] = mapped_column(default=0)
    spend_entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))
    refund_entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    ship_name: Mapped[str] = mapped_column(String(40), default="")
    ship_phone: Mapped[str] = mapped_column(String(20), default="")
    ship_address: Mapped[str] = mapped_column(String(300), default="")
    carrier: Mapped[str] = mapped_column(String(40), default="")
    tracking_no: Mapped[str] = mapped_column(String(64), default="")
    coupon_code: Mapped[str] = mapped_column(String(200), default="")
    cancel_reason: Mapped[str] = mapped_column(String(200), default="")
    idempotency_key: Mapped[str] = mapped_column(String(200))
    # The tenant-local day of the order (per-day limits count by it).
    local_day: Mapped[dt.date] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)
    shipped_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

Kind = Literal["physical", "coupon", "gift"]


class ItemFields(BaseModel):
    title: str = Field(min_length=1, max_length=100, examples=["定制保温杯"])
    description: str = Field(default="", max_length=5000)
    images: list[str] = Field(default_factory=list, max_length=9)
    category: str = Field(default="", max_length=40)
    points_price: int = Field(ge=1, le=1_000_000_000)
    cash_fen: int = Field(default=0, ge=0, description="Cash part in fen, paid elsewhere")
    stock: int = Field(default=0, ge=0, description="Coupon items: grows with uploaded codes")
    per_member_total: int | None = Field(default=None, ge=1)
    per_member_daily: int | None = Field(default=None, ge=1)
    min_growth: int | None = Field(
        default=None, ge=0, description="Growth threshold of the required tier"
    )
    available_from: AwareDatetime | None = None
    available_until: AwareDatetime | None = None
    is_listed: bool = True


class ItemCreate(ItemFields):
    kind: Kind = "physical"


class ItemUpdate(BaseModel):
    title: str | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=5000)
    images: list[str] | None = Field(default=None, max_length=9)
    category: str | None = Field(default=None, max_length=40)
    points_price: int | None = Field(default=None, ge=1, le=1_000_000_000)
    cash_fen: int | None = Field(default=None, ge=0)
    stock: int | None = Field(default=None, ge=0)
    per_member_total: int | None = Field(default=None, ge=1)
    per_member_daily: int | None = Field(default=None, ge=1)
    min_growth: int | None = Field(default=None, ge=0)
    available_from: AwareDatetime | None = None
    available_until: AwareDatetime | None = None
    is_listed: bool | None = None


class ItemRead(ItemFields):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    created_at: dt.datetime


class ItemList(BaseModel):
    items: list[ItemRead]


class CodesIn(BaseModel):
    codes: list[str] = Field(min_length=1, max_length=100_000)


class CodesRead(BaseModel):
    added: int
    duplicates: list[str]
    stock: int


class AddressCreate(BaseModel):
    name: str = Field(min_length=1, max_length=40, examples=["王小鱼"])
    phone: str = Field(min_length=5, max_length=20, examples=["13800138000"])
    region: str = Field(min_length=1, max_length=100, examples=["浙江省 杭州市 西湖区"])
    detail: str = Field(min_length=1, max_length=200, examples=["文三路 1 号"])
    is_default: bool = False


class AddressRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    phone: str
    region: str
    detail: str
    is_default: bool


class AddressList(BaseModel):
    items: list[AddressRead]


class RedeemIn(BaseModel):
    quantity: int = Field(default=1, ge=1, le=10)
    address_id: int | None = Field(default=None, description="Required for physical items")


class OrderRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    member_id: int
    source: str
    item_id: int | None
    title: str
    kind: str
    quantity: int
    points: int
    cash_fen: int
    status: str
    ship_name: str
    ship_phone: str
    ship_address: str
    carrier: str
    tracking_no: str
    coupon_code: str
    cancel_reason: str
    spend_entry_id: int | None
    refund_entry_id: int | None
    created_at: dt.datetime
    shipped_at: dt.datetime | None
    delivered_at: dt.datetime | None
    cancelled_at: dt.datetime | None


class OrderPage(BaseModel):
    items: list[OrderRead]
    next_before_id: int | None


class StatusIn(BaseModel):
    status: Literal["shipped", "delivered", "cancelled"]
    carrier: str = Field(default="", max_length=40, examples=["顺丰"])
    tracking_no: str = Field(default="", max_length=64, examples=["SF1234567890"])
    reason: str = Field(default="", max_length=200, description="Why an order is cancelled")


class ImportProblemRead(BaseModel):
    row: int
    code: str
    message: str


class TrackingImportRead(BaseModel):
    shipped: int
    unchanged: int
    problems: list[ImportProblemRead]

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

Platform = Literal["taobao", "douyin", "kuaishou"]
Fen = Field(ge=0, le=100_000_000, description="Price in fen (分)")


class SessionCreate(BaseModel):
    platform: Platform
    theme: str = Field(min_length=1, max_length=60, examples=["零食节"])
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    cover_url: str = Field(default="", max_length=500)
    room_url: str = Field(default="", max_length=500)
    taobao_password: str = Field(
        default="", max_length=500, description="淘口令 share text, e.g. ￥MDGGba1MLQh￥"
    )


class SessionUpdate(BaseModel):
    platform: Platform | None = None
    theme: str | None = Field(default=None, min_length=1, max_length=60)
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    cover_url: str | None = Field(default=None, max_length=500)
    room_url: str | None = Field(default=None, max_length=500)
    taobao_password: str | None = Field(default=None, max_length=500)


class SessionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    platform: str
    theme: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    cover_url: str
    room_url: str
    taobao_password: str
    status: str
    started_at: dt.datetime | None
    ended_at: dt.datetime | None


class SessionDetail(SessionRead):
    share_token: str | None
    lineup: list[ProductRead]


class ProductCreate(BaseModel):
    title: str = Field(min_length=1, max_length=120)
    brand: str = Field(default="", max_length=60)
    image_url: str = Field(default="", max_length=500)
    live_price_fen: int = Fen
    list_price_fen: int = Fen
    stock_note: str = Field(default="", max_length=120)
    slot_at: AwareDatetime | None = Field(default=None, description="Planned on-sale time")
    link: str = Field(default="", max_length=500, description="Purchase URL or 淘口令")
    delivery_note: str = Field(default="", max_length=120, examples=["48小时内发货"])


class ProductUpdate(BaseModel):
    title: str | None = Field(default=None, min_length=1, max_length=120)
    brand: str | None = Field(default=None, max_length=60)
    image_url: str | None = Field(default=None, max_length=500)
    live_price_fen: int | None = Field(default=None, ge=0, le=100_000_000)
    list_price_fen: int | None = Field(default=None, ge=0, le=100_000_000)
    stock_note: str | None = Field(default=None, max_length=120)
    slot_at: AwareDatetime | None = None
    link: str | None = Field(default=None, max_length=500)
    delivery_note: str | None = Field(default=None, max_length=120)


class ProductRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    session_id: int
    position: int
    title: str
    brand: str
    image_url: str
    live_price_fen: int
    list_price_fen: int
    stock_note: str
    slot_at: dt.datetime | None
    link: str
    delivery_note: str
    status: str
    on_sale_at: dt.datetime | None


class LineupOrder(BaseModel):
    product_ids: list[int] = Field(max_length=500)


class TransitionIn(BaseModel):
    action: Literal["start", "end", "cancel"]


class TransitionRead(BaseModel):
    session: SessionRead
    changed: bool = Field(description="False: the session already was in that state")
    marked: int = Field(description="Session reservations newly marked due for their reminder")


class OnSaleRead(BaseModel):
    product: ProductRead
    changed: bool = Field(description="False: it already was on sale; nothing changed")
    marked: int = Field(description="Reservations newly marked due for their reminder")


class FunnelRowRead(BaseModel):
    kind: Literal["session", "product"]
    id: int
    title: str
    status: str
    reserved: int
    reminded: int
    delivered: int
    clicked: int
    purchased: int = Field(
        description="Reminded reservers who then claimed an order of this session"
    )


class PreviewRead(BaseModel):
    text: str
    layout: dict[str, Any]


class ShareRead(BaseModel):
    session_id: int
    share_token: str | None
    url: str | None


TemplateId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class ReservationCreate(BaseModel):
    session_id: int
    product_id: int | None = Field(default=None, description="Omit to reserve the session")
    subscribe: dict[TemplateId, str] | None = Field(
        default=None,
        max_length=10,
        description="The mini program's wx.requestSubscribe result, {template id: 'accept' | "
        "'reject' | 'ban' | 'filter'}: each accepted template id records one consent (the "
        "reminder goes out as a subscribe message; without one it lands in the inbox)",
    )


class ReservationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    session_id: int
    product_id: int | None
    created_at: dt.datetime
    cancelled_at: dt.datetime | None
    remind_state: str
    remind_due_at: dt.datetime | None
    reminded_at: dt.datetime | None


class MemberSessionRead(SessionRead):
    lineup: list[ProductRead]
    reserved: list[ReservationRead]


SessionDetail.model_rebuild()

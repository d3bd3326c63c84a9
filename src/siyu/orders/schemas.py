from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field


class ImportRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    filename: str
    format: str
    encoding: str
    session_id: int | None
    status: str = Field(description="queued | running | done | failed")
    size_bytes: int
    bytes_read: int
    rows: int = Field(description="data rows read so far = imported + updated + rejected")
    imported: int
    updated: int
    rejected: int
    error: str
    attempts: int = Field(
        description="runs started; above 1 when the import was resumed after an interruption"
    )
    created_at: dt.datetime
    finished_at: dt.datetime | None


class RejectRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    line: int
    column: str
    reason: str


class OrderRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    platform: str
    order_no: str
    buyer: str
    paid_fen: int
    refund_fen: int
    status: str
    ordered_at: dt.datetime | None
    paid_at: dt.datetime | None
    items: str
    session_id: int | None


class ClaimIn(BaseModel):
    platform: str = Field(examples=["taobao"], max_length=16)
    order_no: str = Field(max_length=64, examples=["3901234567890123456"])
    account: str = Field(max_length=64, description="Your account on the platform (nick / id)")


class ClaimRead(BaseModel):
    id: int
    member_id: int
    platform: str
    order_no: str
    account: str
    status: str = Field(description="pending | review | credited | rejected | reversed | expired")
    reason: str = Field(description="reason code of a rejection, expiry or review")
    reason_text: str
    points: int
    clawed_points: int
    flagged: bool
    created_at: dt.datetime
    decided_at: dt.datetime | None


class MyClaims(BaseModel):
    items: list[ClaimRead]
    debt: int = Field(description="points owed after refunds; the next earnings settle it first")


class RejectIn(BaseModel):
    reason: str = Field(min_length=1, max_length=150)


class RebindIn(BaseModel):
    platform: str = Field(max_length=16)
    account: str = Field(max_length=64)
    member_id: int
    reason: str = Field(min_length=1, max_length=200)


class RebindRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    platform: str
    account: str
    from_member_id: int | None
    to_member_id: int
    operator_id: int | None
    reason: str
    created_at: dt.datetime


class SessionStatsRead(BaseModel):
    session_id: int | None
    orders: int
    claimed: int
    claim_rate: float
    points: int


class Rule(BaseModel):
    points_per_yuan: int = Field(ge=0, le=10_000)
    min_fen: int = Field(ge=0, description="orders below this amount (fen) earn nothing")
    daily_cap: int = Field(ge=0, description="points per member per local day; 0 = no cap")
    claim_window_days: int = Field(ge=1, le=3650)
    session_multipliers: dict[str, int] = Field(description="session id → percent")
    tier_multipliers: dict[str, int] = Field(description="tier id → percent")

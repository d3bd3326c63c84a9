from __future__ import annotations

import datetime as dt

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

REASON = r"^[a-z0-9][a-z0-9_.:-]{0,63}$"


class PointsChange(BaseModel):
    points: int = Field(gt=0, le=1_000_000_000)
    reason: str = Field(pattern=REASON, examples=["purchase", "manual_adjust"])
    memo: str = Field(default="", max_length=500)
    reference: str = Field(default="", max_length=200)


class GrantIn(PointsChange):
    expires_at: AwareDatetime | None = Field(
        default=None, description="Overrides the tenant's expiry policy for this lot"
    )
    counts_for_growth: bool = True


class SpendIn(PointsChange):
    pass


class ReverseIn(BaseModel):
    points: int | None = Field(
        default=None,
        gt=0,
        le=1_000_000_000,
        description="Omit to reverse everything still reversible",
    )
    reason: str = Field(default="reversal", pattern=REASON)
    memo: str = Field(default="", max_length=500)


class EntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    member_id: int
    kind: str
    points: int
    reason: str
    memo: str
    reference: str
    actor_type: str
    actor_id: str
    idempotency_key: str
    reverses_id: int | None
    reversed_points: int
    created_at: dt.datetime


class EntryPage(BaseModel):
    items: list[EntryRead]
    next_before_id: int | None


class MemberEntryRead(BaseModel):
    """An entry as its member sees it: no idempotency key, no operator ids."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    points: int
    reason: str
    memo: str
    reverses_id: int | None
    created_at: dt.datetime


class MemberEntryPage(BaseModel):
    items: list[MemberEntryRead]
    next_before_id: int | None


class ExpiringRead(BaseModel):
    expires_at: dt.datetime
    expires_on: dt.date = Field(description="Last day the points can be used, tenant time")
    points: int


class BalanceRead(BaseModel):
    member_id: int
    balance: int
    growth: int
    expiring: list[ExpiringRead]


class ProblemRead(BaseModel):
    kind: str
    ref: str
    expected: int
    actual: int


class VerifyRead(BaseModel):
    ok: bool
    entries: int
    accounts: int
    lots: int
    problems: list[ProblemRead]

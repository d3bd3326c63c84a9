from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field


class PlatformAccountRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    platform: str
    account: str
    bound_at: dt.datetime


class TierRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    min_growth: int


class TierProgressRead(BaseModel):
    growth: int
    tier: TierRead
    next_tier: TierRead | None
    to_next: int
    percent: int


class MemberRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    openid: str
    unionid: str | None
    nickname: str
    avatar_url: str
    phone: str | None
    tags: list[str]
    source_channel: str
    joined_at: dt.datetime
    accounts: list[PlatformAccountRead]


class MemberDetail(MemberRead):
    balance: int
    tier: TierProgressRead


class MemberPage(BaseModel):
    items: list[MemberRead]
    next_cursor: str | None
    total: int


class MemberCreate(BaseModel):
    openid: str = Field(min_length=1, max_length=64)
    unionid: str | None = Field(default=None, max_length=64)
    nickname: str = Field(default="", max_length=64)
    avatar_url: str = Field(default="", max_length=500)
    phone: str | None = Field(default=None, max_length=20)
    tags: list[str] = Field(default_factory=list, max_length=50)
    source_channel: str = Field(default="", max_length=40)


class MemberUpdate(BaseModel):
    nickname: str | None = Field(default=None, max_length=64)
    avatar_url: str | None = Field(default=None, max_length=500)
    phone: str | None = Field(default=None, max_length=20)
    tags: list[str] | None = Field(default=None, max_length=50)
    source_channel: str | None = Field(default=None, max_length=40)


class AccountBind(BaseModel):
    platform: str = Field(examples=["taobao"])
    account: str = Field(min_length=1, max_length=64)


class TierIn(BaseModel):
    name: str = Field(min_length=1, max_length=40)
    min_growth: int = Field(ge=0, le=10**12)


class WechatLogin(BaseModel):
    code: str = Field(min_length=1, max_length=200)


class DevLogin(BaseModel):
    openid: str = Field(min_length=1, max_length=64)


class MemberToken(BaseModel):
    token: str
    member: MemberRead

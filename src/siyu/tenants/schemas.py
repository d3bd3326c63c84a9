from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["owner", "operator", "service", "analyst"]


class TokenCreate(BaseModel):
    tenant: str = Field(min_length=1, max_length=40, examples=["demo"])
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=200)
    name: str = Field(default="", max_length=100)


class OperatorRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    display_name: str
    role: str
    is_active: bool
    created_at: dt.datetime
    last_login_at: dt.datetime | None


class TokenRead(BaseModel):
    token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: dt.datetime | None
    operator: OperatorRead


class ApiTokenRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str = Field(description="The first characters of the secret, to recognise it by")
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None


class OperatorCreate(BaseModel):
    username: str = Field(min_length=2, max_length=64)
    password: str = Field(min_length=8, max_length=200)
    role: Role
    display_name: str = Field(default="", max_length=100)


class ExpiryPolicy(BaseModel):
    kind: Literal["never", "days", "year_end"]
    days: int | None = Field(default=None, ge=1, le=36500)
    years: int | None = Field(default=None, ge=0, le=100)


class TenantRead(BaseModel):
    id: int
    slug: str
    name: str
    timezone: str
    settings: dict[str, Any]


class WechatCredentials(BaseModel):
    """The tenant's mini-program credentials; the secret is write-only (never read back)."""

    appid: str = Field(pattern=r"^wx[0-9a-fA-F]{16}$", examples=["wx1234567890abcdef"])
    secret: str = Field(min_length=16, max_length=64)


class TenantSettingsUpdate(BaseModel):
    points_expiry: ExpiryPolicy | None = None
    brand_color: str | None = Field(default=None, pattern=r"^#[0-9a-fA-F]{6}$")
    wechat: WechatCredentials | None = None


class OwnerCreate(BaseModel):
    username: str = Field(min_length=2, max_length=64)
    password: str = Field(min_length=8, max_length=200)


class TenantCreate(BaseModel):
    slug: str = Field(min_length=2, max_length=40, examples=["lijiaqi"])
    name: str = Field(min_length=1, max_length=100, examples=["所有女生"])
    timezone: str = Field(default="Asia/Shanghai", max_length=64)
    owner: OwnerCreate


class TenantCreated(BaseModel):
    tenant: TenantRead
    owner: OperatorRead

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from siyu.core import clock
from siyu.core.db import Base, UTCDateTime

PLATFORMS = ("taobao", "douyin", "kuaishou")


class Member(Base):
    """A fan, per tenant, known by the WeChat openid of the tenant's mini program."""

    __tablename__ = "members"
    __table_args__ = (
        UniqueConstraint("tenant_id", "openid"),
        Index("ix_members_tenant_unionid", "tenant_id", "unionid"),
        Index("ix_members_tenant_joined", "tenant_id", "joined_at"),
        # The key of (tenant_id, member_id) references (core.db.of_tenant).
        Index("ix_members_of_tenant", "tenant_id", "id", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    openid: Mapped[str] = mapped_column(String(64))
    unionid: Mapped[str | None] = mapped_column(String(64))
    nickname: Mapped[str] = mapped_column(String(64), default="")
    avatar_url: Mapped[str] = mapped_column(String(500), default="")
    phone: Mapped[str | None] = mapped_column(String(20))
    source_channel: Mapped[str] = mapped_column(String(40), default="")
    joined_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)

    tag_rows: Mapped[list[MemberTag]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="MemberTag.tag"
    )
    accounts: Mapped[list[PlatformAccount]] = relationship(
        lazy="selectin", order_by="PlatformAccount.platform"
    )

    @property
    def tags(self) -> list[str]:
        return [row.tag for row in self.tag_rows]


class MemberTag(Base):
    """A label on a member (self-chosen "region-skin type", campaign, segment…)."""

    __tablename__ = "member_tags"
    __table_args__ = (
        UniqueConstraint("member_id", "tag"),
        Index("ix_member_tags_tenant_tag", "tenant_id", "tag"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    tag: Mapped[str] = mapped_column(String(40))


class PlatformAccount(Base):
    """A member's account on a selling platform (Taobao nick, Douyin id…).

    One account belongs to one member of a tenant; a member has one account per platform.
    """

    __tablename__ = "platform_accounts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "platform", "account"),
        UniqueConstraint("tenant_id", "member_id", "platform"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    platform: Mapped[str] = mapped_column(String(16))
    account: Mapped[str] = mapped_column(String(64))
    bound_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)


class Tier(Base):
    """A membership level reached at ``min_growth`` lifetime earned points."""

    __tablename__ = "tiers"
    __table_args__ = (UniqueConstraint("tenant_id", "min_growth"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(40))
    min_growth: Mapped[int] = mapped_column(default=0)

"""Product trials (试用): campaigns, applications, the committed seed and trial reports."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from siyu.core import clock
from siyu.core.db import Base, UTCDateTime

# Campaign states: open (applications in the window), drawn (winners known).
OPEN, DRAWN = "open", "drawn"
# Application states.
APPLIED, WON, LOST = "applied", "won", "lost"
# Report states.
SUBMITTED, ACCEPTED, REJECTED = "submitted", "accepted", "rejected"


class Trial(Base):
    __tablename__ = "trials"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    title: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    image_url: Mapped[str] = mapped_column(String(500), default="")
    slots: Mapped[int]
    apply_from: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    apply_until: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    points_cost: Mapped[int] = mapped_column(default=0)
    min_growth: Mapped[int | None]
    tag: Mapped[str | None] = mapped_column(String(40))
    report_deadline: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    report_reward: Mapped[int] = mapped_column(default=0)
    # hex SHA-256 of the seed, public from the start.
    commitment: Mapped[str] = mapped_column(String(64))
    # The seed (hex): kept secret until the draw when the server chose it ("server"); empty
    # until the operator reveals it at the draw when they chose it ("operator").
    seed_hex: Mapped[str] = mapped_column(String(128), default="")
    seed_source: Mapped[str] = mapped_column(String(16), default="server")
    status: Mapped[str] = mapped_column(String(16), default=OPEN)
    entries: Mapped[int] = mapped_column(default=0)
    drawn_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # A public, unguessable handle for the verification page (/draws/{code}).
    public_code: Mapped[str] = mapped_column(String(32), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)


class Application(Base):
    __tablename__ = "trial_applications"
    __table_args__ = (
        UniqueConstraint("trial_id", "member_id"),
        Index("ix_trial_applications_status", "trial_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=APPLIED)
    # 1-based place in the draw order, for winners.
    rank: Mapped[int | None]
    spend_entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))
    refund_entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("mall_orders.id"))
    ship_name: Mapped[str] = mapped_column(String(40), default="")
    ship_phone: Mapped[str] = mapped_column(String(20), default="")
    ship_address: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)


class Report(Base):
    __tablename__ = "trial_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id"), index=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("trial_applications.id"), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    text: Mapped[str] = mapped_column(Text)
    images: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default=SUBMITTED)
    late: Mapped[bool] = mapped_column(default=False)
    submitted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    review_note: Mapped[str] = mapped_column(String(500), default="")
    reward_entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))

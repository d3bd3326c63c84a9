"""Live sessions, their lineups and members' reservations.

A reservation targets a whole session (``product_id`` NULL: remind me when the broadcast
starts) or one product of its lineup (remind me when it goes on sale). ``target`` spells the
target as ``s<session id>`` or ``p<product id>`` so one unique index keeps one reservation per
member and target on both databases (a NULL in a unique index never conflicts).

Reminding: ``remind_state`` goes ``waiting`` → ``due`` (stamping ``remind_due_at``) by a
conditional UPDATE when the messaging engine queues the reservation's reminder (the "on sale
now" action or the session start fans out; the expansion marks each chunk of reservers in the
transaction that writes their deliveries), then → ``sent`` (stamping ``reminded_at``) or
``failed`` in the transaction that records the channel's answer (live.reminders hooks). None of
these columns is indexed, so each step is a HOT update on PostgreSQL (the table keeps free room
on its pages: fillfactor 90, set by the migration).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from siyu.core import clock
from siyu.core.db import Base, UTCDateTime

PLATFORMS = ("taobao", "douyin", "kuaishou")

# Session statuses and the transitions between them.
SCHEDULED, LIVE, ENDED, CANCELLED = "scheduled", "live", "ended", "cancelled"
STATUSES = (SCHEDULED, LIVE, ENDED, CANCELLED)
TRANSITIONS = {SCHEDULED: (LIVE, CANCELLED), LIVE: (ENDED,), ENDED: (), CANCELLED: ()}

# Product statuses.
PLANNED, ON_SALE = "planned", "on_sale"

# Reservation reminder states.
WAITING, DUE, SENT, FAILED = "waiting", "due", "sent", "failed"


class LiveSession(Base):
    __tablename__ = "live_sessions"
    __table_args__ = (
        Index("ix_live_sessions_calendar", "tenant_id", "starts_at"),
        UniqueConstraint("tenant_id", "idempotency_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    platform: Mapped[str] = mapped_column(String(16))
    theme: Mapped[str] = mapped_column(String(60))
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    cover_url: Mapped[str] = mapped_column(String(500), default="")
    room_url: Mapped[str] = mapped_column(String(500), default="")
    # The 淘口令 share text as the operator pasted it (validated to contain one token).
    taobao_password: Mapped[str] = mapped_column(String(500), default="")
    status: Mapped[str] = mapped_column(String(16), default=SCHEDULED)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The public shopping-guide link; NULL when none was made or it was revoked.
    share_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)


class LiveProduct(Base):
    """One product of a session's lineup."""

    __tablename__ = "live_products"
    __table_args__ = (
        Index("ix_live_products_lineup", "session_id", "position"),
        UniqueConstraint("tenant_id", "idempotency_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("live_sessions.id"))
    position: Mapped[int] = mapped_column(default=0)
    title: Mapped[str] = mapped_column(String(120))
    brand: Mapped[str] = mapped_column(String(60), default="")
    image_url: Mapped[str] = mapped_column(String(500), default="")
    live_price_fen: Mapped[int]
    list_price_fen: Mapped[int]
    stock_note: Mapped[str] = mapped_column(String(120), default="")
    # Planned on-sale time during the broadcast (None: not announced).
    slot_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # A purchase URL or a 淘口令 share text.
    link: Mapped[str] = mapped_column(String(500), default="")
    delivery_note: Mapped[str] = mapped_column(String(120), default="")
    status: Mapped[str] = mapped_column(String(16), default=PLANNED)
    on_sale_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)


class Reservation(Base):
    __tablename__ = "live_reservations"
    __table_args__ = (
        UniqueConstraint("tenant_id", "member_id", "target"),
        Index("ix_live_reservations_session", "session_id", "product_id"),
        # The fan-out's reads by target, in member id order (expansion chunks, tracked links).
        Index("ix_live_reservations_target", "target", "member_id"),
        Index("ix_live_reservations_mine", "tenant_id", "member_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    session_id: Mapped[int] = mapped_column(ForeignKey("live_sessions.id"))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("live_products.id"))
    target: Mapped[str] = mapped_column(String(24))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    remind_state: Mapped[str] = mapped_column(String(16), default=WAITING)
    remind_due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    reminded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The tracked link of the reminder (/r/<token>): first click and count.
    click_token: Mapped[str] = mapped_column(String(32), unique=True)
    clicked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    clicks: Mapped[int] = mapped_column(default=0)

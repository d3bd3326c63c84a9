"""Imported live-room orders, the imports that brought them, and members' claims.

One ``Order`` per (tenant, platform, order number): re-importing updates it in place. A
``Claim`` ties an order to a member; ``active_key`` (platform:order number, NULL once a claim
is rejected or expired) is unique per tenant, so no two live claims can hold one order,
whatever the race.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from siyu.core import clock
from siyu.core.db import Base, UTCDateTime

# Order statuses, normalised from every platform's wording.
UNPAID, PAID, SHIPPED, FINISHED, CLOSED = "unpaid", "paid", "shipped", "finished", "closed"
STATUSES = (UNPAID, PAID, SHIPPED, FINISHED, CLOSED)
CLAIMABLE = (PAID, SHIPPED, FINISHED)

# Claim statuses.
PENDING, REVIEW, CREDITED, REJECTED, REVERSED, EXPIRED = (
    "pending",  # the order is not imported yet
    "review",  # flagged: waits for an operator
    "credited",
    "rejected",
    "reversed",  # refunded after crediting: points taken back (all or part)
    "expired",  # still not imported when the claim window closed
)
LIVE_CLAIMS = (PENDING, REVIEW, CREDITED, REVERSED)

# Import statuses.
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("tenant_id", "platform", "order_no"),
        Index("ix_orders_tenant_session", "tenant_id", "session_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    platform: Mapped[str] = mapped_column(String(16))
    order_no: Mapped[str] = mapped_column(String(64))
    buyer: Mapped[str] = mapped_column(String(64), default="")
    paid_fen: Mapped[int] = mapped_column(default=0)
    refund_fen: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16))
    ordered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    paid_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    items: Mapped[str] = mapped_column(String(500), default="")
    # A live session's id (the live domain is built separately: no foreign key yet).
    session_id: Mapped[int | None] = mapped_column()
    # The import that last wrote it: provenance, no foreign key (imports are never deleted;
    # the key's per-row lock on the import row cost a quarter of an import's writing; see the
    # migration "orders import provenance").
    import_id: Mapped[int | None]
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)


class Import(Base):
    """One uploaded file and what became of its rows (rows = imported + updated + rejected)."""

    __tablename__ = "orders_imports"
    __table_args__ = (Index("ix_orders_imports_tenant", "tenant_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    filename: Mapped[str] = mapped_column(String(200), default="")
    format: Mapped[str] = mapped_column(String(16), default="")
    encoding: Mapped[str] = mapped_column(String(16), default="")
    session_id: Mapped[int | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    size_bytes: Mapped[int] = mapped_column(default=0)
    bytes_read: Mapped[int] = mapped_column(default=0)
    rows: Mapped[int] = mapped_column(default=0)
    imported: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    rejected: Mapped[int] = mapped_column(default=0)
    error: Mapped[str] = mapped_column(String(500), default="")
    # Jobs that started it: an import interrupted mid-file is run again from the start, at
    # most ``service.MAX_ATTEMPTS`` times in all (service.recover_imports).
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    # The uploaded file's name under SIYU_VAR_DIR/imports while it waits for its job ("" for
    # an import run from a file of the operator's, `siyu orders import`).
    upload_file: Mapped[str] = mapped_column(String(100), default="", server_default="")
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Stamped by every change of the row (status, counters, bytes read): a running import
    # whose stamp stops moving lost its worker (service.recover_imports).
    progress_at: Mapped[dt.datetime | None] = mapped_column(
        UTCDateTime, default=clock.now, onupdate=clock.now
    )


class ImportReject(Base):
    __tablename__ = "orders_import_rejects"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    import_id: Mapped[int] = mapped_column(ForeignKey("orders_imports.id"), index=True)
    line: Mapped[int]
    column: Mapped[str] = mapped_column(String(64), default="")
    reason: Mapped[str] = mapped_column(String(200))


class Claim(Base):
    __tablename__ = "orders_claims"
    __table_args__ = (
        UniqueConstraint("tenant_id", "active_key"),
        Index("ix_orders_claims_member", "tenant_id", "member_id", "id"),
        Index("ix_orders_claims_order", "tenant_id", "platform", "order_no"),
        Index("ix_orders_claims_status", "tenant_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    platform: Mapped[str] = mapped_column(String(16))
    order_no: Mapped[str] = mapped_column(String(64))
    account: Mapped[str] = mapped_column(String(64))
    # "platform:order_no" while the claim holds the order; NULL once rejected or expired.
    active_key: Mapped[str | None] = mapped_column(String(82))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(200), default="")
    points: Mapped[int] = mapped_column(default=0)
    # Points taken back after refunds (from the wallet or, if spent, recorded as debt).
    clawed_points: Mapped[int] = mapped_column(default=0)
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))
    flagged: Mapped[bool] = mapped_column(default=False)
    ip: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))


class ClaimAttempt(Base):
    """Every claim attempt, for rate limits, lockout and the several-members flag."""

    __tablename__ = "orders_claim_attempts"
    __table_args__ = (
        Index("ix_orders_claim_attempts_member", "tenant_id", "member_id", "created_at"),
        Index("ix_orders_claim_attempts_ip", "tenant_id", "ip", "created_at"),
        Index("ix_orders_claim_attempts_account", "tenant_id", "platform", "account"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    ip: Mapped[str] = mapped_column(String(64), default="")
    platform: Mapped[str] = mapped_column(String(16))
    account: Mapped[str] = mapped_column(String(64))
    ok: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)


class AccountRebind(Base):
    """Audit trail: an operator moved a platform account from one member to another."""

    __tablename__ = "orders_account_rebinds"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    platform: Mapped[str] = mapped_column(String(16))
    account: Mapped[str] = mapped_column(String(64))
    from_member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    to_member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    reason: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)

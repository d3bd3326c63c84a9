"""Double-entry points ledger.

Every change is a ``JournalEntry`` whose ``Posting`` rows sum to zero across accounts. Member
wallets keep a running ``balance`` (updated in the same transaction as their postings, so reads
are O(1)) and hold points in ``Lot`` rows that may expire. System accounts (issuance, sinks)
keep no running balance: they would be one hot row every transaction of a tenant queues on;
their balances are sums of postings, computed by reports and ``siyu ledger verify``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from siyu.core import clock
from siyu.core.db import Base, UTCDateTime, of_tenant

# Account kinds. A member wallet is the only kind a member owns and the only one that must
# never go negative.
WALLET = "wallet"
ISSUANCE = "issuance"  # where granted points come from (negative: points owed to members)
REDEMPTION = "redemption"  # where spent points go
EXPIRY = "expiry"  # where expired points go
SYSTEM_KINDS = (ISSUANCE, REDEMPTION, EXPIRY)
# Per member "debt:<member_id>": points clawed back after they were spent (see ledger/debt.py).
DEBT_ACCOUNT = "debt"

# Entry kinds.
CREDIT, DEBIT, EXPIRE, REVERSAL = "credit", "debit", "expire", "reversal"
DEBT, SETTLE = "debt", "settle"  # a debt recorded; a debt paid from new earnings


class Account(Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "code"),
        CheckConstraint("kind != 'wallet' OR balance >= 0", name="wallet_not_negative"),
        # The key of (tenant_id, account_id) references: a posting or lot names its account
        # and its tenant in one foreign key, which the database checks together.
        Index("ix_ledger_accounts_of_tenant", "tenant_id", "id", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    # "wallet:<member_id>" or the system kind; unique per tenant.
    code: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(16))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), unique=True)
    balance: Mapped[int] = mapped_column(default=0)
    # Lifetime points earned (credits less reversed credits); spending and expiry leave it.
    growth: Mapped[int] = mapped_column(default=0)
    # Wallets only: points the member owes (clawed back after being spent); the next
    # earnings settle it first. Mirrors minus the balance of the member's debt account.
    debt: Mapped[int] = mapped_column(default=0, server_default="0")


class JournalEntry(Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_ledger_entries_member_history", "tenant_id", "member_id", "id"),
        # Reversals are rare: only they are indexed, not every entry's NULL.
        Index(
            "ix_ledger_entries_reverses_id",
            "reverses_id",
            postgresql_where=text("reverses_id IS NOT NULL"),
            sqlite_where=text("reverses_id IS NOT NULL"),
        ),
        of_tenant("member_id", "members"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int]
    member_id: Mapped[int]
    kind: Mapped[str] = mapped_column(String(16))
    # Signed change of the member wallet (denormalised from the postings for history pages).
    points: Mapped[int]
    reason: Mapped[str] = mapped_column(String(64))
    memo: Mapped[str] = mapped_column(String(500), default="")
    reference: Mapped[str] = mapped_column(String(200), default="")
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str] = mapped_column(String(64), default="")
    idempotency_key: Mapped[str] = mapped_column(String(200))
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))
    # Whether a credit raised the member's growth (reversing it must lower growth only then).
    counts_for_growth: Mapped[bool] = mapped_column(default=True)
    # Points of this entry already undone by reversals (a reversal may be partial).
    reversed_points: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)


class Posting(Base):
    __tablename__ = "ledger_postings"
    __table_args__ = (
        Index("ix_ledger_postings_account", "account_id", "entry_id"),
        of_tenant("account_id", "ledger_accounts"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int]
    entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"), index=True)
    account_id: Mapped[int]
    amount: Mapped[int]


class Lot(Base):
    """Points credited together, with one expiry. Debits consume lots earliest-expiry first."""

    __tablename__ = "ledger_lots"
    __table_args__ = (
        # A wallet's lots in the order spends take them. Not on ``remaining``: a spend's
        # update of a lot then changes no indexed column and stays on its page (HOT).
        Index("ix_ledger_lots_open", "account_id", "expires_at"),
        Index("ix_ledger_lots_due", "tenant_id", "expires_at"),
        CheckConstraint("remaining >= 0 AND remaining <= points", name="remaining_in_range"),
        of_tenant("account_id", "ledger_accounts"),
        Index("ix_ledger_lots_of_tenant", "tenant_id", "id", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int]
    account_id: Mapped[int]
    entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"), index=True)
    points: Mapped[int]
    remaining: Mapped[int]
    # Points expired from this lot so far (derives unique keys for repeated expiries).
    expired: Mapped[int] = mapped_column(default=0)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)


class LotMovement(Base):
    """How many points an entry took from (negative) or returned to (positive) a lot.

    Reversing a debit puts the points back into the lots they came from, keeping their
    original expiry; ``siyu ledger verify`` rebuilds every lot's remainder from these rows.
    """

    __tablename__ = "ledger_lot_movements"
    __table_args__ = (of_tenant("lot_id", "ledger_lots"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int]
    entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"), index=True)
    lot_id: Mapped[int] = mapped_column(index=True)
    points: Mapped[int]

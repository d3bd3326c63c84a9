"""Daily check-ins: one row per member per tenant-local day.

The unique (tenant, member, day) index is the guard against double taps and races: the first
insert wins, a concurrent one waits on the index and then finds the day taken. The points go
through the ledger with the key ``checkin:<member>:<day>`` (make-ups spend under
``checkin-makeup:<member>:<day>``), so even a replay outside this table pays once; that key is
also how a check-in finds its ledger entry.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Date, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from siyu.core import clock
from siyu.core.db import Base, UTCDateTime, of_tenant

DAILY, MAKEUP = "daily", "makeup"


class Checkin(Base):
    __tablename__ = "checkins"
    __table_args__ = (
        UniqueConstraint("tenant_id", "member_id", "checked_on"),
        of_tenant("member_id", "members"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int]
    # Looked up by (tenant_id, member_id, …): the unique key's index serves it.
    member_id: Mapped[int]
    # The tenant-local day checked in for.
    checked_on: Mapped[dt.date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(8), default=DAILY)
    # Consecutive days ending on this day, when it was recorded.
    streak: Mapped[int] = mapped_column(default=1)
    # Points granted (daily) or spent (make-up).
    points: Mapped[int] = mapped_column(default=0)
    bonus: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)

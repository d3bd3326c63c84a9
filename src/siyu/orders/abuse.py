"""Claim abuse controls: rate limits, lockout after failures, the several-members flag.

- Rate limits (fixed one-minute windows): per member and per client IP. Counted in Redis
  (``INCR`` + ``EXPIRE``, shared by every web process) when ``SIYU_REDIS_URL`` is set, else
  from the attempts table (the embedded default: one database, so still shared).
- Lockout: ``failures_to_lock`` rejected claims within ``lock_minutes`` lock the member's
  claiming until the oldest of them is ``lock_minutes`` old. Guessing order numbers is the
  obvious attack; every guess that misses is a rejected claim.
- Flag: a platform account tried by more than one member sends the claim to the operators'
  review queue instead of crediting it.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from siyu.core import clock
from siyu.core.settings import get_settings
from siyu.orders import errors as e
from siyu.orders import models as m


def limits() -> dict[str, int]:
    from siyu.orders.service import LIMITS

    return LIMITS


@lru_cache(maxsize=1)
def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def _window_count(db: Session, tenant_id: int, who: str, value: str | int) -> int:
    """Attempts in the current minute by this member or IP, this one included."""
    now = clock.now()
    url = get_settings().redis_url
    if url:
        minute = int(now.timestamp()) // 60
        key = f"{get_settings().queue_name}:orders:rate:{tenant_id}:{who}:{value}:{minute}"
        pipe = _redis(url).pipeline()
        pipe.incr(key)
        pipe.expire(key, 120)
        count, _ok = pipe.execute()
        return int(count)
    start = now.replace(second=0, microsecond=0)
    col = m.ClaimAttempt.member_id if who == "member" else m.ClaimAttempt.ip
    return 1 + int(
        db.scalar(
            select(func.count())
            .select_from(m.ClaimAttempt)
            .where(
                m.ClaimAttempt.tenant_id == tenant_id,
                col == value,
                m.ClaimAttempt.created_at >= start,
            )
        )
        or 0
    )


def check(db: Session, *, tenant_id: int, member_id: int, ip: str) -> None:
    """Raise ClaimingLocked or RateLimited before a claim attempt is judged."""
    lim = limits()
    now = clock.now()
    window = dt.timedelta(minutes=lim["lock_minutes"])
    failures = db.scalars(
        select(m.ClaimAttempt.created_at)
        .where(
            m.ClaimAttempt.tenant_id == tenant_id,
            m.ClaimAttempt.member_id == member_id,
            m.ClaimAttempt.ok.is_(False),
            m.ClaimAttempt.created_at > now - window,
        )
        .order_by(m.ClaimAttempt.created_at.desc())
        .limit(lim["failures_to_lock"])
    ).all()
    if len(failures) >= lim["failures_to_lock"]:
        until = clock.as_utc(failures[-1]) + window
        raise e.ClaimingLocked(until=until.isoformat(timespec="minutes"))
    seconds = 60 - now.second
    if _window_count(db, tenant_id, "member", member_id) > lim["member_per_minute"]:
        raise e.RateLimited(seconds=seconds)
    if ip and _window_count(db, tenant_id, "ip", ip) > lim["ip_per_minute"]:
        raise e.RateLimited(seconds=seconds)


def record_attempt(
    db: Session, *, tenant_id: int, member_id: int, ip: str, platform: str, account: str
) -> bool:
    """Record a (so far failed) attempt; True if other members have tried this account."""
    db.add(
        m.ClaimAttempt(
            tenant_id=tenant_id,
            member_id=member_id,
            ip=ip,
            platform=platform,
            account=account,
            ok=False,
            created_at=clock.now(),
        )
    )
    db.flush()
    others = db.scalar(
        select(func.count(func.distinct(m.ClaimAttempt.member_id))).where(
            m.ClaimAttempt.tenant_id == tenant_id,
            m.ClaimAttempt.platform == platform,
            m.ClaimAttempt.account == account,
        )
    )
    return int(others or 0) > 1


def mark_ok(db: Session, *, tenant_id: int, member_id: int) -> None:
    """The member's latest attempt succeeded (credited, pending or in review)."""
    latest = db.scalar(
        select(func.max(m.ClaimAttempt.id)).where(
            m.ClaimAttempt.tenant_id == tenant_id, m.ClaimAttempt.member_id == member_id
        )
    )
    if latest is not None:
        db.execute(
            update(m.ClaimAttempt)
            .where(m.ClaimAttempt.id == latest)
            .values(ok=True)
            .execution_options(synchronize_session=False)
        )

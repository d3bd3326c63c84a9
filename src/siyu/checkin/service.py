"""Daily check-in: the only code that writes check-ins.

A member checks in once per tenant-local day. The tenant's rule (``tenant.settings["checkin"]``,
edited in the console) gives base points, bonuses on given streak days (e.g. day 7) and the
make-up check-in: a missed day of the last ``makeup_days`` can be filled for ``makeup_cost``
points, which restores the streak (it earns no points itself).

A streak is the run of consecutive checked-in days ending on a day; a missed day ends it, so
the next check-in starts again at 1.

Idempotency and races: the day is claimed with ``INSERT … ON CONFLICT DO NOTHING`` on the
unique (tenant, member, day) index — concurrent taps wait on the index and then find the day
taken, and get the first check-in back. The points are granted with the ledger key
``checkin:<member>:<day>`` (make-ups spend ``checkin-makeup:<member>:<day>``), so they are paid
once even if a request is replayed. The rows and the points commit together or not at all.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session, lazyload

from siyu.checkin.errors import InvalidRule, MakeupNotAllowed
from siyu.checkin.models import DAILY, MAKEUP, Checkin
from siyu.core import clock
from siyu.core import db as dbmod
from siyu.core.i18n import gettext as _
from siyu.ledger import service as ledger
from siyu.members.models import Member
from siyu.tenants.models import Tenant

DEFAULT_RULE: dict[str, Any] = {
    "base": 5,
    "bonuses": [{"day": 3, "points": 10}, {"day": 7, "points": 30}],
    "makeup_days": 3,
    "makeup_cost": 20,
}
LOOKBACK_DAYS = 400  # streaks are counted this far back at most
MAX_POINTS = 100_000


@dataclass(frozen=True)
class Rule:
    base: int
    bonuses: dict[int, int]  # streak day → bonus points
    makeup_days: int  # 0: no make-up check-ins
    makeup_cost: int

    def bonus_for(self, streak: int) -> int:
        return self.bonuses.get(streak, 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "bonuses": [{"day": d, "points": p} for d, p in sorted(self.bonuses.items())],
            "makeup_days": self.makeup_days,
            "makeup_cost": self.makeup_cost,
        }


def _int(name: str, value: Any, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise InvalidRule(
            field=name, problem=_("a whole number from {lo} to {hi}").format(lo=lo, hi=hi)
        )
    return value


def parse_rule(raw: Any) -> Rule:
    """Validate a rule given as a dict (API, console, stored settings). Raises InvalidRule."""
    if not isinstance(raw, dict):
        raise InvalidRule(field="rule", problem=_("an object"))
    bonuses: dict[int, int] = {}
    raw_bonuses = raw.get("bonuses", [])
    if not isinstance(raw_bonuses, list) or len(raw_bonuses) > 20:
        raise InvalidRule(field="bonuses", problem=_("a list of at most 20 bonuses"))
    for b in raw_bonuses:
        if not isinstance(b, dict):
            raise InvalidRule(field="bonuses", problem=_("each bonus has a day and points"))
        day = _int("bonuses.day", b.get("day"), 1, 366)
        if day in bonuses:
            raise InvalidRule(field="bonuses.day", problem=_("day {d} twice").format(d=day))
        bonuses[day] = _int("bonuses.points", b.get("points"), 1, MAX_POINTS)
    return Rule(
        base=_int("base", raw.get("base", 0), 0, MAX_POINTS),
        bonuses=bonuses,
        makeup_days=_int("makeup_days", raw.get("makeup_days", 0), 0, 30),
        makeup_cost=_int("makeup_cost", raw.get("makeup_cost", 0), 0, MAX_POINTS),
    )


def rule_of(tenant: Tenant) -> Rule:
    return parse_rule((tenant.settings or {}).get("checkin") or DEFAULT_RULE)


def get_rule(db: Session, *, tenant_id: int) -> Rule:
    tenant = db.get(Tenant, tenant_id)
    assert tenant is not None
    return rule_of(tenant)


def set_rule(db: Session, *, tenant_id: int, rule: dict[str, Any]) -> Rule:
    from siyu.tenants import service as tenants

    parsed = parse_rule(rule)
    tenants.update_settings(db, tenant_id=tenant_id, changes={"checkin": parsed.as_dict()})
    return parsed


def today_for(tenant: Tenant) -> dt.date:
    return clock.local_date(clock.now(), tenant.timezone)


def _days_before(db: Session, tenant_id: int, member_id: int, day: dt.date) -> list[dt.date]:
    """Checked-in days in the lookback window up to and including ``day``, latest first."""
    return list(
        db.scalars(
            select(Checkin.checked_on)
            .where(
                Checkin.tenant_id == tenant_id,
                Checkin.member_id == member_id,
                Checkin.checked_on <= day,
                Checkin.checked_on > day - dt.timedelta(days=LOOKBACK_DAYS),
            )
            .order_by(Checkin.checked_on.desc())
        )
    )


def _run_ending(days: list[dt.date], day: dt.date) -> int:
    """Length of the run of consecutive days in ``days`` (latest first) ending on ``day``."""
    have = set(days)
    n = 0
    while day - dt.timedelta(days=n) in have:
        n += 1
    return n


@dataclass
class Result:
    checkin: Checkin
    created: bool  # False: this day was already checked in (double tap, retry, race)
    streak: int  # the member's current streak after this call


def _claim(db: Session, row: Checkin) -> Checkin | None:
    """Insert unless the day is taken (None). One statement, no SAVEPOINT."""
    insert = ledger._insert(db)  # the dialect's INSERT with ON CONFLICT (sqlite, postgresql)
    values = {c.key: getattr(row, c.key) for c in Checkin.__table__.columns if c.key != "id"}
    stmt = (
        insert(Checkin)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["tenant_id", "member_id", "checked_on"])
        .returning(Checkin)
    )
    return db.scalars(stmt, execution_options={"populate_existing": True}).first()


def _existing(db: Session, tenant_id: int, member_id: int, day: dt.date) -> Checkin:
    found = db.scalars(
        select(Checkin).where(
            Checkin.tenant_id == tenant_id,
            Checkin.member_id == member_id,
            Checkin.checked_on == day,
        )
    ).first()
    assert found is not None
    return found


def _tenant_and_days(
    db: Session, tenant_id: int, member_id: int
) -> tuple[str, dict[str, Any], dt.date, list[dt.date]]:
    """The tenant's timezone and settings, today there, and the member's checked-in days up
    to today (latest first): one round trip, the tenant row joined to the check-ins."""
    # Any timezone's today is within a day of UTC's: bound the window from UTC, trim after.
    utc_today = clock.now().date()
    rows = db.execute(
        select(Tenant.timezone, Tenant.settings, Checkin.checked_on)
        .outerjoin(
            Checkin,
            and_(
                Checkin.tenant_id == Tenant.id,
                Checkin.member_id == member_id,
                Checkin.checked_on > utc_today - dt.timedelta(days=LOOKBACK_DAYS + 1),
                Checkin.checked_on <= utc_today + dt.timedelta(days=1),
            ),
        )
        .where(Tenant.id == tenant_id)
        .order_by(Checkin.checked_on.desc())
    ).all()
    assert rows, f"no tenant {tenant_id}"
    tz, settings = rows[0].timezone, rows[0].settings or {}
    today = clock.local_date(clock.now(), tz)
    days = [r.checked_on for r in rows if r.checked_on is not None and r.checked_on <= today]
    return tz, settings, today, days


def check_in(db: Session, *, tenant_id: int, member_id: int) -> Result:
    """Today's check-in (tenant-local day): base points plus the streak bonus, paid once.

    Repeats the same day return the first check-in with ``created`` False."""
    _tz, settings, today, days = _tenant_and_days(db, tenant_id, member_id)
    rule = parse_rule(settings.get("checkin") or DEFAULT_RULE)
    if days and days[0] == today:
        return Result(_existing(db, tenant_id, member_id, today), False, _run_ending(days, today))
    streak = 1 + _run_ending(days, today - dt.timedelta(days=1))
    bonus = rule.bonus_for(streak)
    row = Checkin(
        tenant_id=tenant_id,
        member_id=member_id,
        checked_on=today,
        kind=DAILY,
        streak=streak,
        points=rule.base + bonus,
        bonus=bonus,
        created_at=clock.now(),
    )
    claimed = _claim(db, row)
    if claimed is None:  # a concurrent tap committed first
        found = _existing(db, tenant_id, member_id, today)
        return Result(found, False, found.streak)
    if claimed.points:
        ledger.grant(
            db,
            tenant_id=tenant_id,
            member_id=member_id,
            points=claimed.points,
            reason="checkin",
            memo=_("Check-in, day {n} in a row").format(n=streak),
            reference=f"checkin:{today.isoformat()}",
            idempotency_key=f"checkin:{member_id}:{today.isoformat()}",
            actor=ledger.Actor.member(member_id),
        )
    return Result(claimed, True, streak)


# --- a member's check-in as a request makes it ------------------------------------------------

# The function of the "checkin function" migration: check_in in one round trip (PostgreSQL).
_ONE_CALL = (
    "SELECT r_status, r_id, r_checked_on, r_kind, r_streak, r_points, r_bonus, r_created_at,"
    " r_current FROM siyu_checkin(%s::integer, %s::integer, %s::timestamptz, %s::json, %s,"
    " %s::integer)"
)
_DEFAULT_RULE_JSON = json.dumps(DEFAULT_RULE)


# SQLSTATE of siyu_checkin's "not my case": it has undone its work, Python's turn.
LEAVE_TO_PYTHON = "SY001"


class OneCallUnavailable(Exception):
    """The one-call check-in cannot answer: not on PostgreSQL with an async pool, or a case it
    leaves to the Python implementation (nothing was changed). Run ``check_in_member``."""


def _one_call_params(tenant_id: int, member_id: int) -> tuple[Any, ...]:
    memo = _("Check-in, day {n} in a row")  # the function puts the streak day in for {n}
    return (tenant_id, member_id, clock.now(), _DEFAULT_RULE_JSON, memo, LOOKBACK_DAYS)


def _one_call_result(tenant_id: int, member_id: int, found: Any) -> Result | None:
    status, *row = found
    if status == "no_member":
        return None
    checkin = Checkin(
        id=row[0],
        tenant_id=tenant_id,
        member_id=member_id,
        checked_on=row[1],
        kind=row[2],
        streak=row[3],
        points=row[4],
        bonus=row[5],
        created_at=clock.as_utc(row[6]),
    )
    return Result(checkin, status == "created", row[7])


def _left_to_python(err: Exception) -> bool:
    return getattr(err, "sqlstate", None) == LEAVE_TO_PYTHON


async def check_in_one_call(*, tenant_id: int, member_id: int) -> Result | None:
    """``check_in_member`` in one round trip on the process's asyncio connections
    (core.db.AsyncPool), committed on return: no thread, no Session. Raises
    OneCallUnavailable where ``check_in_member`` must run instead."""
    pool = dbmod.async_pool()
    if pool is None:
        raise OneCallUnavailable()
    async with pool.connection() as conn:  # autocommit: the call is its own transaction
        try:
            cur = await conn.execute(_ONE_CALL, _one_call_params(tenant_id, member_id))
        except Exception as err:
            if _left_to_python(err):
                raise OneCallUnavailable() from err
            raise
        return _one_call_result(tenant_id, member_id, await cur.fetchone())


def check_in_member(*, tenant_id: int, member_id: int, one_call: bool = True) -> Result | None:
    """``check_in`` for the member of a token, in a transaction of its own (committed on
    return); None when the tenant has no such member.

    On PostgreSQL one call of ``siyu_checkin`` (migration "checkin function") does it all in
    one round trip on the driver's connection: no Session, no ORM, which cost several times
    the server's work. Should the function meet a case it leaves to Python (no wallet, debt),
    its work is rolled back and ``check_in`` below, the reference, runs instead; tests/checkin
    runs the same scenarios through both.
    """
    if one_call and dbmod.get_engine().dialect.name == "postgresql":
        try:
            with dbmod.dbapi_transaction() as conn, conn.cursor() as cur:
                cur.execute(_ONE_CALL, _one_call_params(tenant_id, member_id))
                return _one_call_result(tenant_id, member_id, cur.fetchone())
        except Exception as err:  # rolled back
            if not _left_to_python(err):
                raise
    with dbmod.unit_of_work() as db:
        # lazyload: what the member dependency loads (tags and accounts only if read)
        member = db.get(Member, member_id, options=[lazyload("*")])
        if member is None or member.tenant_id != tenant_id:
            return None
        return check_in(db, tenant_id=tenant_id, member_id=member_id)


def make_up(db: Session, *, tenant_id: int, member_id: int, day: dt.date) -> Result:
    """Fill a missed day of the last ``makeup_days`` for ``makeup_cost`` points.

    Raises MakeupNotAllowed (off, not a past day, too long ago, already a daily check-in) or
    points.insufficient; a repeat for the same day returns the first make-up, charged once."""
    tenant = db.get(Tenant, tenant_id)
    assert tenant is not None
    rule = rule_of(tenant)
    today = today_for(tenant)
    if rule.makeup_days == 0:
        raise MakeupNotAllowed(problem=_("Make-up check-ins are turned off"))
    if day >= today:
        raise MakeupNotAllowed(problem=_("Only a past day can be made up"))
    if day < today - dt.timedelta(days=rule.makeup_days):
        raise MakeupNotAllowed(
            problem=_("Only the last {n} days can be made up").format(n=rule.makeup_days)
        )
    days = _days_before(db, tenant_id, member_id, today)
    if day in days:
        found = _existing(db, tenant_id, member_id, day)
        if found.kind != MAKEUP:
            raise MakeupNotAllowed(problem=_("You already checked in that day"))
        return Result(found, False, _current(days, today))
    streak = 1 + _run_ending(days, day - dt.timedelta(days=1))
    row = Checkin(
        tenant_id=tenant_id,
        member_id=member_id,
        checked_on=day,
        kind=MAKEUP,
        streak=streak,
        points=rule.makeup_cost,
        bonus=0,
        created_at=clock.now(),
    )
    claimed = _claim(db, row)
    if claimed is None:
        found = _existing(db, tenant_id, member_id, day)
        return Result(found, False, current_streak(db, tenant_id=tenant_id, member_id=member_id))
    if claimed.points:
        ledger.spend(
            db,
            tenant_id=tenant_id,
            member_id=member_id,
            points=claimed.points,
            reason="checkin_makeup",
            memo=_("Make-up check-in for {day}").format(day=day.isoformat()),
            reference=f"checkin:{day.isoformat()}",
            idempotency_key=f"checkin-makeup:{member_id}:{day.isoformat()}",
            actor=ledger.Actor.member(member_id),
        )
    return Result(claimed, True, _current(sorted({*days, day}, reverse=True), today))


def _current(days: list[dt.date], today: dt.date) -> int:
    """The streak still alive today: ending today, or yesterday if today is not done yet."""
    return _run_ending(days, today) or _run_ending(days, today - dt.timedelta(days=1))


def current_streak(db: Session, *, tenant_id: int, member_id: int) -> int:
    tenant = db.get(Tenant, tenant_id)
    assert tenant is not None
    today = today_for(tenant)
    return _current(_days_before(db, tenant_id, member_id, today), today)


@dataclass
class Month:
    year: int
    month: int
    today: dt.date
    checkins: dict[dt.date, Checkin] = field(default_factory=dict)
    streak: int = 0
    checked_today: bool = False
    makeup_days: list[dt.date] = field(default_factory=list)  # missed days one may fill
    rule: Rule | None = None


def month_view(db: Session, *, tenant_id: int, member_id: int, year: int, month: int) -> Month:
    """The member's check-ins of a tenant-local month, streak, and the days open to make-up."""
    tenant = db.get(Tenant, tenant_id)
    assert tenant is not None
    rule = rule_of(tenant)
    today = today_for(tenant)
    first = dt.date(year, month, 1)
    nxt = dt.date(year + month // 12, month % 12 + 1, 1)
    rows = db.scalars(
        select(Checkin).where(
            Checkin.tenant_id == tenant_id,
            Checkin.member_id == member_id,
            Checkin.checked_on >= first,
            Checkin.checked_on < nxt,
        )
    ).all()
    days = _days_before(db, tenant_id, member_id, today)
    have = set(days)
    missed = [
        today - dt.timedelta(days=n)
        for n in range(1, rule.makeup_days + 1)
        if today - dt.timedelta(days=n) not in have
    ]
    return Month(
        year=year,
        month=month,
        today=today,
        checkins={r.checked_on: r for r in rows},
        streak=_current(days, today),
        checked_today=today in have,
        makeup_days=missed,
        rule=rule,
    )

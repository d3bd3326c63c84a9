"""SOP schedules: recurring sends on a cron rule in the tenant's timezone.

Each run is a message with purpose ``sop:<schedule id>:<UTC instant of the run>``, so a run is
sent at most once whatever ticks race or repeat. A run missed while the service was down is
sent once when it returns if it is still within the schedule's grace window (only the latest
missed run, never a backlog); older ones are skipped. Runs inside quiet hours are skipped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from siyu.core import clock
from siyu.core.db import unit_of_work
from siyu.core.i18n import gettext as _
from siyu.messaging import service
from siyu.messaging.errors import InvalidSchedule, ScheduleNotFound
from siyu.messaging.models import (
    GROUP_CHANNELS,
    MEMBER_CHANNELS,
    Message,
    MessageTemplate,
    Schedule,
)
from siyu.tenants.models import Tenant

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# The seed's daily rhythm: ready for every new tenant, paused until an operator reviews it.
DEFAULT_SOPS: list[dict[str, Any]] = [
    {
        "key": "checkin-reminder",
        "name": "10:00 签到提醒",
        "time": "10:00",
        "template": {
            "key": "sop-checkin",
            "name": "签到提醒",
            "title": "今日签到",
            "body": "{{ member.nickname }}，早上好！今天还没签到哦，签到领积分，晚上直播见～",
        },
    },
    {
        "key": "live-preview",
        "name": "13:00 直播预告",
        "time": "13:00",
        "template": {
            "key": "sop-preview",
            "name": "直播预告",
            "title": "今晚直播预告",
            "body": "今晚 {{ session.start_time or '19:30' }} 直播："
            "{{ session.theme or '精彩好物' }}，记得预约提醒！",
        },
    },
    {
        "key": "live-start",
        "name": "19:30 开播提醒",
        "time": "19:30",
        "template": {
            "key": "sop-live-start",
            "name": "开播提醒",
            "title": "直播开始啦",
            "body": "{{ tenant.name }} 开播啦！{{ session.taobao_password or '' }} "
            "快来直播间抢福利～",
        },
    },
]


def cron_for(kind: str, *, time: str = "", weekdays: Sequence[str] = (), cron: str = "") -> str:
    """The cron rule of a daily / weekly / cron schedule. Raises InvalidSchedule."""
    if kind == "cron":
        expr = cron.strip()
    elif kind in ("daily", "weekly"):
        hh, mm = _hhmm(time, "time")
        expr = f"{mm} {hh} * * *"
        if kind == "weekly":
            days = [d for d in weekdays if d in WEEKDAYS]
            if not days or len(days) != len(weekdays):
                raise InvalidSchedule(field="weekdays", problem=_("choose at least one weekday"))
            # cron counts Sunday as 0.
            expr = f"{mm} {hh} * * " + ",".join(str((WEEKDAYS.index(d) + 1) % 7) for d in days)
    else:
        raise InvalidSchedule(field="kind", problem=_("daily, weekly or cron"))
    if not croniter.is_valid(expr) or len(expr.split()) != 5:
        raise InvalidSchedule(
            field="cron", problem=_("not a 5-field cron rule: {expr}").format(expr=expr)
        )
    return expr


def _hhmm(value: str, fld: str) -> tuple[int, int]:
    try:
        hh, mm = (int(p) for p in value.strip().split(":"))
    except ValueError:
        raise InvalidSchedule(field=fld, problem=_("a time like 19:30")) from None
    if not (0 <= hh < 24 and 0 <= mm < 60):
        raise InvalidSchedule(field=fld, problem=_("a time like 19:30"))
    return hh, mm


def describe(s: Schedule) -> dict[str, Any]:
    """kind, time, weekdays of a schedule, read back from its cron rule (for forms)."""
    parts = s.cron.split()
    out: dict[str, Any] = {"kind": s.kind, "time": "", "weekdays": [], "cron": s.cron}
    if s.kind in ("daily", "weekly") and len(parts) == 5:
        out["time"] = f"{int(parts[1]):02d}:{int(parts[0]):02d}"
        if s.kind == "weekly":
            out["weekdays"] = [WEEKDAYS[(int(d) - 1) % 7] for d in parts[4].split(",")]
    return out


def in_quiet_hours(local: dt.datetime, start: str, end: str) -> bool:
    if not start or not end:
        return False
    t = local.hour * 60 + local.minute
    sh, sm = _hhmm(start, "quiet_start")
    eh, em = _hhmm(end, "quiet_end")
    s, e = sh * 60 + sm, eh * 60 + em
    return s <= t < e if s <= e else (t >= s or t < e)  # e.g. 22:00–08:00 wraps midnight


def _tz(db: Session, tenant_id: int) -> ZoneInfo:
    tenant = db.get(Tenant, tenant_id)
    assert tenant is not None
    return ZoneInfo(tenant.timezone)


def next_runs(
    s: Schedule, tz: ZoneInfo, *, count: int = 5, after: dt.datetime | None = None
) -> list[dt.datetime]:
    """The next ``count`` run instants (UTC) after ``after``, quiet hours left out."""
    start = (after or clock.now()).astimezone(tz)
    it = croniter(s.cron, start)
    out: list[dt.datetime] = []
    for _i in range(count * 50):
        when: dt.datetime = it.get_next(dt.datetime)
        if not in_quiet_hours(when.astimezone(tz), s.quiet_start, s.quiet_end):
            out.append(when.astimezone(clock.UTC))
            if len(out) == count:
                break
    return out


def _next_after(s: Schedule, tz: ZoneInfo, after: dt.datetime) -> dt.datetime:
    it = croniter(s.cron, after.astimezone(tz))
    return it.get_next(dt.datetime).astimezone(clock.UTC)


def _prev_at_or_before(s: Schedule, tz: ZoneInfo, when: dt.datetime) -> dt.datetime:
    # croniter's get_prev is strictly before: start a second later so "at" counts.
    it = croniter(s.cron, (when + dt.timedelta(seconds=1)).astimezone(tz))
    return it.get_prev(dt.datetime).astimezone(clock.UTC)


def save_schedule(
    db: Session,
    *,
    tenant_id: int,
    key: str,
    name: str,
    kind: str,
    template_key: str,
    target: service.Target,
    channels: Sequence[str] = (),
    time: str = "",
    weekdays: Sequence[str] = (),
    cron: str = "",
    quiet_start: str = "",
    quiet_end: str = "",
    grace_minutes: int = 30,
    paused: bool | None = None,
) -> Schedule:
    """Create or update the schedule ``key``; its next run is recomputed from now."""
    if not key or len(key) > 64:
        raise InvalidSchedule(field="key", problem=_("1–64 characters"))
    if not name.strip():
        raise InvalidSchedule(field="name", problem=_("required"))
    expr = cron_for(kind, time=time, weekdays=weekdays, cron=cron)
    for fld, v in (("quiet_start", quiet_start), ("quiet_end", quiet_end)):
        if v:
            _hhmm(v, fld)
    if bool(quiet_start) != bool(quiet_end):
        raise InvalidSchedule(field="quiet_end", problem=_("give both ends of the quiet hours"))
    if not 0 <= grace_minutes <= 24 * 60:
        raise InvalidSchedule(field="grace_minutes", problem=_("0 to 1440 minutes"))
    template = service.get_template(db, tenant_id=tenant_id, key=template_key)
    allowed = GROUP_CHANNELS if target.is_groups else MEMBER_CHANNELS
    if any(c not in allowed for c in channels):
        raise InvalidSchedule(field="channels", problem=_("a channel cannot reach this target"))
    row = db.scalar(select(Schedule).where(Schedule.tenant_id == tenant_id, Schedule.key == key))
    if row is None:
        row = Schedule(tenant_id=tenant_id, key=key, created_at=clock.now(), paused=False)
        try:
            with db.begin_nested():
                db.add(row)
                row.name, row.cron, row.template_id = name, expr, template.id
        except IntegrityError:
            raise InvalidSchedule(field="key", problem=_("already taken")) from None
    row.name, row.kind, row.cron, row.template_id = name.strip(), kind, expr, template.id
    row.target, row.channels = target.as_json(), list(channels)
    row.quiet_start, row.quiet_end, row.grace_minutes = quiet_start, quiet_end, grace_minutes
    if paused is not None:
        row.paused = paused
    row.next_run_at = _next_after(row, _tz(db, tenant_id), clock.now())
    db.flush()
    return row


def get_schedule(db: Session, *, tenant_id: int, schedule_id: int) -> Schedule:
    row = db.get(Schedule, schedule_id)
    if row is None or row.tenant_id != tenant_id:
        raise ScheduleNotFound(schedule_id=schedule_id)
    return row


def list_schedules(db: Session, *, tenant_id: int) -> list[Schedule]:
    return list(
        db.scalars(select(Schedule).where(Schedule.tenant_id == tenant_id).order_by(Schedule.id))
    )


def set_paused(db: Session, *, tenant_id: int, schedule_id: int, paused: bool) -> Schedule:
    """Pause or resume; resuming starts from the next run after now (no backlog)."""
    row = get_schedule(db, tenant_id=tenant_id, schedule_id=schedule_id)
    row.paused = paused
    if not paused:
        row.next_run_at = _next_after(row, _tz(db, tenant_id), clock.now())
    db.flush()
    return row


def run_due(db: Session, *, schedule_id: int, now: dt.datetime | None = None) -> Message | None:
    """Send the schedule's due run, if any; advance its next run. Safe to call repeatedly."""
    now = now or clock.now()
    s = db.get(Schedule, schedule_id, with_for_update=True)
    if s is None or s.paused or s.next_run_at is None or s.next_run_at > now:
        return None
    tz = _tz(db, s.tenant_id)
    latest = _prev_at_or_before(s, tz, now)  # the latest occurrence, missed or not
    nxt = _next_after(s, tz, now)
    # Conditional advance: of two racing ticks only one moves next_run_at (the purpose's
    # unique key would stop a double send anyway).
    moved = service.rowcount(
        db.execute(
            update(Schedule)
            .where(Schedule.id == s.id, Schedule.next_run_at == s.next_run_at)
            .values(next_run_at=nxt)
            .execution_options(synchronize_session=False)
        )
    )
    db.refresh(s)
    if not moved:
        return None
    if now - latest > dt.timedelta(minutes=s.grace_minutes):
        return None  # missed beyond the grace window: skip, never a late flood
    if in_quiet_hours(latest.astimezone(tz), s.quiet_start, s.quiet_end):
        return None
    template = db.get(MessageTemplate, s.template_id)
    assert template is not None
    s.last_run_at = latest
    msg = service.send(
        db,
        tenant_id=s.tenant_id,
        purpose=f"sop:{s.id}:{latest.strftime('%Y-%m-%dT%H:%MZ')}",
        target=service.Target.from_json(s.target),
        template=template,
        channels=s.channels or None,
        kind="sop",
        schedule_id=s.id,
        created_by=f"sop:{s.key}",
    )
    return msg


def run_due_all(now: dt.datetime | None = None) -> int:
    """Run every due schedule of every tenant, one transaction each."""
    now = now or clock.now()
    with unit_of_work() as db:
        ids = list(
            db.scalars(
                select(Schedule.id).where(Schedule.paused.is_(False), Schedule.next_run_at <= now)
            )
        )
    ran = 0
    for schedule_id in ids:
        with unit_of_work() as db:
            if run_due(db, schedule_id=schedule_id, now=now) is not None:
                ran += 1
    return ran


def install_defaults(db: Session, *, tenant_id: int, paused: bool = True) -> list[Schedule]:
    """The seed's daily rhythm (10:00 check-in, 13:00 preview, 19:30 live start) as editable
    templates and schedules to all members by inbox; existing keys are left alone."""
    out = []
    for sop in DEFAULT_SOPS:
        t = sop["template"]
        if service.find_template(db, tenant_id=tenant_id, key=t["key"]) is None:
            service.save_template(
                db,
                tenant_id=tenant_id,
                key=t["key"],
                name=t["name"],
                title=t["title"],
                body=t["body"],
            )
        found = db.scalar(
            select(Schedule).where(Schedule.tenant_id == tenant_id, Schedule.key == sop["key"])
        )
        out.append(
            found
            or save_schedule(
                db,
                tenant_id=tenant_id,
                key=sop["key"],
                name=sop["name"],
                kind="daily",
                time=sop["time"],
                template_key=t["key"],
                target=service.Target(kind="all_members"),
                channels=["subscribe", "inbox"],
                quiet_start="23:00",
                quiet_end="08:00",
                paused=paused,
            )
        )
    return out

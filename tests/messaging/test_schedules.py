"""SOP schedules: cron rules in the tenant's timezone, quiet hours, pause/resume, missed runs."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from siyu.messaging import schedules, service
from siyu.messaging.errors import InvalidSchedule
from siyu.messaging.models import Message
from tests.factories import make_member, make_tenant

SH = ZoneInfo("Asia/Shanghai")


def at(y, mo, d, h, mi, tz=SH):
    return dt.datetime(y, mo, d, h, mi, tzinfo=tz).astimezone(dt.UTC)


def sop(db, tenant, **kw):
    kw.setdefault("kind", "daily")
    kw.setdefault("time", "19:30")
    return schedules.save_schedule(
        db,
        tenant_id=tenant.id,
        key=kw.pop("key", "s"),
        name="开播提醒",
        template_key="sop-live-start",
        target=service.Target(kind="all_members"),
        **kw,
    )


def runs_of(db, schedule):
    return list(db.scalars(select(Message).where(Message.schedule_id == schedule.id)))


def test_new_tenant_gets_the_daily_rhythm_paused_and_editable(db):
    tenant = make_tenant(db)

    rows = schedules.list_schedules(db, tenant_id=tenant.id)

    assert [(s.key, schedules.describe(s)["time"], s.paused) for s in rows] == [
        ("checkin-reminder", "10:00", True),
        ("live-preview", "13:00", True),
        ("live-start", "19:30", True),
    ]
    assert {t.key for t in service.list_templates(db, tenant_id=tenant.id)} >= {
        "sop-checkin",
        "sop-preview",
        "sop-live-start",
    }
    edited = sop(db, tenant, key="live-start", time="20:00", paused=False)
    assert edited.id == rows[2].id
    assert schedules.describe(edited)["time"] == "20:00"


def test_daily_runs_are_in_the_tenant_timezone(db, clock):
    clock.set(at(2026, 11, 11, 12, 0))
    tenant = make_tenant(db, timezone="Asia/Shanghai")
    s = sop(db, tenant, time="19:30")

    runs = schedules.next_runs(s, SH)

    assert runs[0] == at(2026, 11, 11, 19, 30)
    assert runs[0].hour == 11  # 19:30 in Shanghai is 11:30 UTC
    assert [r.day for r in runs] == [11, 12, 13, 14, 15]
    ny = make_tenant(db, timezone="America/New_York")
    s_ny = schedules.save_schedule(
        db,
        tenant_id=ny.id,
        key="x",
        name="x",
        kind="daily",
        time="19:30",
        template_key="sop-live-start",
        target=service.Target(kind="all_members"),
    )
    assert schedules.next_runs(s_ny, ZoneInfo("America/New_York"), count=1)[0] == dt.datetime(
        2026, 11, 12, 0, 30, tzinfo=dt.UTC
    )


def test_weekly_and_cron_rules(db, clock):
    clock.set(at(2026, 11, 11, 12, 0))  # a Wednesday
    tenant = make_tenant(db)
    weekly = sop(db, tenant, key="w", kind="weekly", time="10:00", weekdays=["mon", "fri"])
    cron = sop(db, tenant, key="c", kind="cron", cron="*/30 9-10 * * *")

    assert [r.astimezone(SH).strftime("%a %H:%M") for r in schedules.next_runs(weekly, SH)] == [
        "Fri 10:00",
        "Mon 10:00",
        "Fri 10:00",
        "Mon 10:00",
        "Fri 10:00",
    ]
    assert [r.astimezone(SH).strftime("%d %H:%M") for r in schedules.next_runs(cron, SH)] == [
        "12 09:00",
        "12 09:30",
        "12 10:00",
        "12 10:30",
        "13 09:00",
    ]


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"time": "25:00"}, "time"),
        ({"kind": "cron", "cron": "not a rule"}, "cron"),
        ({"kind": "weekly", "weekdays": []}, "weekdays"),
        ({"quiet_start": "22:00"}, "quiet_end"),
        ({"kind": "hourly"}, "kind"),
    ],
)
def test_invalid_rules_are_refused(db, kw, field):
    tenant = make_tenant(db)
    with pytest.raises(InvalidSchedule) as err:
        sop(db, tenant, **kw)
    assert err.value.params["field"] == field


def test_due_run_sends_once_however_often_the_tick_comes(db, clock):
    clock.set(at(2026, 11, 11, 19, 0))
    tenant = make_tenant(db)
    fans = [make_member(db, tenant) for _ in range(3)]
    s = sop(db, tenant, time="19:30")
    clock.set(
        at(
            2026,
            11,
            11,
            19,
            30,
        )
    )

    first = schedules.run_due(db, schedule_id=s.id)
    again = schedules.run_due(db, schedule_id=s.id)

    assert first is not None
    assert again is None
    assert first.purpose == f"sop:{s.id}:2026-11-11T11:30Z"
    while service.expand_chunk(db, message_id=first.id):
        pass
    assert first.total == len(fans)
    assert s.next_run_at == at(2026, 11, 12, 19, 30)


def test_missed_run_is_sent_once_within_the_grace_window(db, clock):
    clock.set(at(2026, 11, 11, 9, 0))
    tenant = make_tenant(db)
    s = sop(db, tenant, time="10:00", grace_minutes=30)
    clock.set(at(2026, 11, 11, 10, 20))  # the service was down at 10:00

    msg = schedules.run_due(db, schedule_id=s.id)

    assert msg is not None
    assert msg.purpose.endswith("T02:00Z")
    assert schedules.run_due(db, schedule_id=s.id) is None
    assert len(runs_of(db, s)) == 1


def test_run_missed_beyond_the_grace_window_is_skipped_and_no_backlog_is_sent(db, clock):
    clock.set(at(2026, 11, 11, 9, 0))
    tenant = make_tenant(db)
    s = sop(db, tenant, time="10:00", grace_minutes=30)
    clock.set(at(2026, 11, 14, 11, 0))  # down for three days

    assert schedules.run_due(db, schedule_id=s.id) is None
    assert runs_of(db, s) == []
    assert s.next_run_at == at(2026, 11, 15, 10, 0)


def test_quiet_hours_skip_a_run(db, clock):
    clock.set(at(2026, 11, 11, 9, 0))
    tenant = make_tenant(db)
    s = sop(
        db,
        tenant,
        key="late",
        kind="cron",
        cron="0 * * * *",
        quiet_start="22:00",
        quiet_end="08:00",
    )
    hours = [r.astimezone(SH).hour for r in schedules.next_runs(s, SH, count=20)]
    assert hours == [*range(10, 22), *range(8, 16)]
    clock.set(at(2026, 11, 11, 23, 0))
    s.next_run_at = at(2026, 11, 11, 23, 0)

    assert schedules.run_due(db, schedule_id=s.id) is None
    assert runs_of(db, s) == []


def test_paused_schedule_does_not_run_and_resumes_from_now(db, clock):
    clock.set(at(2026, 11, 11, 9, 0))
    tenant = make_tenant(db)
    s = sop(db, tenant, time="10:00")
    schedules.set_paused(db, tenant_id=tenant.id, schedule_id=s.id, paused=True)
    clock.set(at(2026, 11, 13, 10, 0))

    assert schedules.run_due(db, schedule_id=s.id) is None
    clock.set(at(2026, 11, 13, 10, 5))
    schedules.set_paused(db, tenant_id=tenant.id, schedule_id=s.id, paused=False)
    assert s.next_run_at == at(2026, 11, 14, 10, 0)
    assert runs_of(db, s) == []

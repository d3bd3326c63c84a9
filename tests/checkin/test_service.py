"""Daily check-in: one per tenant-local day, streak bonuses, make-ups, paid through the ledger."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from siyu.checkin import service as checkin
from siyu.checkin.errors import InvalidRule, MakeupNotAllowed
from siyu.checkin.models import Checkin
from siyu.ledger import models as lm
from siyu.ledger import service as ledger
from siyu.ledger.errors import InsufficientPoints
from tests.factories import grant, make_member, make_tenant

RULE = {
    "base": 5,
    "bonuses": [{"day": 3, "points": 10}, {"day": 7, "points": 30}],
    "makeup_days": 3,
    "makeup_cost": 20,
}


@pytest.fixture
def fan(db, clock):
    tenant = make_tenant(db)
    checkin.set_rule(db, tenant_id=tenant.id, rule=RULE)
    return make_member(db, tenant)


def balance(db, member) -> int:
    return ledger.get_balance(db, tenant_id=member.tenant_id, member_id=member.id).balance


def next_day(clock) -> None:
    clock.advance(days=1)


def test_first_check_in_pays_base_points_and_a_repeat_pays_nothing(db, fan):
    first = checkin.check_in(db, tenant_id=fan.tenant_id, member_id=fan.id)
    again = checkin.check_in(db, tenant_id=fan.tenant_id, member_id=fan.id)

    assert (first.created, first.streak, first.checkin.points) == (True, 1, 5)
    assert (again.created, again.checkin.id) == (False, first.checkin.id)
    assert balance(db, fan) == 5


def test_the_day_is_the_tenants_local_day(db, fan, clock):
    clock.set(dt.datetime(2026, 11, 11, 15, 59, tzinfo=dt.UTC))  # 23:59 in Shanghai
    before = checkin.check_in(db, tenant_id=fan.tenant_id, member_id=fan.id)
    clock.set(dt.datetime(2026, 11, 11, 16, 0, tzinfo=dt.UTC))  # 00:00 on the 12th
    after = checkin.check_in(db, tenant_id=fan.tenant_id, member_id=fan.id)

    assert before.checkin.checked_on == dt.date(2026, 11, 11)
    assert after.checkin.checked_on == dt.date(2026, 11, 12)
    assert (after.created, after.streak) == (True, 2)


def test_streak_bonuses_on_day_3_and_7(db, fan, clock):
    paid = []
    for _ in range(8):
        paid.append(checkin.check_in(db, tenant_id=fan.tenant_id, member_id=fan.id).checkin.points)
        next_day(clock)

    assert paid == [5, 5, 15, 5, 5, 5, 35, 5]
    assert balance(db, fan) == sum(paid)


def test_a_missed_day_resets_the_streak(db, fan, clock):
    checkin.check_in(db, tenant_id=fan.tenant_id, member_id=fan.id)
    next_day(clock)
    checkin.check_in(db, tenant_id=fan.tenant_id, member_id=fan.id)
    clock.advance(days=2)

    third = checkin.check_in(db, tenant_id=fan.tenant_id, member_id=fan.id)

    assert third.streak == 1
    assert third.checkin.points == 5  # no day-3 bonus


def test_make_up_fills_the_gap_for_points_and_restores_the_streak(db, fan, clock):
    grant(db, fan, 100)
    checkin.check_in(db, tenant_id=fan.tenant_id, member_id=fan.id)  # day 1
    clock.advance(days=2)  # day 2 missed
    missed = checkin.today_for(_tenant(db, fan)) - dt.timedelta(days=1)

    made = checkin.make_up(db, tenant_id=fan.tenant_id, member_id=fan.id, day=missed)
    again = checkin.make_up(db, tenant_id=fan.tenant_id, member_id=fan.id, day=missed)
    today = checkin.check_in(db, tenant_id=fan.tenant_id, member_id=fan.id)

    assert (made.created, made.checkin.kind, made.checkin.points) == (True, "makeup", 20)
    assert (again.created, again.checkin.id) == (False, made.checkin.id)
    assert today.streak == 3
    assert today.checkin.points == 15  # the day-3 bonus
    assert balance(db, fan) == 100 + 5 - 20 + 15


def _tenant(db, member):
    from siyu.tenants.models import Tenant

    return db.get(Tenant, member.tenant_id)


def test_make_up_limits(db, fan, clock):
    grant(db, fan, 100)
    tenant = _tenant(db, fan)
    today = checkin.today_for(tenant)
    checkin.check_in(db, tenant_id=fan.tenant_id, member_id=fan.id)

    for day, why in (
        (today, "过去"),  # zh_CN is the default language
        (today + dt.timedelta(days=1), "过去"),
        (today - dt.timedelta(days=4), "3"),
    ):
        with pytest.raises(MakeupNotAllowed) as err:
            checkin.make_up(db, tenant_id=fan.tenant_id, member_id=fan.id, day=day)
        assert why in err.value.message()
    checkin.set_rule(db, tenant_id=fan.tenant_id, rule={**RULE, "makeup_days": 0})
    with pytest.raises(MakeupNotAllowed):
        checkin.make_up(
            db, tenant_id=fan.tenant_id, member_id=fan.id, day=today - dt.timedelta(days=1)
        )


def test_make_up_without_enough_points_changes_nothing(db, fan, clock):
    day = checkin.today_for(_tenant(db, fan)) - dt.timedelta(days=1)
    # The request's transaction (here a savepoint) is rolled back on the error.
    with pytest.raises(InsufficientPoints), db.begin_nested():
        checkin.make_up(db, tenant_id=fan.tenant_id, member_id=fan.id, day=day)

    assert db.scalars(select(Checkin).where(Checkin.member_id == fan.id)).all() == []


def test_rule_validation(db, fan):
    for bad in (
        {**RULE, "base": -1},
        {**RULE, "bonuses": [{"day": 7, "points": 1}, {"day": 7, "points": 2}]},
        {**RULE, "bonuses": [{"day": 0, "points": 1}]},
        {**RULE, "makeup_days": 31},
        {**RULE, "base": True},
        "nope",
    ):
        with pytest.raises(InvalidRule):
            checkin.set_rule(db, tenant_id=fan.tenant_id, rule=bad)  # type: ignore[arg-type]


def test_default_rule_applies_until_one_is_saved(db, clock):
    tenant = make_tenant(db)

    assert checkin.get_rule(db, tenant_id=tenant.id).as_dict() == checkin.DEFAULT_RULE


def test_month_view_lists_checkins_and_open_make_up_days(db, fan, clock):
    checkin.check_in(db, tenant_id=fan.tenant_id, member_id=fan.id)  # 11-11
    clock.advance(days=2)  # 11-13; 11-12 missed
    view = checkin.month_view(db, tenant_id=fan.tenant_id, member_id=fan.id, year=2026, month=11)

    assert set(view.checkins) == {dt.date(2026, 11, 11)}
    assert view.makeup_days == [dt.date(2026, 11, 12), dt.date(2026, 11, 10)]
    assert (view.streak, view.checked_today) == (0, False)


# --- property: whatever the sequence of taps, days and make-ups ------------------------------

actions = st.lists(
    st.one_of(
        st.just(("tap",)),
        st.tuples(st.just("advance"), st.integers(1, 3)),
        st.tuples(st.just("makeup"), st.integers(1, 4)),
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=actions)
def test_points_and_streaks_follow_the_rule_for_any_sequence(db, clock, steps):
    clock.set(dt.datetime(2026, 11, 11, 4, 0, tzinfo=dt.UTC))
    tenant = make_tenant(db)
    checkin.set_rule(db, tenant_id=tenant.id, rule=RULE)
    member = make_member(db, tenant)
    grant(db, member, 10_000, reason="seed")
    for step in steps:
        if step[0] == "tap":
            checkin.check_in(db, tenant_id=tenant.id, member_id=member.id)
        elif step[0] == "advance":
            clock.advance(days=step[1])
        else:
            day = checkin.today_for(tenant) - dt.timedelta(days=step[1])
            try:
                with db.begin_nested():
                    checkin.make_up(db, tenant_id=tenant.id, member_id=member.id, day=day)
            except MakeupNotAllowed:
                pass

    rows = db.scalars(select(Checkin).where(Checkin.member_id == member.id)).all()
    days = [r.checked_on for r in rows]
    entries = db.scalars(
        select(lm.JournalEntry).where(
            lm.JournalEntry.member_id == member.id, lm.JournalEntry.reason != "seed"
        )
    ).all()
    daily = [r for r in rows if r.kind == "daily"]
    makeups = [r for r in rows if r.kind == "makeup"]
    # One row per day; every daily check-in paid once, every make-up charged once.
    assert len(days) == len(set(days))
    assert sorted(e.points for e in entries if e.reason == "checkin") == sorted(
        r.points for r in daily
    )
    assert len([e for e in entries if e.reason == "checkin_makeup"]) == len(makeups)
    assert balance(db, member) == 10_000 + sum(r.points for r in daily) - 20 * len(makeups)
    for r in daily:
        # The stored streak is the run ending on that day, as it stood then (≤ the run now).
        run = 0
        while r.checked_on - dt.timedelta(days=run) in set(days):
            run += 1
        assert 1 <= r.streak <= run
        assert r.points == 5 + {3: 10, 7: 30}.get(r.streak, 0)

"""Reservation reminders under any sequence of reserves, cancels, on-sale clicks and starts.

Invariants: a reservation is marked due at most once and never goes back; every reservation
that was active when its target went live was marked by that click, and later clicks mark
nothing; the "marked" counts the service reports add up to the due rows.
"""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from siyu.live import service as live
from siyu.live.errors import InvalidTransition, ReservationClosed
from siyu.live.models import DUE, WAITING, Reservation
from tests.factories import add_product, make_member, make_session, make_tenant

FANS, PRODUCTS = 3, 2
step = st.one_of(
    st.tuples(st.just("reserve"), st.integers(0, FANS - 1), st.integers(-1, PRODUCTS - 1)),
    st.tuples(st.just("cancel"), st.integers(0, FANS - 1), st.integers(-1, PRODUCTS - 1)),
    st.tuples(st.just("on_sale"), st.integers(0, PRODUCTS - 1)),
    st.tuples(st.just("start")),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(step, min_size=1, max_size=30))
def test_each_reservation_is_marked_once_when_its_target_goes_live(db, clock, steps):
    tenant = make_tenant(db)
    s = make_session(db, tenant)
    products = [add_product(db, s, title=f"p{i}") for i in range(PRODUCTS)]
    fans = [make_member(db, tenant) for _ in range(FANS)]
    live_targets: set[str] = set()
    marked_total = 0
    seen_due: dict[int, object] = {}

    def target(pi: int) -> str:
        return f"s{s.id}" if pi < 0 else f"p{products[pi].id}"

    for st_ in steps:
        clock.advance(seconds=1)
        if st_[0] == "reserve":
            _, fi, pi = st_
            with contextlib.suppress(ReservationClosed):
                live.reserve(
                    db,
                    tenant_id=tenant.id,
                    member_id=fans[fi].id,
                    session_id=s.id,
                    product_id=None if pi < 0 else products[pi].id,
                )
                assert target(pi) not in live_targets  # reserving a live target is refused
        elif st_[0] == "cancel":
            _, fi, pi = st_
            row = db.scalars(
                select(Reservation).where(
                    Reservation.member_id == fans[fi].id, Reservation.target == target(pi)
                )
            ).first()
            if row is not None:
                live.cancel_reservation(
                    db, tenant_id=tenant.id, member_id=fans[fi].id, reservation_id=row.id
                )
        elif st_[0] == "on_sale":
            r = live.mark_on_sale(db, tenant_id=tenant.id, product_id=products[st_[1]].id)
            assert r.changed == (target(st_[1]) not in live_targets)
            live_targets.add(target(st_[1]))
            marked_total += r.marked
        else:
            with contextlib.suppress(InvalidTransition):
                r = live.transition(db, tenant_id=tenant.id, session_id=s.id, action="start")
                assert r.changed == (target(-1) not in live_targets)
                live_targets.add(target(-1))
                marked_total += r.marked
        rows = db.scalars(
            select(Reservation)
            .where(Reservation.session_id == s.id)
            .execution_options(populate_existing=True)
        ).all()
        for row in rows:
            if row.id in seen_due:  # once due, always due, at the same instant
                assert (row.remind_state, row.remind_due_at) == (DUE, seen_due[row.id])
            elif row.remind_state == DUE:
                seen_due[row.id] = row.remind_due_at
            if row.target in live_targets and row.cancelled_at is None:
                # Active now means active when its target went live (re-reserving a live
                # target is refused), so that click marked it.
                assert row.remind_state == DUE
            if row.target not in live_targets:
                assert row.remind_state == WAITING
    assert marked_total == len(seen_due)

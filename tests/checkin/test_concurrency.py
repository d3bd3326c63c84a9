"""Check-ins, reservations and the on-sale action under real parallel transactions.

Committed rows, one session per thread (PostgreSQL: row locks and the unique index; SQLite:
BEGIN IMMEDIATE serialises writers). Double taps and racing clicks must pay or mark once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from siyu.checkin import service as checkin
from siyu.checkin.models import Checkin
from siyu.core.db import unit_of_work
from siyu.ledger import models as lm
from siyu.ledger import service as ledger
from siyu.live import service as live
from siyu.live.errors import ReservationClosed
from siyu.live.models import DUE, WAITING, Reservation
from tests.factories import add_product, make_member, make_session, make_tenant

pytestmark = pytest.mark.concurrency


def run_threads(work: Callable[[int], Any], threads: int) -> list[Any]:
    """Run ``work(n)`` in ``threads`` threads released together; re-raise any error."""
    barrier = threading.Barrier(threads)

    def start(n: int) -> Any:
        barrier.wait(timeout=30)
        return work(n)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(start, range(threads)))


def test_twenty_parallel_check_ins_of_one_member_pay_once(committed, clock):
    with unit_of_work() as db:
        tenant = make_tenant(db)
        checkin.set_rule(
            db,
            tenant_id=tenant.id,
            rule={"base": 7, "bonuses": [], "makeup_days": 0, "makeup_cost": 0},
        )
        member = make_member(db, tenant)
        tenant_id, member_id = tenant.id, member.id

    def tap(_: int) -> bool:
        with unit_of_work() as db:
            return checkin.check_in(db, tenant_id=tenant_id, member_id=member_id).created

    created = run_threads(tap, 20)

    with unit_of_work() as db:
        rows = db.scalar(
            select(func.count()).select_from(Checkin).where(Checkin.member_id == member_id)
        )
        credits = db.scalars(
            select(lm.JournalEntry.points).where(
                lm.JournalEntry.member_id == member_id, lm.JournalEntry.reason == "checkin"
            )
        ).all()
        bal = ledger.get_balance(db, tenant_id=tenant_id, member_id=member_id).balance
        report = ledger.verify(db, tenant_id=tenant_id)
    assert created.count(True) == 1
    assert rows == 1
    assert credits == [7]
    assert bal == 7
    assert report.problems == []


def test_racing_on_sale_clicks_and_reservations_mark_each_reservation_once(committed, clock):
    with unit_of_work() as db:
        tenant = make_tenant(db)
        session = make_session(db, tenant)
        product = add_product(db, session)
        members = [make_member(db, tenant).id for _ in range(12)]
        ids = (tenant.id, session.id, product.id)
    tenant_id, session_id, product_id = ids

    def work(n: int) -> str:
        with unit_of_work() as db:
            if n % 4 == 0:  # 4 operators clicking "on sale now"
                r = live.mark_on_sale(db, tenant_id=tenant_id, product_id=product_id)
                return f"sale:{r.changed}:{r.marked}"
            try:  # 12 fans reserving at the same moment
                live.reserve(
                    db,
                    tenant_id=tenant_id,
                    member_id=members[n - n // 4 - 1],
                    session_id=session_id,
                    product_id=product_id,
                )
            except ReservationClosed:
                return "closed"
            return "reserved"

    results = run_threads(work, 16)

    with unit_of_work() as db:
        states = db.scalars(
            select(Reservation.remind_state).where(Reservation.product_id == product_id)
        ).all()
    sales = [r for r in results if r.startswith("sale:")]
    changed = [r for r in sales if r.startswith("sale:True")]
    assert len(changed) == 1  # one click put it on sale; the others changed nothing
    assert all(r.endswith(":0") for r in sales if r not in changed)
    marked = int(changed[0].rsplit(":", 1)[1])
    # Every reservation that got in was marked by that one click; none was left waiting.
    assert states.count(DUE) == marked == results.count("reserved")
    assert WAITING not in states

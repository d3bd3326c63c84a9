"""The on-sale reminder under real parallel transactions: racing "on sale now" clicks queue one
message, and the expansion worker racing several dispatchers reminds each reserver once."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import func, select

from siyu.core.db import unit_of_work
from siyu.core.jobs import huey
from siyu.live import reminders
from siyu.live import service as live
from siyu.messaging import service as messaging
from siyu.messaging import tasks
from siyu.messaging.models import Delivery, InboxItem, Message
from tests.checkin.test_concurrency import run_threads
from tests.factories import add_product, make_member, make_session, make_tenant

pytestmark = pytest.mark.concurrency


@pytest.fixture
def _queue():
    huey.flush()
    yield
    huey.flush()


@pytest.mark.usefixtures("_queue")
def test_racing_on_sale_clicks_remind_each_reserver_exactly_once(committed, clock):
    with unit_of_work() as db:
        tenant = make_tenant(db)
        session = make_session(db, tenant)
        product = add_product(db, session, link="https://m.tb.cn/h.x")
        fans = [make_member(db, tenant).id for _ in range(60)]
        for m in fans:
            live.reserve(
                db, tenant_id=tenant.id, member_id=m, session_id=session.id, product_id=product.id
            )
        tenant_id, product_id = tenant.id, product.id

    def click(_: int) -> bool:
        with unit_of_work() as db:
            return live.mark_on_sale(db, tenant_id=tenant_id, product_id=product_id).changed

    changed = run_threads(click, 8)
    assert changed.count(True) == 1

    with unit_of_work() as db:
        msg = db.scalar(
            select(Message).where(Message.purpose == reminders.purpose("product", product_id))
        )
        assert msg is not None
        message_id = msg.id

    def work(n: int) -> int:
        if n == 0:  # the expansion worker, in small chunks so it interleaves with dispatch
            chunks = 0
            while True:
                with unit_of_work() as db:
                    if not messaging.expand_chunk(db, message_id=message_id, chunk=7):
                        return chunks
                chunks += 1
        total = 0
        for _ in range(20):  # dispatchers keep polling while the expansion writes chunks
            total += tasks.run_dispatch(message_id, batch=5)
        return total

    run_threads(work, 4)
    tasks.run_dispatch(message_id)  # whatever the last chunk added after they stopped

    with unit_of_work() as db:
        messages = db.scalar(select(func.count()).select_from(Message))
        deliveries = Counter(
            db.scalars(select(Delivery.member_id).where(Delivery.message_id == message_id))
        )
        statuses = set(db.scalars(select(Delivery.status).where(Delivery.message_id == message_id)))
        inbox = Counter(db.scalars(select(InboxItem.member_id)))
        rows = reminders.funnel(db, tenant_id=tenant_id, session_id=session.id)
    assert messages == 1
    assert deliveries == Counter(fans)
    assert statuses == {"sent"}
    assert inbox == Counter(fans)
    product_row = next(r for r in rows if r.kind == "product")
    assert (product_row.reserved, product_row.reminded, product_row.delivered) == (60, 60, 60)

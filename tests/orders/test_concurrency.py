"""The same order claimed from 20 connections at once pays out exactly once.

Committed rows, one session per thread. PostgreSQL: the unique live-claim key and the
ledger's idempotency key decide the race; SQLite serialises writers.
"""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import func, select

from siyu.core.db import unit_of_work
from siyu.ledger import models as lm
from siyu.ledger import service as ledger
from siyu.orders import models as m
from siyu.orders import service
from siyu.orders.errors import RateLimited
from siyu.orders.readers import Record
from tests.factories import make_member, make_tenant
from tests.ledger.test_concurrency import assert_verified, run_threads

pytestmark = pytest.mark.concurrency
CONNECTIONS = 20


def shop_with_order(members: int) -> tuple[int, list[int]]:
    with unit_of_work() as db:
        tenant = make_tenant(db)
        imp = service.create_import(
            db, tenant_id=tenant.id, filename="o", fmt=None, session_id=None
        )
        service.import_batch(
            db,
            tenant_id=tenant.id,
            import_id=imp.id,
            items=[
                Record(2, "taobao", "5555", "抢单的小鱼", 20000, 0, "paid", None, None, "", None)
            ],
        )
        ids = [make_member(db, tenant).id for _ in range(members)]
        return tenant.id, ids


def claim(tenant_id: int, member_id: int, n: int) -> object:
    try:
        with unit_of_work() as db:
            c = service.claim_order(
                db,
                tenant_id=tenant_id,
                member_id=member_id,
                platform="taobao",
                order_no="5555",
                account="抢单的小鱼",
                ip=f"10.0.0.{n}",
            )
            return (c.id, c.status, c.points)
    except RateLimited as err:
        return err


def order_credits(tenant_id: int) -> list[int]:
    with unit_of_work() as db:
        return list(
            db.scalars(
                select(lm.JournalEntry.points).where(
                    lm.JournalEntry.tenant_id == tenant_id,
                    lm.JournalEntry.idempotency_key == "order:taobao:5555",
                )
            )
        )


def live_claims(tenant_id: int) -> int:
    with unit_of_work() as db:
        return int(
            db.scalar(
                select(func.count())
                .select_from(m.Claim)
                .where(m.Claim.tenant_id == tenant_id, m.Claim.active_key.is_not(None))
            )
            or 0
        )


def test_one_member_claiming_from_20_connections_is_paid_once(committed):
    tenant_id, (member,) = shop_with_order(1)

    results = run_threads(lambda n: claim(tenant_id, member, n), threads=CONNECTIONS)

    answered = [r for r in results if isinstance(r, tuple)]
    assert answered, results
    assert {r[0] for r in answered} == {answered[0][0]}  # every answer is the one claim
    assert {r[1:] for r in answered} == {("credited", 200)}
    assert order_credits(tenant_id) == [200]
    with unit_of_work() as db:
        assert ledger.get_balance(db, tenant_id=tenant_id, member_id=member).balance == 200
    assert live_claims(tenant_id) == 1
    assert_verified(tenant_id)


def test_20_members_racing_for_one_order_leave_one_claim_and_one_payout(committed):
    tenant_id, members = shop_with_order(CONNECTIONS)

    results = run_threads(lambda n: claim(tenant_id, members[n], n), threads=CONNECTIONS)

    statuses = [r[1] for r in results if isinstance(r, tuple)]
    assert len(statuses) == CONNECTIONS
    holders = [s for s in statuses if s in ("credited", "review")]
    assert len(holders) == 1, statuses  # the rest were refused: already claimed / taken
    assert live_claims(tenant_id) == 1
    credits = order_credits(tenant_id)
    assert credits in ([], [200])  # credited once, or held for review (several members)
    with unit_of_work() as db:
        total = db.scalar(
            select(func.coalesce(func.sum(lm.Account.balance), 0)).where(
                lm.Account.tenant_id == tenant_id, lm.Account.kind == lm.WALLET
            )
        )
    assert total == sum(credits)
    assert_verified(tenant_id)


def test_two_imports_of_overlapping_files_at_once_neither_duplicate_nor_lose(
    committed, tmp_path, monkeypatch, caplog
):
    """Two files sharing 150 of their orders, imported at the same time (on PostgreSQL each
    staged in chunks of 50 lines, each chunk upserted in two concurrent halves): every order
    is there once with its values, each new order counted by exactly one import, and each
    import's counts add up."""
    from siyu.orders import flows, staged
    from tests.orders.samples import TbRow, taobao_csv

    monkeypatch.setattr(staged, "CHUNK", 50)

    def row(n: int) -> TbRow:
        return TbRow(f"{700000 + n}", f"tb_{n}", f"{n}.50")

    with unit_of_work() as db:
        tenant_id = make_tenant(db).id
    paths, ids = [], []
    for name, numbers in (("a.csv", range(300)), ("b.csv", range(150, 450))):
        path = tmp_path / name
        path.write_bytes(taobao_csv([row(n) for n in numbers] + [row(n) for n in numbers[:20]]))
        with unit_of_work() as db:
            imp = service.create_import(
                db, tenant_id=tenant_id, filename=name, fmt=None, session_id=None
            )
            db.flush()
            ids.append(imp.id)
        paths.append(path)

    with caplog.at_level(logging.INFO, logger="siyu.orders"):
        done = run_threads(lambda n: flows.run_import(ids[n], paths[n]), threads=2)

    with unit_of_work() as db:
        stored = dict(
            db.execute(
                select(m.Order.order_no, m.Order.paid_fen).where(m.Order.tenant_id == tenant_id)
            ).all()
        )
    assert stored == {f"{700000 + n}": n * 100 + 50 for n in range(450)}
    assert [d.status for d in done] == ["done", "done"]
    assert all(d.rows == 320 == d.imported + d.updated + d.rejected for d in done)
    assert sum(d.imported for d in done) == 450
    staged_runs = caplog.text.count("took the staged COPY path")
    assert staged_runs == (2 if committed.kw["bind"].dialect.name == "postgresql" else 0)

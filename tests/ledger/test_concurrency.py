"""The ledger under real parallel transactions: committed rows, one session per thread.

SQLite serialises writers (BEGIN IMMEDIATE + busy_timeout); PostgreSQL locks the wallet row.
Either way no interleaving may overdraw a wallet, apply a key twice or unbalance the ledger.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from siyu.core import clock
from siyu.core.db import unit_of_work
from siyu.ledger import models as m
from siyu.ledger import service as ledger
from siyu.ledger.errors import IdempotencyConflict, InsufficientPoints, ReversalTooLarge
from siyu.members.errors import MemberNotFound
from tests.factories import grant, make_member, make_tenant

pytestmark = pytest.mark.concurrency
THREADS = 16


def run_threads(work: Callable[[int], Any], threads: int = THREADS) -> list[Any]:
    """Run ``work(n)`` in ``threads`` threads released together; re-raise any error."""
    barrier = threading.Barrier(threads)

    def start(n: int) -> Any:
        barrier.wait(timeout=30)
        return work(n)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(start, range(threads)))


def setup_members(n: int, points: int, **grant_kw: Any) -> tuple[int, list[int]]:
    with unit_of_work() as db:
        tenant = make_tenant(db)
        ids = []
        for _ in range(n):
            member = make_member(db, tenant)
            if points:
                grant(db, member, points, **grant_kw)
            ids.append(member.id)
        return tenant.id, ids


def balance_of(tenant_id: int, member_id: int) -> int:
    with unit_of_work() as db:
        return ledger.get_balance(db, tenant_id=tenant_id, member_id=member_id).balance


def wallet_history(tenant_id: int, member_id: int) -> list[int]:
    """The wallet's balance after each entry, in the order the entries were written."""
    with unit_of_work() as db:
        deltas = db.scalars(
            select(func.sum(m.Posting.amount))
            .join(m.Account, m.Account.id == m.Posting.account_id)
            .where(m.Account.tenant_id == tenant_id, m.Account.code == f"wallet:{member_id}")
            .group_by(m.Posting.entry_id)
            .order_by(m.Posting.entry_id)
        ).all()
    running, out = 0, []
    for delta in deltas:
        running += int(delta)
        out.append(running)
    return out


def assert_verified(tenant_id: int) -> None:
    with unit_of_work() as db:
        report = ledger.verify(db, tenant_id=tenant_id)
    assert report.problems == []


def posted(posting: Callable[..., m.JournalEntry], alone: bool, **kw: Any) -> m.JournalEntry:
    """``posting`` in a unit of work of its own, or through ``ledger.alone`` (the API's and the
    CLI's way: on PostgreSQL one statement in autocommit)."""
    if alone:
        return ledger.alone(posting, **kw)
    with unit_of_work() as db:
        return posting(db, **kw)


@pytest.mark.parametrize("alone", [False, True], ids=["unit_of_work", "alone"])
def test_parallel_spends_never_overdraw_and_exactly_the_affordable_ones_succeed(committed, alone):
    tenant_id, [member_id] = setup_members(1, 100)
    each, cost = 4, 3  # 64 attempts at 3 points against 100: 33 fit

    def work(n: int) -> list[int | None]:
        out: list[int | None] = []
        for i in range(each):
            try:
                e = posted(
                    ledger.spend,
                    alone,
                    tenant_id=tenant_id,
                    member_id=member_id,
                    points=cost,
                    reason="redeem",
                    idempotency_key=f"spend-{n}-{i}",
                    actor=ledger.CLI,
                )
                out.append(e.id)
            except InsufficientPoints:
                out.append(None)
        return out

    results = [r for rs in run_threads(work) for r in rs]
    succeeded = [r for r in results if r is not None]
    assert len(succeeded) == 100 // cost
    assert len(set(succeeded)) == len(succeeded)
    assert results.count(None) == THREADS * each - 100 // cost
    assert balance_of(tenant_id, member_id) == 100 % cost
    history = wallet_history(tenant_id, member_id)
    assert len(history) == 1 + 100 // cost
    assert min(history) >= 0
    assert_verified(tenant_id)


def _spend_same(tenant_id: int, member_id: int, entry_id: int, alone: bool) -> m.JournalEntry:
    return posted(
        ledger.spend,
        alone,
        tenant_id=tenant_id,
        member_id=member_id,
        points=60,
        reason="redeem",
        idempotency_key="same-key",
        actor=ledger.CLI,
    )


def _grant_same(tenant_id: int, member_id: int, entry_id: int, alone: bool) -> m.JournalEntry:
    return posted(
        ledger.grant,
        alone,
        tenant_id=tenant_id,
        member_id=member_id,
        points=60,
        reason="purchase",
        idempotency_key="same-key",
        actor=ledger.CLI,
    )


def _reverse_same(tenant_id: int, member_id: int, entry_id: int, alone: bool) -> m.JournalEntry:
    return posted(
        ledger.reverse,
        alone,
        tenant_id=tenant_id,
        entry_id=entry_id,
        points=60,
        idempotency_key="same-key",
        actor=ledger.CLI,
    )


@pytest.mark.parametrize(
    ("call", "kind", "change"),
    [
        (_spend_same, m.DEBIT, -60),
        (_grant_same, m.CREDIT, 60),
        (_reverse_same, m.REVERSAL, -60),
    ],
)
@pytest.mark.parametrize("alone", [False, True], ids=["unit_of_work", "alone"])
def test_parallel_replays_of_one_key_apply_it_once(committed, call, kind, change, alone):
    # 100 points: a second spend or credit reversal of 60 would not fit, so a replay that
    # raced past the key check would fail loudly instead of returning the first entry.
    tenant_id, [member_id] = setup_members(1, 0)
    with unit_of_work() as db:
        credit = ledger.grant(
            db,
            tenant_id=tenant_id,
            member_id=member_id,
            points=100,
            reason="purchase",
            idempotency_key="first",
            actor=ledger.CLI,
        )
    results = run_threads(lambda n: call(tenant_id, member_id, credit.id, alone).id)
    assert len(set(results)) == 1
    with unit_of_work() as db:
        entries = db.scalars(
            select(m.JournalEntry).where(
                m.JournalEntry.tenant_id == tenant_id, m.JournalEntry.idempotency_key == "same-key"
            )
        ).all()
        assert [(e.id, e.kind, e.points) for e in entries] == [(results[0], kind, change)]
        postings = db.scalar(
            select(func.count()).select_from(m.Posting).where(m.Posting.entry_id == results[0])
        )
        assert postings == 2
    assert balance_of(tenant_id, member_id) == 100 + change
    assert_verified(tenant_id)


def test_parallel_grants_spends_reversals_and_expiry_keep_the_ledger_consistent(committed):
    tenant_id, members = setup_members(3, 200)
    soon = clock.now() + dt.timedelta(seconds=1)
    targets: list[int] = []  # entries the threads race to reverse
    with unit_of_work() as db:
        for i, member_id in enumerate(members):
            for points, kind in ((80, "grant"), (50, "spend"), (40, "grant")):
                fn = ledger.grant if kind == "grant" else ledger.spend
                kw = {"expires_at": soon} if kind == "grant" and points == 40 else {}
                e = fn(
                    db,
                    tenant_id=tenant_id,
                    member_id=member_id,
                    points=points,
                    reason="purchase" if kind == "grant" else "redeem",
                    idempotency_key=f"setup-{i}-{kind}-{points}",
                    actor=ledger.CLI,
                    **kw,
                )
                targets.append(e.id)
    start = {mid: balance_of(tenant_id, mid) for mid in members}
    allowed = (InsufficientPoints, ReversalTooLarge)

    def work(n: int) -> list[tuple[int, int]]:
        rnd = random.Random(n)
        done: list[tuple[int, int]] = []  # (member_id, points) of each applied entry
        for i in range(5):
            key = f"mixed-{n}-{i}"
            member_id = rnd.choice(members)
            op = rnd.choice(("grant", "spend", "spend", "reverse", "expire"))
            try:
                with unit_of_work() as db:
                    if op == "grant":
                        e = ledger.grant(
                            db,
                            tenant_id=tenant_id,
                            member_id=member_id,
                            points=rnd.randint(1, 50),
                            reason="purchase",
                            idempotency_key=key,
                            actor=ledger.CLI,
                        )
                    elif op == "spend":
                        e = ledger.spend(
                            db,
                            tenant_id=tenant_id,
                            member_id=member_id,
                            points=rnd.randint(1, 90),
                            reason="redeem",
                            idempotency_key=key,
                            actor=ledger.CLI,
                        )
                    elif op == "reverse":
                        e = ledger.reverse(
                            db,
                            tenant_id=tenant_id,
                            entry_id=rnd.choice(targets),
                            points=rnd.choice((None, rnd.randint(1, 30))),
                            idempotency_key=key,
                            actor=ledger.CLI,
                        )
                    else:
                        ledger.expire_due(db, tenant_id=tenant_id)
                        continue
                    done.append((e.member_id, e.points))
            except allowed:
                pass
        return done

    applied = [d for ds in run_threads(work) for d in ds]
    assert applied  # the threads did change something
    assert_verified(tenant_id)
    with unit_of_work() as db:
        for member_id in members:
            expired = db.scalar(
                select(func.coalesce(func.sum(m.JournalEntry.points), 0)).where(
                    m.JournalEntry.member_id == member_id, m.JournalEntry.kind == m.EXPIRE
                )
            )
            moved = sum(p for mid, p in applied if mid == member_id)
            bal = ledger.get_balance(db, tenant_id=tenant_id, member_id=member_id).balance
            assert bal == start[member_id] + moved + int(expired)
        for entry_id in targets:
            entry = ledger.get_entry(db, tenant_id=tenant_id, entry_id=entry_id)
            reversed_sum = db.scalar(
                select(func.coalesce(func.sum(m.JournalEntry.points), 0)).where(
                    m.JournalEntry.reverses_id == entry_id
                )
            )
            assert entry.reversed_points == abs(int(reversed_sum)) <= abs(entry.points)
    for member_id in members:  # SQLite: one writer at a time, so not inside the block above
        assert min(wallet_history(tenant_id, member_id)) >= 0


def test_a_posting_alone_commits_by_itself_and_leaves_the_uncommon_cases_to_python(committed):
    # ledger.alone is how the API and the CLI post. Its first posting for a member finds no
    # wallet (the Python path opens one); a spend beyond the balance, a replay under another
    # amount and another tenant's member are refused with nothing written; the pool's
    # connections go back in transaction mode, so sessions after it still roll back.
    tenant_id, [member_id] = setup_members(1, 0)
    other_tenant, [stranger] = setup_members(1, 0)
    kw: dict[str, Any] = {"tenant_id": tenant_id, "member_id": member_id, "actor": ledger.CLI}
    first = ledger.alone(ledger.grant, points=50, reason="purchase", idempotency_key="a", **kw)
    again = ledger.alone(ledger.grant, points=50, reason="purchase", idempotency_key="a", **kw)
    assert (again.id, again.points, again.kind) == (first.id, 50, m.CREDIT)
    spent = ledger.alone(ledger.spend, points=20, reason="redeem", idempotency_key="b", **kw)
    assert (spent.points, spent.kind, spent.member_id) == (-20, m.DEBIT, member_id)
    with pytest.raises(InsufficientPoints):
        ledger.alone(ledger.spend, points=31, reason="redeem", idempotency_key="c", **kw)
    with pytest.raises(IdempotencyConflict):
        ledger.alone(ledger.spend, points=21, reason="redeem", idempotency_key="b", **kw)
    with pytest.raises(MemberNotFound):
        ledger.alone(
            ledger.grant,
            tenant_id=tenant_id,
            member_id=stranger,
            points=5,
            reason="purchase",
            idempotency_key="d",
            actor=ledger.CLI,
        )
    assert balance_of(tenant_id, member_id) == 30
    assert balance_of(other_tenant, stranger) == 0
    with unit_of_work() as db:
        keys = db.scalars(
            select(m.JournalEntry.idempotency_key)
            .where(m.JournalEntry.tenant_id == tenant_id)
            .order_by(m.JournalEntry.id)
        ).all()
    assert keys == ["a", "b"]

    def grant_then_fail() -> None:
        with unit_of_work() as db:
            ledger.grant(db, points=7, reason="purchase", idempotency_key="rolled-back", **kw)
            raise RuntimeError("undo")

    for _ in range(3):  # more than one pooled connection has been lent to alone by now
        with pytest.raises(RuntimeError):
            grant_then_fail()
    assert balance_of(tenant_id, member_id) == 30
    assert_verified(tenant_id)

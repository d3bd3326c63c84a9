"""Ledger invariants under random sequences of grants, spends, reversals, time and expiry.

A Hypothesis state machine drives the real service on the real database. Each example gets
its own tenant inside its own outer transaction on a connection from the session-wide
``engine``, rolled back in ``teardown``, and starts the ``clock`` afresh. The test is a plain
test that runs the machine (not a ``@given`` test), so no fixture state leaks between
examples and no health check needs suppressing.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
from typing import Any

import pytest
from hypothesis import Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine, func, or_, select
from sqlalchemy.orm import Session

from siyu.core import clock as clockmod
from siyu.ledger import models as m
from siyu.ledger import service as ledger
from siyu.ledger.errors import (
    IdempotencyConflict,
    InsufficientPoints,
    NotReversible,
    ReversalTooLarge,
)
from tests.factories import make_member, make_tenant

START = dt.datetime(2026, 6, 1, 2, 0, tzinfo=dt.UTC)
POLICIES = st.one_of(
    st.just({"kind": "never"}),
    st.builds(lambda d: {"kind": "days", "days": d}, st.integers(1, 400)),
    st.builds(lambda y: {"kind": "year_end", "years": y}, st.integers(0, 2)),
)
# A small pool makes keys repeat: the same change (a replay) or a different one (a conflict).
KEYS = st.one_of(st.none(), st.sampled_from([f"k{i}" for i in range(6)]))
MEMBERS = st.integers(0, 2)
HOURS = st.sampled_from([0, 1, 24, 24 * 7, 24 * 30, 24 * 90, 24 * 200, 24 * 400])
_fresh = itertools.count(1)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self, engine: Engine, clock: Any) -> None:
        super().__init__()
        self.clock = clock
        clock.set(START)
        self.conn = engine.connect()
        self.outer = self.conn.begin()
        self.db = Session(
            bind=self.conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        self.tenant_id: int | None = None
        self.members: list[int] = []
        self.used: dict[str, tuple[tuple[Any, ...], int]] = {}  # key -> (change, entry id)
        self.calls: list[tuple[str, dict[str, Any], int]] = []  # applied changes, for replays
        self.growth: dict[int, int] = {}

    def teardown(self) -> None:
        self.db.close()
        self.outer.rollback()
        self.conn.close()

    # --- helpers ------------------------------------------------------------------------------

    def key(self, drawn: str | None) -> str:
        return drawn if drawn is not None else f"fresh-{next(_fresh)}"

    def wallet(self, member_id: int) -> tuple[int, int]:
        """(balance, growth) straight from the row."""
        row = self.db.execute(
            select(m.Account.balance, m.Account.growth).where(
                m.Account.tenant_id == self.tenant_id, m.Account.code == f"wallet:{member_id}"
            )
        ).one()
        return int(row[0]), int(row[1])

    def live(self, member_id: int) -> int:
        """Points in the member's lots that have not reached their expiry."""
        return int(
            self.db.scalar(
                select(func.coalesce(func.sum(m.Lot.remaining), 0))
                .join(m.Account, m.Account.id == m.Lot.account_id)
                .where(
                    m.Account.tenant_id == self.tenant_id,
                    m.Account.code == f"wallet:{member_id}",
                    or_(m.Lot.expires_at.is_(None), m.Lot.expires_at > self.clock.now),
                )
            )
        )

    def snapshot(self) -> tuple[Any, ...]:
        t = self.tenant_id

        def rows(q: Any) -> tuple[Any, ...]:
            return tuple(tuple(r) for r in self.db.execute(q).all())

        return (
            rows(
                select(m.Account.id, m.Account.balance, m.Account.growth)
                .where(m.Account.tenant_id == t)
                .order_by(m.Account.id)
            ),
            rows(
                select(m.Lot.id, m.Lot.remaining, m.Lot.expired)
                .where(m.Lot.tenant_id == t)
                .order_by(m.Lot.id)
            ),
            rows(
                select(m.JournalEntry.id, m.JournalEntry.reversed_points)
                .where(m.JournalEntry.tenant_id == t)
                .order_by(m.JournalEntry.id)
            ),
            self.db.scalar(
                select(func.count()).select_from(m.Posting).where(m.Posting.tenant_id == t)
            ),
            self.db.scalar(
                select(func.count()).select_from(m.LotMovement).where(m.LotMovement.tenant_id == t)
            ),
        )

    def expect_key(self, key: str, change: tuple[Any, ...]) -> int | None:
        """The entry a used key replays (None: the key is new). Raises for a conflict."""
        if key not in self.used:
            return None
        used_change, entry_id = self.used[key]
        if used_change != change:
            raise IdempotencyConflict(key=key, entry_id=entry_id)
        return entry_id

    def apply(self, op: str, kw: dict[str, Any]) -> m.JournalEntry:
        fn = {"grant": ledger.grant, "spend": ledger.spend, "reverse": ledger.reverse}[op]
        return fn(self.db, tenant_id=self.tenant_id, actor=ledger.CLI, **kw)

    def check_replay(self, op: str, kw: dict[str, Any], entry_id: int) -> None:
        before = self.snapshot()
        assert self.apply(op, kw).id == entry_id
        assert self.snapshot() == before

    def check_conflict(self, op: str, kw: dict[str, Any]) -> None:
        before = self.snapshot()
        with pytest.raises(IdempotencyConflict):
            self.apply(op, kw)
        assert self.snapshot() == before

    # --- rules --------------------------------------------------------------------------------

    @initialize(policy=POLICIES, n_members=st.integers(1, 3))
    def open_tenant(self, policy: dict[str, Any], n_members: int) -> None:
        tenant = make_tenant(self.db, expiry=policy)
        self.tenant_id = tenant.id
        self.members = [make_member(self.db, tenant).id for _ in range(n_members)]
        self.growth = dict.fromkeys(self.members, 0)

    @rule(
        who=MEMBERS,
        points=st.integers(1, 500),
        drawn=KEYS,
        expires_in=st.one_of(st.none(), HOURS.filter(bool)),
    )
    def grant(self, who: int, points: int, drawn: str | None, expires_in: int | None) -> None:
        member_id = self.members[who % len(self.members)]
        key = self.key(drawn)
        expires_at = (
            None if expires_in is None else (self.clock.now + dt.timedelta(hours=expires_in))
        )
        kw = {
            "member_id": member_id,
            "points": points,
            "reason": "purchase",
            "idempotency_key": key,
            "expires_at": expires_at,
        }
        try:
            replayed = self.expect_key(key, ("credit", member_id, points))
        except IdempotencyConflict:
            event("grant: conflict")
            return self.check_conflict("grant", kw)
        if replayed is not None:
            event("grant: replay")
            return self.check_replay("grant", kw, replayed)
        balance, growth = self.wallet(member_id)
        event("grant: applied")
        entry = self.apply("grant", kw)
        assert (entry.kind, entry.points) == (m.CREDIT, points)
        assert self.wallet(member_id) == (balance + points, growth + points)
        self.growth[member_id] += points
        self.remember(key, ("credit", member_id, points), "grant", kw, entry)

    @rule(data=st.data(), drawn=KEYS)
    def spend(self, data: st.DataObject, drawn: str | None) -> None:
        # Mostly a member with points and what they can afford, sometimes a little more.
        live = {mid: self.live(mid) for mid in self.members}
        member_id = data.draw(
            st.sampled_from([mid for mid in self.members if live[mid]] or self.members)
        )
        points = data.draw(st.integers(1, live[member_id] + 20))
        key = self.key(drawn)
        kw = {"member_id": member_id, "points": points, "reason": "redeem", "idempotency_key": key}
        try:
            replayed = self.expect_key(key, ("debit", member_id, -points))
        except IdempotencyConflict:
            event("spend: conflict")
            return self.check_conflict("spend", kw)
        if replayed is not None:
            event("spend: replay")
            return self.check_replay("spend", kw, replayed)
        live = self.live(member_id)
        if live < points:
            event("spend: insufficient")
            with pytest.raises(InsufficientPoints) as err:
                self.apply("spend", kw)
            assert err.value.params == {"balance": live, "wanted": points}
            assert self.wallet(member_id)[0] == live  # only due points expired
            return None
        event("spend: applied")
        entry = self.apply("spend", kw)
        assert (entry.kind, entry.points) == (m.DEBIT, -points)
        assert self.wallet(member_id)[0] == live - points
        self.check_lot_order(member_id, entry)
        self.remember(key, ("debit", member_id, -points), "spend", kw, entry)
        return None

    @precondition(lambda self: self.calls)
    @rule(data=st.data(), points=st.one_of(st.none(), st.integers(1, 100)), drawn=KEYS)
    def reverse(self, data: st.DataObject, points: int | None, drawn: str | None) -> None:
        rows = self.db.execute(
            select(m.JournalEntry.id, m.JournalEntry.kind)
            .where(m.JournalEntry.tenant_id == self.tenant_id)
            .order_by(m.JournalEntry.id)
        ).all()
        movable = [i for i, kind in rows if kind in (m.CREDIT, m.DEBIT)]
        # Mostly credits and debits; sometimes an expiry or reversal, which must be refused.
        pool = movable if data.draw(st.integers(0, 4)) else [i for i, _ in rows]
        target = self.db.get(
            m.JournalEntry, data.draw(st.sampled_from(pool)), populate_existing=True
        )
        assert target is not None
        key = self.key(drawn)
        kw = {"entry_id": target.id, "points": points, "idempotency_key": key}
        if target.kind not in (m.CREDIT, m.DEBIT):
            event("reverse: not reversible")
            with pytest.raises(NotReversible):
                self.apply("reverse", kw)
            return None
        if key in self.used:
            (kind, reverses, amount), entry_id = self.used[key]
            if kind == "reversal" and reverses == target.id and points in (None, amount):
                event("reverse: replay")
                return self.check_replay("reverse", kw, entry_id)
            event("reverse: conflict")
            return self.check_conflict("reverse", kw)
        reversible = abs(target.points) - target.reversed_points
        wanted = reversible if points is None else points
        member_id = target.member_id
        if reversible == 0 or wanted > reversible:
            event("reverse: too large")
            before = self.snapshot()
            with pytest.raises(ReversalTooLarge):
                self.apply("reverse", kw)
            assert self.snapshot() == before
            return None
        live = self.live(member_id)
        balance, growth = self.wallet(member_id)
        if target.kind == m.CREDIT and live < wanted:
            event("reverse: insufficient")
            with pytest.raises(InsufficientPoints):
                self.apply("reverse", kw)
            assert self.wallet(member_id)[0] == live
            return None
        event(f"reverse: {target.kind} reversed")
        entry = self.apply("reverse", kw)
        assert (entry.kind, entry.reverses_id) == (m.REVERSAL, target.id)
        self.db.refresh(target)
        assert target.reversed_points == abs(target.points) - reversible + wanted
        after, growth_after = self.wallet(member_id)
        if target.kind == m.CREDIT:
            assert entry.points == -wanted
            assert (after, growth_after) == (live - wanted, growth - wanted)
            self.growth[member_id] -= wanted
        else:
            # Points go back to the lots they came from; those already expired expire again.
            assert entry.points == wanted
            assert live <= after <= live + wanted
            assert after == self.live(member_id)
            assert growth_after == growth
        self.remember(key, ("reversal", target.id, wanted), "reverse", kw, entry)
        return None

    @rule(hours=HOURS)
    def advance_clock(self, hours: int) -> None:
        self.clock.advance(hours=hours)

    @rule()
    def expire(self) -> None:
        if ledger.expire_due(self.db, tenant_id=self.tenant_id):
            event("expire: expired some")
        for member_id in self.members:
            assert self.wallet(member_id)[0] == self.live(member_id)
        after = self.snapshot()
        assert ledger.expire_due(self.db, tenant_id=self.tenant_id) == 0
        assert self.snapshot() == after

    @precondition(lambda self: self.calls)
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        op, kw, entry_id = data.draw(st.sampled_from(self.calls))
        self.check_replay(op, kw, entry_id)

    def remember(
        self, key: str, change: tuple[Any, ...], op: str, kw: dict[str, Any], entry: m.JournalEntry
    ) -> None:
        self.used[key] = (change, entry.id)
        self.calls.append((op, kw, entry.id))

    def check_lot_order(self, member_id: int, entry: m.JournalEntry) -> None:
        """A debit drained lots in expiry order (never-expiring last) and left the rest."""
        now = self.clock.now
        lots = self.db.execute(
            select(m.Lot.id, m.Lot.expires_at, m.Lot.remaining)
            .join(m.Account, m.Account.id == m.Lot.account_id)
            .where(m.Account.code == f"wallet:{member_id}", m.Account.tenant_id == self.tenant_id)
        ).all()
        taken = set(
            self.db.scalars(select(m.LotMovement.lot_id).where(m.LotMovement.entry_id == entry.id))
        )

        def order(lot: Any) -> tuple[Any, ...]:
            return (
                lot.expires_at is None,
                clockmod.as_utc(lot.expires_at) if lot.expires_at else now,
                lot.id,
            )

        last = max(order(lot) for lot in lots if lot.id in taken)
        for lot in lots:
            if lot.id in taken and order(lot) < last:
                assert lot.remaining == 0
            usable = lot.expires_at is None or clockmod.as_utc(lot.expires_at) > now
            if usable and lot.remaining > 0 and lot.id not in taken:
                assert order(lot) > last

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def ledger_is_consistent(self) -> None:
        if self.tenant_id is None:
            return
        t = self.tenant_id
        bad_entries = self.db.execute(
            select(
                m.JournalEntry.id,
                func.count(m.Posting.id),
                func.coalesce(func.sum(m.Posting.amount), 0),
            )
            .outerjoin(m.Posting, m.Posting.entry_id == m.JournalEntry.id)
            .where(m.JournalEntry.tenant_id == t)
            .group_by(m.JournalEntry.id)
            .having(
                or_(func.count(m.Posting.id) < 2, func.coalesce(func.sum(m.Posting.amount), 0) != 0)
            )
        ).all()
        assert bad_entries == []  # every entry posts at least two lines that sum to zero
        posted = dict(
            self.db.execute(
                select(m.Posting.account_id, func.sum(m.Posting.amount))
                .where(m.Posting.tenant_id == t)
                .group_by(m.Posting.account_id)
            ).all()
        )
        assert sum(int(v) for v in posted.values()) == 0
        in_lots = dict(
            self.db.execute(
                select(m.Lot.account_id, func.sum(m.Lot.remaining))
                .where(m.Lot.tenant_id == t)
                .group_by(m.Lot.account_id)
            ).all()
        )
        wallets = self.db.execute(
            select(m.Account.id, m.Account.member_id, m.Account.balance, m.Account.growth).where(
                m.Account.tenant_id == t, m.Account.kind == m.WALLET
            )
        ).all()
        assert len(wallets) == len(self.members)
        for acc_id, member_id, balance, growth in wallets:
            assert balance >= 0
            assert balance == int(posted.get(acc_id, 0)) == int(in_lots.get(acc_id, 0))
            assert growth == self.growth[member_id]  # spending and expiry leave growth alone
        report = ledger.verify(self.db, tenant_id=t)
        assert report.problems == []


def test_ledger_invariants_hold_for_random_operations(engine, clock):
    run_state_machine_as_test(
        lambda: LedgerMachine(engine, clock),
        # No shrinking: against a database it can take minutes, beyond the suite's timeout;
        # a failure prints its (at most 30) steps, which read well enough unshrunk.
        settings=settings(
            max_examples=int(os.environ.get("SIYU_HYPOTHESIS_EXAMPLES", "40")),
            stateful_step_count=30,
            deadline=None,
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
        ),
    )

"""Debt invariants under random grants, spends and clawbacks (ledger/debt.py).

For every sequence: the wallet and the debt never go negative; a member never holds points
while owing (earnings settle debt first); balance − debt equals what was granted less what
was spent and clawed back; ``ledger.verify`` (double entry, debt account ↔ wallet debt)
finds nothing.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from siyu.ledger import debt
from siyu.ledger import models as m
from siyu.ledger import service as ledger
from tests.factories import make_member, make_tenant


class DebtMachine(RuleBasedStateMachine):
    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.conn = engine.connect()
        self.outer = self.conn.begin()
        self.db = Session(
            bind=self.conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        self.n = 0
        self.net = 0  # granted − spent − clawed back
        self.credits: dict[int, int] = {}  # credit entry id → points left to claw back

    def teardown(self) -> None:
        self.db.close()
        self.outer.rollback()
        self.conn.close()

    def key(self) -> str:
        self.n += 1
        return f"p{self.n}"

    def wallet(self) -> tuple[int, int]:
        row = self.db.execute(
            select(m.Account.balance, m.Account.debt)
            .where(m.Account.tenant_id == self.tenant_id, m.Account.member_id == self.member_id)
            .execution_options(populate_existing=True)
        ).one()
        return int(row[0]), int(row[1])

    @initialize()
    def open(self) -> None:
        tenant = make_tenant(self.db)
        self.tenant_id = tenant.id
        self.member_id = make_member(self.db, tenant).id
        ledger.open_wallet(self.db, tenant_id=tenant.id, member_id=self.member_id)

    @rule(points=st.integers(1, 300))
    def grant(self, points: int) -> None:
        e = ledger.grant(
            self.db,
            tenant_id=self.tenant_id,
            member_id=self.member_id,
            points=points,
            reason="purchase",
            idempotency_key=self.key(),
            actor=ledger.CLI,
        )
        self.credits[e.id] = points
        self.net += points

    @precondition(lambda self: self.wallet()[0] > 0)
    @rule(share=st.integers(1, 100))
    def spend(self, share: int) -> None:
        balance, _debt = self.wallet()
        points = max(1, balance * share // 100)
        ledger.spend(
            self.db,
            tenant_id=self.tenant_id,
            member_id=self.member_id,
            points=points,
            reason="redeem",
            idempotency_key=self.key(),
            actor=ledger.CLI,
        )
        self.net -= points

    @precondition(lambda self: any(self.credits.values()))
    @rule(pick=st.integers(0, 1000), share=st.integers(1, 100), replay=st.booleans())
    def claw_back(self, pick: int, share: int, replay: bool) -> None:
        open_ids = sorted(k for k, v in self.credits.items() if v)
        entry_id = open_ids[pick % len(open_ids)]
        points = max(1, self.credits[entry_id] * share // 100)
        key = self.key()
        before = self.wallet()
        done = debt.clawback(
            self.db,
            tenant_id=self.tenant_id,
            entry_id=entry_id,
            points=points,
            idempotency_key=key,
            actor=ledger.CLI,
        )
        assert done.reversed + done.debt == points
        assert done.reversed == min(points, before[0])
        self.credits[entry_id] -= points
        self.net -= points
        if replay:  # the same key again changes nothing
            after = self.wallet()
            again = debt.clawback(
                self.db,
                tenant_id=self.tenant_id,
                entry_id=entry_id,
                points=points,
                idempotency_key=key,
                actor=ledger.CLI,
            )
            assert (again.reversed, again.debt) == (done.reversed, done.debt)
            assert self.wallet() == after

    @invariant()
    def books_hold(self) -> None:
        if not hasattr(self, "member_id"):
            return
        balance, owed = self.wallet()
        assert balance >= 0
        assert owed >= 0
        assert owed == 0 or balance == 0, "earnings must settle debt first"
        assert balance - owed == self.net
        report = ledger.verify(self.db, tenant_id=self.tenant_id)
        assert report.problems == []


def test_debt_invariants(engine: Any) -> None:
    run_state_machine_as_test(
        lambda: DebtMachine(engine),
        settings=settings(
            max_examples=int(os.environ.get("SIYU_DEBT_EXAMPLES", "15")),
            stateful_step_count=20,
            deadline=None,
        ),
    )

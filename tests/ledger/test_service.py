"""The points ledger service: double entry, lots and expiry, idempotency, reversals, verify."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text

from siyu.core.errors import InvalidRequest
from siyu.ledger import models as m
from siyu.ledger import service as ledger
from siyu.ledger.errors import (
    EntryNotFound,
    IdempotencyConflict,
    InsufficientPoints,
    InvalidExpiry,
    InvalidPoints,
    InvalidReason,
    NotReversible,
    ReversalTooLarge,
)
from siyu.members.errors import MemberNotFound
from tests.factories import grant, make_member, make_tenant, spend

SHANGHAI = ZoneInfo("Asia/Shanghai")
UTC = dt.UTC
_keys = itertools.count(1)


# --- helpers ----------------------------------------------------------------------------------


def wallet_of(db, member) -> m.Account:
    return db.scalar(
        select(m.Account)
        .where(m.Account.member_id == member.id)
        .execution_options(populate_existing=True)
    )


def lot_of(db, entry) -> m.Lot:
    return db.scalar(
        select(m.Lot).where(m.Lot.entry_id == entry.id).execution_options(populate_existing=True)
    )


def remainders(db, member) -> list[int]:
    """Remaining points of the member's lots, oldest lot first."""
    return list(
        db.scalars(
            select(m.Lot.remaining)
            .join(m.Account, m.Account.id == m.Lot.account_id)
            .where(m.Account.member_id == member.id)
            .order_by(m.Lot.id)
        )
    )


def postings_of(db, entry) -> dict[str, int]:
    """Amount posted per account kind for one entry."""
    rows = db.execute(
        select(m.Account.kind, func.sum(m.Posting.amount))
        .join(m.Account, m.Account.id == m.Posting.account_id)
        .where(m.Posting.entry_id == entry.id)
        .group_by(m.Account.kind)
    ).all()
    return {kind: int(total) for kind, total in rows}


def entries_of(db, member, kind: str | None = None) -> list[m.JournalEntry]:
    q = select(m.JournalEntry).where(m.JournalEntry.member_id == member.id)
    if kind:
        q = q.where(m.JournalEntry.kind == kind)
    return list(db.scalars(q.order_by(m.JournalEntry.id).execution_options(populate_existing=True)))


def snapshot(db, tenant) -> tuple[object, ...]:
    """Everything a change could touch: balances, growth, lots, entries, postings, movements."""
    db.expire_all()

    def rows(q):
        return tuple(tuple(r) for r in db.execute(q).all())

    return (
        rows(
            select(m.Account.id, m.Account.balance, m.Account.growth)
            .where(m.Account.tenant_id == tenant.id)
            .order_by(m.Account.id)
        ),
        rows(
            select(m.Lot.id, m.Lot.remaining, m.Lot.expired)
            .where(m.Lot.tenant_id == tenant.id)
            .order_by(m.Lot.id)
        ),
        rows(
            select(m.JournalEntry.id, m.JournalEntry.reversed_points)
            .where(m.JournalEntry.tenant_id == tenant.id)
            .order_by(m.JournalEntry.id)
        ),
        rows(select(m.Posting.id).where(m.Posting.tenant_id == tenant.id).order_by(m.Posting.id)),
        rows(
            select(m.LotMovement.id)
            .where(m.LotMovement.tenant_id == tenant.id)
            .order_by(m.LotMovement.id)
        ),
    )


def reverse(db, entry, *, points: int | None = None, key: str | None = None):
    return ledger.reverse(
        db,
        tenant_id=entry.tenant_id,
        entry_id=entry.id,
        points=points,
        idempotency_key=key or f"test-reverse-{next(_keys)}",
        actor=ledger.CLI,
    )


def assert_consistent(db, tenant) -> None:
    db.expire_all()
    report = ledger.verify(db, tenant_id=tenant.id)
    assert report.problems == []
    assert report.ok


# --- grant and spend --------------------------------------------------------------------------


def test_grant_posts_balanced_entry_and_opens_lot(db, clock):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    entry = grant(db, member, 120, key="order-1", memo="双11", reference="tb:1")
    assert (entry.kind, entry.points, entry.reason, entry.idempotency_key) == (
        m.CREDIT,
        120,
        "purchase",
        "order-1",
    )
    assert entry.created_at == clock.now
    assert postings_of(db, entry) == {m.WALLET: 120, m.ISSUANCE: -120}
    lot = lot_of(db, entry)
    assert (lot.points, lot.remaining, lot.expires_at) == (120, 120, None)
    bal = ledger.get_balance(db, tenant_id=tenant.id, member_id=member.id)
    assert (bal.balance, bal.growth) == (120, 120)
    assert_consistent(db, tenant)


def test_spend_posts_balanced_entry_into_redemption(db, clock):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    grant(db, member, 100)
    entry = spend(db, member, 30)
    assert (entry.kind, entry.points) == (m.DEBIT, -30)
    assert postings_of(db, entry) == {m.WALLET: -30, m.REDEMPTION: 30}
    assert wallet_of(db, member).balance == 70
    assert_consistent(db, tenant)


def test_spend_consumes_earliest_expiring_lots_first_and_never_expiring_last(db, clock):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    grant(db, member, 50)  # never expires
    grant(db, member, 50, expires_at=clock.now + dt.timedelta(days=30))
    grant(db, member, 50, expires_at=clock.now + dt.timedelta(days=10))
    spend(db, member, 70)
    assert remainders(db, member) == [50, 30, 0]
    spend(db, member, 40)
    assert remainders(db, member) == [40, 0, 0]
    assert wallet_of(db, member).balance == 40
    assert_consistent(db, tenant)


def test_spend_expires_due_lots_before_taking_points(db, clock):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    grant(db, member, 80, expires_at=clock.now + dt.timedelta(days=1))
    grant(db, member, 20)
    clock.advance(days=2)
    spend(db, member, 15)
    assert remainders(db, member) == [0, 5]
    assert wallet_of(db, member).balance == 5
    [expired] = entries_of(db, member, m.EXPIRE)
    assert expired.points == -80
    assert postings_of(db, expired) == {m.WALLET: -80, m.EXPIRY: 80}
    assert_consistent(db, tenant)


def test_spend_beyond_balance_takes_nothing(db, clock):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    grant(db, member, 30, expires_at=clock.now + dt.timedelta(days=5))
    grant(db, member, 20)
    before = snapshot(db, tenant)
    with pytest.raises(InsufficientPoints) as err:
        spend(db, member, 51)
    assert err.value.code == "points.insufficient"
    assert err.value.params == {"balance": 50, "wanted": 51}
    assert snapshot(db, tenant) == before
    assert remainders(db, member) == [30, 20]
    assert_consistent(db, tenant)


def test_expired_points_cannot_be_spent(db, clock):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    grant(db, member, 100, expires_at=clock.now + dt.timedelta(hours=1))
    clock.advance(hours=1)
    with pytest.raises(InsufficientPoints) as err:
        spend(db, member, 1)
    assert err.value.params == {"balance": 0, "wanted": 1}


@pytest.mark.parametrize("points", [0, -5, True, 1_000_000_001, 2.5])
def test_grant_and_spend_refuse_invalid_amounts(db, points):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    with pytest.raises(InvalidPoints):
        grant(db, member, points)
    with pytest.raises(InvalidPoints):
        spend(db, member, points)
    assert entries_of(db, member) == []


@pytest.mark.parametrize("reason", ["", "Purchase", "has space", "x" * 65, "_lead"])
def test_grant_refuses_invalid_reason_codes(db, reason):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    with pytest.raises(InvalidReason):
        grant(db, member, 10, reason=reason)
    assert entries_of(db, member) == []


def test_grant_refuses_empty_or_oversized_keys(db):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    for key in ("", "k" * 201):
        with pytest.raises(InvalidRequest):
            ledger.grant(
                db,
                tenant_id=tenant.id,
                member_id=member.id,
                points=1,
                reason="purchase",
                idempotency_key=key,
                actor=ledger.CLI,
            )
    assert entries_of(db, member) == []


def test_grant_refuses_naive_or_past_expiry(db, clock):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    with pytest.raises(InvalidExpiry):
        grant(db, member, 10, expires_at=dt.datetime(2030, 1, 1))  # noqa: DTZ001 - on purpose
    with pytest.raises(InvalidExpiry):
        grant(db, member, 10, expires_at=clock.now)
    assert entries_of(db, member) == []


def test_client_keys_cannot_take_the_expiry_namespace(db, clock):
    """Expiry derives its keys as ``expire:<lot>:<n>``; a client key there would block it."""
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    lot_entry = grant(db, member, 10, expires_at=clock.now + dt.timedelta(days=1))
    squatted = f"expire:{lot_of(db, lot_entry).id}:0"
    with pytest.raises(InvalidRequest):
        grant(db, member, 5, key=squatted)
    clock.advance(days=2)
    assert ledger.expire_due(db, tenant_id=tenant.id) == 1
    assert wallet_of(db, member).balance == 0
    assert_consistent(db, tenant)


# --- idempotency ------------------------------------------------------------------------------


def test_grant_retry_with_same_key_returns_first_entry_and_changes_nothing(db, clock):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    first = grant(db, member, 100, key="order-7")
    before = snapshot(db, tenant)
    again = grant(db, member, 100, key="order-7")
    assert again.id == first.id
    assert snapshot(db, tenant) == before
    assert wallet_of(db, member).balance == 100


def test_spend_retry_with_same_key_debits_once(db, clock):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    grant(db, member, 100)
    first = spend(db, member, 60, key="redeem-1")
    before = snapshot(db, tenant)
    again = spend(db, member, 60, key="redeem-1")  # a second debit would not even fit
    assert again.id == first.id
    assert snapshot(db, tenant) == before
    assert wallet_of(db, member).balance == 40


def test_grant_retry_after_its_explicit_expiry_passed_returns_first_entry(db, clock):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    expires_at = clock.now + dt.timedelta(days=1)
    first = grant(db, member, 100, key="promo-1", expires_at=expires_at)
    clock.advance(days=3)
    again = grant(db, member, 100, key="promo-1", expires_at=expires_at)
    assert again.id == first.id


def test_replays_after_points_fell_due_change_nothing(db, clock):
    """A retry answers with the first entry; it does not post the wallet's due expiry."""
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    credit = grant(db, member, 100, key="g-due", expires_at=clock.now + dt.timedelta(days=1))
    grant(db, member, 50)
    debit = spend(db, member, 20, key="s-due")
    clock.advance(days=2)
    before = snapshot(db, tenant)
    assert spend(db, member, 20, key="s-due").id == debit.id
    assert grant(db, member, 100, key="g-due").id == credit.id
    assert snapshot(db, tenant) == before
    assert entries_of(db, member, m.EXPIRE) == []


def test_reverse_retry_with_same_key_reverses_once(db, clock):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    credit = grant(db, member, 100)
    first = reverse(db, credit, points=40, key="refund-1")
    before = snapshot(db, tenant)
    again = reverse(db, credit, points=40, key="refund-1")
    assert again.id == first.id
    assert snapshot(db, tenant) == before
    assert wallet_of(db, member).balance == 60


def test_same_key_for_a_different_change_is_a_conflict(db, clock):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    other = make_member(db, tenant)
    credit = grant(db, member, 100, key="k1")
    before = snapshot(db, tenant)
    attempts = [
        lambda: grant(db, member, 101, key="k1"),
        lambda: grant(db, other, 100, key="k1"),
        lambda: spend(db, member, 100, key="k1"),
        lambda: reverse(db, credit, key="k1"),
    ]
    for attempt in attempts:
        with pytest.raises(IdempotencyConflict) as err:
            attempt()
        assert err.value.code == "points.idempotency_conflict"
        assert err.value.params == {"key": "k1", "entry_id": credit.id}
    assert snapshot(db, tenant) == before


def test_reverse_key_reused_for_another_amount_or_entry_is_a_conflict(db, clock):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    credit = grant(db, member, 100)
    other_credit = grant(db, member, 100)
    first = reverse(db, credit, points=10, key="refund-9")
    with pytest.raises(IdempotencyConflict):
        reverse(db, credit, points=20, key="refund-9")
    with pytest.raises(IdempotencyConflict):
        reverse(db, other_credit, points=10, key="refund-9")
    assert reverse(db, credit, key="refund-9").id == first.id  # "everything left" replays


def test_idempotency_keys_are_scoped_per_tenant(db, clock):
    a, b = make_tenant(db), make_tenant(db)
    ma, mb = make_member(db, a), make_member(db, b)
    ea = grant(db, ma, 10, key="shared-key")
    eb = grant(db, mb, 20, key="shared-key")
    assert ea.id != eb.id
    assert (wallet_of(db, ma).balance, wallet_of(db, mb).balance) == (10, 20)


# --- reversals --------------------------------------------------------------------------------


def test_full_credit_reversal_takes_from_its_own_lot_first_and_lowers_growth(db, clock):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    credit = grant(db, member, 100)  # never expires: spending would take it last
    grant(db, member, 100, expires_at=clock.now + dt.timedelta(days=10))
    rev = reverse(db, credit)
    assert (rev.kind, rev.points, rev.reverses_id, rev.reference) == (
        m.REVERSAL,
        -100,
        credit.id,
        f"entry:{credit.id}",
    )
    assert postings_of(db, rev) == {m.WALLET: -100, m.ISSUANCE: 100}
    assert remainders(db, member) == [0, 100]
    bal = ledger.get_balance(db, tenant_id=tenant.id, member_id=member.id)
    assert (bal.balance, bal.growth) == (100, 100)
    db.refresh(credit)
    assert credit.reversed_points == 100
    assert_consistent(db, tenant)


def test_partial_credit_reversals_add_up_to_the_credit_and_no_more(db, clock):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    credit = grant(db, member, 100)
    assert reverse(db, credit, points=30).points == -30
    with pytest.raises(ReversalTooLarge) as err:
        reverse(db, credit, points=71)
    assert err.value.code == "points.reversal_too_large"
    assert err.value.params == {"entry_id": credit.id, "reversible": 70}
    assert reverse(db, credit).points == -70  # the rest
    with pytest.raises(ReversalTooLarge):
        reverse(db, credit)
    with pytest.raises(ReversalTooLarge):
        reverse(db, credit, points=1)
    bal = ledger.get_balance(db, tenant_id=tenant.id, member_id=member.id)
    assert (bal.balance, bal.growth) == (0, 0)
    assert_consistent(db, tenant)


def test_credit_reversal_after_its_points_were_spent_takes_from_other_lots(db, clock):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    credit = grant(db, member, 100)
    spend(db, member, 80)
    grant(db, member, 100)
    reverse(db, credit)
    assert remainders(db, member) == [0, 20]
    assert wallet_of(db, member).balance == 20
    assert_consistent(db, tenant)


def test_credit_reversal_beyond_the_balance_takes_nothing(db, clock):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    credit = grant(db, member, 100)
    spend(db, member, 70)
    before = snapshot(db, tenant)
    with pytest.raises(InsufficientPoints) as err:
        reverse(db, credit)
    assert err.value.params == {"balance": 30, "wanted": 100}
    assert snapshot(db, tenant) == before


def test_debit_reversal_returns_points_to_their_lots_with_original_expiry(db, clock):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    soon = clock.now + dt.timedelta(days=10)
    grant(db, member, 50, expires_at=soon)
    grant(db, member, 50)
    debit = spend(db, member, 70)  # 50 from the expiring lot, 20 from the other
    assert remainders(db, member) == [0, 30]
    rev = reverse(db, debit, points=30)  # latest-expiring first: the reverse of taking
    assert (rev.kind, rev.points, rev.reverses_id) == (m.REVERSAL, 30, debit.id)
    assert postings_of(db, rev) == {m.WALLET: 30, m.REDEMPTION: -30}
    assert remainders(db, member) == [10, 50]
    reverse(db, debit)
    assert remainders(db, member) == [50, 50]
    bal = ledger.get_balance(db, tenant_id=tenant.id, member_id=member.id)
    assert bal.balance == 100
    assert [(e.expires_at, e.points) for e in bal.expiring] == [(soon, 50)]
    with pytest.raises(ReversalTooLarge):
        reverse(db, debit, points=1)
    assert_consistent(db, tenant)


def test_debit_reversal_into_an_expired_lot_expires_the_points_again_at_once(db, clock):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    credit = grant(db, member, 50, expires_at=clock.now + dt.timedelta(days=10))
    debit = spend(db, member, 20)
    clock.advance(days=11)
    assert ledger.expire_due(db, tenant_id=tenant.id) == 1  # the other 30 expire
    rev = reverse(db, debit)
    assert rev.points == 20
    assert wallet_of(db, member).balance == 0
    lot = lot_of(db, credit)
    assert (lot.remaining, lot.expired) == (0, 50)
    expiries = entries_of(db, member, m.EXPIRE)
    assert [(e.points, e.idempotency_key) for e in expiries] == [
        (-30, f"expire:{lot.id}:0"),
        (-20, f"expire:{lot.id}:30"),
    ]
    assert expiries[-1].id > rev.id
    assert_consistent(db, tenant)


def test_growth_is_unaffected_by_debit_reversals(db, clock):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    grant(db, member, 100)
    debit = spend(db, member, 40)
    reverse(db, debit)
    bal = ledger.get_balance(db, tenant_id=tenant.id, member_id=member.id)
    assert (bal.balance, bal.growth) == (100, 100)


def test_expiry_and_reversal_entries_are_not_reversible(db, clock):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    credit = grant(db, member, 100, expires_at=clock.now + dt.timedelta(days=1))
    rev = reverse(db, credit, points=10)
    clock.advance(days=2)
    ledger.expire_due(db, tenant_id=tenant.id)
    [expired] = entries_of(db, member, m.EXPIRE)
    for entry in (rev, expired):
        with pytest.raises(NotReversible) as err:
            reverse(db, entry)
        assert err.value.code == "points.not_reversible"
        assert err.value.params == {"entry_id": entry.id, "kind": entry.kind}


def test_reversing_an_unknown_entry_is_not_found(db):
    tenant = make_tenant(db)
    with pytest.raises(EntryNotFound):
        ledger.reverse(
            db, tenant_id=tenant.id, entry_id=999_999_999, idempotency_key="x", actor=ledger.CLI
        )


# --- expiry -----------------------------------------------------------------------------------


def test_year_end_policy_expires_at_new_year_after_next_in_tenant_time(db, clock):
    tenant = make_tenant(db, expiry={"kind": "year_end", "years": 1})
    member = make_member(db, tenant)
    clock.set(dt.datetime(2026, 6, 1, 10, 0, tzinfo=SHANGHAI))
    entry = grant(db, member, 100)
    assert lot_of(db, entry).expires_at == dt.datetime(2028, 1, 1, tzinfo=SHANGHAI)
    assert lot_of(db, entry).expires_at == dt.datetime(2027, 12, 31, 16, 0, tzinfo=UTC)


def test_year_end_policy_uses_the_tenant_local_year(db, clock):
    tenant = make_tenant(db, expiry={"kind": "year_end", "years": 1})
    member = make_member(db, tenant)
    # 2026-12-31 16:30 UTC is already 2027 in Shanghai.
    clock.set(dt.datetime(2026, 12, 31, 16, 30, tzinfo=UTC))
    late = grant(db, member, 10)
    clock.set(dt.datetime(2026, 12, 31, 15, 59, tzinfo=UTC))
    early = grant(db, member, 10)
    assert lot_of(db, late).expires_at == dt.datetime(2029, 1, 1, tzinfo=SHANGHAI)
    assert lot_of(db, early).expires_at == dt.datetime(2028, 1, 1, tzinfo=SHANGHAI)


def test_days_policy_expires_a_fixed_time_after_earning(db, clock):
    tenant = make_tenant(db, expiry={"kind": "days", "days": 30})
    member = make_member(db, tenant)
    entry = grant(db, member, 100)
    assert lot_of(db, entry).expires_at == clock.now + dt.timedelta(days=30)


def test_explicit_expiry_overrides_the_policy(db, clock):
    tenant = make_tenant(db, expiry={"kind": "days", "days": 30})
    member = make_member(db, tenant)
    when = clock.now + dt.timedelta(days=3)
    assert lot_of(db, grant(db, member, 5, expires_at=when)).expires_at == when


def test_expire_due_expires_points_at_their_instant_and_not_before(db, clock):
    tenant = make_tenant(db, expiry={"kind": "year_end", "years": 1})
    member = make_member(db, tenant)
    clock.set(dt.datetime(2026, 6, 1, 10, 0, tzinfo=SHANGHAI))
    entry = grant(db, member, 100)
    spend(db, member, 30)
    clock.set(dt.datetime(2028, 1, 1, tzinfo=SHANGHAI) - dt.timedelta(microseconds=1))
    assert ledger.expire_due(db, tenant_id=tenant.id) == 0
    assert wallet_of(db, member).balance == 70
    clock.advance(microseconds=1)
    assert ledger.expire_due(db, tenant_id=tenant.id) == 1
    [expired] = entries_of(db, member, m.EXPIRE)
    assert (expired.points, expired.reason, expired.actor_type, expired.reference) == (
        -70,
        "expiry",
        "job",
        f"lot:{lot_of(db, entry).id}",
    )
    assert postings_of(db, expired) == {m.WALLET: -70, m.EXPIRY: 70}
    bal = ledger.get_balance(db, tenant_id=tenant.id, member_id=member.id)
    assert (bal.balance, bal.growth) == (0, 100)
    assert_consistent(db, tenant)


def test_expire_due_is_safe_to_run_twice(db, clock):
    tenant = make_tenant(db, expiry={"kind": "days", "days": 7})
    members = [make_member(db, tenant) for _ in range(3)]
    for mem in members:
        grant(db, mem, 40)
    clock.advance(days=7)
    assert ledger.expire_due(db, tenant_id=tenant.id) == 3
    after_first = snapshot(db, tenant)
    assert ledger.expire_due(db, tenant_id=tenant.id) == 0
    assert snapshot(db, tenant) == after_first
    assert [wallet_of(db, mem).balance for mem in members] == [0, 0, 0]
    assert_consistent(db, tenant)


def test_expire_due_works_in_batches_of_wallets(db, clock):
    tenant = make_tenant(db, expiry={"kind": "days", "days": 1})
    members = [make_member(db, tenant) for _ in range(3)]
    for mem in members:
        grant(db, mem, 10)
    clock.advance(days=2)
    assert ledger.expire_due(db, tenant_id=tenant.id, limit=2) == 2
    assert ledger.expire_due(db, tenant_id=tenant.id, limit=2) == 1
    assert ledger.expire_due(db, tenant_id=tenant.id, limit=2) == 0
    assert_consistent(db, tenant)


def test_expire_due_touches_only_its_tenant(db, clock):
    a = make_tenant(db, expiry={"kind": "days", "days": 1})
    b = make_tenant(db, expiry={"kind": "days", "days": 1})
    ma, mb = make_member(db, a), make_member(db, b)
    grant(db, ma, 10)
    grant(db, mb, 10)
    clock.advance(days=2)
    assert ledger.expire_due(db, tenant_id=a.id) == 1
    assert (wallet_of(db, ma).balance, wallet_of(db, mb).balance) == (0, 10)


def test_balance_lists_points_expiring_within_the_horizon(db, clock):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    in_10 = clock.now + dt.timedelta(days=10)
    in_200 = clock.now + dt.timedelta(days=200)
    grant(db, member, 30, expires_at=in_10)
    grant(db, member, 20, expires_at=in_10)
    grant(db, member, 40, expires_at=in_200)
    grant(db, member, 50)
    spend(db, member, 5)
    bal = ledger.get_balance(db, tenant_id=tenant.id, member_id=member.id)
    assert bal.balance == 135
    assert [(e.expires_at, e.points) for e in bal.expiring] == [(in_10, 45)]
    wide = ledger.get_balance(db, tenant_id=tenant.id, member_id=member.id, horizon_days=365)
    assert [(e.expires_at, e.points) for e in wide.expiring] == [(in_10, 45), (in_200, 40)]


def test_growth_is_unaffected_by_spending_and_expiry(db, clock):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    grant(db, member, 100, expires_at=clock.now + dt.timedelta(days=1))
    grant(db, member, 50)
    grant(db, member, 25, counts_for_growth=False)
    spend(db, member, 60)
    clock.advance(days=2)
    ledger.expire_due(db, tenant_id=tenant.id)
    bal = ledger.get_balance(db, tenant_id=tenant.id, member_id=member.id)
    assert (bal.balance, bal.growth) == (75, 150)


def test_reversing_a_credit_that_did_not_count_for_growth_leaves_growth(db, clock):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    grant(db, member, 100)
    bonus = grant(db, member, 30, counts_for_growth=False)
    reverse(db, bonus)
    bal = ledger.get_balance(db, tenant_id=tenant.id, member_id=member.id)
    assert (bal.balance, bal.growth) == (100, 100)


# --- reads ------------------------------------------------------------------------------------


def test_list_entries_pages_newest_first(db, clock):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    other = make_member(db, tenant)
    made = [grant(db, member, n) for n in range(1, 6)]
    grant(db, other, 7)
    page1 = ledger.list_entries(db, tenant_id=tenant.id, member_id=member.id, limit=2)
    page2 = ledger.list_entries(
        db, tenant_id=tenant.id, member_id=member.id, before_id=page1[-1].id, limit=2
    )
    page3 = ledger.list_entries(
        db, tenant_id=tenant.id, member_id=member.id, before_id=page2[-1].id, limit=2
    )
    assert [e.points for e in page1 + page2 + page3] == [5, 4, 3, 2, 1]
    assert {e.id for e in page1 + page2 + page3} == {e.id for e in made}


def test_get_entry_reads_within_the_tenant(db):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    entry = grant(db, member, 10)
    assert ledger.get_entry(db, tenant_id=tenant.id, entry_id=entry.id).id == entry.id


# --- tenant scoping ---------------------------------------------------------------------------


def test_another_tenants_member_cannot_be_touched(db, clock):
    a, b = make_tenant(db), make_tenant(db)
    member = make_member(db, a)
    credit = grant(db, member, 100)
    before = snapshot(db, a)
    calls = [
        lambda: ledger.grant(
            db,
            tenant_id=b.id,
            member_id=member.id,
            points=5,
            reason="purchase",
            idempotency_key="x1",
            actor=ledger.CLI,
        ),
        lambda: ledger.spend(
            db,
            tenant_id=b.id,
            member_id=member.id,
            points=5,
            reason="redeem",
            idempotency_key="x2",
            actor=ledger.CLI,
        ),
        lambda: ledger.get_balance(db, tenant_id=b.id, member_id=member.id),
    ]
    for call in calls:
        with pytest.raises(MemberNotFound) as err:
            call()
        assert err.value.code == "member.not_found"
    for call in (
        lambda: ledger.get_entry(db, tenant_id=b.id, entry_id=credit.id),
        lambda: ledger.reverse(
            db, tenant_id=b.id, entry_id=credit.id, idempotency_key="x3", actor=ledger.CLI
        ),
    ):
        with pytest.raises(EntryNotFound) as err:
            call()
        assert err.value.code == "points.entry_not_found"
    assert ledger.list_entries(db, tenant_id=b.id, member_id=member.id) == []
    assert snapshot(db, a) == before
    assert ledger.verify(db, tenant_id=b.id).entries == 0


def test_unknown_member_is_not_found(db):
    tenant = make_tenant(db)
    with pytest.raises(MemberNotFound):
        ledger.grant(
            db,
            tenant_id=tenant.id,
            member_id=999_999_999,
            points=5,
            reason="purchase",
            idempotency_key="x",
            actor=ledger.CLI,
        )


# --- verify -----------------------------------------------------------------------------------


def busy_ledger(db, clock):
    """A tenant whose ledger has every kind of entry."""
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    credit = grant(db, member, 100, expires_at=clock.now + dt.timedelta(days=5))
    grant(db, member, 60)
    debit = spend(db, member, 50)
    reverse(db, credit, points=20)
    reverse(db, debit, points=10)
    clock.advance(days=6)
    ledger.expire_due(db, tenant_id=tenant.id)
    return tenant, member


def test_verify_reports_ok_on_a_clean_ledger(db, clock):
    tenant, member = busy_ledger(db, clock)
    report = ledger.verify(db, tenant_id=tenant.id)
    assert report.ok
    assert report.problems == []
    assert (report.entries, report.accounts, report.lots) == (6, 4, 2)


def test_verify_detects_a_tampered_wallet_balance(db, clock):
    tenant, member = busy_ledger(db, clock)
    wallet = wallet_of(db, member)
    code, balance = wallet.code, wallet.balance
    db.execute(
        text("UPDATE ledger_accounts SET balance = balance + 500 WHERE id = :id"), {"id": wallet.id}
    )
    db.expire_all()
    report = ledger.verify(db, tenant_id=tenant.id)
    assert not report.ok
    assert [(p.kind, p.ref, p.expected, p.actual) for p in report.problems] == [
        ("balance_mismatch", code, balance, balance + 500)
    ]


def test_verify_detects_a_tampered_lot_remainder(db, clock):
    tenant, member = busy_ledger(db, clock)
    lot = db.scalar(
        select(m.Lot)
        .join(m.Account, m.Account.id == m.Lot.account_id)
        .where(m.Account.member_id == member.id, m.Lot.remaining > 1)
    )
    lot_id, remaining = lot.id, lot.remaining
    balance = wallet_of(db, member).balance
    db.execute(
        text("UPDATE ledger_lots SET remaining = remaining - 1 WHERE id = :id"), {"id": lot_id}
    )
    db.expire_all()
    problems = {
        (p.kind, p.ref): (p.expected, p.actual)
        for p in ledger.verify(db, tenant_id=tenant.id).problems
    }
    assert problems == {
        ("lot_mismatch", f"lot:{lot_id}"): (remaining, remaining - 1),
        ("lots_mismatch", f"wallet:{member.id}"): (balance, balance - 1),
    }


def test_verify_detects_an_unbalanced_entry(db, clock):
    tenant, member = busy_ledger(db, clock)
    debit = entries_of(db, member, m.DEBIT)[0]
    db.execute(
        text(
            "UPDATE ledger_postings SET amount = amount + 7 WHERE entry_id = :id "
            "AND account_id != :wallet"
        ),
        {"id": debit.id, "wallet": wallet_of(db, member).id},
    )
    db.expire_all()
    kinds = {(p.kind, p.ref) for p in ledger.verify(db, tenant_id=tenant.id).problems}
    assert kinds == {("entry_unbalanced", f"entry:{debit.id}"), ("ledger_unbalanced", "tenant")}


def test_verify_detects_an_entry_whose_points_disagree_with_its_postings(db, clock):
    tenant, member = busy_ledger(db, clock)
    credit = entries_of(db, member, m.CREDIT)[0]
    db.execute(text("UPDATE ledger_entries SET points = 999 WHERE id = :id"), {"id": credit.id})
    db.expire_all()
    problems = [
        (p.kind, p.ref, p.expected, p.actual)
        for p in ledger.verify(db, tenant_id=tenant.id).problems
    ]
    assert problems == [("entry_points_mismatch", f"entry:{credit.id}", 999, 100)]


def test_verify_detects_an_entry_without_postings(db, clock):
    tenant, member = busy_ledger(db, clock)
    credit = entries_of(db, member, m.CREDIT)[-1]
    db.execute(text("DELETE FROM ledger_postings WHERE entry_id = :id"), {"id": credit.id})
    db.expire_all()
    kinds = {p.kind for p in ledger.verify(db, tenant_id=tenant.id).problems}
    assert kinds == {"entry_without_postings", "balance_mismatch", "lots_mismatch"}


def test_verify_checks_only_its_tenant(db, clock):
    tenant, member = busy_ledger(db, clock)
    clean = make_tenant(db)
    grant(db, make_member(db, clean), 10)
    db.execute(
        text("UPDATE ledger_accounts SET balance = balance + 1 WHERE member_id = :id"),
        {"id": member.id},
    )
    db.expire_all()
    assert not ledger.verify(db, tenant_id=tenant.id).ok
    assert ledger.verify(db, tenant_id=clean.id).ok


def test_postgresql_posts_grants_and_spends_in_one_round_trip(db, clock, tmp_path):
    """On PostgreSQL the common case is one server-side call, sent straight through psycopg
    (so SQLAlchemy sees no statement; libpq's trace counts the round trips); elsewhere the
    Python path runs. Either way the result is the same ledger (the rest of this suite runs on
    both)."""
    import psycopg
    from sqlalchemy import event

    tenant = make_tenant(db)
    member = make_member(db, tenant)
    grant(db, member, 10)  # warm up: wallet and accounts exist
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    engine = db.get_bind().engine
    pg = db.get_bind().dialect.name == "postgresql"
    trace = tmp_path / "libpq.trace"
    event.listen(engine, "before_cursor_execute", record)
    with trace.open("w") as f:
        if pg:
            pgconn = db.connection().connection.driver_connection.pgconn
            pgconn.trace(f.fileno())
            pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            grant(db, member, 100)
            spend(db, member, 30)
        finally:
            event.remove(engine, "before_cursor_execute", record)
            if pg:
                pgconn.untrace()
    if pg:
        wire = trace.read_text()
        assert statements == []
        assert wire.count("ReadyForQuery") == 2
        assert "siyu_ledger_grant" in wire
        assert "siyu_ledger_spend" in wire
    else:
        assert not [s for s in statements if "siyu_ledger" in s]
    db.expire_all()
    assert ledger.get_balance(db, tenant_id=tenant.id, member_id=member.id).balance == 80
    assert ledger.verify(db, tenant_id=tenant.id).ok


def test_posted_entry_is_clean_utc_and_replays_in_the_same_session(db, clock):
    """The fast path builds the entry itself: it must be what the ORM would have loaded (UTC
    instants whatever the connection's time zone, nothing pending) and replay like it."""
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    grant(db, member, 10)
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("SET LOCAL timezone = 'Asia/Shanghai'"))
    entry = ledger.grant(
        db,
        tenant_id=tenant.id,
        member_id=member.id,
        points=5,
        reason="purchase",
        idempotency_key="clean-utc",
        actor=ledger.JOB,
    )
    assert entry.created_at == clock.now
    assert entry.created_at.utcoffset() == dt.timedelta(0)
    assert entry not in db.dirty
    assert entry not in db.new
    again = ledger.grant(
        db,
        tenant_id=tenant.id,
        member_id=member.id,
        points=5,
        reason="purchase",
        idempotency_key="clean-utc",
        actor=ledger.JOB,
    )
    assert again is entry
    db.flush()
    db.expire_all()
    assert ledger.get_balance(db, tenant_id=tenant.id, member_id=member.id).balance == 15


def test_the_database_refuses_a_posting_against_another_tenants_account(db, clock):
    """On PostgreSQL a posting, lot or entry names its account (or member) and its tenant in
    one key: no row can tie one tenant's entry to another tenant's wallet, whatever the code
    above it does. (SQLite keeps single-column keys, which only check that both exist.)"""
    from sqlalchemy.exc import IntegrityError

    if db.get_bind().dialect.name != "postgresql":
        pytest.skip("composite keys are PostgreSQL's (migration: ledger keys of tenant)")
    ours, theirs = make_tenant(db), make_tenant(db)
    fan = make_member(db, ours)
    entry = grant(db, fan, 10, key="k-1")
    their_fan = make_member(db, theirs)
    grant(db, their_fan, 5, key="k-2")
    their_wallet = wallet_of(db, their_fan)

    for table, column, value in [
        ("ledger_postings", "account_id", their_wallet.id),
        ("ledger_lots", "account_id", their_wallet.id),
        ("ledger_entries", "member_id", their_fan.id),
    ]:
        where = "id = :e" if table == "ledger_entries" else "entry_id = :e"
        with pytest.raises(IntegrityError, match="foreign key"), db.begin_nested():
            db.execute(
                text(f"UPDATE {table} SET {column} = :v WHERE {where}"), {"v": value, "e": entry.id}
            )
    spent = spend(db, fan, 3, key="k-3")  # a movement out of our lot
    their_lot = db.scalar(select(m.Lot.id).where(m.Lot.account_id == their_wallet.id))
    with pytest.raises(IntegrityError, match="foreign key"), db.begin_nested():
        db.execute(
            text("UPDATE ledger_lot_movements SET lot_id = :v WHERE entry_id = :e"),
            {"v": their_lot, "e": spent.id},
        )
    assert postings_of(db, entry) == {m.WALLET: 10, m.ISSUANCE: -10}

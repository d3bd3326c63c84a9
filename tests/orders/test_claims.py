"""Claims: rules, pending matches, conversion, refunds and debt, abuse controls, review."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from siyu.ledger import debt
from siyu.ledger import service as ledger
from siyu.members import service as members
from siyu.messaging import service as messaging
from siyu.orders import errors as e
from siyu.orders import service
from siyu.orders.models import Order
from tests.factories import add_product, make_member, make_operator, make_session, reserve, spend
from tests.messaging.conftest import _empty_queue, drain  # noqa: F401
from tests.orders.samples import TbRow, taobao_csv


@pytest.fixture
def fan(db, tenant):
    return make_member(db, tenant, nickname="小鱼")


def claim(db, member, order_no, account, *, platform="taobao", ip="10.0.0.1"):
    return service.claim_order(
        db,
        tenant_id=member.tenant_id,
        member_id=member.id,
        platform=platform,
        order_no=order_no,
        account=account,
        ip=ip,
    )


def balance(db, member):
    return ledger.get_balance(db, tenant_id=member.tenant_id, member_id=member.id).balance


def test_claim_of_a_paid_order_credits_points_per_yuan_and_binds_the_account(
    db, tenant, fan, run, clock
):
    run(tenant, taobao_csv([TbRow("1001", "小鱼爱买买", "128.50")]))

    c = claim(db, fan, "1001", "小鱼爱买买")

    assert (c.status, c.points) == ("credited", 128)  # 12850 fen × 1 point/yuan, rounded down
    assert balance(db, fan) == 128
    assert [
        a.account for a in members.get_member(db, tenant_id=tenant.id, member_id=fan.id).accounts
    ] == ["小鱼爱买买"]
    assert ledger.get_entry(db, tenant_id=tenant.id, entry_id=c.entry_id).idempotency_key == (
        "order:taobao:1001"
    )
    # A retry returns the same claim and pays nothing more.
    again = claim(db, fan, "1001", "小鱼爱买买")
    assert again.id == c.id
    assert balance(db, fan) == 128


@pytest.mark.parametrize(
    ("row", "account", "reason"),
    [
        (TbRow("2001", "buyer", "10", status="unpaid"), "buyer", "orders.unpaid"),
        (TbRow("2001", "buyer", "10", status="closed"), "buyer", "orders.unpaid"),
        (TbRow("2001", "buyer", "10"), "someone-else", "orders.account_mismatch"),
        (
            TbRow("2001", "buyer", "10", paid_at="2026-09-01 10:00:00"),
            "buyer",
            "orders.claim_window_closed",
        ),
    ],
)
def test_claims_breaking_a_rule_are_kept_rejected_with_their_reason(
    db, tenant, fan, run, clock, row, account, reason
):
    run(tenant, taobao_csv([row]))

    c = claim(db, fan, "2001", account)

    assert (c.status, c.reason, c.points) == ("rejected", reason, 0)
    assert balance(db, fan) == 0
    assert service.list_claims(db, tenant_id=tenant.id, member_id=fan.id)[0].id == c.id


def test_an_order_pays_out_once_and_an_account_belongs_to_one_member(db, tenant, fan, run, clock):
    other = make_member(db, tenant, nickname="小虾")
    run(tenant, taobao_csv([TbRow("3001", "buyer", "10"), TbRow("3002", "buyer", "20")]))
    assert claim(db, fan, "3001", "buyer").status == "credited"

    assert claim(db, other, "3001", "buyer").reason == "orders.already_claimed"
    assert claim(db, other, "3002", "buyer").reason == "orders.account_taken"
    assert claim(db, fan, "3002", "another-nick").reason == "orders.bound_to_other_account"


def test_pending_claim_is_credited_when_an_import_brings_its_order(db, tenant, fan, run, clock):
    c = claim(db, fan, "4001", "buyer")
    assert c.status == "pending"
    assert balance(db, fan) == 0

    run(tenant, taobao_csv([TbRow("4001", "buyer", "66.00")]))

    db.refresh(c)
    assert (c.status, c.points) == ("credited", 66)
    assert balance(db, fan) == 66


def test_pending_claims_expire_after_the_window_with_their_reason(db, tenant, fan, clock):
    c = claim(db, fan, "4101", "buyer")
    clock.advance(days=31)

    assert service.expire_claims(db, tenant_id=tenant.id) == 1

    db.refresh(c)
    assert (c.status, c.reason) == ("expired", "orders.claim_expired")
    assert "claim window" in service.reason_text(c.reason) or c.reason


def test_an_expired_claim_tells_its_member_once(db, tenant, fan, clock):
    other = make_member(db, tenant)
    claim(db, fan, "4102", "buyer")
    clock.advance(days=31)

    assert service.expire_claims(db, tenant_id=tenant.id) == 1
    assert service.expire_claims(db, tenant_id=tenant.id) == 0
    db.commit()
    drain()

    [item] = messaging.list_inbox(db, tenant_id=tenant.id, member_id=fan.id)
    assert "4102" in item.body
    assert messaging.list_inbox(db, tenant_id=tenant.id, member_id=other.id) == []


def test_conversion_rule_multipliers_minimum_and_daily_cap(db, tenant, fan, run, clock):
    tier = members.list_tiers(db, tenant_id=tenant.id)[0]
    service.set_rule(
        db,
        tenant_id=tenant.id,
        rule={
            "points_per_yuan": 2,
            "min_fen": 1000,
            "daily_cap": 500,
            "session_multipliers": {"7": 150},
            "tier_multipliers": {str(tier.id): 110},
        },
    )
    run(
        tenant,
        taobao_csv(
            [TbRow("5001", "b", "99.99"), TbRow("5002", "b", "9.99"), TbRow("5003", "b", "500")]
        ),
        session_id=7,
    )

    # 9999 fen × 2 × 150% × 110% = 329.967 → 329 (rounded down)
    assert claim(db, fan, "5001", "b").points == 329
    assert claim(db, fan, "5002", "b").reason == "orders.below_minimum"
    capped = claim(db, fan, "5003", "b")
    assert (capped.status, capped.points) == ("credited", 500 - 329)
    assert balance(db, fan) == 500


def test_points_for_is_integer_and_rounds_down():
    rule = {**service.DEFAULT_RULE, "points_per_yuan": 3, "session_multipliers": {"1": 125}}
    assert service.points_for(rule, net_fen=1, session_id=1, tier_id=0) == 0
    assert service.points_for(rule, net_fen=100, session_id=1, tier_id=0) == 3
    assert service.points_for(rule, net_fen=1000, session_id=1, tier_id=0) == 37


def test_refund_claws_back_proportionally_from_the_wallet(db, tenant, fan, run, clock):
    run(tenant, taobao_csv([TbRow("6001", "b", "100.00")]))
    c = claim(db, fan, "6001", "b")

    run(tenant, taobao_csv([TbRow("6001", "b", "100.00", status="finished", refund="25.00")]))
    db.refresh(c)
    assert (c.status, c.clawed_points) == ("reversed", 25)
    assert balance(db, fan) == 75

    run(tenant, taobao_csv([TbRow("6001", "b", "100.00", status="closed", refund="100.00")]))
    db.refresh(c)
    assert c.clawed_points == 100
    assert balance(db, fan) == 0
    assert ledger.verify(db, tenant_id=tenant.id).ok


def test_refund_of_spent_points_becomes_debt_settled_by_the_next_earnings(
    db, tenant, fan, run, clock
):
    run(tenant, taobao_csv([TbRow("7001", "b", "100.00"), TbRow("7002", "b", "30.00")]))
    claim(db, fan, "7001", "b")
    spend(db, fan, 80)

    run(tenant, taobao_csv([TbRow("7001", "b", "100.00", status="closed", refund="100.00")]))

    assert balance(db, fan) == 0
    assert debt.debt_of(db, tenant_id=tenant.id, member_id=fan.id) == 80
    assert ledger.verify(db, tenant_id=tenant.id).ok

    c2 = claim(db, fan, "7002", "b")  # 30 points earned: all go to the debt first
    assert c2.points == 30
    assert balance(db, fan) == 0
    assert debt.debt_of(db, tenant_id=tenant.id, member_id=fan.id) == 50
    assert ledger.verify(db, tenant_id=tenant.id).ok


def test_failed_claims_lock_claiming(db, tenant, fan, clock):
    for n in range(service.LIMITS["failures_to_lock"]):
        clock.advance(seconds=61)
        # An account bound to someone else: a rejected attempt each time.
        other = make_member(db, tenant)
        members.bind_account(
            db, tenant_id=tenant.id, member_id=other.id, platform="taobao", account=f"x{n}"
        )
        assert claim(db, fan, f"9{n}", f"x{n}").status == "rejected"

    with pytest.raises(e.ClaimingLocked):
        claim(db, fan, "9999", "mine")
    clock.advance(minutes=61)
    assert claim(db, fan, "9999", "mine").status == "pending"


def test_claim_attempts_are_rate_limited_per_member(db, tenant, fan, clock):
    limit = service.LIMITS["member_per_minute"]
    for n in range(limit):
        claim(db, fan, f"8{n}", "mine")  # pending claims: not failures

    with pytest.raises(e.RateLimited):
        claim(db, fan, "8999", "mine")


def test_account_tried_by_several_members_goes_to_review_then_operator_decides(
    db, tenant, fan, run, clock
):
    other = make_member(db, tenant)
    op = make_operator(db, tenant)
    run(tenant, taobao_csv([TbRow("1101", "shared", "10"), TbRow("1102", "shared", "20")]))
    claim(db, other, "1199", "shared")  # another member tried this account first

    flagged = claim(db, fan, "1101", "shared")
    assert flagged.status == "review"
    assert balance(db, fan) == 0
    assert [c.id for c in service.list_claims(db, tenant_id=tenant.id, status="review")] == [
        flagged.id
    ]

    approved = service.approve_claim(
        db, tenant_id=tenant.id, claim_id=flagged.id, operator_id=op.id
    )
    assert (approved.status, approved.points) == ("credited", 10)
    with pytest.raises(e.NotReviewable):
        service.approve_claim(db, tenant_id=tenant.id, claim_id=flagged.id, operator_id=op.id)

    second = claim(db, fan, "1102", "shared")
    assert second.status == "review"
    rejected = service.reject_claim(
        db, tenant_id=tenant.id, claim_id=second.id, operator_id=op.id, reason="同一账号多人使用"
    )
    assert rejected.status == "rejected"
    assert "同一账号多人使用" in service.reason_text(rejected.reason)


def test_operator_rebinds_an_account_with_an_audit_row(db, tenant, fan, run, clock):
    op = make_operator(db, tenant)
    other = make_member(db, tenant)
    run(tenant, taobao_csv([TbRow("1201", "nick", "10")]))
    claim(db, fan, "1201", "nick")

    row = service.rebind_account(
        db,
        tenant_id=tenant.id,
        platform="taobao",
        account="nick",
        to_member_id=other.id,
        operator_id=op.id,
        reason="粉丝换了微信号",
    )

    assert (row.from_member_id, row.to_member_id, row.operator_id) == (fan.id, other.id, op.id)
    db.expire_all()
    assert [
        a.account for a in members.get_member(db, tenant_id=tenant.id, member_id=other.id).accounts
    ] == ["nick"]
    assert members.get_member(db, tenant_id=tenant.id, member_id=fan.id).accounts == []
    assert service.list_rebinds(db, tenant_id=tenant.id)[0].id == row.id


def test_session_statistics_count_orders_claims_and_points(db, tenant, fan, run, clock):
    run(tenant, taobao_csv([TbRow("1301", "s", "10"), TbRow("1302", "t", "20")]), session_id=5)
    run(tenant, taobao_csv([TbRow("1303", "u", "30")]))
    claim(db, fan, "1301", "s")

    stats = {s.session_id: s for s in service.session_stats(db, tenant_id=tenant.id)}

    assert (stats[5].orders, stats[5].claimed, stats[5].points, stats[5].claim_rate) == (
        2,
        1,
        10,
        0.5,
    )
    assert (stats[None].orders, stats[None].claimed) == (1, 0)


def test_claim_input_is_validated(db, tenant, fan):
    with pytest.raises(e.InvalidClaim):
        claim(db, fan, "1", "x", platform="weibo")
    with pytest.raises(e.InvalidClaim):
        claim(db, fan, "not a number!", "x")
    with pytest.raises(e.InvalidClaim):
        claim(db, fan, "1", "  ")


def test_claim_window_uses_the_payment_time(db, tenant, fan, run, clock):
    clock.set(dt.datetime(2026, 12, 12, tzinfo=dt.UTC))
    run(tenant, taobao_csv([TbRow("1401", "b", "10", paid_at="2026-11-11 20:00:00")]))

    assert claim(db, fan, "1401", "b").reason == "orders.claim_window_closed"


def test_a_claimed_order_joins_the_session_live_when_it_was_paid_and_counts_as_purchased(
    db, tenant, fan, run, clock
):
    from siyu.live import service as live

    # Paid 20:01:02 Beijing time = 12:01:02 UTC, inside tonight's Taobao session (11:30–14:30).
    tonight = make_session(db, tenant, starts_at=clock.now - dt.timedelta(minutes=30))
    make_session(db, tenant, starts_at=clock.now - dt.timedelta(minutes=30), platform="douyin")
    serum = add_product(db, tonight, title="精华液")
    idle = make_member(db, tenant)
    for member in (fan, idle):
        reserve(db, member, tonight, serum)
    live.mark_on_sale(db, tenant_id=tenant.id, product_id=serum.id)

    run(tenant, taobao_csv([TbRow("4201", "buyer", "99.00"), TbRow("4202", "other", "5.00")]))
    c = claim(db, fan, "4201", "buyer")

    assert c.status == "credited"
    order = db.scalar(select(Order).where(Order.order_no == "4201"))
    assert order.session_id == tonight.id
    rows = {(r.kind, r.id): r for r in live.funnel(db, tenant_id=tenant.id, session_id=tonight.id)}
    assert (rows[("product", serum.id)].reminded, rows[("product", serum.id)].purchased) == (2, 1)
    assert rows[("session", tonight.id)].purchased == 0  # nobody reserved the session itself
    # An order paid outside every session stays without one.
    clock.advance(days=1)
    run(tenant, taobao_csv([TbRow("4203", "buyer", "9.00", paid_at="2026-11-12 09:00:00")]))
    claim(db, fan, "4203", "buyer")
    assert db.scalar(select(Order).where(Order.order_no == "4203")).session_id is None

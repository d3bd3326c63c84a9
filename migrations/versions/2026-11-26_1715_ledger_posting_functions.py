"""ledger: one-call grant and spend on PostgreSQL

The hot paths of siyu.ledger.service.grant/spend as server-side functions, so a posting is one
round trip instead of seven or nine (see benchmarks/README.md). They handle only the common
case and change nothing otherwise (no wallet yet, due lots, too few points, no system
account): they then return no row and the Python implementation, which handles every case,
runs instead. tests/ledger runs on both backends, so both implementations meet the same
properties.

Revision ID: 7c1e0f3a9b21
Revises: d96f838dbb35
Create Date: 2026-11-26 17:15:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "7c1e0f3a9b21"
down_revision: str | None = "d96f838dbb35"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GRANT = """
CREATE OR REPLACE FUNCTION siyu_ledger_grant(
    p_tenant integer, p_member integer, p_points integer, p_reason text, p_memo text,
    p_reference text, p_actor_type text, p_actor_id text, p_key text,
    p_expires_at timestamptz, p_counts_for_growth boolean, p_now timestamptz
) RETURNS SETOF ledger_entries LANGUAGE plpgsql AS $$
DECLARE
    v_wallet integer;
    v_system integer;
    v_entry ledger_entries;
    v_expires timestamptz := p_expires_at;
    v_tz text;
    v_policy json;
BEGIN
    -- Same lock as the Python path: the member's wallet row, first.
    SELECT id INTO v_wallet FROM ledger_accounts
     WHERE tenant_id = p_tenant AND code = 'wallet:' || p_member FOR UPDATE;
    IF NOT FOUND THEN RETURN; END IF;
    SELECT id INTO v_system FROM ledger_accounts WHERE tenant_id = p_tenant AND code = 'issuance';
    IF NOT FOUND THEN RETURN; END IF;
    INSERT INTO ledger_entries (tenant_id, member_id, kind, points, reason, memo, reference,
                                actor_type, actor_id, idempotency_key, reverses_id,
                                reversed_points, counts_for_growth, created_at)
    VALUES (p_tenant, p_member, 'credit', p_points, p_reason, p_memo, p_reference,
            p_actor_type, p_actor_id, p_key, NULL, 0, p_counts_for_growth, p_now)
    ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
    RETURNING * INTO v_entry;
    IF v_entry.id IS NULL THEN  -- a repeat: hand back the first entry, change nothing
        RETURN QUERY SELECT * FROM ledger_entries
                      WHERE tenant_id = p_tenant AND idempotency_key = p_key;
        RETURN;
    END IF;
    IF v_expires IS NULL THEN  -- the tenant's policy, as siyu.ledger.service.expiry_for
        SELECT timezone, settings -> 'points_expiry' INTO v_tz, v_policy
          FROM tenants WHERE id = p_tenant;
        IF v_policy ->> 'kind' = 'days' THEN
            v_expires := p_now + make_interval(days => coalesce((v_policy ->> 'days')::int, 365));
        ELSIF v_policy ->> 'kind' = 'year_end' THEN
            v_expires := make_timestamp(
                extract(year FROM p_now AT TIME ZONE v_tz)::int
                + coalesce((v_policy ->> 'years')::int, 1) + 1, 1, 1, 0, 0, 0) AT TIME ZONE v_tz;
        END IF;
    END IF;
    INSERT INTO ledger_postings (tenant_id, entry_id, account_id, amount)
    VALUES (p_tenant, v_entry.id, v_wallet, p_points), (p_tenant, v_entry.id, v_system, -p_points);
    UPDATE ledger_accounts
       SET balance = balance + p_points,
           growth = growth + CASE WHEN p_counts_for_growth THEN p_points ELSE 0 END
     WHERE id = v_wallet;
    INSERT INTO ledger_lots (tenant_id, account_id, entry_id, points, remaining, expired,
                             expires_at, created_at)
    VALUES (p_tenant, v_wallet, v_entry.id, p_points, p_points, 0, v_expires, p_now);
    RETURN NEXT v_entry;
END $$;
"""

SPEND = """
CREATE OR REPLACE FUNCTION siyu_ledger_spend(
    p_tenant integer, p_member integer, p_points integer, p_reason text, p_memo text,
    p_reference text, p_actor_type text, p_actor_id text, p_key text, p_now timestamptz
) RETURNS SETOF ledger_entries LANGUAGE plpgsql AS $$
DECLARE
    v_wallet integer;
    v_balance integer;
    v_system integer;
    v_entry ledger_entries;
    v_left integer := p_points;
    v_take integer;
    v_lot record;
BEGIN
    SELECT id, balance INTO v_wallet, v_balance FROM ledger_accounts
     WHERE tenant_id = p_tenant AND code = 'wallet:' || p_member FOR UPDATE;
    IF NOT FOUND OR v_balance < p_points THEN RETURN; END IF;
    -- Due lots must be expired first (and a repeat must not do it): the Python path's job.
    IF EXISTS (SELECT 1 FROM ledger_lots WHERE account_id = v_wallet AND remaining > 0
                                          AND expires_at <= p_now) THEN
        RETURN;
    END IF;
    SELECT id INTO v_system FROM ledger_accounts WHERE tenant_id = p_tenant AND code = 'redemption';
    IF NOT FOUND THEN RETURN; END IF;
    INSERT INTO ledger_entries (tenant_id, member_id, kind, points, reason, memo, reference,
                                actor_type, actor_id, idempotency_key, reverses_id,
                                reversed_points, counts_for_growth, created_at)
    VALUES (p_tenant, p_member, 'debit', -p_points, p_reason, p_memo, p_reference,
            p_actor_type, p_actor_id, p_key, NULL, 0, true, p_now)
    ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
    RETURNING * INTO v_entry;
    IF v_entry.id IS NULL THEN
        RETURN QUERY SELECT * FROM ledger_entries
                      WHERE tenant_id = p_tenant AND idempotency_key = p_key;
        RETURN;
    END IF;
    -- Earliest expiry first, never-expiring last: the order of siyu.ledger.service._open_lots.
    FOR v_lot IN SELECT id, remaining FROM ledger_lots
                  WHERE account_id = v_wallet AND remaining > 0
                  ORDER BY expires_at ASC NULLS LAST, id LOOP
        v_take := least(v_lot.remaining, v_left);
        UPDATE ledger_lots SET remaining = remaining - v_take WHERE id = v_lot.id;
        INSERT INTO ledger_lot_movements (tenant_id, entry_id, lot_id, points)
        VALUES (p_tenant, v_entry.id, v_lot.id, -v_take);
        v_left := v_left - v_take;
        EXIT WHEN v_left = 0;
    END LOOP;
    IF v_left > 0 THEN
        RAISE EXCEPTION 'ledger: lots of wallet % hold less than its balance', v_wallet;
    END IF;
    INSERT INTO ledger_postings (tenant_id, entry_id, account_id, amount)
    VALUES (p_tenant, v_entry.id, v_wallet, -p_points), (p_tenant, v_entry.id, v_system, p_points);
    UPDATE ledger_accounts SET balance = balance - p_points WHERE id = v_wallet;
    RETURN NEXT v_entry;
END $$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(GRANT)
    op.execute(SPEND)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "DROP FUNCTION IF EXISTS siyu_ledger_spend(integer, integer, integer, text, text, "
        "text, text, text, text, timestamptz)"
    )
    op.execute(
        "DROP FUNCTION IF EXISTS siyu_ledger_grant(integer, integer, integer, text, text, "
        "text, text, text, text, timestamptz, boolean, timestamptz)"
    )

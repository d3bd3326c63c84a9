"""checkin: one-call daily check-in on PostgreSQL

``siyu_checkin`` does what siyu.checkin.service.check_in does, in one round trip: the member
(of that tenant), the tenant's timezone and rule, the member's streak, the claim of the
tenant-local day (``INSERT … ON CONFLICT DO NOTHING`` on the unique index) and the points
through ``siyu_ledger_grant``, all in the caller's transaction. It answers one row whose
``r_status`` says what happened:

- ``created``: the day was claimed and paid; the row is the new check-in;
- ``existing``: the day was already checked in (a repeat, or a concurrent tap that committed
  first); the row is that check-in, nothing changed;
- ``no_member``: no such member in that tenant; nothing changed.

When the check-in is not its common case (the ledger function leaves the grant to Python: no
wallet, debt, a reused key; or a stored rule Python would refuse) it raises SQLSTATE SY001
(siyu.checkin.service.LEAVE_TO_PYTHON), which undoes everything it did, and the Python
implementation, which handles every case, runs instead. Raising rather than answering lets a
caller run the function as a transaction of its own: one round trip, no BEGIN or COMMIT.

The Python implementation stays the reference (and the only one on SQLite); tests/checkin runs
the same scenarios through both.

Revision ID: 3f9d2b6c8e17
Revises: 8e3f1a6c2d57
Create Date: 2026-11-27 10:30:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "3f9d2b6c8e17"
down_revision: str | None = "8e3f1a6c2d57"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# p_default: the rule when the tenant has none (siyu.checkin.service.DEFAULT_RULE);
# p_memo: the ledger memo with {n} for the streak day, in the request's language;
# p_lookback: siyu.checkin.service.LOOKBACK_DAYS.
CHECKIN = """
CREATE OR REPLACE FUNCTION siyu_checkin(
    p_tenant integer, p_member integer, p_now timestamptz, p_default json, p_memo text,
    p_lookback integer,
    OUT r_status text, OUT r_id integer, OUT r_checked_on date, OUT r_kind text,
    OUT r_streak integer, OUT r_points integer, OUT r_bonus integer,
    OUT r_created_at timestamptz, OUT r_current integer
) LANGUAGE plpgsql AS $$
DECLARE
    v_tz text;
    v_rule json;
    v_today date;
    v_expect date;
    v_day date;
    v_done boolean := false;
    v_run integer := 0;
    v_bonus integer;
    v_row checkins;
    v_entry ledger_entries;
    v_key text;
BEGIN
    SELECT t.timezone, t.settings -> 'checkin' INTO v_tz, v_rule
      FROM members m JOIN tenants t ON t.id = m.tenant_id
     WHERE m.id = p_member AND m.tenant_id = p_tenant;
    IF NOT FOUND THEN
        r_status := 'no_member';
        RETURN;
    END IF;
    -- service.parse_rule(settings.get("checkin") or DEFAULT_RULE)
    IF v_rule IS NULL OR v_rule::jsonb IN ('null', 'false', '0', '""', '{}', '[]') THEN
        v_rule := p_default;
    ELSIF json_typeof(v_rule) <> 'object' THEN  -- parse_rule refuses it: let Python say so
        RAISE EXCEPTION 'siyu_checkin: rule left to Python' USING ERRCODE = 'SY001';
    END IF;
    v_today := (p_now AT TIME ZONE v_tz)::date;
    -- The run of consecutive days ending yesterday (service._run_ending), and whether today
    -- is taken; the window is service._tenant_and_days's.
    v_expect := v_today - 1;
    FOR v_day IN SELECT c.checked_on FROM checkins c
                  WHERE c.tenant_id = p_tenant AND c.member_id = p_member
                    AND c.checked_on <= v_today
                    AND c.checked_on > (p_now AT TIME ZONE 'UTC')::date - (p_lookback + 1)
                  ORDER BY c.checked_on DESC LOOP
        IF v_day = v_today THEN
            v_done := true;
            CONTINUE;
        END IF;
        EXIT WHEN v_day <> v_expect;
        v_run := v_run + 1;
        v_expect := v_expect - 1;
    END LOOP;
    IF NOT v_done THEN
        SELECT coalesce(max((b ->> 'points')::integer), 0) INTO v_bonus
          FROM json_array_elements(coalesce(v_rule -> 'bonuses', '[]'::json)) b
         WHERE (b ->> 'day')::integer = v_run + 1;
        INSERT INTO checkins (tenant_id, member_id, checked_on, kind, streak, points, bonus,
                              created_at)
        VALUES (p_tenant, p_member, v_today, 'daily', v_run + 1,
                coalesce((v_rule ->> 'base')::integer, 0) + v_bonus, v_bonus, p_now)
        ON CONFLICT (tenant_id, member_id, checked_on) DO NOTHING
        RETURNING * INTO v_row;
    END IF;
    IF v_row.id IS NULL THEN  -- taken: before this call, or by a tap that committed first
        SELECT * INTO v_row FROM checkins
         WHERE tenant_id = p_tenant AND member_id = p_member AND checked_on = v_today;
        r_status := 'existing';
        -- service.check_in: the run ending today if it was taken before, else the stored one
        r_current := CASE WHEN v_done THEN v_run + 1 ELSE v_row.streak END;
    ELSE
        r_status := 'created';
        r_current := v_row.streak;
        IF v_row.points > 0 THEN
            v_key := 'checkin:' || p_member || ':' || to_char(v_today, 'YYYY-MM-DD');
            SELECT * INTO v_entry FROM siyu_ledger_grant(
                p_tenant, p_member, v_row.points, 'checkin',
                replace(p_memo, '{n}', v_row.streak::text),
                'checkin:' || to_char(v_today, 'YYYY-MM-DD'), 'member', p_member::text, v_key,
                NULL, true, p_now);
            -- No row: not the common case. Another change under the key: Python raises
            -- IdempotencyConflict (ledger.service._replay).
            IF v_entry.id IS NULL OR v_entry.member_id IS DISTINCT FROM p_member
               OR v_entry.kind <> 'credit' OR v_entry.points <> v_row.points
               OR v_entry.reverses_id IS NOT NULL THEN
                RAISE EXCEPTION 'siyu_checkin: grant left to Python' USING ERRCODE = 'SY001';
            END IF;
        END IF;
    END IF;
    r_id := v_row.id;
    r_checked_on := v_row.checked_on;
    r_kind := v_row.kind;
    r_streak := v_row.streak;
    r_points := v_row.points;
    r_bonus := v_row.bonus;
    r_created_at := v_row.created_at;
END $$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(CHECKIN)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "DROP FUNCTION IF EXISTS siyu_checkin(integer, integer, timestamptz, json, text, integer)"
    )

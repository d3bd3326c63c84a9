"""The ``siyu`` CLI against a committed database: set up, move points, verify the ledger.

Each command runs in its own ``unit_of_work``, which the ``committed`` fixture points at the
test database, so what one command commits the next one (and the test) reads.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json

import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from siyu.cli import app
from siyu.ledger import models as m
from siyu.members.models import Member

runner = CliRunner()
_slugs = itertools.count(1)


def siyu(*args: str, code: int = 0):
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit)
    return result


def siyu_json(*args: str, code: int = 0) -> dict:
    result = siyu(*args, "--json", code=code)
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout  # one JSON object, nothing else
    return json.loads(lines[0])


@pytest.fixture
def shop(committed, clock) -> tuple[str, int]:
    """A tenant made with the CLI (slug) and one member (id)."""
    slug = f"cli-shop-{next(_slugs)}"
    siyu_json("tenant", "create", slug, "--name", "小鱼直播间")
    member = siyu_json("member", "create", "--tenant", slug, "--openid", f"o-{slug}")
    return slug, member["id"]


def entries(committed, member_id: int) -> int:
    with committed() as db:
        return db.scalar(
            select(func.count())
            .select_from(m.JournalEntry)
            .where(m.JournalEntry.member_id == member_id)
        )


def test_tenant_operator_and_member_are_created_and_committed(committed):
    tenant = siyu_json("tenant", "create", "cli-new", "--name", "新主播", "--timezone", "UTC")
    assert tenant["id"] > 0
    assert {k: tenant[k] for k in ("slug", "name", "timezone")} == {
        "slug": "cli-new",
        "name": "新主播",
        "timezone": "UTC",
    }
    op = siyu_json(
        "operator",
        "create",
        "--tenant",
        "cli-new",
        "--username",
        "alice",
        "--password",
        "correct-horse-battery",
        "--role",
        "owner",
    )
    assert (op["username"], op["role"], op["tenant"]) == ("alice", "owner", "cli-new")
    member = siyu_json(
        "member", "create", "--tenant", "cli-new", "--openid", "o-1", "--nickname", "小鱼"
    )
    assert isinstance(member["id"], int)
    with committed() as db:
        row = db.get(Member, member["id"])
        assert (row.tenant_id, row.openid, row.nickname) == (tenant["id"], "o-1", "小鱼")
    human = siyu("member", "create", "--tenant", "cli-new", "--openid", "o-2")
    assert "created" in human.stdout


def test_points_grant_spend_and_balance(committed, shop):
    slug, member_id = shop
    base = ("--tenant", slug, "--member", str(member_id))
    granted = siyu_json(
        "points", "grant", *base, "--points", "100", "--reason", "purchase", "--key", "g1"
    )
    assert {k: granted[k] for k in ("member_id", "kind", "points", "reason", "balance")} == {
        "member_id": member_id,
        "kind": "credit",
        "points": 100,
        "reason": "purchase",
        "balance": 100,
    }
    assert granted["idempotency_key"] == "g1"
    spent = siyu_json(
        "points", "spend", *base, "--points", "30", "--reason", "redeem", "--key", "s1"
    )
    assert (spent["kind"], spent["points"], spent["balance"]) == ("debit", -30, 70)
    assert spent["entry_id"] > granted["entry_id"]
    balance = siyu_json("points", "balance", *base)
    assert balance == {"member_id": member_id, "balance": 70, "growth": 100, "expiring": []}
    human = siyu("points", "balance", *base)
    assert f"member {member_id}: 70 points (growth 100)" in human.stdout


def test_points_grant_with_expiry_shows_as_expiring(committed, shop):
    slug, member_id = shop
    base = ("--tenant", slug, "--member", str(member_id))
    siyu_json(
        "points",
        "grant",
        *base,
        "--points",
        "40",
        "--reason",
        "purchase",
        "--key",
        "g1",
        "--expires-at",
        "2027-01-01T00:00+08:00",
    )
    balance = siyu_json("points", "balance", *base)
    [expiring] = balance["expiring"]
    assert expiring["points"] == 40
    assert dt.datetime.fromisoformat(expiring["expires_at"]) == dt.datetime(
        2026, 12, 31, 16, 0, tzinfo=dt.UTC
    )


@pytest.mark.parametrize("when", ["2027-01-01T00:00", "next tuesday"])
def test_points_grant_with_a_bad_expiry_exits_1(committed, shop, when):
    slug, member_id = shop
    out = siyu_json(
        "points",
        "grant",
        "--tenant",
        slug,
        "--member",
        str(member_id),
        "--points",
        "5",
        "--reason",
        "purchase",
        "--key",
        "g1",
        "--expires-at",
        when,
        code=1,
    )
    assert out["code"] == "points.invalid_expiry"
    assert entries(committed, member_id) == 0


def test_a_repeated_key_changes_nothing(committed, shop):
    slug, member_id = shop
    base = ("--tenant", slug, "--member", str(member_id))
    grant = ("points", "grant", *base, "--points", "100", "--reason", "purchase", "--key", "g1")
    spend = ("points", "spend", *base, "--points", "60", "--reason", "redeem", "--key", "s1")
    first_grant, first_spend = siyu_json(*grant), siyu_json(*spend)
    again_grant, again_spend = siyu_json(*grant), siyu_json(*spend)
    assert again_grant["entry_id"] == first_grant["entry_id"]
    assert again_spend["entry_id"] == first_spend["entry_id"]
    assert again_spend["balance"] == 40
    siyu(*spend)  # human mode, a third time
    assert siyu_json("points", "balance", *base)["balance"] == 40
    assert entries(committed, member_id) == 2


def test_the_same_key_for_another_change_exits_1(committed, shop):
    slug, member_id = shop
    base = ("--tenant", slug, "--member", str(member_id))
    siyu_json("points", "grant", *base, "--points", "100", "--reason", "purchase", "--key", "g1")
    out = siyu_json(
        "points", "grant", *base, "--points", "99", "--reason", "purchase", "--key", "g1", code=1
    )
    assert out["code"] == "points.idempotency_conflict"
    assert siyu_json("points", "balance", *base)["balance"] == 100


def test_spending_beyond_the_balance_exits_1_with_the_code_in_json(committed, shop):
    slug, member_id = shop
    base = ("--tenant", slug, "--member", str(member_id))
    siyu_json("points", "grant", *base, "--points", "30", "--reason", "purchase", "--key", "g1")
    out = siyu_json(
        "points", "spend", *base, "--points", "31", "--reason", "redeem", "--key", "s1", code=1
    )
    assert set(out) == {"code", "message"}
    assert out["code"] == "points.insufficient"
    assert "30" in out["message"]
    assert "31" in out["message"]
    assert siyu_json("points", "balance", *base)["balance"] == 30
    assert entries(committed, member_id) == 1


def test_spending_beyond_the_balance_prints_one_error_line(committed, shop):
    slug, member_id = shop
    result = siyu(
        "points",
        "spend",
        "--tenant",
        slug,
        "--member",
        str(member_id),
        "--points",
        "5",
        "--reason",
        "redeem",
        "--key",
        "s1",
        code=1,
    )
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("error [points.insufficient]: ")
    assert entries(committed, member_id) == 0


def test_errors_exit_1_with_their_code(committed, shop):
    slug, member_id = shop
    unknown = siyu_json("points", "balance", "--tenant", "no-such-shop", "--member", "1", code=1)
    assert unknown["code"] == "tenant.not_found"
    siyu_json("tenant", "create", "cli-other", "--name", "别家")
    stranger = siyu_json("member", "create", "--tenant", "cli-other", "--openid", "o-x")
    out = siyu_json(
        "points",
        "grant",
        "--tenant",
        slug,
        "--member",
        str(stranger["id"]),
        "--points",
        "5",
        "--reason",
        "purchase",
        "--key",
        "g1",
        code=1,
    )
    assert out["code"] == "member.not_found"
    bad_reason = siyu_json(
        "points",
        "grant",
        "--tenant",
        slug,
        "--member",
        str(member_id),
        "--points",
        "5",
        "--reason",
        "Bad Reason",
        "--key",
        "g2",
        code=1,
    )
    assert bad_reason["code"] == "points.invalid_reason"
    assert entries(committed, member_id) == entries(committed, stranger["id"]) == 0


def test_ledger_verify_exits_0_when_consistent_and_1_after_tampering(committed, shop):
    slug, member_id = shop
    base = ("--tenant", slug, "--member", str(member_id))
    siyu_json("points", "grant", *base, "--points", "100", "--reason", "purchase", "--key", "g1")
    siyu_json("points", "spend", *base, "--points", "25", "--reason", "redeem", "--key", "s1")
    ok = siyu_json("ledger", "verify", "--tenant", slug)
    assert ok == {"ok": True, "entries": 2, "accounts": 4, "lots": 1, "problems": []}
    assert "ledger consistent" in siyu("ledger", "verify", "--tenant", slug).stdout
    with committed.begin() as db:
        db.execute(
            text("UPDATE ledger_accounts SET balance = 500 WHERE member_id = :id"),
            {"id": member_id},
        )
    bad = siyu_json("ledger", "verify", "--tenant", slug, code=1)
    assert bad["ok"] is False
    assert bad["problems"] == [
        {"kind": "balance_mismatch", "ref": f"wallet:{member_id}", "expected": 75, "actual": 500}
    ]
    human = siyu("ledger", "verify", "--tenant", slug, code=1)
    assert "balance_mismatch" in human.stdout


def test_tenant_wechat_sets_credentials_and_refuses_a_bad_appid(committed):
    from siyu.tenants import service as tenants
    from siyu.tenants.models import Tenant

    siyu("tenant", "create", "wx-anchor", "--name", "微信主播")
    ok = siyu(
        "tenant",
        "wechat",
        "wx-anchor",
        "--appid",
        "wx0123456789abcdef",
        "--secret",
        "0123456789abcdef0123",
        "--json",
    )
    assert json.loads(ok.stdout) == {
        "tenant": "wx-anchor",
        "appid": "wx0123456789abcdef",
        "configured": True,
    }
    bad = siyu(
        "tenant", "wechat", "wx-anchor", "--appid", "nope", "--secret", "x" * 20, "--json", code=1
    )
    assert json.loads(bad.stdout)["code"] == "tenant.invalid"
    with committed() as db:
        tenant = tenants.get_tenant(db, slug="wx-anchor")
        assert isinstance(tenant, Tenant)
        assert tenant.settings["wechat"]["appid"] == "wx0123456789abcdef"

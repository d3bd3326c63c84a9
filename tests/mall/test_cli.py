"""``siyu mall …`` and ``siyu trial …`` against a committed database, with --json."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from typer.testing import CliRunner

from siyu.cli import app
from tests.factories import grant, make_address, make_member

runner = CliRunner()


def siyu_json(*args: str, code: int = 0) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == code, (result.stdout, result.exception)
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def test_operator_scripts_items_codes_orders_and_fulfillment(committed, clock, tmp_path):
    siyu_json("tenant", "create", "cli-mall", "--name", "商城")
    cup = siyu_json(
        "mall",
        "add-item",
        "--tenant",
        "cli-mall",
        "--title",
        "保温杯",
        "--points",
        "30",
        "--stock",
        "2",
    )
    coupon = siyu_json(
        "mall",
        "add-item",
        "--tenant",
        "cli-mall",
        "--title",
        "券",
        "--points",
        "5",
        "--kind",
        "coupon",
    )
    codes = tmp_path / "codes.txt"
    codes.write_text("A1\nA2\nA1\n", encoding="utf-8")
    uploaded = siyu_json(
        "mall", "codes", "--tenant", "cli-mall", "--item", str(coupon["id"]), "--file", str(codes)
    )
    bad_kind = siyu_json(
        "mall",
        "add-item",
        "--tenant",
        "cli-mall",
        "--title",
        "x",
        "--points",
        "1",
        "--kind",
        "nope",
        code=1,
    )
    with committed.begin() as db:
        from siyu.mall import service as mall
        from siyu.tenants import service as tenants

        tenant = tenants.get_tenant(db, slug="cli-mall")
        member = make_member(db, tenant)
        grant(db, member, 100)
        address = make_address(db, member)
        order = mall.redeem(
            db,
            tenant_id=tenant.id,
            member_id=member.id,
            item_id=cup["id"],
            address_id=address.id,
            idempotency_key="cli-1",
        )
        order_id, member_id = order.id, member.id

    listed = siyu_json("mall", "orders", "--tenant", "cli-mall", "--status", "pending")
    out = tmp_path / "pending.xlsx"
    exported = siyu_json("mall", "export", "--tenant", "cli-mall", "--out", str(out))
    shipped = siyu_json(
        "mall",
        "ship",
        "--tenant",
        "cli-mall",
        "--order",
        str(order_id),
        "--carrier",
        "顺丰",
        "--tracking",
        "SF9",
    )
    early = siyu_json("mall", "deliver", "--tenant", "cli-mall", "--order", "999999", code=1)
    cancelled = siyu_json(
        "mall", "cancel", "--tenant", "cli-mall", "--order", str(order_id), "--reason", "退件"
    )
    balance = siyu_json("points", "balance", "--tenant", "cli-mall", "--member", str(member_id))

    assert (cup["stock"], coupon["stock"]) == (2, 0)
    assert uploaded == {"added": 2, "duplicates": ["A1"], "stock": 2}
    assert bad_kind["code"] == "mall.invalid_item"
    assert [o["id"] for o in listed["items"]] == [order_id]
    assert (exported["format"], exported["orders"]) == ("xlsx", 1)
    assert out.read_bytes()[:2] == b"PK"
    assert (shipped["status"], shipped["tracking_no"]) == ("shipped", "SF9")
    assert early["code"] == "mall.order_not_found"
    assert cancelled["status"] == "cancelled"
    assert cancelled["refund_entry_id"]
    assert balance["balance"] == 100


def test_tracking_import_exits_1_and_lists_bad_rows(committed, tmp_path):
    siyu_json("tenant", "create", "cli-import", "--name", "导入")
    sheet = tmp_path / "tracking.csv"
    sheet.write_text("订单号,快递公司,快递单号\n424242,顺丰,SF1\n", encoding="utf-8")

    out = siyu_json(
        "mall", "import-tracking", "--tenant", "cli-import", "--file", str(sheet), code=1
    )

    assert out["shipped"] == 0
    assert out["problems"] == [
        {"row": 2, "code": "mall.order_not_found", "message": "没有兑换订单 424242"}
    ]


def test_trial_created_and_drawn_from_the_cli_with_an_operator_seed(committed, clock):
    seed = "ab" * 32
    commitment = hashlib.sha256(bytes.fromhex(seed)).hexdigest()
    siyu_json("tenant", "create", "cli-trial", "--name", "试用")
    now = clock.now
    trial = siyu_json(
        "trial",
        "create",
        "--tenant",
        "cli-trial",
        "--title",
        "精华",
        "--slots",
        "1",
        "--from",
        (now - dt.timedelta(hours=1)).isoformat(),
        "--until",
        (now + dt.timedelta(hours=1)).isoformat(),
        "--report-deadline",
        (now + dt.timedelta(days=7)).isoformat(),
        "--commitment",
        commitment,
    )
    bad_time = siyu_json(
        "trial",
        "create",
        "--tenant",
        "cli-trial",
        "--title",
        "x",
        "--slots",
        "1",
        "--from",
        "tomorrow",
        "--until",
        "x",
        "--report-deadline",
        "y",
        code=1,
    )
    too_early = siyu_json(
        "trial",
        "draw",
        "--tenant",
        "cli-trial",
        "--trial",
        str(trial["id"]),
        "--seed",
        seed,
        code=1,
    )
    clock.advance(hours=2)
    drawn = siyu_json(
        "trial", "draw", "--tenant", "cli-trial", "--trial", str(trial["id"]), "--seed", seed
    )
    board = siyu_json("trial", "reports", "--tenant", "cli-trial", "--trial", str(trial["id"]))

    assert trial["commitment"] == commitment
    assert trial["seed"] is None
    assert bad_time["code"] == "request.invalid_field"
    assert too_early["code"] == "trials.draw_too_early"
    assert (drawn["status"], drawn["seed"], drawn["winners"]) == ("drawn", seed, [])
    assert board == {"items": []}

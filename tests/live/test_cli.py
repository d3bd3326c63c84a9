"""``siyu live …`` against a committed database, each command its own transaction."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from siyu.cli import app
from siyu.core.db import unit_of_work
from siyu.live import service as live
from tests.factories import make_member, make_tenant

runner = CliRunner()


def siyu_json(*args: str, code: int = 0) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == code, (result.stdout, result.exception)
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout  # one JSON object, nothing else
    return json.loads(lines[0])


@pytest.fixture
def shop(committed, clock):
    with unit_of_work() as db:
        tenant = make_tenant(db)
        fans = [make_member(db, tenant).id for _ in range(3)]
        return tenant.slug, tenant.id, fans


def test_session_lineup_on_sale_and_start_from_the_cli(shop):
    slug, tenant_id, fans = shop
    s = siyu_json(
        "live",
        "session",
        "create",
        "--tenant",
        slug,
        "--theme",
        "零食节",
        "--starts-at",
        "2026-12-06T20:00",
        "--ends-at",
        "2026-12-06T23:00",
        "--taobao-password",
        "￥MDGGba1MLQh￥",
        "--key",
        "dec6",
    )
    again = siyu_json(
        "live",
        "session",
        "create",
        "--tenant",
        slug,
        "--theme",
        "零食节",
        "--starts-at",
        "2026-12-06T20:00",
        "--ends-at",
        "2026-12-06T23:00",
        "--key",
        "dec6",
    )
    p = siyu_json(
        "live",
        "lineup",
        "add",
        "--tenant",
        slug,
        "--session",
        str(s["id"]),
        "--title",
        "每日坚果",
        "--live-price-fen",
        "5990",
        "--list-price-fen",
        "9900",
    )
    with unit_of_work() as db:
        for fan in fans:
            live.reserve(
                db, tenant_id=tenant_id, member_id=fan, session_id=s["id"], product_id=p["id"]
            )
        live.reserve(db, tenant_id=tenant_id, member_id=fans[0], session_id=s["id"])

    sale = siyu_json("live", "on-sale", "--tenant", slug, "--product", str(p["id"]))
    sale_again = siyu_json("live", "on-sale", "--tenant", slug, "--product", str(p["id"]))
    start = siyu_json("live", "start", "--tenant", slug, "--session", str(s["id"]))
    listed = siyu_json("live", "session", "list", "--tenant", slug, "--month", "2026-12")

    assert s["starts_at"] == "2026-12-06T12:00:00+00:00"  # tenant time: Asia/Shanghai
    assert again["id"] == s["id"]
    assert (sale["changed"], sale["marked"]) == (True, 3)
    assert (sale_again["changed"], sale_again["marked"]) == (False, 0)
    assert (start["changed"], start["marked"], start["session"]["status"]) == (True, 1, "live")
    assert [x["id"] for x in listed["sessions"]] == [s["id"]]


def test_cli_errors_are_one_json_line_and_exit_1(shop):
    slug, _, _ = shop

    bad = siyu_json(
        "live",
        "session",
        "create",
        "--tenant",
        slug,
        "--theme",
        "x",
        "--starts-at",
        "2026-12-06T20:00",
        "--ends-at",
        "2026-12-06T19:00",
        code=1,
    )
    missing = siyu_json("live", "on-sale", "--tenant", slug, "--product", "999999", code=1)
    garbled = siyu_json(
        "live",
        "session",
        "create",
        "--tenant",
        slug,
        "--theme",
        "x",
        "--starts-at",
        "tomorrow",
        "--ends-at",
        "2026-12-06T19:00",
        code=1,
    )

    assert bad["code"] == "live.invalid"
    assert missing["code"] == "live.product_not_found"
    assert garbled["code"] == "live.invalid"

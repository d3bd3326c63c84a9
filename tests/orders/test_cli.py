"""``siyu orders import`` and ``siyu orders claim`` against a committed database."""

from __future__ import annotations

import itertools

import pytest

from tests.ledger.test_cli import siyu, siyu_json
from tests.orders.samples import TbRow, taobao_csv

_slugs = itertools.count(1)


@pytest.fixture
def shop(committed, clock) -> tuple[str, int]:
    slug = f"orders-cli-{next(_slugs)}"
    siyu_json("tenant", "create", slug, "--name", "小鱼直播间")
    member = siyu_json("member", "create", "--tenant", slug, "--openid", f"o-{slug}")
    return slug, member["id"]


def test_import_prints_counts_and_every_rejected_row(shop, tmp_path):
    slug, _member = shop
    path = tmp_path / "ExportOrderList.csv"
    path.write_bytes(
        taobao_csv([TbRow("1", "a", "10.00"), TbRow("2", "b", "x元"), TbRow("1", "a", "10.00")])
    )

    out = siyu_json("orders", "import", str(path), "--tenant", slug, "--session", "3")

    assert {k: out[k] for k in ("rows", "imported", "updated")} == {
        "rows": 3,
        "imported": 1,
        "updated": 1,
    }
    assert out["rejected"] == [{"line": 3, "column": "买家实际支付金额", "reason": "bad amount"}]
    again = siyu_json("orders", "import", str(path), "--tenant", slug, "--format", "taobao")
    assert (again["imported"], again["updated"]) == (0, 2)


def test_import_of_an_unknown_file_exits_non_zero_with_a_code(shop, tmp_path):
    slug, _member = shop
    path = tmp_path / "x.csv"
    path.write_bytes(b"a,b\n1,2\n")

    out = siyu_json("orders", "import", str(path), "--tenant", slug, code=1)

    assert out["code"] == "orders.unreadable_file"


def test_claim_prints_the_claim_with_status_and_points(shop, tmp_path):
    slug, member = shop
    path = tmp_path / "o.csv"
    path.write_bytes(taobao_csv([TbRow("77", "nick", "88.80")]))
    siyu_json("orders", "import", str(path), "--tenant", slug)

    out = siyu_json(
        "orders",
        "claim",
        "--tenant",
        slug,
        "--member",
        str(member),
        "--platform",
        "taobao",
        "--order",
        "77",
        "--account",
        "nick",
    )

    assert (out["status"], out["points"]) == ("credited", 88)
    balance = siyu_json("points", "balance", "--tenant", slug, "--member", str(member))
    assert balance["balance"] == 88
    bad = siyu_json(
        "orders",
        "claim",
        "--tenant",
        slug,
        "--member",
        str(member),
        "--platform",
        "weibo",
        "--order",
        "77",
        "--account",
        "nick",
        code=1,
    )
    assert bad["code"] == "orders.invalid_claim"
    listed = siyu_json("orders", "claims", "--tenant", slug)
    assert [c["order_no"] for c in listed["claims"]] == ["77"]
    stats = siyu_json("orders", "stats", "--tenant", slug)
    assert stats["sessions"][0]["claimed"] == 1
    human = siyu("orders", "import", str(path), "--tenant", slug)
    assert "1 rows" in human.stdout or "1 updated" in human.stdout

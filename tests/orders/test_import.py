"""Importing the platforms' exports: formats, quirks, rejects, idempotency."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from siyu.core.i18n import gettext
from siyu.orders import models as m
from siyu.orders import service
from tests.orders.samples import (
    TbRow,
    douyin_csv,
    dy_row,
    generic_csv,
    generic_xlsx,
    taobao_csv,
)


def orders_of(db, tenant):
    return {
        o.order_no: o
        for o in db.scalars(select(m.Order).where(m.Order.tenant_id == tenant.id)).all()
    }


def test_taobao_gbk_export_with_every_quirk_imports_normalised_orders(db, tenant, run):
    data = taobao_csv(
        [
            TbRow("3901", "小鱼爱买买", "128.50"),
            TbRow("3902", "tb_二号", "0元", status="unpaid", paid_at=""),
            TbRow("3903", "tb_三号", "99", status="shipped", paid_at="2026/11/11 20:01"),
            TbRow("3904", "tb_四号", "59.9", status="closed", refund="59.90"),
            TbRow("3905", "tb_五号", "10.00", status="finished"),
        ]
    )

    imp = run(tenant, data)

    assert (imp.status, imp.format, imp.encoding) == ("done", "taobao", "gb18030")
    assert (imp.rows, imp.imported, imp.updated, imp.rejected) == (5, 5, 0, 0)
    orders = orders_of(db, tenant)
    assert orders["3901"].buyer == "小鱼爱买买"
    assert orders["3901"].paid_fen == 12850
    assert orders["3901"].status == "paid"
    # 20:01:02 Shanghai time is 12:01:02 UTC.
    assert orders["3901"].paid_at == dt.datetime(2026, 11, 11, 12, 1, 2, tzinfo=dt.UTC)
    assert (orders["3902"].paid_fen, orders["3902"].status, orders["3902"].paid_at) == (
        0,
        "unpaid",
        None,
    )
    assert orders["3903"].paid_at == dt.datetime(2026, 11, 11, 12, 1, tzinfo=dt.UTC)
    assert orders["3903"].status == "shipped"
    assert (orders["3904"].status, orders["3904"].refund_fen) == ("closed", 5990)
    assert orders["3905"].status == "finished"


def test_broken_rows_are_reported_and_good_rows_around_them_import(db, tenant, run):
    data = taobao_csv(
        [
            TbRow("4001", "good-1", "10.00"),
            TbRow("", "no-number", "10.00"),
            TbRow("4003", "bad-money", "12.3.4"),
            ["4004", "short"],
            TbRow("4005", "weird-status", "10", status="买家已付款但是很奇怪"),
            TbRow("4006", "bad-time", "10", paid_at="2026-13-45 25:00"),
            TbRow("4007", "good-2", "20.00"),
        ]
    )

    imp = run(tenant, data)

    rejects = [
        (r.line, r.column, r.reason)
        for r in service.list_rejects(db, tenant_id=tenant.id, import_id=imp.id)
    ]
    assert rejects == [
        (3, "订单编号", "missing order number"),
        (4, "买家实际支付金额", "bad amount"),
        (5, "", "short row"),
        (6, "订单状态", "unknown status"),
        (7, "订单付款时间", "bad time"),
    ]
    assert set(orders_of(db, tenant)) == {"4001", "4007"}
    assert imp.rows == 7 == imp.imported + imp.updated + imp.rejected
    assert imp.rejected == 5


def test_reimport_updates_in_place_and_last_state_in_a_file_wins(db, tenant, run):
    run(tenant, taobao_csv([TbRow("5001", "a", "10.00"), TbRow("5002", "b", "20.00")]))

    imp = run(
        tenant,
        taobao_csv(
            [
                TbRow("5001", "a", "10.00", status="shipped"),
                TbRow("5003", "c", "30.00"),
                TbRow("5001", "a", "10.00", status="finished", refund="4.00"),
            ]
        ),
    )

    assert (imp.rows, imp.imported, imp.updated, imp.rejected) == (3, 1, 2, 0)
    orders = orders_of(db, tenant)
    assert len(orders) == 3
    assert (orders["5001"].status, orders["5001"].refund_fen) == ("finished", 400)
    count = db.scalar(
        select(func.count()).select_from(m.Order).where(m.Order.tenant_id == tenant.id)
    )
    assert count == 3


def test_douyin_export_merges_sub_orders_and_reads_refunds(db, tenant, run):
    data = douyin_csv(
        [
            dy_row("6001", "6001-1", "30.00"),
            dy_row("6001", "6001-2", "20.50", after_sale="退款成功"),
            dy_row("6002", "6002-1", "¥15.00", status="已关闭", buyer="dy_two"),
            dy_row("", "x", "1.00"),
        ]
    )

    imp = run(tenant, data)

    assert (imp.format, imp.encoding) == ("douyin", "utf-8")
    assert (imp.rows, imp.imported, imp.updated, imp.rejected) == (4, 2, 1, 1)
    orders = orders_of(db, tenant)
    assert (orders["6001"].paid_fen, orders["6001"].refund_fen) == (5050, 2050)
    assert orders["6001"].platform == "douyin"
    assert orders["6002"].status == "closed"


def test_generic_csv_and_xlsx_layouts_import_with_sessions(db, tenant, run, tmp_path):
    csv_data = generic_csv(
        [
            ["taobao", "7001", "g1", "12.00", "", "paid", "2026-11-11T20:00:00+08:00", "口红"],
            ["weibo", "7002", "g2", "1", "", "paid", "", ""],
        ]
    )
    imp = run(tenant, csv_data, session_id=42)
    assert (imp.format, imp.rows, imp.imported, imp.rejected) == ("generic", 2, 1, 1)

    xlsx = generic_xlsx(
        tmp_path / "orders.xlsx",
        [["douyin", 7003, "g3", 8.5, None, "finished", "2026-11-11 20:00", "面膜"]],
    )
    imp2 = run(tenant, xlsx)
    assert (imp2.format, imp2.encoding, imp2.imported) == ("generic", "xlsx", 1)
    orders = orders_of(db, tenant)
    assert orders["7001"].session_id == 42
    assert orders["7001"].paid_at == dt.datetime(2026, 11, 11, 12, 0, tzinfo=dt.UTC)
    assert (orders["7003"].paid_fen, orders["7003"].platform) == (850, "douyin")


def test_unrecognised_file_fails_the_import_with_a_reason(db, tenant, run):
    imp = run(tenant, b"just,some,columns\n1,2,3\n")

    assert imp.status == "failed"
    assert imp.error == gettext("no known header (Taobao, Douyin or generic layout)")
    assert imp.rows == 0


def test_format_option_overrides_detection(db, tenant, run):
    imp = run(tenant, taobao_csv([TbRow("8001", "a", "1.00")]), fmt="douyin")

    assert imp.status == "failed"
    assert "主订单编号" in imp.error

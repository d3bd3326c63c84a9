"""Realistic export files, generated: Taobao 订单报表 (GB18030, quirks), Douyin 抖店 (UTF-8 BOM),
the generic CSV and XLSX layouts. Nothing big is committed; tests and the benchmark write them."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

TAOBAO_HEADER = [
    "订单编号",
    "买家会员名",
    "买家支付宝账号",
    "买家应付货款",
    "买家实际支付金额",
    "订单状态",
    "收货人姓名",
    "联系手机",
    "订单创建时间",
    "订单付款时间",
    "宝贝标题",
    "宝贝总数量",
    "店铺名称",
    "订单关闭原因",
    "退款金额",
    "商家备注",
]
DOUYIN_HEADER = [
    "主订单编号",
    "子订单编号",
    "选购商品",
    "商品数量",
    "订单应付金额",
    "订单提交时间",
    "支付完成时间",
    "订单状态",
    "售后状态",
    "买家昵称",
]
GENERIC_HEADER = ["platform", "order_no", "buyer", "paid", "refund", "status", "paid_at", "items"]

TB_STATUS = {
    "unpaid": "等待买家付款",
    "paid": "买家已付款，等待卖家发货",
    "shipped": "卖家已发货，等待买家确认",
    "finished": "交易成功",
    "closed": "交易关闭",
}


@dataclass
class TbRow:
    order_no: str
    buyer: str
    paid: str  # yuan as written, e.g. "128.50" or "0元"
    status: str = "paid"
    paid_at: str = "2026-11-11 20:01:02"
    created_at: str = "2026-11-11 20:00:00"
    refund: str = "0元"
    title: str = "【直播专享】精华液 30ml"
    extra: dict[str, str] = field(default_factory=dict)

    def cells(self) -> list[str]:
        values = {
            "订单编号": f'="{self.order_no}"',
            "买家会员名": self.buyer,
            "买家支付宝账号": "'138****1234",
            "买家应付货款": self.paid,
            "买家实际支付金额": self.paid,
            "订单状态": TB_STATUS.get(self.status, self.status),
            "收货人姓名": "张小鱼",
            "联系手机": "'13812341234",
            "订单创建时间": self.created_at,
            "订单付款时间": self.paid_at,
            "宝贝标题": self.title,
            "宝贝总数量": "1",
            "店铺名称": "所有女生的店",
            "订单关闭原因": "买家取消" if self.status == "closed" else "订单未关闭",
            "退款金额": self.refund,
            "商家备注": "",
        } | self.extra
        return [values[h] for h in TAOBAO_HEADER]


def taobao_csv(rows: Iterable[TbRow | list[str]], *, encoding: str = "gb18030") -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    w.writerow(TAOBAO_HEADER)
    for r in rows:
        w.writerow(r.cells() if isinstance(r, TbRow) else r)
    return buf.getvalue().encode(encoding)


def write_taobao(path: Path, rows: Iterable[TbRow | list[str]]) -> Path:
    path.write_bytes(taobao_csv(rows))
    return path


def douyin_csv(rows: Iterable[list[str]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(DOUYIN_HEADER)
    for r in rows:
        w.writerow(r)
    return codecs.BOM_UTF8 + buf.getvalue().encode("utf-8")


def dy_row(
    main: str,
    sub: str,
    amount: str,
    *,
    status: str = "已完成",
    after_sale: str = "-",
    buyer: str = "抖音用户小鱼",
    item: str = "面膜 5 片装",
) -> list[str]:
    return [
        main,
        sub,
        item,
        "1",
        amount,
        "2026/11/11 20:00:00",
        "2026/11/11 20:01:00",
        status,
        after_sale,
        buyer,
    ]


def generic_csv(rows: Iterable[list[str]], header: list[str] = GENERIC_HEADER) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow(r)
    return buf.getvalue().encode("utf-8")


def generic_xlsx(
    path: Path, rows: Iterable[list[object]], header: list[str] = GENERIC_HEADER
) -> Path:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("orders")
    ws.append(header)
    for r in rows:
        ws.append(r)
    wb.save(path)
    return path


def many_taobao_rows(n: int, *, start: int = 1) -> Iterator[list[str]]:
    """n realistic rows, fast (for the 1M-row benchmark): every 7th re-saved by Excel."""
    statuses = list(TB_STATUS.values())
    for i in range(start, start + n):
        yuan = 9 + (i * 37) % 1990
        cents = (i * 13) % 100
        paid = f"{yuan}.{cents:02d}"
        when = (
            f"2026/11/{1 + i % 28} {i % 24}:{i % 60:02d}"
            if i % 7 == 0
            else f"2026-11-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{i % 60:02d}"
        )
        yield [
            f'="{3_900_000_000_000_000_000 + i}"',
            f"tb_buyer_{i % 200_000}",
            "'138****1234",
            paid,
            paid,
            statuses[1 + i % 4],
            "张小鱼",
            f"'138{i % 100_000_000:08d}",
            when,
            when,
            "【直播专享】精华液 30ml 补水保湿",
            "1",
            "所有女生的店",
            "订单未关闭",
            "0元",
            "",
        ]

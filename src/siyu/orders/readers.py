"""Streaming readers for live-room order exports: Taobao 订单报表, Douyin 抖店, generic CSV/XLSX.

Each reader turns one data row into a ``Record`` (normalised order) or a ``Reject`` (line,
column, reason); a file is never loaded whole (``csv`` over a decoding text stream, openpyxl
``read_only`` for XLSX), so memory stays flat whatever the file's size.

Detection (``sniff``): ``PK`` → XLSX; a UTF-8 BOM or valid UTF-8 → UTF-8, otherwise GB18030
(a superset of GBK, which Taobao writes); then the header row: 主订单编号 → Douyin,
订单编号 + 买家会员名 → Taobao, ``order_no`` → generic. ``--format`` overrides the guess.

Taobao quirks handled: every cell quoted; number-like cells written ``="…"``; phones with a
leading ``'``; statuses with a full-width comma (买家已付款，等待卖家发货; a half-width comma is
accepted too); times as ``2026-11-11 20:01:02`` or Excel's ``2026/11/11 20:01``; empty money
as ``0元``. Times without an offset are the tenant's local time.

Douyin: one row per sub-order (子订单编号); consecutive rows of one 主订单编号 merge into one
order (amounts summed, refunds summed from rows whose 售后状态 says the refund succeeded); the
merged rows count as updates of that order. 买家昵称 is the buyer account.

Generic layout (CSV in UTF-8 or GB18030, or XLSX; header names exactly, any order):

=========== ======== =============================================================
column      required meaning
=========== ======== =============================================================
platform    yes      taobao | douyin | kuaishou
order_no    yes      the platform's order number (letters, digits, ``-``, ``_``)
buyer       yes      the buyer's platform account (nick / id)
paid        yes      amount paid in yuan, e.g. ``128.50`` (or ``paid_fen`` in fen)
refund      no       amount refunded in yuan (or ``refund_fen``)
status      yes      unpaid | paid | shipped | finished | closed
created_at  no       ISO 8601, or ``YYYY-MM-DD HH:MM[:SS]`` in the tenant's time
paid_at     no       same
items       no       item titles
session_id  no       the live session's id (an integer)
=========== ======== =============================================================
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import io
import queue
import re
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from siyu.core.i18n import _l
from siyu.core.i18n import gettext as _
from siyu.orders import models as m
from siyu.orders.errors import UnknownFormat, UnreadableFile

_T = TypeVar("_T")

FORMATS = ("taobao", "douyin", "generic")
PLATFORMS = ("taobao", "douyin", "kuaishou")
csv.field_size_limit(1 << 20)


@dataclass(slots=True)
class Record:
    line: int
    platform: str
    order_no: str
    buyer: str
    paid_fen: int
    refund_fen: int
    status: str
    ordered_at: dt.datetime | None
    paid_at: dt.datetime | None
    items: str
    session_id: int | None
    merged: int = 0  # further file rows folded into this order (Douyin sub-orders)


@dataclass(slots=True)
class Reject:
    line: int
    column: str
    reason: str


class Bad(Exception):  # noqa: N818 - a row's problem, caught per row
    def __init__(self, column: str, reason: str) -> None:
        self.column, self.reason = column, reason


# --- cells ------------------------------------------------------------------------------------

_MONEY = re.compile(r"^(\d{1,10})(?:\.(\d{1,2}))?$")
_TIME = re.compile(
    r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)
_ORDER_NO = re.compile(r"^[0-9A-Za-z_-]{1,64}$")


def clean(v: str) -> str:
    """A Taobao cell: ``="123"`` → ``123``, ``'138…`` → ``138…``, spaces trimmed."""
    v = v.strip()
    if v.startswith('="') and v.endswith('"'):
        return v[2:-1].strip()
    if v.startswith("'"):
        return v[1:]
    return v


_FEN_CACHE: dict[str, int] = {}


def money_fen(v: str, column: str) -> int:
    """``128.5`` / ``¥128.50`` / ``0元`` / empty → fen. Integer arithmetic only."""
    found = _FEN_CACHE.get(v)  # a live room sells a few prices many times
    if found is not None:
        return found
    fen = _money_fen(v, column)
    if len(_FEN_CACHE) > 50_000:
        _FEN_CACHE.clear()
    _FEN_CACHE[v] = fen
    return fen


def _money_fen(v: str, column: str) -> int:
    v = v.replace("元", "").replace("¥", "").replace("￥", "").replace(",", "").strip()
    if not v:
        return 0
    found = _MONEY.match(v)
    if not found:
        raise Bad(column, "bad amount")
    return int(found.group(1)) * 100 + int((found.group(2) or "0").ljust(2, "0"))


def fen_cell(v: str, column: str) -> int:
    v = v.strip()
    if not v:
        return 0
    if not v.isdigit() or len(v) > 12:
        raise Bad(column, "bad amount")
    return int(v)


class Times:
    """Parses export times to UTC; naive times are in the tenant's zone."""

    def __init__(self, tz: str) -> None:
        self.zone = ZoneInfo(tz)
        # Orders of one live session share their minutes and seconds: parse each text once.
        self.seen: dict[str, dt.datetime | None] = {}

    def __call__(self, v: str, column: str) -> dt.datetime | None:
        found = self.seen.get(v)
        if found is not None:
            return found
        parsed = self._parse(v, column)
        if len(self.seen) > 50_000:
            self.seen.clear()
        self.seen[v] = parsed
        return parsed

    def _parse(self, v: str, column: str) -> dt.datetime | None:
        v = v.strip()
        if not v or v in ("-", "null"):
            return None
        found = _TIME.match(v)
        if not found:
            raise Bad(column, "bad time")
        y, mo, d, h, mi, s, off = found.groups()
        try:
            if off:
                if off == "Z":
                    tz: dt.tzinfo = dt.UTC
                else:
                    sign = 1 if off[0] == "+" else -1
                    hh, mm = int(off[1:3]), int(off[-2:])
                    tz = dt.timezone(sign * dt.timedelta(hours=hh, minutes=mm))
            else:
                tz = self.zone
            local = dt.datetime(
                int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), tzinfo=tz
            )
        except ValueError:
            raise Bad(column, "bad time") from None
        return local.astimezone(dt.UTC)


def order_no(v: str, column: str) -> str:
    if not v:
        raise Bad(column, "missing order number")
    if not _ORDER_NO.match(v):
        raise Bad(column, "bad order number")
    return v


def buyer(v: str, column: str) -> str:
    if not v:
        raise Bad(column, "missing buyer account")
    if len(v) > 64:
        raise Bad(column, "buyer account longer than 64 characters")
    return v


# --- formats ----------------------------------------------------------------------------------

TAOBAO_STATUS = {
    "等待买家付款": m.UNPAID,
    "买家已付款，等待卖家发货": m.PAID,
    "卖家已发货，等待买家确认": m.SHIPPED,
    "交易成功": m.FINISHED,
    "交易关闭": m.CLOSED,
    "交易关闭（买家未付款）": m.CLOSED,
    # TOP API names, which some export tools write instead.
    "WAIT_BUYER_PAY": m.UNPAID,
    "WAIT_SELLER_SEND_GOODS": m.PAID,
    "WAIT_BUYER_CONFIRM_GOODS": m.SHIPPED,
    "TRADE_FINISHED": m.FINISHED,
    "TRADE_CLOSED": m.CLOSED,
    "TRADE_CLOSED_BY_TAOBAO": m.CLOSED,
}
DOUYIN_STATUS = {
    "待支付": m.UNPAID,
    "待付款": m.UNPAID,
    "已支付": m.PAID,
    "备货中": m.PAID,
    "待发货": m.PAID,
    "部分发货": m.SHIPPED,
    "已发货": m.SHIPPED,
    "待收货": m.SHIPPED,
    "已完成": m.FINISHED,
    "已关闭": m.CLOSED,
    "已取消": m.CLOSED,
}
DOUYIN_REFUNDED = ("退款成功", "退货退款成功", "售后完成", "已退款", "退款完成")


class Layout:
    """Maps a header to column positions; ``parse`` turns one row into a Record."""

    format = ""
    required: tuple[str, ...] = ()

    def __init__(self, header: list[str], *, tz: str, session_id: int | None) -> None:
        self.header = [clean(h).lstrip("\ufeff") for h in header]
        self.pos = {name: i for i, name in enumerate(self.header) if name}
        missing = [c for c in self.required if c not in self.pos]
        if missing:
            raise UnreadableFile(
                problem=_("{format} file without column(s) {columns}").format(
                    format=self.format, columns=", ".join(missing)
                )
            )
        self.width = len(self.header)
        self.times = Times(tz)
        self.session_id = session_id

    def get(self, row: list[str], name: str) -> str:
        i = self.pos.get(name)
        return clean(row[i]) if i is not None else ""

    def parse(self, line: int, row: list[str]) -> Record:
        raise NotImplementedError


class Taobao(Layout):
    format = "taobao"
    required = ("订单编号", "买家会员名", "买家实际支付金额", "订单状态")

    def __init__(self, header: list[str], *, tz: str, session_id: int | None) -> None:
        super().__init__(header, tz=tz, session_id=session_id)
        pos = self.pos
        # The hot loop of a million-row import: column positions looked up once.
        self.i_no, self.i_buyer = pos["订单编号"], pos["买家会员名"]
        self.i_paid, self.i_status = pos["买家实际支付金额"], pos["订单状态"]
        self.i_refund = pos.get("退款金额")
        self.i_created, self.i_paid_at = pos.get("订单创建时间"), pos.get("订单付款时间")
        self.i_title = pos.get("宝贝标题")

    def parse(self, line: int, row: list[str]) -> Record:
        status = TAOBAO_STATUS.get(clean(row[self.i_status]).replace(",", "，"))
        if status is None:
            raise Bad("订单状态", "unknown status")
        paid = money_fen(clean(row[self.i_paid]), "买家实际支付金额")
        refund = money_fen(clean(row[self.i_refund]), "退款金额") if self.i_refund else 0
        times = self.times
        return Record(
            line,
            "taobao",
            order_no(clean(row[self.i_no]), "订单编号"),
            buyer(clean(row[self.i_buyer]), "买家会员名"),
            paid,
            min(refund, paid),
            status,
            times(row[self.i_created], "订单创建时间") if self.i_created is not None else None,
            times(row[self.i_paid_at], "订单付款时间") if self.i_paid_at is not None else None,
            clean(row[self.i_title])[:500] if self.i_title is not None else "",
            self.session_id,
        )


class Douyin(Layout):
    format = "douyin"
    required = ("主订单编号", "订单应付金额", "订单状态", "买家昵称")

    def parse(self, line: int, row: list[str]) -> Record:
        status = DOUYIN_STATUS.get(self.get(row, "订单状态"))
        if status is None:
            raise Bad("订单状态", "unknown status")
        paid = money_fen(self.get(row, "订单应付金额"), "订单应付金额")
        after_sale = self.get(row, "售后状态")
        return Record(
            line=line,
            platform="douyin",
            order_no=order_no(self.get(row, "主订单编号"), "主订单编号"),
            buyer=buyer(self.get(row, "买家昵称"), "买家昵称"),
            paid_fen=paid,
            refund_fen=paid if after_sale in DOUYIN_REFUNDED else 0,
            status=status,
            ordered_at=self.times(self.get(row, "订单提交时间"), "订单提交时间"),
            paid_at=self.times(self.get(row, "支付完成时间"), "支付完成时间"),
            items=self.get(row, "选购商品")[:500],
            session_id=self.session_id,
        )


class Generic(Layout):
    format = "generic"
    required = ("platform", "order_no", "buyer", "status")

    def __init__(self, header: list[str], *, tz: str, session_id: int | None) -> None:
        super().__init__(header, tz=tz, session_id=session_id)
        if "paid" not in self.pos and "paid_fen" not in self.pos:
            raise UnreadableFile(problem=_("generic file without column paid or paid_fen"))

    def _money(self, row: list[str], name: str) -> int:
        if f"{name}_fen" in self.pos:
            return fen_cell(self.get(row, f"{name}_fen"), f"{name}_fen")
        return money_fen(self.get(row, name), name)

    def parse(self, line: int, row: list[str]) -> Record:
        platform = self.get(row, "platform").lower()
        if platform not in PLATFORMS:
            raise Bad("platform", "unknown platform")
        status = self.get(row, "status").lower()
        if status not in m.STATUSES:
            raise Bad("status", "unknown status")
        session = self.session_id
        raw_session = self.get(row, "session_id")
        if session is None and raw_session:
            if not raw_session.isdigit() or len(raw_session) > 9:
                raise Bad("session_id", "bad session id")
            session = int(raw_session)
        paid = self._money(row, "paid")
        return Record(
            line=line,
            platform=platform,
            order_no=order_no(self.get(row, "order_no"), "order_no"),
            buyer=buyer(self.get(row, "buyer"), "buyer"),
            paid_fen=paid,
            refund_fen=min(self._money(row, "refund"), paid),
            status=status,
            ordered_at=self.times(self.get(row, "created_at"), "created_at"),
            paid_at=self.times(self.get(row, "paid_at"), "paid_at"),
            items=self.get(row, "items")[:500],
            session_id=session,
        )


LAYOUTS: dict[str, type[Layout]] = {"taobao": Taobao, "douyin": Douyin, "generic": Generic}


def guess_format(header: list[str]) -> str | None:
    names = {clean(h).lstrip("\ufeff") for h in header}
    if "主订单编号" in names:
        return "douyin"
    if "订单编号" in names and "买家会员名" in names:
        return "taobao"
    if "order_no" in names:
        return "generic"
    return None


# --- files ------------------------------------------------------------------------------------


@dataclass
class Source:
    """An opened export: its format and encoding, and its rows as Records and Rejects."""

    format: str
    encoding: str
    size: int
    rows: Iterator[Record | Reject]
    position: Callable[[], int]  # bytes (CSV) or rows (XLSX) read so far, for progress
    close: Callable[[], None]
    layout: Layout | None = None  # the header's column map (CSV; the staged path reads it)


def sniff_encoding(head: bytes) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    cut = head.rfind(b"\n")
    sample = head[: cut + 1] if cut > 0 else head
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        return "gb18030"
    return "utf-8"


def open_source(
    path: Path, *, tz: str, fmt: str | None = None, session_id: int | None = None
) -> Source:
    """Open an export for streaming. Raises UnknownFormat / UnreadableFile."""
    if fmt is not None and fmt not in FORMATS:
        raise UnknownFormat(allowed=", ".join(FORMATS))
    size = path.stat().st_size
    raw = path.open("rb")
    head = raw.read(65536)
    raw.seek(0)
    if head.startswith(b"PK\x03\x04"):
        raw.close()
        return _open_xlsx(path, size=size, tz=tz, fmt=fmt, session_id=session_id)
    encoding = sniff_encoding(head)
    text = io.TextIOWrapper(raw, encoding=encoding, errors="strict", newline="")
    reader = csv.reader(text)
    try:
        header = next(reader, None)
    except (UnicodeDecodeError, csv.Error) as err:
        raw.close()
        raise UnreadableFile(problem=str(err)) from None
    if not header:
        raw.close()
        raise UnreadableFile(problem=_("the file is empty"))
    chosen = fmt or guess_format(header)
    if chosen is None:
        raw.close()
        raise UnreadableFile(problem=_("no known header (Taobao, Douyin or generic layout)"))
    layout = LAYOUTS[chosen](header, tz=tz, session_id=session_id)

    def rows() -> Iterator[Record | Reject]:
        line = reader.line_num
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError:
                # The decoder fails for the rest of its buffer: report and stop, never guess.
                yield Reject(line + 1, "", "undecodable bytes; the rest of the file is unread")
                return
            except csv.Error as err:
                yield Reject(reader.line_num, "", str(err))
                line = reader.line_num
                continue
            first, line = line + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                yield Reject(first, "", "empty row")
                continue
            yield from _one(layout, first, row)

    return Source(
        format=chosen,
        encoding=encoding.replace("-sig", ""),
        size=size,
        rows=_merge(rows()) if chosen == "douyin" else rows(),
        position=lambda: raw.tell() if not raw.closed else size,
        close=raw.close,
        layout=layout,
    )


def _one(layout: Layout, line: int, row: list[str]) -> Iterator[Record | Reject]:
    if len(row) < layout.width:
        yield Reject(line, "", "short row")
        return
    try:
        yield layout.parse(line, row)
    except Bad as bad:
        yield Reject(line, bad.column, bad.reason)


def _merge(rows: Iterator[Record | Reject]) -> Iterator[Record | Reject]:
    """Fold consecutive sub-order rows of one Douyin order into one Record."""
    held: Record | None = None
    for r in rows:
        if isinstance(r, Reject):
            yield r
            continue
        if held is not None and held.order_no == r.order_no:
            held.paid_fen += r.paid_fen
            held.refund_fen += r.refund_fen
            held.items = f"{held.items}；{r.items}"[:500] if r.items else held.items
            held.status = r.status
            held.merged += 1
            continue
        if held is not None:
            yield held
        held = r
    if held is not None:
        yield held


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    return str(v)


def _open_xlsx(
    path: Path, *, size: int, tz: str, fmt: str | None, session_id: int | None
) -> Source:
    import zipfile

    from openpyxl import load_workbook

    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as err:
        raise UnreadableFile(problem=str(err) or _("not an XLSX workbook")) from None
    ws = wb.worksheets[0]
    it = ws.iter_rows(values_only=True)
    header = [_cell(v) for v in next(it, ())]
    chosen = fmt or guess_format(header)
    if chosen is None:
        wb.close()
        raise UnreadableFile(problem=_("no known header (Taobao, Douyin or generic layout)"))
    layout = LAYOUTS[chosen](header, tz=tz, session_id=session_id)
    done = [1]

    def rows() -> Iterator[Record | Reject]:
        for line, values in enumerate(it, start=2):
            done[0] = line
            row = [_cell(v) for v in values]
            if not any(c.strip() for c in row):
                yield Reject(line, "", "empty row")
                continue
            row += [""] * (layout.width - len(row))  # XLSX drops trailing empty cells
            yield from _one(layout, line, row)

    total = ws.max_row or 0
    return Source(
        format=chosen,
        encoding="xlsx",
        size=total,
        rows=_merge(rows()) if chosen == "douyin" else rows(),
        position=lambda: done[0],
        close=wb.close,
    )


# Row reasons are stored in English (stable for the API and CLI) and translated when shown
# (pages, the downloadable report); listed here so extraction puts them in the catalog.
REASONS = (
    _l("bad amount"),
    _l("bad time"),
    _l("missing order number"),
    _l("bad order number"),
    _l("missing buyer account"),
    _l("buyer account longer than 64 characters"),
    _l("unknown status"),
    _l("unknown platform"),
    _l("bad session id"),
    _l("empty row"),
    _l("short row"),
    _l("undecodable bytes; the rest of the file is unread"),
)


def data_rows(items: list[Record | Reject]) -> int:
    """File rows behind these items (a merged Douyin order stands for several rows)."""
    return sum(1 + r.merged if isinstance(r, Record) else 1 for r in items)


def ahead(items: Iterator[_T], depth: int = 1) -> Generator[_T, None, None]:
    """``items``, produced in a thread up to ``depth`` ahead of the consumer: the next piece
    or batch is read and parsed (Python, holding the GIL) while PostgreSQL works on the
    previous one (a wait on the socket, without it); memory stays bounded by ``depth``. The
    producer's error is raised here, in order. Close the generator (``contextlib.closing``)
    to stop the producer when the consumer gives up early."""
    handoff: queue.Queue[tuple[bool, Any]] = queue.Queue(depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    with contextlib.suppress(queue.Full):
                        handoff.put((True, item), timeout=0.1)
                        break
                if stop.is_set():
                    return
            handoff.put((False, None))
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, raised there
            handoff.put((False, err))

    producer = threading.Thread(target=produce, name="orders-import-read", daemon=True)
    producer.start()
    try:
        while True:
            more, got = handoff.get()
            if not more:
                if got is not None:
                    raise got
                return
            yield got
    finally:
        stop.set()
        while producer.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                handoff.get(timeout=0.1)
        producer.join()

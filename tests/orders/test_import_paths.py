"""The PostgreSQL staged path and the Python path import the same files to the same result.

Each file is imported twice on fresh tenants, once with ``staging=False``; the orders and the
report rows (line, column, reason) and counts must be equal. On SQLite both runs take the
Python path (the test still holds). ``test_staged_path_is_taken`` checks on PostgreSQL that
the quirky Taobao file really went through staging, and that files it must refuse did not."""

from __future__ import annotations

import csv
import io
import logging

import pytest
from sqlalchemy import select

from siyu.orders import flows, service
from siyu.orders import models as m
from tests.factories import make_tenant
from tests.orders.samples import TAOBAO_HEADER, TbRow, douyin_csv, dy_row, taobao_csv

QUIRKY = [
    TbRow("3901", "小鱼爱买买", "128.50"),
    TbRow("3902", "tb_二号", "0元", status="unpaid", paid_at=""),
    TbRow("3903", "tb_三号", "99", status="shipped", paid_at="2026/11/11 20:01"),
    TbRow("3904", "tb_四号", "59.9", status="closed", refund="59.90"),
    TbRow("3905", " tb_五号\u3000", "￥10.00", status="finished", refund="12.00"),
    TbRow("3906", "tb_六号", "1,280.00", status="买家已付款,等待卖家发货"),
    TbRow("3907", "tb_七号", "10", created_at="2026-11-11T20:00:00+08:00", paid_at="-"),
    TbRow("", "no-number", "10.00"),
    TbRow("39 08", "bad-number", "10.00"),
    TbRow("3909", "", "10.00"),
    TbRow("3910", "x" * 65, "10.00"),
    TbRow("3911", "bad-money", "12.3.4"),
    TbRow("3912", "bad-refund", "12", refund="abc"),
    TbRow("3913", "weird-status", "10", status="买家已付款但是很奇怪"),
    TbRow("3914", "bad-time", "10", paid_at="2026-13-45 25:00"),
    TbRow("3915", "bad-created", "10", created_at="2026-02-30 10:00"),
    TbRow("3916", "全角数字", "１２"),  # Python's \\d takes these: the staged path must too
    TbRow("3901", "小鱼爱买买", "128.50", status="finished", refund="8"),  # last one wins
    TbRow("3917", "title, with comma", "5", title="精华液, 限量 30ml"),
    TbRow("3919", "quoted-title", "5", title='"限量"精华液'),
    TbRow("3918", "long-title", "5", title="长" * 600),
    TbRow("3920", "tb_八\u3000号", "5", title="精华液\u3000限量"),  # inner full-width spaces
    TbRow("3921\t", "tab-after-number", "5"),
    TbRow("3" * 65, "number-too-long", "5"),
    TbRow("3922", "y" * 64, "5"),  # a buyer of exactly 64 characters
]


def _minimal(rows: list[TbRow]) -> bytes:
    """As Taobao's own export writes it: CRLF, quotes only where needed, so an empty last cell
    (商家备注) is a bare comma before the CRLF, and ``="…"`` order numbers are quoted."""
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    w.writerow(TAOBAO_HEADER)
    for r in rows:
        w.writerow(r.cells())
    return buf.getvalue().encode("gb18030")


CRLF = _minimal(QUIRKY)


def _import(db, data: bytes, tmp_path, *, staging: bool, name: str):
    tenant = make_tenant(db)
    path = tmp_path / name
    path.write_bytes(data)
    imp = service.create_import(
        db, tenant_id=tenant.id, filename=path.name, fmt=None, session_id=None
    )
    db.flush()
    done = flows.run_import(imp.id, path, staging=staging)
    db.expire_all()
    orders = {
        o.order_no: (
            o.buyer,
            o.paid_fen,
            o.refund_fen,
            o.status,
            o.ordered_at,
            o.paid_at,
            o.items,
            o.session_id,
        )
        for o in db.scalars(select(m.Order).where(m.Order.tenant_id == tenant.id))
    }
    rejects = [
        (r.line, r.column, r.reason)
        for r in service.list_rejects(db, tenant_id=tenant.id, import_id=imp.id)
    ]
    counts = (done.status, done.rows, done.imported, done.updated, done.rejected, done.format)
    return counts, orders, rejects


FILES = {
    "CRLF, minimal quoting, empty last cells": CRLF,
    "quirky taobao (GB18030)": taobao_csv(QUIRKY),
    "quirky taobao (UTF-8)": taobao_csv(QUIRKY, encoding="utf-8"),
    "comma and quote in a title": taobao_csv([TbRow("4501", "a", "1", title='a, "b" c')]),
    "short row": taobao_csv([TbRow("4001", "a", "1"), ["4002", "short"], TbRow("4003", "b", "2")]),
    'bare ="…" cells': (
        ",".join(TAOBAO_HEADER)
        + "\r\n"
        + ",".join(['="4101"', "bare", "", "1", "1", "交易成功"] + [""] * 10)
        + "\r\n"
    ).encode("gb18030"),
    "bad bytes": taobao_csv([TbRow("4201", "a", "1")]) + b"\xff\xfe,\r\n",
    "quoted newline": taobao_csv(
        [TbRow("4301", "a", "1", title="two\nlines"), TbRow("", "b", "1")]
    ),
    "blank line": taobao_csv([TbRow("4401", "a", "1")]) + b"\r\n",
    "douyin": douyin_csv([dy_row("6001", "6001-1", "30.00"), dy_row("6001", "6001-2", "2")]),
}


@pytest.mark.parametrize("name", list(FILES))
def test_staged_and_python_paths_give_the_same_orders_and_report(db, tmp_path, name):
    data = FILES[name]

    python = _import(db, data, tmp_path, staging=False, name="a.csv")
    staged = _import(db, data, tmp_path, staging=True, name="b.csv")

    assert staged == python
    assert python[0][1] == python[0][2] + python[0][3] + python[0][4]  # counts add up


@pytest.mark.parametrize("name", list(FILES))
def test_files_staged_in_small_pieces_give_the_same_orders_and_report(
    db, tmp_path, monkeypatch, name
):
    """Pieces of about 64 bytes: many COPYs, each piece decoded and checked by the reader
    thread while the previous one is COPYed; a refusal in a later piece still sends the whole
    file down the Python path with nothing written."""
    from siyu.orders import staged

    monkeypatch.setattr(staged, "PIECE", 64)
    data = FILES[name] + (b"" if name == "douyin" else _minimal(QUIRKY).split(b"\r\n", 1)[1])

    python = _import(db, data, tmp_path, staging=False, name="a.csv")
    staged_result = _import(db, data, tmp_path, staging=True, name="b.csv")

    assert staged_result == python


def test_staged_path_is_taken_for_a_clean_taobao_file(db, tmp_path, caplog):
    on_postgresql = db.get_bind().dialect.name == "postgresql"  # SQLite: always Python
    with caplog.at_level(logging.INFO, logger="siyu.orders"):
        counts, _orders, rejects = _import(
            db, taobao_csv(QUIRKY), tmp_path, staging=True, name="c.csv"
        )
    assert "Python path" not in caplog.text
    assert ("took the staged COPY path" in caplog.text) == on_postgresql
    assert counts[0] == "done"
    assert rejects
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="siyu.orders"):
        _import(db, FILES['bare ="…" cells'], tmp_path, staging=True, name="d.csv")
    assert ("takes the Python path: not plain CSV" in caplog.text) == on_postgresql
    assert "took the staged COPY path" not in caplog.text


@pytest.mark.parametrize(
    "name", ["CRLF, minimal quoting, empty last cells", "comma and quote in a title"]
)
def test_staged_path_is_taken_for_plain_csv(db, tmp_path, caplog, name):
    on_postgresql = db.get_bind().dialect.name == "postgresql"  # SQLite: always Python
    assert FILES[name].endswith(b",\r\n") or name != "CRLF, minimal quoting, empty last cells"
    with caplog.at_level(logging.INFO, logger="siyu.orders"):
        counts, _orders, _rejects = _import(db, FILES[name], tmp_path, staging=True, name="e.csv")
    assert "Python path" not in caplog.text
    assert ("took the staged COPY path" in caplog.text) == on_postgresql
    assert counts[0] == "done"


def test_rows_sql_is_unsure_of_are_parsed_by_python_and_imported(db, tmp_path, caplog):
    """A buyer padded with full-width spaces: SQL trims ASCII spaces only, so it hands the row
    to ``Taobao.parse``, which accepts it; the order is imported with the trimmed name, and a
    later line of the same order number still wins over it."""
    on_postgresql = db.get_bind().dialect.name == "postgresql"  # SQLite: always Python
    rows = [
        TbRow("5101", "\u3000tb_宽\u3000", "10"),
        TbRow("5102", "tb_窄", "20"),
        TbRow("5102", "\u3000tb_窄后\u3000", "21"),  # later line, unsure: it wins
        TbRow("5103", "\u3000tb_早\u3000", "30"),
        TbRow("5103", "tb_晚", "31"),  # later line, sure: it wins
    ]
    with caplog.at_level(logging.INFO, logger="siyu.orders"):
        counts, orders, rejects = _import(db, _minimal(rows), tmp_path, staging=True, name="f.csv")
    assert "Python path" not in caplog.text
    assert ("3 row(s) normalised by Python" in caplog.text) == on_postgresql
    assert rejects == []
    assert counts[1:5] == (5, 3, 2, 0)
    assert {no: (o[0], o[1]) for no, o in orders.items()} == {
        "5101": ("tb_宽", 1000),
        "5102": ("tb_窄后", 2100),
        "5103": ("tb_晚", 3100),
    }


@pytest.mark.parametrize("staging", [True, False])
def test_imported_orders_take_the_session_live_when_they_were_paid(db, tmp_path, staging):
    """Without a session option or column, each order joins the session live at its payment
    time (the latest-starting one if two overlap; never a cancelled one or another
    platform's), so per-session statistics count it, on either path."""
    import datetime as dt

    from siyu.live import service as live
    from tests.factories import make_session

    def local(day: int, hour: int, minute: int = 0) -> dt.datetime:
        tz = dt.timezone(dt.timedelta(hours=8))
        return dt.datetime(2026, 11, day, hour, minute, tzinfo=tz)

    tenant = make_tenant(db)
    evening = make_session(db, tenant, theme="美妆节", starts_at=local(11, 19), hours=4)
    flash = make_session(db, tenant, theme="秒杀", starts_at=local(11, 20), hours=1)
    gone = make_session(db, tenant, theme="取消", starts_at=local(11, 0), hours=24)
    live.transition(db, tenant_id=tenant.id, session_id=gone.id, action="cancel")
    make_session(db, tenant, theme="抖音场", starts_at=local(11, 0), hours=24, platform="douyin")
    rows = [
        TbRow("7001", "a", "10", paid_at="2026-11-11 20:01:02"),  # both: the later start wins
        TbRow("7002", "b", "10", paid_at="2026/11/11 22:30"),  # the evening session only
        TbRow("7003", "c", "10", paid_at="2026-11-12 10:00:00"),  # no session then
        TbRow("7004", "d", "0元", status="unpaid", paid_at=""),  # never paid
    ]
    path = tmp_path / "sessions.csv"
    path.write_bytes(taobao_csv(rows))
    imp = service.create_import(
        db, tenant_id=tenant.id, filename=path.name, fmt=None, session_id=None
    )
    db.flush()

    assert flows.run_import(imp.id, path, staging=staging).status == "done"
    db.expire_all()
    placed = dict(
        db.execute(
            select(m.Order.order_no, m.Order.session_id).where(m.Order.tenant_id == tenant.id)
        ).all()
    )
    assert placed == {"7001": flash.id, "7002": evening.id, "7003": None, "7004": None}


def test_the_sweep_drops_staging_tables_an_interrupted_import_left(db):
    """A worker killed mid-import leaves its UNLOGGED staging tables; the hourly sweep drops
    those of imports that finished or failed since, and keeps a running import's."""
    from sqlalchemy import text

    from siyu.orders import staged

    tenant = make_tenant(db)
    finished, running = (
        service.create_import(db, tenant_id=tenant.id, filename=n, fmt=None, session_id=None)
        for n in ("done.csv", "running.csv")
    )
    finished.status, running.status = m.DONE, m.RUNNING
    db.flush()
    if db.get_bind().dialect.name != "postgresql":
        assert staged.sweep() == 0  # SQLite never stages
        return
    running.attempts = 2  # its second run: the first one's tables are a replaced run's
    db.flush()
    names = [
        f"orders_stage_{i}{run}{end}"
        for i, run in ((finished.id, "_1"), (running.id, "_1"), (running.id, "_2"))
        for end in ("", "_n")
    ] + [f"orders_stage_{running.id}", f"orders_stage_{finished.id}_v"]  # named before runs
    for name in names:
        db.execute(text(f"CREATE UNLOGGED TABLE {name} (line bigint)"))

    dropped = staged.sweep()

    left = set(
        db.scalars(text("SELECT tablename FROM pg_tables WHERE tablename = ANY(:n)"), {"n": names})
    )
    assert left == {names[4], names[5], names[6]}  # the running import's current run's
    assert dropped >= 5


def test_an_interrupted_import_without_its_file_fails_with_a_clear_message(db, clock):
    """A running import records progress every few seconds; one that has not moved for a
    quarter of an hour lost its worker. Without its uploaded file to run again (these were
    started by hand, as `siyu orders import` does) it fails (the console stops saying
    "running") with a message to upload again. A moving one, or a finished one, is left alone."""
    from siyu.orders import tasks

    tenant = make_tenant(db)
    stalled, moving, done = (
        service.create_import(db, tenant_id=tenant.id, filename=n, fmt=None, session_id=None)
        for n in ("stalled.csv", "moving.csv", "done.csv")
    )
    for imp in (stalled, moving, done):
        service.start_import(db, imp)
    service.finish_import(db, done, status=m.DONE)
    db.flush()
    clock.advance(minutes=10)
    service.count_batch(db, moving, service.BatchResult(5, 0, 0), position=100)
    db.flush()
    clock.advance(minutes=6)  # stalled: 16 min without progress; moving: 6

    result = tasks.sweep_interrupted.call_local()

    db.expire_all()
    assert (result["failed"], result["resumed"]) == (1, 0)
    assert (stalled.status, moving.status, done.status) == (m.FAILED, m.RUNNING, m.DONE)
    assert "upload the file again" in stalled.error or "重新上传" in stalled.error
    page = service.get_import(db, tenant_id=tenant.id, import_id=stalled.id)
    assert page.finished_at == clock.now


def test_an_order_repeated_across_chunks_and_halves_keeps_its_last_line(db, tmp_path, monkeypatch):
    """Chunks of 4 lines, each upserted in two halves of its order numbers: an order whose
    lines fall in several chunks ends with its last line, counts add up, and the staged
    result equals the Python path's (both halves hold orders: checked on PostgreSQL)."""
    from sqlalchemy import text

    from siyu.orders import staged

    monkeypatch.setattr(staged, "CHUNK", 4)
    numbers = [f"80{n:02d}" for n in range(8)]
    rows = [TbRow(numbers[i % 8], f"tb_{i}", f"{10 + i}") for i in range(29)]
    rows.append(TbRow("", "no-number", "1"))  # a reject in the last chunk
    data = _minimal(rows)

    python = _import(db, data, tmp_path, staging=False, name="a.csv")
    with_halves = _import(db, data, tmp_path, staging=True, name="b.csv")

    assert with_halves == python
    counts, orders, rejects = with_halves
    assert counts[1:5] == (30, 8, 21, 1)
    assert {no: o[1] for no, o in orders.items()} == {
        numbers[i % 8]: (10 + i) * 100 for i in range(21, 29)
    }
    assert [r[:2] for r in rejects] == [(31, "订单编号")]
    if db.get_bind().dialect.name == "postgresql":
        halves = set(
            db.scalars(
                text("SELECT hashtext(n) & 1 FROM unnest(CAST(:n AS text[])) n"), {"n": numbers}
            )
        )
        assert halves == {0, 1}


def test_staged_progress_after_each_chunk_counts_both_halves(db, tmp_path, monkeypatch):
    """Progress is reported after each chunk's two halves committed: counts add up to the
    lines done so far and the bytes read only grow (the Python path: after each batch)."""
    from siyu.orders import staged

    monkeypatch.setattr(staged, "CHUNK", 5)
    tenant = make_tenant(db)
    rows = [TbRow(f"90{i % 7}", f"tb_{i}", "10") for i in range(12)] + [TbRow("", "x", "1")]
    path = tmp_path / "p.csv"
    path.write_bytes(_minimal(rows))
    imp = service.create_import(
        db, tenant_id=tenant.id, filename=path.name, fmt=None, session_id=None
    )
    db.flush()
    seen: list[tuple[int, int, int]] = []

    def progress(i: m.Import) -> None:
        seen.append((i.rows, i.imported + i.updated + i.rejected, i.bytes_read))

    done = flows.run_import(imp.id, path, progress=progress)

    assert (done.rows, done.imported, done.updated, done.rejected) == (13, 7, 5, 1)
    assert all(r == total for r, total, _ in seen)
    assert [b for *_, b in seen] == sorted(b for *_, b in seen)
    if db.get_bind().dialect.name == "postgresql":
        assert [r for r, *_ in seen] == [5, 10, 13]


@pytest.mark.concurrency
def test_an_order_another_import_writes_meanwhile_is_updated_not_refused(committed, tmp_path):
    """Another transaction (another import of the tenant) has inserted one of the file's
    orders and not committed yet: the staged upsert waits for it, then updates that order
    with this file's line; the counts say so, nothing is lost or refused."""
    import threading
    import time

    from sqlalchemy import text

    from siyu.core.db import unit_of_work

    engine = committed.kw["bind"]
    if engine.dialect.name != "postgresql":
        pytest.skip("the staged path is PostgreSQL's")
    path = tmp_path / "race.csv"
    path.write_bytes(_minimal([TbRow("9901", "tb_a", "10"), TbRow("9902", "tb_b", "20")]))
    with unit_of_work() as db:
        tenant_id = make_tenant(db).id
        import_id = service.create_import(
            db, tenant_id=tenant_id, filename=path.name, fmt=None, session_id=None
        ).id
    with engine.connect() as other:
        other.execute(
            text(
                "INSERT INTO orders (tenant_id, platform, order_no, buyer, paid_fen, refund_fen,"
                " status, items, updated_at) VALUES (:t, 'taobao', '9902', 'tb_b', 500, 0,"
                " 'paid', '', now())"
            ),
            {"t": tenant_id},
        )
        done: list[m.Import] = []
        worker = threading.Thread(target=lambda: done.append(flows.run_import(import_id, path)))
        worker.start()
        deadline = time.monotonic() + 20
        # Until the import waits on the uncommitted order (autocommit: pg_stat_activity is
        # read once per transaction).
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watch:
            while not watch.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database()"
                )
            ):
                assert time.monotonic() < deadline
                assert worker.is_alive()
                time.sleep(0.05)
        other.commit()
        worker.join(30)
    [result] = done
    assert (result.status, result.rows, result.imported, result.updated) == ("done", 2, 1, 1)
    with unit_of_work() as db:
        paid = dict(
            db.execute(
                select(m.Order.order_no, m.Order.paid_fen).where(m.Order.tenant_id == tenant_id)
            ).all()
        )
    assert paid == {"9901": 1000, "9902": 2000}

"""The PostgreSQL path of a Taobao import: PostgreSQL parses the file, SQL upserts it.

``flows.run_import`` tries this first for a Taobao CSV on PostgreSQL; ``Refused`` sends the
file down the Python path (``readers`` + ``service.import_batch``) from the start, with nothing
written yet, so behaviour is the same either way:

1. Stage: the file's bytes (GB18030 decoded by Python's own codec and re-encoded as UTF-8, so
   both paths accept the same bytes) go by ``COPY … (FORMAT csv)`` into an UNLOGGED text table
   with a line-number column, in pieces of whole lines, one transaction each (progress).
   Refused when COPY refuses a piece (short or long rows, bad bytes, NUL), when the number of
   physical lines is not rows + 1 (quoted newlines, blank lines, bare CR: line numbers would
   drift), or when a ``"`` follows text inside an unquoted field (``="1"`` written bare:
   Python's ``csv`` keeps such quotes, PostgreSQL's CSV parser does not).
2. Cells with few distinct values (statuses, amounts, times) are parsed once each by the very
   functions the Python path calls (``TAOBAO_STATUS``, ``readers.money_fen``,
   ``Layout.times``) into a lookup table: good values and bad values apart.
3. Chunks of ``CHUNK`` lines, one transaction each: rows holding a bad value or a bad order
   number / buyer (checked in SQL, mirroring ``readers.clean`` and the checks) are fetched
   and parsed by ``Taobao.parse`` itself, which gives the reject's column and reason (or,
   should SQL be stricter than Python, a Record that joins the upsert); the rest are
   normalised in SQL; both go through one ``INSERT … SELECT DISTINCT ON (order number) …
   ON CONFLICT DO UPDATE`` (last line wins), then the chunk's open claims are settled
   (``service.settle_claims``) and the import's counters move.
"""

from __future__ import annotations

import codecs
import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import insert, text
from sqlalchemy.orm import Session

from siyu.core import clock
from siyu.core.db import unit_of_work
from siyu.orders import models as m
from siyu.orders import service
from siyu.orders.readers import TAOBAO_STATUS, Bad, Record, Taobao, clean, money_fen

CHUNK = 100_000  # lines per upsert transaction
PIECE = 16 << 20  # bytes per staging COPY transaction
# ``str.strip()`` removes these; SQL's btrim must remove the same.
WHITESPACE = "".join(c for c in map(chr, range(0x110000)) if c.isspace())
# A quote after text in a field that did not open with one (``="1"`` written bare, ``a"b``).
# A closing quote before a delimiter is let through: a quoted title with a comma must not send
# the file down the slow path (and a stray quote there shifts PostgreSQL's columns: refused).
_STRAY_QUOTE = re.compile(rb'(?:\A|[,\r\n])[^",\r\n]+"(?![,\r\n]|\Z)')
_STATUS, _MONEY, _TIME = 1, 2, 3


class Refused(Exception):  # noqa: N818 - a reason to take the Python path, not an error
    pass


def applies(db: Session, *, fmt: str, encoding: str, layout: object) -> bool:
    return (
        db.get_bind().dialect.name == "postgresql"
        and fmt == "taobao"
        and isinstance(layout, Taobao)
        and encoding in ("gb18030", "utf-8")
    )


@dataclass
class Staged:
    table: str
    layout: Taobao
    rows: int  # data rows, lines 2 … rows + 1

    @property
    def lookup(self) -> str:
        return f"{self.table}_v"

    @property
    def rescued(self) -> str:
        return f"{self.table}_x"


def run(
    import_id: int,
    path: Path,
    *,
    layout: Taobao,
    encoding: str,
    size: int,
    progress: Callable[[m.Import], None] | None,
) -> None:
    """Import the file through staging; raises Refused before anything is written to orders."""
    table = f"orders_stage_{import_id}"
    try:
        _drop(table)
        rows = _stage(table, path, layout=layout, encoding=encoding, import_id=import_id, size=size)
        st = Staged(table, layout, rows)
        _build_lookup(st)
        done = 0
        while done < rows:
            lo, hi = done + 2, min(done + CHUNK, rows) + 1
            with unit_of_work() as db:
                imp = db.get(m.Import, import_id)
                assert imp is not None
                res = _chunk(db, st, imp, lo, hi)
                done = hi - 1
                # The first half of the bar was the staging COPY.
                position = size // 2 + size * done // max(rows, 1) // 2
                service.count_batch(db, imp, res, position=min(position, size))
            if progress is not None:
                progress(imp)
    finally:
        _drop(table)


def _drop(table: str) -> None:
    with unit_of_work() as db:
        for t in (table, f"{table}_v", f"{table}_x"):
            db.execute(text(f"DROP TABLE IF EXISTS {t}"))


# --- 1. staging -------------------------------------------------------------------------------


def _pieces(path: Path, encoding: str) -> Iterator[tuple[bytes, int]]:
    """The file as UTF-8 in pieces of whole lines, with the bytes read so far."""
    decoder = codecs.getincrementaldecoder("gb18030")("strict") if encoding == "gb18030" else None
    carry = b""
    read = 0
    with path.open("rb") as f:
        while True:
            parts = [carry]
            got = len(carry)
            eof = False
            while got < PIECE:
                chunk = f.read(1 << 20)
                read += len(chunk)
                if not chunk:
                    eof = True
                    break
                try:
                    data = decoder.decode(chunk).encode() if decoder else chunk
                except UnicodeDecodeError:
                    raise Refused("undecodable bytes") from None
                parts.append(data)
                got += len(data)
            blob = b"".join(parts)
            if eof:
                if decoder is not None:
                    try:
                        blob += decoder.decode(b"", final=True).encode()
                    except UnicodeDecodeError:
                        raise Refused("undecodable bytes") from None
                if blob:
                    yield blob, read
                return
            cut = blob.rfind(b"\n") + 1
            if cut == 0:
                carry = blob
                continue
            carry = blob[cut:]
            yield blob[:cut], read


def _stage(
    table: str, path: Path, *, layout: Taobao, encoding: str, import_id: int, size: int
) -> int:
    cols = [f"c{i}" for i in range(layout.width)]
    with unit_of_work() as db:
        db.execute(
            text(
                f"CREATE UNLOGGED TABLE {table} ({', '.join(c + ' text' for c in cols)}, "
                # No sequence cache: the pieces may come through different pooled connections, and a
                # cache per connection would leave gaps in the line numbers.
                "line bigint GENERATED ALWAYS AS IDENTITY (START WITH 2))"
            )
        )
    lines = rows = 0
    cr = crlf = 0
    last = b""
    first = True
    for blob, read in _pieces(path, encoding):
        if _STRAY_QUOTE.search(blob):
            raise Refused("a quote inside an unquoted field")
        lines += blob.count(b"\n")
        cr += blob.count(b"\r")
        crlf += blob.count(b"\r\n")
        last = blob[-1:]
        try:
            with unit_of_work() as db:
                raw: Any = db.connection().connection.driver_connection
                with raw.cursor() as cur:
                    with cur.copy(
                        f"COPY {table} ({', '.join(cols)}) FROM STDIN "
                        f"(FORMAT csv, HEADER {'true' if first else 'false'}, ENCODING 'UTF8')"
                    ) as copy:
                        copy.write(blob)
                    rows += cur.rowcount
                imp = db.get(m.Import, import_id)
                assert imp is not None
                imp.bytes_read = min(read, size) // 2
        except psycopg.Error as err:
            raise Refused(f"COPY refused the file: {err}") from None
        first = False
    if cr != crlf:
        raise Refused("bare carriage returns")
    physical = lines + (1 if last and last != b"\n" else 0)
    if rows != physical - 1:
        raise Refused("rows span lines (quoted newlines or blank lines)")
    with unit_of_work() as db:
        db.execute(text(f"CREATE INDEX ON {table} USING brin (line)"))
        db.execute(text(f"ANALYZE {table}"))
    return rows


# --- 2. lookups -------------------------------------------------------------------------------


def _cell(i: int | None) -> str:
    return f"coalesce(s.c{i}, '')" if i is not None else "''"


def _kinds(layout: Taobao) -> list[tuple[int, int]]:
    """(kind, column) of the cells parsed once per distinct value."""
    out = [(_STATUS, layout.i_status), (_MONEY, layout.i_paid)]
    if layout.i_refund:  # Taobao.parse reads 退款金额 only at a truthy position
        out.append((_MONEY, layout.i_refund))
    for i in (layout.i_created, layout.i_paid_at):
        if i is not None:
            out.append((_TIME, i))
    return out


def _build_lookup(st: Staged) -> None:
    layout = st.layout
    values = ", ".join(f"({k}, {_cell(i)})" for k, i in _kinds(layout))
    with unit_of_work() as db:
        db.execute(
            text(
                f"CREATE UNLOGGED TABLE {st.lookup} (kind smallint, raw text, ok boolean, "
                "status text, fen bigint, at timestamptz)"
            )
        )
        conn: Any = db.connection().connection.driver_connection
        distinct = db.execute(
            text(
                f"SELECT DISTINCT v.kind, v.raw FROM {st.table} s, "
                f"LATERAL (VALUES {values}) v(kind, raw)"
            )
        ).all()
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY {st.lookup} (kind, raw, ok, status, fen, at) FROM STDIN") as copy,
        ):
            for kind, raw in distinct:
                copy.write_row((kind, raw, *_parse_value(layout, kind, raw)))
        db.execute(text(f"ANALYZE {st.lookup}"))


def _parse_value(
    layout: Taobao, kind: int, raw: str
) -> tuple[bool, str | None, int | None, dt.datetime | None]:
    """One distinct cell, parsed as Taobao.parse parses it (ok, status, fen, at)."""
    try:
        if kind == _STATUS:
            status = TAOBAO_STATUS.get(clean(raw).replace(",", "，"))
            return status is not None, status, None, None
        if kind == _MONEY:
            return True, None, money_fen(clean(raw), ""), None
        return True, None, None, layout.times(raw, "")
    except Bad:
        return False, None, None, None


# --- 3. chunks --------------------------------------------------------------------------------


def _clean_sql(cell: str) -> str:
    """``readers.clean`` in SQL (``:ws``: Python's whitespace)."""
    x = f"btrim({cell}, :ws)"
    return (
        f"CASE WHEN left({x}, 2) = '=\"' AND right({x}, 1) = '\"' "
        f"THEN btrim(substr({x}, 3, greatest(length({x}) - 3, 0)), :ws) "
        f"WHEN left({x}, 1) = '''' THEN substr({x}, 2) ELSE {x} END"
    )


def _rows_sql(st: Staged, *, good: bool) -> str:
    """The chunk's rows [:lo, :hi] that SQL can normalise (good) or cannot (the rest)."""
    layout = st.layout
    title = (
        f"left({_clean_sql(_cell(layout.i_title))}, 500)" if layout.i_title is not None else "''"
    )
    inner = (
        f"SELECT s.*, {_clean_sql(_cell(layout.i_no))} AS no, "
        f"{_clean_sql(_cell(layout.i_buyer))} AS buyer FROM {st.table} s "
        "WHERE s.line BETWEEN :lo AND :hi OFFSET 0"
    )
    names_ok = "s.no ~ '^[0-9A-Za-z_-]{1,64}$' AND s.buyer <> '' AND char_length(s.buyer) <= 64"
    kinds = _kinds(layout)
    if not good:
        bad = " OR ".join(
            f"{_cell(i)} IN (SELECT raw FROM {st.lookup} WHERE kind = {k} AND NOT ok)"
            for k, i in kinds
        )
        cols = ", ".join(f"s.c{i}" for i in range(layout.width))
        return (
            f"SELECT s.line, {cols} FROM ({inner}) s "
            f"WHERE NOT ({names_ok}) OR {bad} ORDER BY s.line"
        )
    joins, alias = [], {}
    for n, (k, i) in enumerate(kinds):
        a = f"v{n}"
        alias[i] = a
        joins.append(f"JOIN {st.lookup} {a} ON {a}.kind = {k} AND {a}.ok AND {a}.raw = {_cell(i)}")
    refund = f"{alias[layout.i_refund]}.fen" if layout.i_refund else "0"
    created = f"{alias[layout.i_created]}.at" if layout.i_created is not None else "NULL"
    paid_at = f"{alias[layout.i_paid_at]}.at" if layout.i_paid_at is not None else "NULL"
    return (
        f"SELECT s.line, s.no AS order_no, s.buyer, {alias[layout.i_paid]}.fen AS paid_fen, "
        f"{refund} AS refund_fen, {alias[layout.i_status]}.status, "
        f"{created} AS ordered_at, {paid_at} AS paid_at, {title} AS items "
        f"FROM ({inner}) s {' '.join(joins)} WHERE {names_ok}"
    )


_RESCUED_COLS = "line, order_no, buyer, paid_fen, refund_fen, status, ordered_at, paid_at, items"


def _chunk(db: Session, st: Staged, imp: m.Import, lo: int, hi: int) -> service.BatchResult:
    params: dict[str, Any] = {"lo": lo, "hi": hi, "ws": WHITESPACE}
    db.execute(text("SET LOCAL work_mem = '64MB'"))
    # The planner cannot estimate the cleaned order numbers' filter and would nest-loop the
    # lookups (quadratic); every join here is a hash join on a small table.
    db.execute(text("SET LOCAL enable_nestloop = off"))
    rejects: list[dict[str, Any]] = []
    rescued: list[Record] = []
    bad_rows = db.execute(text(_rows_sql(st, good=False)), params).yield_per(5000)
    for line, *cells in bad_rows:
        try:
            rescued.append(st.layout.parse(line, [c or "" for c in cells]))
        except Bad as bad:
            rejects.append(
                {
                    "tenant_id": imp.tenant_id,
                    "import_id": imp.id,
                    "line": line,
                    "column": bad.column[:64],
                    "reason": bad.reason[:200],
                }
            )
            if len(rejects) >= 5000:
                db.execute(insert(m.ImportReject), rejects)
                rejects.clear()
    if rejects:
        db.execute(insert(m.ImportReject), rejects)
    source = _rows_sql(st, good=True)
    if rescued:
        _keep_rescued(db, st, rescued)
        source += (
            f" UNION ALL SELECT {_RESCUED_COLS} FROM {st.rescued} WHERE line BETWEEN :lo AND :hi"
        )
    now = clock.now()
    params |= {"t": imp.tenant_id, "imp": imp.id, "session": imp.session_id, "now": now}
    inserted, valid = db.execute(
        text(
            f"WITH src AS ({source}), "
            "last AS (SELECT DISTINCT ON (order_no) * FROM src ORDER BY order_no, line DESC), "
            "counted AS (SELECT count(*) AS n FROM src), "
            f"up AS (INSERT INTO orders ({', '.join(service.UPSERT_COLUMNS)}) "
            "SELECT :t, 'taobao', order_no, buyer, paid_fen, least(refund_fen, paid_fen), status, "
            "ordered_at, paid_at, items, :session, :imp, :now FROM last "
            f"ON CONFLICT (tenant_id, platform, order_no) DO UPDATE SET {service.UPSERT_SET} "
            "RETURNING (xmax = 0) AS new) "
            "SELECT (SELECT count(*) FROM up WHERE new), (SELECT n FROM counted)"
        ),
        params,
    ).one()
    n_rejected = (hi - lo + 1) - int(valid)
    if service.any_open_claim(db, tenant_id=imp.tenant_id):
        claims = list(
            db.scalars(
                service.select_claims_touched(tenant_id=imp.tenant_id, import_id=imp.id, at=now)
            )
        )
        service.settle_claims(db, tenant_id=imp.tenant_id, claims=claims)
    return service.BatchResult(
        imported=int(inserted), updated=int(valid) - int(inserted), rejected=n_rejected
    )


def _keep_rescued(db: Session, st: Staged, records: list[Record]) -> None:
    db.execute(
        text(
            f"CREATE UNLOGGED TABLE IF NOT EXISTS {st.rescued} (line bigint, order_no text, "
            "buyer text, paid_fen bigint, refund_fen bigint, status text, ordered_at timestamptz, "
            "paid_at timestamptz, items text)"
        )
    )
    conn: Any = db.connection().connection.driver_connection
    with conn.cursor() as cur, cur.copy(f"COPY {st.rescued} ({_RESCUED_COLS}) FROM STDIN") as copy:
        for r in records:
            copy.write_row(
                (
                    r.line,
                    r.order_no,
                    r.buyer,
                    r.paid_fen,
                    r.refund_fen,
                    r.status,
                    r.ordered_at,
                    r.paid_at,
                    r.items,
                )
            )

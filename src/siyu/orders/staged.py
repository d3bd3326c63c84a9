"""The PostgreSQL path of a Taobao import: PostgreSQL parses the file, SQL normalises it.

``flows.run_import`` tries this first for a Taobao CSV on PostgreSQL; ``Refused`` sends the
file down the Python path (``readers`` + ``service.import_batch``) from the start, with nothing
written yet, so behaviour is the same either way:

1. Stage: the file's bytes (GB18030 decoded by Python's own codec and re-encoded as UTF-8, so
   both paths accept the same bytes) go by ``COPY … (FORMAT csv)`` into an UNLOGGED text table
   with a line-number column, in pieces of whole lines, one transaction each (progress).
   Each piece must first match ``_CSV`` in full: lines of fields either plain (no ``"``, CR
   or LF) or quoted with doubled inner quotes, each line ending in CRLF or LF. There Python's
   ``csv`` and PostgreSQL's CSV parser read the same cells; a bare ``="1"`` (Python keeps the
   quotes, PostgreSQL drops them), text after a closing quote, quoted newlines and bare CRs
   are refused. So are pieces COPY refuses (short or long rows, NUL) and files whose
   physical lines are not rows + 1 (blank lines: line numbers would drift). A reader thread
   decodes and checks the next piece while the previous one is COPYed.
2. Cells with few distinct values (statuses, amounts, times) are parsed once each by the very
   functions the Python path calls (``TAOBAO_STATUS``, ``readers.money_fen``,
   ``Layout.times``) into a lookup table: good values and bad values apart.
3. Chunks of ``CHUNK`` lines: one scan normalises the chunk into a narrow table (each text
   cell cleaned once, only the needed columns) with an ``ok`` flag. ``ok`` is conservative:
   besides bad lookup values and bad order numbers / buyers, a cell with whitespace other than
   ASCII spaces at an end is left to Python (``btrim`` trims spaces, ``str.strip`` more). The
   rows not ``ok`` are parsed by ``Taobao.parse`` itself: a reject with its column and reason,
   or a Record that takes the row's place (a buyer padded with a full-width space). Then
   ``service.upsert_normalised`` writes the ``ok`` rows (the last line per order wins) and
   claims are settled.

Two cores: the lookup's scan and each chunk's normalisation run in two halves of the line
range, the upsert in two halves of the order numbers (``hashtext(order_no) & 1``: every line of
an order in one half, so the last still wins), on two connections at once (``_Pair``). Each
upsert half is one transaction with its counts (``service.add_counts``, increments in SQL),
the first half with the chunk's rejects; the next chunk starts when both committed.

Writes: this module writes only its own staging tables; the orders tables are written by
``service`` (``add_rejects``, ``upsert_normalised``, ``after_normalised_upsert``,
``count_batch``).
"""

from __future__ import annotations

import codecs
import contextlib
import datetime as dt
import logging
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from siyu.core import clock
from siyu.core.db import session_factory, unit_of_work
from siyu.orders import models as m
from siyu.orders import service
from siyu.orders.readers import (
    TAOBAO_STATUS,
    Bad,
    Record,
    Reject,
    Taobao,
    ahead,
    clean,
    money_fen,
)

log = logging.getLogger("siyu.orders")
CHUNK = 250_000  # lines per upsert transaction
PIECE = 16 << 20  # bytes per staging COPY transaction
# ``str.strip()`` removes these; SQL's btrim must remove the same.
WHITESPACE = "".join(c for c in map(chr, range(0x110000)) if c.isspace())
# A regex of those but the ASCII space (none is special inside a bracket expression).
WS_RE = "[" + WHITESPACE.replace(" ", "") + "]"
# CSV both parsers read alike: plain fields (no quote, CR or LF) or quoted ones with doubled
# inner quotes (no CR or LF inside); lines end in CRLF or LF (or the file). Possessive, so
# linear without backtracking: one ``fullmatch`` per piece, in C.
_FIELD = rb'(?:"[^"\r\n]*+(?:""[^"\r\n]*+)*+"|[^",\r\n]*+)'
_CSV = re.compile(rb"(?:" + _FIELD + rb"(?:," + _FIELD + rb")*+(?:\r?\n|\Z))*+")
_STATUS, _MONEY, _TIME = 1, 2, 3
_T = TypeVar("_T")


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
    def normalised(self) -> str:
        return f"{self.table}_n"


def run(
    import_id: int,
    path: Path,
    *,
    layout: Taobao,
    encoding: str,
    size: int,
    progress: Callable[[m.Import], None] | None,
    run: int | None = None,
) -> None:
    """Import the file through staging; raises Refused before anything is written to orders."""
    # One set of tables per run: a run the sweep took over (it looked stalled) must not drop
    # or fill the tables of the run that replaced it.
    table = f"orders_stage_{import_id}_{run or 0}"
    with _Pair() as pair:
        try:
            _drop(table)
            rows = _stage(
                table,
                path,
                layout=layout,
                encoding=encoding,
                import_id=import_id,
                size=size,
                run=run,
            )
            st = Staged(table, layout, rows)
            _build_lookup(st, pair)
            with unit_of_work() as db:
                db.execute(
                    text(
                        f"CREATE UNLOGGED TABLE {st.normalised} (line bigint, order_no text, "
                        "buyer text, paid_fen bigint, refund_fen bigint, status text, "
                        "ordered_at timestamptz, paid_at timestamptz, items text, ok boolean)"
                    )
                )
            done = 0
            while done < rows:
                lo, hi = done + 2, min(done + CHUNK, rows) + 1
                done = hi - 1
                # The first half of the bar was the staging COPY.
                position = min(size // 2 + size * done // max(rows, 1) // 2, size)
                _chunk(st, pair, import_id, lo, hi, position=position, run=run)
                if progress is not None:
                    with unit_of_work() as db:
                        imp = db.get(m.Import, import_id)
                        assert imp is not None
                    progress(imp)
        finally:
            _drop(table)


class _Pair:
    """Runs two halves of a step at once, each in a thread of its own with its own session
    (psycopg releases the GIL while PostgreSQL works: two backends, two cores). Sessions bound
    to one connection (the tests' rolled-back transaction) cannot be shared by two threads:
    there the halves run one after the other, in the caller's thread."""

    def __init__(self) -> None:
        self.pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> _Pair:
        if isinstance(session_factory().kw.get("bind"), Engine):
            self.pool = ThreadPoolExecutor(2, thread_name_prefix="orders-import")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def both(self, fn: Callable[[int], _T]) -> tuple[_T, _T]:
        """``fn(0)`` and ``fn(1)``; waits for both, then raises the first error if any."""
        if self.pool is None:
            return fn(0), fn(1)
        futures = [self.pool.submit(fn, h) for h in (0, 1)]
        wait(futures)
        return futures[0].result(), futures[1].result()


def sweep() -> int:
    """Drop the staging tables an interrupted import left behind (its process died mid-run):
    those of imports that are done or failed since, or gone, and those of a run that a later
    run replaced. The current run's tables stay. PostgreSQL only; returns the tables dropped.
    (Tables named before runs were numbered, ``orders_stage_<id>[_v|_n]``, stay while their
    import runs.)"""
    with unit_of_work() as db:
        if db.get_bind().dialect.name != "postgresql":
            return 0
        names = db.scalars(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                "AND tablename ~ '^orders_stage_[0-9]+(_[0-9]+)?(_v|_n)?$'"
            )
        ).all()
        ids = {int(n.split("_")[2]) for n in names}
        running: dict[int, int] = {
            import_id: run
            for import_id, run in db.execute(
                select(m.Import.id, m.Import.attempts).where(
                    m.Import.id.in_(ids), m.Import.status == m.RUNNING
                )
            )
        }

        def current(name: str) -> bool:
            parts = name.split("_")
            import_id, run = int(parts[2]), parts[3] if len(parts) > 3 else ""
            if import_id not in running:
                return False
            return not run.isdigit() or int(run) == running[import_id]

        stale = [n for n in names if not current(n)]
        for name in stale:
            db.execute(text(f'DROP TABLE IF EXISTS "{name}"'))
    if stale:
        log.info("orders import: dropped %d leftover staging table(s)", len(stale))
    return len(stale)


def _drop(table: str) -> None:
    with unit_of_work() as db:
        for t in (table, f"{table}_v", f"{table}_n"):
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


def _checked(pieces: Iterator[tuple[bytes, int]]) -> Iterator[tuple[bytes, int]]:
    for blob, read in pieces:
        if _CSV.fullmatch(blob) is None:
            raise Refused("not plain CSV (a quote inside an unquoted field, a CR, a newline)")
        yield blob, read


def _stage(
    table: str,
    path: Path,
    *,
    layout: Taobao,
    encoding: str,
    import_id: int,
    size: int,
    run: int | None,
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
    last = b""
    first = True
    # closing: a refused piece stops the reader thread now, not when garbage is collected.
    with contextlib.closing(ahead(_checked(_pieces(path, encoding)))) as pieces:
        for blob, read in pieces:
            lines += blob.count(b"\n")
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
                    imp = service.running_import(db, import_id, run)
                    imp.bytes_read = min(read, size) // 2
            except psycopg.Error as err:
                raise Refused(f"COPY refused the file: {err}") from None
            first = False
    physical = lines + (1 if last and last != b"\n" else 0)
    if rows != physical - 1:
        raise Refused("rows span lines (quoted newlines or blank lines)")
    with unit_of_work() as db:
        db.execute(text(f"CREATE INDEX ON {table} USING brin (line)"))
        # The plans need the row count and the lines' range, not fine histograms of every
        # text column: a tenth of the default sample (0.6 s -> 0.04 s for 200,000 rows).
        db.execute(text("SET LOCAL default_statistics_target = 10"))
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


def _build_lookup(st: Staged, pair: _Pair) -> None:
    layout = st.layout
    # One GROUP BY per column (a hash of its distinct values) is three times cheaper than one
    # DISTINCT over a LATERAL VALUES row per cell; the two money columns may share values,
    # which the set union below removes.
    distinct_sql = " UNION ALL ".join(
        f"SELECT {k}, {_cell(i)} FROM {st.table} s WHERE s.line BETWEEN :lo AND :hi GROUP BY 2"
        for k, i in _kinds(layout)
    )
    with unit_of_work() as db:
        db.execute(
            text(
                f"CREATE UNLOGGED TABLE {st.lookup} (kind smallint, raw text, ok boolean, "
                "status text, fen bigint, at timestamptz)"
            )
        )
    mid = (st.rows + 3) // 2

    def distinct(h: int) -> set[tuple[int, str]]:
        lo, hi = (2, mid) if h == 0 else (mid + 1, st.rows + 1)
        with unit_of_work() as db:
            db.execute(text("SET LOCAL work_mem = '64MB'"))
            return {
                (kind, raw) for kind, raw in db.execute(text(distinct_sql), {"lo": lo, "hi": hi})
            }

    first, second = pair.both(distinct)
    with unit_of_work() as db:
        conn: Any = db.connection().connection.driver_connection
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY {st.lookup} (kind, raw, ok, status, fen, at) FROM STDIN") as copy,
        ):
            for kind, raw in first | second:
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


def _ends_ws(x: str) -> str:
    """SQL: ``x`` is not empty and starts or ends with a character Python calls whitespace."""
    return f"({x} <> '' AND (strpos(:ws, left({x}, 1)) > 0 OR strpos(:ws, right({x}, 1)) > 0))"


def _clean_sql(y: str) -> str:
    """``readers.clean`` in SQL of ``y``, a cell with its ASCII spaces trimmed. Equal to
    Python's unless ``_ends_ws`` of ``y`` or of the result (``str.strip`` trims more)."""
    return (
        f"CASE WHEN left({y}, 2) = '=\"' AND right({y}, 1) = '\"' "
        f"THEN btrim(substr({y}, 3, greatest(length({y}) - 3, 0)), ' ') "
        f"WHEN left({y}, 1) = '''' THEN substr({y}, 2) ELSE {y} END"
    )


def _normalise_sql(st: Staged) -> str:
    """One scan of lines [:lo, :hi] into the chunk table: cleaned values and ``ok``.
    Nested ``OFFSET 0`` subqueries keep PostgreSQL from inlining (and recomputing) a cell."""
    layout = st.layout
    text_cells = {"no": layout.i_no, "buyer": layout.i_buyer, "title": layout.i_title}
    kinds = _kinds(layout)
    carried = sorted({i for _, i in kinds})
    trimmed = ", ".join(
        f"btrim({_cell(i)}, ' ') AS y_{n}" if i is not None else f"'' AS y_{n}"
        for n, i in text_cells.items()
    )
    raw = ", ".join(f"{_cell(i)} AS c{i}" for i in carried)
    cleaned = ", ".join(f"{_clean_sql(f'y_{n}')} AS {n}" for n in text_cells)
    joins, alias = [], {}
    for n, (k, i) in enumerate(kinds):
        a = f"v{n}"
        alias[i] = a
        joins.append(f"JOIN {st.lookup} {a} ON {a}.kind = {k} AND {a}.raw = s.c{i}")
    refund = f"{alias[layout.i_refund]}.fen" if layout.i_refund else "0"
    created = f"{alias[layout.i_created]}.at" if layout.i_created is not None else "NULL"
    paid_at = f"{alias[layout.i_paid_at]}.at" if layout.i_paid_at is not None else "NULL"
    # Rare whitespace anywhere in the (space-trimmed) text cells: only then the exact test at
    # their ends (cleaned values are substrings of them); one regex per row otherwise.
    any_ws = " || ".join(f"s.y_{n}" for n in text_cells)
    ends_ws = " OR ".join(f"{_ends_ws(f's.y_{n}')} OR {_ends_ws(f's.{n}')}" for n in text_cells)
    ok = " AND ".join(
        [
            # readers._ORDER_NO without a bounded repeat, which PostgreSQL's regex runs slowly.
            "s.no <> ''",
            "octet_length(s.no) <= 64",
            "s.no !~ '[^0-9A-Za-z_-]'",
            "s.buyer <> ''",
            "char_length(s.buyer) <= 64",
            f"CASE WHEN ({any_ws}) ~ :ws_re THEN NOT ({ends_ws}) ELSE true END",
            *(f"{a}.ok" for a in alias.values()),
        ]
    )
    return (
        f"INSERT INTO {st.normalised} (line, order_no, buyer, paid_fen, refund_fen, status, "
        "ordered_at, paid_at, items, ok) "
        f"SELECT s.line, left(s.no, 64), left(s.buyer, 64), {alias[layout.i_paid]}.fen, "
        f"{refund}, {alias[layout.i_status]}.status, {created}, {paid_at}, left(s.title, 500), "
        f"{ok} FROM (SELECT t.*, {cleaned} FROM (SELECT s.line, {raw}, {trimmed} "
        f"FROM {st.table} s WHERE s.line BETWEEN :lo AND :hi OFFSET 0) t OFFSET 0) s "
        f"{' '.join(joins)}"
    )


def _tune(db: Session) -> None:
    db.execute(text("SET LOCAL work_mem = '64MB'"))
    # The planner cannot estimate the cleaned values' filters and would nest-loop the lookups
    # (quadratic); every join here is a hash join on a small table.
    db.execute(text("SET LOCAL enable_nestloop = off"))


def _chunk(
    st: Staged, pair: _Pair, import_id: int, lo: int, hi: int, *, position: int, run: int | None
) -> None:
    """Lines [lo, hi]: normalised in two halves of the line range at once; the rows SQL is
    unsure of parsed by Python; then upserted in two halves of the order numbers at once
    (``upsert_normalised``'s ``half``), each half one transaction with its rows' counts and
    claims, the first half with the chunk's rejects too. The next chunk starts once both
    halves committed: a later line of an order is written after an earlier one."""
    with unit_of_work() as db:
        db.execute(text(f"TRUNCATE {st.normalised}"))
    mid = (lo + hi) // 2

    def normalise(h: int) -> None:
        with unit_of_work() as db:
            _tune(db)
            a, b = (lo, mid) if h == 0 else (mid + 1, hi)
            db.execute(
                text(_normalise_sql(st)), {"lo": a, "hi": b, "ws": WHITESPACE, "ws_re": WS_RE}
            )

    pair.both(normalise)
    with unit_of_work() as db:
        rejects = _settle_odd(db, st)
    now = clock.now()

    def upsert(h: int) -> None:
        # One microsecond apart: each half settles the claims of its own orders only
        # (``select_claims_touched`` finds them by import and ``updated_at``).
        at = now + dt.timedelta(microseconds=h)
        with unit_of_work() as db:
            _tune(db)
            imp = db.get(m.Import, import_id)
            assert imp is not None
            mine = rejects if h == 0 else []
            service.add_rejects(db, tenant_id=imp.tenant_id, import_id=import_id, rejects=mine)
            inserted, valid = service.upsert_normalised(
                db, table=st.normalised, lo=lo, hi=hi, imp=imp, now=at, half=h
            )
            res = service.BatchResult(
                imported=inserted, updated=valid - inserted, rejected=len(mine)
            )
            # The import's row lock, held to commit, also takes the halves' claims one after
            # the other: they may share members' accounts.
            service.add_counts(db, import_id=import_id, res=res, position=position, run=run)
            service.after_normalised_upsert(db, imp=imp, at=at)

    pair.both(upsert)


def _settle_odd(db: Session, st: Staged) -> list[Reject]:
    """The chunk's rows not ``ok`` go through ``Taobao.parse``: returns the rejects; a row it
    parses (SQL was only unsure: whitespace Python trims) takes its place as ``ok``."""
    odd = list(db.scalars(text(f"SELECT line FROM {st.normalised} WHERE NOT ok ORDER BY line")))
    rejects: list[Reject] = []
    rescued: list[Record] = []
    cols = ", ".join(f"c{i}" for i in range(st.layout.width))
    for start in range(0, len(odd), 5000):
        lines = odd[start : start + 5000]
        cells = db.execute(
            text(f"SELECT line, {cols} FROM {st.table} WHERE line = ANY(:lines) ORDER BY line"),
            {"lines": lines},
        )
        for line, *row in cells:
            try:
                rescued.append(st.layout.parse(line, [c or "" for c in row]))
            except Bad as bad:
                rejects.append(Reject(line, bad.column, bad.reason))
    if rescued:
        log.info("orders import: %d row(s) normalised by Python", len(rescued))
        db.execute(
            text(f"DELETE FROM {st.normalised} WHERE line = ANY(:lines)"),
            {"lines": [r.line for r in rescued]},
        )
        conn: Any = db.connection().connection.driver_connection
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY {st.normalised} ({_NORMALISED_COLS}) FROM STDIN") as copy,
        ):
            for r in rescued:
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
                        True,
                    )
                )
    return rejects


_NORMALISED_COLS = (
    "line, order_no, buyer, paid_fen, refund_fen, status, ordered_at, paid_at, items, ok"
)

"""Order import throughput on PostgreSQL beside a raw COPY of the same file, plus peak memory.

    .venv/bin/python benchmarks/order_import.py [--rows 1000000] [--pg-url URL]
    .venv/bin/python benchmarks/order_import.py --rows 200000 --profile /tmp/import.html

1. Writes a generated Taobao 订单报表 export (GB18030, every cell quoted, ``="…"`` order numbers,
   ``'`` phones, full-width-comma statuses, every 7th time re-saved by Excel) of ``--rows`` rows
   to a temporary file (``tests/orders/samples.py::many_taobao_rows``).
2. Baselines, both ``COPY … FROM STDIN``: (a) the file itself (``FORMAT csv, HEADER, ENCODING
   'GB18030'``) into a table of its 16 columns as text — PostgreSQL's own parser, nothing
   stored the way an order is; (b) the same rows as orders (normalised beforehand, untimed, by
   siyu's reader) into a table equivalent to ``orders`` — ``LIKE orders INCLUDING ALL`` plus its
   foreign keys, so the same unique and secondary indexes and constraint checks. (b) is the
   baseline of the bar: what storing these rows costs the database at the very least; (a)
   is printed beside it.
3. The import: ``siyu.orders.flows.run_import`` on the same file, in a child process (its peak
   RSS is read from ``getrusage(RUSAGE_CHILDREN)``): detection, then ``orders.staged``: the
   file COPYed into an unlogged text staging table (the next piece decoded meanwhile),
   validated and normalised in SQL, then per 250,000 lines two ``INSERT … ON CONFLICT DO
   UPDATE`` transactions at once (two halves of the order numbers, two connections), claims
   settled per half.

Prints rows/s of both, the ratio, and the child's peak memory; the target is ≥ 50% of COPY's
rows/s and < 300 MB (``VERDICT`` line; exit 1 when missed). A fresh database
``siyu_bench_orders_<random>`` is created and dropped.
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_PG = os.environ.get(
    "SIYU_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def write_file(path: Path, rows: int) -> None:
    import csv
    import io

    from tests.orders.samples import TAOBAO_HEADER, many_taobao_rows

    with path.open("wb") as out:
        buf = io.StringIO()
        w = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        w.writerow(TAOBAO_HEADER)
        for n, row in enumerate(many_taobao_rows(rows), 1):
            w.writerow(row)
            if n % 20000 == 0:
                out.write(buf.getvalue().encode("gb18030"))
                buf.seek(0)
                buf.truncate()
        out.write(buf.getvalue().encode("gb18030"))


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def checkpoint(admin: str) -> None:
    """Each timed run starts with the WAL of the one before flushed: without it the import,
    which runs after both COPYs, paid for the checkpoint their 2M rows of WAL set off."""
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def raw_copy(url: str, path: Path) -> float:
    from tests.orders.samples import TAOBAO_HEADER

    cols = ", ".join(f"c{i} text" for i in range(len(TAOBAO_HEADER)))
    with psycopg.connect(libpq(url)) as conn:
        conn.execute(f"CREATE TABLE copy_baseline ({cols})")
        conn.commit()
        started = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY copy_baseline FROM STDIN (FORMAT csv, HEADER, ENCODING 'GB18030')"
            ) as cp,
            path.open("rb") as f,
        ):
            while chunk := f.read(1 << 20):
                cp.write(chunk)
        conn.commit()
        return time.perf_counter() - started


def write_normalised(src: Path, dst: Path) -> int:
    """The file's orders as the import stores them (orders' columns, typed, one per order),
    as a UTF-8 CSV for COPY: read by siyu's own reader, outside any timing."""
    import csv

    from siyu.orders.readers import Record, open_source

    source = open_source(src, tz="Asia/Shanghai")
    n = 0
    with dst.open("w", newline="", encoding="utf-8") as out:
        w = csv.writer(out)
        for r in source.rows:
            if not isinstance(r, Record):
                continue
            w.writerow(
                [
                    TENANT_ID,
                    r.platform,
                    r.order_no,
                    r.buyer,
                    r.paid_fen,
                    r.refund_fen,
                    r.status,
                    r.ordered_at.isoformat() if r.ordered_at else "",
                    r.paid_at.isoformat() if r.paid_at else "",
                    r.items,
                    "",
                    "",
                    "2026-11-27T00:00:00+00:00",
                ]
            )
            n += 1
    source.close()
    return n


TENANT_ID = 1
ORDER_COLUMNS = (
    "tenant_id, platform, order_no, buyer, paid_fen, refund_fen, status, ordered_at, paid_at, "
    "items, session_id, import_id, updated_at"
)


def equivalent_copy(url: str, path: Path) -> float:
    """COPY of the normalised orders into ``orders_copy``: a table built LIKE ``orders`` with its
    defaults, constraints and indexes (unique (tenant, platform, order no), the session index,
    the primary key's sequence) and its foreign keys, so it costs what the import's target
    costs to fill: the database's own floor for storing these rows."""
    with psycopg.connect(libpq(url)) as conn:
        conn.execute(
            "INSERT INTO tenants (id, slug, name, timezone, settings, created_at) VALUES "
            "(%s, 'copy-baseline', 'COPY baseline', 'Asia/Shanghai', '{}', now())",
            (TENANT_ID,),
        )
        conn.execute("CREATE TABLE orders_copy (LIKE orders INCLUDING ALL)")
        conn.execute(
            "ALTER TABLE orders_copy ADD FOREIGN KEY (tenant_id) REFERENCES tenants (id), "
            "ADD FOREIGN KEY (import_id) REFERENCES orders_imports (id)"
        )
        conn.commit()
        started = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY orders_copy ({ORDER_COLUMNS}) FROM STDIN (FORMAT csv)") as cp,
            path.open("rb") as f,
        ):
            while chunk := f.read(1 << 20):
                cp.write(chunk)
        conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE orders_copy")
        conn.execute("DELETE FROM tenants WHERE id = %s", (TENANT_ID,))
        conn.commit()
        return elapsed


def child(url: str, path: Path, profile: str | None) -> None:
    """Run the import in this (child) process; print seconds and counts."""
    os.environ["SIYU_DATABASE_URL"] = url
    from siyu.core import db as core_db
    from siyu.orders import flows, service
    from siyu.tenants import service as tenants

    core_db.configure(core_db.make_engine(url))
    with core_db.unit_of_work() as db:
        tenant = tenants.create_tenant(db, slug=f"bench-{secrets.token_hex(3)}", name="Bench")
        imp = service.create_import(
            db, tenant_id=tenant.id, filename=path.name, fmt=None, session_id=None
        )
        import_id = imp.id
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler()
        profiler.start()
    started = time.perf_counter()
    result = flows.run_import(import_id, path)
    elapsed = time.perf_counter() - started
    if profiler is not None:
        profiler.stop()
        out = profiler.output_text(unicode=True) if profile.endswith(".txt") else None
        Path(profile).write_text(out or profiler.output_html())
    print(
        f"RESULT {elapsed:.3f} {result.rows} {result.imported} {result.updated} {result.rejected}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--pg-url", default=DEFAULT_PG)
    ap.add_argument(
        "--profile", help="write a pyinstrument profile of the import here (.txt: text, else HTML)"
    )
    ap.add_argument("--child", nargs=2, metavar=("URL", "FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), args.profile)
        return 0

    from siyu.core.migrate import upgrade

    name = f"siyu_bench_orders_{secrets.token_hex(4)}"
    admin = libpq(args.pg_url)
    url = str(make_url(args.pg_url).set(database=name).render_as_string(hide_password=False))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        upgrade("head", url=url)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "ExportOrderList.csv"
            t = time.perf_counter()
            write_file(path, args.rows)
            size = path.stat().st_size
            print(
                f"file: {args.rows:,} rows, {size / 1e6:.0f} MB GB18030 "
                f"(written in {time.perf_counter() - t:.1f} s)"
            )
            checkpoint(admin)
            copy_s = raw_copy(url, path)
            normalised = Path(tmp) / "orders.csv"
            orders_n = write_normalised(path, normalised)
            checkpoint(admin)
            equiv_s = equivalent_copy(url, normalised)
            checkpoint(admin)
            cmd = [sys.executable, __file__, "--child", url, str(path)]
            if args.profile:
                cmd += ["--profile", args.profile]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                print(out.stdout, out.stderr)
                return 1
            line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT"))
            _, secs, rows, imported, updated, rejected = line.split()
            import_s = float(secs)
            peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    copy_rps = args.rows / copy_s
    equiv_rps = args.rows / equiv_s
    import_rps = args.rows / import_s
    ratio = import_rps / equiv_rps
    print(f"COPY of the file into 16 text columns: {copy_s:7.2f} s  {copy_rps:>10,.0f} rows/s")
    print(
        f"COPY of its {orders_n:,} orders into a table equivalent to orders (the baseline): "
        f"{equiv_s:7.2f} s  {equiv_rps:>10,.0f} rows/s"
    )
    print(
        f"siyu import:         {import_s:7.2f} s  {import_rps:>10,.0f} rows/s  "
        f"({ratio:.0%} of the equivalent table's COPY, {import_rps / copy_rps:.0%} of the "
        f"text-column COPY)  rows={rows} imported={imported} updated={updated} "
        f"rejected={rejected}"
    )
    print(f"import peak memory (child max RSS): {peak_mb:.0f} MB")
    ok = ratio >= 0.5 and peak_mb < 300 and int(rows) == args.rows
    print(
        f"VERDICT: {'PASS' if ok else 'FAIL'} (target ≥ 50% of the rows/s of a COPY into an "
        "equivalent table, < 300 MB)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

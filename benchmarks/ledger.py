"""Ledger write throughput beside pgbench: postings/s with 1 and 8 clients.

    .venv/bin/python benchmarks/ledger.py [--seconds 10] [--members 1000] [--clients 1,8]
    .venv/bin/python benchmarks/ledger.py --profile [--profile-html out.html]

What one "posting" is: one committed transaction through the real service layer as the API
and the CLI post, ``ledger.alone(ledger.grant, ...)`` or ``ledger.spend`` for a random member
of one tenant, with a fresh idempotency key. Each client alternates grant 10 / spend 7, so half
the postings take the spend path (lots, expiry check) and half the grant path (new lot). Each
posting writes a journal entry and two posting rows.

Clients run as the service runs them: the API serves concurrent requests on threads of one web
process per core (``siyu serve --workers N``), so by default the clients are threads spread over
one process per CPU (``spawn``), each process with its own engine and each client with its own
connection. The same clients as one single-threaded process each (``--processes 0``, the shape
earlier sessions measured) are run and printed beside them: on two cores that shape's eight
interpreters spend about 0.4 ms of CPU a posting against 0.25 ms, where the same code costs
0.19 ms with one client: the difference is eight processes sharing two cores (context switches,
cold caches), not the ledger (benchmarks/README.md). The verdict is on the first shape
listed in ``--processes``. A run is a warm-up, then a fixed measured window; a client stops
starting postings when the window closes. Postings/s counts postings started inside the window;
latency is per committed transaction, wall clock, seen by the client.

The reference is ``pgbench -N`` (simple update: UPDATE accounts, SELECT, INSERT history in one
transaction) on its own scratch database, run with the same client count and duration just
before the PostgreSQL run it is compared with. SQLite has no pgbench; its rows are compared
with the PostgreSQL pgbench figure, as a reference only. Target: PostgreSQL at 8 clients
reaches 50% of pgbench's TPS; the script exits 1 when it does not (or when a posting failed
or ``ledger.verify`` finds a problem afterwards). After the ledger runs, pgbench also drives the
ledger's own PostgreSQL posting functions (one call in autocommit) with the same clients: the
same server work with a client that costs almost nothing, i.e. the ceiling for the ledger on
that server (``--no-functions`` skips it).

Every database is created here and dropped at the end: a temporary SQLite file and
``siyu_bench_<random>`` / ``siyu_pgbench_<random>`` on the PostgreSQL server of ``--pg-url``.

``--profile`` runs one PostgreSQL client in this process under pyinstrument instead, counts the
statements each grant and spend sends (SQLAlchemy ``before_cursor_execute``) and the network
round trips on the wire (libpq trace: one ``ReadyForQuery`` per round trip).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url

from siyu.core import db as core_db
from siyu.core.migrate import upgrade
from siyu.ledger import service as ledger
from siyu.members import service as members
from siyu.models import import_all
from siyu.tenants import service as tenants

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TARGET = 0.5  # of pgbench -N TPS, PostgreSQL, 8 clients
SEED_POINTS = 1_000_000  # per member: spends of 7 never run a wallet dry
GRANT, SPEND = 10, 7


# --- databases --------------------------------------------------------------------------------


@contextmanager
def pg_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database; yields its name and drops it afterwards, whatever happens."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with _admin(admin_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with _admin(admin_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _admin(admin_url: str) -> Iterator[psycopg.Connection[Any]]:
    u = make_url(admin_url)
    with psycopg.connect(
        host=u.host,
        port=u.port or 5432,
        user=u.username,
        password=u.password,
        dbname=u.database or "postgres",
        autocommit=True,
    ) as conn:
        yield conn


def db_url(admin_url: str, name: str) -> str:
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def seed(url: str, n_members: int) -> tuple[int, list[int]]:
    """Migrate, then create one tenant and ``n_members`` members with points, via the services."""
    upgrade("head", url=url)
    engine = core_db.make_engine(url)
    core_db.configure(engine)
    try:
        with core_db.unit_of_work() as db:
            tenant_id = tenants.create_tenant(db, slug="bench", name="Benchmark").id
        ids: list[int] = []
        for start in range(0, n_members, 250):
            with core_db.unit_of_work() as db:
                for i in range(start, min(start + 250, n_members)):
                    member = members.create_member(
                        db, tenant_id=tenant_id, openid=f"bench-{i}", nickname=f"fan {i}"
                    )
                    ledger.grant(
                        db,
                        tenant_id=tenant_id,
                        member_id=member.id,
                        points=SEED_POINTS,
                        reason="seed",
                        idempotency_key=f"seed:{member.id}",
                        actor=ledger.CLI,
                    )
                    ids.append(member.id)
        return tenant_id, ids
    finally:
        core_db.configure(None)
        engine.dispose()


def verify(url: str, tenant_id: int) -> ledger.VerifyReport:
    engine = core_db.make_engine(url)
    core_db.configure(engine)
    try:
        with core_db.unit_of_work() as db:
            return ledger.verify(db, tenant_id=tenant_id)
    finally:
        core_db.configure(None)
        engine.dispose()


# --- one client -------------------------------------------------------------------------------


def post_one(tenant_id: int, member_id: int, key: str, n: int) -> None:
    """One posting, one transaction, as the API and the CLI post: even ``n`` grants, odd ``n``
    spends."""
    posting = ledger.grant if n % 2 == 0 else ledger.spend
    points, reason = (GRANT, "purchase") if n % 2 == 0 else (SPEND, "redeem")
    ledger.alone(
        posting,
        tenant_id=tenant_id,
        member_id=member_id,
        points=points,
        reason=reason,
        idempotency_key=key,
        actor=ledger.JOB,
    )


def count_statements(engine: Engine) -> Callable[[], int]:
    """Statements the engine's connections send, BEGIN/COMMIT and pool pre-pings included.

    On PostgreSQL they are counted at the psycopg cursor, since the ledger's hot path sends
    its one statement straight through psycopg, unseen by SQLAlchemy's cursor events; psycopg
    opens transactions itself and the pool pings outside the cursor events, so those are
    counted from the transaction and pool events (SQLite's BEGIN IMMEDIATE is a cursor execute
    already).
    """
    n = [0]

    def bump(*_: Any, **__: Any) -> None:
        n[0] += 1

    if _is_pg(engine):

        class CountingCursor(psycopg.Cursor[Any]):
            def execute(self, *args: Any, **kw: Any) -> Any:
                n[0] += 1
                return super().execute(*args, **kw)

        def use_counting_cursor(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.cursor_factory = CountingCursor

        event.listen(engine, "connect", use_counting_cursor)
        event.listen(engine, "begin", bump)
    else:
        event.listen(engine, "before_cursor_execute", bump)
    event.listen(engine, "commit", bump)
    event.listen(engine, "rollback", bump)
    if getattr(engine.pool, "_pre_ping", False):
        event.listen(engine.pool, "checkout", bump)
    return lambda: n[0]


@dataclass
class ClientResult:
    postings: int = 0
    statements: int = 0
    client_cpu: float = 0.0  # seconds of this process's CPU in the measured window
    server_cpu: float | None = None  # seconds of its PostgreSQL backend's CPU, if local
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""


def _backend_cpu(pid: int | None) -> float | None:
    """CPU seconds of a local process (the client's PostgreSQL backend); None if not visible."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    utime, stime = stat.rsplit(")", 1)[1].split()[11:13]
    return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")


def client(
    url: str,
    tenant_id: int,
    member_ids: list[int],
    run: str,
    no: int,
    threads: int,
    warmup: float,
    seconds: float,
    barrier: Any,
    out: Any,
) -> None:
    """A benchmark client process: its own engine and ``threads`` clients on threads of it,
    each posting one per transaction on a connection of its own until time."""
    res = ClientResult()
    pids: list[int] = []
    try:
        import_all()
        pg = make_url(url).get_backend_name() == "postgresql"
        engine = core_db.make_engine(url, **({"pool_size": threads} if pg else {}))
        core_db.configure(engine)
        statements = count_statements(engine)  # threads may rarely lose a count: SQL/tx only
        if pg:
            event.listen(engine, "connect", lambda conn, _rec: pids.append(conn.info.backend_pid))
        held = [engine.connect() for _ in range(threads)]  # connect before the clock starts
        for conn in held:
            conn.close()
    except Exception as exc:
        barrier.abort()  # the others, and the parent, stop waiting for this client
        res.errors, res.first_error = 1, f"{type(exc).__name__}: {exc}"[:300]
        out.put(res)
        return

    def snapshot() -> tuple[int, float, float | None]:
        cpu = [_backend_cpu(pid) for pid in pids]
        db = None if not cpu or None in cpu else sum(c or 0.0 for c in cpu)
        return statements(), time.process_time(), db

    def loop(thread: int, measure_from: float, until: float, mine: ClientResult) -> None:
        rng = random.Random(f"{run}:{no}:{thread}")
        n = 0
        while (start := time.monotonic()) < until:
            measured = start >= measure_from
            key = f"bench:{run}:{no}:{thread}:{n}"
            try:
                post_one(tenant_id, rng.choice(member_ids), key, n)
            except Exception as exc:  # counted and reported: a benchmark that fails must say so
                mine.errors += 1
                mine.first_error = mine.first_error or f"{type(exc).__name__}: {exc}"[:300]
                if mine.errors > 100:
                    break
            else:
                if measured:
                    mine.postings += 1
                    mine.latencies_ms.append((time.monotonic() - start) * 1000)
            n += 1

    try:
        barrier.wait(timeout=300)
        t0 = time.monotonic()
        measure_from, until = t0 + warmup, t0 + warmup + seconds
        parts = [ClientResult() for _ in range(threads)]
        workers = [
            threading.Thread(target=loop, args=(i, measure_from, until, parts[i]))
            for i in range(threads)
        ]
        for w in workers:
            w.start()
        time.sleep(max(0.0, measure_from - time.monotonic()))
        base = snapshot()
        for w in workers:
            w.join()
        end = snapshot()
        for part in parts:
            res.postings += part.postings
            res.latencies_ms += part.latencies_ms
            res.errors += part.errors
            res.first_error = res.first_error or part.first_error
        res.statements, res.client_cpu = end[0] - base[0], end[1] - base[1]
        if end[2] is not None and base[2] is not None:
            res.server_cpu = end[2] - base[2]
        engine.dispose()
    except Exception as exc:
        res.errors += 1
        res.first_error = res.first_error or f"{type(exc).__name__}: {exc}"[:300]
    out.put(res)


def _is_pg(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


@dataclass
class RunResult:
    backend: str
    clients: int
    processes: int
    seconds: float
    postings: int
    statements: int
    client_cpu: float
    server_cpu: float | None
    latencies_ms: list[float]
    errors: int
    first_error: str

    @property
    def rate(self) -> float:
        return self.postings / self.seconds

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def run_clients(
    backend: str,
    url: str,
    tenant_id: int,
    member_ids: list[int],
    n_clients: int,
    warmup: float,
    seconds: float,
    processes: int | None = None,
) -> RunResult:
    """``n_clients`` clients spread over ``processes`` processes as threads (default: one
    process each)."""
    n_procs = min(n_clients, processes or n_clients)
    shares = [n_clients // n_procs + (no < n_clients % n_procs) for no in range(n_procs)]
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(n_procs + 1)
    out = ctx.Queue()
    run = secrets.token_hex(4)
    procs = [
        ctx.Process(
            target=client,
            args=(url, tenant_id, member_ids, run, no, share, warmup, seconds, barrier, out),
            daemon=True,
        )
        for no, share in enumerate(shares)
    ]
    for p in procs:
        p.start()
    results: list[ClientResult] = []
    try:
        try:
            barrier.wait(timeout=300)  # every client connected: start together
        except threading.BrokenBarrierError:
            failed = out.get(timeout=30)
            why = failed.first_error
            raise RuntimeError(f"a {backend} client failed to start: {why}") from None
        for _ in procs:  # drain before join: a full pipe would block the child's exit
            results.append(out.get(timeout=warmup + seconds + 120))
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join()
    return RunResult(
        backend=backend,
        clients=n_clients,
        processes=n_procs,
        seconds=seconds,
        postings=sum(r.postings for r in results),
        statements=sum(r.statements for r in results),
        client_cpu=sum(r.client_cpu for r in results),
        server_cpu=None
        if any(r.server_cpu is None for r in results)
        else sum(r.server_cpu or 0.0 for r in results),
        latencies_ms=[x for r in results for x in r.latencies_ms],
        errors=sum(r.errors for r in results),
        first_error=next((r.first_error for r in results if r.first_error), ""),
    )


# --- pgbench ----------------------------------------------------------------------------------

_TPS = re.compile(
    r"^tps = ([0-9.]+) \((?:without initial connection time|excluding "
    r"connections establishing)\)",
    re.M,
)


def _pgbench_args(admin_url: str) -> list[str]:
    u = make_url(admin_url)
    return ["-h", u.host or "127.0.0.1", "-p", str(u.port or 5432), "-U", u.username or "postgres"]


def pgbench_init(admin_url: str, name: str, scale: int) -> None:
    subprocess.run(
        ["pgbench", "-i", "-q", "-s", str(scale), *_pgbench_args(admin_url), name],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **_pgpassword(admin_url)},
    )


def pgbench_tps(admin_url: str, name: str, n_clients: int, seconds: float) -> float:
    """TPS of ``pgbench -N`` (excluding connection time), same clients and duration."""
    return _pgbench(admin_url, name, ["-N"], n_clients, seconds)


_FUNCTION_SCRIPTS = {
    # The statement the service sends on its PostgreSQL hot path (``ledger.alone``: one posting
    # function call in autocommit), driven by pgbench's C client instead of Python: what the
    # server side alone allows, for the same mix of grants and spends.
    "grant": "\\set m random({lo}, {hi})\n"
    "SELECT id FROM siyu_ledger_grant({tenant}, :m, {grant}, 'purchase', '', '', 'job', '',"
    " 'pgbench-g-' || cast(:client_id as text) || '-' || random(), NULL, true, now());\n",
    "spend": "\\set m random({lo}, {hi})\n"
    "SELECT id FROM siyu_ledger_spend({tenant}, :m, {spend}, 'redeem', '', '', 'job', '',"
    " 'pgbench-s-' || cast(:client_id as text) || '-' || random(), now());\n",
}


def pgbench_functions_tps(
    admin_url: str, name: str, tenant_id: int, member_ids: list[int], n_clients: int, seconds: float
) -> float | None:
    """TPS of pgbench calling the ledger's posting functions, half grants, half spends.

    None when the members' ids are not one range (pgbench picks them with ``random``).
    """
    lo, hi = min(member_ids), max(member_ids)
    if hi - lo + 1 != len(member_ids):
        return None
    with tempfile.TemporaryDirectory(prefix="siyu_pgbench_") as tmp:
        files = []
        for which, script in _FUNCTION_SCRIPTS.items():
            path = Path(tmp) / f"{which}.sql"
            path.write_text(script.format(lo=lo, hi=hi, tenant=tenant_id, grant=GRANT, spend=SPEND))
            files += ["-f", str(path)]
        return _pgbench(admin_url, name, ["-M", "prepared", *files], n_clients, seconds)


def _pgbench(admin_url: str, name: str, script: list[str], n_clients: int, seconds: float) -> float:
    proc = subprocess.run(
        [
            "pgbench",
            *script,
            "-n",
            "-c",
            str(n_clients),
            "-j",
            str(n_clients),
            "-T",
            str(max(1, round(seconds))),
            *_pgbench_args(admin_url),
            name,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        env={**os.environ, **_pgpassword(admin_url)},
    )
    found = _TPS.search(proc.stdout)
    if proc.returncode != 0 or found is None:
        raise RuntimeError(f"pgbench failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    return float(found.group(1))


def _pgpassword(admin_url: str) -> dict[str, str]:
    password = make_url(admin_url).password
    return {"PGPASSWORD": password} if password else {}


# --- the benchmark ----------------------------------------------------------------------------


@dataclass
class Row:
    result: RunResult
    pgbench: float | None
    reference: bool  # pgbench measured on PostgreSQL, shown beside SQLite for scale

    @property
    def ratio(self) -> float | None:
        return self.result.rate / self.pgbench if self.pgbench else None


def _process_counts(clients: int, processes: list[int]) -> list[int]:
    """The process counts to run ``clients`` clients on: each asked for, at most one per client."""
    return list(dict.fromkeys(min(clients, p or clients) for p in processes))


def _shape(res: RunResult) -> str:
    """How the clients ran: ``8×1`` is eight processes of one thread, ``2×4`` two of four."""
    per = -(-res.clients // res.processes)
    return f"{res.processes}×{per}"


def benchmark(args: argparse.Namespace) -> int:
    clients: list[int] = args.clients
    print(
        f"ledger benchmark: {args.seconds:g} s measured after {args.warmup:g} s warm-up, "
        f"{args.members} members, clients {','.join(map(str, clients))}, "
        f"backends {','.join(args.backends)}; {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    rows: list[Row] = []
    pg_tps: dict[int, float] = {}
    fn_tps: dict[int, float] = {}
    problems: list[str] = []

    if "postgresql" in args.backends:
        with (
            pg_database(args.pg_url, "siyu_bench") as name,
            pg_database(args.pg_url, "siyu_pgbench") as bench_name,
        ):
            url = db_url(args.pg_url, name)
            print(f"postgresql: seeding {name} …", flush=True)
            tenant_id, member_ids = seed(url, args.members)
            print(f"postgresql: pgbench -i -s {args.scale} {bench_name} …", flush=True)
            pgbench_init(args.pg_url, bench_name, args.scale)
            for c in clients:
                pg_tps[c] = pgbench_tps(args.pg_url, bench_name, c, args.seconds)
                print(f"  pgbench -N -c {c}: {pg_tps[c]:.0f} tps", flush=True)
                for procs in _process_counts(c, args.processes):
                    res = run_clients(
                        "postgresql",
                        url,
                        tenant_id,
                        member_ids,
                        c,
                        args.warmup,
                        args.seconds,
                        procs,
                    )
                    print(f"  ledger   -c {c} {_shape(res)}: {res.rate:.0f} postings/s", flush=True)
                    rows.append(Row(res, pg_tps[c], reference=False))
            # After the ledger runs, so their databases start alike; verify checks these too.
            for c in clients if args.functions else []:
                tps = pgbench_functions_tps(
                    args.pg_url, name, tenant_id, member_ids, c, args.seconds
                )
                if tps is not None:
                    fn_tps[c] = tps
                    print(f"  pgbench, posting functions -c {c}: {tps:.0f} tps", flush=True)
            problems += _verified("postgresql", url, tenant_id)

    if "sqlite" in args.backends:
        with tempfile.TemporaryDirectory(prefix="siyu_bench_") as tmp:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            print(f"sqlite: seeding {url} …", flush=True)
            tenant_id, member_ids = seed(url, args.members)
            for c in clients:
                for procs in _process_counts(c, args.processes):
                    res = run_clients(
                        "sqlite", url, tenant_id, member_ids, c, args.warmup, args.seconds, procs
                    )
                    print(f"  ledger   -c {c} {_shape(res)}: {res.rate:.0f} postings/s", flush=True)
                    rows.append(Row(res, pg_tps.get(c), reference=True))
            problems += _verified("sqlite", url, tenant_id)

    for row in rows:
        if row.result.errors:
            problems.append(
                f"{row.result.backend} -c {row.result.clients}: "
                f"{row.result.errors} failed postings, first: "
                f"{row.result.first_error}"
            )
    print()
    print(table(rows))
    if any(r.reference and r.pgbench for r in rows):
        print("* SQLite has no pgbench: its ratio is against PostgreSQL's pgbench -N, for scale.")
    print(
        "postings/s: committed grant/spend transactions (alternating) per second. SQL/tx: "
        "statements per posting incl. BEGIN, COMMIT and pool pre-ping (on PostgreSQL, one "
        "network round trip each). app CPU: the client processes' CPU per posting; db CPU: "
        "their PostgreSQL backends' (SQLite runs inside the client)."
    )
    for c, tps in fn_tps.items():
        print(
            f"pgbench driving the posting functions (one call in autocommit; no Python), "
            f"{c} clients: {tps:.0f} tps = {tps / pg_tps[c]:.0%} of pgbench -N: the server-side "
            f"ceiling for the ledger at that client count"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    print()
    for p in problems:
        print(f"PROBLEM: {p}")

    target = next(
        (r for r in rows if r.result.backend == "postgresql" and r.result.clients == 8), None
    )  # the first shape of --processes
    if target is None or target.ratio is None:
        print("VERDICT: target not measured (needs PostgreSQL with 8 clients)")
        return 1 if problems else 0
    verdict = "PASS" if target.ratio >= TARGET else "FAIL"
    print(
        f"VERDICT: {verdict} — PostgreSQL, 8 clients ({_shape(target.result)} processes×"
        f"threads): {target.result.rate:.0f} postings/s = "
        f"{target.ratio:.0%} of pgbench -N {target.pgbench:.0f} tps (target ≥ {TARGET:.0%})"
    )
    return 0 if verdict == "PASS" and not problems else 1


def _verified(backend: str, url: str, tenant_id: int) -> list[str]:
    report = verify(url, tenant_id)
    print(
        f"{backend}: ledger verify {'ok' if report.ok else 'FAILED'} "
        f"({report.entries} entries, {report.lots} lots)",
        flush=True,
    )
    return [f"{backend}: ledger verify: {p}" for p in report.problems[:10]]


def table(rows: list[Row]) -> str:
    head = (
        "backend",
        "clients",
        "procs×threads",
        "postings/s",
        "p50 ms",
        "p99 ms",
        "SQL/tx",
        "app CPU ms/tx",
        "db CPU ms/tx",
        "pgbench TPS",
        "ratio",
    )
    lines = [head]
    for row in rows:
        r = row.result
        star = "*" if row.reference else ""
        lines.append(
            (
                r.backend,
                str(r.clients),
                _shape(r),
                f"{r.rate:.0f}",
                f"{r.pct(0.50):.2f}",
                f"{r.pct(0.99):.2f}",
                f"{r.statements / r.postings:.1f}" if r.postings else "-",
                f"{r.client_cpu / r.postings * 1000:.2f}" if r.postings else "-",
                f"{r.server_cpu / r.postings * 1000:.2f}"
                if r.postings and r.server_cpu is not None
                else "-",
                f"{row.pgbench:.0f}{star}" if row.pgbench else "-",
                f"{row.ratio:.2f}{star}" if row.ratio is not None else "-",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    fmt = [f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths)]
    out = [" | ".join(f.format(v) for f, v in zip(fmt, line, strict=True)) for line in lines]
    out.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(out)


# --- profile ----------------------------------------------------------------------------------


def profile(args: argparse.Namespace) -> int:
    """One PostgreSQL client in-process under pyinstrument, plus statement and round-trip counts."""
    from pyinstrument import Profiler

    with pg_database(args.pg_url, "siyu_bench") as name:
        url = db_url(args.pg_url, name)
        tenant_id, member_ids = seed(url, args.members)
        import_all()
        engine = core_db.make_engine(url)
        core_db.configure(engine)
        try:
            shapes = _statement_shapes(engine)
            rng = random.Random(1)
            n = 0

            def loop(until: float, only: int | None = None) -> int:
                nonlocal n
                done = 0
                while time.monotonic() < until:
                    k = n if only is None else only
                    post_one(tenant_id, rng.choice(member_ids), f"prof:{n}", k)
                    n, done = n + 1, done + 1
                return done

            loop(time.monotonic() + args.warmup)
            in_execute = _time_in_execute(engine)
            with engine.connect() as conn:
                pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            # Unprofiled first: the profiler's own overhead would inflate the CPU figures.
            wall0, cpu0, db0, exec0 = (
                time.perf_counter(),
                time.process_time(),
                _backend_cpu(pid),
                in_execute(),
            )
            done = loop(time.monotonic() + args.seconds)
            wall = time.perf_counter() - wall0
            cpu, db = time.process_time() - cpu0, (_backend_cpu(pid) or 0) - (db0 or 0)
            print(
                f"unprofiled: {done} postings in {wall:.1f} s = {done / wall:.0f}/s, "
                f"{wall / done * 1000:.2f} ms each: client CPU {cpu / done * 1000:.2f} ms, "
                f"PostgreSQL backend CPU {db / done * 1000:.2f} ms; "
                f"{(in_execute() - exec0) / wall:.0%} of wall time inside cursor.execute"
            )
            profiler = Profiler(interval=0.0005)
            with profiler:
                loop(time.monotonic() + args.seconds)
            session = profiler.last_session
            assert session is not None
            root = session.root_frame()
            assert root is not None
            buckets: Counter[str] = Counter()
            _self_time_by_package(root, "other", buckets)
            total = sum(buckets.values())
            print("\nprofiled wall time by package (self time):")
            for package, spent in buckets.most_common():
                print(f"  {spent / total:5.0%}  {package}")
            print(profiler.output_text(unicode=True, color=False, show_all=False))
            flat = profiler.output_text(unicode=True, color=False, flat=True)
            print("top self time:\n" + "\n".join(flat.splitlines()[:30]))
            if args.profile_html:
                Path(args.profile_html).write_text(profiler.output_html())
                print(f"HTML profile: {args.profile_html}")

            for kind, op in ((0, "grant"), (1, "spend")):
                shapes.clear()
                trips = _round_trips(engine, lambda op=kind: loop(time.monotonic() + 1, op))
                per = trips.pop("_postings")
                print(
                    f"\n{op}: {trips['ReadyForQuery'] / per:.1f} round trips per posting "
                    f"on the wire ({per} postings); statements via before_cursor_execute:"
                )
                for shape, count in shapes.most_common():
                    print(f"  {count / per:5.2f}  {shape}")
                print(
                    "  wire messages per posting: "
                    + ", ".join(f"{k} {v / per:.1f}" for k, v in sorted(trips.items()))
                )
        finally:
            core_db.configure(None)
            engine.dispose()
    return 0


def _self_time_by_package(frame: Any, inherited: str, buckets: Counter[str]) -> None:
    path = frame.file_path or ""
    package = next(
        (name for key, name in _PACKAGES if key in path),
        inherited if not path or path.startswith("<") else "other",
    )
    buckets[package] += frame.time - sum(child.time for child in frame.children)
    for child in frame.children:
        _self_time_by_package(child, package, buckets)


_PACKAGES = (
    ("/psycopg", "psycopg (driver, and waiting for the server)"),
    ("/sqlalchemy/", "SQLAlchemy (ORM, Core, compile, events)"),
    ("/siyu/", "siyu"),
    ("/benchmarks/", "benchmark loop"),
)


_SHAPE = re.compile(
    r"^\s*(SELECT|INSERT INTO|UPDATE|DELETE FROM|SAVEPOINT|RELEASE SAVEPOINT|"
    r"ROLLBACK TO SAVEPOINT|BEGIN|COMMIT)\b(?:.*?\bFROM\s+(\w+))?\s*(\w+)?",
    re.S | re.I,
)


def _statement_shapes(engine: Engine) -> Counter[str]:
    shapes: Counter[str] = Counter()

    @event.listens_for(engine, "before_cursor_execute")
    def _shape(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        m = _SHAPE.match(statement)
        if m is None:
            shapes[statement[:40]] += 1
            return
        verb, from_table, word = m.groups()
        if verb.upper() == "SELECT":
            lock = " FOR UPDATE" if "FOR UPDATE" in statement else ""
            shapes[f"SELECT … FROM {from_table or word}{lock}"] += 1
        elif "SAVEPOINT" in verb.upper():
            shapes[verb.upper()] += 1
        else:
            shapes[f"{verb.upper()} {word}"] += 1

    return shapes


def _time_in_execute(engine: Engine) -> Callable[[], float]:
    total = [0.0]

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Any, *_: Any) -> None:
        conn.info["t"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn: Any, *_: Any) -> None:
        total[0] += time.perf_counter() - conn.info.pop("t", time.perf_counter())

    return lambda: total[0]


def _round_trips(engine: Engine, work: Callable[[], int]) -> Counter[str]:
    """Frontend/backend messages while ``work`` runs on the pool's one connection (libpq trace).

    Every round trip ends with one ReadyForQuery from the server.
    """
    with tempfile.NamedTemporaryFile("w+", suffix=".trace") as f:
        with engine.connect() as conn:
            pgconn = conn.connection.dbapi_connection.pgconn  # type: ignore[union-attr]
        pgconn.trace(f.fileno())
        pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            done = work()
        finally:
            pgconn.untrace()  # flushes the trace
        pool: Any = engine.pool
        if pool.checkedout() or pool.checkedin() != 1:
            raise RuntimeError("expected the pool's one connection to carry every posting")
        f.seek(0)
        messages: Counter[str] = Counter()
        for line in f:
            parts = line.split("\t")
            if len(parts) >= 3:
                messages[parts[2].split()[0] if parts[2].strip() else "?"] += 1
    counts = Counter(
        {k: v for k, v in messages.items() if k in ("ReadyForQuery", "Query", "Parse", "Sync")}
    )
    counts["_postings"] = done
    return counts


# --- command line -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per run")
    p.add_argument("--members", type=int, default=1000)
    p.add_argument(
        "--clients",
        type=lambda s: [int(c) for c in s.split(",")],
        default=[1, 8],
        help="client counts, comma-separated (default 1,8)",
    )
    p.add_argument(
        "--processes",
        type=lambda s: [int(c) for c in s.split(",")],
        default=[os.cpu_count() or 1, 0],
        help="client processes, comma-separated: each client count runs once per entry, its "
        "clients spread over that many processes as threads (0: one process per client); the "
        "verdict is on the first (default: one per CPU, then 0)",
    )
    p.add_argument(
        "--backends",
        type=lambda s: s.split(","),
        default=["postgresql", "sqlite"],
        help="postgresql,sqlite (default both)",
    )
    p.add_argument(
        "--pg-url",
        default=os.environ.get("SIYU_BENCH_PG_URL", PG_ADMIN_URL),
        help="an existing database on the server (for CREATE/DROP DATABASE)",
    )
    p.add_argument("--scale", type=int, default=10, help="pgbench -i scale factor")
    p.add_argument(
        "--no-functions",
        dest="functions",
        action="store_false",
        help="skip the run of pgbench driving the posting functions",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="profile one PostgreSQL client instead (pyinstrument, round trips)",
    )
    p.add_argument("--profile-html", help="also write the pyinstrument HTML report here")
    args = p.parse_args(argv)
    if set(args.backends) - {"postgresql", "sqlite"}:
        p.error("--backends takes postgresql and/or sqlite")
    return profile(args) if args.profile else benchmark(args)


if __name__ == "__main__":
    sys.exit(main())

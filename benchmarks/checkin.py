"""Daily check-ins per second through the HTTP API, beside pgbench, on PostgreSQL.

    .venv/bin/python benchmarks/checkin.py [--seconds 15] [--clients 64] [--workers 2]
    .venv/bin/python benchmarks/checkin.py --profile [--profile-html out.html]

What one "check-in" is: ``POST /api/v1/me/checkins`` with a member's bearer token, answered
200 with ``"created":true``: one committed transaction that claims the member's tenant-local
day and grants the rule's points through the ledger (journal entry, postings, lot). Every
request is a different member (each may check in once a day), so nothing is a replay.

The server is started as in production: ``siyu serve --workers N`` (uvicorn worker
processes, each on its own SO_REUSEPORT socket, the startup heap frozen),
``SIYU_ENV=production``, a real secret, the job queue on Redis so no consumer runs in the web
processes) against a fresh PostgreSQL database built by Alembic. The members are inserted in
bulk with their wallets open (fans who already earned points), then the clients run.

Clients: ``--clients`` concurrent HTTP/1.1 keep-alive connections driven by one asyncio
process with a minimal hand-written client (a few µs of CPU per request, so the load
generator takes as little as possible of the CPU the server needs). A run warms up, then counts
check-ins completed in a fixed window; latency is request start to response end as the
client sees it.

The reference is ``pgbench -N`` on its own scratch database, same client count and duration,
run just before the HTTP run (the pgbench helpers of benchmarks/ledger.py). Target: check-ins/s
≥ 30% of pgbench's TPS and p99 ≤ 100 ms; the script prints a VERDICT line and exits 1 below
either, or when a request failed, or when afterwards a member has two check-ins or two
check-in credits for the day, or ``ledger.verify`` finds a problem.

After the HTTP run pgbench drives ``siyu_checkin`` itself on the same database (random
members, random days ahead, ``-M prepared``, same clients and duration): the server's work
for a check-in with a client that costs almost nothing, i.e. the ceiling of any HTTP server
on this database (``--no-function`` skips it). The CPU per check-in of the load client, the
web processes and PostgreSQL (all its processes, from ``/proc``) is printed too.

``--profile`` instead seeds a database and runs check-ins through the same app in this process
(httpx over ASGI, one client) under pyinstrument, and counts the SQL statements per check-in.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
SECRET = secrets.token_urlsafe(32)
# Member tokens are signed with the server's secret: fix it before siyu reads its settings.
os.environ["SIYU_SECRET_KEY"] = SECRET

from fake_wechat import cpu_seconds, postgres_pids  # noqa: E402  (its CPU accounting)
from sqlalchemy import text  # noqa: E402

from ledger import (  # noqa: E402  (benchmarks/ledger.py: the pgbench helpers)
    PG_ADMIN_URL,
    _pgbench,
    db_url,
    pg_database,
    pgbench_init,
    pgbench_tps,
)
from siyu.core import db as core_db  # noqa: E402
from siyu.core.migrate import upgrade  # noqa: E402
from siyu.core.security import sign_member_token  # noqa: E402

TARGET_RATIO = 0.30
TARGET_P99_MS = 100.0


# --- seed -------------------------------------------------------------------------------------


def seed(url: str, n_members: int) -> tuple[int, list[int]]:
    """Migrate; one tenant (created by the service) and ``n_members`` members with wallets,
    inserted in bulk (the service would take minutes for 100k)."""
    from siyu.checkin import service as checkin
    from siyu.tenants import service as tenants

    upgrade("head", url=url)
    engine = core_db.make_engine(url)
    core_db.configure(engine)
    try:
        with core_db.unit_of_work() as db:
            tenant_id = tenants.create_tenant(db, slug="bench", name="Benchmark").id
            checkin.set_rule(
                db,
                tenant_id=tenant_id,
                rule={
                    "base": 5,
                    "bonuses": [{"day": 7, "points": 30}],
                    "makeup_days": 3,
                    "makeup_cost": 20,
                },
            )
            db.execute(
                text(
                    "INSERT INTO members (tenant_id, openid, nickname, avatar_url, "
                    "source_channel, joined_at) SELECT :t, 'bench-' || g, 'fan ' || g, '', "
                    "'bench', now() FROM generate_series(1, :n) g"
                ),
                {"t": tenant_id, "n": n_members},
            )
            db.execute(
                text(
                    "INSERT INTO ledger_accounts (tenant_id, code, kind, member_id, balance, "
                    "growth) SELECT tenant_id, 'wallet:' || id, 'wallet', id, 0, 0 "
                    "FROM members WHERE tenant_id = :t"
                ),
                {"t": tenant_id},
            )
            ids = list(
                db.scalars(
                    text("SELECT id FROM members WHERE tenant_id = :t ORDER BY id"),
                    {"t": tenant_id},
                )
            )
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
        return tenant_id, ids
    finally:
        core_db.configure(None)
        engine.dispose()


def check_after(url: str, tenant_id: int) -> list[str]:
    """Problems found afterwards: a member with two check-ins or credits a day, ledger drift."""
    from siyu.ledger import service as ledger

    engine = core_db.make_engine(url)
    core_db.configure(engine)
    problems: list[str] = []
    try:
        with core_db.unit_of_work() as db:
            dup_rows = db.scalar(
                text(
                    "SELECT count(*) FROM (SELECT 1 FROM checkins WHERE tenant_id = :t "
                    "GROUP BY member_id, checked_on HAVING count(*) > 1) x"
                ),
                {"t": tenant_id},
            )
            dup_credits = db.scalar(
                text(
                    "SELECT count(*) FROM (SELECT 1 FROM ledger_entries WHERE tenant_id = :t "
                    "AND reason = 'checkin' GROUP BY member_id, reference HAVING count(*) > 1) x"
                ),
                {"t": tenant_id},
            )
            rows = db.scalar(
                text("SELECT count(*) FROM checkins WHERE tenant_id = :t"), {"t": tenant_id}
            )
            credits = db.scalar(
                text(
                    "SELECT count(*) FROM ledger_entries WHERE tenant_id = :t "
                    "AND reason = 'checkin'"
                ),
                {"t": tenant_id},
            )
            report = ledger.verify(db, tenant_id=tenant_id)
        if dup_rows:
            problems.append(f"{dup_rows} member-days with two check-ins")
        if dup_credits:
            problems.append(f"{dup_credits} member-days credited twice")
        if rows != credits:
            problems.append(f"{rows} check-ins but {credits} check-in credits")
        problems += [f"ledger: {p.kind} {p.ref}" for p in report.problems]
        return problems
    finally:
        core_db.configure(None)
        engine.dispose()


# --- server -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(url: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SIYU_DATABASE_URL": url,
        "SIYU_SECRET_KEY": SECRET,
        "SIYU_ENV": "production",
        "SIYU_REDIS_URL": os.environ.get("SIYU_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "SIYU_QUEUE_NAME": f"siyu-bench-{secrets.token_hex(4)}",
        "SIYU_LOG_JSON": "true",
    }
    # Logs go to a file: an unread pipe would fill up and stall the server.
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - the server writes it until stopped
        prefix="siyu-bench-serve-", suffix=".log", delete=False
    )
    proc = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/siyu"),
            "serve",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = Path(log.name).read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the server exited: {tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if b"200 OK" in s.recv(4096):
                    time.sleep(1.0)  # let every worker finish starting
                    return proc
        except OSError:
            time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError("the server did not answer /healthz within 120 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- clients ----------------------------------------------------------------------------------


@dataclass
class Run:
    done: int = 0
    replays: int = 0
    errors: int = 0
    first_error: str = ""
    latencies_ms: list[float] = field(default_factory=list)

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
) -> tuple[int, bytes]:
    """One HTTP/1.1 keep-alive exchange: status and body (Content-Length framed)."""
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    body = await reader.readexactly(length) if length else b""
    return status, body


async def drive(
    port: int, tokens: list[str], clients: int, warmup: float, seconds: float
) -> tuple[Run, Run]:
    """Warm-up run and measured run; each token is used once (a new member-day)."""
    queue = iter(tokens)
    warm, measured = Run(), Run()
    t0 = time.monotonic()
    measure_from, until = t0 + warmup, t0 + warmup + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while (start := time.monotonic()) < until:
                token = next(queue, None)
                if token is None:
                    raise RuntimeError("ran out of members: raise --members")
                raw = (
                    "POST /api/v1/me/checkins HTTP/1.1\r\nHost: bench\r\n"
                    f"Authorization: Bearer {token}\r\nContent-Length: 0\r\n\r\n"
                ).encode()
                run = measured if start >= measure_from else warm
                try:
                    status, body = await _request(reader, writer, raw)
                except (OSError, asyncio.IncompleteReadError) as exc:
                    run.errors += 1
                    run.first_error = run.first_error or f"{type(exc).__name__}: {exc}"
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                end = time.monotonic()
                if status != 200:
                    run.errors += 1
                    run.first_error = run.first_error or f"{status}: {body[:200]!r}"
                    continue
                if b'"created":true' not in body:
                    run.replays += 1
                if end <= until:
                    run.done += 1
                    run.latencies_ms.append((end - start) * 1000)
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return warm, measured


# --- main -------------------------------------------------------------------------------------


def server_pids(server: int) -> list[int]:
    """``siyu serve`` and the web processes it spawned (its children)."""
    pids = [server]
    for d in Path("/proc").iterdir():
        try:
            if (
                d.name.isdigit()
                and int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == server
            ):
                pids.append(int(d.name))
        except OSError:  # gone meanwhile
            continue
    return pids


def function_tps(url: str, pg_url: str, tenant_id: int, member_ids: list[int], args: Any) -> float:
    """pgbench calling siyu_checkin for random members and days on the seeded database."""
    from siyu.checkin.service import _DEFAULT_RULE_JSON

    name = url.rsplit("/", 1)[1]
    script = (
        f"\\set m random({min(member_ids)}, {max(member_ids)})\n"
        "\\set d random(1, 3000)\n"
        f"SELECT r_status FROM siyu_checkin({tenant_id}, :m, now() + make_interval(days => :d),"
        f" '{_DEFAULT_RULE_JSON}'::json, 'day {{n}}', 400);\n"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".sql", prefix="siyu_checkin_") as f:
        f.write(script)
        f.flush()
        return _pgbench(pg_url, name, ["-M", "prepared", "-f", f.name], args.clients, args.seconds)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def benchmark(args: argparse.Namespace) -> int:
    print(
        f"checkin benchmark: {args.clients} clients, {args.seconds:g} s measured "
        f"(+{args.warmup:g} s warm-up), siyu serve --workers {args.workers}; load {loadavg()}"
    )
    needed = int((args.warmup + args.seconds) * 3000)  # members enough for 3,000/s
    n_members = max(args.members, needed)
    with pg_database(args.pg_url, "siyu_pgbench") as pgb:
        pgbench_init(args.pg_url, pgb, args.scale)
        ref = pgbench_tps(args.pg_url, pgb, args.clients, args.seconds)
    print(
        f"pgbench -N -c {args.clients} -j {args.clients} -T {round(args.seconds)}: {ref:,.0f} TPS"
    )
    with pg_database(args.pg_url, "siyu_bench_checkin") as name:
        url = db_url(args.pg_url, name)
        t = time.monotonic()
        tenant_id, member_ids = seed(url, n_members)
        print(f"seeded {len(member_ids):,} members with wallets in {time.monotonic() - t:.1f} s")
        tokens = [sign_member_token(tenant_id=tenant_id, member_id=m) for m in member_ids]
        port = free_port()
        proc = start_server(url, port, args.workers)
        try:
            web = server_pids(proc.pid)
            web0, pg0 = cpu_seconds(web), cpu_seconds(postgres_pids())
            client0 = time.process_time()
            warm, run = asyncio.run(drive(port, tokens, args.clients, args.warmup, args.seconds))
            n = max(1, warm.done + run.done)
            web1, pg1 = cpu_seconds(web), cpu_seconds(postgres_pids())
            cpu_ms = {
                "load client": (time.process_time() - client0) / n * 1000,
                "web processes": (web1 - web0) / n * 1000,
                "PostgreSQL": (pg1 - pg0) / n * 1000,
            }
        finally:
            stop_server(proc)
        problems = check_after(url, tenant_id)
        fn = function_tps(url, args.pg_url, tenant_id, member_ids, args) if args.function else None
    rate = run.done / args.seconds
    ratio = rate / ref if ref else 0.0
    print()
    print(f"{'':24}{'per s':>10}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    print(f"{'pgbench -N (reference)':24}{ref:>10,.0f}")
    print(
        f"{'check-ins (HTTP API)':24}{rate:>10,.0f}{run.pct(0.5):>10.1f}{run.pct(0.95):>10.1f}"
        f"{run.pct(0.99):>10.1f}{max(run.latencies_ms or [0]):>10.1f}"
    )
    print(
        f"ratio to pgbench: {ratio:.1%} (target ≥ {TARGET_RATIO:.0%}); "
        f"p99 {run.pct(0.99):.1f} ms (target ≤ {TARGET_P99_MS:.0f} ms)"
    )
    print("CPU ms per check-in: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu_ms.items()))
    if fn is not None:
        print(
            f"pgbench driving siyu_checkin (no HTTP, no Python), {args.clients} clients: "
            f"{fn:,.0f} TPS = {fn / ref:.0%} of pgbench -N: the server-side ceiling"
        )
    errors = warm.errors + run.errors
    replays = warm.replays + run.replays
    print(
        f"errors: {errors}{' — ' + (warm.first_error or run.first_error) if errors else ''}; "
        f"replays: {replays}; checks after the run: {problems or 'ok'}; load {loadavg()}"
    )
    ok = ratio >= TARGET_RATIO and run.pct(0.99) <= TARGET_P99_MS
    ok = ok and not errors and not replays and not problems
    print(f"VERDICT: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def profile(args: argparse.Namespace) -> int:
    """Check-ins through the app in this process (ASGI, one client) under pyinstrument, and
    the SQL statements each one sends."""
    import httpx
    from pyinstrument import Profiler
    from sqlalchemy import event

    with pg_database(args.pg_url, "siyu_bench_checkin") as name:
        url = db_url(args.pg_url, name)
        tenant_id, member_ids = seed(url, args.profile_n * 4 + 40)
        os.environ["SIYU_DATABASE_URL"] = url
        from siyu.app import create_app

        engine = core_db.make_engine(url)
        core_db.configure(engine)
        statements: list[str] = []
        event.listen(
            engine, "before_cursor_execute", lambda *a, **k: statements.append(a[2].split()[0])
        )
        app = create_app(start_consumer=False)
        import logging

        for noisy in ("siyu.access", "httpx"):  # one line per request would swamp the profile
            logging.getLogger(noisy).setLevel(logging.WARNING)
        tokens = iter(sign_member_token(tenant_id=tenant_id, member_id=m) for m in member_ids)

        async def go(n: int) -> float:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as c:
                t = time.perf_counter()
                for _ in range(n):
                    r = await c.post(
                        "/api/v1/me/checkins",
                        headers={"Authorization": f"Bearer {next(tokens)}"},
                    )
                    assert r.status_code == 200, r.text
                    assert r.json()["created"], r.text
                return time.perf_counter() - t

        asyncio.run(go(20))  # warm up
        statements.clear()
        elapsed = asyncio.run(go(args.profile_n))
        per = len(statements) / args.profile_n
        kinds: dict[str, int] = {}
        for s in statements:
            kinds[s] = kinds.get(s, 0) + 1
        print(
            f"{args.profile_n} check-ins, 1 client in-process: "
            f"{args.profile_n / elapsed:,.0f}/s, {elapsed / args.profile_n * 1000:.2f} ms each"
        )
        print(
            f"SQL statements per check-in: {per:.1f} "
            f"({', '.join(f'{k} {v / args.profile_n:.1f}' for k, v in sorted(kinds.items()))})"
        )
        # What a request runs besides HTTP and ASGI (token → member ids, the check-in, its
        # commit), called directly with the driver's blocking connection: on PostgreSQL one call
        # of siyu_checkin, which the statement count above does not see (no SQLAlchemy).
        from siyu.checkin.service import check_in_member
        from siyu.core.security import read_member_token

        def direct() -> None:
            found = read_member_token(next(tokens))
            assert found is not None
            assert check_in_member(tenant_id=found[0], member_id=found[1]) is not None

        t = time.perf_counter()
        for _ in range(args.profile_n):
            direct()
        inner = (time.perf_counter() - t) / args.profile_n * 1000
        print(
            f"the same work called directly (no HTTP, no ASGI): {inner:.2f} ms each; "
            f"HTTP + ASGI + threadpool hops: {elapsed / args.profile_n * 1000 - inner:.2f} ms"
        )
        profiler = Profiler(interval=0.0002)
        profiler.start()
        for _ in range(args.profile_n):
            direct()
        profiler.stop()
        print(profiler.output_text(unicode=True, color=False, show_all=False))
        if args.profile_html:
            Path(args.profile_html).write_text(profiler.output_html())
        core_db.configure(None)
        engine.dispose()
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--warmup", type=float, default=3)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--workers", type=int, default=2, help="siyu serve --workers")
    p.add_argument("--members", type=int, default=20_000)
    p.add_argument("--scale", type=int, default=10, help="pgbench -i -s")
    p.add_argument("--pg-url", default=os.environ.get("SIYU_BENCH_PG_URL", PG_ADMIN_URL))
    p.add_argument("--no-function", dest="function", action="store_false")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--profile-n", type=int, default=300)
    p.add_argument("--profile-html")
    args = p.parse_args()
    return profile(args) if args.profile else benchmark(args)


if __name__ == "__main__":
    sys.exit(main())

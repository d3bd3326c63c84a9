"""The "on sale now" reminder to 200,000 reservers of one product, on PostgreSQL + Redis with
workers as in production.

    .venv/bin/python benchmarks/onsale.py [--reservers 200000] [--workers 2] [--threads 4]

A fresh PostgreSQL database gets one tenant (WeChat configured), one live session with one
product, ``--reservers`` members who each reserved that product and accepted the reminder's
subscribe message (one consent each). ``--workers`` ``siyu worker`` processes (Redis queue,
``--threads`` threads each) are started and awaited. Then, timed from just before the call:
``live.mark_on_sale`` in one transaction (the console button / API / ``siyu live on-sale``
does exactly this): it puts the product on sale and queues the reminder with its first chunk of
recipients; the expansion worker resolves the rest of the ``live_reservers`` target by
INSERT … SELECT in chunks, marking each chunk's reservations due as it goes; the dispatchers
send each reminder as a subscribe message carrying the member's tracked link.

The fake WeChat server (tests/fakes/weixin.py) runs in its own process and counts what it
accepts per ``touser``: first and last accepted request, duplicates (a member counted twice)
and losses (never counted) are measured there, not in our database. The fake runs as
``--fakes`` processes on one port (``fake_wechat.py``); its own ceiling (``--ceiling-clients``
client processes, 64 requests in flight each, aiohttp and the lean client; the higher) is
measured in the same run as the baseline, and the CPU per send of the workers, the fake and
PostgreSQL is reported.

The bar (issue 6): first reminder ≤ 1 s, all within 60 s, zero duplicates, zero losses; the
script prints a VERDICT line and exits 1 below it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.fakes

from fake_wechat import (  # noqa: E402
    CpuMeter,
    Fake,
    add_fake_and_server_args,
    ceiling,
    insert_consenting_members,
    start_fake,
)

# --- the run ----------------------------------------------------------------------------------


def seed(reservers: int) -> tuple[int, int, int]:
    """Tenant, session, product and ``reservers`` members who reserved it with a consent."""
    import datetime as dt

    from sqlalchemy import insert
    from tests.fakes.weixin import APPID, SECRET

    from siyu.core import clock
    from siyu.core.db import unit_of_work
    from siyu.live import reminders
    from siyu.live import service as live
    from siyu.live.models import WAITING, Reservation
    from siyu.tenants import service as tenants

    now = clock.now()
    with unit_of_work() as db:
        tenant = tenants.create_tenant(
            db,
            slug="onsale-" + secrets.token_hex(3),
            name="所有女生",
            settings={"wechat": {"appid": APPID, "secret": SECRET}},
        )
        session = live.create_session(
            db,
            tenant_id=tenant.id,
            platform="taobao",
            theme="零食节",
            starts_at=now + dt.timedelta(hours=1),
            ends_at=now + dt.timedelta(hours=4),
        )
        product = live.add_product(
            db,
            tenant_id=tenant.id,
            session_id=session.id,
            title="每日坚果 30 包礼盒装",
            live_price_fen=5990,
            list_price_fen=9900,
            link="https://m.tb.cn/h.bench",
        )
        template_id = reminders.subscribe_template_id(db, tenant_id=tenant.id)
        tid, sid, pid = tenant.id, session.id, product.id
    step = 10_000
    for start in range(0, reservers, step):
        n = min(step, reservers - start)
        with unit_of_work() as db:
            ids = insert_consenting_members(
                db, tenant_id=tid, start=start, n=n, template_key=template_id, now=now
            )
            db.execute(
                insert(Reservation),
                [
                    {
                        "tenant_id": tid,
                        "member_id": mid,
                        "session_id": sid,
                        "product_id": pid,
                        "target": f"p{pid}",
                        "created_at": now,
                        "remind_state": WAITING,
                        "click_token": secrets.token_urlsafe(12),
                        "clicks": 0,
                    }
                    for mid in ids
                ],
            )
    with unit_of_work() as db:
        from sqlalchemy import text

        db.execute(text("ANALYZE"))
    return tid, pid, reservers


def run(
    *,
    database_url: str,
    redis_url: str,
    fake_url: str,
    fake_admins: list[str],
    fake_pids: list[int],
    reservers: int,
    processes: int,
    threads: int,
    tmp: Path,
) -> dict[str, Any]:
    queue = f"siyu-bench-{secrets.token_hex(4)}"
    env = {
        **os.environ,
        "SIYU_DATABASE_URL": database_url,
        "SIYU_REDIS_URL": redis_url,
        "SIYU_VAR_DIR": str(tmp / "var"),
        "SIYU_QUEUE_NAME": queue,
        "SIYU_WECHAT_API_BASE": fake_url,
        "SIYU_ENV": "development",
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith("SIYU_")})
    from siyu.core.migrate import upgrade

    upgrade("head", url=database_url)
    # Settings and the queue are read at import: this process imports siyu only now.
    from siyu.core import db as core_db
    from siyu.core.db import unit_of_work
    from siyu.core.jobs import load_tasks
    from siyu.live import reminders
    from siyu.live import service as live
    from siyu.messaging import service

    core_db.configure(core_db.make_engine(database_url))
    t0 = time.perf_counter()
    tid, pid, n = seed(reservers)
    print(f"  seeded {n:,} reservations in {time.perf_counter() - t0:.1f}s", flush=True)
    logs = [tmp / f"worker-{i}.log" for i in range(processes)]
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "siyu.cli",
                "worker",
                "--workers",
                str(threads),
                "--no-periodic",
            ],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        for log in logs
    ]
    try:
        deadline = time.monotonic() + 120
        while not all(b"consumer started" in log.read_bytes() for log in logs):
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start")
            time.sleep(0.1)
        time.sleep(0.5)
        load_tasks()  # as a web worker does at startup (siyu.app's lifespan)
        meter = CpuMeter([w.pid for w in workers], fake_pids)
        meter.start()
        trigger = time.time()
        with unit_of_work() as db:
            result = live.mark_on_sale(db, tenant_id=tid, product_id=pid)
            marked = result.marked
        committed = time.time()
        s = Fake(fake_url, fake_admins).wait_for(n)
        cpu = meter.per_send_us(s["accepted"])
        with unit_of_work() as db:
            msg = service.find_message(db, tenant_id=tid, purpose=reminders.purpose("product", pid))
            assert msg is not None
            counts = service.status_counts(db, message_id=msg.id)
            channels = service.channel_counts(db, message_id=msg.id)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=20)
            except subprocess.TimeoutExpired:
                w.kill()
        core_db.configure(None)
    first = (s["first_at"] - trigger) if s["first_at"] else float("nan")
    total = (s["last_at"] - trigger) if s["last_at"] else float("nan")
    return {
        "reservers": n,
        "marked": marked,
        "on_sale_commit_s": committed - trigger,
        "first_s": first,
        "last_s": total,
        "per_s": s["distinct"] / total if total and total == total else 0.0,
        "accepted": s["accepted"],
        "duplicates": s["duplicates"],
        "lost": n - s["distinct"],
        "per_fake_process": s["per_process"],
        "cpu_us_per_send": cpu,
        "db_counts": counts,
        "db_channels": channels,
        "workers": f"{processes}x{threads}",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--reservers", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2, help="siyu worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker")
    add_fake_and_server_args(parser)
    args = parser.parse_args()
    if args.child:
        kw = json.loads(args.child)
        kw["tmp"] = Path(kw["tmp"])
        print("RESULT " + json.dumps(run(**kw), ensure_ascii=False), flush=True)
        return 0

    from sqlalchemy import create_engine, text

    tmp = Path(tempfile.mkdtemp(prefix="siyu-onsale-"))
    fake = start_fake(tmp, args.fakes)
    url = fake.url
    pg_db = f"siyu_bench_{secrets.token_hex(4)}"
    admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
    try:
        rate = ceiling(fake, args.ceiling_requests, clients=args.ceiling_clients)
        print(f"fake server ceiling (baseline): {rate:,.0f} requests/s", flush=True)
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{pg_db}"'))
        kw = {
            "database_url": args.pg_url.rsplit("/", 1)[0] + f"/{pg_db}",
            "redis_url": args.redis_url,
            "fake_url": url,
            "fake_admins": fake.admins,
            "fake_pids": fake.pids,
            "reservers": args.reservers,
            "processes": args.workers,
            "threads": args.threads,
            "tmp": str(tmp),
        }
        proc = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(kw)],
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
        r: dict[str, Any] | None = None
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                r = json.loads(line[len("RESULT ") :])
            else:
                print(line, flush=True)
        if r is None:
            raise RuntimeError(f"the run failed (exit {proc.returncode}); logs in {tmp}")
    finally:
        fake.stop()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{pg_db}" WITH (FORCE)'))
        admin.dispose()

    print(json.dumps(r, ensure_ascii=False))
    print()
    print(
        f"{'reservers':>9} {'workers':>7} {'commit s':>8} {'first s':>8} {'last s':>8} "
        f"{'sent/s':>8} {'ceiling/s':>9} {'dups':>5} {'lost':>5}"
    )
    print(
        f"{r['reservers']:>9,} {r['workers']:>7} {r['on_sale_commit_s']:>8.2f} "
        f"{r['first_s']:>8.2f} {r['last_s']:>8.1f} {r['per_s']:>8,.0f} {rate:>9,.0f} "
        f"{r['duplicates']:>5} {r['lost']:>5}"
    )
    print(
        "CPU per accepted send (µs): "
        + ", ".join(f"{k} {v:,.0f}" for k, v in r["cpu_us_per_send"].items())
    )
    ok = (
        r["first_s"] <= 1.0
        and r["last_s"] <= 60.0
        and r["duplicates"] == 0
        and r["lost"] == 0
        and r["marked"] == r["reservers"]
    )
    print(
        "VERDICT:",
        "PASS" if ok else "FAIL",
        "(first reminder ≤ 1 s and all within 60 s of the on-sale action, zero duplicates, "
        "zero losses, counted at the fake subscribe-message server)",
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

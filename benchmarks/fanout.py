"""One broadcast to 100,000 members through the subscribe-message adapter, beside the fake
WeChat server's own ceiling.

    .venv/bin/python benchmarks/fanout.py [--members 100000] [--backends sqlite,postgresql]

For each backend a fresh database gets one tenant with ``--members`` members, each with one
subscribe consent, and a template with a subscribe config. Then, timed from the commit of
``messaging.service.send(target=all members)`` (the trigger):

- **sqlite**: the embedded default: SQLite database, SQLite job queue, one ``siyu worker``
  process (``--sqlite-threads`` threads), as ``siyu serve`` runs it in-process;
- **postgresql**: PostgreSQL + Redis queue, ``--workers`` (2) ``siyu worker`` processes of
  ``--pg-threads`` threads each.

The fake WeChat server (tests/fakes/weixin.py, the one the adapter tests use) runs as
``--fakes`` processes on one port (``fake_wechat.py``) and counts what it accepts per
``touser``: deliveries, duplicates (a member counted twice) and losses (a member never counted)
are counted there, not in our database. Its ceiling is measured in the same run:
``--ceiling-clients`` client processes (64 concurrent requests each, one token) posting
``--ceiling-requests`` subscribe messages as fast as they can, once with aiohttp and once with
the senders' own lean client (``siyu.messaging.http``); the higher rate is the ceiling. The
CPU per send of the workers, the fake and PostgreSQL (machine-wide) is reported too.

Reported: time to first delivery (the fake's first accepted request minus the trigger), total
time (until the fake has counted every member), deliveries/s, and that rate as a share of the
ceiling. The bar (issue 5), on PostgreSQL + Redis: first delivery ≤ 1 s, ≥ 50% of the ceiling,
zero duplicates and zero losses; the script prints a VERDICT line and exits 1 below it.
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

# --- one backend ------------------------------------------------------------------------------


def seed(members: int) -> tuple[int, int]:
    """A tenant with ``members`` members, each with one consent; returns (tenant id, n)."""
    from tests.fakes.weixin import APPID, SECRET

    from siyu.core import clock
    from siyu.core.db import unit_of_work
    from siyu.messaging import service
    from siyu.tenants import service as tenants

    with unit_of_work() as db:
        tenant = tenants.create_tenant(
            db,
            slug="fanout-" + secrets.token_hex(3),
            name="所有女生",
            settings={"wechat": {"appid": APPID, "secret": SECRET}},
        )
        service.save_template(
            db,
            tenant_id=tenant.id,
            key="live",
            name="开播",
            title="开播啦",
            body="{{ session.theme }} 开播啦",
            subscribe={
                "template_id": "TPL-bench",
                "page": "pages/live?id={{ session.id }}",
                "data": {"thing1": "{{ session.theme }}", "name2": "{{ member.nickname }}"},
            },
        )
        tid = tenant.id
    now = clock.now()
    step = 10_000
    for start in range(0, members, step):
        n = min(step, members - start)
        with unit_of_work() as db:
            insert_consenting_members(
                db, tenant_id=tid, start=start, n=n, template_key="TPL-bench", now=now
            )
    with unit_of_work() as db:  # planner statistics, as a live database has them
        from sqlalchemy import text

        db.execute(text("ANALYZE"))
    return tid, members


def run_backend(
    name: str,
    *,
    database_url: str,
    redis_url: str | None,
    fake_url: str,
    fake_admins: list[str],
    fake_pids: list[int],
    members: int,
    processes: int,
    threads: int,
    tmp: Path,
) -> dict[str, Any]:
    queue = f"siyu-bench-{secrets.token_hex(4)}"
    env = {
        **os.environ,
        "SIYU_DATABASE_URL": database_url,
        "SIYU_VAR_DIR": str(tmp / name),
        "SIYU_QUEUE_NAME": queue,
        "SIYU_WECHAT_API_BASE": fake_url,
        "SIYU_ENV": "development",
    }
    env.pop("SIYU_REDIS_URL", None)
    if redis_url:
        env["SIYU_REDIS_URL"] = redis_url
    os.environ.update({k: v for k, v in env.items() if k.startswith("SIYU_")})
    if not redis_url:
        os.environ.pop("SIYU_REDIS_URL", None)
    from siyu.core.migrate import upgrade

    upgrade("head", url=database_url)
    # Settings and the queue are read at import: this process imports siyu only now.
    from siyu.core import db as core_db
    from siyu.core.db import unit_of_work
    from siyu.messaging import service

    core_db.configure(core_db.make_engine(database_url))
    t0 = time.perf_counter()
    tid, n = seed(members)
    print(f"  [{name}] seeded {n:,} members in {time.perf_counter() - t0:.1f}s", flush=True)
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
            stdout=(tmp / f"{name}-worker-{i}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for i in range(processes)
    ]
    try:
        # Trigger only once every consumer is up and polling (imports take seconds).
        deadline = time.monotonic() + 120
        while not all(
            b"consumer started" in (tmp / f"{name}-worker-{i}.log").read_bytes()
            for i in range(processes)
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start")
            time.sleep(0.1)
        time.sleep(0.5)
        meter = CpuMeter([w.pid for w in workers], fake_pids)
        meter.start()
        with unit_of_work() as db:
            msg = service.send(
                db,
                tenant_id=tid,
                purpose="broadcast:bench",
                target=service.Target(kind="all_members"),
                template="live",
                context={"session": {"id": 42, "theme": "双11美妆专场"}},
                channels=["subscribe", "inbox"],
                kind="broadcast",
            )
            message_id = msg.id
            trigger = time.time()  # the commit follows: close enough, and conservative
        s = Fake(fake_url, fake_admins).wait_for(n)
        cpu = meter.per_send_us(s["accepted"])
        with unit_of_work() as db:
            counts = service.status_counts(db, message_id=message_id)
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
        "backend": name,
        "members": n,
        "first_delivery_s": first,
        "total_s": total,
        "per_s": s["distinct"] / total if total and total == total else 0.0,
        "accepted": s["accepted"],
        "duplicates": s["duplicates"],
        "lost": n - s["distinct"],
        "per_fake_process": s["per_process"],
        "cpu_us_per_send": cpu,
        "db_counts": counts,
        "workers": f"{processes}×{threads}",
    }


def child(**kw: Any) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(kw)],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])  # type: ignore[no-any-return]
        print(line, flush=True)
    raise RuntimeError(f"the {kw['name']} run failed (exit {proc.returncode})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--workers", type=int, default=2, help="PostgreSQL worker processes")
    parser.add_argument("--pg-threads", type=int, default=4)
    parser.add_argument("--sqlite-threads", type=int, default=2)
    add_fake_and_server_args(parser)
    args = parser.parse_args()
    if args.child:
        # One backend per process: settings and the job queue are fixed at import.
        kw = json.loads(args.child)
        kw["tmp"] = Path(kw["tmp"])
        print("RESULT " + json.dumps(run_backend(**kw), ensure_ascii=False), flush=True)
        return 0

    from sqlalchemy import create_engine, text

    tmp = Path(tempfile.mkdtemp(prefix="siyu-fanout-"))
    fake = start_fake(tmp, args.fakes)
    url = fake.url
    results: list[dict[str, Any]] = []
    ceilings: list[float] = []
    pg_db = f"siyu_bench_{secrets.token_hex(4)}"
    admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
    try:
        for backend in args.backends.split(","):
            rate = ceiling(fake, args.ceiling_requests, clients=args.ceiling_clients)
            ceilings.append(rate)
            print(f"fake server ceiling: {rate:,.0f} requests/s", flush=True)
            if backend == "sqlite":
                (tmp / "sqlite").mkdir(exist_ok=True)
                r = child(
                    name="sqlite",
                    database_url=f"sqlite:///{tmp / 'sqlite' / 'siyu.db'}",
                    redis_url=None,
                    fake_url=url,
                    fake_admins=fake.admins,
                    fake_pids=fake.pids,
                    members=args.members,
                    processes=1,
                    threads=args.sqlite_threads,
                    tmp=str(tmp),
                )
            else:
                with admin.connect() as conn:
                    conn.execute(text(f'CREATE DATABASE "{pg_db}"'))
                (tmp / "postgresql").mkdir(exist_ok=True)
                r = child(
                    name="postgresql",
                    database_url=args.pg_url.rsplit("/", 1)[0] + f"/{pg_db}",
                    redis_url=args.redis_url,
                    fake_url=url,
                    fake_admins=fake.admins,
                    fake_pids=fake.pids,
                    members=args.members,
                    processes=args.workers,
                    threads=args.pg_threads,
                    tmp=str(tmp),
                )
            r["ceiling_per_s"] = rate
            results.append(r)
            print(json.dumps(r, ensure_ascii=False), flush=True)
            fake.reset()
    finally:
        fake.stop()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{pg_db}" WITH (FORCE)'))
        admin.dispose()

    print()
    print(
        f"{'backend':<11} {'members':>8} {'workers':>7} {'first s':>8} {'total s':>8} "
        f"{'deliv/s':>8} {'ceiling/s':>9} {'% ceil':>6} {'dups':>5} {'lost':>5}"
    )
    for r in results:
        share = 100 * r["per_s"] / r["ceiling_per_s"] if r["ceiling_per_s"] else 0
        print(
            f"{r['backend']:<11} {r['members']:>8,} {r['workers']:>7} "
            f"{r['first_delivery_s']:>8.2f} {r['total_s']:>8.1f} {r['per_s']:>8,.0f} "
            f"{r['ceiling_per_s']:>9,.0f} {share:>5.0f}% {r['duplicates']:>5} {r['lost']:>5}"
        )
    print(
        "CPU per accepted send (µs): "
        + "; ".join(
            f"{r['backend']}: "
            + ", ".join(f"{k} {v:,.0f}" for k, v in r["cpu_us_per_send"].items())
            for r in results
        )
    )
    ok = all(r["duplicates"] == 0 and r["lost"] == 0 for r in results)
    pg = [r for r in results if r["backend"] == "postgresql"]
    for r in pg:
        ok = ok and r["first_delivery_s"] <= 1.0 and r["per_s"] >= 0.5 * r["ceiling_per_s"]
    print(
        "VERDICT:",
        "PASS" if ok else "FAIL",
        "(PostgreSQL + Redis: first delivery ≤ 1 s, ≥ 50% of the fake's ceiling; "
        "everywhere: zero duplicates, zero losses, counted at the fake server)",
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

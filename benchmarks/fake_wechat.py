"""The fake WeChat server the fan-out benchmarks send to, in processes of their own, and its
ceiling: ``benchmarks/fanout.py`` and ``benchmarks/onsale.py`` use it.

    .venv/bin/python benchmarks/fake_wechat.py DIR INDEX KEY   # what start_fake() runs

``--fakes`` processes (``tests/fakes/weixin.py``, the fake the adapter tests use, served by
uvicorn — with httptools and uvloop when installed) listen on one port with SO_REUSEPORT, so
the kernel spreads connections over them. Each also listens on a private port of its own for
``/_stats`` and ``/_reset``: counts are per process and merged here, per ``touser``, so a
member counted once by two processes is a duplicate like one counted twice by one. A token
issued by one process is valid at the others (``FakeWeixin.signing_key``).

The ceiling is what plain async clients (aiohttp, 64 requests in flight each) get from the
same fake: ``--ceiling-clients`` processes started together, total requests over the span from
the first start to the last finish. One client process alone may not saturate the fake (the
client's CPU per request is of the same order as the server's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.fakes

SEND_PATH = "/cgi-bin/message/subscribe/send"


# --- one fake server process ------------------------------------------------------------------


def serve_fake(directory: str, index: int, key: str) -> None:
    """Serve the fake on the shared port (``DIR/port``, the first process picks it) and a
    private admin port (written to ``DIR/admin-INDEX``)."""
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from tests.fakes.weixin import FakeWeixin

    fake = FakeWeixin(strict_consent=False, record=False, signing_key=key.encode())
    app = fake.asgi()
    first: list[float] = []
    last: list[float] = [0.0]

    async def stats(request: Request) -> JSONResponse:
        out: dict[str, Any] = {
            "accepted": sum(fake.delivered.values()),
            "first_at": first[0] if first else None,
            "last_at": last[0] or None,
        }
        if request.query_params.get("keys"):
            out["counts"] = dict(fake.delivered)
        return JSONResponse(out)

    async def reset(request: Request) -> JSONResponse:
        fake.delivered.clear()
        first.clear()
        last[0] = 0.0
        return JSONResponse({"ok": True})

    app.router.routes.append(Route("/_stats", stats))
    app.router.routes.append(Route("/_reset", reset, methods=["POST"]))
    original = fake._deliver

    def deliver(k: str) -> None:
        now = time.time()
        if not first:
            first.append(now)
        last[0] = now
        original(k)

    fake._deliver = deliver  # type: ignore[method-assign]
    d = Path(directory)
    shared = socket.socket()
    shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    port_file = d / "port"
    shared.bind(("127.0.0.1", int(port_file.read_text()) if index else 0))
    if not index:
        tmp = d / "port.tmp"
        tmp.write_text(str(shared.getsockname()[1]))
        tmp.rename(port_file)
    admin = socket.socket()
    admin.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    admin.bind(("127.0.0.1", 0))
    tmp = d / f"admin-{index}.tmp"
    tmp.write_text(str(admin.getsockname()[1]))
    tmp.rename(d / f"admin-{index}")
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", backlog=4096)
    )
    server.run(sockets=[shared, admin])


# --- the fleet, seen from the benchmark -------------------------------------------------------


@dataclass
class Fake:
    url: str
    admins: list[str]
    pids: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stats(self, *, keys: bool = False) -> dict[str, Any]:
        """Merged counts: accepted, first_at, last_at; with ``keys`` also distinct and
        duplicates per ``touser`` across every process."""
        import httpx

        parts = [
            httpx.get(f"{a}/_stats", params={"keys": "1"} if keys else {}, timeout=60).json()
            for a in self.admins
        ]
        firsts = [p["first_at"] for p in parts if p["first_at"]]
        lasts = [p["last_at"] for p in parts if p["last_at"]]
        out: dict[str, Any] = {
            "accepted": sum(p["accepted"] for p in parts),
            "first_at": min(firsts) if firsts else None,
            "last_at": max(lasts) if lasts else None,
            "per_process": [p["accepted"] for p in parts],
        }
        if keys:
            counts: Counter[str] = Counter()
            for p in parts:
                counts.update(p["counts"])
            out["distinct"] = len(counts)
            out["duplicates"] = sum(n - 1 for n in counts.values() if n > 1)
        return out

    def reset(self) -> None:
        import httpx

        for a in self.admins:
            httpx.post(f"{a}/_reset", timeout=10)

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()

    def wait_for(self, n: int, *, stall: float = 60, limit: float = 3600) -> dict[str, Any]:
        """Wait until ``n`` messages were accepted (or nothing arrived for ``stall`` s), then
        one more second for anything in flight to show up as a duplicate; merged stats."""
        deadline = time.monotonic() + limit
        last, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            s = self.stats()
            if s["accepted"] >= n:
                break
            if s["accepted"] != last:
                last, last_change = s["accepted"], time.monotonic()
            elif time.monotonic() - last_change > stall:
                break  # stalled: report what arrived
            time.sleep(0.25)
        time.sleep(1)
        return self.stats(keys=True)


def start_fake(tmp: Path, processes: int = 2) -> Fake:
    d = tmp / f"fake-{secrets.token_hex(3)}"
    d.mkdir(parents=True)
    key = secrets.token_hex(16)
    fake = Fake(url="", admins=[])
    deadline = time.monotonic() + 60
    for i in range(processes):
        fake.procs.append(
            subprocess.Popen(
                [sys.executable, __file__, str(d), str(i), key],
                stdout=(d / f"fake-{i}.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
        )
        if i == 0:  # the others bind the port the first one picked
            while not (d / "port").exists():
                if time.monotonic() > deadline or fake.procs[0].poll() is not None:
                    raise RuntimeError("fake server did not start")
                time.sleep(0.05)
    for i in range(processes):
        while not (d / f"admin-{i}").exists():
            if time.monotonic() > deadline or fake.procs[i].poll() is not None:
                raise RuntimeError(f"fake server {i} did not start")
            time.sleep(0.05)
    fake.pids = [p.pid for p in fake.procs]
    fake.url = f"http://127.0.0.1:{(d / 'port').read_text()}"
    fake.admins = [f"http://127.0.0.1:{(d / f'admin-{i}').read_text()}" for i in range(processes)]
    import httpx

    for a in fake.admins:
        while True:
            try:
                httpx.get(f"{a}/_stats", timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    return fake


# --- CPU accounting ---------------------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes used so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def postgres_pids() -> list[int]:
    """Every PostgreSQL server process on the machine (other users' work included)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() == "postgres":
                    out.append(int(d.name))
            except OSError:
                continue
    return out


class CpuMeter:
    """CPU used by workers, the fake and PostgreSQL between ``start()`` and ``stop()``."""

    def __init__(self, workers: list[int], fakes: list[int]) -> None:
        self.groups = {"workers": workers, "fake": fakes}
        self.before: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        out = {k: cpu_seconds(v) for k, v in self.groups.items()}
        out["postgres"] = cpu_seconds(postgres_pids())
        return out

    def start(self) -> None:
        self.before = self._now()

    def per_send_us(self, sends: int) -> dict[str, float]:
        after = self._now()
        return {k: 1e6 * (after[k] - self.before.get(k, 0.0)) / max(1, sends) for k in after}


# --- the ceiling ------------------------------------------------------------------------------


def _client(
    url: str, requests: int, concurrency: int, start_at: float, tag: str, kind: str
) -> None:
    """One ceiling client process: prints ``{"n", "t0", "t1"}`` (wall clock). ``kind``:
    ``aiohttp`` (a plain, popular async client) or ``lean`` (the senders' own
    ``siyu.messaging.http``, about half aiohttp's CPU per request), on uvloop, with nothing
    else around it: no database, no queue, no rendering."""
    import ssl

    import uvloop
    from tests.fakes.weixin import APPID, SECRET

    params = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}

    def body(i: int) -> dict[str, Any]:
        return {
            "touser": f"ceiling-{tag}-{i}",
            "template_id": "TPL-bench",
            "page": "pages/live?id=42",
            "data": {"thing1": {"value": "双11美妆专场"}, "name2": {"value": f"粉丝{i}"}},
        }

    async def hammer(post: Callable[[int], Awaitable[None]]) -> dict[str, float]:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        todo = iter(range(requests))
        t0 = time.time()

        async def lane() -> None:
            for i in todo:
                await post(i)

        await asyncio.gather(*(lane() for _ in range(concurrency)))
        return {"n": requests, "t0": t0, "t1": time.time()}

    async def with_aiohttp() -> dict[str, float]:
        import aiohttp

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as c:
            async with c.get(f"{url}/cgi-bin/token", params=params) as r:
                token = (await r.json())["access_token"]

            async def post(i: int) -> None:
                async with c.post(
                    f"{url}{SEND_PATH}", params={"access_token": token}, json=body(i)
                ) as r:
                    assert (await r.json())["errcode"] == 0

            return await hammer(post)

    async def with_lean() -> dict[str, float]:
        from siyu.messaging import http

        c = http.Client(limit=concurrency, ssl_context=ssl.create_default_context())
        r = await c.request("GET", http.Target.parse(f"{url}/cgi-bin/token", params))
        target = http.Target.parse(
            f"{url}{SEND_PATH}", {"access_token": json.loads(r.body)["access_token"]}
        )

        async def post(i: int) -> None:
            r = await c.request("POST", target, json.dumps(body(i), ensure_ascii=False).encode())
            assert json.loads(r.body)["errcode"] == 0

        try:
            return await hammer(post)
        finally:
            await c.aclose()

    print(json.dumps(uvloop.run(with_lean() if kind == "lean" else with_aiohttp())), flush=True)


def ceiling(fake: Fake, requests: int, clients: int = 2, concurrency: int = 64) -> float:
    """Requests/s plain async clients get from the fake, the most any sender could: measured
    with aiohttp and with the lean client, both printed; the higher is the ceiling (on a
    2-core machine the clients' own CPU is taken from the fake's, so a heavier client would
    understate it)."""
    rates = {}
    for kind in ("aiohttp", "lean"):
        start_at = time.time() + 3  # every client imported and holding a token by then
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--client",
                    fake.url,
                    str(requests // clients),
                    str(concurrency),
                    str(start_at),
                    str(i),
                    kind,
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(clients)
        ]
        results = []
        for p in procs:
            out, _ = p.communicate(timeout=3600)
            if p.returncode:
                raise RuntimeError("a ceiling client failed")
            results.append(json.loads(out.strip().splitlines()[-1]))
        span = max(r["t1"] for r in results) - min(r["t0"] for r in results)
        rates[kind] = sum(r["n"] for r in results) / span
        fake.reset()
    print(
        "fake server ceiling by client: " + ", ".join(f"{k} {v:,.0f}/s" for k, v in rates.items()),
        flush=True,
    )
    return max(rates.values())


if __name__ == "__main__":
    if sys.argv[1] == "--client":
        _client(
            sys.argv[2],
            int(sys.argv[3]),
            int(sys.argv[4]),
            float(sys.argv[5]),
            sys.argv[6],
            sys.argv[7],
        )
    else:
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        serve_fake(sys.argv[1], int(sys.argv[2]), sys.argv[3])


def add_fake_and_server_args(parser: argparse.ArgumentParser) -> None:
    """The options fanout.py and onsale.py share: the fake's processes and ceiling clients,
    and the PostgreSQL and Redis to run against."""
    parser.add_argument("--ceiling-requests", type=int, default=20_000)
    parser.add_argument("--ceiling-clients", type=int, default=2, help="ceiling client processes")
    parser.add_argument("--fakes", type=int, default=2, help="fake server processes")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "SIYU_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("SIYU_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )


def insert_consenting_members(
    db: Any, *, tenant_id: int, start: int, n: int, template_key: str, now: Any
) -> list[int]:
    """Bulk-insert ``n`` members (openids ``o-bench-<start + i>``), each holding one subscribe
    consent for ``template_key``; their ids. Imported late: the callers fix their settings
    (database, queue) before anything of siyu is imported."""
    from sqlalchemy import insert

    from siyu.members.models import Member
    from siyu.messaging.models import Consent

    ids = db.scalars(
        insert(Member).returning(Member.id),
        [
            {
                "tenant_id": tenant_id,
                "openid": f"o-bench-{start + i}",
                "nickname": f"粉丝{start + i}",
                "avatar_url": "",
                "source_channel": "bench",
                "joined_at": now,
            }
            for i in range(n)
        ],
    ).all()
    db.execute(
        insert(Consent),
        [
            {
                "tenant_id": tenant_id,
                "member_id": mid,
                "template_key": template_key,
                "remaining": 1,
                "updated_at": now,
            }
            for mid in ids
        ],
    )
    return list(ids)

"""The fake WeChat server the fan-out benchmarks send to, in a process of its own, with its
own ceiling: ``benchmarks/fanout.py`` and ``benchmarks/onsale.py`` use it.

    .venv/bin/python benchmarks/fake_wechat.py PORT_FILE      # what start_fake() runs
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.fakes

FAKE_PORT_FILE = "fake.port"


# --- the fake server process ------------------------------------------------------------------


def serve_fake(port_file: str) -> None:
    """Run the fake WeChat server (no consent bookkeeping: 100,000 users) plus /_stats."""
    import socket

    import uvicorn
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from tests.fakes.weixin import FakeWeixin

    fake = FakeWeixin(strict_consent=False, record=False)
    app = fake.asgi()

    async def stats(request: Request) -> JSONResponse:
        counts = fake.delivered
        return JSONResponse(
            {
                "accepted": sum(counts.values()),
                "distinct": len(counts),
                "duplicates": sum(n - 1 for n in counts.values() if n > 1),
                "first_at": fake.first_wall,
                "last_at": fake.last_wall,
            }
        )

    async def reset(request: Request) -> JSONResponse:
        fake.delivered.clear()
        fake.first_wall = None
        fake.last_wall = None
        return JSONResponse({"ok": True})

    app.router.routes.append(Route("/_stats", stats))
    app.router.routes.append(Route("/_reset", reset, methods=["POST"]))
    original = fake._deliver

    def deliver(key: str) -> None:
        now = time.time()
        if fake.first_wall is None:
            fake.first_wall = now
        fake.last_wall = now
        original(key)

    fake.first_wall = None  # type: ignore[attr-defined]
    fake.last_wall = None  # type: ignore[attr-defined]
    fake._deliver = deliver  # type: ignore[method-assign]
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    Path(port_file).write_text(str(sock.getsockname()[1]))
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    )
    server.run(sockets=[sock])


def start_fake(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port_file = tmp / FAKE_PORT_FILE
    proc = subprocess.Popen(
        [sys.executable, __file__, str(port_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while not port_file.exists() or not port_file.read_text():
        if time.monotonic() > deadline:
            raise RuntimeError("fake server did not start")
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port_file.read_text()}"
    import httpx

    while True:
        try:
            httpx.get(f"{url}/_stats", timeout=2)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    return proc, url


def stats(url: str) -> dict[str, Any]:
    import httpx

    return httpx.get(f"{url}/_stats", timeout=10).json()  # type: ignore[no-any-return]


def ceiling(url: str, requests: int, concurrency: int = 64) -> float:
    """Requests/s a plain async client gets from the fake: the most any sender could."""
    import httpx
    from tests.fakes.weixin import APPID, SECRET

    async def main() -> float:
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=30) as c:
            token = (
                await c.get(
                    f"{url}/cgi-bin/token",
                    params={"grant_type": "client_credential", "appid": APPID, "secret": SECRET},
                )
            ).json()["access_token"]
            sem = asyncio.Semaphore(concurrency)

            async def one(i: int) -> None:
                async with sem:
                    r = await c.post(
                        f"{url}/cgi-bin/message/subscribe/send",
                        params={"access_token": token},
                        json={
                            "touser": f"ceiling-{i}",
                            "template_id": "TPL-bench",
                            "page": "pages/live",
                            "data": {"thing1": {"value": "双11美妆专场"}},
                        },
                    )
                    assert r.json()["errcode"] == 0

            t0 = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(requests)))
            return requests / (time.perf_counter() - t0)

    rate = asyncio.run(main())
    httpx.post(f"{url}/_reset", timeout=10)
    return rate


if __name__ == "__main__":
    serve_fake(sys.argv[1])

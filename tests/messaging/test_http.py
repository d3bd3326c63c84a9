"""The channel APIs' HTTP client (siyu.messaging.http) against small loopback servers that
answer the way real HTTP/1.1 servers do, including the unfriendly ways."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from siyu.messaging import http
from siyu.messaging.channels import ChannelError, Credentials, Sender

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    line, *rest = head.split("\r\n")
    headers = {k.lower(): v for k, v in (h.split(": ", 1) for h in rest if h)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return line, headers, body


def in_own_loop(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``main`` on a fresh event loop in a thread of its own: whatever loop an earlier test
    left in this thread (Playwright's sync API keeps one) cannot get in the way."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as err:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(err)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def run(handler: Handler, scenario: Callable[[str], Awaitable[None]]) -> None:
    async def main() -> None:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await scenario(f"http://127.0.0.1:{port}")
        finally:
            server.close()

    in_own_loop(main)


def client(timeout: float = 5.0) -> http.Client:
    return http.Client(limit=4, timeout=timeout, ssl_context=ssl.create_default_context())


def test_keep_alive_json_posts_reuse_one_connection_and_carry_the_query():
    seen: list[tuple[str, dict[str, str], bytes]] = []
    connections = 0

    async def handler(reader, writer):
        nonlocal connections
        connections += 1
        while not reader.at_eof():
            try:
                line, headers, body = await read_request(reader)
            except asyncio.IncompleteReadError:
                break
            seen.append((line, headers, body))
            answer = json.dumps({"errcode": 0, "echo": json.loads(body)}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))
            await writer.drain()
        writer.close()

    async def scenario(base):
        c = client()
        target = http.Target.parse(
            f"{base}/cgi-bin/message/subscribe/send", {"access_token": "a b&c"}
        )
        for i in range(3):
            r = await c.request("POST", target, json.dumps({"i": i, "名": "粉丝"}).encode())
            assert (r.status, r.reason) == (200, "OK")
            assert json.loads(r.body)["echo"] == {"i": i, "名": "粉丝"}
        await c.aclose()

    run(handler, scenario)
    assert connections == 1
    assert [s[0] for s in seen] == [
        "POST /cgi-bin/message/subscribe/send?access_token=a%20b%26c HTTP/1.1"
    ] * 3
    assert seen[0][1]["content-type"] == "application/json"
    assert seen[0][1]["host"].startswith("127.0.0.1:")


def test_chunked_answers_and_connection_close_are_followed():
    connections = 0

    async def handler(reader, writer):
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b'5\r\n{"err\r\nb\r\ncode": 0, "\r\n9\r\nmsgid":7}\r\n0\r\n\r\n'
        )
        await writer.drain()
        writer.close()

    async def scenario(base):
        c = client()
        target = http.Target.parse(f"{base}/x")
        for _ in range(2):  # the closed connection is not reused: a new one is opened
            r = await c.request("GET", target)
            assert json.loads(r.body) == {"errcode": 0, "msgid": 7}
        await c.aclose()

    run(handler, scenario)
    assert connections == 2


def test_a_server_that_hangs_up_or_stalls_gives_errors_not_hangs():
    async def hang_up(reader, writer):
        await read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"errc')
        await writer.drain()
        writer.close()

    async def hung_up(base):
        c = client()
        with pytest.raises(http.HTTPError, match="closed before the answer"):
            await c.request("GET", http.Target.parse(f"{base}/x"))
        await c.aclose()

    run(hang_up, hung_up)

    async def stall(reader, writer):
        await read_request(reader)
        await asyncio.sleep(5)

    async def stalled(base):
        c = client(timeout=0.2)
        with pytest.raises(TimeoutError):
            await c.request("GET", http.Target.parse(f"{base}/x"))
        await c.aclose()

    run(stall, stalled)


def test_refused_connections_and_bad_urls_are_clear():
    async def scenario():
        c = client()
        with pytest.raises(http.HTTPError, match="cannot connect"):
            await c.request("GET", http.Target.parse("http://127.0.0.1:9/x"))
        await c.aclose()

    in_own_loop(scenario)
    with pytest.raises(ValueError, match="not an http"):
        http.Target.parse("ftp://example.com/x")


def test_the_sender_maps_transport_failures_to_retryable_outcomes(monkeypatch):
    """A garbled answer and a refused connection become retryable channel errors: the
    outbox tries again later instead of marking the member undeliverable."""

    async def garbled(reader, writer):
        await read_request(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        writer.close()

    async def scenario(base):
        sender = Sender({1: Credentials(None, None, None, {})})
        with pytest.raises(ChannelError) as err:
            await sender._request("GET", f"{base}/cgi-bin/token", {"appid": "x"})
        assert (err.value.code, err.value.retryable) == ("unreachable", True)
        with pytest.raises(ChannelError) as err:
            await sender._request("GET", "http://127.0.0.1:9/cgi-bin/token", {})
        assert (err.value.code, err.value.retryable) == ("unreachable", True)
        await sender.aclose()

    run(garbled, scenario)

"""A lean HTTP/1.1 client for the channel APIs: keep-alive connections per host, at most
``limit`` of them, JSON bodies, one answer per request, no redirects, cookies or compression.

Why not aiohttp, which siyu used before: a broadcast is thousands of small POSTs a second to one
host, and at that rate the client's CPU is the ceiling of the whole fan-out. Against the fake
WeChat server (benchmarks/README.md, ``fanout.py``) aiohttp on
uvloop spent ~143 µs of CPU per request, mostly in machinery these calls never use (cookie
jars, tracing, redirect and auth handling, URL rebuilding); this client spends a fraction of
that. Parsing is not hand-written: responses go through httptools, the C HTTP parser uvicorn
runs on (chunked bodies, keep-alive rules); TLS is asyncio's, verified with the caller's
``ssl.SSLContext``.

Failures raise ``HTTPError`` (timeouts ``TimeoutError``): a connection refused, reset or
closed before the whole answer came back. A request is never sent twice by this module:
retrying is the outbox's business (it knows what may be repeated).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass
from typing import cast
from urllib.parse import quote, urlencode, urlsplit

import httptools


class HTTPError(Exception):
    """The request did not get a complete answer (refused, reset, closed, malformed)."""


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    body: bytes


@dataclass(frozen=True)
class Target:
    """A parsed URL: where to connect and the request line's target."""

    scheme: str
    host: str
    port: int
    path: str  # path and query, encoded

    @property
    def authority(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, url: str, params: dict[str, str] | None = None) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        path = parts.path or "/"
        query = "&".join(q for q in (parts.query, urlencode(params or {}, quote_via=quote)) if q)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, f"{path}?{query}" if query else path)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Response] | None = None
        self.reason = b""
        self.body: list[bytes] = []
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as err:
            self._fail(HTTPError(f"malformed answer: {err}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(HTTPError(f"connection closed before the answer: {exc or 'by the server'}"))

    # httptools callbacks
    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        response = Response(
            self.parser.get_status_code(), self.reason.decode(), b"".join(self.body)
        )
        self.reason, self.body = b"", []
        if not self.parser.should_keep_alive():
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def _fail(self, err: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(err)

    def send(self, request: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Client:
    """Keep-alive connections per (scheme, host, port), at most ``limit`` per host; requests
    beyond that wait for a free connection."""

    def __init__(self, *, limit: int = 128, timeout: float = 10.0, ssl_context: ssl.SSLContext):
        self.limit = limit
        self.timeout = timeout
        self.ssl_context = ssl_context
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._slots: dict[tuple[str, str, int], asyncio.Semaphore] = {}
        self._closed = False

    async def request(self, method: str, target: Target, body: bytes | None = None) -> Response:
        """Send one request and read its answer within ``timeout`` seconds."""
        if self._closed:
            raise HTTPError("the client is closed")
        key = (target.scheme, target.host, target.port)
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = asyncio.Semaphore(self.limit)
        head = f"{method} {target.path} HTTP/1.1\r\nHost: {target.authority}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        request = (head + "\r\n").encode() + (body or b"")
        async with asyncio.timeout(self.timeout), slots:
            conn = await self._connection(key)
            try:
                response = await conn.send(request)
            except BaseException:
                conn.close()  # a half-read answer must not reach the next request
                raise
            if not conn.closed:
                self._idle.setdefault(key, deque()).append(conn)
            return response

    async def _connection(self, key: tuple[str, str, int]) -> _Connection:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                _Connection,
                host,
                port,
                ssl=self.ssl_context if scheme == "https" else None,
                server_hostname=host if scheme == "https" else None,
            )
        except OSError as err:
            raise HTTPError(f"cannot connect to {host}:{port}: {err}") from None
        return conn

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()

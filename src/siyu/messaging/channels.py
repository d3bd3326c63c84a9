"""Channel adapters: real HTTP clients for WeChat and WeCom, run by the dispatch worker.

Protocols (see DESIGN.md "Protocol notes"):

- Mini-program subscribe message: ``GET {wechat}/cgi-bin/token?grant_type=client_credential
  &appid&secret`` → ``{"access_token", "expires_in"}``; ``POST {wechat}/cgi-bin/message/
  subscribe/send?access_token=…`` with ``touser, template_id, page, data``.
- Official-account template message: the same token endpoint with the account's appid, then
  ``POST {wechat}/cgi-bin/message/template/send`` → ``{"errcode": 0, "msgid"}``.
- WeCom group robot: ``POST {wecom}/cgi-bin/webhook/send?key=KEY`` (text ≤ 2048 bytes,
  markdown ≤ 4096 bytes; 20 messages a minute per robot).
- WeCom customer-group mass message: ``GET {wecom}/cgi-bin/gettoken?corpid&corpsecret``, then
  ``POST {wecom}/cgi-bin/externalcontact/add_msg_template`` (``chat_type: "group"``,
  ``sender``, ``chat_id_list``, ``text``) → ``msgid``; the group owner confirms in the client,
  and ``externalcontact/get_groupmsg_send_result`` tells what went out.

All answer HTTP 200 with ``{"errcode", "errmsg"}``. Outcomes: 0 sent; 40001/40014/42001 (token
invalid or expired) → the cached token is dropped and the call made once more; 45009 (quota),
-1 (busy), HTTP 5xx and timeouts → retried later with exponential backoff, up to
``MAX_ATTEMPTS``; anything else (43101 no consent, 47003 bad data, 93000 bad robot key, 40003
bad openid…) → undeliverable, with the platform's message.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import json
import os
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from siyu.core.settings import get_settings
from siyu.messaging import http
from siyu.messaging.models import (
    FAILED,
    GROUP_MASS,
    OA_TEMPLATE,
    QUEUED,
    ROBOT,
    SENT,
    SUBSCRIBE,
    UNDELIVERABLE,
)
from siyu.messaging.service import MAX_ATTEMPTS, Job, Outcome, backoff

TOKEN_ERRORS = {40001, 40014, 42001}
RETRYABLE = {-1, 45009, 45033}
# Per-channel rate limits (messages, seconds); a tenant may override them in its settings
# under ``message_rate_limits`` ({"robot": [20, 60], "subscribe": [1000, 1]}).
DEFAULT_LIMITS: dict[str, tuple[int, int]] = {ROBOT: (20, 60)}


class ChannelError(Exception):
    def __init__(self, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


# --- access tokens ----------------------------------------------------------------------------


class TokenCache:
    """Access tokens by (host, app id): in this process, and in Redis when configured so
    every worker shares one token (WeChat invalidates the previous token on each fetch)."""

    def __init__(self) -> None:
        self._local: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _redis(self) -> Any:
        url = get_settings().redis_url
        if not url:
            return None
        return _redis_client(url)

    def get(self, key: str) -> str | None:
        with self._lock:
            found = self._local.get(key)
        if found and found[1] > time.time():
            return found[0]
        r = self._redis()
        if r is not None:
            value = r.get(f"{get_settings().queue_name}:token:{key}")
            if value:
                ttl = r.ttl(f"{get_settings().queue_name}:token:{key}")
                with self._lock:
                    self._local[key] = (value.decode(), time.time() + max(1, int(ttl)))
                return str(value.decode())
        return None

    def put(self, key: str, token: str, expires_in: int) -> None:
        # Refresh five minutes early (at least half the lifetime): no call carries a token
        # that expires on the way.
        ttl = max(1, expires_in - min(300, expires_in // 2))
        with self._lock:
            self._local[key] = (token, time.time() + ttl)
        r = self._redis()
        if r is not None:
            r.set(f"{get_settings().queue_name}:token:{key}", token, ex=ttl)

    def clear(self) -> None:
        """Forget every token (tests; a process that changed credentials)."""
        with self._lock:
            self._local.clear()
        r = self._redis()
        if r is not None:
            for name in r.scan_iter(f"{get_settings().queue_name}:token:*"):
                r.delete(name)

    def drop(self, key: str, token: str) -> None:
        with self._lock:
            if self._local.get(key, ("",))[0] == token:
                self._local.pop(key, None)
        r = self._redis()
        if r is not None:
            name = f"{get_settings().queue_name}:token:{key}"
            if (r.get(name) or b"").decode() == token:
                r.delete(name)


tokens = TokenCache()
_redis_clients: dict[str, Any] = {}


def _redis_client(url: str) -> Any:
    import redis

    if url not in _redis_clients:
        _redis_clients[url] = redis.Redis.from_url(url)
    return _redis_clients[url]


# --- rate limits ------------------------------------------------------------------------------


class RateLimiter:
    """Fixed-window counters per key: in Redis (shared by every worker process) when
    configured, else in this process."""

    def __init__(self) -> None:
        self._local: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._local.clear()
        url = get_settings().redis_url
        if url:
            r = _redis_client(url)
            for name in r.scan_iter(f"{get_settings().queue_name}:rate:*"):
                r.delete(name)

    def take(self, key: str, limit: int, per: int) -> float:
        """0 if a message may go now, else the seconds until the window reopens."""
        now = time.time()
        window = int(now // per)
        wait = (window + 1) * per - now
        url = get_settings().redis_url
        if url:
            r = _redis_client(url)
            name = f"{get_settings().queue_name}:rate:{key}:{window}"
            pipe = r.pipeline()
            pipe.incr(name)
            pipe.expire(name, per + 1)
            count = int(pipe.execute()[0])
            return 0.0 if count <= limit else wait
        with self._lock:
            w, count = self._local.get(key, (window, 0))
            if w != window:
                w, count = window, 0
            if count >= limit:
                return wait
            self._local[key] = (w, count + 1)
        return 0.0


limiter = RateLimiter()


# --- the clients ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    wechat: dict[str, str] | None
    official_account: dict[str, str] | None
    wecom: dict[str, str] | None
    limits: dict[str, tuple[int, int]]


_ssl_context: ssl.SSLContext | None = None


def ssl_context() -> ssl.SSLContext:
    """One verifying TLS context per process: loading the CA bundle costs ~0.2 s, too much to
    pay for every dispatch job."""
    global _ssl_context
    if _ssl_context is None:
        import certifi

        _ssl_context = ssl.create_default_context(cafile=certifi.where())
    return _ssl_context


class Sender:
    """Sends jobs concurrently over keep-alive connections (``messaging.http``, at most
    ``concurrency`` per host); maps answers to outcomes. Create it inside the event loop that
    uses it (``sending_loop()`` keeps one per process).

    64 in flight per process by default: at ~50 ms a call to WeChat that carries ~1,300 sends
    a second per worker process (more processes carry more), and against the loopback fake of
    ``benchmarks/fanout.py`` it costs less CPU on both sides than 128 did (fewer connections,
    more answers per wake-up)."""

    def __init__(
        self,
        credentials: dict[int, Credentials] | None = None,
        *,
        concurrency: int = 64,
        timeout: float = 10.0,
    ) -> None:
        self.credentials: dict[int, Credentials] = dict(credentials or {})
        self.concurrency = concurrency
        self._http = http.Client(limit=concurrency, timeout=timeout, ssl_context=ssl_context())
        self._token_locks: dict[str, asyncio.Lock] = {}
        # (url, query) → parsed target: every send of a batch goes to the same URL with the
        # same access token, so it is parsed and encoded once, not per request.
        self._targets: dict[tuple[str, tuple[tuple[str, str], ...]], http.Target] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Sender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def send_all(self, jobs: Sequence[Job]) -> list[Outcome]:
        """One outcome per job, in order. At most ``concurrency`` lanes, each sending one job
        after another: a task per job of a 500-job batch, most of them queued for a
        connection, cost 77 µs of CPU a send against 50 (and the server more, too)."""
        outcomes: list[Outcome | None] = [None] * len(jobs)
        todo = iter(enumerate(jobs))

        async def lane() -> None:
            for i, job in todo:
                outcomes[i] = await self.send(job)

        async with asyncio.TaskGroup() as lanes:  # a lane that fails stops the others
            for _ in range(min(self.concurrency, len(jobs))):
                lanes.create_task(lane())
        return cast("list[Outcome]", outcomes)

    async def send(self, job: Job) -> Outcome:
        creds = self.credentials[job.tenant_id]
        limit = creds.limits.get(job.channel) or DEFAULT_LIMITS.get(job.channel)
        if limit is not None:
            wait = limiter.take(f"{job.tenant_id}:{job.rate_key}", *limit)
            if wait > 0:
                return Outcome(
                    job.delivery_id,
                    QUEUED,
                    error_code="rate_limited",
                    error_message="local rate limit",
                    retry_in=wait,
                    counts_attempt=False,
                )
        try:  # at most ``concurrency`` on the wire: the connector's limit queues the rest
            external_id = await self._dispatch(job, creds)
        except ChannelError as err:
            return self._failure(job, err)
        return Outcome(
            job.delivery_id,
            SENT,
            external_id=external_id,
            awaits_owner=job.channel == GROUP_MASS and bool(external_id),
        )

    def _failure(self, job: Job, err: ChannelError) -> Outcome:
        if err.code == "43101" and job.after_interruption:
            # The interrupted attempt spent the member's single consent: WeChat delivered it.
            return Outcome(
                job.delivery_id,
                SENT,
                error_code="43101",
                error_message="delivered by the interrupted attempt (consent already used)",
            )
        if not err.retryable:
            return Outcome(
                job.delivery_id, UNDELIVERABLE, error_code=err.code, error_message=err.message
            )
        if job.attempts >= MAX_ATTEMPTS:
            return Outcome(job.delivery_id, FAILED, error_code=err.code, error_message=err.message)
        return Outcome(
            job.delivery_id,
            QUEUED,
            error_code=err.code,
            error_message=err.message,
            retry_in=backoff(job.attempts),
        )

    async def _dispatch(self, job: Job, creds: Credentials) -> str:
        settings = get_settings()  # read per call: tests point the hosts at their fakes
        base_wechat = settings.wechat_api_base.rstrip("/")
        base_wecom = settings.wecom_api_base.rstrip("/")
        if job.channel == SUBSCRIBE:
            app = _need(creds.wechat, "mini program")
            data = await self._with_token(
                base_wechat,
                app["appid"],
                app["secret"],
                "/cgi-bin/message/subscribe/send",
                job.payload,
                wecom=False,
            )
            return str(data.get("msgid", ""))
        if job.channel == OA_TEMPLATE:
            app = _need(creds.official_account, "official account")
            data = await self._with_token(
                base_wechat,
                app["appid"],
                app["secret"],
                "/cgi-bin/message/template/send",
                job.payload,
                wecom=False,
            )
            return str(data.get("msgid", ""))
        if job.channel == ROBOT:
            body = {k: v for k, v in job.payload.items() if k != "key"}
            data = await self._post(
                f"{base_wecom}/cgi-bin/webhook/send", {"key": job.payload["key"]}, body
            )
            _check(data)
            return ""
        if job.channel == GROUP_MASS:
            corp = _need(creds.wecom, "WeCom")
            body = {k: v for k, v in job.payload.items() if k != "chat_id"}
            body["chat_id_list"] = [job.payload["chat_id"]]
            data = await self._with_token(
                base_wecom,
                corp["corpid"],
                corp["secret"],
                "/cgi-bin/externalcontact/add_msg_template",
                body,
                wecom=True,
            )
            return str(data.get("msgid", ""))
        raise ChannelError("channel", f"unknown channel {job.channel}", retryable=False)

    async def _post(self, url: str, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        return await self._request("POST", url, params, body)

    def _target(self, url: str, params: dict[str, str]) -> http.Target:
        key = (url, tuple(params.items()))
        found = self._targets.get(key)
        if found is None:
            if len(self._targets) > 1000:  # tokens rotate every two hours: forget old ones
                self._targets.clear()
            found = self._targets[key] = http.Target.parse(url, params)
        return found

    async def _request(
        self, method: str, url: str, params: dict[str, str], body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        data = None if body is None else _dumps(body).encode()
        try:
            resp = await self._http.request(method, self._target(url, params), data)
        except TimeoutError:
            raise ChannelError("timeout", "no answer in time", retryable=True) from None
        except http.HTTPError as err:
            raise ChannelError("unreachable", str(err), retryable=True) from None
        return _json(resp.status, resp.reason, resp.body)

    async def _token(self, base: str, appid: str, secret: str, *, wecom: bool) -> str:
        key = f"{base}|{appid}"
        found = tokens.get(key)
        if found:
            return found
        lock = self._token_locks.setdefault(key, asyncio.Lock())
        async with lock:  # one fetch for every job of the batch waiting on it
            found = tokens.get(key)
            if found:
                return found
            if wecom:
                data = await self._request(
                    "GET", f"{base}/cgi-bin/gettoken", {"corpid": appid, "corpsecret": secret}
                )
            else:
                data = await self._request(
                    "GET",
                    f"{base}/cgi-bin/token",
                    {"grant_type": "client_credential", "appid": appid, "secret": secret},
                )
            _check(data)
            token = str(data.get("access_token") or "")
            if not token:
                raise ChannelError("token", "no access_token in the answer", retryable=True)
            tokens.put(key, token, int(data.get("expires_in") or 7200))
            return token

    async def _with_token(
        self, base: str, appid: str, secret: str, path: str, body: dict[str, Any], *, wecom: bool
    ) -> dict[str, Any]:
        key = f"{base}|{appid}"
        for attempt in (1, 2):
            token = await self._token(base, appid, secret, wecom=wecom)
            data = await self._post(f"{base}{path}", {"access_token": token}, body)
            code = _errcode(data)
            if code in TOKEN_ERRORS and attempt == 1:
                tokens.drop(key, token)  # refetch once, then give the error its due
                continue
            _check(data)
            return data
        raise AssertionError("unreachable")

    async def group_mass_result(
        self, creds: Credentials, msgid: str, userid: str
    ) -> list[dict[str, Any]]:
        """``get_groupmsg_send_result``: one row per group of the task (``chat_id``,
        ``status`` 0 not sent yet / 1 sent / 2 not a customer / 3 already got a mass message
        today, ``send_time``), every page of it."""
        corp = _need(creds.wecom, "WeCom")
        base = get_settings().wecom_api_base.rstrip("/")
        rows: list[dict[str, Any]] = []
        cursor = ""
        while True:
            data = await self._with_token(
                base,
                corp["corpid"],
                corp["secret"],
                "/cgi-bin/externalcontact/get_groupmsg_send_result",
                {"msgid": msgid, "userid": userid, "limit": 1000, "cursor": cursor},
                wecom=True,
            )
            rows += list(data.get("send_list") or [])
            cursor = str(data.get("next_cursor") or "")
            if not cursor:
                return rows


def _need(cfg: dict[str, str] | None, what: str) -> dict[str, str]:
    if not cfg:
        raise ChannelError(
            "not_configured", f"{what} credentials are not configured", retryable=False
        )
    return cfg


# One encoder for every request body (json.dumps with options builds one per call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _dumps(body: Any) -> str:
    return _ENCODER.encode(body)


def _json(status: int, reason: str, raw: bytes) -> dict[str, Any]:
    if status >= 500:
        raise ChannelError(f"http_{status}", reason, retryable=True)
    if status >= 400:
        raise ChannelError(f"http_{status}", reason, retryable=False)
    try:
        data = json.loads(raw)
    except ValueError:
        raise ChannelError("bad_answer", "the answer is not JSON", retryable=True) from None
    if not isinstance(data, dict):
        raise ChannelError("bad_answer", "the answer is not a JSON object", retryable=True)
    return data


def _errcode(data: dict[str, Any]) -> int:
    try:
        return int(data.get("errcode") or 0)
    except (TypeError, ValueError):
        return -1


def _check(data: dict[str, Any]) -> None:
    code = _errcode(data)
    if code == 0:
        return
    retryable = code in RETRYABLE or code in TOKEN_ERRORS
    raise ChannelError(str(code), str(data.get("errmsg", ""))[:500], retryable=retryable)


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (less CPU per request than asyncio's loop), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class SendingLoop:
    """One event loop per process, in a daemon thread, with one warm ``Sender``: dispatch jobs
    (Huey worker threads) hand it their batches and wait, so connections, TLS sessions and
    access tokens outlive a job, many requests are in flight per process whatever the number
    of threads, and the first send of a broadcast pays no set-up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sender: Sender | None = None
        self._pid = 0

    def _ensure(self) -> tuple[asyncio.AbstractEventLoop, Sender]:
        with self._lock:
            if self._loop is None or self._sender is None or self._pid != os.getpid():
                loop = _new_loop()
                thread = threading.Thread(target=loop.run_forever, name="siyu-sender", daemon=True)
                thread.start()

                async def make() -> Sender:
                    return Sender()

                self._sender = asyncio.run_coroutine_threadsafe(make(), loop).result()
                self._loop, self._pid = loop, os.getpid()
                atexit.register(self.close)
            return self._loop, self._sender

    def close(self) -> None:
        """Close the connection pool (at exit: nothing is in flight any more)."""
        with self._lock:
            loop, sender, self._loop, self._sender = self._loop, self._sender, None, None
        if loop is None or sender is None or not loop.is_running():
            return
        with contextlib.suppress(Exception):  # exiting anyway
            asyncio.run_coroutine_threadsafe(sender.aclose(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)

    def warm(self) -> None:
        """Start the loop and the connection pool now (a worker process at start-up)."""
        self._ensure()

    def group_mass_result(
        self, creds: Credentials, msgid: str, userid: str
    ) -> list[dict[str, Any]]:
        """``Sender.group_mass_result`` on the process's loop, waited for."""
        loop, sender = self._ensure()
        call = sender.group_mass_result(creds, msgid, userid)
        return asyncio.run_coroutine_threadsafe(call, loop).result(timeout=60)

    def submit(
        self, jobs: Sequence[Job], credentials: dict[int, Credentials]
    ) -> concurrent.futures.Future[list[Outcome]]:
        """Send ``jobs`` on the process's loop; the future holds one outcome per job."""
        loop, sender = self._ensure()

        async def go() -> list[Outcome]:
            sender.credentials.update(credentials)
            return await sender.send_all(jobs)

        return asyncio.run_coroutine_threadsafe(go(), loop)


sending = SendingLoop()


def credentials_of(settings: dict[str, Any]) -> Credentials:
    limits = {
        str(k): (int(v[0]), int(v[1]))
        for k, v in (settings.get("message_rate_limits") or {}).items()
        if isinstance(v, list | tuple) and len(v) == 2
    }
    return Credentials(
        wechat=settings.get("wechat") or None,
        official_account=settings.get("official_account") or None,
        wecom=settings.get("wecom") or None,
        limits=limits,
    )

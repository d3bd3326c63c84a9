"""A fake of the WeChat and WeCom message APIs the messaging adapters speak.

Endpoints, as published (developers.weixin.qq.com, developer.work.weixin.qq.com); every answer
is HTTP 200 JSON with ``errcode``/``errmsg``:

WeChat (mini program and official account share the host):
- ``GET /cgi-bin/token?grant_type=client_credential&appid&secret`` → ``{"access_token",
  "expires_in": 7200}``; 40013 bad appid, 40125 bad secret. A new token does not revoke the
  previous one here (WeChat keeps it valid for 5 minutes).
- ``POST /cgi-bin/message/subscribe/send?access_token=`` ``{touser, template_id, page, data}``:
  40001 invalid token, 42001 expired token, 43101 the user has no consent left for the template
  (one consent, one message), 47003 a data value breaks its field's rule (``thing`` ≤ 20
  characters…), 45009 quota reached.
- ``POST /cgi-bin/message/template/send?access_token=`` (official account) → ``msgid``.

WeCom:
- ``GET /cgi-bin/gettoken?corpid&corpsecret`` → ``{"errcode": 0, "access_token",
  "expires_in"}``; 40013 bad corpid, 40001 bad secret.
- ``POST /cgi-bin/webhook/send?key=`` group robot: 93000 bad key, 45009 more than 20 messages
  a minute, 40058 text over 2048 bytes / markdown over 4096 bytes.
- ``POST /cgi-bin/externalcontact/add_msg_template?access_token=`` ``{chat_type: "group",
  sender, chat_id_list, text}`` → ``{"msgid", "fail_list": []}``.
- ``POST /cgi-bin/externalcontact/get_groupmsg_send_result?access_token=`` ``{msgid,
  userid}`` → ``{"send_list": [{"chat_id", "userid", "status", "send_time"}]}``.

Tests steer it: ``grant`` consents, ``fail_next`` answers an error code N times, ``expire``
tokens, ``slow`` answers. Everything delivered is counted in ``delivered`` (per recipient key)
so duplicates and losses are counted at the server, like the benchmark does.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.server import serve

APPID = "wx0123456789abcdef"
SECRET = "fake-mini-program-secret-0123456789"
OA_APPID = "wxoa0123456789abcd"
OA_SECRET = "fake-official-account-secret-012345"
CORPID = "ww0123456789abcdef"
CORPSECRET = "fake-wecom-customer-contact-secret"
ROBOT_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"

LIMITS = {"thing": 20, "character_string": 32, "phrase": 5, "name": 10, "number": 32}


@dataclass
class FakeWeixin:
    base_url: str = ""
    # Consents are checked only when strict (the benchmark turns it off: 100,000 users).
    strict_consent: bool = True
    consents: Counter[tuple[str, str]] = field(default_factory=Counter)
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> (app, expiry)
    token_fetches: Counter[str] = field(default_factory=Counter)
    failures: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    delivered: Counter[str] = field(default_factory=Counter)
    requests: list[dict[str, Any]] = field(default_factory=list)
    robot_keys: set[str] = field(default_factory=lambda: {ROBOT_KEY})
    robot_window: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    mass_messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What the group owner did with a mass message, per chat id (get_groupmsg_send_result's
    # status): 0 not confirmed yet, 1 sent (the default), 2 not a customer group, 3 limit.
    owner_status: dict[str, int] = field(default_factory=dict)
    delay: float = 0.0
    record: bool = True
    first_at: float | None = None
    # Several fake processes behind one port (the benchmarks) share this key: a token one of
    # them issued is then valid at every other (signed, not looked up).
    signing_key: bytes = b""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self._lock:
            self.strict_consent = True
            self.consents.clear()
            self.tokens.clear()
            self.token_fetches.clear()
            self.failures.clear()
            self.delivered.clear()
            self.requests.clear()
            self.robot_keys = {ROBOT_KEY}
            self.robot_window.clear()
            self.mass_messages.clear()
            self.owner_status.clear()
            self.delay = 0.0
            self.record = True
            self.first_at = None

    # --- steering ------------------------------------------------------------------------

    def grant(self, openid: str, template_id: str, n: int = 1) -> None:
        """The user tapped "allow" in wx.requestSubscribe ``n`` times."""
        with self._lock:
            self.consents[(openid, template_id)] += n

    def fail_next(self, endpoint: str, errcode: int, times: int = 1) -> None:
        """Answer ``errcode`` for the next ``times`` calls to ``endpoint`` ("subscribe",
        "template", "robot", "add_msg_template"; "subscribe:http" answers HTTP 502)."""
        with self._lock:
            self.failures[endpoint].extend([errcode] * times)

    def expire_tokens(self) -> None:
        """Every issued token now answers 42001 (expired)."""
        with self._lock:
            self.tokens = {t: (app, 0.0) for t, (app, _exp) in self.tokens.items()}

    def revoke_tokens(self) -> None:
        """Every issued token now answers 40001 (invalid)."""
        with self._lock:
            self.tokens.clear()

    # --- protocol ------------------------------------------------------------------------

    def _failure(self, endpoint: str) -> int | None:
        with self._lock:
            queue = self.failures.get(endpoint)
            if queue:
                return queue.pop(0)
        return None

    def _sign(self, app: str, expiry: int) -> str:
        mac = hmac.new(self.signing_key, f"{app}.{expiry}".encode(), hashlib.sha256)
        return f"{app}.{expiry}.{mac.hexdigest()[:32]}"

    def _issue(self, app: str) -> dict[str, Any]:
        expiry = int(time.time()) + 7200
        token = self._sign(app, expiry) if self.signing_key else secrets.token_urlsafe(24)
        with self._lock:
            self.tokens[token] = (app, expiry)
            self.token_fetches[app] += 1
        return {"access_token": token, "expires_in": 7200}

    def _token_error(self, params: dict[str, str]) -> dict[str, Any] | None:
        token = params.get("access_token", "")
        found = self.tokens.get(token)
        if found is None and self.signing_key and token.count(".") == 2:
            app, expiry, _mac = token.split(".")
            if expiry.isdigit() and hmac.compare_digest(token, self._sign(app, int(expiry))):
                found = (app, float(expiry))
        if found is None:
            return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"}
        if found[1] < time.time():
            return {"errcode": 42001, "errmsg": "access_token expired"}
        return None

    def token(self, params: dict[str, str]) -> dict[str, Any]:
        if params.get("grant_type") != "client_credential":
            return {"errcode": 40002, "errmsg": "invalid grant_type"}
        apps = {APPID: SECRET, OA_APPID: OA_SECRET}
        if params.get("appid") not in apps:
            return {"errcode": 40013, "errmsg": "invalid appid"}
        if params.get("secret") != apps[params["appid"]]:
            return {"errcode": 40125, "errmsg": "invalid appsecret"}
        return self._issue(params["appid"])

    def gettoken(self, params: dict[str, str]) -> dict[str, Any]:
        if params.get("corpid") != CORPID:
            return {"errcode": 40013, "errmsg": "invalid corpid"}
        if params.get("corpsecret") != CORPSECRET:
            return {"errcode": 40001, "errmsg": "invalid secret"}
        return {"errcode": 0, "errmsg": "ok", **self._issue(CORPID)}

    def _deliver(self, key: str) -> None:
        with self._lock:
            if self.first_at is None:
                self.first_at = time.monotonic()
            self.delivered[key] += 1

    def subscribe_send(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        if err := self._token_error(params):
            return err
        if (code := self._failure("subscribe")) is not None:
            return {"errcode": code, "errmsg": "injected"}
        touser, template_id = str(body.get("touser", "")), str(body.get("template_id", ""))
        if not touser:
            return {"errcode": 40003, "errmsg": "invalid openid"}
        if not template_id:
            return {"errcode": 40037, "errmsg": "invalid template_id"}
        data = body.get("data")
        if not isinstance(data, dict) or not data:
            return {"errcode": 47003, "errmsg": "argument invalid! data is empty"}
        for key, entry in data.items():
            value = entry.get("value") if isinstance(entry, dict) else None
            if not isinstance(value, str) or not value:
                return {"errcode": 47003, "errmsg": f"argument invalid! data.{key}.value is empty"}
            limit = LIMITS.get(key.rstrip("0123456789"))
            if limit is not None and len(value) > limit:
                return {"errcode": 47003, "errmsg": f"argument invalid! data.{key}.value too long"}
        if self.strict_consent:
            with self._lock:
                if self.consents[(touser, template_id)] <= 0:
                    return {"errcode": 43101, "errmsg": "user refuse to accept the msg"}
                self.consents[(touser, template_id)] -= 1
        self._deliver(f"subscribe:{touser}")
        if self.record:
            with self._lock:
                self.requests.append({"endpoint": "subscribe", **body})
        return {"errcode": 0, "errmsg": "ok", "msgid": secrets.randbelow(10**12)}

    def template_send(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        if err := self._token_error(params):
            return err
        if (code := self._failure("template")) is not None:
            return {"errcode": code, "errmsg": "injected"}
        if not body.get("touser") or not body.get("template_id"):
            return {"errcode": 40003, "errmsg": "invalid openid"}
        self._deliver(f"template:{body['touser']}")
        with self._lock:
            self.requests.append({"endpoint": "template", **body})
        return {"errcode": 0, "errmsg": "ok", "msgid": secrets.randbelow(10**12)}

    def robot_send(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        key = params.get("key", "")
        if key not in self.robot_keys:
            return {"errcode": 93000, "errmsg": "invalid webhook url"}
        if (code := self._failure("robot")) is not None:
            return {"errcode": code, "errmsg": "injected"}
        now = time.time()
        with self._lock:
            window = [t for t in self.robot_window[key] if t > now - 60]
            if len(window) >= 20:
                return {"errcode": 45009, "errmsg": "api freq out of limit"}
            window.append(now)
            self.robot_window[key] = window
        msgtype = body.get("msgtype")
        if msgtype not in ("text", "markdown", "news", "image"):
            return {"errcode": 40008, "errmsg": "invalid message type"}
        content = str((body.get(msgtype) or {}).get("content", ""))
        limit = 2048 if msgtype == "text" else 4096
        if msgtype in ("text", "markdown") and (not content or len(content.encode()) > limit):
            return {"errcode": 40058, "errmsg": "content exceed max length"}
        self._deliver(f"robot:{key}")
        with self._lock:
            self.requests.append({"endpoint": "robot", "key": key, **body})
        return {"errcode": 0, "errmsg": "ok"}

    def add_msg_template(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        if err := self._token_error(params):
            return err
        if (code := self._failure("add_msg_template")) is not None:
            return {"errcode": code, "errmsg": "injected"}
        if body.get("chat_type") != "group" or not body.get("sender"):
            return {"errcode": 40003, "errmsg": "invalid sender"}
        if not (body.get("text") or {}).get("content") and not body.get("attachments"):
            return {"errcode": 41048, "errmsg": "content empty"}
        if len(body.get("attachments") or []) > 9:
            return {"errcode": 41063, "errmsg": "too many attachments"}
        msgid = "msg" + secrets.token_hex(8)
        chats = [str(c) for c in body.get("chat_id_list") or []]
        with self._lock:
            self.mass_messages[msgid] = {"sender": body["sender"], "chats": chats}
            self.requests.append({"endpoint": "add_msg_template", **body})
        for chat in chats:
            self._deliver(f"group_mass:{chat}")
        return {"errcode": 0, "errmsg": "ok", "fail_list": [], "msgid": msgid}

    def groupmsg_result(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        if err := self._token_error(params):
            return err
        found = self.mass_messages.get(str(body.get("msgid", "")))
        if found is None:
            return {"errcode": 41063, "errmsg": "invalid msgid"}
        if str(body.get("userid", "")) != found["sender"]:
            return {"errcode": 0, "errmsg": "ok", "send_list": []}  # not this member's task
        now = int(time.time())
        send_list = []
        for chat in found["chats"]:
            status = self.owner_status.get(chat, 1)
            row = {"chat_id": chat, "userid": found["sender"], "status": status}
            if status == 1:
                row["send_time"] = now
            send_list.append(row)
        return {"errcode": 0, "errmsg": "ok", "next_cursor": "", "send_list": send_list}

    def asgi(self) -> Starlette:
        def get(fn: Any) -> Any:
            async def endpoint(request: Request) -> Response:
                return _json(fn(dict(request.query_params)))

            return endpoint

        def post(fn: Any, name: str) -> Any:
            async def endpoint(request: Request) -> Response:
                if self.delay:
                    await asyncio.sleep(self.delay)
                raw = await request.body()
                if self._failure(name + ":http") is not None:
                    return Response("busy", status_code=502)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    return _json({"errcode": 47001, "errmsg": "data format error"})
                return _json(fn(dict(request.query_params), body))

            return endpoint

        return Starlette(
            routes=[
                Route("/cgi-bin/token", get(self.token), methods=["GET"]),
                Route("/cgi-bin/gettoken", get(self.gettoken), methods=["GET"]),
                Route(
                    "/cgi-bin/message/subscribe/send",
                    post(self.subscribe_send, "subscribe"),
                    methods=["POST"],
                ),
                Route(
                    "/cgi-bin/message/template/send",
                    post(self.template_send, "template"),
                    methods=["POST"],
                ),
                Route("/cgi-bin/webhook/send", post(self.robot_send, "robot"), methods=["POST"]),
                Route(
                    "/cgi-bin/externalcontact/add_msg_template",
                    post(self.add_msg_template, "add_msg_template"),
                    methods=["POST"],
                ),
                Route(
                    "/cgi-bin/externalcontact/get_groupmsg_send_result",
                    post(self.groupmsg_result, "groupmsg_result"),
                    methods=["POST"],
                ),
            ]
        )


def _json(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), media_type="application/json")


@pytest.fixture(scope="session")
def weixin_server() -> Iterator[FakeWeixin]:
    fake = FakeWeixin()
    with serve(fake.asgi()) as url:
        fake.base_url = url
        yield fake


@pytest.fixture
def weixin(weixin_server: FakeWeixin, monkeypatch: pytest.MonkeyPatch) -> FakeWeixin:
    """The fake, emptied, with the app's WeChat and WeCom hosts pointed at it."""
    from siyu.core.settings import get_settings
    from siyu.messaging import channels

    weixin_server.reset()
    monkeypatch.setattr(get_settings(), "wechat_api_base", weixin_server.base_url)
    monkeypatch.setattr(get_settings(), "wecom_api_base", weixin_server.base_url)
    channels.tokens.clear()
    channels.limiter.clear()
    return weixin_server

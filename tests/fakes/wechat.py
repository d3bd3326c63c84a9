"""A fake of WeChat's mini-program login endpoint, ``GET /sns/jscode2session``.

Protocol (developers.weixin.qq.com, "code2Session"): query parameters ``appid``, ``secret``,
``js_code`` and ``grant_type=authorization_code``. Success answers
``{"openid", "session_key", "unionid"?}`` (``unionid`` only when the mini program is bound to
an Open Platform account); a refusal answers ``{"errcode", "errmsg"}`` — always with HTTP 200,
and, like the real endpoint, labelled ``text/plain``, so clients must parse the body whatever
the content type says.

A login code comes from ``wx.login()`` on the phone: here ``issue_code`` plays that part. A code
works once; a used or unknown one is ``40029 invalid code``. ``busy_code`` gives a code the
server answers ``-1 system error`` for (WeChat's "retry later").
"""

from __future__ import annotations

import json
import secrets
import threading
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


@dataclass
class _Identity:
    openid: str
    unionid: str | None


@dataclass
class FakeWechat:
    appid: str = APPID
    secret: str = SECRET
    base_url: str = ""
    codes: dict[str, _Identity] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    # code -> how many more times it answers "system error" (None: always)
    busy: dict[str, int | None] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self._lock:
            self.codes.clear()
            self.used.clear()
            self.busy.clear()
            self.requests.clear()

    def issue_code(self, *, openid: str, unionid: str | None = None) -> str:
        """A fresh login code for this user, as ``wx.login()`` returns it on the phone."""
        code = secrets.token_hex(16)
        with self._lock:
            self.codes[code] = _Identity(openid, unionid)
        return code

    def busy_code(self, *, openid: str = "o-busy", times: int | None = None) -> str:
        """A code WeChat answers ``-1`` for: ``times`` times, then normally (None: always)."""
        code = self.issue_code(openid=openid)
        with self._lock:
            self.busy[code] = times
        return code

    def jscode2session(self, params: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            self.requests.append(dict(params))
            if not params.get("appid"):
                return {"errcode": 41002, "errmsg": "appid missing"}
            if params["appid"] != self.appid:
                return {"errcode": 40013, "errmsg": "invalid appid"}
            if not params.get("secret"):
                return {"errcode": 41004, "errmsg": "appsecret missing"}
            if params["secret"] != self.secret:
                return {"errcode": 40125, "errmsg": "invalid appsecret"}
            if params.get("grant_type") != "authorization_code":
                return {"errcode": 40002, "errmsg": "invalid grant_type"}
            code = params.get("js_code", "")
            if not code:
                return {"errcode": 41008, "errmsg": "missing code"}
            if code in self.busy:
                left = self.busy[code]
                if left is None or left > 0:
                    if left is not None:
                        self.busy[code] = left - 1
                    return {"errcode": -1, "errmsg": "system error"}
            ident = self.codes.get(code)
            if ident is None or code in self.used:
                return {"errcode": 40029, "errmsg": "invalid code"}
            self.used.add(code)
            body: dict[str, Any] = {
                "openid": ident.openid,
                "session_key": secrets.token_urlsafe(16),
            }
            if ident.unionid:
                body["unionid"] = ident.unionid
            return body

    def asgi(self) -> Starlette:
        async def endpoint(request: Request) -> Response:
            body = self.jscode2session(dict(request.query_params))
            return Response(json.dumps(body), media_type="text/plain")

        return Starlette(routes=[Route("/sns/jscode2session", endpoint, methods=["GET"])])


@pytest.fixture(scope="session")
def wechat_server() -> Iterator[FakeWechat]:
    fake = FakeWechat()
    with serve(fake.asgi()) as url:
        fake.base_url = url
        yield fake


@pytest.fixture
def wechat(wechat_server: FakeWechat, monkeypatch: pytest.MonkeyPatch) -> FakeWechat:
    """The fake, emptied, with the app pointed at it (restored after the test)."""
    from siyu.core.settings import get_settings

    wechat_server.reset()
    monkeypatch.setattr(get_settings(), "wechat_api_base", wechat_server.base_url)
    return wechat_server

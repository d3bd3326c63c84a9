"""WeChat mini-program login: ``wx.login()`` code → ``jscode2session`` → openid/unionid.

Protocol: ``GET {base}/sns/jscode2session?appid=…&secret=…&js_code=…&grant_type=
authorization_code`` answers JSON ``{"openid", "session_key", "unionid"?}`` or
``{"errcode", "errmsg"}`` (40029 invalid code, 40163 code used, 45011 rate limited,
40226 risky user, -1 busy). The session_key is never stored or returned: we only need the ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from siyu.members.errors import WechatLoginFailed, WechatUnavailable

RETRYABLE = {-1}


@dataclass(frozen=True)
class WechatIdentity:
    openid: str
    unionid: str | None


class MiniProgramClient:
    def __init__(
        self,
        *,
        appid: str,
        secret: str,
        base_url: str,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.appid = appid
        self.secret = secret
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def code_to_session(self, code: str, *, attempts: int = 2) -> WechatIdentity:
        """Resolve a login code. Raises WechatLoginFailed (refused) or WechatUnavailable."""
        params = {
            "appid": self.appid,
            "secret": self.secret,
            "js_code": code,
            "grant_type": "authorization_code",
        }
        data: dict[str, object] = {}
        for _ in range(attempts):
            try:
                resp = self._http.get("/sns/jscode2session", params=params)
                resp.raise_for_status()
                data = resp.json()
            except (httpx.HTTPError, ValueError):
                data = {"errcode": -1, "errmsg": "unreachable"}
                continue
            if int(str(data.get("errcode") or 0)) not in RETRYABLE:
                break
        errcode = int(str(data.get("errcode") or 0))
        if errcode in RETRYABLE:
            raise WechatUnavailable()
        if errcode or not data.get("openid"):
            raise WechatLoginFailed(errcode=errcode, errmsg=str(data.get("errmsg", "")))
        unionid = data.get("unionid")
        return WechatIdentity(openid=str(data["openid"]), unionid=str(unionid) if unionid else None)

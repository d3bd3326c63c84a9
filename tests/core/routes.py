"""Every route of the app, with how to call it: the walkers in test_isolation and
test_conventions use this table and fail when the app has a route the table lacks.

Adding a route? Add one line to ``CALLS``: a small valid body (JSON for the API, form fields
for pages), ``idempotent=True`` if it needs an idempotency key, ``public=True`` if it needs no
sign-in. Who must be signed in follows from the path (see ``auth_kind``).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import fastapi.routing
from fastapi import FastAPI
from fastapi.routing import APIRoute


@dataclass(frozen=True)
class Call:
    json: Any = None
    form: dict[str, str] | None = None
    # Sends a fresh key: the Idempotency-Key header (API) or the ``key`` form field (pages).
    idempotent: bool = False
    public: bool = False


CALLS: dict[tuple[str, str], Call] = {
    # tenants
    ("POST", "/api/v1/auth/tokens"): Call(
        json={"tenant": "no-such-anchor", "username": "nobody", "password": "wrong"}, public=True
    ),
    ("GET", "/api/v1/auth/tokens"): Call(),
    ("DELETE", "/api/v1/auth/tokens/{token_id}"): Call(),
    ("GET", "/api/v1/platform/tenants"): Call(),
    ("POST", "/api/v1/platform/tenants"): Call(
        json={
            "slug": "walker-anchor",
            "name": "Walker",
            "owner": {"username": "walker", "password": "walker-pass"},
        }
    ),
    ("GET", "/api/v1/tenant"): Call(),
    ("PATCH", "/api/v1/tenant/settings"): Call(json={"brand_color": "#123456"}),
    ("GET", "/api/v1/operators"): Call(),
    ("POST", "/api/v1/operators"): Call(
        json={"username": "walker", "password": "walker-password", "role": "analyst"}
    ),
    # members
    ("GET", "/api/v1/members"): Call(),
    ("POST", "/api/v1/members"): Call(json={"openid": "o-walker"}),
    ("GET", "/api/v1/members/{member_id}"): Call(),
    ("PATCH", "/api/v1/members/{member_id}"): Call(json={"nickname": "walker", "tags": ["walked"]}),
    ("POST", "/api/v1/members/{member_id}/accounts"): Call(
        json={"platform": "douyin", "account": "dy-walker"}
    ),
    ("DELETE", "/api/v1/members/{member_id}/accounts/{platform}"): Call(),
    ("GET", "/api/v1/tiers"): Call(),
    ("PUT", "/api/v1/tiers"): Call(json=[{"name": "粉丝", "min_growth": 0}]),
    ("POST", "/api/v1/m/{slug}/login"): Call(json={"code": "walker-code"}, public=True),
    ("POST", "/api/v1/m/{slug}/dev-login"): Call(json={"openid": "o-walker"}, public=True),
    ("GET", "/api/v1/me"): Call(),
    # points
    ("GET", "/api/v1/members/{member_id}/points"): Call(),
    ("GET", "/api/v1/members/{member_id}/points/entries"): Call(),
    ("POST", "/api/v1/members/{member_id}/points/grant"): Call(
        json={"points": 10, "reason": "purchase"}, idempotent=True
    ),
    ("POST", "/api/v1/members/{member_id}/points/spend"): Call(
        json={"points": 5, "reason": "redeem"}, idempotent=True
    ),
    ("GET", "/api/v1/points/entries/{entry_id}"): Call(),
    ("POST", "/api/v1/points/entries/{entry_id}/reverse"): Call(
        json={"points": 1}, idempotent=True
    ),
    ("GET", "/api/v1/ledger/verify"): Call(),
    ("GET", "/api/v1/me/points"): Call(),
    ("GET", "/api/v1/me/points/entries"): Call(),
    # admin console
    ("GET", "/admin"): Call(public=True),
    ("GET", "/admin/login"): Call(public=True),
    ("POST", "/admin/login"): Call(
        form={"tenant": "no-such-anchor", "username": "nobody", "password": "wrong"}, public=True
    ),
    ("POST", "/admin/logout"): Call(form={}, public=True),
    ("GET", "/admin/settings"): Call(),
    ("POST", "/admin/settings/expiry"): Call(form={"kind": "days", "amount": "30"}),
    ("POST", "/admin/settings/tiers"): Call(form={"name": "粉丝", "min_growth": "0"}),
    ("POST", "/admin/settings/wechat"): Call(
        form={"appid": "wx0123456789abcdef", "secret": "0123456789abcdef0123"}
    ),
    ("POST", "/admin/operators"): Call(
        form={"username": "walker", "role": "analyst", "password": "walker-password"}
    ),
    ("GET", "/admin/members"): Call(),
    ("GET", "/admin/members/{member_id}"): Call(),
    ("POST", "/admin/members/{member_id}/adjust"): Call(
        form={"direction": "grant", "points": "5", "memo": "walker"}, idempotent=True
    ),
    # member H5
    ("GET", "/m/{slug}/login"): Call(public=True),
    ("POST", "/m/{slug}/login"): Call(form={"openid": "o-walker"}, public=True),
    ("POST", "/m/{slug}/logout"): Call(form={}, public=True),
    ("GET", "/m/{slug}"): Call(),
    ("GET", "/m/{slug}/points"): Call(),
    # messaging
    ("POST", "/api/v1/messages"): Call(json={"purpose": "walker", "member_ids": [], "body": "hi"}),
    ("GET", "/api/v1/messages"): Call(),
    ("GET", "/api/v1/messages/{message_id}"): Call(),
    ("GET", "/api/v1/messages/{message_id}/deliveries"): Call(),
    ("POST", "/api/v1/messages/{message_id}/cancel"): Call(json={}),
    ("POST", "/api/v1/recipients/count"): Call(json={"kind": "all_members"}),
    ("POST", "/api/v1/broadcasts"): Call(json={"target": {"kind": "all_members"}, "body": "w"}),
    ("GET", "/api/v1/message-templates"): Call(),
    ("POST", "/api/v1/message-templates"): Call(
        json={"key": "walker-new", "name": "w", "body": "w"}
    ),
    ("GET", "/api/v1/message-templates/{template_id}"): Call(),
    ("PUT", "/api/v1/message-templates/{template_id}"): Call(
        json={"key": "walker-tpl", "name": "w", "body": "hi {{ member.nickname }}"}
    ),
    ("POST", "/api/v1/message-templates/preview"): Call(json={"body": "{{ member.nickname }}"}),
    ("GET", "/api/v1/schedules"): Call(),
    ("POST", "/api/v1/schedules"): Call(
        json={
            "key": "walker-sop",
            "name": "w",
            "kind": "daily",
            "time": "10:00",
            "template": "walker-tpl",
            "target": {"kind": "all_members"},
        }
    ),
    ("POST", "/api/v1/schedules/defaults"): Call(json={}),
    ("GET", "/api/v1/schedules/{schedule_id}"): Call(),
    ("POST", "/api/v1/schedules/{schedule_id}/pause"): Call(json={}),
    ("POST", "/api/v1/schedules/{schedule_id}/resume"): Call(json={}),
    ("POST", "/api/v1/members/{member_id}/consents"): Call(json={"template_key": "TPL"}),
    ("GET", "/api/v1/wecom-groups"): Call(),
    ("POST", "/api/v1/wecom-groups"): Call(json={"chat_id": "wr-walker"}),
    ("GET", "/api/v1/wecom-groups/{group_id}"): Call(),
    ("GET", "/api/v1/me/messages"): Call(),
    ("POST", "/api/v1/me/messages/read"): Call(json={"ids": [1]}),
    ("POST", "/api/v1/me/consents"): Call(json={"template_key": "TPL"}),
    ("GET", "/admin/messages"): Call(),
    ("GET", "/admin/messages/{message_id}"): Call(),
    ("POST", "/admin/messages/{message_id}/cancel"): Call(form={}),
    ("GET", "/admin/broadcasts/new"): Call(),
    ("POST", "/admin/broadcasts"): Call(form={"target": "all_members", "body": "w"}),
    ("GET", "/admin/message-templates"): Call(),
    ("POST", "/admin/message-templates"): Call(
        form={"key": "walker-form", "name": "w", "body": "w"}
    ),
    ("GET", "/admin/schedules"): Call(),
    ("POST", "/admin/schedules"): Call(
        form={
            "key": "walker-form",
            "name": "w",
            "kind": "daily",
            "time": "09:00",
            "template": "walker-tpl",
        }
    ),
    ("POST", "/admin/schedules/defaults"): Call(form={}),
    ("POST", "/admin/schedules/{schedule_id}/pause"): Call(form={"paused": "1"}),
    ("GET", "/m/{slug}/messages"): Call(),
    # live (issue 6)
    ("GET", "/api/v1/live/sessions"): Call(),
    ("POST", "/api/v1/live/sessions"): Call(
        json={
            "platform": "taobao",
            "theme": "walker",
            "starts_at": "2026-12-06T12:00:00Z",
            "ends_at": "2026-12-06T16:00:00Z",
        },
        idempotent=True,
    ),
    ("GET", "/api/v1/live/sessions/{session_id}"): Call(),
    ("PATCH", "/api/v1/live/sessions/{session_id}"): Call(json={"theme": "walker"}),
    ("POST", "/api/v1/live/sessions/{session_id}/transitions"): Call(json={"action": "start"}),
    ("POST", "/api/v1/live/sessions/{session_id}/lineup"): Call(
        json={"title": "walker", "live_price_fen": 990, "list_price_fen": 1990}, idempotent=True
    ),
    ("PUT", "/api/v1/live/sessions/{session_id}/lineup"): Call(json={"product_ids": []}),
    ("PATCH", "/api/v1/live/products/{product_id}"): Call(json={"stock_note": "walker"}),
    ("POST", "/api/v1/live/products/{product_id}/on-sale"): Call(),
    ("GET", "/api/v1/live/sessions/{session_id}/funnel"): Call(),
    ("GET", "/api/v1/live/sessions/{session_id}/preview"): Call(),
    ("GET", "/api/v1/live/sessions/{session_id}/guide.csv"): Call(),
    ("GET", "/api/v1/live/sessions/{session_id}/guide.xlsx"): Call(),
    ("POST", "/api/v1/live/sessions/{session_id}/share"): Call(),
    ("DELETE", "/api/v1/live/sessions/{session_id}/share"): Call(),
    ("GET", "/api/v1/me/live/sessions"): Call(),
    ("GET", "/api/v1/me/live/sessions/{session_id}"): Call(),
    ("POST", "/api/v1/me/reservations"): Call(json={"session_id": 987654321}),
    ("GET", "/api/v1/me/reservations"): Call(),
    ("DELETE", "/api/v1/me/reservations/{reservation_id}"): Call(),
    ("GET", "/admin/live"): Call(),
    ("POST", "/admin/live/sessions"): Call(
        form={
            "platform": "taobao",
            "theme": "walker",
            "starts_at": "2026-12-06T20:00",
            "ends_at": "2026-12-06T23:00",
        },
        idempotent=True,
    ),
    ("GET", "/admin/live/sessions/{session_id}"): Call(),
    ("POST", "/admin/live/sessions/{session_id}"): Call(form={"theme": "walker"}),
    ("POST", "/admin/live/sessions/{session_id}/status"): Call(form={"action": "start"}),
    ("POST", "/admin/live/sessions/{session_id}/lineup"): Call(
        form={"title": "walker", "live_price": "9.9", "list_price": "19.9"}, idempotent=True
    ),
    ("POST", "/admin/live/sessions/{session_id}/share"): Call(form={"action": "create"}),
    ("GET", "/admin/live/sessions/{session_id}/guide.csv"): Call(),
    ("GET", "/admin/live/sessions/{session_id}/guide.xlsx"): Call(),
    ("GET", "/admin/live/sessions/{session_id}/control"): Call(),
    ("GET", "/admin/live/sessions/{session_id}/counters"): Call(),
    ("POST", "/admin/live/products/{product_id}"): Call(form={"stock_note": "walker"}),
    ("POST", "/admin/live/products/{product_id}/move"): Call(form={"direction": "up"}),
    ("POST", "/admin/live/products/{product_id}/on-sale"): Call(form={}),
    ("GET", "/m/{slug}/live"): Call(),
    ("GET", "/m/{slug}/live/{session_id}"): Call(),
    ("POST", "/m/{slug}/live/{session_id}/reserve"): Call(form={}),
    ("GET", "/m/{slug}/reservations"): Call(),
    ("POST", "/m/{slug}/reservations/{reservation_id}/cancel"): Call(form={}),
    ("GET", "/m/{slug}/guide/{share_token}"): Call(public=True),
    ("GET", "/r/{click_token}"): Call(public=True),
    # check-in (issue 6)
    ("GET", "/api/v1/checkin/rule"): Call(),
    ("PUT", "/api/v1/checkin/rule"): Call(json={"base": 5, "makeup_days": 0, "makeup_cost": 0}),
    ("POST", "/api/v1/me/checkins"): Call(),
    ("POST", "/api/v1/me/checkins/makeup"): Call(json={"day": "2026-11-10"}),
    ("GET", "/api/v1/me/checkins"): Call(),
    ("GET", "/admin/checkin"): Call(),
    ("POST", "/admin/checkin"): Call(form={"base": "5", "makeup_days": "0", "makeup_cost": "0"}),
    ("GET", "/m/{slug}/checkin"): Call(),
    ("POST", "/m/{slug}/checkin"): Call(form={}),
    ("POST", "/m/{slug}/checkin/makeup"): Call(form={"day": "2026-11-10"}),
    # orders
    ("POST", "/api/v1/orders/imports"): Call(),  # multipart: the walkers send no file (422)
    ("GET", "/api/v1/orders/imports"): Call(),
    ("GET", "/api/v1/orders/imports/{import_id}"): Call(),
    ("GET", "/api/v1/orders/imports/{import_id}/rejects"): Call(),
    ("GET", "/api/v1/orders/{platform}/{order_no}"): Call(),
    ("GET", "/api/v1/claims"): Call(),
    ("POST", "/api/v1/claims/{claim_id}/approve"): Call(json={}),
    ("POST", "/api/v1/claims/{claim_id}/reject"): Call(json={"reason": "walker"}),
    ("POST", "/api/v1/platform-accounts/rebind"): Call(
        json={"platform": "douyin", "account": "dy-walker", "member_id": 1, "reason": "walker"}
    ),
    ("GET", "/api/v1/platform-accounts/rebinds"): Call(),
    ("GET", "/api/v1/orders-stats/sessions"): Call(),
    ("GET", "/api/v1/orders-rule"): Call(),
    ("PUT", "/api/v1/orders-rule"): Call(
        json={
            "points_per_yuan": 1,
            "min_fen": 0,
            "daily_cap": 0,
            "claim_window_days": 30,
            "session_multipliers": {},
            "tier_multipliers": {},
        }
    ),
    ("POST", "/api/v1/me/claims"): Call(
        json={"platform": "taobao", "order_no": "9999", "account": "tb-tenant-a"}
    ),
    ("GET", "/api/v1/me/claims"): Call(),
    ("GET", "/admin/orders"): Call(),
    ("POST", "/admin/orders/imports"): Call(form={"format": "taobao"}),
    ("GET", "/admin/orders/imports/{import_id}"): Call(),
    ("GET", "/admin/orders/imports/{import_id}/progress"): Call(),
    ("GET", "/admin/orders/imports/{import_id}/report.csv"): Call(),
    ("GET", "/admin/orders/claims"): Call(),
    ("POST", "/admin/orders/claims/{claim_id}/approve"): Call(form={}),
    ("POST", "/admin/orders/claims/{claim_id}/reject"): Call(form={"reason": "walker"}),
    ("POST", "/admin/orders/rebind"): Call(
        form={"platform": "douyin", "account": "dy-walker", "member_id": "1", "reason": "walker"}
    ),
    ("GET", "/m/{slug}/claims"): Call(),
    ("POST", "/m/{slug}/claims"): Call(
        form={"platform": "taobao", "order_no": "9999", "account": "tb-tenant-a"}
    ),
    # points mall
    ("GET", "/api/v1/mall/items"): Call(),
    ("POST", "/api/v1/mall/items"): Call(json={"title": "walker", "points_price": 5, "stock": 1}),
    ("GET", "/api/v1/mall/items/{item_id}"): Call(),
    ("PATCH", "/api/v1/mall/items/{item_id}"): Call(json={"title": "walker"}),
    ("POST", "/api/v1/mall/items/{item_id}/codes"): Call(json={"codes": ["WALKER-1"]}),
    ("GET", "/api/v1/mall/orders"): Call(),
    ("GET", "/api/v1/mall/orders/export"): Call(),
    ("POST", "/api/v1/mall/orders/tracking"): Call(json="订单号,快递公司,快递单号\n"),
    ("GET", "/api/v1/mall/orders/{order_id}"): Call(),
    ("POST", "/api/v1/mall/orders/{order_id}/status"): Call(
        json={"status": "shipped", "carrier": "顺丰", "tracking_no": "SF-WALKER-API"}
    ),
    ("GET", "/api/v1/me/mall/items"): Call(),
    ("GET", "/api/v1/me/mall/items/{item_id}"): Call(),
    ("POST", "/api/v1/me/mall/items/{item_id}/redeem"): Call(json={}, idempotent=True),
    ("GET", "/api/v1/me/mall/orders"): Call(),
    ("GET", "/api/v1/me/mall/orders/{order_id}"): Call(),
    ("GET", "/api/v1/me/addresses"): Call(),
    ("POST", "/api/v1/me/addresses"): Call(
        json={"name": "walker", "phone": "13800138000", "region": "杭州", "detail": "1 号"}
    ),
    ("DELETE", "/api/v1/me/addresses/{address_id}"): Call(),
    # trials
    ("GET", "/api/v1/trials"): Call(),
    ("POST", "/api/v1/trials"): Call(
        json={
            "title": "walker",
            "slots": 1,
            "apply_from": "2030-01-01T00:00:00Z",
            "apply_until": "2030-01-02T00:00:00Z",
            "report_deadline": "2030-01-09T00:00:00Z",
        }
    ),
    ("GET", "/api/v1/trials/{trial_id}"): Call(),
    ("GET", "/api/v1/trials/{trial_id}/applications"): Call(),
    ("POST", "/api/v1/trials/{trial_id}/draw"): Call(json={}),
    ("GET", "/api/v1/trials/{trial_id}/reports"): Call(),
    # The walkers reject, the member revises: every call in the walk's order succeeds.
    ("POST", "/api/v1/trial-reports/{report_id}/review"): Call(json={"accept": False}),
    ("GET", "/api/v1/me/trials"): Call(),
    ("GET", "/api/v1/me/trials/{trial_id}"): Call(),
    ("POST", "/api/v1/me/trials/{trial_id}/apply"): Call(json={"address_id": 1}),
    ("POST", "/api/v1/me/trials/{trial_id}/report"): Call(json={"text": "walker report"}),
    ("GET", "/admin/mall"): Call(),
    ("POST", "/admin/mall/items"): Call(form={"title": "walker", "points_price": "5"}),
    ("GET", "/admin/mall/items/{item_id}"): Call(),
    ("POST", "/admin/mall/items/{item_id}"): Call(
        form={"title": "walker", "points_price": "10", "is_listed": "on"}
    ),
    ("POST", "/admin/mall/items/{item_id}/codes"): Call(form={"codes": "WALKER-PAGE"}),
    ("GET", "/admin/mall/orders"): Call(),
    ("GET", "/admin/mall/orders/export"): Call(),
    ("POST", "/admin/mall/orders/tracking"): Call(form={}),
    ("GET", "/admin/mall/orders/{order_id}"): Call(),
    ("POST", "/admin/mall/orders/{order_id}/status"): Call(
        form={"status": "shipped", "carrier": "顺丰", "tracking_no": "SF-WALKER-PAGE"}
    ),
    ("GET", "/admin/trials"): Call(),
    ("POST", "/admin/trials"): Call(form={"title": "walker"}),
    ("GET", "/admin/trials/{trial_id}"): Call(),
    ("POST", "/admin/trials/{trial_id}/draw"): Call(form={}),
    ("POST", "/admin/trial-reports/{report_id}/review"): Call(form={"decision": "reject"}),
    ("GET", "/m/{slug}/mall"): Call(),
    ("GET", "/m/{slug}/mall/items/{item_id}"): Call(),
    ("POST", "/m/{slug}/mall/items/{item_id}/redeem"): Call(form={}, idempotent=True),
    ("GET", "/m/{slug}/mall/orders"): Call(),
    ("GET", "/m/{slug}/mall/orders/{order_id}"): Call(),
    ("GET", "/m/{slug}/addresses"): Call(),
    ("POST", "/m/{slug}/addresses"): Call(
        form={"name": "walker", "phone": "13800138000", "region": "杭州", "detail": "1 号"}
    ),
    ("POST", "/m/{slug}/addresses/{address_id}/delete"): Call(form={}),
    ("GET", "/m/{slug}/trials"): Call(),
    ("GET", "/m/{slug}/trials/{trial_id}"): Call(),
    ("POST", "/m/{slug}/trials/{trial_id}/apply"): Call(form={}),
    ("POST", "/m/{slug}/trials/{trial_id}/report"): Call(form={"text": "walker page report"}),
    ("GET", "/draws/verify"): Call(public=True),
    ("GET", "/draws/{code}"): Call(public=True),
    ("GET", "/draws/{code}/entries.txt"): Call(public=True),
    # service
    ("GET", "/"): Call(public=True),
    ("GET", "/healthz"): Call(public=True),
    ("GET", "/metrics"): Call(public=True),
    ("GET", "/api/v1/openapi.json"): Call(public=True),
    ("GET", "/api/docs"): Call(public=True),
    ("GET", "/docs/oauth2-redirect"): Call(public=True),
}

# The API routes anyone may call: operator sign-in and member login.
PUBLIC_API = {key for key, call in CALLS.items() if call.public and key[1].startswith("/api/v1/")}

_PARAM = re.compile(r"{(\w+)(?::\w+)?}")


def app_routes(app: FastAPI) -> dict[tuple[str, str], Any]:
    """(method, path) -> route for every route the app answers (HEAD and mounts left out)."""
    # FastAPI ≥ 0.16x keeps included routers as lazy nodes; iter_route_contexts flattens them.
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    contexts = list(flatten(app.routes)) if flatten else list(app.routes)
    out: dict[tuple[str, str], Any] = {}
    for ctx in contexts:
        route = getattr(ctx, "original_route", ctx)
        for method in getattr(ctx, "methods", None) or ():
            if method != "HEAD":
                out[(method, ctx.path)] = route
    return out


def api_routes(app: FastAPI) -> dict[tuple[str, str], APIRoute]:
    return {
        k: r
        for k, r in app_routes(app).items()
        if k[1].startswith("/api/v1/") and isinstance(r, APIRoute)
    }


def path_params(path: str) -> list[str]:
    return _PARAM.findall(path)


def auth_kind(path: str) -> str:
    """Who must be signed in: an operator or a member, by bearer token or page session."""
    if path == "/api/v1/me" or path.startswith("/api/v1/me/"):
        return "member-token"
    if path.startswith("/api/v1/platform/"):
        return "platform-token"
    if path.startswith("/api/v1/"):
        return "operator-token"
    if path.startswith("/admin"):
        return "operator-session"
    if path.startswith("/m/"):
        return "member-session"
    raise AssertionError(f"no sign-in rule for {path}: add one to tests/core/routes.py")


def fill(path: str, values: dict[str, Any]) -> str:
    missing = [p for p in path_params(path) if p not in values]
    assert not missing, (
        f"{path}: no sample value for {missing}; add one to the walker's path values"
    )
    return _PARAM.sub(lambda m: str(values[m.group(1)]), path)


def send(
    client: Any,
    method: str,
    path: str,
    values: dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
    csrf: str | None = None,
    bare: bool = False,
) -> Any:
    """Call a route from ``CALLS`` with its sample body. ``bare`` sends no body, no key."""
    call = CALLS[(method, path)]
    url = fill(path, values)
    headers = dict(headers or {})
    kw: dict[str, Any] = {}
    if not bare:
        if call.idempotent and call.form is None:
            headers["Idempotency-Key"] = f"walker-{uuid.uuid4().hex}"
        if call.json is not None:
            kw["json"] = call.json
        if call.form is not None:
            form = dict(call.form)
            if call.idempotent:
                form["key"] = uuid.uuid4().hex
            if csrf is not None:
                form["csrf_token"] = csrf
            kw["data"] = form
    return client.request(method, url, headers=headers, follow_redirects=False, **kw)

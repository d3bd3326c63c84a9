"""Tenant isolation and sign-in, checked on every route of the app.

The walkers take their routes from the app itself and their calls from tests/core/routes.py;
a route missing from that table fails ``test_route_table_covers_every_route``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from siyu.core.db import Base
from siyu.live import service as live
from siyu.members import service as members
from siyu.models import import_all
from siyu.tenants import service as tenants
from siyu.tenants.models import Tenant
from tests.conftest import PLATFORM_HEADERS
from tests.core.routes import (
    CALLS,
    PUBLIC_API,
    app_routes,
    auth_kind,
    fill,
    path_params,
    send,
)
from tests.factories import (
    PASSWORD,
    add_product,
    grant,
    make_member,
    make_operator,
    make_session,
    make_tenant,
    mall_world,
    member_headers,
    reserve,
    spend,
    token_headers,
)

PROTECTED_API = sorted(
    k
    for k, c in CALLS.items()
    if k[1].startswith("/api/v1/") and not c.public and k[1] != "/api/v1/openapi.json"
)
PROTECTED_PAGES = sorted(
    k for k, c in CALLS.items() if k[1].startswith(("/admin", "/m/")) and not c.public
)


def auth_kind_or_none(path: str) -> str | None:
    try:
        return auth_kind(path)
    except AssertionError:
        return None  # public routes outside /api, /admin and /m


ID_ROUTES = sorted(k for k in CALLS if any(p.endswith("_id") for p in path_params(k[1])))
# /healthz opens its own connection, which on SQLite waits for the write lock this test's
# transaction holds; it reads no tenant data.
# The platform admin sees every tenant by design; it is no tenant's operator.
GET_ROUTES = sorted(
    k
    for k in CALLS
    if k[0] == "GET" and k[1] != "/healthz" and auth_kind_or_none(k[1]) != "platform-token"
)

# Strings only tenant B's data contains: no response to tenant A may show one.
B_MARKERS = ("乙方粉丝", "o-tenant-b", "tb-tenant-b", "乙方专属", "b-boss", "乙方标签")


@dataclass
class World:
    a: Tenant
    b: Tenant
    a_values: dict[str, Any]
    b_values: dict[str, Any]
    operator_headers: dict[str, str]
    member_headers: dict[str, str]
    owner_username: str
    member_openid: str


@pytest.fixture
def world(db) -> World:
    a, b = make_tenant(db), make_tenant(db)
    owner = make_operator(db, a, username="a-boss")
    ma = make_member(db, a, nickname="甲方粉丝", openid="o-tenant-a", tags=["甲方标签"])
    members.bind_account(
        db, tenant_id=a.id, member_id=ma.id, platform="taobao", account="tb-tenant-a"
    )
    ea = grant(db, ma, 1000)

    spare = tenants.issue_token(db, operator=owner, name="spare")  # revocable by the walk
    b_boss = make_operator(db, b, username="b-boss")
    b_token = tenants.issue_token(db, operator=b_boss)
    mb = make_member(db, b, nickname="乙方粉丝", openid="o-tenant-b", tags=["乙方标签"])
    members.bind_account(
        db, tenant_id=b.id, member_id=mb.id, platform="taobao", account="tb-tenant-b"
    )
    members.set_tiers(db, tenant_id=b.id, tiers=[("乙方新粉", 0), ("乙方专属", 100)])
    eb = grant(db, mb, 500)
    spend(db, mb, 100)
    a_mall, b_mall = mall_world(db, a, ma), mall_world(db, b, mb, marker="乙方专属")
    a_orders = _orders_world(db, a, buyer="tb-tenant-a", reviews=4)
    b_orders = _orders_world(db, b, buyer="tb-tenant-b", reviews=1)
    msg_a, msg_b = _messaging(db, a, ma, "甲方"), _messaging(db, b, mb, "乙方专属")
    live_a, live_b = _live(db, a, ma, "甲方零食节"), _live(db, b, mb, "乙方专属零食节")
    return World(
        a=a,
        b=b,
        a_values=_FreshClaims(
            {
                "member_id": ma.id,
                "entry_id": ea.id,
                "platform": "taobao",
                "slug": a.slug,
                "token_id": spare.token.id,
                **msg_a,
                **live_a,
            }
            | a_orders
            | a_mall
        ),
        b_values={
            "member_id": mb.id,
            "entry_id": eb.id,
            "platform": "taobao",
            "slug": b.slug,
            "token_id": b_token.token.id,
            **msg_b,
            **live_b,
        }
        | b_orders
        | b_mall,
        operator_headers=token_headers(db, owner),
        member_headers=member_headers(ma),
        owner_username="a-boss",
        member_openid="o-tenant-a",
    )


def _messaging(db, tenant, member, marker: str) -> dict[str, int]:
    """A template, a queued message, a schedule and a group of the tenant (ids by name)."""
    from siyu.messaging import schedules
    from siyu.messaging import service as messaging

    tpl = messaging.save_template(
        db, tenant_id=tenant.id, key="walker-tpl", name=f"{marker}模板", body=f"{marker}通知"
    )
    msg = messaging.send(
        db,
        tenant_id=tenant.id,
        purpose="walk",
        member_ids=[member.id],
        title=f"{marker}通知",
        body=f"{marker}通知",
    )
    group = messaging.save_group(db, tenant_id=tenant.id, chat_id="wr-1", name=f"{marker}群")
    sop = schedules.list_schedules(db, tenant_id=tenant.id)[0]
    return {
        "message_id": msg.id,
        "template_id": tpl.id,
        "schedule_id": sop.id,
        "group_id": group.id,
    }


def _live(db, tenant, member, theme: str) -> dict[str, Any]:
    """A session with one product, reserved by ``member``, its guide shared."""
    session = make_session(db, tenant, theme=theme)
    product = add_product(db, session, title=f"{theme}坚果")
    reservation = reserve(db, member, session, product)
    live.share_guide(db, tenant_id=tenant.id, session_id=session.id)
    return {
        "session_id": session.id,
        "product_id": product.id,
        "reservation_id": reservation.id,
        "share_token": session.share_token,
        "click_token": reservation.click_token,
    }


class _FreshClaims(dict):  # type: ignore[type-arg]
    """Path values whose ``claim_id`` is a new claim in review at each use: the walker
    approves and rejects through four routes, and a decided claim cannot be decided again."""

    def __getitem__(self, key: str) -> Any:
        if key == "claim_id":
            return self["review_ids"].pop()
        return super().__getitem__(key)


def _orders_world(db, tenant: Tenant, *, buyer: str, reviews: int) -> dict[str, Any]:
    """An import, an order of ``buyer`` and ``reviews`` claims in review (issue 4)."""
    from siyu.orders import service as orders
    from siyu.orders.readers import Record

    imp = orders.create_import(db, tenant_id=tenant.id, filename="o.csv", fmt=None, session_id=1)
    numbers = [f"9{n:03d}" for n in range(reviews)]
    records = [
        Record(2 + n, "taobao", no, "shared", 1000, 0, "paid", None, None, "", 1)
        for n, no in enumerate(numbers)
    ]
    records.append(Record(99, "taobao", "8000", buyer, 500, 0, "paid", None, None, "", 1))
    orders.import_batch(db, tenant_id=tenant.id, import_id=imp.id, items=list(records))
    first, second = make_member(db, tenant), make_member(db, tenant)
    orders.claim_order(
        db,
        tenant_id=tenant.id,
        member_id=first.id,
        platform="taobao",
        order_no="1",
        account="shared",
    )
    ids = [
        orders.claim_order(
            db,
            tenant_id=tenant.id,
            member_id=second.id,
            platform="taobao",
            order_no=no,
            account="shared",
        ).id
        for no in numbers
    ]
    return _FreshClaims(import_id=imp.id, order_no="8000", claim_id=ids[0], review_ids=ids)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def sign_in_pages(client: TestClient, world: World) -> str:
    """Sign tenant A's owner in to /admin and A's member in to /m; return the CSRF token."""
    token = csrf_of(client.get("/admin/login").text)
    resp = client.post(
        "/admin/login",
        follow_redirects=False,
        data={
            "tenant": world.a.slug,
            "username": world.owner_username,
            "password": PASSWORD,
            "csrf_token": token,
        },
    )
    assert resp.status_code == 303, resp.text
    token = csrf_of(client.get(f"/m/{world.a.slug}/login").text)
    resp = client.post(
        f"/m/{world.a.slug}/login",
        follow_redirects=False,
        data={"openid": world.member_openid, "csrf_token": token},
    )
    assert resp.status_code == 303, resp.text
    return token


def credentials(world: World, method: str, path: str) -> dict[str, str]:
    if CALLS[(method, path)].public:
        return {}
    kind = auth_kind(path)
    if kind == "operator-token":
        return world.operator_headers
    if kind == "member-token":
        return world.member_headers
    if kind == "platform-token":
        return PLATFORM_HEADERS
    return {}  # page sessions ride on the client's cookie


def snapshot(db, tenant_id: int) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tenant, table by table."""
    import_all()
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table in Base.metadata.sorted_tables:
        if table.name == "tenants":
            cond = table.c.id == tenant_id
        else:
            cond = table.c.tenant_id == tenant_id
        rows = db.execute(select(table).where(cond).order_by(*table.primary_key.columns))
        out[table.name] = [tuple(r) for r in rows]
    return out


def test_route_table_covers_every_route(app):
    routes = set(app_routes(app))

    missing = sorted(routes - set(CALLS))
    stale = sorted(set(CALLS) - routes)

    assert not missing, (
        f"routes the walkers cannot call; add them to tests/core/routes.py: {missing}"
    )
    assert not stale, f"tests/core/routes.py lists routes the app no longer has: {stale}"
    for method, path in routes:
        if not CALLS[(method, path)].public:
            auth_kind(path)  # every protected route has a sign-in rule


def test_public_api_routes_are_the_sign_in_ones():
    expected = {
        ("POST", "/api/v1/auth/tokens"),
        ("POST", "/api/v1/m/{slug}/login"),
        ("POST", "/api/v1/m/{slug}/dev-login"),
        ("GET", "/api/v1/openapi.json"),
    }

    assert expected == PUBLIC_API


def test_tenant_a_gets_404_for_tenant_b_ids_on_every_route(db, client, world):
    assert ID_ROUTES, "no route takes an id: the walker would check nothing"
    csrf = sign_in_pages(client, world)
    before = snapshot(db, world.b.id)
    # B's ids in A's own context (A's slug for member pages).
    foreign = world.b_values | {"slug": world.a.slug}

    for method, path in ID_ROUTES:
        assert not CALLS[(method, path)].public, f"{method} {path} takes an id but is public"
        headers = credentials(world, method, path)

        resp = send(client, method, path, foreign, headers=headers, csrf=csrf)

        where = f"{method} {fill(path, foreign)}"
        assert resp.status_code == 404, f"{where}: {resp.status_code} {resp.text[:300]}"
        if path.startswith("/api/"):
            assert resp.headers["content-type"].startswith("application/problem+json"), where
            assert resp.json()["code"].endswith("not_found"), f"{where}: {resp.json()}"
        for marker in B_MARKERS:
            assert marker not in resp.text, f"{where} shows {marker!r}"
        assert snapshot(db, world.b.id) == before, f"{where} changed tenant B's data"

        # The same route with A's own ids works: the 404 above is about the tenant.
        own = send(client, method, path, world.a_values, headers=headers, csrf=csrf)
        assert own.status_code < 400, (
            f"{method} {path} with A's ids: {own.status_code} {own.text[:300]}"
        )


def test_member_of_tenant_a_is_signed_out_on_tenant_b_pages(db, client, world):
    csrf = sign_in_pages(client, world)
    slug_routes = [k for k in PROTECTED_PAGES if "slug" in path_params(k[1])]
    assert slug_routes
    before = snapshot(db, world.b.id)

    csrf = csrf_of(client.get(f"/m/{world.b.slug}/login").text)
    for method, path in slug_routes:
        # Forms carry the session's valid CSRF token: the refusal is about the tenant.
        resp = send(
            client,
            method,
            path,
            world.a_values | {"slug": world.b.slug},
            csrf=None if method == "GET" else csrf,
        )
        assert snapshot(db, world.b.id) == before, f"{method} {path} changed B's data"

        assert resp.status_code == 303, f"{method} {path}: {resp.status_code}"
        assert resp.headers["location"] == f"/m/{world.b.slug}/login"


def test_no_get_route_shows_tenant_b_data_to_tenant_a(db, client, world):
    sign_in_pages(client, world)

    for method, path in GET_ROUTES:
        resp = send(client, method, path, world.a_values, headers=credentials(world, method, path))

        where = f"{method} {fill(path, world.a_values)}"
        assert resp.status_code < 400, f"{where}: {resp.status_code} {resp.text[:300]}"
        for marker in B_MARKERS:
            assert marker not in resp.text, f"{where} shows {marker!r}"


def test_search_never_finds_another_tenants_member(db, client, world):
    headers = world.operator_headers
    b_member = world.b_values["member_id"]

    for q in ("o-tenant-b", "乙方粉丝", "tb-tenant-b", str(b_member)):
        page = client.get("/api/v1/members", headers=headers, params={"q": q}).json()
        assert page["total"] == 0, q
    tagged = client.get("/api/v1/members", headers=headers, params={"tag": "乙方标签"}).json()
    assert tagged["total"] == 0


# --- sign-in required -------------------------------------------------------------------------


@pytest.fixture
def lone(db) -> dict[str, Any]:
    """Real ids of one tenant, so a route cannot answer 404 instead of 401."""
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    entry = grant(db, member, 100)
    token = tenants.issue_token(db, operator=make_operator(db, tenant))
    msg = _messaging(db, tenant, member, "独")
    session = make_session(db, tenant)
    product = add_product(db, session)
    reservation = reserve(db, member, session, product)
    return mall_world(db, tenant, member) | {
        **msg,
        "session_id": session.id,
        "product_id": product.id,
        "reservation_id": reservation.id,
        "token_id": token.token.id,
        "member_id": member.id,
        "entry_id": entry.id,
        "platform": "taobao",
        "slug": tenant.slug,
        "tenant_id": tenant.id,
        "import_id": 1,
        "claim_id": 1,
        "order_no": "1",
    }


def assert_sign_in_required(resp: Any, where: str, code: str = "auth.required") -> None:
    assert resp.status_code == 401, f"{where}: {resp.status_code} {resp.text[:300]}"
    assert resp.headers["content-type"].startswith("application/problem+json"), where
    assert resp.headers["www-authenticate"] == "Bearer", where
    assert resp.json()["code"] == code, f"{where}: {resp.json()}"


@pytest.mark.parametrize(("method", "path"), PROTECTED_API)
def test_api_route_without_credentials_is_401(db, client, lone, method, path):
    before = snapshot(db, lone["tenant_id"])

    resp = send(client, method, path, lone)

    assert_sign_in_required(resp, f"{method} {path}")
    assert snapshot(db, lone["tenant_id"]) == before


@pytest.mark.parametrize(
    ("method", "path"),
    PROTECTED_API,
)
def test_api_route_answers_401_before_looking_at_the_request(client, lone, method, path):
    resp = send(client, method, path, lone, bare=True)

    assert_sign_in_required(resp, f"{method} {path} (no body, no key)")


@pytest.mark.parametrize(("method", "path"), PROTECTED_API)
def test_api_route_refuses_the_other_kind_of_token(db, client, lone, method, path):
    tenant = tenants.get_tenant(db, slug=lone["slug"])
    member = members.get_member(db, tenant_id=tenant.id, member_id=lone["member_id"])
    wrong = (
        token_headers(db, make_operator(db, tenant))
        if auth_kind(path) in ("member-token", "platform-token")
        else member_headers(member)
    )

    resp = send(client, method, path, lone, headers=wrong)

    assert_sign_in_required(resp, f"{method} {path}", code="auth.invalid_token")


@pytest.mark.parametrize(("method", "path"), sorted(PUBLIC_API))
def test_public_api_route_needs_no_credentials(client, lone, method, path):
    resp = send(client, method, path, lone)

    assert resp.status_code < 500, resp.text
    assert resp.headers.get("content-type", "").startswith(
        ("application/json", "application/problem+json")
    )
    if resp.status_code >= 400:
        assert resp.json()["code"] != "auth.required"


@pytest.mark.parametrize(("method", "path"), PROTECTED_PAGES)
def test_page_without_session_sends_to_sign_in(db, client, lone, method, path):
    csrf = None
    if method != "GET":  # a real form post: the session has a CSRF token but no sign-in
        login = "/admin/login" if path.startswith("/admin") else f"/m/{lone['slug']}/login"
        csrf = csrf_of(client.get(login).text)
    before = snapshot(db, lone["tenant_id"])

    resp = send(client, method, path, lone, csrf=csrf)

    expected = "/admin/login" if path.startswith("/admin") else f"/m/{lone['slug']}/login"
    assert resp.status_code == 303, f"{method} {path}: {resp.status_code}"
    assert resp.headers["location"] == expected
    assert snapshot(db, lone["tenant_id"]) == before


@pytest.mark.parametrize(("method", "path"), [k for k in PROTECTED_PAGES if k[0] != "GET"])
def test_page_form_without_csrf_token_is_refused(db, client, world, method, path):
    sign_in_pages(client, world)
    before = snapshot(db, world.a.id)

    resp = send(client, method, path, world.a_values)

    assert resp.status_code == 403, f"{method} {path}: {resp.status_code}"
    assert snapshot(db, world.a.id) == before

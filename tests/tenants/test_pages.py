"""The console's settings page, as an owner and an analyst use it (TestClient, real forms)."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from siyu.ledger import service as ledger
from siyu.members import service as members
from siyu.tenants import service as tenants
from siyu.tenants.models import Tenant
from tests.factories import PASSWORD, grant, make_member, make_operator, make_tenant

EN = {"Accept-Language": "en"}


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "page has no CSRF token"
    return found.group(1)


def sign_in(client, tenant: Tenant, username: str) -> str:
    token = csrf_of(client.get("/admin/login", headers=EN).text)
    resp = client.post(
        "/admin/login",
        data={
            "tenant": tenant.slug,
            "username": username,
            "password": PASSWORD,
            "csrf_token": token,
        },
        headers=EN,
        follow_redirects=False,
    )
    assert resp.status_code == 303
    return csrf_of(client.get("/admin/settings", headers=EN).text)


@pytest.fixture
def owner_session(db, client):
    tenant = make_tenant(db)
    op = make_operator(db, tenant, role="owner")
    return tenant, sign_in(client, tenant, op.username)


def test_owner_sets_points_to_expire_after_30_days(db, client, owner_session, clock):
    tenant, csrf = owner_session
    resp = client.post(
        "/admin/settings/expiry",
        headers=EN,
        follow_redirects=False,
        data={"kind": "days", "amount": "30", "csrf_token": csrf},
    )
    assert resp.status_code == 303
    assert "Saved." in client.get(resp.headers["location"], headers=EN).text
    db.expire_all()
    assert db.get(Tenant, tenant.id).settings["points_expiry"] == {"kind": "days", "days": 30}
    lot_entry = grant(db, make_member(db, tenant), 50)
    expiring = ledger.get_balance(db, tenant_id=tenant.id, member_id=lot_entry.member_id)
    assert [e.expires_at for e in expiring.expiring] == [clock.now + dt.timedelta(days=30)]


def test_bad_expiry_amount_is_refused_and_changes_nothing(db, client, owner_session):
    tenant, csrf = owner_session
    resp = client.post(
        "/admin/settings/expiry",
        headers=EN,
        data={"kind": "days", "amount": "soon", "csrf_token": csrf},
    )
    assert resp.status_code == 422
    assert "points_expiry" in resp.text
    db.expire_all()
    assert db.get(Tenant, tenant.id).settings["points_expiry"] == {"kind": "never"}


def test_owner_renames_and_adds_tiers(db, client, owner_session):
    tenant, csrf = owner_session
    resp = client.post(
        "/admin/settings/tiers",
        headers=EN,
        follow_redirects=False,
        data={
            "name": ["新粉", "老粉", "", "VIP"],
            "min_growth": ["0", "500", "", "9000"],
            "csrf_token": csrf,
        },
    )
    assert resp.status_code == 303
    tiers = members.list_tiers(db, tenant_id=tenant.id)
    assert [(t.name, t.min_growth) for t in tiers] == [("新粉", 0), ("老粉", 500), ("VIP", 9000)]


def test_tiers_without_a_zero_threshold_are_refused(db, client, owner_session):
    tenant, csrf = owner_session
    before = [(t.name, t.min_growth) for t in members.list_tiers(db, tenant_id=tenant.id)]
    resp = client.post(
        "/admin/settings/tiers",
        headers=EN,
        data={"name": ["Only"], "min_growth": ["10"], "csrf_token": csrf},
    )
    assert resp.status_code == 422
    assert "Invalid tiers" in resp.text or "tiers" in resp.text.lower()
    db.expire_all()
    assert [(t.name, t.min_growth) for t in members.list_tiers(db, tenant_id=tenant.id)] == before


def test_owner_adds_an_operator_who_can_then_sign_in(db, client, owner_session):
    tenant, csrf = owner_session
    resp = client.post(
        "/admin/operators",
        headers=EN,
        follow_redirects=False,
        data={
            "username": "kefu2",
            "display_name": "客服二号",
            "role": "service",
            "password": PASSWORD,
            "csrf_token": csrf,
        },
    )
    assert resp.status_code == 303
    page = client.get("/admin/settings", headers=EN).text
    assert "kefu2" in page
    assert "Customer service" in page
    op = tenants.authenticate(db, tenant_slug=tenant.slug, username="kefu2", password=PASSWORD)
    assert op.role == "service"
    again = client.post(
        "/admin/operators",
        headers=EN,
        data={"username": "kefu2", "role": "service", "password": PASSWORD, "csrf_token": csrf},
    )
    assert again.status_code == 409
    assert "already exists" in again.text


def test_analyst_sees_settings_but_cannot_change_them(db, client):
    tenant = make_tenant(db)
    analyst = make_operator(db, tenant, role="analyst")
    csrf = sign_in(client, tenant, analyst.username)
    page = client.get("/admin/settings", headers=EN).text
    assert 'action="/admin/settings/expiry"' not in page
    assert 'action="/admin/operators"' not in page
    resp = client.post(
        "/admin/settings/expiry", headers=EN, data={"kind": "never", "csrf_token": csrf}
    )
    assert resp.status_code == 403


def test_owner_configures_wechat_login_on_the_settings_page(db, client, owner_session):
    tenant, csrf = owner_session
    bad = client.post(
        "/admin/settings/wechat",
        headers=EN,
        data={"appid": "nope", "secret": "short", "csrf_token": csrf},
    )
    assert bad.status_code == 422
    assert "AppID" in bad.text
    resp = client.post(
        "/admin/settings/wechat",
        headers=EN,
        follow_redirects=False,
        data={"appid": "wx0123456789abcdef", "secret": "0123456789abcdef0123", "csrf_token": csrf},
    )
    assert resp.status_code == 303
    page = client.get("/admin/settings", headers=EN).text
    assert "wx0123456789abcdef" in page
    assert "0123456789abcdef0123" not in page
    db.expire_all()
    assert db.get(Tenant, tenant.id).settings["wechat"]["secret"] == "0123456789abcdef0123"


def test_console_sign_in_says_plainly_when_an_account_is_paused(db, client):
    tenant = make_tenant(db)
    make_operator(db, tenant, username="xiaowang")
    token = csrf_of(client.get("/admin/login", headers=EN).text)
    form = {"tenant": tenant.slug, "username": "xiaowang", "csrf_token": token}
    for _ in range(tenants.SIGNIN_FAILURES_PER_ACCOUNT):
        wrong = client.post("/admin/login", data=form | {"password": "guess"}, headers=EN)
        assert wrong.status_code == 401
        assert "Wrong username or password" in wrong.text

    paused = client.post("/admin/login", data=form | {"password": PASSWORD}, headers=EN)

    assert paused.status_code == 429
    assert "Sign-in is paused for this account" in paused.text
    assert 'value="xiaowang"' in paused.text  # the form keeps what was typed

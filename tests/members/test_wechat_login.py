"""Mini-program login against a local fake of WeChat's jscode2session, over real HTTP."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from siyu.core.settings import get_settings
from siyu.members.models import Member
from siyu.tenants import service as tenants
from tests.factories import make_member, make_tenant
from tests.fakes.server import free_port
from tests.fakes.wechat import FakeWechat


def configure(db, tenant, fake: FakeWechat, *, secret: str | None = None) -> None:
    tenants.update_settings(
        db,
        tenant_id=tenant.id,
        changes={"wechat": {"appid": fake.appid, "secret": secret or fake.secret}},
    )


def member_count(db, tenant) -> int:
    return db.scalar(select(func.count()).select_from(Member).where(Member.tenant_id == tenant.id))


def test_login_with_good_code_creates_member_with_openid_and_unionid(db, client, wechat):
    tenant = make_tenant(db)
    configure(db, tenant, wechat)
    code = wechat.issue_code(openid="o-xiaoyu", unionid="u-xiaoyu")

    resp = client.post(f"/api/v1/m/{tenant.slug}/login", json={"code": code})

    assert resp.status_code == 200
    body = resp.json()
    assert body["member"]["openid"] == "o-xiaoyu"
    assert body["member"]["unionid"] == "u-xiaoyu"
    assert "session_key" not in resp.text
    member = db.scalar(
        select(Member).where(Member.tenant_id == tenant.id, Member.openid == "o-xiaoyu")
    )
    assert member is not None
    assert member.unionid == "u-xiaoyu"
    assert body["member"]["id"] == member.id
    assert wechat.requests == [
        {
            "appid": wechat.appid,
            "secret": wechat.secret,
            "js_code": code,
            "grant_type": "authorization_code",
        }
    ]


def test_login_token_works_on_me(db, client, wechat):
    tenant = make_tenant(db)
    configure(db, tenant, wechat)
    code = wechat.issue_code(openid="o-mimi")
    token = client.post(f"/api/v1/m/{tenant.slug}/login", json={"code": code}).json()["token"]

    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})

    assert me.status_code == 200
    assert me.json()["openid"] == "o-mimi"
    assert me.json()["unionid"] is None
    assert me.json()["balance"] == 0


def test_login_again_with_same_openid_returns_same_member(db, client, wechat):
    tenant = make_tenant(db)
    configure(db, tenant, wechat)
    url = f"/api/v1/m/{tenant.slug}/login"
    first = client.post(url, json={"code": wechat.issue_code(openid="o-lan")})
    again = client.post(url, json={"code": wechat.issue_code(openid="o-lan", unionid="u-lan")})

    assert first.status_code == again.status_code == 200
    assert first.json()["member"]["id"] == again.json()["member"]["id"]
    assert again.json()["member"]["unionid"] == "u-lan"
    assert member_count(db, tenant) == 1


def test_login_signs_in_an_existing_member_created_by_staff(db, client, wechat):
    tenant = make_tenant(db)
    configure(db, tenant, wechat)
    existing = make_member(db, tenant, openid="o-known", nickname="桃桃")

    resp = client.post(
        f"/api/v1/m/{tenant.slug}/login", json={"code": wechat.issue_code(openid="o-known")}
    )

    assert resp.status_code == 200
    assert resp.json()["member"]["id"] == existing.id
    assert resp.json()["member"]["nickname"] == "桃桃"


def test_login_same_openid_in_two_tenants_makes_two_members(db, client, wechat):
    a, b = make_tenant(db), make_tenant(db)
    configure(db, a, wechat)
    configure(db, b, wechat)

    in_a = client.post(
        f"/api/v1/m/{a.slug}/login", json={"code": wechat.issue_code(openid="o-same")}
    )
    in_b = client.post(
        f"/api/v1/m/{b.slug}/login", json={"code": wechat.issue_code(openid="o-same")}
    )

    assert in_a.status_code == in_b.status_code == 200
    assert in_a.json()["member"]["id"] != in_b.json()["member"]["id"]
    assert member_count(db, a) == member_count(db, b) == 1


def test_login_with_unknown_code_is_refused(db, client, wechat):
    tenant = make_tenant(db)
    configure(db, tenant, wechat)

    resp = client.post(f"/api/v1/m/{tenant.slug}/login", json={"code": "not-a-code"})

    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["code"] == "member.wechat_login_failed"
    assert resp.json()["params"]["errcode"] == 40029
    assert member_count(db, tenant) == 0


def test_login_with_reused_code_is_refused(db, client, wechat):
    tenant = make_tenant(db)
    configure(db, tenant, wechat)
    code = wechat.issue_code(openid="o-once")
    url = f"/api/v1/m/{tenant.slug}/login"
    assert client.post(url, json={"code": code}).status_code == 200

    resp = client.post(url, json={"code": code})

    assert resp.status_code == 400
    assert resp.json()["code"] == "member.wechat_login_failed"
    assert resp.json()["params"]["errcode"] == 40029


def test_login_with_wrong_secret_is_refused_without_leaking_it(db, client, wechat):
    tenant = make_tenant(db)
    configure(db, tenant, wechat, secret="wrong-secret-value")

    resp = client.post(
        f"/api/v1/m/{tenant.slug}/login", json={"code": wechat.issue_code(openid="o-x")}
    )

    assert resp.status_code == 400
    assert resp.json()["code"] == "member.wechat_login_failed"
    assert resp.json()["params"]["errcode"] == 40125
    assert "wrong-secret-value" not in resp.text
    assert member_count(db, tenant) == 0


def test_login_while_wechat_is_busy_is_unavailable(db, client, wechat):
    tenant = make_tenant(db)
    configure(db, tenant, wechat)
    code = wechat.busy_code()

    resp = client.post(f"/api/v1/m/{tenant.slug}/login", json={"code": code})

    assert resp.status_code == 503
    assert resp.json()["code"] == "member.wechat_unavailable"
    assert member_count(db, tenant) == 0


def test_login_retries_once_when_wechat_is_briefly_busy(db, client, wechat):
    tenant = make_tenant(db)
    configure(db, tenant, wechat)
    code = wechat.busy_code(openid="o-patient", times=1)

    resp = client.post(f"/api/v1/m/{tenant.slug}/login", json={"code": code})

    assert resp.status_code == 200
    assert resp.json()["member"]["openid"] == "o-patient"
    assert len(wechat.requests) == 2


def test_login_when_wechat_is_unreachable_is_unavailable(db, client, monkeypatch):
    tenant = make_tenant(db)
    tenants.update_settings(
        db, tenant_id=tenant.id, changes={"wechat": {"appid": "wx-app", "secret": "s"}}
    )
    monkeypatch.setattr(get_settings(), "wechat_api_base", f"http://127.0.0.1:{free_port()}")

    resp = client.post(f"/api/v1/m/{tenant.slug}/login", json={"code": "any"})

    assert resp.status_code == 503
    assert resp.json()["code"] == "member.wechat_unavailable"


def test_login_for_unconfigured_tenant_is_refused_without_calling_wechat(db, client, wechat):
    tenant = make_tenant(db)

    resp = client.post(
        f"/api/v1/m/{tenant.slug}/login", json={"code": wechat.issue_code(openid="o-x")}
    )

    assert resp.status_code == 409
    assert resp.json()["code"] == "member.wechat_not_configured"
    assert wechat.requests == []


def test_login_for_unknown_tenant_is_not_found(client, wechat):
    resp = client.post(
        "/api/v1/m/no-such-anchor/login", json={"code": wechat.issue_code(openid="o-x")}
    )

    assert resp.status_code == 404
    assert resp.json()["code"] == "tenant.not_found"
    assert wechat.requests == []


def test_login_without_code_is_invalid(db, client, wechat):
    tenant = make_tenant(db)
    configure(db, tenant, wechat)

    resp = client.post(f"/api/v1/m/{tenant.slug}/login", json={"code": ""})

    assert resp.status_code == 422
    assert resp.json()["code"] == "request.invalid"
    assert wechat.requests == []


def test_dev_login_creates_then_reuses_member(db, client):
    tenant = make_tenant(db)
    url = f"/api/v1/m/{tenant.slug}/dev-login"

    first = client.post(url, json={"openid": "dev-openid-1"})
    again = client.post(url, json={"openid": "dev-openid-1"})

    assert first.status_code == again.status_code == 200
    assert first.json()["member"]["id"] == again.json()["member"]["id"]
    assert first.json()["member"]["openid"] == "dev-openid-1"
    assert member_count(db, tenant) == 1
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {again.json()['token']}"})
    assert me.status_code == 200
    assert me.json()["id"] == first.json()["member"]["id"]


def test_dev_login_is_not_found_when_disabled(db, client, monkeypatch):
    tenant = make_tenant(db)
    monkeypatch.setattr(get_settings(), "dev_login", False)

    resp = client.post(f"/api/v1/m/{tenant.slug}/dev-login", json={"openid": "dev-openid-1"})

    assert resp.status_code == 404
    assert resp.json()["code"] == "resource.not_found"
    assert member_count(db, tenant) == 0


@pytest.mark.parametrize("openid", ["", "x" * 65])
def test_dev_login_with_bad_openid_is_invalid(db, client, openid):
    tenant = make_tenant(db)

    resp = client.post(f"/api/v1/m/{tenant.slug}/dev-login", json={"openid": openid})

    assert resp.status_code == 422
    assert resp.json()["code"] == "request.invalid"
    assert member_count(db, tenant) == 0


def test_dev_login_is_off_by_default_in_production(monkeypatch):
    from siyu.core.settings import Settings

    monkeypatch.delenv("SIYU_DEV_LOGIN", raising=False)
    monkeypatch.setenv("SIYU_ENV", "production")
    monkeypatch.setenv("SIYU_SECRET_KEY", "a-real-production-secret-0123456789")

    assert Settings().dev_login is False
    monkeypatch.setenv("SIYU_ENV", "development")
    assert Settings().dev_login is True

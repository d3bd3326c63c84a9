"""Operator sign-in, the tenant's settings and operators over the REST API."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from siyu.core import security
from siyu.tenants import service as tenants
from siyu.tenants.models import ApiToken, Operator, Tenant
from tests.factories import PASSWORD, make_operator, make_tenant, token_headers


def sign_in(client, tenant, username, password=PASSWORD):
    return client.post(
        "/api/v1/auth/tokens",
        json={"tenant": tenant.slug, "username": username, "password": password},
    )


# --- tokens -----------------------------------------------------------------------------------


def test_token_for_good_credentials_works_for_30_days(db, client, clock):
    tenant = make_tenant(db)
    op = make_operator(db, tenant, username="xiaowang")

    resp = sign_in(client, tenant, "xiaowang")

    assert resp.status_code == 201
    body = resp.json()
    assert body["token"].startswith("siyu_")
    assert body["token_type"] == "bearer"
    assert dt.datetime.fromisoformat(body["expires_at"]) == clock.now + dt.timedelta(days=30)
    assert body["operator"]["id"] == op.id
    assert "password" not in resp.text
    headers = {"Authorization": f"Bearer {body['token']}"}
    assert client.get("/api/v1/tenant", headers=headers).json()["id"] == tenant.id
    db.expire_all()
    assert db.get(Operator, op.id).last_login_at == clock.now

    clock.advance(days=30)
    expired = client.get("/api/v1/tenant", headers=headers)
    assert expired.status_code == 401
    assert expired.json()["code"] == "auth.invalid_token"


def test_token_secret_is_stored_only_as_digest(db, client):
    tenant = make_tenant(db)
    make_operator(db, tenant, username="xiaowang")

    secret = sign_in(client, tenant, "xiaowang").json()["token"]

    row = db.scalar(select(ApiToken).where(ApiToken.tenant_id == tenant.id))
    assert row.token_hash == security.token_digest(secret)
    assert secret not in (row.token_hash, row.prefix)
    assert secret.startswith(row.prefix)


def test_token_refused_alike_for_wrong_password_unknown_user_or_tenant(db, client):
    tenant = make_tenant(db)
    make_operator(db, tenant, username="xiaowang")
    good = {"tenant": tenant.slug, "username": "xiaowang", "password": PASSWORD}
    misses = [
        good | {"password": "wrong-password"},
        good | {"username": "nobody"},
        good | {"tenant": "no-such-anchor"},
    ]

    answers = [client.post("/api/v1/auth/tokens", json=creds) for creds in misses]

    for resp in answers:
        assert resp.status_code == 401
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert resp.json()["code"] == "auth.bad_credentials"
    # Nothing tells which part was wrong.
    assert answers[0].json() == answers[1].json() == answers[2].json()
    assert db.scalar(select(ApiToken).where(ApiToken.tenant_id == tenant.id)) is None


def test_token_refused_for_operator_of_another_tenant(db, client):
    home, other = make_tenant(db), make_tenant(db)
    make_operator(db, home, username="xiaowang")

    resp = sign_in(client, other, "xiaowang")

    assert resp.status_code == 401
    assert resp.json()["code"] == "auth.bad_credentials"


def test_deactivated_operator_cannot_sign_in_and_loses_tokens(db, client):
    tenant = make_tenant(db)
    op = make_operator(db, tenant, username="leaver")
    headers = token_headers(db, op)
    op.is_active = False
    db.flush()

    resp = sign_in(client, tenant, "leaver")

    assert resp.status_code == 401
    assert resp.json()["code"] == "auth.bad_credentials"
    old = client.get("/api/v1/tenant", headers=headers)
    assert old.status_code == 401
    assert old.json()["code"] == "auth.invalid_token"


def test_revoked_token_is_refused(db, client):
    tenant = make_tenant(db)
    op = make_operator(db, tenant, role="analyst")
    issued = tenants.issue_token(db, operator=op)
    auth = {"Authorization": f"Bearer {issued.secret}"}
    listed = client.get("/api/v1/auth/tokens", headers=auth)
    assert [t["id"] for t in listed.json()] == [issued.token.id]
    assert listed.json()[0]["prefix"] == issued.secret[:12]
    assert "secret" not in listed.text
    assert issued.secret not in listed.text

    revoked = client.delete(f"/api/v1/auth/tokens/{issued.token.id}", headers=auth)
    assert revoked.status_code == 204

    resp = client.get("/api/v1/tenant", headers=auth)
    assert resp.status_code == 401
    assert resp.json()["code"] == "auth.invalid_token"


def test_only_an_owner_revokes_another_operators_token(db, client):
    tenant = make_tenant(db)
    owner, analyst = make_operator(db, tenant), make_operator(db, tenant, role="analyst")
    theirs = tenants.issue_token(db, operator=analyst)
    mine = token_headers(db, make_operator(db, tenant, role="operator"))

    refused = client.delete(f"/api/v1/auth/tokens/{theirs.token.id}", headers=mine)
    assert refused.status_code == 404
    assert (
        client.get(
            "/api/v1/tenant", headers={"Authorization": f"Bearer {theirs.secret}"}
        ).status_code
        == 200
    )

    done = client.delete(f"/api/v1/auth/tokens/{theirs.token.id}", headers=token_headers(db, owner))
    assert done.status_code == 204
    assert (
        client.get(
            "/api/v1/tenant", headers={"Authorization": f"Bearer {theirs.secret}"}
        ).status_code
        == 401
    )


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        ("Bearer siyu_not-a-real-token", "auth.invalid_token"),
        ("Bearer nonsense", "auth.invalid_token"),
        ("Basic YWRtaW46cGFzcw==", "auth.required"),
    ],
)
def test_unknown_or_malformed_token_is_refused(client, authorization, code):
    resp = client.get("/api/v1/tenant", headers={"Authorization": authorization})

    assert resp.status_code == 401
    assert resp.json()["code"] == code
    assert resp.headers["www-authenticate"] == "Bearer"


def test_token_request_with_missing_fields_is_invalid(client):
    resp = client.post("/api/v1/auth/tokens", json={"tenant": "demo"})

    assert resp.status_code == 422
    body = resp.json()
    assert body["code"] == "request.invalid"
    assert {tuple(e["loc"]) for e in body["errors"]} == {("body", "username"), ("body", "password")}


# --- tenant -----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "operator", "service", "analyst"])
def test_every_role_reads_tenant_without_wechat_secret(db, client, role):
    tenant = make_tenant(db)
    tenants.update_settings(
        db,
        tenant_id=tenant.id,
        changes={"wechat": {"appid": "wx-appid-1", "secret": "very-secret-appsecret"}},
    )
    op = make_operator(db, tenant, role=role)

    resp = client.get("/api/v1/tenant", headers=token_headers(db, op))

    assert resp.status_code == 200
    body = resp.json()
    assert body["slug"] == tenant.slug
    assert body["timezone"] == "Asia/Shanghai"
    assert body["settings"]["wechat"] == {"appid": "wx-appid-1", "configured": True}
    assert "very-secret-appsecret" not in resp.text


def test_tenant_without_wechat_reads_as_not_configured(db, client):
    tenant = make_tenant(db)
    op = make_operator(db, tenant)

    resp = client.get("/api/v1/tenant", headers=token_headers(db, op))

    assert resp.json()["settings"]["wechat"] == {"appid": "", "configured": False}
    assert resp.json()["settings"]["points_expiry"] == {"kind": "never"}


def test_owner_changes_expiry_policy_and_keeps_other_settings(db, client):
    tenant = make_tenant(db)
    tenants.update_settings(
        db,
        tenant_id=tenant.id,
        changes={"wechat": {"appid": "wx-appid-1", "secret": "very-secret-appsecret"}},
    )
    headers = token_headers(db, make_operator(db, tenant))

    resp = client.patch(
        "/api/v1/tenant/settings",
        headers=headers,
        json={"points_expiry": {"kind": "days", "days": 365}, "brand_color": "#123abc"},
    )

    assert resp.status_code == 200
    assert resp.json()["settings"]["points_expiry"] == {"kind": "days", "days": 365}
    assert "very-secret-appsecret" not in resp.text
    db.expire_all()
    stored = db.get(Tenant, tenant.id).settings
    assert stored["points_expiry"] == {"kind": "days", "days": 365}
    assert stored["brand_color"] == "#123abc"
    assert stored["wechat"]["secret"] == "very-secret-appsecret"


@pytest.mark.parametrize("role", ["operator", "service", "analyst"])
def test_only_owner_changes_settings(db, client, role):
    tenant = make_tenant(db)
    headers = token_headers(db, make_operator(db, tenant, role=role))

    resp = client.patch(
        "/api/v1/tenant/settings",
        headers=headers,
        json={"points_expiry": {"kind": "days", "days": 30}},
    )

    assert resp.status_code == 403
    assert resp.json()["code"] == "auth.forbidden"
    db.expire_all()
    assert db.get(Tenant, tenant.id).settings["points_expiry"] == {"kind": "never"}


@pytest.mark.parametrize(
    ("policy", "code"),
    [
        ({"kind": "days"}, "tenant.invalid"),
        ({"kind": "year_end"}, "tenant.invalid"),
        ({"kind": "days", "days": 0}, "request.invalid"),
        ({"kind": "weekly", "days": 7}, "request.invalid"),
        ("never", "request.invalid"),
    ],
)
def test_bad_expiry_policy_is_refused(db, client, policy, code):
    tenant = make_tenant(db)
    headers = token_headers(db, make_operator(db, tenant))

    resp = client.patch("/api/v1/tenant/settings", headers=headers, json={"points_expiry": policy})

    assert resp.status_code == 422
    assert resp.json()["code"] == code
    db.expire_all()
    assert db.get(Tenant, tenant.id).settings["points_expiry"] == {"kind": "never"}


def test_bad_brand_color_is_refused(db, client):
    tenant = make_tenant(db)
    headers = token_headers(db, make_operator(db, tenant))

    resp = client.patch("/api/v1/tenant/settings", headers=headers, json={"brand_color": "red"})

    assert resp.status_code == 422
    assert resp.json()["code"] == "request.invalid"


# --- operators --------------------------------------------------------------------------------


def test_owner_lists_only_own_tenant_operators(db, client):
    tenant, other = make_tenant(db), make_tenant(db)
    owner = make_operator(db, tenant, username="boss")
    make_operator(db, tenant, role="service", username="kefu")
    make_operator(db, other, username="stranger")

    resp = client.get("/api/v1/operators", headers=token_headers(db, owner))

    assert resp.status_code == 200
    assert [(o["username"], o["role"]) for o in resp.json()] == [
        ("boss", "owner"),
        ("kefu", "service"),
    ]
    assert "password" not in resp.text


@pytest.mark.parametrize("role", ["operator", "service", "analyst"])
def test_only_owner_manages_operators(db, client, role):
    tenant = make_tenant(db)
    headers = token_headers(db, make_operator(db, tenant, role=role))

    listed = client.get("/api/v1/operators", headers=headers)
    created = client.post(
        "/api/v1/operators",
        headers=headers,
        json={"username": "newbie", "password": "long-enough-pw", "role": "owner"},
    )

    assert listed.status_code == created.status_code == 403
    assert listed.json()["code"] == created.json()["code"] == "auth.forbidden"
    assert db.scalar(select(Operator).where(Operator.username == "newbie")) is None


def test_owner_creates_operator_who_can_sign_in(db, client):
    tenant = make_tenant(db)
    headers = token_headers(db, make_operator(db, tenant))

    resp = client.post(
        "/api/v1/operators",
        headers=headers,
        json={
            "username": "kefu01",
            "password": "long-enough-pw",
            "role": "service",
            "display_name": "客服一号",
        },
    )

    assert resp.status_code == 201
    body = resp.json()
    assert (body["username"], body["role"], body["display_name"], body["is_active"]) == (
        "kefu01",
        "service",
        "客服一号",
        True,
    )
    assert "long-enough-pw" not in resp.text
    token = sign_in(client, tenant, "kefu01", "long-enough-pw")
    assert token.status_code == 201
    assert token.json()["operator"]["id"] == body["id"]


def test_duplicate_operator_is_conflict(db, client):
    tenant = make_tenant(db)
    make_operator(db, tenant, username="kefu01")
    headers = token_headers(db, make_operator(db, tenant))

    resp = client.post(
        "/api/v1/operators",
        headers=headers,
        json={"username": "kefu01", "password": "long-enough-pw", "role": "service"},
    )

    assert resp.status_code == 409
    assert resp.json()["code"] == "operator.exists"
    assert resp.json()["params"] == {"username": "kefu01"}


def test_same_username_in_another_tenant_is_fine(db, client):
    tenant, other = make_tenant(db), make_tenant(db)
    make_operator(db, other, username="kefu01")
    headers = token_headers(db, make_operator(db, tenant))

    resp = client.post(
        "/api/v1/operators",
        headers=headers,
        json={"username": "kefu01", "password": "long-enough-pw", "role": "service"},
    )

    assert resp.status_code == 201


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"username": "kefu01", "password": "short", "role": "service"}, "request.invalid"),
        ({"username": "kefu01", "password": "long-enough-pw", "role": "boss"}, "request.invalid"),
        (
            {"username": "bad name", "password": "long-enough-pw", "role": "service"},
            "operator.invalid",
        ),
    ],
)
def test_invalid_operator_is_refused(db, client, body, code):
    tenant = make_tenant(db)
    headers = token_headers(db, make_operator(db, tenant))

    resp = client.post("/api/v1/operators", headers=headers, json=body)

    assert resp.status_code == 422
    assert resp.json()["code"] == code
    assert (
        db.scalar(
            select(Operator).where(
                Operator.tenant_id == tenant.id, Operator.username == body["username"]
            )
        )
        is None
    )


def test_owner_configures_wechat_login_and_never_reads_the_secret_back(db, client):
    tenant = make_tenant(db)
    headers = token_headers(db, make_operator(db, tenant))
    creds = {"appid": "wx0123456789abcdef", "secret": "0123456789abcdef0123456789abcdef"}

    resp = client.patch("/api/v1/tenant/settings", json={"wechat": creds}, headers=headers)

    assert resp.status_code == 200
    assert resp.json()["settings"]["wechat"] == {"appid": creds["appid"], "configured": True}
    assert creds["secret"] not in resp.text
    bad = client.patch(
        "/api/v1/tenant/settings",
        headers=headers,
        json={"wechat": {"appid": "not-an-appid", "secret": creds["secret"]}},
    )
    assert bad.status_code == 422
    assert bad.json()["code"] == "request.invalid"


def test_platform_admin_creates_a_tenant_whose_owner_can_sign_in(db, client):
    from tests.conftest import PLATFORM_HEADERS

    body = {
        "slug": "new-anchor",
        "name": "新主播",
        "owner": {"username": "boss", "password": PASSWORD},
    }
    resp = client.post("/api/v1/platform/tenants", json=body, headers=PLATFORM_HEADERS)
    assert resp.status_code == 201
    assert resp.json()["tenant"]["slug"] == "new-anchor"
    assert resp.json()["owner"]["role"] == "owner"
    assert sign_in(client, tenants.get_tenant(db, slug="new-anchor"), "boss").status_code == 201
    listed = client.get("/api/v1/platform/tenants", headers=PLATFORM_HEADERS).json()
    assert "new-anchor" in [t["slug"] for t in listed]

    again = client.post("/api/v1/platform/tenants", json=body, headers=PLATFORM_HEADERS)
    assert again.status_code == 409
    assert again.json()["code"] == "tenant.exists"


def test_platform_api_refuses_operator_tokens_and_bad_slugs(db, client):
    from tests.conftest import PLATFORM_HEADERS

    tenant = make_tenant(db)
    as_owner = client.get(
        "/api/v1/platform/tenants", headers=token_headers(db, make_operator(db, tenant))
    )
    assert as_owner.status_code == 401
    assert as_owner.json()["code"] == "auth.invalid_token"
    bad = client.post(
        "/api/v1/platform/tenants",
        headers=PLATFORM_HEADERS,
        json={
            "slug": "Bad Slug!",
            "name": "x",
            "owner": {"username": "boss", "password": PASSWORD},
        },
    )
    assert bad.status_code == 422
    assert bad.json()["code"] == "tenant.invalid"
    assert tenants.find_tenant(db, slug="Bad Slug!") is None


def test_repeated_wrong_passwords_pause_the_account_until_the_window_ends(db, client, clock):
    tenant = make_tenant(db)
    make_operator(db, tenant, username="xiaowang")
    for _ in range(tenants.SIGNIN_FAILURES_PER_ACCOUNT):
        assert sign_in(client, tenant, "xiaowang", "guess").status_code == 401

    paused = sign_in(client, tenant, "xiaowang")  # even the right password waits

    assert paused.status_code == 429
    assert paused.headers["content-type"].startswith("application/problem+json")
    assert paused.json()["code"] == "auth.too_many_attempts"
    retry_after = int(paused.headers["Retry-After"])
    assert 0 < retry_after <= tenants.SIGNIN_WINDOW
    other = make_operator(db, tenant, username="xiaoli")  # other accounts are unaffected
    assert sign_in(client, tenant, other.username).status_code == 201

    clock.advance(seconds=retry_after)
    assert sign_in(client, tenant, "xiaowang").status_code == 201


def test_one_address_guessing_many_accounts_is_paused(db, client, clock):
    tenant = make_tenant(db)
    make_operator(db, tenant, username="xiaowang")
    for i in range(tenants.SIGNIN_FAILURES_PER_IP):
        assert sign_in(client, tenant, f"user{i}", "guess").status_code == 401

    paused = sign_in(client, tenant, "xiaowang")

    assert paused.status_code == 429
    assert paused.json()["code"] == "auth.too_many_attempts"

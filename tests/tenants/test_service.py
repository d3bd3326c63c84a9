"""Creating tenants and operators: validation, what a new tenant starts with, hashing."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from siyu.core.errors import BadCredentials
from siyu.ledger import models as lm
from siyu.members import service as members
from siyu.members.models import Tier
from siyu.tenants import service as tenants
from siyu.tenants.errors import InvalidOperator, InvalidTenant, OperatorExists, TenantExists
from siyu.tenants.models import Operator
from tests.factories import make_tenant


@pytest.mark.parametrize(
    "slug", ["", "Anchor", "anchor one", "-anchor", "anchor-", "a" * 41, "主播", "anchor_1"]
)
def test_create_tenant_refuses_bad_slug(db, slug):
    with pytest.raises(InvalidTenant) as err:
        tenants.create_tenant(db, slug=slug, name="小鱼直播间")

    assert err.value.code == "tenant.invalid"
    assert err.value.params["field"] == "slug"
    assert tenants.find_tenant(db, slug=slug) is None


@pytest.mark.parametrize("slug", ["a", "ab", "xiaoyu-live-2026", "a" * 40])
def test_create_tenant_accepts_good_slug(db, slug):
    tenant = tenants.create_tenant(db, slug=slug, name="小鱼直播间")

    assert tenants.get_tenant(db, slug=slug).id == tenant.id


@pytest.mark.parametrize("timezone", ["Mars/Olympus", "", "UTC+8"])
def test_create_tenant_refuses_unknown_timezone(db, timezone):
    with pytest.raises(InvalidTenant) as err:
        tenants.create_tenant(db, slug="xiaoyu", name="小鱼直播间", timezone=timezone)

    assert err.value.params["field"] == "timezone"
    assert tenants.find_tenant(db, slug="xiaoyu") is None


def test_create_tenant_refuses_blank_name(db):
    with pytest.raises(InvalidTenant) as err:
        tenants.create_tenant(db, slug="xiaoyu", name="   ")

    assert err.value.params["field"] == "name"


def test_create_tenant_refuses_taken_slug(db):
    first = tenants.create_tenant(db, slug="xiaoyu", name="小鱼直播间")

    with pytest.raises(TenantExists) as err:
        tenants.create_tenant(db, slug="xiaoyu", name="另一个")

    assert err.value.code == "tenant.exists"
    assert tenants.get_tenant(db, slug="xiaoyu").id == first.id
    assert tenants.get_tenant(db, slug="xiaoyu").name == "小鱼直播间"


def test_new_tenant_has_ledger_system_accounts_and_default_tiers(db):
    tenant = tenants.create_tenant(db, slug="xiaoyu", name=" 小鱼直播间 ", timezone="Asia/Tokyo")

    accounts = db.scalars(select(lm.Account).where(lm.Account.tenant_id == tenant.id)).all()
    assert sorted((a.code, a.kind, a.member_id, a.balance) for a in accounts) == sorted(
        (kind, kind, None, 0) for kind in lm.SYSTEM_KINDS
    )
    tiers = db.scalars(
        select(Tier).where(Tier.tenant_id == tenant.id).order_by(Tier.min_growth)
    ).all()
    assert [(t.name, t.min_growth) for t in tiers] == members.DEFAULT_TIERS
    assert tenant.name == "小鱼直播间"
    assert tenant.timezone == "Asia/Tokyo"
    assert tenant.settings == tenants.DEFAULT_SETTINGS


def test_new_tenant_settings_override_defaults(db):
    tenant = tenants.create_tenant(
        db, slug="xiaoyu", name="小鱼直播间", settings={"points_expiry": {"kind": "never"}}
    )

    assert tenant.settings["points_expiry"] == {"kind": "never"}
    assert tenant.settings["brand_color"] == tenants.DEFAULT_SETTINGS["brand_color"]


def test_tenants_keep_separate_accounts_and_tiers(db):
    a, b = make_tenant(db), make_tenant(db)
    members.set_tiers(db, tenant_id=a.id, tiers=[("新粉", 0), ("老粉", 100)])

    assert [t.name for t in members.list_tiers(db, tenant_id=a.id)] == ["新粉", "老粉"]
    assert [(t.name, t.min_growth) for t in members.list_tiers(db, tenant_id=b.id)] == (
        members.DEFAULT_TIERS
    )
    assert len(db.scalars(select(lm.Account).where(lm.Account.tenant_id == b.id)).all()) == 3


def test_update_settings_refuses_bad_expiry_policy(db):
    tenant = make_tenant(db)

    with pytest.raises(InvalidTenant) as err:
        tenants.update_settings(
            db, tenant_id=tenant.id, changes={"points_expiry": {"kind": "days", "days": 0}}
        )

    assert err.value.params["field"] == "points_expiry"
    assert tenant.settings["points_expiry"] == {"kind": "never"}


# --- operators --------------------------------------------------------------------------------


def test_operator_password_is_argon2id_hash_never_plaintext(db):
    tenant = make_tenant(db)

    op = tenants.create_operator(
        db, tenant_id=tenant.id, username="boss", password="correct-horse-battery", role="owner"
    )

    assert op.password_hash.startswith("$argon2id$")
    assert "correct-horse-battery" not in op.password_hash
    assert PasswordHasher().verify(op.password_hash, "correct-horse-battery")
    other = tenants.create_operator(
        db, tenant_id=tenant.id, username="boss2", password="correct-horse-battery", role="owner"
    )
    assert other.password_hash != op.password_hash  # salted


def test_authenticate_checks_password_and_tenant(db):
    tenant, other = make_tenant(db), make_tenant(db)
    op = tenants.create_operator(
        db, tenant_id=tenant.id, username="boss", password="correct-horse-battery", role="owner"
    )

    found = tenants.authenticate(
        db, tenant_slug=tenant.slug, username="boss", password="correct-horse-battery"
    )

    assert found.id == op.id
    for slug, password in (
        (tenant.slug, "wrong-horse-battery"),
        (other.slug, "correct-horse-battery"),
    ):
        with pytest.raises(BadCredentials):
            tenants.authenticate(db, tenant_slug=slug, username="boss", password=password)


@pytest.mark.parametrize(
    ("username", "password", "role", "field"),
    [
        ("b", "correct-horse-battery", "owner", "username"),
        ("has space", "correct-horse-battery", "owner", "username"),
        ("boss", "short", "owner", "password"),
        ("boss", "correct-horse-battery", "admin", "role"),
    ],
)
def test_create_operator_refuses_invalid_input(db, username, password, role, field):
    tenant = make_tenant(db)

    with pytest.raises(InvalidOperator) as err:
        tenants.create_operator(
            db, tenant_id=tenant.id, username=username, password=password, role=role
        )

    assert err.value.code == "operator.invalid"
    assert err.value.params["field"] == field
    assert tenants.list_operators(db, tenant_id=tenant.id) == []


def test_create_operator_refuses_duplicate_username_in_tenant(db):
    tenant = make_tenant(db)
    first = tenants.create_operator(
        db, tenant_id=tenant.id, username="boss", password="correct-horse-battery", role="owner"
    )

    with pytest.raises(OperatorExists):
        tenants.create_operator(
            db, tenant_id=tenant.id, username="boss", password="another-password", role="analyst"
        )

    assert [o.id for o in tenants.list_operators(db, tenant_id=tenant.id)] == [first.id]
    assert db.get(Operator, first.id).role == "owner"


READ = {"tenant.read", "members.read", "points.read", "messages.read", "live.read", "orders.read"}
READ |= {"mall.read"}
SERVICE = READ | {"members.write", "orders.review", "mall.read", "mall.fulfill"}
OPERATOR = SERVICE | {"points.adjust", "messages.send", "messages.manage", "live.manage"}
OPERATOR |= {"orders.import", "mall.read", "mall.fulfill", "mall.manage"}
OWNER = OPERATOR | {"operators.manage", "tenant.manage"}


@pytest.mark.parametrize(
    ("role", "allowed"),
    [("analyst", READ), ("service", SERVICE), ("operator", OPERATOR), ("owner", OWNER)],
)
def test_role_permissions(role, allowed):
    every = set().union(*tenants.PERMISSIONS.values())
    # Live calendar and check-in (issue 6): everyone reads, operators and owners manage.
    allowed = (
        allowed | {"live.read"} | ({"live.manage"} if role in ("operator", "owner") else set())
    )

    assert {p for p in every if tenants.can(role, p)} == allowed
    assert not tenants.can("nobody", "members.read")

"""Members over the operator API: create, search, read, edit, platform accounts, tiers."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from siyu.members import service as members
from siyu.members.models import Member, PlatformAccount
from tests.factories import grant, make_member, make_operator, make_tenant, spend, token_headers


@pytest.fixture
def tenant(db):
    return make_tenant(db)


@pytest.fixture
def headers(db, tenant):
    return token_headers(db, make_operator(db, tenant))


def search(client, headers, **params):
    resp = client.get("/api/v1/members", headers=headers, params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def ids(page):
    return [m["id"] for m in page["items"]]


def bind(db, member, platform, account):
    return members.bind_account(
        db, tenant_id=member.tenant_id, member_id=member.id, platform=platform, account=account
    )


# --- create -----------------------------------------------------------------------------------


def test_create_member_opens_empty_wallet_at_lowest_tier(db, client, headers, tenant):
    resp = client.post(
        "/api/v1/members",
        headers=headers,
        json={
            "openid": "o-new",
            "unionid": "u-new",
            "nickname": "小鱼",
            "phone": "13800001111",
            "tags": ["双11", "上海-干皮", "双11"],
            "source_channel": "douyin-live",
        },
    )

    assert resp.status_code == 201
    body = resp.json()
    assert (body["openid"], body["unionid"], body["nickname"], body["phone"]) == (
        "o-new",
        "u-new",
        "小鱼",
        "13800001111",
    )
    assert body["tags"] == ["上海-干皮", "双11"]
    assert body["source_channel"] == "douyin-live"
    assert body["balance"] == 0
    assert body["accounts"] == []
    assert body["tier"]["tier"]["name"] == members.DEFAULT_TIERS[0][0]
    assert body["tier"]["growth"] == 0
    stored = db.get(Member, body["id"])
    assert stored.tenant_id == tenant.id


def test_create_member_with_known_openid_is_conflict(db, client, headers, tenant):
    existing = make_member(db, tenant, openid="o-dup")

    resp = client.post("/api/v1/members", headers=headers, json={"openid": "o-dup"})

    assert resp.status_code == 409
    assert resp.json()["code"] == "member.exists"
    assert resp.json()["params"]["member_id"] == existing.id


def test_create_member_with_bad_tag_is_invalid(db, client, headers, tenant):
    resp = client.post("/api/v1/members", headers=headers, json={"openid": "o-x", "tags": ["a,b"]})

    assert resp.status_code == 422
    assert resp.json()["code"] == "request.invalid_field"
    assert resp.json()["params"]["field"] == "tags"
    assert members.find_by_openid(db, tenant_id=tenant.id, openid="o-x") is None


def test_analyst_cannot_create_member(db, client, tenant):
    headers = token_headers(db, make_operator(db, tenant, role="analyst"))

    resp = client.post("/api/v1/members", headers=headers, json={"openid": "o-x"})

    assert resp.status_code == 403
    assert resp.json()["code"] == "auth.forbidden"
    assert members.find_by_openid(db, tenant_id=tenant.id, openid="o-x") is None


# --- search -----------------------------------------------------------------------------------


def test_search_by_nickname_openid_phone_id_and_taobao_nick(db, client, headers, tenant):
    xiaoyu = make_member(db, tenant, nickname="小鱼儿", openid="o-xiaoyu")
    mimi = make_member(db, tenant, nickname="咪咪酱", openid="o-mimi")
    lan = make_member(db, tenant, nickname="阿兰", openid="o-lan")
    bind(db, lan, "taobao", "alan1999")

    assert ids(search(client, headers, q="小鱼")) == [xiaoyu.id]
    assert ids(search(client, headers, q="o-mimi")) == [mimi.id]
    assert ids(search(client, headers, q=str(lan.id))) == [lan.id]
    assert ids(search(client, headers, q="ALAN1999")) == [lan.id]
    assert ids(search(client, headers, q="alan")) == [lan.id]
    assert search(client, headers, q="nobody-like-this") == {
        "items": [],
        "next_cursor": None,
        "total": 0,
    }


def test_search_by_phone_number(db, client, headers, tenant):
    mimi = make_member(db, tenant, nickname="咪咪酱")
    members.update_member(db, tenant_id=tenant.id, member_id=mimi.id, phone="13900002222")

    assert ids(search(client, headers, q="13900002222")) == [mimi.id]
    assert search(client, headers, q="9999999999")["total"] == 0


def test_search_openid_and_phone_match_whole_value_only(db, client, headers, tenant):
    make_member(db, tenant, nickname="甲", openid="o-xiaoyu")

    assert search(client, headers, q="o-xiao")["total"] == 0


def test_search_treats_percent_and_underscore_literally(db, client, headers, tenant):
    literal = make_member(db, tenant, nickname="100%好评")
    make_member(db, tenant, nickname="1000粉丝")
    make_member(db, tenant, nickname="a_b")

    assert ids(search(client, headers, q="100%")) == [literal.id]
    assert search(client, headers, q="%")["total"] == 1
    assert [m["nickname"] for m in search(client, headers, q="_")["items"]] == ["a_b"]


def test_search_by_tag_tier_and_source_channel(db, client, headers, tenant):
    plain = make_member(db, tenant, tags=["双11"])
    fan = make_member(db, tenant, tags=["铁粉团", "双11"])
    top = make_member(db, tenant)
    members.update_member(db, tenant_id=tenant.id, member_id=top.id, source_channel="wecom")
    grant(db, fan, 1200)
    grant(db, top, 25000)
    tiers = {t.name: t.id for t in members.list_tiers(db, tenant_id=tenant.id)}

    assert sorted(ids(search(client, headers, tag="双11"))) == sorted([plain.id, fan.id])
    assert ids(search(client, headers, tag="铁粉团")) == [fan.id]
    assert ids(search(client, headers, tier_id=tiers["粉丝"])) == [plain.id]
    assert ids(search(client, headers, tier_id=tiers["铁粉"])) == [fan.id]
    assert ids(search(client, headers, tier_id=tiers["挚爱粉"])) == []
    assert ids(search(client, headers, tier_id=tiers["钻石粉"])) == [top.id]
    assert ids(search(client, headers, source_channel="wecom")) == [top.id]
    assert ids(search(client, headers, tag="双11", tier_id=tiers["铁粉"])) == [fan.id]


def test_search_with_unknown_tier_is_invalid(client, headers):
    resp = client.get("/api/v1/members", headers=headers, params={"tier_id": 999999})

    assert resp.status_code == 422
    assert resp.json()["code"] == "request.invalid_field"
    assert resp.json()["params"]["field"] == "tier_id"


def test_search_pages_cover_every_member_exactly_once(db, client, headers, tenant):
    made = [make_member(db, tenant).id for _ in range(7)]
    make_member(db, make_tenant(db))  # another tenant's member never shows up

    seen, pages, cursor = [], 0, None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = search(client, headers, **params)
        assert page["total"] == 7
        seen += ids(page)
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert pages == 3
    assert seen == sorted(made, reverse=True)


def test_search_page_stays_stable_when_members_join(db, client, headers, tenant):
    made = [make_member(db, tenant).id for _ in range(4)]
    first = search(client, headers, limit=2)
    make_member(db, tenant)

    second = search(client, headers, limit=2, cursor=first["next_cursor"])

    assert ids(first) + ids(second) == sorted(made, reverse=True)
    assert second["next_cursor"] is None


@pytest.mark.parametrize("cursor", ["garbage!", "eyJ4IjogMX0", "bm90IGpzb24"])
def test_search_with_bad_cursor_is_invalid(client, headers, cursor):
    resp = client.get("/api/v1/members", headers=headers, params={"cursor": cursor})

    assert resp.status_code == 422
    assert resp.json()["code"] == "request.invalid_field"
    assert resp.json()["params"]["field"] == "cursor"


@pytest.mark.parametrize("limit", [0, 101])
def test_search_limit_out_of_range_is_invalid(client, headers, limit):
    resp = client.get("/api/v1/members", headers=headers, params={"limit": limit})

    assert resp.status_code == 422
    assert resp.json()["code"] == "request.invalid"


# --- read and edit ----------------------------------------------------------------------------


def test_read_member_detail(db, client, headers, tenant):
    member = make_member(db, tenant, nickname="阿兰", tags=["铁粉团"])
    bind(db, member, "douyin", "alan_dy")
    grant(db, member, 300)

    resp = client.get(f"/api/v1/members/{member.id}", headers=headers)

    assert resp.status_code == 200
    body = resp.json()
    assert (body["id"], body["nickname"], body["tags"], body["balance"]) == (
        member.id,
        "阿兰",
        ["铁粉团"],
        300,
    )
    assert [(a["platform"], a["account"]) for a in body["accounts"]] == [("douyin", "alan_dy")]


def test_read_unknown_member_is_not_found(client, headers):
    resp = client.get("/api/v1/members/999999", headers=headers)

    assert resp.status_code == 404
    assert resp.json()["code"] == "member.not_found"


def test_patch_replaces_tags_and_leaves_other_fields(db, client, headers, tenant):
    member = make_member(db, tenant, nickname="小鱼", tags=["a", "b"])
    url = f"/api/v1/members/{member.id}"

    resp = client.patch(url, headers=headers, json={"tags": ["b", "c", " c "]})

    assert resp.status_code == 200
    assert resp.json()["tags"] == ["b", "c"]
    assert resp.json()["nickname"] == "小鱼"
    assert client.get(url, headers=headers).json()["tags"] == ["b", "c"]
    assert ids(search(client, headers, tag="a")) == []
    assert ids(search(client, headers, tag="c")) == [member.id]


def test_patch_with_empty_tags_clears_them(db, client, headers, tenant):
    member = make_member(db, tenant, tags=["a"])

    resp = client.patch(f"/api/v1/members/{member.id}", headers=headers, json={"tags": []})

    assert resp.status_code == 200
    assert resp.json()["tags"] == []


def test_patch_nickname_and_phone(db, client, headers, tenant):
    member = make_member(db, tenant, tags=["keep"])

    resp = client.patch(
        f"/api/v1/members/{member.id}",
        headers=headers,
        json={"nickname": "新名字", "phone": "13700003333"},
    )

    assert resp.status_code == 200
    assert (resp.json()["nickname"], resp.json()["phone"], resp.json()["tags"]) == (
        "新名字",
        "13700003333",
        ["keep"],
    )


def test_patch_with_bad_tag_changes_nothing(db, client, headers, tenant):
    member = make_member(db, tenant, tags=["a"])

    resp = client.patch(
        f"/api/v1/members/{member.id}",
        headers=headers,
        json={"nickname": "x", "tags": [" lead,comma"]},
    )

    assert resp.status_code == 422
    assert resp.json()["code"] == "request.invalid_field"
    assert resp.json()["params"]["field"] == "tags"
    body = client.get(f"/api/v1/members/{member.id}", headers=headers).json()
    assert (body["nickname"], body["tags"]) == ("小鱼", ["a"])


def test_analyst_reads_but_cannot_patch(db, client, tenant):
    member = make_member(db, tenant, tags=["a"])
    headers = token_headers(db, make_operator(db, tenant, role="analyst"))

    read = client.get(f"/api/v1/members/{member.id}", headers=headers)
    patched = client.patch(f"/api/v1/members/{member.id}", headers=headers, json={"tags": []})

    assert read.status_code == 200
    assert patched.status_code == 403
    assert patched.json()["code"] == "auth.forbidden"


# --- platform accounts ------------------------------------------------------------------------


def test_bind_platform_account(db, client, headers, tenant):
    member = make_member(db, tenant)
    url = f"/api/v1/members/{member.id}/accounts"

    resp = client.post(url, headers=headers, json={"platform": "taobao", "account": "tb_xiaoyu"})
    again = client.post(url, headers=headers, json={"platform": "taobao", "account": "tb_xiaoyu"})

    assert resp.status_code == again.status_code == 201
    assert (resp.json()["platform"], resp.json()["account"]) == ("taobao", "tb_xiaoyu")
    detail = client.get(f"/api/v1/members/{member.id}", headers=headers).json()
    assert [(a["platform"], a["account"]) for a in detail["accounts"]] == [("taobao", "tb_xiaoyu")]


def test_bind_account_taken_by_another_member_is_conflict(db, client, headers, tenant):
    owner, other = make_member(db, tenant), make_member(db, tenant)
    bind(db, owner, "taobao", "tb_xiaoyu")

    resp = client.post(
        f"/api/v1/members/{other.id}/accounts",
        headers=headers,
        json={"platform": "taobao", "account": "tb_xiaoyu"},
    )

    assert resp.status_code == 409
    assert resp.json()["code"] == "member.platform_account_taken"
    rows = db.scalars(select(PlatformAccount).where(PlatformAccount.tenant_id == tenant.id)).all()
    assert [(r.member_id, r.account) for r in rows] == [(owner.id, "tb_xiaoyu")]


def test_bind_second_account_on_same_platform_is_conflict(db, client, headers, tenant):
    member = make_member(db, tenant)
    bind(db, member, "taobao", "tb_first")

    resp = client.post(
        f"/api/v1/members/{member.id}/accounts",
        headers=headers,
        json={"platform": "taobao", "account": "tb_second"},
    )

    assert resp.status_code == 409
    assert resp.json()["code"] == "member.platform_already_bound"
    assert resp.json()["params"]["account"] == "tb_first"


def test_one_account_per_platform_but_several_platforms(db, client, headers, tenant):
    member = make_member(db, tenant)
    url = f"/api/v1/members/{member.id}/accounts"

    for platform in ("taobao", "douyin", "kuaishou"):
        resp = client.post(
            url, headers=headers, json={"platform": platform, "account": f"same-{platform}"}
        )
        assert resp.status_code == 201

    detail = client.get(f"/api/v1/members/{member.id}", headers=headers).json()
    assert sorted(a["platform"] for a in detail["accounts"]) == ["douyin", "kuaishou", "taobao"]


def test_same_platform_account_may_be_bound_in_another_tenant(db, client, headers, tenant):
    bind(db, make_member(db, make_tenant(db)), "taobao", "tb_xiaoyu")
    member = make_member(db, tenant)

    resp = client.post(
        f"/api/v1/members/{member.id}/accounts",
        headers=headers,
        json={"platform": "taobao", "account": "tb_xiaoyu"},
    )

    assert resp.status_code == 201


def test_bind_unknown_platform_is_invalid(db, client, headers, tenant):
    member = make_member(db, tenant)

    resp = client.post(
        f"/api/v1/members/{member.id}/accounts",
        headers=headers,
        json={"platform": "myspace", "account": "tom"},
    )

    assert resp.status_code == 422
    assert resp.json()["code"] == "member.unknown_platform"
    assert (
        db.scalar(
            select(func.count())
            .select_from(PlatformAccount)
            .where(PlatformAccount.member_id == member.id)
        )
        == 0
    )


def test_unbind_frees_account_for_another_member(db, client, headers, tenant):
    first, second = make_member(db, tenant), make_member(db, tenant)
    bind(db, first, "taobao", "tb_xiaoyu")

    resp = client.delete(f"/api/v1/members/{first.id}/accounts/taobao", headers=headers)

    assert resp.status_code == 204
    assert client.get(f"/api/v1/members/{first.id}", headers=headers).json()["accounts"] == []
    rebound = client.post(
        f"/api/v1/members/{second.id}/accounts",
        headers=headers,
        json={"platform": "taobao", "account": "tb_xiaoyu"},
    )
    assert rebound.status_code == 201


def test_unbind_only_touches_that_platform(db, client, headers, tenant):
    member = make_member(db, tenant)
    bind(db, member, "taobao", "tb_xiaoyu")
    bind(db, member, "douyin", "dy_xiaoyu")

    resp = client.delete(f"/api/v1/members/{member.id}/accounts/taobao", headers=headers)

    assert resp.status_code == 204
    detail = client.get(f"/api/v1/members/{member.id}", headers=headers).json()
    assert [a["platform"] for a in detail["accounts"]] == ["douyin"]


def test_unbind_unknown_member_is_not_found(client, headers):
    resp = client.delete("/api/v1/members/999999/accounts/taobao", headers=headers)

    assert resp.status_code == 404
    assert resp.json()["code"] == "member.not_found"


# --- tiers ------------------------------------------------------------------------------------


def test_tiers_default_in_growth_order(client, headers):
    resp = client.get("/api/v1/tiers", headers=headers)

    assert resp.status_code == 200
    assert [(t["name"], t["min_growth"]) for t in resp.json()] == members.DEFAULT_TIERS


def test_owner_replaces_tiers(client, headers):
    resp = client.put(
        "/api/v1/tiers",
        headers=headers,
        json=[{"name": "老粉", "min_growth": 500}, {"name": "新粉", "min_growth": 0}],
    )

    assert resp.status_code == 200
    assert [(t["name"], t["min_growth"]) for t in resp.json()] == [("新粉", 0), ("老粉", 500)]
    listed = client.get("/api/v1/tiers", headers=headers).json()
    assert [(t["name"], t["min_growth"]) for t in listed] == [("新粉", 0), ("老粉", 500)]


@pytest.mark.parametrize(
    "tiers",
    [
        [],
        [{"name": "新粉", "min_growth": 10}],
        [{"name": "新粉", "min_growth": 0}, {"name": "新粉", "min_growth": 100}],
        [{"name": "新粉", "min_growth": 0}, {"name": "老粉", "min_growth": 0}],
        [{"name": "新粉", "min_growth": 0}, {"name": " ", "min_growth": 100}],
    ],
)
def test_invalid_tiers_are_refused_and_kept(client, headers, tiers):
    resp = client.put("/api/v1/tiers", headers=headers, json=tiers)

    assert resp.status_code == 422
    assert resp.json()["code"] == "member.invalid_tiers"
    listed = client.get("/api/v1/tiers", headers=headers).json()
    assert [(t["name"], t["min_growth"]) for t in listed] == members.DEFAULT_TIERS


@pytest.mark.parametrize(
    "tiers",
    [
        [{"name": "", "min_growth": 0}],
        [{"name": "新粉", "min_growth": -1}],
        {"name": "新粉", "min_growth": 0},
    ],
)
def test_malformed_tiers_are_invalid_request(client, headers, tiers):
    resp = client.put("/api/v1/tiers", headers=headers, json=tiers)

    assert resp.status_code == 422
    assert resp.json()["code"] == "request.invalid"


@pytest.mark.parametrize("role", ["operator", "service", "analyst"])
def test_only_owner_changes_tiers(db, client, tenant, role):
    headers = token_headers(db, make_operator(db, tenant, role=role))

    resp = client.put("/api/v1/tiers", headers=headers, json=[{"name": "新粉", "min_growth": 0}])

    assert resp.status_code == 403
    assert resp.json()["code"] == "auth.forbidden"
    assert client.get("/api/v1/tiers", headers=headers).status_code == 200


def test_tier_progress_counts_grants_and_ignores_spending(db, client, headers, tenant):
    member = make_member(db, tenant)
    url = f"/api/v1/members/{member.id}"
    grant(db, member, 700)
    grant(db, member, 800)

    tier = client.get(url, headers=headers).json()["tier"]
    assert (tier["growth"], tier["tier"]["name"], tier["next_tier"]["name"]) == (
        1500,
        "铁粉",
        "挚爱粉",
    )
    assert (tier["to_next"], tier["percent"]) == (3500, 12)

    spend(db, member, 1200)

    body = client.get(url, headers=headers).json()
    assert body["balance"] == 300
    assert body["tier"] == tier


def test_tier_progress_ignores_grants_not_counting_for_growth(db, client, headers, tenant):
    member = make_member(db, tenant)
    grant(db, member, 2000, counts_for_growth=False)

    body = client.get(f"/api/v1/members/{member.id}", headers=headers).json()

    assert body["balance"] == 2000
    assert body["tier"]["growth"] == 0
    assert body["tier"]["tier"]["name"] == "粉丝"


def test_tier_progress_at_top_tier(db, client, headers, tenant):
    member = make_member(db, tenant)
    grant(db, member, 30000)

    tier = client.get(f"/api/v1/members/{member.id}", headers=headers).json()["tier"]

    assert (tier["tier"]["name"], tier["next_tier"], tier["to_next"], tier["percent"]) == (
        "钻石粉",
        None,
        0,
        100,
    )


def test_tier_progress_follows_new_tiers(db, client, headers, tenant):
    member = make_member(db, tenant)
    grant(db, member, 150)
    client.put(
        "/api/v1/tiers",
        headers=headers,
        json=[{"name": "新粉", "min_growth": 0}, {"name": "老粉", "min_growth": 100}],
    )

    tier = client.get(f"/api/v1/members/{member.id}", headers=headers).json()["tier"]

    assert (tier["tier"]["name"], tier["next_tier"]) == ("老粉", None)

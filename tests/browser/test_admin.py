"""The admin console as an operator uses it: sign in, find a member, adjust points."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from playwright.sync_api import Locator, Page, expect

from siyu.ledger import service as ledger
from siyu.members import service as members
from siyu.tenants.models import Tenant
from tests.browser.conftest import Live, PageFactory
from tests.factories import PASSWORD, grant, make_member, make_operator, make_tenant

pytestmark = pytest.mark.browser


@dataclass
class Shop:
    tenant_id: int
    slug: str
    owner: str
    xiaoyu: int
    mimi: int
    alan: int


@pytest.fixture
def shop(live: Live) -> Shop:
    """A tenant with an owner and three fans; 小鱼 holds 300 points."""
    with live.seed() as db:
        tenant = make_tenant(db)
        owner = make_operator(db, tenant, role="owner")
        xiaoyu = make_member(db, tenant, nickname="小鱼", tags=["上海-干皮", "双11"])
        mimi = make_member(db, tenant, nickname="咪咪酱", tags=["杭州-油皮"])
        alan = make_member(db, tenant, nickname="阿兰", tags=["双11"])
        members.bind_account(
            db, tenant_id=tenant.id, member_id=xiaoyu.id, platform="taobao", account="xiaoyu_tb"
        )
        members.bind_account(
            db, tenant_id=tenant.id, member_id=alan.id, platform="douyin", account="alan1999"
        )
        grant(db, xiaoyu, 300, memo="双11直播间订单")
        return Shop(tenant.id, tenant.slug, owner.username, xiaoyu.id, mimi.id, alan.id)


def sign_in(page: Page, slug: str, username: str, password: str = PASSWORD) -> None:
    page.goto("/admin/login")
    page.get_by_label("Tenant").fill(slug)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def member_links(page: Page) -> Locator:
    """The member names in the list, newest member first."""
    return page.locator("table.grid tbody td:nth-child(2) a")


def adjust(page: Page, direction: str, points: str, memo: str) -> None:
    form = page.get_by_role("form", name="Adjust points")
    form.get_by_label(direction).check()
    form.get_by_label("Points").fill(points)
    form.get_by_label("Reason").fill(memo)
    form.get_by_role("button", name="Adjust points").click()


def ledger_count(live: Live, shop: Shop) -> int:
    with live.seed() as db:
        return len(
            ledger.list_entries(db, tenant_id=shop.tenant_id, member_id=shop.xiaoyu, limit=200)
        )


def test_operator_signs_in_and_lands_on_the_member_list(new_page: PageFactory, shop: Shop):
    page = new_page()
    sign_in(page, shop.slug, shop.owner)

    expect(page).to_have_url(re.compile(r"/admin/members$"))
    expect(page.get_by_role("heading", name="Members")).to_contain_text("3 in total")
    expect(member_links(page)).to_have_text(["阿兰", "咪咪酱", "小鱼"])
    expect(page.locator("header .who")).to_contain_text(shop.owner)


def test_wrong_password_shows_a_readable_error_and_stays_on_login(
    new_page: PageFactory, shop: Shop
):
    page = new_page()
    page.goto("/admin/login")
    page.get_by_label("Tenant").fill(shop.slug)
    page.get_by_label("Username").fill(shop.owner)
    page.get_by_label("Password").fill("not-the-password")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Sign in").click()

    assert answer.value.status == 401
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password")
    expect(page).to_have_url(re.compile(r"/admin/login$"))
    # What was typed stays, except the password.
    expect(page.get_by_label("Tenant")).to_have_value(shop.slug)
    expect(page.get_by_label("Username")).to_have_value(shop.owner)
    expect(page.get_by_label("Password")).to_have_value("")


def test_operator_finds_members_by_nickname_taobao_nick_and_tag(new_page: PageFactory, shop: Shop):
    page = new_page()
    sign_in(page, shop.slug, shop.owner)
    search = page.get_by_role("searchbox", name="Search")

    search.fill("咪咪")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("heading", name="Members")).to_contain_text("1 in total")
    expect(member_links(page)).to_have_text(["咪咪酱"])

    search.fill("xiaoyu")  # part of the Taobao nick; no nickname or openid contains it
    page.get_by_role("button", name="Filter").click()
    expect(member_links(page)).to_have_text(["小鱼"])
    expect(page.locator("table.grid tbody")).to_contain_text("Taobao: xiaoyu_tb")

    page.get_by_role("link", name="Clear").click()
    page.get_by_role("combobox", name="Tag").select_option("双11")
    page.get_by_role("button", name="Filter").click()
    expect(member_links(page)).to_have_text(["阿兰", "小鱼"])
    expect(page.get_by_role("combobox", name="Tag")).to_have_value("双11")

    search.fill("nobody-by-that-name")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No members match.")).to_be_visible()


def test_member_list_follows_typing_without_a_page_load(new_page: PageFactory, shop: Shop):
    page = new_page()
    sign_in(page, shop.slug, shop.owner)
    page.evaluate("window.__same_document = true")  # gone if the page reloads

    page.get_by_role("searchbox", name="Search").press_sequentially("咪咪")

    expect(member_links(page)).to_have_text(["咪咪酱"])
    expect(page.get_by_role("heading", name="Members")).to_contain_text("1 in total")
    expect(page).to_have_url(re.compile(r"q=%E5%92%AA%E5%92%AA|q=咪咪"))
    assert page.evaluate("window.__same_document") is True
    page.get_by_role("combobox", name="Tag").select_option("双11")
    expect(page.get_by_text("No members match.")).to_be_visible()
    assert page.evaluate("window.__same_document") is True


def test_searching_the_full_taobao_nick_with_an_underscore_finds_the_member(
    new_page: PageFactory, shop: Shop
):
    page = new_page()
    sign_in(page, shop.slug, shop.owner)

    page.get_by_role("searchbox", name="Search").fill("xiaoyu_tb")
    page.get_by_role("button", name="Filter").click()

    expect(page).to_have_url(re.compile(r"q=xiaoyu_tb"))
    page.wait_for_load_state()
    assert member_links(page).all_inner_texts() == ["小鱼"]


def test_operator_grants_points_with_a_reason_and_sees_it_in_the_ledger(
    new_page: PageFactory, shop: Shop
):
    page = new_page()
    sign_in(page, shop.slug, shop.owner)
    page.get_by_role("link", name="小鱼").click()
    expect(page).to_have_url(re.compile(rf"/admin/members/{shop.xiaoyu}$"))
    expect(page.get_by_test_id("balance")).to_have_text("300")

    adjust(page, "Grant", "1200", "直播间抽奖补发")

    expect(page.get_by_role("status")).to_have_text("Points adjusted.")
    expect(page.get_by_test_id("balance")).to_have_text("1,500")
    newest = page.locator("table.grid tbody tr").first
    expect(newest).to_contain_text("+1,200")
    expect(newest).to_contain_text("manual_adjust")
    expect(newest).to_contain_text("直播间抽奖补发")
    expect(page.locator("table.grid tbody tr")).to_have_count(2)
    # Reloading the confirmation page does not post the adjustment again.
    page.reload()
    expect(page.get_by_test_id("balance")).to_have_text("1,500")


def test_deducting_more_than_the_balance_is_refused_and_changes_nothing(
    new_page: PageFactory, live: Live, shop: Shop
):
    page = new_page()
    sign_in(page, shop.slug, shop.owner)
    page.goto(f"/admin/members/{shop.xiaoyu}")

    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        adjust(page, "Deduct", "5000", "误操作")

    assert answer.value.status == 422
    expect(page.get_by_role("alert")).to_have_text("300 points available, 5000 needed")
    expect(page.get_by_test_id("balance")).to_have_text("300")
    # The form keeps what was typed so the operator can correct it.
    form = page.get_by_role("form", name="Adjust points")
    expect(form.get_by_label("Deduct")).to_be_checked()
    expect(form.get_by_label("Points")).to_have_value("5000")
    expect(page.locator("table.grid tbody tr")).to_have_count(1)
    assert ledger_count(live, shop) == 1


def test_an_adjustment_without_a_reason_is_refused(new_page: PageFactory, live: Live, shop: Shop):
    page = new_page()
    sign_in(page, shop.slug, shop.owner)
    page.goto(f"/admin/members/{shop.xiaoyu}")
    form = page.get_by_role("form", name="Adjust points")

    form.get_by_label("Points").fill("50")
    form.get_by_role("button", name="Adjust points").click()
    # The browser refuses first: the reason field is required.
    assert form.get_by_label("Reason").evaluate("el => el.validity.valueMissing")
    expect(page).to_have_url(re.compile(rf"/admin/members/{shop.xiaoyu}$"))

    # And so does the server when the browser's check is bypassed (blank reason).
    form.evaluate("f => { f.noValidate = true }")
    form.get_by_label("Reason").fill("   ")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        form.get_by_role("button", name="Adjust points").click()
    assert answer.value.status == 422
    expect(page.get_by_role("alert")).to_have_text(
        "A reason is required for every manual adjustment"
    )
    expect(page.get_by_test_id("balance")).to_have_text("300")
    assert ledger_count(live, shop) == 1


def test_signing_out_locks_the_console_again(new_page: PageFactory, shop: Shop):
    page = new_page()
    sign_in(page, shop.slug, shop.owner)
    expect(page).to_have_url(re.compile(r"/admin/members$"))

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/admin/login$"))

    page.goto(f"/admin/members/{shop.xiaoyu}")
    expect(page).to_have_url(re.compile(r"/admin/login$"))
    expect(page.get_by_role("heading", name="Operator sign in")).to_be_visible()


def test_analyst_sees_the_member_but_cannot_adjust_points(
    new_page: PageFactory, live: Live, shop: Shop
):
    with live.seed() as db:
        analyst = make_operator(db, db.get(Tenant, shop.tenant_id), role="analyst")
    page = new_page()
    sign_in(page, shop.slug, analyst.username)
    page.get_by_role("link", name="小鱼").click()

    expect(page.get_by_test_id("balance")).to_have_text("300")
    expect(page.locator("table.grid tbody tr")).to_have_count(1)
    expect(page.get_by_role("form", name="Adjust points")).to_have_count(0)
    expect(page.get_by_role("button", name="Adjust points")).to_have_count(0)


def test_login_post_without_the_csrf_token_is_refused(new_page: PageFactory, shop: Shop):
    page = new_page()
    page.goto("/admin/login")  # the session now holds a CSRF token the form would send

    forged = page.request.post(
        "/admin/login", form={"tenant": shop.slug, "username": shop.owner, "password": PASSWORD}
    )

    assert forged.status == 403
    assert "auth.csrf" in forged.text()  # the error page names the code
    page.goto("/admin/members")
    expect(page).to_have_url(re.compile(r"/admin/login$"))  # not signed in

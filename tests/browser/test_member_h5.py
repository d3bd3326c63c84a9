"""The member H5 on a phone: sign in, see points, tier and history; language switching."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from siyu.core import clock
from siyu.core.i18n import gettext
from tests.browser.conftest import Live, PageFactory
from tests.browser.support import PHONE
from tests.factories import grant, make_member, make_tenant, spend

pytestmark = pytest.mark.browser

OPENID = "oFan-browser-0001"


@dataclass
class Fan:
    slug: str
    expires_at: dt.datetime


@pytest.fixture
def fan(live: Live) -> Fan:
    """A fan with 1,200 never-expiring points, 300 expiring in 30 days, 100 spent.

    The spend takes the earliest-expiring lot first, so 200 points are left to expire.
    """
    expires_at = clock.now() + dt.timedelta(days=30)
    with live.seed() as db:
        tenant = make_tenant(db)
        member = make_member(db, tenant, nickname="小鱼", openid=OPENID)
        grant(db, member, 1200, memo="双11直播间订单")
        grant(db, member, 300, memo="新人礼", expires_at=expires_at)
        spend(db, member, 100)
        return Fan(tenant.slug, expires_at)


def phone(new_page: PageFactory, locale: str = "en-US") -> Page:
    return new_page(locale=locale, viewport=PHONE)


def sign_in(page: Page, slug: str, openid: str = OPENID) -> None:
    page.goto(f"/m/{slug}/login")
    page.get_by_label("openid").fill(openid)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(rf"/m/{slug}$"))


def fits_the_screen(page: Page) -> bool:
    """Nothing pokes out sideways on a 390 px wide phone."""
    return bool(page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"))


def test_member_pages_redirect_to_sign_in_when_signed_out(new_page: PageFactory, fan: Fan):
    page = phone(new_page)

    page.goto(f"/m/{fan.slug}")
    expect(page).to_have_url(re.compile(rf"/m/{fan.slug}/login$"))
    expect(page.get_by_role("heading", name="Welcome to the member center")).to_be_visible()

    page.goto(f"/m/{fan.slug}/points")
    expect(page).to_have_url(re.compile(rf"/m/{fan.slug}/login$"))


def test_member_signs_in_and_sees_balance_tier_expiry_and_recent_points(
    new_page: PageFactory, fan: Fan
):
    page = phone(new_page)
    sign_in(page, fan.slug)

    card = page.locator("section.points")
    expect(card).to_contain_text("Hi, 小鱼")
    expect(page.get_by_test_id("balance")).to_have_text("1,400")
    # Growth 1,500 (spending never lowers it): tier 铁粉 from 1,000, next 挚爱粉 at 5,000.
    expect(card.locator(".tier")).to_have_text("铁粉")
    expect(page.get_by_test_id("tier-progress")).to_have_text("3,500 more growth to reach 挚爱粉")
    expect(page.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "12")
    last_day = (
        (fan.expires_at - dt.timedelta(microseconds=1)).astimezone(ZoneInfo("Asia/Shanghai")).date()
    )
    expect(page.get_by_test_id("expiry")).to_have_text(
        f"200 points expire on {last_day.isoformat()}"
    )

    recent = page.locator("ul.entries li")
    expect(recent).to_have_count(3)
    expect(recent.nth(0)).to_contain_text("Points mall")
    expect(recent.nth(0).locator(".pts")).to_have_text("-100")
    expect(recent.nth(1)).to_contain_text("新人礼")
    expect(recent.nth(1).locator(".pts")).to_have_text("+300")
    expect(recent.nth(2)).to_contain_text("Live-room order")
    expect(recent.nth(2)).to_contain_text("双11直播间订单")
    assert fits_the_screen(page)


def test_points_history_lists_newest_first_and_pages_older_entries(
    new_page: PageFactory, live: Live
):
    with live.seed() as db:
        tenant = make_tenant(db)
        member = make_member(db, tenant, openid=OPENID)
        for n in range(1, 26):
            grant(db, member, n, memo=f"订单 {n:02d}")
        slug = tenant.slug
    page = phone(new_page)
    sign_in(page, slug)

    page.get_by_role("link", name="Points history").click()
    expect(page).to_have_url(re.compile(rf"/m/{slug}/points$"))
    rows = page.locator("ul.entries li")
    expect(rows).to_have_count(20)
    expect(rows.locator(".pts")).to_have_text([f"+{n}" for n in range(25, 5, -1)])
    assert fits_the_screen(page)

    page.get_by_role("link", name="Older").click()
    expect(rows).to_have_count(5)
    expect(rows.locator(".pts")).to_have_text([f"+{n}" for n in range(5, 0, -1)])
    expect(rows.first).to_contain_text("订单 05")
    expect(page.get_by_role("link", name="Older")).to_have_count(0)

    page.get_by_role("link", name="Back").click()
    expect(page).to_have_url(re.compile(rf"/m/{slug}$"))
    expect(page.get_by_test_id("balance")).to_have_text("325")


def test_member_signs_out(new_page: PageFactory, fan: Fan):
    page = phone(new_page)
    sign_in(page, fan.slug)

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(rf"/m/{fan.slug}/login$"))

    page.goto(f"/m/{fan.slug}")
    expect(page).to_have_url(re.compile(rf"/m/{fan.slug}/login$"))


def test_a_blank_openid_is_refused_with_a_message(new_page: PageFactory, fan: Fan):
    page = phone(new_page)
    page.goto(f"/m/{fan.slug}/login")
    form = page.locator("form.stack")
    form.evaluate("f => { f.noValidate = true }")

    page.get_by_label("openid").fill("  ")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("alert")).to_have_text("Enter your openid")
    expect(page).to_have_url(re.compile(rf"/m/{fan.slug}/login$"))


def test_h5_speaks_chinese_by_default_and_english_on_request(new_page: PageFactory, fan: Fan):
    page = phone(new_page, locale="zh-CN")
    title = "Welcome to the member center"

    page.goto(f"/m/{fan.slug}/login")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_role("heading", level=1)).to_have_text(gettext(title, "zh_CN"))

    page.goto(f"/m/{fan.slug}/login?lang=en")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", level=1)).to_have_text(title)

    # The choice is remembered (cookie) on the next page, until switched back.
    sign_in(page, fan.slug)
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_text("My points", exact=True)).to_be_visible()
    page.get_by_role("link", name="中").click()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_text(gettext("My points", "zh_CN"), exact=True)).to_be_visible()

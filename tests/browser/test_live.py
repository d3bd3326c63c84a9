"""The live calendar in Chromium: a fan reserves a product, the operator clicks "On sale now"
during the broadcast, the fan's reservation shows its reminder; the daily check-in."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Live, PageFactory
from tests.browser.support import PHONE
from tests.factories import (
    PASSWORD,
    add_product,
    make_member,
    make_operator,
    make_session,
    make_tenant,
)

pytestmark = pytest.mark.browser
OPENID = "oFan-live-0001"


@dataclass
class Broadcast:
    slug: str
    session_id: int
    product_id: int


@pytest.fixture
def broadcast(live: Live, clock) -> Broadcast:
    """Tonight 21:00 Shanghai (the clock reads 20:00 there): 零食节 with two products."""
    with live.seed() as db:
        tenant = make_tenant(db)
        make_operator(db, tenant, username="boss")
        make_member(db, tenant, nickname="小鱼", openid=OPENID)
        s = make_session(
            db, tenant, theme="零食节", starts_at=dt.datetime(2026, 11, 11, 13, 0, tzinfo=dt.UTC)
        )
        p = add_product(db, s, title="每日坚果", brand="三只松鼠", link="https://item.example/1")
        add_product(db, s, title="辣条", live_price_fen=990, list_price_fen=1500)
        return Broadcast(tenant.slug, s.id, p.id)


def fan_signs_in(page: Page, slug: str) -> None:
    page.goto(f"/m/{slug}/login")
    page.get_by_label("openid").fill(OPENID)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(rf"/m/{slug}$"))


def operator_signs_in(page: Page, slug: str) -> None:
    page.goto("/admin/login")
    page.get_by_label("Tenant").fill(slug)
    page.get_by_label("Username").fill("boss")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/admin/members"))


def test_reserve_then_on_sale_shows_the_reminder_on_the_fans_reservation(
    new_page: PageFactory, broadcast: Broadcast
):
    fan = new_page(viewport=PHONE)
    fan_signs_in(fan, broadcast.slug)
    fan.get_by_role("link", name="Live calendar").click()
    expect(fan.get_by_test_id("today-preview")).to_contain_text("零食节")
    fan.get_by_role("link", name="See the lineup").click()
    item = fan.locator(f'li[data-product="{broadcast.product_id}"]')
    item.get_by_role("button", name="Reserve").click()
    expect(fan.get_by_role("status")).to_contain_text("Reserved")
    expect(item.locator("[data-state]")).to_have_attribute("data-state", "waiting")

    op = new_page()
    operator_signs_in(op, broadcast.slug)
    op.goto(f"/admin/live/sessions/{broadcast.session_id}/control")
    row = op.locator(f'tr[data-product="{broadcast.product_id}"]')
    expect(row.locator('[data-count="reserved"]')).to_have_text("1")
    row.get_by_role("button", name="On sale now").click()
    expect(op.get_by_role("status")).to_contain_text("On sale")
    row = op.locator(f'tr[data-product="{broadcast.product_id}"]')
    expect(row.locator('[data-count="reminded"]')).to_have_text("1")
    expect(row.get_by_role("button", name="On sale now")).to_be_disabled()

    fan.reload()
    item = fan.locator(f'li[data-product="{broadcast.product_id}"]')
    expect(item.locator("[data-state]")).to_have_attribute("data-state", "due")
    expect(item.get_by_role("link", name="Buy now")).to_have_attribute(
        "href", "https://item.example/1"
    )
    fan.get_by_role("link", name="Reservations").click()
    mine = fan.locator("li[data-reservation]")
    expect(mine).to_have_count(1)
    expect(mine.locator("[data-state]")).to_have_text("Reminder on its way")


def test_fan_checks_in_once_and_reserves_tonights_session(
    new_page: PageFactory, broadcast: Broadcast
):
    fan = new_page(viewport=PHONE)
    fan_signs_in(fan, broadcast.slug)
    fan.get_by_role("link", name="Check-in").click()
    expect(fan.get_by_test_id("tonight")).to_contain_text("零食节")
    today = fan.locator('td[data-day="2026-11-11"]')
    expect(today).to_contain_text("零食节")  # the day's live theme on the calendar

    fan.get_by_role("button", name=re.compile(r"Check in \(\+5 points\)")).click()
    expect(fan.get_by_test_id("notice")).to_have_text("Checked in!")
    expect(fan.get_by_test_id("streak")).to_have_text("1 days in a row")
    expect(today).to_have_attribute("data-checked", "daily")
    expect(fan.get_by_role("button", name=re.compile("Check in"))).to_have_count(0)

    fan.get_by_test_id("tonight").get_by_role("button", name="Remind me when it starts").click()
    expect(fan.get_by_test_id("tonight")).to_contain_text("Reserved")
    fan.get_by_role("link", name="Me", exact=True).click()
    expect(fan.get_by_test_id("balance")).to_have_text("5")

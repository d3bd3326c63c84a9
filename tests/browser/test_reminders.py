"""Reserve → "On sale now" → the reminder with its tracked link in the fan's inbox, in Chromium;
the click comes back in the control panel's funnel."""

from __future__ import annotations

import pytest
from playwright.sync_api import Route, expect

from siyu.core.jobs import huey
from tests.browser.conftest import PageFactory
from tests.browser.support import PHONE
from tests.browser.test_live import (
    Broadcast,
    broadcast,  # noqa: F401
    fan_signs_in,
    operator_signs_in,
)
from tests.messaging.conftest import drain

pytestmark = pytest.mark.browser


def test_on_sale_puts_the_reminder_with_its_link_in_the_fans_inbox(
    new_page: PageFactory,
    broadcast: Broadcast,  # noqa: F811
):
    huey.flush()
    fan = new_page(viewport=PHONE)
    fan_signs_in(fan, broadcast.slug)
    fan.goto(f"/m/{broadcast.slug}/live/{broadcast.session_id}")
    item = fan.locator(f'li[data-product="{broadcast.product_id}"]')
    item.get_by_test_id(f"notify-{broadcast.product_id}").check()
    item.get_by_role("button", name="Reserve").click()
    expect(fan.get_by_role("status")).to_contain_text("Reserved")

    op = new_page()
    operator_signs_in(op, broadcast.slug)
    op.goto(f"/admin/live/sessions/{broadcast.session_id}/control")
    row = op.locator(f'tr[data-product="{broadcast.product_id}"]')
    row.get_by_role("button", name="On sale now").click()
    expect(op.get_by_role("status")).to_contain_text("On sale")
    assert "messaging.dispatch" in drain()  # the worker's turn (no WeChat configured: inbox)

    fan.get_by_role("link", name="Messages").click()
    inbox = fan.get_by_test_id("inbox")
    expect(inbox).to_contain_text("每日坚果开抢啦")
    link = inbox.locator('a[href^="/r/"]')
    expect(link).to_have_count(1)
    # The tracked link counts the click and sends the fan on to the product's page.
    fan.route("https://item.example/**", lambda route: _shop(route))
    link.click()
    expect(fan).to_have_url("https://item.example/1")
    expect(fan.locator("body")).to_contain_text("每日坚果 shop")

    op.reload()
    row = op.locator(f'tr[data-product="{broadcast.product_id}"]')
    expect(row.locator('[data-count="reminded"]')).to_have_text("1")
    expect(row.locator('[data-count="delivered"]')).to_have_text("1")
    expect(row.locator('[data-count="clicked"]')).to_have_text("1")
    huey.flush()


def _shop(route: Route) -> None:
    route.fulfill(status=200, content_type="text/html; charset=utf-8", body="<p>每日坚果 shop</p>")

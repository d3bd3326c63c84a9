"""Messaging as people use it: an operator broadcasts with a recipient-count confirmation and
follows the progress; a fan reads it in the H5 inbox; SOP schedules pause and resume."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from siyu.core.jobs import huey
from tests.browser.conftest import Live, PageFactory
from tests.browser.support import PHONE
from tests.browser.test_admin import sign_in
from tests.factories import make_member, make_operator, make_tenant
from tests.messaging.conftest import drain

pytestmark = pytest.mark.browser


@pytest.fixture
def shop(live: Live) -> tuple[str, str]:
    huey.flush()
    with live.seed() as db:
        tenant = make_tenant(db)
        owner = make_operator(db, tenant, role="owner")
        make_member(db, tenant, nickname="小鱼", openid="o-xiaoyu", tags=["双11"])
        make_member(db, tenant, nickname="阿兰", openid="o-alan", tags=["双11"])
        make_member(db, tenant, nickname="咪咪酱", openid="o-mimi")
        return tenant.slug, owner.username


def test_broadcast_with_confirmation_reaches_the_fans_inbox(new_page: PageFactory, shop):
    slug, owner = shop
    page = new_page(locale="en-US")
    sign_in(page, slug, owner)
    page.goto("/admin/broadcasts/new")
    form = page.get_by_role("form", name="New broadcast")
    form.locator("[name=target]").select_option("members_tag")
    form.locator("[name=tag]").fill("双11")
    form.locator("[name=title]").fill("双11预告")
    form.locator("[name=body]").fill("{{ member.nickname }}，今晚 8 点双11专场！")
    form.get_by_role("button", name="Count recipients").click()

    expect(page.get_by_test_id("confirm")).to_have_text("This goes to 2 recipients.")
    page.get_by_role("button", name="Confirm and send").click()
    expect(page).to_have_url(re.compile(r"/admin/messages/\d+"))
    ran = drain()  # what the worker does
    assert "messaging.dispatch" in ran, ran
    page.reload()
    expect(page.get_by_test_id("progress")).to_have_attribute("value", "100")
    expect(page.get_by_test_id("counts")).to_contain_text("sent: 2")

    fan = new_page(locale="en-US", viewport=PHONE)
    fan.goto(f"/m/{slug}/login")
    fan.get_by_label("openid").fill("o-xiaoyu")
    fan.get_by_role("button", name="Sign in").click()
    fan.get_by_role("link", name="Messages").click()
    expect(fan.get_by_test_id("inbox")).to_contain_text("小鱼，今晚 8 点双11专场！")
    expect(fan.get_by_test_id("inbox")).to_contain_text("双11预告")


def test_schedules_show_next_runs_and_pause_resume(new_page: PageFactory, shop):
    slug, owner = shop
    page = new_page(locale="en-US")
    sign_in(page, slug, owner)
    page.goto("/admin/schedules")
    row = page.locator("tr[data-key='live-start']")
    expect(row).to_contain_text("paused")  # the ready-made SOP set starts paused

    row.get_by_role("button", name="Resume").click()

    row = page.locator("tr[data-key='live-start']")
    expect(row).not_to_contain_text("paused")
    expect(row.locator("td:nth-child(5)")).to_contain_text("19:30")
    assert row.locator("td:nth-child(5)").inner_text().count("19:30") == 5
    row.get_by_role("button", name="Pause").click()
    expect(page.locator("tr[data-key='live-start']")).to_contain_text("paused")


def test_template_preview_renders_for_a_member_and_bad_limits_are_refused(
    new_page: PageFactory, shop
):
    slug, owner = shop
    page = new_page(locale="en-US")
    sign_in(page, slug, owner)
    page.goto("/admin/message-templates")
    form = page.get_by_role("form", name="Template")
    form.locator("[name=key]").fill("reserve")
    form.locator("[name=name]").fill("预约提醒")
    form.locator("[name=body]").fill("{{ member.nickname }}，{{ session.theme }} 开售了")
    form.get_by_role("button", name="Preview").click()
    expect(page.get_by_test_id("preview")).to_contain_text("小鱼，双11美妆专场 开售了")

    form = page.get_by_role("form", name="Template")
    form.locator("[name=sub_template_id]").fill("TPL-1")
    form.locator("[name=sub_data]").fill("thing1=" + "超" * 21)
    form.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_contain_text("subscribe.data.thing1")

"""The mall and trials in Chromium: a fan adds an address and redeems; a trial goes from
applying on the phone through the operator's draw to the winner's report and its review."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select, update

from siyu.core import clock
from siyu.ledger import service as ledger
from siyu.mall import models as mm
from siyu.trials import models as tm
from tests.browser.conftest import Live, PageFactory
from tests.browser.support import PHONE
from tests.factories import (
    PASSWORD,
    grant,
    make_address,
    make_item,
    make_member,
    make_operator,
    make_tenant,
    make_trial,
)

pytestmark = pytest.mark.browser


def member_sign_in(page: Page, slug: str, openid: str) -> None:
    page.goto(f"/m/{slug}/login")
    page.get_by_label("openid").fill(openid)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(rf"/m/{slug}$"))


def admin_sign_in(page: Page, slug: str, username: str) -> None:
    page.goto("/admin/login")
    page.get_by_label("Tenant").fill(slug)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).not_to_have_url(re.compile(r"/admin/login"))


def test_fan_adds_an_address_redeems_and_sees_the_order(new_page: PageFactory, live: Live):
    with live.seed() as db:
        tenant = make_tenant(db)
        member = make_member(db, tenant, openid="o-mall-fan")
        grant(db, member, 500)
        item = make_item(db, tenant, title="定制保温杯", points_price=300, stock=1)
        slug, item_id, member_id, tenant_id = tenant.slug, item.id, member.id, tenant.id
    page = new_page(locale="en-US", viewport=PHONE)
    member_sign_in(page, slug, "o-mall-fan")

    page.get_by_role("link", name="Points mall").click()
    page.get_by_role("link", name=re.compile("定制保温杯")).click()
    expect(page.get_by_text("Add a shipping address first.")).to_be_visible()
    page.get_by_role("link", name="Add an address").click()
    form = page.get_by_role("form", name="Add an address")
    form.get_by_label("Recipient").fill("王小鱼")
    form.get_by_label("Phone").fill("13800138000")
    form.get_by_label("Province / city / district").fill("浙江省 杭州市")
    form.get_by_label("Street address").fill("文三路 1 号")
    form.get_by_role("button", name="Save address").click()
    expect(page).to_have_url(re.compile(rf"/m/{slug}/mall/items/{item_id}$"))
    expect(page.get_by_test_id("address")).to_contain_text("王小鱼")
    page.get_by_role("button", name="Redeem for 300 points").click()

    expect(page).to_have_url(re.compile(rf"/m/{slug}/mall/orders/\d+"))
    expect(page.get_by_role("status")).to_have_text("Redeemed!")
    expect(page.get_by_test_id("status")).to_have_text("Pending")
    page.get_by_role("link", name="Back").click()
    expect(page.get_by_test_id("orders")).to_contain_text("定制保温杯")
    with live.seed() as db:
        assert ledger.get_balance(db, tenant_id=tenant_id, member_id=member_id).balance == 200
        assert db.scalar(select(mm.Item.stock).where(mm.Item.id == item_id)) == 0

    # Sold out now: a second try says so.
    page.goto(f"/m/{slug}/mall/items/{item_id}")
    page.get_by_role("button", name="Redeem for 300 points").click()
    expect(page.get_by_role("alert")).to_contain_text("sold out")


def test_apply_draw_ship_and_report_across_phone_and_console(new_page: PageFactory, live: Live):
    with live.seed() as db:
        tenant = make_tenant(db)
        make_operator(db, tenant, username="ops")
        member = make_member(db, tenant, openid="o-trial-fan")
        make_address(db, member)
        trial = make_trial(db, tenant, title="新品精华试用", slots=1, report_reward=100)
        slug, trial_id, tenant_id, member_id = tenant.slug, trial.id, tenant.id, member.id
        commitment = trial.commitment
    fan = new_page(locale="en-US", viewport=PHONE)
    member_sign_in(fan, slug, "o-trial-fan")

    fan.get_by_role("link", name="Product trials").click()
    fan.get_by_role("link", name=re.compile("新品精华试用")).click()
    expect(fan.get_by_text(commitment)).to_be_visible()
    fan.get_by_role("form", name="Apply").get_by_role("button", name="Apply").click()
    expect(fan.get_by_role("status")).to_have_text("Applied. Good luck!")
    expect(fan.get_by_test_id("application-status")).to_have_text("Applied")

    # The window closes (an hour of application time has passed), the operator draws.
    with live.seed() as db:
        db.execute(
            update(tm.Trial)
            .where(tm.Trial.id == trial_id)
            .values(apply_until=clock.now() - dt.timedelta(seconds=1))
        )
    ops = new_page(locale="en-US")
    admin_sign_in(ops, slug, "ops")
    ops.goto("/admin/trials")
    ops.get_by_role("link", name="新品精华试用").click()
    ops.get_by_role("button", name="Draw the winners").click()
    expect(ops.get_by_test_id("status")).to_have_text("Drawn")
    seed = ops.get_by_test_id("seed").inner_text()
    expect(ops.get_by_test_id("report-state")).to_have_text("Due")

    # Anyone can check the draw on the public page.
    ops.goto(f"/admin/trials/{trial_id}")
    ops.get_by_role("link", name=re.compile("draws")).click()
    expect(ops.get_by_test_id("check")).to_contain_text("✓")
    expect(ops.get_by_test_id("seed")).to_have_text(seed)

    fan.reload()
    expect(fan.get_by_test_id("application-status")).to_have_text("Won")
    report = fan.get_by_role("form", name="Trial report")
    report.get_by_label("Your experience").fill("吸收很快，第二天皮肤很润。")
    report.get_by_role("button", name="Send report").click()
    expect(fan.get_by_role("status")).to_have_text("Report sent. Thank you!")
    expect(fan.get_by_test_id("report-status")).to_have_text("Submitted")

    ops.goto(f"/admin/trials/{trial_id}")
    expect(ops.get_by_test_id("board")).to_contain_text("吸收很快")
    ops.get_by_role("button", name="Accept").click()
    expect(ops.get_by_test_id("report-state")).to_have_text("Accepted")
    fan.reload()
    expect(fan.get_by_test_id("report-status")).to_have_text("Accepted")
    with live.seed() as db:
        assert ledger.get_balance(db, tenant_id=tenant_id, member_id=member_id).balance == 100

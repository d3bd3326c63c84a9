"""Orders in the browser: an operator uploads an export and watches it import; reviews a
flagged claim; a fan claims an order on the phone and sees it credited, pending or refused."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from siyu.core.jobs import huey
from siyu.ledger import service as ledger
from siyu.orders import service as orders
from siyu.orders.readers import Record
from tests.browser.conftest import Live, PageFactory
from tests.browser.support import PHONE
from tests.browser.test_admin import sign_in
from tests.browser.test_member_h5 import fits_the_screen
from tests.browser.test_member_h5 import sign_in as member_sign_in
from tests.factories import make_member, make_operator, make_tenant
from tests.orders.samples import TbRow, taobao_csv

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _empty_queue():
    huey.flush()
    yield
    huey.flush()


def test_operator_uploads_an_export_and_watches_progress_then_downloads_the_report(
    new_page: PageFactory, live: Live, tmp_path
):
    with live.seed() as db:
        tenant = make_tenant(db)
        owner = make_operator(db, tenant)
        slug, username = tenant.slug, owner.username
    export = tmp_path / "ExportOrderList.csv"
    export.write_bytes(
        taobao_csv([TbRow("1", "小鱼爱买买", "128.50"), TbRow("", "x", "1"), TbRow("3", "b", "9")])
    )
    page = new_page()
    sign_in(page, slug, username)
    page.get_by_role("link", name="Orders").click()

    page.get_by_label(re.compile("Export file")).set_input_files(str(export))
    page.get_by_label(re.compile("Live session id")).fill("12")
    page.get_by_role("button", name="Import").click()

    expect(page).to_have_url(re.compile(r"/admin/orders/imports/\d+$"))
    expect(page.get_by_test_id("import-status")).to_have_text("Queued")
    message = huey.dequeue()  # the worker picks the job up; htmx polling shows the result
    assert message is not None
    huey.execute(message)
    expect(page.get_by_test_id("import-status")).to_have_text("Done", timeout=5000)
    expect(page.locator("#progress")).to_contain_text("3 rows: 2 imported, 0 updated, 1 rejected")
    page.reload()
    expect(page.locator("#rejects tbody tr")).to_have_count(1)
    expect(page.locator("#rejects")).to_contain_text("missing order number")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the import report (CSV)").click()
    report = download.value.path().read_text(encoding="utf-8-sig")
    assert "rows,imported,updated,rejected\n3,2,0,1" in report
    assert "3,订单编号,missing order number" in report
    page.goto("/admin/orders")
    expect(page.locator("#imports tbody tr")).to_have_count(1)


def test_operator_approves_a_flagged_claim_from_the_review_queue(new_page: PageFactory, live: Live):
    with live.seed() as db:
        tenant = make_tenant(db)
        owner = make_operator(db, tenant)
        fan, other = make_member(db, tenant), make_member(db, tenant)
        imp = orders.create_import(db, tenant_id=tenant.id, filename="o", fmt=None, session_id=5)
        orders.import_batch(
            db,
            tenant_id=tenant.id,
            import_id=imp.id,
            items=[Record(2, "taobao", "777", "shared", 8800, 0, "paid", None, None, "", 5)],
        )
        orders.claim_order(
            db,
            tenant_id=tenant.id,
            member_id=other.id,
            platform="taobao",
            order_no="1",
            account="shared",
        )
        flagged = orders.claim_order(
            db,
            tenant_id=tenant.id,
            member_id=fan.id,
            platform="taobao",
            order_no="777",
            account="shared",
        )
        assert flagged.status == "review"
        ids = (tenant.id, fan.id, flagged.id, tenant.slug, owner.username)
    tenant_id, fan_id, claim_id, slug, username = ids
    page = new_page()
    sign_in(page, slug, username)
    page.goto("/admin/orders/claims")

    row = page.locator(f"tr[data-claim='{claim_id}']")
    expect(row).to_contain_text("flagged")
    row.get_by_role("button", name="Approve").click()

    expect(page.locator("#claims")).to_have_count(0)  # the queue is empty now
    expect(page.locator("#stats")).to_contain_text("100.0%")
    with live.seed() as db:
        assert ledger.get_balance(db, tenant_id=tenant_id, member_id=fan_id).balance == 88


def test_fan_claims_orders_on_the_phone(new_page: PageFactory, live: Live):
    with live.seed() as db:
        tenant = make_tenant(db)
        make_member(db, tenant, nickname="小鱼", openid="oFan-claims")
        imp = orders.create_import(db, tenant_id=tenant.id, filename="o", fmt=None, session_id=None)
        orders.import_batch(
            db,
            tenant_id=tenant.id,
            import_id=imp.id,
            items=[
                Record(
                    2, "taobao", "39010001", "小鱼爱买买", 12850, 0, "paid", None, None, "", None
                ),
                Record(3, "taobao", "39010002", "别人", 5000, 0, "paid", None, None, "", None),
            ],
        )
        slug = tenant.slug
    page = new_page(viewport=PHONE)
    member_sign_in(page, slug, "oFan-claims")
    page.get_by_role("link", name="Claim an order").click()

    page.get_by_label("Order number").fill("39010001")
    page.get_by_label("Your account on the platform").fill("小鱼爱买买")
    page.get_by_role("button", name="Claim points").click()
    expect(page.get_by_test_id("claim-result")).to_contain_text("128 points added")

    page.get_by_label("Order number").fill("39010002")
    page.get_by_role("button", name="Claim points").click()
    expect(page.get_by_test_id("claim-result")).to_have_attribute("data-status", "rejected")
    expect(page.get_by_test_id("claim-result")).to_contain_text("Account does not match")

    page.get_by_label("Order number").fill("39019999")
    page.get_by_role("button", name="Claim points").click()
    expect(page.get_by_test_id("claim-result")).to_have_attribute("data-status", "pending")
    expect(page.locator("#my-claims li")).to_have_count(3)
    assert fits_the_screen(page)

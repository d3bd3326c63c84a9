"""The console's mall and trial pages with real forms (TestClient): create items, upload
codes, ship from an order page, import a tracking sheet, open a trial; errors are readable."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from siyu.mall import models as m
from siyu.mall import service as mall
from siyu.trials import models as t
from tests.factories import grant, make_address, make_item, make_member, make_operator, make_tenant
from tests.tenants.test_pages import EN, sign_in


@pytest.fixture
def console(db, client, clock):
    tenant = make_tenant(db)
    op = make_operator(db, tenant, role="owner")
    return tenant, sign_in(client, tenant, op.username)


def test_operator_creates_items_and_fills_a_coupon_pool(db, client, console):
    tenant, csrf = console

    made = client.post(
        "/admin/mall/items",
        data={
            "title": "签名照",
            "kind": "physical",
            "points_price": "200",
            "stock": "5",
            "per_member_total": "1",
            "is_listed": "on",
            "csrf_token": csrf,
        },
        headers=EN,
        follow_redirects=False,
    )
    bad = client.post(
        "/admin/mall/items",
        data={"title": "坏的", "points_price": "zero", "csrf_token": csrf},
        headers=EN,
    )
    coupon = client.post(
        "/admin/mall/items",
        data={"title": "店铺券", "kind": "coupon", "points_price": "50", "csrf_token": csrf},
        headers=EN,
        follow_redirects=False,
    )
    coupon_id = int(coupon.headers["location"].split("/")[-1].split("?")[0])
    upload = client.post(
        f"/admin/mall/items/{coupon_id}/codes",
        data={"codes": "X1\nX2\nX1", "csrf_token": csrf},
        headers=EN,
    )

    assert made.status_code == 303
    assert bad.status_code == 422
    assert "points_price: a whole number" in bad.text
    assert "2 codes added; stock is now 2." in upload.text
    items = {i.title: i for i in mall.list_items(db, tenant_id=tenant.id)}
    assert (items["签名照"].stock, items["签名照"].per_member_total) == (5, 1)
    assert items["店铺券"].stock == 2
    listing = client.get("/admin/mall", headers=EN).text
    assert "签名照" in listing
    assert "店铺券" in listing


def test_operator_ships_and_cancels_from_the_order_page(db, client, console):
    tenant, csrf = console
    member = make_member(db, tenant)
    grant(db, member, 100)
    item = make_item(db, tenant, points_price=40, stock=3)
    order = mall.redeem(
        db,
        tenant_id=tenant.id,
        member_id=member.id,
        item_id=item.id,
        address_id=make_address(db, member).id,
        idempotency_key="page-1",
    )
    url = f"/admin/mall/orders/{order.id}/status"

    missing = client.post(
        url, data={"status": "shipped", "carrier": "顺丰", "csrf_token": csrf}, headers=EN
    )
    shipped = client.post(
        url,
        data={"status": "shipped", "carrier": "顺丰", "tracking_no": "SF7", "csrf_token": csrf},
        headers=EN,
    )
    cancelled = client.post(
        url, data={"status": "cancelled", "reason": "快递丢件", "csrf_token": csrf}, headers=EN
    )

    assert missing.status_code == 422
    assert "tracking_no" in missing.text
    assert "顺丰 SF7" in shipped.text
    assert "快递丢件" in cancelled.text
    db.refresh(order)
    assert order.status == "cancelled"
    assert order.refund_entry_id is not None


def test_tracking_sheet_upload_reports_bad_rows(db, client, console):
    tenant, csrf = console
    member = make_member(db, tenant)
    grant(db, member, 100)
    item = make_item(db, tenant, points_price=10, stock=3)
    order = mall.redeem(
        db,
        tenant_id=tenant.id,
        member_id=member.id,
        item_id=item.id,
        address_id=make_address(db, member).id,
        idempotency_key="page-2",
    )
    sheet = f"订单号,快递公司,快递单号\n{order.id},中通,ZT1\n777777,中通,ZT2\n".encode()

    resp = client.post(
        "/admin/mall/orders/tracking",
        data={"csrf_token": csrf},
        files={"file": ("tracking.csv", io.BytesIO(sheet), "text/csv")},
        headers=EN,
    )

    assert resp.status_code == 200
    assert "1 orders shipped, 0 unchanged, 1 rows with problems." in resp.text
    assert "mall.order_not_found" in resp.text
    assert db.scalar(select(m.Order.tracking_no).where(m.Order.id == order.id)) == "ZT1"


def test_operator_opens_a_trial_from_the_console(db, client, console):
    tenant, csrf = console

    resp = client.post(
        "/admin/trials",
        data={
            "title": "面膜试用",
            "slots": "10",
            "apply_from": "2026-11-11T20:00",
            "apply_until": "2026-11-12T20:00",
            "report_deadline": "2026-11-20T20:00",
            "points_cost": "0",
            "report_reward": "50",
            "csrf_token": csrf,
        },
        headers=EN,
        follow_redirects=True,
    )
    backwards = client.post(
        "/admin/trials",
        data={
            "title": "倒过来",
            "slots": "1",
            "apply_from": "2026-11-12T20:00",
            "apply_until": "2026-11-11T20:00",
            "report_deadline": "2026-11-20T20:00",
            "csrf_token": csrf,
        },
        headers=EN,
    )

    assert resp.status_code == 200
    trial = db.scalar(select(t.Trial).where(t.Trial.tenant_id == tenant.id))
    assert trial.commitment in resp.text
    assert trial.apply_from.hour == 12  # 20:00 in Asia/Shanghai
    assert backwards.status_code == 422
    assert "apply_until" in backwards.text

"""The points mall through its REST API: operators manage items and fulfil orders, members
keep an address book and redeem. Every refusal takes nothing."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from openpyxl import Workbook, load_workbook
from sqlalchemy import func, select

from siyu.ledger import models as lm
from siyu.ledger import service as ledger
from siyu.mall import models as m
from siyu.members import service as members
from tests.factories import (
    grant,
    make_address,
    make_item,
    make_member,
    make_operator,
    make_tenant,
    member_headers,
    token_headers,
)

PROBLEM = "application/problem+json"


def assert_problem(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    body = resp.json()
    assert body["code"] == code, body
    return body


@pytest.fixture
def shop(db, clock):
    tenant = make_tenant(db)
    op = make_operator(db, tenant)
    member = make_member(db, tenant)
    grant(db, member, 1000)
    address = make_address(db, member)
    return tenant, member, address, token_headers(db, op)


def balance(db, member) -> int:
    return ledger.get_balance(db, tenant_id=member.tenant_id, member_id=member.id).balance


def stock(db, item_id: int) -> int:
    return db.scalar(select(m.Item.stock).where(m.Item.id == item_id))


def redeem(client, member, item_id, key="k1", **body):
    headers = member_headers(member) | {"Idempotency-Key": key}
    return client.post(f"/api/v1/me/mall/items/{item_id}/redeem", json=body, headers=headers)


def test_operator_creates_an_item_and_the_member_sees_it_in_the_mall(client, db, shop):
    _, member, _, headers = shop

    created = client.post(
        "/api/v1/mall/items",
        json={"title": "定制保温杯", "points_price": 300, "stock": 5, "category": "周边"},
        headers=headers,
    )

    assert created.status_code == 201, created.text
    item = created.json()
    assert (item["kind"], item["stock"], item["points_price"]) == ("physical", 5, 300)
    mall = client.get("/api/v1/me/mall/items", headers=member_headers(member)).json()
    assert [i["id"] for i in mall["items"]] == [item["id"]]


def test_redeeming_spends_points_takes_stock_and_records_the_address(client, db, shop):
    _, member, address, _ = shop
    item = make_item(db, shop[0], points_price=300, stock=5)

    resp = redeem(client, member, item.id, address_id=address.id, quantity=2)

    assert resp.status_code == 201, resp.text
    order = resp.json()
    assert (order["status"], order["points"], order["quantity"]) == ("pending", 600, 2)
    assert order["ship_name"] == "王小鱼"
    assert "文三路" in order["ship_address"]
    assert balance(db, member) == 400
    assert stock(db, item.id) == 3
    entry = ledger.get_entry(db, tenant_id=member.tenant_id, entry_id=order["spend_entry_id"])
    assert (entry.points, entry.reason) == (-600, "redeem")


def test_a_retry_with_the_same_key_returns_the_first_order_and_spends_once(client, db, shop):
    _, member, address, _ = shop
    item = make_item(db, shop[0], points_price=100, stock=5)

    first = redeem(client, member, item.id, key="same", address_id=address.id)
    again = redeem(client, member, item.id, key="same", address_id=address.id)

    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert balance(db, member) == 900
    assert stock(db, item.id) == 4


@pytest.mark.parametrize(
    ("setup", "status", "code"),
    [
        ({"points_price": 5000}, 409, "points.insufficient"),
        ({"stock": 0}, 409, "mall.out_of_stock"),
        ({"is_listed": False}, 404, "mall.item_not_found"),
        ({"min_growth": 5000}, 403, "mall.tier_required"),
        ({"available_from": dt.datetime(2030, 1, 1, tzinfo=dt.UTC)}, 409, "mall.not_available"),
        ({"available_until": dt.datetime(2026, 11, 1, tzinfo=dt.UTC)}, 409, "mall.not_available"),
    ],
    ids=["points", "stock", "unlisted", "tier", "not-yet", "over"],
)
def test_refusals_give_a_reason_and_take_nothing(client, db, shop, setup, status, code):
    tenant, member, address, _ = shop
    members.set_tiers(db, tenant_id=tenant.id, tiers=[("粉丝", 0), ("挚友", 5000)])
    item = make_item(db, tenant, **{"points_price": 100, "stock": 3, **setup})
    before = stock(db, item.id)

    resp = redeem(client, member, item.id, address_id=address.id)

    body = assert_problem(resp, status, code)
    if code == "mall.tier_required":
        assert "挚友" in body["detail"]
    assert balance(db, member) == 1000
    assert stock(db, item.id) == before
    assert db.scalar(select(func.count()).select_from(m.Order)) == 0


def test_daily_and_total_limits_count_per_member(client, db, shop, clock):
    tenant, member, address, _ = shop
    item = make_item(db, tenant, points_price=10, stock=10, per_member_daily=1, per_member_total=2)

    assert redeem(client, member, item.id, key="d1", address_id=address.id).status_code == 201
    refused = redeem(client, member, item.id, key="d1b", address_id=address.id)
    assert_problem(refused, 409, "mall.limit_reached")
    clock.advance(days=1)
    assert redeem(client, member, item.id, key="d2", address_id=address.id).status_code == 201
    clock.advance(days=1)
    body = assert_problem(
        redeem(client, member, item.id, key="d3", address_id=address.id), 409, "mall.limit_reached"
    )
    assert body["params"]["limit"] == 2
    assert balance(db, member) == 980
    other = make_member(db, tenant)
    grant(db, other, 100)
    other_address = make_address(db, other)
    assert redeem(client, other, item.id, key="o1", address_id=other_address.id).status_code == 201


def test_physical_items_need_an_address_of_the_member(client, db, shop):
    tenant, member, _, _ = shop
    item = make_item(db, tenant, points_price=10, stock=3)
    stranger = make_member(db, tenant)
    theirs = make_address(db, stranger)

    assert_problem(redeem(client, member, item.id, key="a"), 422, "mall.address_required")
    assert_problem(
        redeem(client, member, item.id, key="b", address_id=theirs.id),
        404,
        "mall.address_not_found",
    )
    assert balance(db, member) == 1000


def test_coupon_items_give_each_code_once(client, db, shop):
    tenant, member, _, headers = shop
    item = make_item(db, tenant, kind="coupon", points_price=50)

    up = client.post(
        f"/api/v1/mall/items/{item.id}/codes",
        json={"codes": ["AAA", "BBB", "AAA", "  "]},
        headers=headers,
    )
    again = client.post(
        f"/api/v1/mall/items/{item.id}/codes", json={"codes": ["BBB"]}, headers=headers
    )

    assert up.json() == {"added": 2, "duplicates": ["AAA"], "stock": 2}
    assert again.json() == {"added": 0, "duplicates": ["BBB"], "stock": 2}
    codes = [redeem(client, member, item.id, key=f"c{i}").json() for i in range(2)]
    assert sorted(o["coupon_code"] for o in codes) == ["AAA", "BBB"]
    assert {o["status"] for o in codes} == {"delivered"}
    assert_problem(redeem(client, member, item.id, key="c3"), 409, "mall.out_of_stock")
    assert balance(db, member) == 900


def test_codes_upload_only_to_coupon_items(client, db, shop):
    tenant, _, _, headers = shop
    item = make_item(db, tenant)

    resp = client.post(
        f"/api/v1/mall/items/{item.id}/codes", json={"codes": ["X"]}, headers=headers
    )

    assert_problem(resp, 409, "mall.not_coupon_item")


def test_gift_is_delivered_at_once_without_an_address(client, db, shop):
    tenant, member, _, _ = shop
    item = make_item(db, tenant, kind="gift", title="福利购资格", points_price=200, stock=1)

    order = redeem(client, member, item.id).json()

    assert (order["status"], order["kind"], order["ship_address"]) == ("delivered", "gift", "")
    assert balance(db, member) == 800


def test_fulfillment_ship_deliver_and_member_sees_tracking(client, db, shop):
    tenant, member, address, headers = shop
    item = make_item(db, tenant, points_price=100, stock=2)
    order = redeem(client, member, item.id, address_id=address.id).json()
    url = f"/api/v1/mall/orders/{order['id']}/status"

    no_tracking = client.post(url, json={"status": "shipped", "carrier": "顺丰"}, headers=headers)
    shipped = client.post(
        url, json={"status": "shipped", "carrier": "顺丰", "tracking_no": "SF1"}, headers=headers
    )
    corrected = client.post(
        url, json={"status": "shipped", "carrier": "顺丰", "tracking_no": "SF2"}, headers=headers
    )
    delivered = client.post(url, json={"status": "delivered"}, headers=headers)
    cancel_late = client.post(url, json={"status": "cancelled"}, headers=headers)

    assert_problem(no_tracking, 422, "mall.invalid_item")
    assert shipped.json()["status"] == "shipped"
    assert corrected.json()["tracking_no"] == "SF2"
    assert delivered.json()["status"] == "delivered"
    assert_problem(cancel_late, 409, "mall.invalid_transition")
    mine = client.get(
        f"/api/v1/me/mall/orders/{order['id']}", headers=member_headers(member)
    ).json()
    assert (mine["carrier"], mine["tracking_no"], mine["status"]) == ("顺丰", "SF2", "delivered")


@pytest.mark.parametrize("ship_first", [False, True], ids=["pending", "failed-shipment"])
def test_cancelling_refunds_by_reversal_and_restocks(client, db, shop, ship_first):
    tenant, member, address, headers = shop
    item = make_item(db, tenant, points_price=100, stock=2)
    order = redeem(client, member, item.id, address_id=address.id).json()
    url = f"/api/v1/mall/orders/{order['id']}/status"
    if ship_first:
        client.post(
            url,
            json={"status": "shipped", "carrier": "中通", "tracking_no": "ZT1"},
            headers=headers,
        )

    cancelled = client.post(url, json={"status": "cancelled", "reason": "退件"}, headers=headers)
    again = client.post(url, json={"status": "cancelled"}, headers=headers)

    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert (body["status"], body["cancel_reason"]) == ("cancelled", "退件")
    assert again.json()["refund_entry_id"] == body["refund_entry_id"]
    refund = ledger.get_entry(db, tenant_id=tenant.id, entry_id=body["refund_entry_id"])
    assert (refund.kind, refund.reverses_id, refund.points) == (
        lm.REVERSAL,
        order["spend_entry_id"],
        100,
    )
    assert balance(db, member) == 1000
    assert stock(db, item.id) == 2
    assert ledger.verify(db, tenant_id=tenant.id).ok


def test_export_pending_orders_as_csv_and_xlsx(client, db, shop):
    tenant, member, address, headers = shop
    item = make_item(db, tenant, title="保温杯", points_price=10, stock=5)
    order = redeem(client, member, item.id, address_id=address.id).json()
    make_item(db, tenant, kind="gift", points_price=1, stock=1)

    as_csv = client.get("/api/v1/mall/orders/export?format=csv", headers=headers)
    as_xlsx = client.get("/api/v1/mall/orders/export?format=xlsx", headers=headers)

    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(as_csv.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["订单号", "下单时间", "商品"]
    assert rows[1][0] == str(order["id"])
    assert rows[1][2] == "保温杯"
    assert rows[1][5] == "13800138000"
    sheet = load_workbook(io.BytesIO(as_xlsx.content)).active
    assert [c.value for c in sheet[2]][:3] == [str(order["id"]), rows[1][1], "保温杯"]


def test_tracking_import_ships_good_rows_and_reports_bad_ones(client, db, shop):
    tenant, member, address, headers = shop
    item = make_item(db, tenant, points_price=10, stock=5)
    orders = [
        redeem(client, member, item.id, key=f"t{i}", address_id=address.id).json() for i in range(3)
    ]
    client.post(
        f"/api/v1/mall/orders/{orders[2]['id']}/status",
        json={"status": "cancelled"},
        headers=headers,
    )
    other_tenant_order = 999_999
    sheet = io.StringIO()
    writer = csv.writer(sheet)
    writer.writerow(["订单号", "快递公司", "快递单号"])
    writer.writerow([orders[0]["id"], "顺丰", "SF100"])
    writer.writerow([orders[1]["id"], "", ""])  # not shipped yet: left empty
    writer.writerow([orders[2]["id"], "顺丰", "SF102"])  # cancelled
    writer.writerow([other_tenant_order, "顺丰", "SF103"])
    writer.writerow(["abc", "顺丰", "SF104"])
    writer.writerow([orders[1]["id"], "顺丰", ""])  # no tracking number
    data = sheet.getvalue().encode("gb18030")

    first = client.post(
        "/api/v1/mall/orders/tracking", content=data, headers=headers | {"Content-Type": "text/csv"}
    )
    second = client.post(
        "/api/v1/mall/orders/tracking", content=data, headers=headers | {"Content-Type": "text/csv"}
    )

    assert first.status_code == 200, first.text
    body = first.json()
    assert body["shipped"] == 1
    assert [(p["row"], p["code"]) for p in body["problems"]] == [
        (4, "mall.invalid_transition"),
        (5, "mall.order_not_found"),
        (6, "mall.order_not_found"),
        (7, "mall.invalid_item"),
    ]
    assert (second.json()["shipped"], second.json()["unchanged"]) == (0, 1)
    shipped = db.get(m.Order, orders[0]["id"])
    db.refresh(shipped)
    assert (shipped.status, shipped.tracking_no) == ("shipped", "SF100")


def test_tracking_import_reads_the_xlsx_export_filled_in(client, db, shop):
    tenant, member, address, headers = shop
    item = make_item(db, tenant, points_price=10, stock=5)
    order = redeem(client, member, item.id, address_id=address.id).json()
    exported = client.get("/api/v1/mall/orders/export?format=xlsx", headers=headers).content
    wb = load_workbook(io.BytesIO(exported))
    ws = wb.active
    ws.cell(row=2, column=8, value="圆通")
    ws.cell(row=2, column=9, value="YT123")
    out = io.BytesIO()
    wb.save(out)

    resp = client.post(
        "/api/v1/mall/orders/tracking",
        content=out.getvalue(),
        headers=headers
        | {"Content-Type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
    )

    assert resp.json() == {"shipped": 1, "unchanged": 0, "problems": []}
    assert (
        client.get(f"/api/v1/mall/orders/{order['id']}", headers=headers).json()["tracking_no"]
        == "YT123"
    )


def test_an_unreadable_sheet_is_refused(client, shop):
    headers = shop[3]
    wb = Workbook()
    wb.active.append(["nothing", "useful"])
    out = io.BytesIO()
    wb.save(out)

    missing_columns = client.post(
        "/api/v1/mall/orders/tracking", content=out.getvalue(), headers=headers
    )
    garbage = client.post(
        "/api/v1/mall/orders/tracking", content=b"PK\x03\x04garbage", headers=headers
    )

    assert_problem(missing_columns, 422, "mall.unreadable_file")
    assert_problem(garbage, 422, "mall.unreadable_file")


def test_address_book_add_list_delete(client, db, shop):
    _, member, first, _ = shop
    headers = member_headers(member)

    added = client.post(
        "/api/v1/me/addresses",
        json={
            "name": "李四",
            "phone": "021-5555 1234",
            "region": "上海",
            "detail": "南京路 2 号",
            "is_default": True,
        },
        headers=headers,
    )
    bad = client.post(
        "/api/v1/me/addresses",
        json={"name": "李四", "phone": "not a phone", "region": "上海", "detail": "2 号"},
        headers=headers,
    )
    listed = client.get("/api/v1/me/addresses", headers=headers).json()["items"]
    deleted = client.delete(f"/api/v1/me/addresses/{first.id}", headers=headers)
    again = client.delete(f"/api/v1/me/addresses/{first.id}", headers=headers)

    assert added.status_code == 201
    assert_problem(bad, 422, "mall.invalid_address")
    assert [a["is_default"] for a in listed] == [True, False]
    assert deleted.status_code == again.status_code == 204
    remaining = client.get("/api/v1/me/addresses", headers=headers).json()["items"]
    assert [a["name"] for a in remaining] == ["李四"]


def test_analyst_reads_but_cannot_manage_or_fulfil(client, db, shop):
    tenant, member, address, _ = shop
    analyst = token_headers(db, make_operator(db, tenant, role="analyst"))
    item = make_item(db, tenant, points_price=10, stock=5)

    assert client.get("/api/v1/mall/items", headers=analyst).status_code == 200
    assert_problem(
        client.post("/api/v1/mall/items", json={"title": "x", "points_price": 1}, headers=analyst),
        403,
        "auth.forbidden",
    )
    assert_problem(
        client.patch(f"/api/v1/mall/items/{item.id}", json={"stock": 1}, headers=analyst),
        403,
        "auth.forbidden",
    )


def test_item_update_changes_only_what_is_sent(client, db, shop):
    tenant, _, _, headers = shop
    item = make_item(db, tenant, points_price=10, stock=5, per_member_daily=2)

    resp = client.patch(
        f"/api/v1/mall/items/{item.id}",
        json={"stock": 9, "per_member_daily": None},
        headers=headers,
    )
    coupon = make_item(db, tenant, kind="coupon")
    refused = client.patch(f"/api/v1/mall/items/{coupon.id}", json={"stock": 3}, headers=headers)

    assert resp.status_code == 200, resp.text
    assert (resp.json()["stock"], resp.json()["per_member_daily"], resp.json()["points_price"]) == (
        9,
        None,
        10,
    )
    assert_problem(refused, 422, "mall.invalid_item")

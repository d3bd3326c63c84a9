"""Console and H5 pages of the orders domain: readable errors, report download, debt shown."""

from __future__ import annotations

import re

from sqlalchemy import update

from siyu.ledger import debt
from siyu.ledger import models as lm
from siyu.ledger import service as ledger
from siyu.orders import service
from tests.factories import PASSWORD, make_member, make_operator, spend
from tests.orders.samples import TbRow, taobao_csv


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found
    return found.group(1)


def admin(client, tenant, op) -> str:
    token = csrf_of(client.get("/admin/login").text)
    client.post(
        "/admin/login",
        data={
            "tenant": tenant.slug,
            "username": op.username,
            "password": PASSWORD,
            "csrf_token": token,
        },
    )
    return csrf_of(client.get("/admin/orders").text)


def fan_session(client, tenant, openid) -> str:
    token = csrf_of(client.get(f"/m/{tenant.slug}/login").text)
    client.post(f"/m/{tenant.slug}/login", data={"openid": openid, "csrf_token": token})
    return csrf_of(client.get(f"/m/{tenant.slug}/claims").text)


def test_upload_without_a_file_shows_a_readable_error(db, client, tenant):
    csrf = admin(client, tenant, make_operator(db, tenant))

    resp = client.post("/admin/orders/imports", data={"csrf_token": csrf, "format": ""})

    assert resp.status_code == 422
    assert "请选择要导入的文件" in resp.text  # zh_CN is the default language


def test_import_report_lists_counts_and_every_rejected_row_translated(db, client, tenant, run):
    csrf = admin(client, tenant, make_operator(db, tenant))
    assert csrf
    imp = run(tenant, taobao_csv([TbRow("1", "a", "1"), TbRow("", "b", "1")]))

    resp = client.get(f"/admin/orders/imports/{imp.id}/report.csv")

    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv")
    body = resp.content.decode("utf-8-sig")
    assert "2,1,0,1" in body
    assert "3,订单编号,缺少订单编号" in body


def test_member_sees_debt_and_claim_errors_on_the_claim_page(db, client, tenant, run, clock):
    fan = make_member(db, tenant, openid="o-page-fan")
    run(tenant, taobao_csv([TbRow("61", "nick", "20.00")]))
    csrf = fan_session(client, tenant, "o-page-fan")

    page = client.post(
        f"/m/{tenant.slug}/claims",
        data={"platform": "taobao", "order_no": "61", "account": "nick", "csrf_token": csrf},
    )
    assert page.status_code == 200
    assert 'data-status="credited"' in page.text
    spend(db, fan, 15)
    run(tenant, taobao_csv([TbRow("61", "nick", "20.00", status="closed", refund="20")]))
    assert debt.debt_of(db, tenant_id=tenant.id, member_id=fan.id) == 15

    shown = client.get(f"/m/{tenant.slug}/claims")
    assert 'data-testid="debt"' in shown.text
    assert "15" in shown.text
    bad = client.post(
        f"/m/{tenant.slug}/claims",
        data={"platform": "taobao", "order_no": "bad no!", "account": "n", "csrf_token": csrf},
    )
    assert bad.status_code == 422
    assert 'role="alert"' in bad.text


def test_ledger_verify_reports_a_debt_that_disagrees_with_its_postings(db, tenant, run, clock):
    fan = make_member(db, tenant)
    run(tenant, taobao_csv([TbRow("71", "n", "10.00")]))
    service.claim_order(
        db, tenant_id=tenant.id, member_id=fan.id, platform="taobao", order_no="71", account="n"
    )
    spend(db, fan, 10)
    run(tenant, taobao_csv([TbRow("71", "n", "10.00", status="closed")]))
    assert ledger.verify(db, tenant_id=tenant.id).ok

    db.execute(
        update(lm.Account).where(lm.Account.member_id == fan.id).values(debt=lm.Account.debt + 1)
    )

    kinds = [p.kind for p in ledger.verify(db, tenant_id=tenant.id).problems]
    assert kinds == ["debt_mismatch"]


def test_the_progress_of_a_resumed_import_says_it_started_again(db, client, tenant, clock):
    from siyu.orders import models as m

    csrf = admin(client, tenant, make_operator(db, tenant))
    assert csrf
    imp = service.create_import(
        db, tenant_id=tenant.id, filename="a.csv", fmt=None, session_id=None
    )
    imp.attempts, imp.status = 2, m.RUNNING
    db.flush()

    html = client.get(f"/admin/orders/imports/{imp.id}/progress").text

    assert 'data-testid="import-attempts"' in html
    assert "已从文件开头重新开始（第 2 次，共 3 次）" in html

from __future__ import annotations

from tests.factories import grant, make_member, make_operator, make_tenant, token_headers


def test_spend_retry_with_same_key_debits_once(db, client):
    tenant = make_tenant(db)
    op = make_operator(db, tenant)
    member = make_member(db, tenant)
    grant(db, member, 500)
    headers = token_headers(db, op) | {"Idempotency-Key": "spend-1"}
    url = f"/api/v1/members/{member.id}/points/spend"
    first = client.post(url, json={"points": 120, "reason": "redeem"}, headers=headers)
    again = client.post(url, json={"points": 120, "reason": "redeem"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    bal = client.get(f"/api/v1/members/{member.id}/points", headers=headers).json()
    assert bal["balance"] == 380

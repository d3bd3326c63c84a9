"""POST /api/v1/me/checkins: on PostgreSQL one call of ``siyu_checkin``, elsewhere (and for what
that function leaves to Python) the Python ``check_in``. Both must answer alike: the same
scenario runs through the API and through the Python reference, and is compared."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from siyu.checkin import service as checkin
from siyu.checkin.api import _result
from siyu.checkin.models import Checkin
from siyu.checkin.schemas import CheckinRead
from siyu.core.db import unit_of_work
from siyu.ledger import models as lm
from siyu.ledger import service as ledger
from siyu.ledger.debt import clawback
from tests.checkin.test_concurrency import run_threads
from tests.conftest import BACKEND
from tests.factories import grant, make_member, make_tenant, member_headers, spend

RULE = {
    "base": 5,
    "bonuses": [{"day": 3, "points": 10}, {"day": 7, "points": 30}],
    "makeup_days": 3,
    "makeup_cost": 20,
}
UTC = dt.UTC


@pytest.fixture
def one_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the answers of siyu_checkin (a spy: the real function still runs)."""
    calls: list[int] = []
    real = checkin._one_call_result

    def spy(tenant_id: int, member_id: int, found: Any) -> Any:
        calls.append(member_id)
        return real(tenant_id, member_id, found)

    monkeypatch.setattr(checkin, "_one_call_result", spy)
    return calls


def scenario(clock, tap, make_up) -> list[dict[str, Any]]:
    """Taps across days: a tenant-local midnight, a repeat, bonuses on days 3 and 7, a missed
    day, a make-up that restores the streak, and a repeat after it."""
    out = []
    clock.set(dt.datetime(2026, 11, 11, 15, 59, tzinfo=UTC))  # 23:59 on the 11th in Shanghai
    out += [tap(), tap()]
    clock.set(dt.datetime(2026, 11, 11, 16, 0, tzinfo=UTC))  # 00:00 on the 12th
    out.append(tap())
    clock.advance(days=1)  # the 13th: day 3, bonus
    out.append(tap())
    clock.advance(days=2)  # the 15th: the 14th missed, back to 1
    out.append(tap())
    make_up(dt.date(2026, 11, 14))  # restores the run: 11 … 15
    out.append(tap())  # a repeat now answers the run ending today, 5
    for _ in range(3):  # the 16th (6), the 17th (7, bonus), the 18th (8)
        clock.advance(days=1)
        out.append(tap())
    for answer in out:
        answer["checkin"].pop("id")
    return out


def ledger_of(db, member) -> list[tuple[Any, ...]]:
    entries = db.scalars(
        select(lm.JournalEntry)
        .where(lm.JournalEntry.member_id == member.id)
        .order_by(lm.JournalEntry.id)
    ).all()
    return [
        (
            e.kind,
            e.points,
            e.reason,
            e.memo,
            e.reference,
            e.idempotency_key.replace(f":{member.id}:", ":<member>:"),
            e.actor_type,
            e.actor_id == str(member.id),
        )
        for e in entries
    ]


def test_the_api_answers_as_the_python_reference(db, client, clock, one_calls):
    tenant = make_tenant(db)
    checkin.set_rule(db, tenant_id=tenant.id, rule=RULE)
    api_fan, ref_fan = make_member(db, tenant), make_member(db, tenant)
    for fan in (api_fan, ref_fan):
        grant(db, fan, 100, key=f"seed:{fan.id}:", reason="seed")
    db.flush()

    def api_tap() -> dict[str, Any]:
        r = client.post("/api/v1/me/checkins", headers=member_headers(api_fan))
        assert r.status_code == 200, r.text
        return r.json()

    def api_make_up(day: dt.date) -> None:
        r = client.post(
            "/api/v1/me/checkins/makeup",
            json={"day": day.isoformat()},
            headers=member_headers(api_fan),
        )
        assert r.status_code == 200, r.text

    def ref_tap() -> dict[str, Any]:
        result = checkin.check_in(db, tenant_id=tenant.id, member_id=ref_fan.id)
        return _result(result).model_dump(mode="json")

    def ref_make_up(day: dt.date) -> None:
        checkin.make_up(db, tenant_id=tenant.id, member_id=ref_fan.id, day=day)

    via_api = scenario(clock, api_tap, api_make_up)
    via_python = scenario(clock, ref_tap, ref_make_up)

    assert via_api == via_python
    assert [(a["created"], a["streak"], a["checkin"]["points"]) for a in via_api] == [
        (True, 1, 5),
        (False, 1, 5),
        (True, 2, 5),
        (True, 3, 15),
        (True, 1, 5),
        (False, 5, 5),
        (True, 6, 5),
        (True, 7, 35),
        (True, 8, 5),
    ]
    assert via_api[0]["checkin"]["checked_on"] == "2026-11-11"
    assert via_api[2]["checkin"]["checked_on"] == "2026-11-12"
    db.expire_all()
    assert ledger_of(db, api_fan) == ledger_of(db, ref_fan)
    assert "签到，连续第 7 天" in [e[3] for e in ledger_of(db, api_fan)]
    balances = [
        ledger.get_balance(db, tenant_id=tenant.id, member_id=m.id).balance
        for m in (api_fan, ref_fan)
    ]
    assert balances == [100 + 75 - 20] * 2
    assert ledger.verify(db, tenant_id=tenant.id).problems == []
    # Which implementation answered the API: the one call on PostgreSQL only.
    assert len(one_calls) == (9 if BACKEND == "postgresql" else 0)


def test_a_debtors_check_in_is_left_to_python_and_settles_the_debt(db, client, clock, one_calls):
    tenant = make_tenant(db)
    checkin.set_rule(db, tenant_id=tenant.id, rule=RULE)
    fan = make_member(db, tenant)
    credit = grant(db, fan, 10)
    spend(db, fan, 10)
    owed = clawback(
        db,
        tenant_id=tenant.id,
        entry_id=credit.id,
        points=10,
        idempotency_key="claw",
        actor=ledger.CLI,
    )
    assert owed.debt == 10
    db.flush()

    r = client.post("/api/v1/me/checkins", headers=member_headers(fan))

    assert r.status_code == 200, r.text
    assert (r.json()["created"], r.json()["checkin"]["points"]) == (True, 5)
    db.expire_all()
    wallet = ledger._wallet(db, tenant.id, fan.id, lock=False)
    assert (wallet.balance, wallet.debt) == (0, 5)  # the 5 points paid half the debt
    assert ledger.verify(db, tenant_id=tenant.id).problems == []
    assert one_calls == []  # the function raised LEAVE_TO_PYTHON: no answer from it
    rows = db.scalar(select(func.count()).select_from(Checkin).where(Checkin.member_id == fan.id))
    assert rows == 1


def test_a_token_of_a_member_of_another_tenant_is_refused(db, client, clock):
    fan = make_member(db, make_tenant(db))
    other = make_tenant(db)
    db.flush()
    from siyu.core.security import sign_member_token

    token = sign_member_token(tenant_id=other.id, member_id=fan.id)
    r = client.post("/api/v1/me/checkins", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert r.json()["code"] == "auth.invalid_token"
    assert client.post("/api/v1/me/checkins").status_code == 401
    assert db.scalar(select(func.count()).select_from(Checkin)) == 0


@pytest.mark.concurrency
def test_twenty_parallel_taps_through_the_api_pay_once(committed, app, clock):
    with unit_of_work() as db:
        tenant = make_tenant(db)
        checkin.set_rule(db, tenant_id=tenant.id, rule=RULE)
        fan = make_member(db, tenant)
        tenant_id, member_id, headers = tenant.id, fan.id, member_headers(fan)

    with TestClient(app) as client:  # on PostgreSQL: the asyncio connections, in autocommit
        answers = run_threads(
            lambda _: client.post("/api/v1/me/checkins", headers=headers).json(), 20
        )

    assert sorted(a["created"] for a in answers) == [False] * 19 + [True]
    assert {(a["checkin"]["points"], a["streak"]) for a in answers} == {(5, 1)}
    with unit_of_work() as db:
        rows = db.scalar(
            select(func.count()).select_from(Checkin).where(Checkin.member_id == member_id)
        )
        credits = db.scalars(
            select(lm.JournalEntry.points).where(
                lm.JournalEntry.member_id == member_id, lm.JournalEntry.reason == "checkin"
            )
        ).all()
        report = ledger.verify(db, tenant_id=tenant_id)
    assert (rows, credits, report.problems) == (1, [5], [])


def test_the_hot_path_answers_as_the_route_and_declines_what_it_cannot(
    committed, clock, monkeypatch
):
    """app.HotPaths answers POST /me/checkins ahead of the framework when it can (PostgreSQL
    with its asyncio connections); what it declines, and everything on SQLite, the route
    answers, alike."""
    from siyu.app import create_app
    from siyu.checkin import api as checkin_api

    answered: list[int] = []
    real = checkin_api.check_in_hot

    async def spy(headers: Any) -> Any:
        found = await real(headers)
        if found is not None:
            answered.append(found[0])
        return found

    monkeypatch.setattr(checkin_api, "check_in_hot", spy)
    with unit_of_work() as db:
        tenant = make_tenant(db)
        checkin.set_rule(db, tenant_id=tenant.id, rule=RULE)
        fan, debtor = make_member(db, tenant), make_member(db, tenant)
        grant(db, fan, 100, key=f"seed:{fan.id}:", reason="seed")
        credit = grant(db, debtor, 10)
        spend(db, debtor, 10)
        clawback(  # the debtor owes 10: the one call leaves that to Python
            db,
            tenant_id=tenant.id,
            entry_id=credit.id,
            points=10,
            idempotency_key=f"claw:{debtor.id}",
            actor=ledger.CLI,
        )
        tenant_id, fan_id = tenant.id, fan.id
        fan_headers, debtor_headers = member_headers(fan), member_headers(debtor)

    zh = {**fan_headers, "Accept-Language": "zh-CN", "X-Request-Id": "tap-1"}
    with TestClient(create_app(start_consumer=False)) as client:
        first = client.post("/api/v1/me/checkins", headers=zh)
        again = client.post("/api/v1/me/checkins", headers=fan_headers)
        debtors = client.post("/api/v1/me/checkins", headers=debtor_headers)  # left to Python
        anonymous = client.post("/api/v1/me/checkins")
        forged = client.post("/api/v1/me/checkins", headers={"Authorization": "Bearer not-a-token"})

    assert (first.status_code, first.headers["x-request-id"]) == (200, "tap-1")
    assert first.headers["content-type"] == "application/json"
    body = first.json()
    assert (body["created"], body["streak"], body["checkin"]["points"]) == (True, 1, 5)
    assert set(body["checkin"]) == set(CheckinRead.model_fields)
    assert (again.status_code, again.json()["created"]) == (200, False)
    assert again.json()["checkin"] == body["checkin"]
    assert again.headers["x-request-id"]  # one of its own
    assert (debtors.status_code, debtors.json()["created"]) == (200, True)
    for refused in (anonymous, forged):
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
    # The hot path answered the fan's taps on PostgreSQL, and nothing it declined.
    assert len(answered) == (2 if BACKEND == "postgresql" else 0)
    with unit_of_work() as db:
        memos = db.scalars(
            select(lm.JournalEntry.memo).where(
                lm.JournalEntry.member_id == fan_id, lm.JournalEntry.reason == "checkin"
            )
        ).all()
        assert memos == ["签到，连续第 1 天"]  # the request's language
        assert ledger.verify(db, tenant_id=tenant_id).problems == []

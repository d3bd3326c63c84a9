"""Product trials through the REST API: open with a commitment, apply, draw after the window
with the revealed seed (re-computable by anyone), refund losers, report and reward."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from sqlalchemy import select

from siyu import draw as drawing
from siyu.ledger import service as ledger
from siyu.mall import models as mm
from siyu.members import service as members
from siyu.messaging import service as messaging
from siyu.trials import models as t
from siyu.trials import service as trials
from tests.factories import (
    grant,
    make_address,
    make_member,
    make_operator,
    make_tenant,
    member_headers,
    token_headers,
)
from tests.messaging.conftest import _empty_queue, drain  # noqa: F401

PROBLEM = "application/problem+json"
SEED = "5eed" * 16  # 32 bytes


def assert_problem(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    assert resp.json()["code"] == code, resp.json()
    return resp.json()


@pytest.fixture
def shop(db, clock):
    tenant = make_tenant(db)
    return tenant, token_headers(db, make_operator(db, tenant))


def open_trial(client, headers, clock, **extra) -> dict:
    now = clock.now
    body = {
        "title": "新品精华试用",
        "slots": 2,
        "apply_from": (now - dt.timedelta(hours=1)).isoformat(),
        "apply_until": (now + dt.timedelta(days=1)).isoformat(),
        "report_deadline": (now + dt.timedelta(days=8)).isoformat(),
        **extra,
    }
    resp = client.post("/api/v1/trials", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    return resp.json()


def applicant(db, tenant, points: int = 0, **kw):
    member = make_member(db, tenant, **kw)
    if points:
        grant(db, member, points)
    return member, make_address(db, member)


def apply(client, member, address, trial_id):
    return client.post(
        f"/api/v1/me/trials/{trial_id}/apply",
        json={"address_id": address.id},
        headers=member_headers(member),
    )


def balance(db, member) -> int:
    return ledger.get_balance(db, tenant_id=member.tenant_id, member_id=member.id).balance


def test_full_trial_with_an_operator_seed_is_reproducible_from_published_data(
    client, db, shop, clock
):
    tenant, headers = shop
    commitment = hashlib.sha256(bytes.fromhex(SEED)).hexdigest()
    trial = open_trial(client, headers, clock, points_cost=50, commitment=commitment)
    people = [applicant(db, tenant, points=100) for _ in range(5)]
    apps = [apply(client, m, a, trial["id"]).json() for m, a in people]
    assert all(balance(db, m) == 50 for m, _ in people)
    assert trial["commitment"] == commitment
    assert trial["seed"] is None

    early = client.post(f"/api/v1/trials/{trial['id']}/draw", json={"seed": SEED}, headers=headers)
    clock.advance(days=1, seconds=1)
    late_apply = apply(client, *applicant(db, tenant, points=100), trial["id"])
    no_seed = client.post(f"/api/v1/trials/{trial['id']}/draw", json={}, headers=headers)
    wrong = client.post(
        f"/api/v1/trials/{trial['id']}/draw", json={"seed": "00" * 32}, headers=headers
    )
    drawn = client.post(f"/api/v1/trials/{trial['id']}/draw", json={"seed": SEED}, headers=headers)

    assert_problem(early, 409, "trials.draw_too_early")
    assert_problem(late_apply, 409, "trials.not_open")
    assert_problem(no_seed, 422, "trials.seed_required")
    assert_problem(wrong, 422, "trials.seed_mismatch")
    assert drawn.status_code == 200, drawn.text
    assert (drawn.json()["status"], drawn.json()["seed"], drawn.json()["entries"]) == (
        "drawn",
        SEED,
        5,
    )
    expected = drawing.winners(bytes.fromhex(SEED), [str(a["id"]) for a in apps], 2)
    won = client.get(
        f"/api/v1/trials/{trial['id']}/applications?status=won", headers=headers
    ).json()["items"]
    assert [str(a["id"]) for a in sorted(won, key=lambda a: a["rank"])] == expected
    # Winners get a fulfillment order; losers get their 50 points back; the ledger checks out.
    for member, _ in people:
        mine = client.get(f"/api/v1/me/trials/{trial['id']}", headers=member_headers(member)).json()
        if str(mine["application"]["id"]) in expected:
            assert mine["application"]["status"] == "won"
            order = db.get(mm.Order, mine["application"]["order_id"])
            assert (order.source, order.status, order.points) == ("trial", "pending", 0)
            assert balance(db, member) == 50
        else:
            assert mine["application"]["status"] == "lost"
            assert mine["application"]["refund_entry_id"] is not None
            assert balance(db, member) == 100
    assert ledger.verify(db, tenant_id=tenant.id).ok
    # Drawing again changes nothing; the public page re-computes the same winners.
    again = client.post(f"/api/v1/trials/{trial['id']}/draw", json={}, headers=headers)
    assert again.json()["drawn_at"] == drawn.json()["drawn_at"]
    page = client.get(trial["verify_url"])
    assert page.status_code == 200
    assert "✓" in page.text
    entries = client.get(trial["verify_url"] + "/entries.txt").text.split()
    assert entries == sorted(str(a["id"]) for a in apps)


def test_server_seed_stays_secret_until_the_draw(client, db, shop, clock):
    tenant, headers = shop
    trial = open_trial(client, headers, clock, slots=1)
    member, address = applicant(db, tenant)
    apply(client, member, address, trial["id"])
    stored = db.get(t.Trial, trial["id"]).seed_hex

    public = client.get(trial["verify_url"]).text
    as_member = client.get(f"/api/v1/me/trials/{trial['id']}", headers=member_headers(member))

    assert stored not in public
    assert stored not in as_member.text
    assert hashlib.sha256(bytes.fromhex(stored)).hexdigest() == trial["commitment"]
    clock.advance(days=2)
    drawn = client.post(f"/api/v1/trials/{trial['id']}/draw", json={}, headers=headers).json()
    assert drawn["seed"] == stored


def test_eligibility_by_tier_and_tag_and_points(client, db, shop, clock):
    tenant, headers = shop
    members.set_tiers(db, tenant_id=tenant.id, tiers=[("粉丝", 0), ("挚友", 500)])
    by_tier = open_trial(client, headers, clock, min_growth=500)
    by_tag = open_trial(client, headers, clock, tag="油皮")
    costly = open_trial(client, headers, clock, points_cost=300)
    low, low_address = applicant(db, tenant, points=100)
    oily, oily_address = applicant(db, tenant, points=600, tags=["油皮"])

    body = assert_problem(
        apply(client, low, low_address, by_tier["id"]), 403, "trials.tier_required"
    )
    assert "挚友" in body["detail"]
    assert_problem(apply(client, low, low_address, by_tag["id"]), 403, "trials.tag_required")
    assert_problem(apply(client, low, low_address, costly["id"]), 409, "points.insufficient")
    assert balance(db, low) == 100
    assert apply(client, oily, oily_address, by_tier["id"]).status_code == 200
    assert apply(client, oily, oily_address, by_tag["id"]).status_code == 200
    first = apply(client, oily, oily_address, costly["id"]).json()
    again = apply(client, oily, oily_address, costly["id"]).json()
    assert first == again
    assert balance(db, oily) == 300


def test_reports_on_time_earn_the_reward_late_and_missing_are_listed(client, db, shop, clock):
    tenant, headers = shop
    trial = open_trial(client, headers, clock, slots=3, report_reward=200)
    people = [applicant(db, tenant) for _ in range(3)]
    for member, address in people:
        apply(client, member, address, trial["id"])
    loser, _ = applicant(db, tenant)
    clock.advance(days=1, seconds=1)
    client.post(f"/api/v1/trials/{trial['id']}/draw", json={}, headers=headers)
    # Every applicant of a 3-slot trial with 3 applicants wins.
    on_time, late, silent = (m for m, _ in people)
    url = f"/api/v1/me/trials/{trial['id']}/report"

    report = client.post(
        url,
        json={"text": "吸收很快，不油腻", "images": ["https://img.example/1.jpg"]},
        headers=member_headers(on_time),
    ).json()
    rejected = client.post(
        f"/api/v1/trial-reports/{report['id']}/review",
        json={"accept": False, "note": "请补充图片"},
        headers=headers,
    ).json()
    revised = client.post(
        url, json={"text": "补充了图片", "images": []}, headers=member_headers(on_time)
    ).json()
    accepted = client.post(
        f"/api/v1/trial-reports/{report['id']}/review", json={"accept": True}, headers=headers
    ).json()
    board_before = client.get(f"/api/v1/trials/{trial['id']}/reports", headers=headers).json()
    clock.advance(days=8)
    late_report = client.post(url, json={"text": "迟到的报告"}, headers=member_headers(late))
    board = client.get(f"/api/v1/trials/{trial['id']}/reports", headers=headers).json()["items"]
    late_accepted = client.post(
        f"/api/v1/trial-reports/{late_report.json()['id']}/review",
        json={"accept": True},
        headers=headers,
    ).json()

    assert (rejected["status"], rejected["review_note"]) == ("rejected", "请补充图片")
    assert (revised["status"], revised["late"]) == ("submitted", False)
    assert accepted["status"] == "accepted"
    assert balance(db, on_time) == 200
    assert {row["state"] for row in board_before["items"]} == {"accepted", "due"}
    assert late_report.json()["late"] is True
    states = {row["member_id"]: row["state"] for row in board}
    assert states == {on_time.id: "accepted", late.id: "late", silent.id: "missing"}
    assert late_accepted["reward_entry_id"] is None
    assert balance(db, late) == 0
    assert_problem(
        client.post(url, json={"text": "改一下"}, headers=member_headers(on_time)),
        409,
        "trials.report_accepted",
    )
    assert_problem(
        client.post(url, json={"text": "我也想写"}, headers=member_headers(loser)),
        409,
        "trials.not_a_winner",
    )


def test_other_tenants_trials_are_not_found(client, db, shop, clock):
    tenant, headers = shop
    trial = open_trial(client, headers, clock)
    other = make_tenant(db)
    stranger, address = applicant(db, other)

    assert_problem(apply(client, stranger, address, trial["id"]), 404, "trials.not_found")
    other_headers = token_headers(db, make_operator(db, other))
    assert_problem(
        client.get(f"/api/v1/trials/{trial['id']}", headers=other_headers), 404, "trials.not_found"
    )


def one_slot_trial(db, tenant, clock, title, closes=dt.timedelta(minutes=30), **kw):
    """A one-slot trial open since an hour ago, closing in ``closes``, reports due in 3 days."""
    return trials.create_trial(
        db,
        tenant_id=tenant.id,
        title=title,
        slots=1,
        apply_from=clock.now - dt.timedelta(hours=1),
        apply_until=clock.now + closes,
        report_deadline=clock.now + dt.timedelta(days=3),
        **kw,
    )


def test_refunds_beyond_one_batch_finish_in_the_job(db, clock, monkeypatch):
    tenant = make_tenant(db)
    trial = one_slot_trial(db, tenant, clock, "大批量", closes=dt.timedelta(hours=1), points_cost=5)
    people = []
    for _ in range(7):
        member, address = applicant(db, tenant, points=5)
        trials.apply(
            db, tenant_id=tenant.id, trial_id=trial.id, member_id=member.id, address_id=address.id
        )
        people.append(member)
    monkeypatch.setattr(trials, "REFUND_BATCH", 2)
    clock.advance(hours=2)

    trials.draw(db, tenant_id=tenant.id, trial_id=trial.id)
    left = db.scalars(
        select(t.Application).where(
            t.Application.trial_id == trial.id,
            t.Application.status == t.LOST,
            t.Application.refund_entry_id.is_(None),
        )
    ).all()
    assert len(left) == 4  # 6 losers, the first batch of 2 refunded in the draw
    while trials.refund_losers(db, tenant_id=tenant.id, trial_id=trial.id, limit=2):
        pass
    assert sorted(balance(db, m) for m in people) == [0, 5, 5, 5, 5, 5, 5]
    assert trials.refund_losers(db, tenant_id=tenant.id, trial_id=trial.id) == 0
    assert ledger.verify(db, tenant_id=tenant.id).ok


def test_the_periodic_job_draws_server_seeded_trials_once_their_window_closes(db, clock):
    from siyu.trials import tasks

    tenant = make_tenant(db)
    member, address = applicant(db, tenant)
    closing = one_slot_trial(db, tenant, clock, "自动开奖")
    committed_by_operator = one_slot_trial(
        db,
        tenant,
        clock,
        "运营自带种子",
        commitment=hashlib.sha256(bytes.fromhex(SEED)).hexdigest(),
    )
    trials.apply(
        db, tenant_id=tenant.id, trial_id=closing.id, member_id=member.id, address_id=address.id
    )

    assert tasks.draw_due() == 0
    clock.advance(hours=1)
    assert tasks.draw_due() == 1
    assert tasks.draw_due() == 0

    db.expire_all()
    assert db.get(t.Trial, closing.id).status == t.DRAWN
    assert db.get(t.Trial, committed_by_operator.id).status == t.OPEN  # needs its seed revealed
    won = trials.find_application(db, tenant_id=tenant.id, trial_id=closing.id, member_id=member.id)
    assert won.status == t.WON


def test_winners_are_told_once_and_losers_are_not(db, clock):
    tenant = make_tenant(db)
    people = [applicant(db, tenant) for _ in range(3)]
    trial = one_slot_trial(db, tenant, clock, "面霜试用")
    for member, address in people:
        trials.apply(
            db, tenant_id=tenant.id, trial_id=trial.id, member_id=member.id, address_id=address.id
        )
    clock.advance(hours=1)
    trials.draw(db, tenant_id=tenant.id, trial_id=trial.id)
    trials.draw(db, tenant_id=tenant.id, trial_id=trial.id)  # a repeat changes nothing
    db.commit()
    drain()

    told = {
        member.id: messaging.list_inbox(db, tenant_id=tenant.id, member_id=member.id)
        for member, _ in people
    }
    [winner] = [
        m
        for m, _ in people
        if trials.find_application(
            db, tenant_id=tenant.id, trial_id=trial.id, member_id=m.id
        ).status
        == t.WON
    ]
    [item] = told.pop(winner.id)
    assert "面霜试用" in item.body
    assert all(items == [] for items in told.values())

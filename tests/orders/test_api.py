"""Orders through /api/v1: upload (a background job), progress, rejects, claims, review."""

from __future__ import annotations

from pathlib import Path

import pytest

from siyu.core.jobs import huey
from siyu.members import service as members
from tests.factories import make_member, make_operator, member_headers, spend, token_headers
from tests.orders.samples import TbRow, taobao_csv

PROBLEM = "application/problem+json"


@pytest.fixture
def ops(db, tenant):
    return token_headers(db, make_operator(db, tenant))


@pytest.fixture(autouse=True)
def _empty_queue():
    huey.flush()
    yield
    huey.flush()


def upload(client, headers, data: bytes, **form):
    return client.post(
        "/api/v1/orders/imports",
        headers=headers,
        files={"file": ("ExportOrderList.csv", data, "text/csv")},
        data=form,
    )


def run_jobs() -> list[object]:
    done = []
    while (message := huey.dequeue()) is not None:
        done.append(huey.execute(message))
    return done


def test_upload_runs_as_a_job_and_reports_progress_counts_and_rejects(client, ops, clock):
    resp = upload(
        client, ops, taobao_csv([TbRow("1", "a", "10"), TbRow("2", "b", "bad")]), session_id="9"
    )
    assert resp.status_code == 202, resp.text
    queued = resp.json()
    assert (queued["status"], queued["rows"]) == ("queued", 0)

    assert run_jobs() == ["done"]

    imp = client.get(f"/api/v1/orders/imports/{queued['id']}", headers=ops).json()
    assert (imp["status"], imp["format"], imp["encoding"]) == ("done", "taobao", "gb18030")
    assert (imp["rows"], imp["imported"], imp["updated"], imp["rejected"]) == (2, 1, 0, 1)
    assert imp["bytes_read"] == imp["size_bytes"] > 0
    rejects = client.get(f"/api/v1/orders/imports/{queued['id']}/rejects", headers=ops).json()
    assert rejects == [{"line": 3, "column": "买家实际支付金额", "reason": "bad amount"}]
    order = client.get("/api/v1/orders/taobao/1", headers=ops).json()
    assert (order["paid_fen"], order["session_id"]) == (1000, 9)
    listed = client.get("/api/v1/orders/imports", headers=ops).json()
    assert [i["id"] for i in listed] == [queued["id"]]


def test_upload_with_unknown_format_is_a_problem(client, ops):
    resp = upload(client, ops, b"x", format="excel")

    assert resp.status_code == 422
    assert resp.headers["content-type"].startswith(PROBLEM)
    assert resp.json()["code"] == "orders.unknown_format"


def test_member_claims_over_the_api_and_sees_claims_and_debt(db, client, tenant, ops, clock):
    fan = make_member(db, tenant)
    upload(client, ops, taobao_csv([TbRow("31", "nick", "50.00")]))
    run_jobs()
    me = member_headers(fan)

    resp = client.post(
        "/api/v1/me/claims",
        headers=me,
        json={"platform": "taobao", "order_no": "31", "account": "nick"},
    )
    assert resp.status_code == 201, resp.text
    assert (resp.json()["status"], resp.json()["points"]) == ("credited", 50)

    spend(db, fan, 40)
    upload(client, ops, taobao_csv([TbRow("31", "nick", "50.00", status="closed", refund="50")]))
    run_jobs()
    mine = client.get("/api/v1/me/claims", headers=me).json()
    assert mine["debt"] == 40
    assert (mine["items"][0]["status"], mine["items"][0]["clawed_points"]) == ("reversed", 50)

    missing = client.post(
        "/api/v1/me/claims",
        headers=me,
        json={"platform": "taobao", "order_no": "404", "account": "nick"},
    ).json()
    assert missing["status"] == "pending"
    wrong = client.post(
        "/api/v1/me/claims", headers=me, json={"platform": "qq", "order_no": "1", "account": "n"}
    )
    assert wrong.status_code == 422
    assert wrong.json()["code"] == "orders.invalid_claim"


def test_operator_reviews_flagged_claims_and_rebinds_accounts(db, client, tenant, ops, clock):
    fan, other = make_member(db, tenant), make_member(db, tenant)
    upload(client, ops, taobao_csv([TbRow("41", "shared", "10"), TbRow("42", "shared", "10")]))
    run_jobs()
    client.post(
        "/api/v1/me/claims",
        headers=member_headers(other),
        json={"platform": "taobao", "order_no": "99", "account": "shared"},
    )
    flagged = [
        client.post(
            "/api/v1/me/claims",
            headers=member_headers(fan),
            json={"platform": "taobao", "order_no": no, "account": "shared"},
        ).json()
        for no in ("41", "42")
    ]
    assert [c["status"] for c in flagged] == ["review", "review"]
    queue = client.get("/api/v1/claims", headers=ops, params={"status": "review"}).json()
    assert {c["id"] for c in queue} == {c["id"] for c in flagged}

    ok = client.post(f"/api/v1/claims/{flagged[0]['id']}/approve", headers=ops)
    assert (ok.status_code, ok.json()["status"]) == (200, "credited")
    no = client.post(
        f"/api/v1/claims/{flagged[1]['id']}/reject", headers=ops, json={"reason": "多人共用账号"}
    )
    assert (no.status_code, no.json()["status"], no.json()["reason"]) == (
        200,
        "rejected",
        "orders.review_rejected",
    )
    again = client.post(f"/api/v1/claims/{flagged[1]['id']}/approve", headers=ops)
    assert (again.status_code, again.json()["code"]) == (409, "orders.not_reviewable")

    moved = client.post(
        "/api/v1/platform-accounts/rebind",
        headers=ops,
        json={"platform": "taobao", "account": "shared", "member_id": other.id, "reason": "换号"},
    )
    assert moved.status_code == 201, moved.text
    assert (moved.json()["from_member_id"], moved.json()["to_member_id"]) == (fan.id, other.id)
    db.expire_all()
    assert [
        a.account for a in members.get_member(db, tenant_id=tenant.id, member_id=other.id).accounts
    ] == ["shared"]
    audit = client.get("/api/v1/platform-accounts/rebinds", headers=ops).json()
    assert audit[0]["reason"] == "换号"
    stats = client.get("/api/v1/orders-stats/sessions", headers=ops).json()
    assert stats == [
        {"session_id": None, "orders": 2, "claimed": 1, "claim_rate": 0.5, "points": 10}
    ]


def test_conversion_rule_round_trips_and_refuses_bad_values(client, ops):
    rule = client.get("/api/v1/orders-rule", headers=ops).json()
    assert rule["points_per_yuan"] == 1

    saved = client.put(
        "/api/v1/orders-rule",
        headers=ops,
        json=rule | {"points_per_yuan": 5, "session_multipliers": {"3": 200}},
    )
    assert saved.status_code == 200
    assert client.get("/api/v1/orders-rule", headers=ops).json()["session_multipliers"] == {
        "3": 200
    }
    bad = client.put(
        "/api/v1/orders-rule", headers=ops, json=rule | {"tier_multipliers": {"gold": 150}}
    )
    assert (bad.status_code, bad.json()["code"]) == (422, "orders.invalid_rule")


def test_analyst_cannot_import_or_review(db, client, tenant):
    analyst = token_headers(db, make_operator(db, tenant, role="analyst"))

    assert upload(client, analyst, b"x").status_code == 403
    assert client.post("/api/v1/claims/1/approve", headers=analyst).status_code == 403
    assert client.get("/api/v1/orders/imports", headers=analyst).status_code == 200


def _stalled(clock) -> None:
    clock.advance(minutes=16)


def test_an_import_whose_worker_died_midway_runs_again_to_the_same_result(db, client, ops, clock):
    """The worker took the job, started the import, wrote part of it, and died. A quarter of
    an hour without progress later the sweep queues it again; the rerun starts from the top
    and ends with the counts and report of one clean run."""
    from siyu.orders import models as m
    from siyu.orders import service, tasks

    data = taobao_csv([TbRow("41", "a", "10"), TbRow("42", "b", "bad"), TbRow("43", "c", "5")])
    imp_id = upload(client, ops, data).json()["id"]
    assert huey.dequeue() is not None  # the worker took the job …
    imp = db.get(m.Import, imp_id)
    assert service.claim_import(db, imp_id)  # … started it …
    service.start_import(db, imp)
    service.add_rejects(db, tenant_id=imp.tenant_id, import_id=imp_id, rejects=[])
    service.count_batch(db, imp, service.BatchResult(1, 0, 1), position=10)  # … and died
    db.flush()
    clock.advance(minutes=10)
    assert tasks.sweep_interrupted.call_local()["resumed"] == 0  # not stalled yet
    clock.advance(minutes=6)

    assert tasks.sweep_interrupted.call_local()["resumed"] == 1

    queued = client.get(f"/api/v1/orders/imports/{imp_id}", headers=ops).json()
    assert (queued["status"], queued["attempts"]) == ("queued", 1)
    assert run_jobs() == ["done"]
    done = client.get(f"/api/v1/orders/imports/{imp_id}", headers=ops).json()
    assert (done["status"], done["attempts"], done["error"]) == ("done", 2, "")
    assert (done["rows"], done["imported"], done["updated"], done["rejected"]) == (3, 2, 0, 1)
    rejects = client.get(f"/api/v1/orders/imports/{imp_id}/rejects", headers=ops).json()
    assert [r["line"] for r in rejects] == [3]
    assert service.upload_path(db.get(m.Import, imp_id)) is None  # the job cleans up as usual


def test_an_import_whose_job_the_queue_lost_is_queued_again_and_runs_once(db, client, ops, clock):
    imp_id = upload(client, ops, taobao_csv([TbRow("51", "a", "10")])).json()["id"]
    assert huey.dequeue() is not None  # taken, never run: the queue's copy is gone
    _stalled(clock)

    assert tasks_sweep()["resumed"] == 1
    # The sweep runs every five minutes: a job it queued may still be waiting when the next
    # one runs, so the same import can be in the queue twice. Only one of them imports.
    _stalled(clock)
    assert tasks_sweep()["resumed"] == 1

    assert sorted(map(str, run_jobs())) == ["done", "missing"]
    imp = client.get(f"/api/v1/orders/imports/{imp_id}", headers=ops).json()
    assert (imp["status"], imp["attempts"], imp["imported"]) == ("done", 1, 1)


def test_an_import_that_keeps_dying_fails_after_three_runs(db, client, ops, clock):
    from siyu.orders import models as m
    from siyu.orders import service

    imp_id = upload(client, ops, taobao_csv([TbRow("61", "a", "10")])).json()["id"]
    huey.flush()
    for _ in range(service.MAX_ATTEMPTS):  # each run dies before any progress
        assert service.claim_import(db, imp_id)
        db.flush()
        _stalled(clock)
        tasks_sweep()
        huey.flush()

    imp = client.get(f"/api/v1/orders/imports/{imp_id}", headers=ops).json()
    assert (imp["status"], imp["attempts"]) == ("failed", 3)
    assert "upload the file again" in imp["error"] or "重新上传" in imp["error"]
    assert db.get(m.Import, imp_id).finished_at == clock.now


def test_a_job_of_an_import_already_running_does_nothing(db, client, ops):
    from siyu.orders import models as m
    from siyu.orders import service, tasks

    imp_id = upload(client, ops, taobao_csv([TbRow("71", "a", "10")])).json()["id"]
    assert service.claim_import(db, imp_id)  # another worker runs it
    path = service.upload_path(db.get(m.Import, imp_id))
    assert path is not None

    assert tasks.import_file.call_local(imp_id, str(path)) == "skipped"
    assert path.exists()  # the running job still reads it


@pytest.mark.parametrize("staging", [True, False], ids=["staged", "python"])
def test_a_run_the_sweep_took_over_stops_and_the_later_run_stands(
    db, client, ops, clock, monkeypatch, staging
):
    """A worker alive but slow (no progress for a quarter of an hour: a lock wait, a stalled
    disk) looks dead to the sweep, which queues the import again and a second worker runs it.
    The first run must not write on top: at its next write it finds the later run and stops,
    that transaction undone; the import ends with the counts and report of one run."""
    import shutil

    from siyu.orders import flows, service, staged
    from siyu.orders import models as m

    monkeypatch.setattr(staged, "CHUNK", 1)  # progress after every line, on either path
    monkeypatch.setattr(flows, "BATCH", 1)
    data = taobao_csv([TbRow("81", "a", "10"), TbRow("82", "b", "bad"), TbRow("83", "c", "5")])
    imp_id = upload(client, ops, data).json()["id"]
    assert huey.dequeue() is not None  # the first worker took the job
    path = service.upload_path(db.get(m.Import, imp_id))
    assert path is not None
    mine = shutil.copy(path, path.with_suffix(".first-run"))  # its open file
    first = service.claim_import(db, imp_id)
    seen: list[int] = []

    def taken_over_after_the_first_line(imp: m.Import) -> None:
        seen.append(imp.rows)
        if len(seen) == 1:
            _stalled(clock)
            assert tasks_sweep()["resumed"] == 1

    with pytest.raises(service.ImportSuperseded):
        flows.run_import(
            imp_id,
            Path(mine),
            progress=taken_over_after_the_first_line,
            staging=staging,
            run=first,
        )
    assert seen == [1]  # it wrote its first line, then stopped: nothing after the takeover
    assert run_jobs() == ["done"]  # the second worker's run
    done = client.get(f"/api/v1/orders/imports/{imp_id}", headers=ops).json()
    assert (done["status"], done["attempts"]) == ("done", 2)
    # The first run's first line (order 81) was committed before the takeover: the second
    # run updates it (idempotent), imports 83 and reports line 3 once.
    assert (done["rows"], done["imported"], done["updated"], done["rejected"]) == (3, 1, 1, 1)
    rejects = client.get(f"/api/v1/orders/imports/{imp_id}/rejects", headers=ops).json()
    assert [r["line"] for r in rejects] == [3]


def tasks_sweep() -> dict[str, int]:
    from siyu.orders import tasks

    return tasks.sweep_interrupted.call_local()

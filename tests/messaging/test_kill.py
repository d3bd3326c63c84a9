"""A worker killed (SIGKILL) in the middle of a batch loses nothing and duplicates nothing.

The deliveries go to the fake WeChat server through the subscribe-message adapter, which
counts what it accepted per member: the proof is counted at the receiving end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from siyu.core.db import unit_of_work
from siyu.messaging import service, tasks
from siyu.messaging.models import Delivery
from siyu.tenants import service as tenants
from tests.conftest import TMP
from tests.factories import make_member, make_tenant
from tests.fakes import weixin as fake

N = 200
LEASE = 2


def worker(database_url: str, base_url: str, log: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SIYU_DATABASE_URL": database_url,
        "SIYU_VAR_DIR": str(TMP),
        "SIYU_WECHAT_API_BASE": base_url,
        "SIYU_MESSAGE_LEASE_SECONDS": str(LEASE),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "siyu.cli", "worker", "--workers", "2", "--no-periodic"],
        env=env,
        # A file, not a pipe: nobody reads a pipe while the test waits, and a full pipe blocks
        # the worker's logging.
        stdout=(TMP / log).open("wb"),
        stderr=subprocess.STDOUT,
    )


def wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.concurrency
def test_killing_a_worker_mid_batch_loses_and_duplicates_nothing(committed, database_url, weixin):
    with unit_of_work() as db:
        tenant = make_tenant(db)
        tenants.update_settings(
            db,
            tenant_id=tenant.id,
            changes={"wechat": {"appid": fake.APPID, "secret": fake.SECRET}},
        )
        service.save_template(
            db,
            tenant_id=tenant.id,
            key="live",
            name="开播",
            body="开播啦",
            subscribe={"template_id": "TPL", "data": {"thing1": "{{ member.nickname }}"}},
        )
        fans = [make_member(db, tenant, nickname=f"粉丝{i}") for i in range(N)]
        for f in fans:
            service.record_consent(db, tenant_id=tenant.id, member_id=f.id, template_key="TPL")
            weixin.grant(f.openid, "TPL")  # one consent each at WeChat too: one message
        openids = {f.openid for f in fans}
    # Latency per call, so the sender (64 requests in flight) needs several waves for the 200 and
    # the kill lands with one batch half sent.
    weixin.delay = 0.5
    with unit_of_work() as db:
        message_id = service.send(
            db,
            tenant_id=tenant.id,
            purpose="kill-test",
            member_ids=[f.id for f in fans],
            template="live",
        ).id
    first = worker(database_url, weixin.base_url, "kill-first.log")
    try:
        wait_for(lambda: sum(weixin.delivered.values()) >= N // 4, 180, "the first deliveries")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    at_kill = sum(weixin.delivered.values())
    with unit_of_work() as db:
        states = db.scalars(select(Delivery.status).where(Delivery.message_id == message_id)).all()
    assert at_kill < N, "the worker finished before the kill: nothing was proven"
    assert states.count("sending") > 0, "no batch was in flight at the kill"

    time.sleep(LEASE + 0.5)  # the dead worker's leases run out
    tasks.run_tick()  # what the periodic tick does: requeue the interrupted, dispatch again
    second = worker(database_url, weixin.base_url, "kill-second.log")
    try:

        def done() -> bool:
            with unit_of_work() as db:
                msg = service.get_message(db, tenant_id=tenant.id, message_id=message_id)
                return msg.status == "done"

        wait_for(done, 240, "the second worker to finish")
    finally:
        second.terminate()
        second.wait(timeout=10)
    out = (TMP / "kill-second.log").read_text(errors="replace")

    with unit_of_work() as db:
        counts = service.status_counts(db, message_id=message_id)
    assert counts["sent"] == N, (counts, out[-2000:])
    # Counted at the receiving end: every fan exactly once.
    assert {k.split(":", 1)[1] for k in weixin.delivered} == openids
    assert set(weixin.delivered.values()) == {1}

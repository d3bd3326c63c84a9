"""The job queue on its real storage: SQLite in the sqlite run, Redis in the PostgreSQL run."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time

import pytest
from huey import RedisHuey, SqliteHuey

from siyu.core import clock as clockmod
from siyu.core.db import unit_of_work
from siyu.core.jobs import huey
from siyu.ledger import service as ledger
from siyu.ledger.tasks import expire_points
from tests.conftest import BACKEND, TMP
from tests.factories import grant, make_member, make_tenant


@pytest.fixture(autouse=True)
def _empty_queue():
    huey.flush()
    yield
    huey.flush()


def _member_with_lot_expired_yesterday(clock):
    real_now = dt.datetime.now(dt.UTC)
    clock.set(real_now - dt.timedelta(days=3))
    with unit_of_work() as db:
        tenant = make_tenant(db)
        member = make_member(db, tenant)
        grant(db, member, 70, expires_at=real_now - dt.timedelta(days=1))
        grant(db, member, 30)
        ids = (tenant.id, member.id)
    clockmod.set_now(None)
    return ids


def test_queue_storage_matches_the_backend():
    expected = RedisHuey if BACKEND == "postgresql" else SqliteHuey
    assert isinstance(huey, expected)


def test_expiry_job_round_trips_through_the_queue_and_expires_due_points(committed, clock):
    tenant_id, member_id = _member_with_lot_expired_yesterday(clock)
    expire_points()  # periodic tasks can be enqueued by hand too
    message = huey.dequeue()
    assert message is not None
    assert message.name == "ledger.expire"
    huey.execute(message)
    with unit_of_work() as db:
        assert ledger.get_balance(db, tenant_id=tenant_id, member_id=member_id).balance == 30
        assert ledger.verify(db, tenant_id=tenant_id).ok
    # Running the job again changes nothing.
    expire_points()
    huey.execute(huey.dequeue())
    with unit_of_work() as db:
        entries = ledger.list_entries(db, tenant_id=tenant_id, member_id=member_id)
        assert [e.kind for e in entries].count("expire") == 1


def test_siyu_worker_process_consumes_jobs(committed, clock, database_url):
    tenant_id, member_id = _member_with_lot_expired_yesterday(clock)
    env = {**os.environ, "SIYU_DATABASE_URL": database_url, "SIYU_VAR_DIR": str(TMP)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "siyu.cli", "worker", "--workers", "1", "--no-periodic"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    balance = None
    try:
        expire_points()  # Huey keeps no results for periodic tasks: watch the ledger instead
        deadline = time.monotonic() + 90  # a loaded CI machine starts Python slowly
        while time.monotonic() < deadline and balance != 30:
            time.sleep(0.2)
            with unit_of_work() as db:
                balance = ledger.get_balance(db, tenant_id=tenant_id, member_id=member_id).balance
    finally:
        worker.terminate()
        out, _ = worker.communicate(timeout=10)
    assert balance == 30, out.decode(errors="replace")


def test_siyu_serve_with_its_embedded_consumer_stops_on_sigterm(committed, database_url):
    import signal
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "SIYU_DATABASE_URL": database_url,
        "SIYU_VAR_DIR": str(TMP),
        "SIYU_EMBEDDED_CONSUMER": "true",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "siyu.cli", "serve", "--bind", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90  # a loaded CI machine starts Python slowly
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.2)
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=15)  # before the fix Huey swallowed SIGTERM: it hung here
    finally:
        if server.poll() is None:
            server.kill()
        out, _ = server.communicate(timeout=10)
    # uvicorn re-raises the signal once shut down cleanly, so the exit status is SIGTERM's.
    assert code in (0, -signal.SIGTERM), out.decode(errors="replace")[-2000:]
    assert b"embedded job consumer started" in out
    assert b"Application shutdown complete" in out

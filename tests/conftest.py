"""Test fixtures: a real database per run (SQLite or PostgreSQL + Redis), one rolled-back
transaction per test, the app on that transaction, factories, a controllable clock.

Choose the backend with ``SIYU_TEST_DATABASE=sqlite|postgresql`` (scripts/test runs both).
PostgreSQL or Redis unreachable is an error, never a skip.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

BACKEND = os.environ.get("SIYU_TEST_DATABASE", "sqlite")
assert BACKEND in ("sqlite", "postgresql"), f"SIYU_TEST_DATABASE={BACKEND!r}"
PG_ADMIN_URL = os.environ.get(
    "SIYU_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("SIYU_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
RUN_ID = f"{WORKER}_{uuid.uuid4().hex[:8]}"
TMP = Path(tempfile.mkdtemp(prefix=f"siyu-test-{RUN_ID}-"))

# Settings are read once, at first use: fix them before any siyu module is imported.
os.environ.update(
    {
        "SIYU_SECRET_KEY": "test-secret-" + RUN_ID,
        "SIYU_VAR_DIR": str(TMP),
        "SIYU_QUEUE_NAME": f"siyu-test-{RUN_ID}",
        "SIYU_DEV_LOGIN": "true",
        "SIYU_EMBEDDED_CONSUMER": "false",
        "SIYU_PLATFORM_TOKEN": "platform-" + RUN_ID,
    }
)
PLATFORM_HEADERS = {"Authorization": "Bearer platform-" + RUN_ID}
if BACKEND == "postgresql":
    os.environ["SIYU_REDIS_URL"] = REDIS_URL
else:
    os.environ.pop("SIYU_REDIS_URL", None)

import datetime as dt  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402

import pytest  # noqa: E402
from sqlalchemy import Engine, create_engine, text  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

from siyu.core import clock as clockmod  # noqa: E402
from siyu.core import db as dbmod  # noqa: E402
from siyu.core.db import Base, make_engine  # noqa: E402


def _create_database() -> tuple[str, Callable[[], None]]:
    if BACKEND == "sqlite":
        path = TMP / "siyu.db"
        return f"sqlite:///{path}", lambda: None
    name = f"siyu_test_{RUN_ID}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:  # fails loudly if PostgreSQL is down: no skip
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()

    def drop() -> None:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", drop


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url, drop = _create_database()
    from siyu.core.migrate import upgrade

    upgrade("head", url=url)  # the schema tests run on is the one migrations build
    yield url
    dbmod.configure(None)
    drop()


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    # Few connections kept between tests, more opened for a concurrency test's threads: each
    # test worker would otherwise keep the pool's 30 after its first threaded test, and two
    # workers beside a test that opens 64 of its own passed PostgreSQL's max_connections (100).
    kw = {} if database_url.startswith("sqlite") else {"pool_size": 4, "max_overflow": 40}
    eng = make_engine(database_url, **kw)
    yield eng
    eng.dispose()


@pytest.fixture
def db(engine: Engine) -> Iterator[Session]:
    """A session inside an outer transaction that is rolled back after the test. The app
    (TestClient requests, services' ``unit_of_work``) joins the same transaction."""
    conn = engine.connect()
    outer = conn.begin()
    factory = sessionmaker(
        bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    dbmod.configure(engine, factory)
    session = factory()
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        conn.close()
        dbmod.configure(None)


@pytest.fixture
def committed(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """Real commits, for tests with several connections (concurrency, browser, CLI
    processes). Every table is emptied afterwards."""
    factory = sessionmaker(engine, expire_on_commit=False)
    dbmod.configure(engine, factory)
    try:
        yield factory
    finally:
        dbmod.configure(None)
        _empty(engine)


def _empty(engine: Engine) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(
                text(
                    "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"
                )
            )
        else:
            # The models' order is PostgreSQL's keys; SQLite keeps a few keys PostgreSQL
            # dropped (migration "orders import provenance"): empty without checking them.
            conn.execute(text("PRAGMA defer_foreign_keys = ON"))
            for t in tables:
                conn.execute(text(f'DELETE FROM "{t}"'))


class FrozenClock:
    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def set(self, when: dt.datetime) -> None:
        assert when.tzinfo is not None
        self.now = when

    def advance(self, **delta: float) -> dt.datetime:
        self.now += dt.timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    frozen = FrozenClock(dt.datetime(2026, 11, 11, 12, 0, tzinfo=dt.UTC))
    clockmod.set_now(frozen)
    yield frozen
    clockmod.set_now(None)


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    from siyu.core import ratelimit

    ratelimit.reset()


@pytest.fixture(scope="session")
def app() -> object:
    from siyu.app import create_app

    return create_app(start_consumer=False)


@pytest.fixture
def client(app: object, db: Session) -> Iterator[object]:
    from fastapi.testclient import TestClient

    with TestClient(app) as c:  # type: ignore[arg-type]
        yield c


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real argon2id with a small cost: production parameters take ~0.4 s a hash here."""
    from argon2 import PasswordHasher

    from siyu.core import security

    monkeypatch.setattr(
        security, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )

"""Engine, sessions and the unit of work.

Services only ``flush()``; the edge (request, job, command) commits once through
``unit_of_work()`` or the ``DbSession`` dependency. Side effects that must not happen for a
rolled-back transaction (jobs, messages) are queued with ``after_commit``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from siyu.core import clock
from siyu.core.settings import get_settings

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stores UTC, always returns an aware UTC datetime (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: store aware UTC instants only")
        value = value.astimezone(clock.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return None if value is None else clock.as_utc(value)


def make_engine(url: str, **kw: Any) -> Engine:
    """An engine with the SQLite recipe applied: WAL, foreign keys, BEGIN IMMEDIATE."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kw)

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _rec: Any) -> None:
            # Take transaction control away from pysqlite so SAVEPOINT and BEGIN work as written.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # IMMEDIATE takes the write lock up front: a deferred transaction that later writes
            # fails with SQLITE_BUSY instead of waiting, which would turn races into 500s.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # Every connection the pool may open is kept: an overflow connection would be closed on its
    # return and opened again by the next request (a new backend per request under load).
    kw.setdefault("pool_size", 30)
    kw.setdefault("max_overflow", 0)
    # No pre-ping (a round trip per transaction); a dropped connection is discarded on its
    # error and connections are recycled before servers' idle timeouts.
    kw.setdefault("pool_recycle", 1800)
    return create_engine(url, **kw)


_engine: Engine | None = None
_factory: sessionmaker[Session] | None = None


def configure(engine: Engine | None = None, factory: sessionmaker[Session] | None = None) -> None:
    """Point the process at an engine (tests bind sessions to one connection this way)."""
    global _engine, _factory
    _engine = engine
    _factory = factory or (sessionmaker(engine, expire_on_commit=False) if engine else None)


def get_engine() -> Engine:
    global _engine
    if _engine is None:
        configure(make_engine(get_settings().database_url))
    assert _engine is not None
    return _engine


# Connections kept back from web requests for the in-process job consumer and health checks.
_POOL_RESERVE = 2


def pool_capacity() -> int:
    """How many sessions web requests may hold at once without waiting on the pool."""
    pool = get_engine().pool
    size = getattr(pool, "size", None)
    if not callable(size):  # a pool without a limit (tests bind one connection)
        return 64
    return max(1, int(size()) + max(0, int(getattr(pool, "_max_overflow", 0))) - _POOL_RESERVE)


def session_factory() -> sessionmaker[Session]:
    if _factory is None:
        get_engine()
    assert _factory is not None
    return _factory


def after_commit(db: Session, fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` once the session's transaction commits; dropped on rollback."""
    db.info.setdefault("after_commit", []).append((fn, args))


@event.listens_for(Session, "after_commit")
def _run_after_commit(db: Session) -> None:
    for fn, args in db.info.pop("after_commit", []):
        fn(*args)


@event.listens_for(Session, "after_soft_rollback")
def _drop_after_commit(db: Session, previous: Any) -> None:
    # Only the outermost rollback discards; a rolled-back SAVEPOINT (a lost idempotency race)
    # leaves the surrounding transaction and its pending side effects intact.
    if previous.parent is None:
        db.info.pop("after_commit", None)


@contextmanager
def unit_of_work() -> Iterator[Session]:
    """One transaction for a job or command: commit on success, roll back on any error."""
    with session_factory()() as db:
        try:
            yield db
            db.commit()
        except BaseException:
            db.rollback()
            raise

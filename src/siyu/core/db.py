"""Engine, sessions and the unit of work.

Services only ``flush()``; the edge (request, job, command) commits once through
``unit_of_work()`` or the ``DbSession`` dependency. Side effects that must not happen for a
rolled-back transaction (jobs, messages) are queued with ``after_commit``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ARRAY,
    DateTime,
    Engine,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    any_,
    bindparam,
    create_engine,
    event,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
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


def of_tenant(column: str, parent: str) -> ForeignKeyConstraint:
    """``(tenant_id, column)`` references ``parent(tenant_id, id)``: the row's parent exists
    and belongs to the row's tenant, and the tenant exists through the parent's own key
    (the parent needs a unique index on ``(tenant_id, id)``).

    Separate keys on ``tenant_id`` and ``column`` made every posting take ``FOR KEY SHARE``
    on the one tenant row from several tables; concurrent postings shared it through
    multixacts, which cost PostgreSQL more than the posting (benchmarks/README.md,
    "composite keys"). On SQLite the ledger's tables keep their single-column keys (see the
    migration "ledger keys of tenant")."""
    return ForeignKeyConstraint(["tenant_id", column], [f"{parent}.tenant_id", f"{parent}.id"])


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
    global _engine, _factory, _async_pool
    _engine = engine
    _async_pool = None  # its connections go to the engine's database: made again on demand
    _factory = factory or (sessionmaker(engine, expire_on_commit=False) if engine else None)


_engine_lock = threading.Lock()


def get_engine() -> Engine:
    """The process's engine, made on first use: once, whichever of a worker's threads asks
    first (each used to make an engine and a pool of its own when they started together)."""
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                settings = get_settings()
                kw = {} if settings.is_sqlite else {"pool_size": settings.db_pool_size}
                configure(make_engine(settings.database_url, **kw))
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
def dbapi_transaction() -> Iterator[Any]:
    """The driver's connection (psycopg, sqlite3) in a transaction of its own: committed when
    the block ends, rolled back on any error. For hot paths whose work is one or two statements,
    where a Session costs more client CPU than the work costs the server.

    When sessions are bound to one connection instead of the engine (tests), the block runs on
    that connection through a Session, so it joins the transaction the test rolls back."""
    factory = session_factory()
    bind = factory.kw.get("bind")
    if isinstance(bind, Engine):
        raw = bind.raw_connection()
        try:
            yield raw.driver_connection
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
        finally:
            raw.close()
        return
    with unit_of_work() as db:
        yield db.connection().connection.driver_connection


def call_in_autocommit(engine: Engine, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """The row of one statement run as its own transaction on a pooled connection of
    ``engine``: no BEGIN, no COMMIT, one round trip, for a statement that is atomic by itself
    (a server-side function). Driver errors are raised as a Session would raise them."""
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        assert conn is not None
        conn.autocommit = True  # no BEGIN, no COMMIT: one round trip
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                row: tuple[Any, ...] | None = cur.fetchone()
        except engine.dialect.loaded_dbapi.Error as err:  # as a Session would raise it
            raise DBAPIError.instance(sql, params, err, engine.dialect.loaded_dbapi.Error) from err
        finally:
            if not conn.closed:
                conn.autocommit = False  # as the pool lends it to sessions
    finally:
        raw.close()
    return row


class AsyncPool:
    """asyncio psycopg connections of one process and event loop, in autocommit (each
    statement its own transaction), for hot paths that are a single statement: one round trip,
    no thread hop (each costs a wait for a worker thread, then for the GIL behind the event
    loop) and no SQLAlchemy. At most ``size`` connections, all kept: no overflow connections
    opened and closed under load. A connection is replaced after ``recycle`` seconds, and
    dropped once broken."""

    def __init__(self, conninfo: str, size: int, recycle: float = 1800) -> None:
        self.conninfo, self.recycle = conninfo, recycle
        self.loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(size)
        self._idle: list[tuple[float, Any]] = []

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A psycopg AsyncConnection in autocommit mode, for the block's exclusive use."""
        import psycopg

        async with self._slots:
            born, conn = self._idle.pop() if self._idle else (0.0, None)
            if conn is not None and time.monotonic() - born > self.recycle:
                await conn.close()
                conn = None
            if conn is None:
                born = time.monotonic()
                conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
            try:
                yield conn
            finally:
                # Kept only if idle: a block cut short mid-query (cancelled) leaves it busy.
                if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                    self._idle.append((born, conn))
                elif not conn.closed:
                    await conn.close()

    async def aclose(self) -> None:
        """Close the idle connections (at shutdown; a block still running closes its own)."""
        idle, self._idle = self._idle, []
        for _, conn in idle:
            await conn.close()


_async_pool: AsyncPool | None = None


async def close_async_pool() -> None:
    """Close this process's AsyncPool if it has one on the running loop (app shutdown)."""
    global _async_pool
    pool, _async_pool = _async_pool, None
    if pool is not None and pool.loop is asyncio.get_running_loop():
        await pool.aclose()


def async_pool() -> AsyncPool | None:
    """This process's AsyncPool (sized as the engine's pool without overflow) on PostgreSQL
    when sessions are bound to the engine; None otherwise (SQLite; tests binding sessions to one
    connection, whose transaction only that connection can join): use a thread then."""
    global _async_pool
    engine = get_engine()
    if engine.dialect.name != "postgresql" or not isinstance(
        session_factory().kw.get("bind"), Engine
    ):
        return None
    loop = asyncio.get_running_loop()
    if _async_pool is None or _async_pool.loop is not loop:
        size = getattr(engine.pool, "size", None)
        size = int(size()) if callable(size) else 10
        url = engine.url.set(drivername="postgresql")
        _async_pool = AsyncPool(url.render_as_string(hide_password=False), size)
    return _async_pool


@contextmanager
def unit_of_work() -> Iterator[Session]:
    """One transaction for a job or command: commit on success, roll back on any error."""
    with session_factory()() as db:
        try:
            yield db
            if db.in_transaction() or db.info.get("after_commit"):  # else nothing to commit
                db.commit()
        except BaseException:
            db.rollback()
            raise


def release(db: Session) -> None:
    """End the transaction ``db`` has open (reads so far: the operator's lookup of a request,
    the tenant of a command) and give its connection back, for a caller whose remaining work is
    a transaction of its own (``ledger.alone``): no second pooled connection held by one
    request, and on SQLite no write lock (``BEGIN IMMEDIATE``) held against it."""
    db.commit()


def in_ids(db: Session, column: Any, ids: Sequence[int]) -> Any:
    """``column IN ids`` for a batch of integer ids. On PostgreSQL ``column = ANY(array)``: one
    parameter whatever the length, so every batch sends the same statement text and neither
    SQLAlchemy nor psycopg re-renders and re-parses hundreds of placeholders; elsewhere IN."""
    if db.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(ids), type_=ARRAY(Integer)))
    return column.in_(list(ids))

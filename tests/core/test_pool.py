"""More requests than database connections queue for a connection without stalling the
server: a request keeps its connection across thread-pool hops, so without the limit in
TxRoute the threads blocked in the pool's checkout would starve the connection holders."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

import anyio
import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy import text
from sqlalchemy.exc import DataError

from siyu.core import db as dbmod
from siyu.core.web import DbSession, TxRoute


def _first_hop(db: DbSession) -> int:
    # A sync dependency: one thread-pool hop that checks the connection out...
    return int(db.execute(text("SELECT 1")).scalar_one())


def _app() -> FastAPI:
    router = APIRouter(route_class=TxRoute)

    @router.get("/hops")
    def hops(db: DbSession, first: Annotated[int, Depends(_first_hop)]) -> dict[str, int]:
        # ...and the endpoint, a second hop that needs a thread while holding it.
        time.sleep(0.02)
        return {"sum": first + int(db.execute(text("SELECT 1")).scalar_one())}

    app = FastAPI()
    app.include_router(router)
    return app


def test_more_requests_than_connections_all_finish_promptly(database_url):
    saved = dbmod._engine, dbmod._factory
    # Two connections, four worker threads, 40 requests at once. Were the threads starved, the
    # checkouts would time out (10 s) and those requests fail with 500.
    engine = dbmod.make_engine(database_url, pool_size=2, max_overflow=0, pool_timeout=10)
    dbmod.configure(engine)
    dbmod._POOL_RESERVE, reserve = 0, dbmod._POOL_RESERVE
    try:

        async def main() -> tuple[list[int], float]:
            anyio.to_thread.current_default_thread_limiter().total_tokens = 4
            transport = httpx.ASGITransport(app=_app())
            statuses: list[int] = []
            started = time.monotonic()
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

                async def one() -> None:
                    resp = await client.get("/hops")
                    statuses.append(resp.status_code)

                async with anyio.create_task_group() as tg:
                    for _ in range(40):
                        tg.start_soon(one)
            return statuses, time.monotonic() - started

        # Its own thread: a browser test's Playwright may already run a loop in this one.
        with ThreadPoolExecutor(1) as pool:
            statuses, took = pool.submit(anyio.run, main).result()
    finally:
        dbmod._POOL_RESERVE = reserve
        dbmod.configure(*saved)
        engine.dispose()

    assert statuses == [200] * 40, f"after {took:.1f} s"


def test_pool_capacity_leaves_room_for_jobs(database_url):
    saved = dbmod._engine, dbmod._factory
    engine = dbmod.make_engine(database_url, pool_size=4, max_overflow=6)
    dbmod.configure(engine)
    try:
        assert dbmod.pool_capacity() == 4 + 6 - dbmod._POOL_RESERVE
    finally:
        dbmod.configure(*saved)
        engine.dispose()


def test_the_pool_size_comes_from_the_settings_and_is_checked(monkeypatch):
    import pydantic

    from siyu.core.settings import Settings, get_settings

    monkeypatch.setenv("SIYU_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    monkeypatch.setenv("SIYU_DB_POOL_SIZE", "7")
    saved = dbmod._engine, dbmod._factory
    get_settings.cache_clear()
    dbmod.configure(None)
    try:
        engine = dbmod.get_engine()  # made, not connected
        assert engine.pool.size() == 7  # type: ignore[attr-defined]
        assert dbmod.pool_capacity() == 5  # two kept back for the job consumer
        engine.dispose()
    finally:
        get_settings.cache_clear()
        dbmod.configure(*saved)
    monkeypatch.setenv("SIYU_DB_POOL_SIZE", "2")
    with pytest.raises(pydantic.ValidationError, match="db_pool_size"):
        Settings()


def test_a_failed_autocommit_call_raises_as_a_session_would_and_returns_its_connection(
    committed,
):
    engine = committed.kw["bind"]
    if engine.dialect.name != "postgresql":
        pytest.skip("call_in_autocommit serves PostgreSQL (ledger.alone) only")
    with pytest.raises(DataError):  # division_by_zero, wrapped as SQLAlchemy wraps it
        dbmod.call_in_autocommit(engine, "SELECT 1 / %(zero)s", {"zero": 0})
    assert dbmod.call_in_autocommit(engine, "SELECT %(one)s::integer", {"one": 1}) == (1,)
    with engine.connect() as conn:  # the pool lends its connections in transaction mode again
        assert conn.connection.driver_connection.autocommit is False

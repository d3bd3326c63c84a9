"""The ASGI application: /api/v1, /admin, /m, /healthz, /metrics."""

from __future__ import annotations

import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from siyu.core import db as dbmod
from siyu.core import i18n
from siyu.core.settings import get_settings
from siyu.core.web import (
    PROBLEM,
    install_error_handlers,
    locale_of,
    pick_locale,
    skip_unrelated_routers,
    unexpected_error_response,
)

log = logging.getLogger("siyu.web")
access = logging.getLogger("siyu.access")
ROOT = Path(__file__).resolve().parent
NODE_MODULES = ROOT.parent.parent / "node_modules"

REQUESTS = Counter("siyu_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("siyu_http_request_seconds", "HTTP request latency", ["method", "route"])


class RequestContext:
    """Request id, locale context variable, access log and metrics for every request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.requests import Request

        request = Request(scope)
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:12]
        scope.setdefault("state", {})["request_id"] = request_id
        locale = pick_locale(request)
        token = i18n.set_locale(locale)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_wrapped(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                if request.query_params.get("lang") and i18n.normalize(
                    request.query_params.get("lang")
                ):
                    headers.append(
                        (
                            b"set-cookie",
                            f"lang={locale}; Path=/; Max-Age=31536000; SameSite=Lax".encode(),
                        )
                    )
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapped)
        except Exception as err:
            if response_started:
                raise
            await unexpected_error_response(Request(scope), err)(scope, receive, send_wrapped)
        finally:
            i18n._locale.reset(token)
            route = scope.get("route")
            _served(scope, getattr(route, "path", "unmatched"), status, started, request_id)


def _served(scope: Scope, route: str, status: int, started: float, request_id: str) -> None:
    """The access log line and the metrics of one request."""
    elapsed = time.perf_counter() - started
    REQUESTS.labels(scope["method"], route, str(status)).inc()
    access.info(
        "request",
        extra={
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "ms": round(elapsed * 1000, 1),
            "request_id": request_id,
        },
    )
    LATENCY.labels(scope["method"], route).observe(elapsed)


# Answers the common case of a hot route from the request's headers: (status, JSON body), or
# None to leave the request to the framework's route.
HotHandler = Callable[[Mapping[bytes, bytes]], Awaitable[tuple[int, bytes] | None]]


def _locale_of(headers: Mapping[bytes, bytes]) -> str:
    """core.web.pick_locale of a request without a query string, from its raw headers."""
    cookies = headers.get(b"cookie")
    return locale_of(
        cookie_parser(cookies.decode("latin-1")).get("lang") if cookies else None,
        headers.get(b"accept-language", b"").decode("latin-1"),
    )


class HotPaths:
    """The busiest routes' common case, answered ahead of the framework.

    When a broadcast starts, tens of thousands of fans tap the same button (check in) within
    minutes. For such a route the framework's layers (sessions, routing, dependency
    resolution) cost the web process more CPU than the database spends on the request
    (benchmarks/README.md, "checkin"). A hot handler answers the common case from the headers
    alone, with the request id, access log and metrics RequestContext gives every request;
    anything else (no or a bad token, a query string, a case its service leaves to the full
    path, any error) it declines, and the framework's route, which stays the reference and the
    one in the OpenAPI document, answers instead. A handler must leave nothing changed when it
    declines.
    """

    def __init__(self, app: ASGIApp, paths: Mapping[tuple[str, str], HotHandler]) -> None:
        self.app = app
        self.paths = dict(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = (
            self.paths.get((scope["method"], scope["path"]))
            if scope["type"] == "http" and not scope.get("query_string")
            else None
        )
        if handler is None or not await self._answer(handler, scope, send):
            await self.app(scope, receive, send)

    async def _answer(self, handler: HotHandler, scope: Scope, send: Send) -> bool:
        started = time.perf_counter()
        headers = dict(scope["headers"])
        locale = i18n.set_locale(_locale_of(headers))
        try:
            answered = await handler(headers)
        except Exception:  # the route answers, with the full path's error handling
            log.debug("hot path declined after an error", exc_info=True)
            answered = None
        finally:
            i18n._locale.reset(locale)
        if answered is None:
            return False
        status, body = answered
        request_id = headers.get(b"x-request-id", b"").decode("latin-1") or uuid.uuid4().hex[:12]
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        _served(scope, scope["path"], status, started, request_id)
        return True


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    from siyu.core.jobs import CONSUMER_POLLING, huey, load_tasks

    # Import the task modules (and the queue and HTTP clients they bring) now, not on the first
    # request that enqueues a job: the first "on sale now" click after a deploy must not wait.
    load_tasks()
    consumer = None
    settings = get_settings()
    if settings.runs_embedded_consumer and app.state.start_consumer:
        consumer = huey.create_consumer(
            workers=settings.job_workers, worker_type="thread", periodic=True, **CONSUMER_POLLING
        )
        # Huey's start() takes over SIGINT/SIGTERM/SIGHUP for a consumer that owns the process;
        # here uvicorn does, so put its handlers back or the server would ignore Ctrl+C.
        handlers = {
            sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        }
        consumer.start()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        log.info("embedded job consumer started")
    try:
        yield
    finally:
        from siyu.core.db import close_async_pool

        await close_async_pool()
        if consumer is not None:
            consumer.stop(graceful=True)


def create_app(*, start_consumer: bool = True) -> FastAPI:
    from siyu.checkin import api as checkin_api
    from siyu.checkin import pages as checkin_pages
    from siyu.ledger import api as ledger_api
    from siyu.live import api as live_api
    from siyu.live import pages as live_pages
    from siyu.mall import api as mall_api
    from siyu.mall import pages as mall_pages
    from siyu.members import api as members_api
    from siyu.members import pages as member_pages
    from siyu.messaging import api as messaging_api
    from siyu.messaging import pages as messaging_pages
    from siyu.orders import api as orders_api
    from siyu.orders import pages as orders_pages
    from siyu.tenants import api as tenants_api
    from siyu.tenants import pages as admin_pages
    from siyu.trials import api as trials_api
    from siyu.trials import pages as trials_pages

    settings = get_settings()
    if not logging.getLogger().handlers:  # a worker process of `siyu serve --workers N`
        from siyu.core import logs

        logs.configure()
    app = FastAPI(
        title="siyu",
        version="0.1.0",
        summary="Private-domain operations for live-streaming anchors",
        description="Errors are `application/problem+json` with a stable `code`.",
        lifespan=lifespan,
        docs_url="/api/docs",
        openapi_url="/api/v1/openapi.json",
        redoc_url=None,
    )
    app.state.start_consumer = start_consumer
    install_error_handlers(app)
    routers = (
        tenants_api.router,
        members_api.router,
        ledger_api.router,
        admin_pages.router,
        member_pages.router,
        messaging_api.router,
        messaging_pages.router,
        live_api.router,
        live_pages.router,
        checkin_api.router,
        checkin_pages.router,
        orders_api.router,
        orders_pages.router,
        mall_api.router,
        trials_api.router,
        mall_pages.router,
        trials_pages.router,
    )
    for router in routers:
        app.include_router(router)
    skip_unrelated_routers(app)

    app.mount("/static", StaticFiles(directory=ROOT / "static"), name="static")
    if (NODE_MODULES / "htmx.org").exists():
        app.mount(
            "/assets/htmx", StaticFiles(directory=NODE_MODULES / "htmx.org" / "dist"), name="htmx"
        )

    @app.get("/", include_in_schema=False)
    def index() -> RedirectResponse:
        return RedirectResponse("/admin", status_code=307)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, Any]:
        """Liveness and database reachability."""
        # A raw DBAPI round trip: on SQLite a SQLAlchemy transaction would BEGIN IMMEDIATE and
        # queue behind writers, turning a busy minute into a failed health check.
        raw = dbmod.get_engine().raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("SELECT 1")
            cur.close()
        finally:
            raw.close()
        return {
            "status": "ok",
            "database": dbmod.get_engine().dialect.name,
            "queue": "redis" if settings.redis_url else "sqlite",
        }

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest().decode(), media_type=CONTENT_TYPE_LATEST)

    _add_problem_schema(app)
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key,
        session_cookie="siyu_session",
        same_site="lax",
        https_only=settings.env == "production",
        max_age=14 * 24 * 3600,
    )
    app.add_middleware(RequestContext)
    hot: dict[tuple[str, str], HotHandler] = {
        ("POST", "/api/v1/me/checkins"): checkin_api.check_in_hot,
    }
    routes = {
        (m, getattr(r, "path", ""))
        for router in routers
        for r in router.routes
        for m in getattr(r, "methods", None) or ()
    }
    assert hot.keys() <= routes, "a hot path must also be a route"
    app.add_middleware(HotPaths, paths=hot)
    return app


def _add_problem_schema(app: FastAPI) -> None:
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = {
            "type": "object",
            "required": ["type", "title", "status", "code"],
            "properties": {
                "type": {"type": "string", "example": "/errors/points.insufficient"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "code": {"type": "string", "example": "points.insufficient"},
                "params": {"type": "object"},
                "instance": {"type": "string"},
                "errors": {"type": "array", "items": {"type": "object"}},
            },
        }
        # Every 422 is our problem+json request.invalid, not FastAPI's HTTPValidationError.
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                if "422" in operation.get("responses", {}):
                    operation["responses"]["422"] = {
                        "description": "request.invalid",
                        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                    }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

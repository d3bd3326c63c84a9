"""Web plumbing shared by every domain: the transactional route class, auth dependencies,
problem+json errors, locale negotiation and templates."""

from __future__ import annotations

import functools
import logging
import re
import uuid
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
import jinja2
from fastapi import Depends, FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute, _IncludedRouter
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from markupsafe import Markup, escape
from sqlalchemy.orm import Session, lazyload
from starlette._utils import get_route_path, is_async_callable
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Scope

from siyu.core import db as dbmod
from siyu.core import i18n, security
from siyu.core.errors import (
    CsrfFailed,
    Forbidden,
    IdempotencyKeyRequired,
    Internal,
    InvalidRequest,
    InvalidToken,
    NotFound,
    SiyuError,
    Unauthenticated,
)

log = logging.getLogger("siyu.web")
T = TypeVar("T")
PROBLEM = "application/problem+json"


def db_slots(request: Request) -> anyio.Semaphore:
    """Requests allowed to hold a database session at once: the pool's capacity.

    A request keeps its connection across several thread-pool hops (dependencies, endpoint,
    commit). Were more requests in flight than the pool has connections, threads blocked in
    the pool's checkout would hold the thread-pool slots the connection holders need to
    finish, and every request would stall until the pool timeout. Waiting here costs no
    thread."""
    slots: anyio.Semaphore | None = getattr(request.app.state, "db_slots", None)
    if slots is None:
        slots = request.app.state.db_slots = anyio.Semaphore(dbmod.pool_capacity())
    return slots


_request_db: ContextVar[Session | None] = ContextVar("siyu_request_db", default=None)
_SETTLED = "siyu.settled"


def _committing(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """A sync endpoint that commits its request's transaction in its own worker thread as soon
    as it returns a non-error result, and rolls it back there when it raises: no extra thread
    hop, and a hot row (the last units of a flash sale) is unlocked the moment the work is done
    instead of after a trip through the event loop. ``functools.wraps``: FastAPI reads the
    endpoint's signature through it."""

    @functools.wraps(endpoint)
    def run(*args: Any, **kwargs: Any) -> Any:
        db = _request_db.get()
        try:
            result = endpoint(*args, **kwargs)
        except BaseException:
            if db is not None:
                db.rollback()
                db.info[_SETTLED] = True
            raise
        if db is not None and not (isinstance(result, Response) and result.status_code >= 400):
            db.commit()
            db.info[_SETTLED] = True
        return result

    return run


async def in_one_thread(work: Callable[..., T], *args: Any) -> T:
    """For an ``async`` endpoint of a ``TxRoute``: run ``work(*args)`` and commit (or, if it
    raises, roll back) in one worker thread — one thread hop for the whole request where a
    sync endpoint with a sync dependency takes two or three."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(_committing(work), *args)


def _end(db: Session, commit: bool) -> None:
    try:
        if commit:
            db.commit()
        else:
            db.rollback()
    finally:
        db.close()


class TxRoute(APIRoute):
    """One transaction per request: committed when the endpoint returns a non-error
    response, rolled back otherwise. Routes get the session through ``DbSession``."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not is_async_callable(endpoint):
            endpoint = _committing(endpoint)
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            async with db_slots(request):
                return await in_transaction(request)

        async def in_transaction(request: Request) -> Response:
            from starlette.concurrency import run_in_threadpool

            db = dbmod.session_factory()()
            request.state.db = db
            token = _request_db.set(db)
            try:
                response = await handler(request)
            except BaseException:
                if db.info.get(_SETTLED) and not db.in_transaction():
                    db.close()  # rolled back by the endpoint's thread
                else:
                    await run_in_threadpool(_end, db, False)
                raise
            finally:
                _request_db.reset(token)
            ok = response.status_code < 400
            if ok and db.info.get(_SETTLED) and not db.in_transaction():
                db.close()  # committed by the endpoint's thread: nothing left that does I/O
            else:
                # Commit (or roll back) and close in one thread hop: under load every hop is a
                # wait for a thread and the event loop.
                await run_in_threadpool(_end, db, ok)
            return response

        return run


# --- routing ----------------------------------------------------------------------------------


class _SkippingIncludedRouter(_IncludedRouter):
    """An included router that a request skips unless its path starts with the literal part
    of one of the router's routes.

    FastAPI ≥ 0.137 keeps each ``include_router`` as a node of a tree, and every request walks
    the nodes in order and each node route by route (twice for the one that matches: to match,
    then to handle). With our ~440 routes that was 0.9 ms of CPU per request, most of a 404's
    and a fifth of an authenticated read's. Upstream proposes the same skip keyed on the
    include prefix (fastapi/fastapi#16159); our routers carry full paths instead of prefixes,
    so the literal heads of their own routes are used. A path that starts with none of them can
    match no route of the router, fully or partly, so nothing else changes."""

    _heads: tuple[str, ...]

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and not get_route_path(scope).startswith(self._heads):
            return Match.NONE, {}
        return super().matches(scope)


def _route_heads(node: _IncludedRouter) -> tuple[str, ...] | None:
    """The literal part (up to the first path parameter) of every route under ``node``, or
    None when some route's path is unknown (then the node is never skipped)."""
    heads: set[str] = set()
    for candidate in node.effective_candidates():
        if isinstance(candidate, _IncludedRouter):
            inner = _route_heads(candidate)
            if inner is None:
                return None
            heads.update(inner)
            continue
        path = candidate.path or getattr(candidate.starlette_route, "path", "")
        if not path:
            return None
        heads.add(path.split("{", 1)[0])
    return tuple(sorted(heads))


def skip_unrelated_routers(app: FastAPI) -> None:
    """Call once every router is included (see ``_SkippingIncludedRouter``)."""
    for route in app.router.routes:
        if type(route) is _IncludedRouter and (heads := _route_heads(route)) is not None:
            route.__class__ = _SkippingIncludedRouter
            route._heads = heads  # type: ignore[attr-defined]


async def _db(request: Request) -> Session:
    # async: a plain function of the request, so FastAPI runs it without a thread hop
    return request.state.db  # type: ignore[no-any-return]


DbSession = Annotated[Session, Depends(_db)]


# --- errors -----------------------------------------------------------------------------------


def problem_response(
    err: SiyuError,
    request: Request | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = err.problem(instance=str(request.url.path) if request else None)
    body.update(extra or {})
    headers = dict(headers or {})
    if err.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if err.status == 429 and "retry_after" in err.params:
        headers["Retry-After"] = str(err.params["retry_after"])
    return JSONResponse(body, status_code=err.status, media_type=PROBLEM, headers=headers)


def wants_html(request: Request) -> bool:
    path = request.url.path
    return path == "/m" or path.startswith(("/admin", "/m/"))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SiyuError)
    async def _siyu(request: Request, err: SiyuError) -> Response:
        if wants_html(request):
            return render_error(request, err)
        return problem_response(err, request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> Response:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in err.errors()
        ]
        siyu_err = InvalidRequest()
        if wants_html(request):
            return render_error(request, siyu_err)
        return problem_response(siyu_err, request, {"errors": errors})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> Response:
        siyu_err: SiyuError
        if err.status_code == 404:
            siyu_err = NotFound(resource=request.url.path)
        elif err.status_code == 405:
            siyu_err = _MethodNotAllowed()
        else:
            siyu_err = InvalidRequest()
        if wants_html(request):
            return render_error(request, siyu_err)
        # 405 keeps Starlette's Allow header (RFC 9110 §15.5.6).
        return problem_response(siyu_err, request, headers=dict(err.headers or {}))


def unexpected_error_response(request: Request, err: BaseException) -> Response:
    """The 500 for an unhandled exception: logged with the request id, no traceback shown.

    Called from the request-context middleware (not an ``Exception`` handler, which Starlette
    runs outside every middleware, where the request id and language are gone)."""
    request_id = getattr(request.state, "request_id", uuid.uuid4().hex[:12])
    log.error("unhandled error", exc_info=err, extra={"request_id": request_id})
    siyu_err = Internal(request_id=request_id)
    if wants_html(request):
        return render_error(request, siyu_err)
    return problem_response(siyu_err, request)


class _MethodNotAllowed(SiyuError):
    code = "request.method_not_allowed"
    status = 405
    title = i18n._l("Method not allowed")


# --- locale -----------------------------------------------------------------------------------


def pick_locale(request: Request) -> str:
    """The request's language: ``?lang=``, else ``locale_of`` its headers."""
    return i18n.normalize(request.query_params.get("lang")) or locale_of(
        request.cookies.get("lang"), request.headers.get("accept-language")
    )


def locale_of(cookie_lang: str | None, accept_language: str | None) -> str:
    """The language of a request without ``?lang=``: its ``lang`` cookie, else
    Accept-Language."""
    return i18n.normalize(cookie_lang) or i18n.negotiate(accept_language)


# --- templates --------------------------------------------------------------------------------

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
    autoescape=True,
    extensions=["jinja2.ext.i18n"],
    undefined=jinja2.StrictUndefined,
)
_env.install_gettext_callables(  # type: ignore[attr-defined]
    lambda s: i18n.gettext(s), lambda s, p, n: i18n.ngettext(s, p, n), newstyle=True
)


def _fmt_points(n: int) -> str:
    return f"{n:,}"


_env.filters["points"] = _fmt_points

_LINK = re.compile(r"(https?://[^\s<>\"']+|(?<![\w/])/r/[A-Za-z0-9_-]+)")


def _linkify(text: str) -> Markup:
    """Plain text (an inbox message) with its http(s) links and tracked /r/ links clickable."""
    return Markup(
        _LINK.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', str(escape(text)))
    )


_env.filters["linkify"] = _linkify

REASON_LABELS = {
    "purchase": i18n._l("Live-room order"),
    "redeem": i18n._l("Points mall"),
    "manual_adjust": i18n._l("Adjusted by staff"),
    "expiry": i18n._l("Points expired"),
    "reversal": i18n._l("Reversed"),
    "checkin": i18n._l("Daily check-in"),
}


def reason_label(reason: str, kind: str = "") -> str:
    label = REASON_LABELS.get(reason) or REASON_LABELS.get(kind)
    return str(label) if label else reason


_env.globals["reason_label"] = reason_label


def render(request: Request, template: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    ctx.setdefault("error", None)
    ctx.setdefault("notice", request.query_params.get("notice"))
    html = _env.get_template(template).render(
        request=request, locale=i18n.get_locale(), csrf_token=csrf_token(request), **ctx
    )
    return HTMLResponse(html, status_code=status_code)


def render_error(request: Request, err: SiyuError) -> Response:
    if isinstance(err, Unauthenticated):
        if request.url.path.startswith("/admin"):
            return RedirectResponse("/admin/login", status_code=303)
        slug = request.path_params.get("slug")
        if slug:
            return RedirectResponse(f"/m/{slug}/login", status_code=303)
    ctx: dict[str, Any] = {"err": err, "slug": request.path_params.get("slug", "")}
    if request.url.path.startswith("/admin"):
        ctx.update(_signed_in_operator(request))
        return render(request, "admin/error.html", status_code=err.status, **ctx)
    return render(request, "m/error.html", status_code=err.status, **ctx)


def _signed_in_operator(request: Request) -> dict[str, Any]:
    """The console header's operator and tenant on an error page, when someone is signed in."""
    from siyu.tenants.models import Operator, Tenant

    db: Session | None = getattr(request.state, "db", None)
    session = request.scope.get("session") or {}
    if db is None or not session.get("operator_id"):
        return {}
    try:
        op = db.get(Operator, session["operator_id"])
        tenant = db.get(Tenant, op.tenant_id) if op else None
    except Exception:  # noqa: BLE001 - an error page must render even if the database is down
        return {}
    return {"op": op, "tenant": tenant} if op and tenant else {}


# --- CSRF (pages) -----------------------------------------------------------------------------


def csrf_token(request: Request) -> str:
    session = request.scope.get("session")
    if session is None:
        return ""
    if "csrf" not in session:
        session["csrf"] = security.new_csrf_token()
    return str(session["csrf"])


async def check_csrf(request: Request) -> None:
    """Every state-changing form carries the session's token (synchroniser-token pattern)."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    form = await request.form()
    sent = form.get("csrf_token") or request.headers.get("x-csrf-token")
    if not security.same_token(str(sent) if sent else None, request.session.get("csrf")):
        raise CsrfFailed()


CsrfChecked = Depends(check_csrf)


# --- operators --------------------------------------------------------------------------------


# Declared as security schemes so the OpenAPI document says how to authenticate. auto_error is
# off: a missing token is our problem+json auth.required, not Starlette's 403.
_operator_bearer = HTTPBearer(
    scheme_name="OperatorToken", auto_error=False, description="POST /api/v1/auth/tokens"
)
_member_bearer = HTTPBearer(
    scheme_name="MemberToken", auto_error=False, description="POST /api/v1/m/{slug}/login"
)
Credentials = HTTPAuthorizationCredentials | None


def api_operator(db: DbSession, creds: Credentials = Depends(_operator_bearer)) -> Any:
    from siyu.tenants import service as tenants

    secret = creds.credentials if creds else None
    if not secret:
        raise Unauthenticated()
    if secret.startswith("siyu_"):
        return tenants.operator_for_token(db, secret=secret)
    raise InvalidToken()


_platform_bearer = HTTPBearer(
    scheme_name="PlatformToken",
    auto_error=False,
    description="SIYU_PLATFORM_TOKEN of the installation",
)


async def platform_admin(creds: Credentials = Depends(_platform_bearer)) -> None:
    """The installation's operator (manages tenants): the SIYU_PLATFORM_TOKEN bearer."""
    from siyu.core.settings import get_settings

    if creds is None or not creds.credentials:
        raise Unauthenticated()
    if not security.same_token(creds.credentials, get_settings().platform_token):
        raise InvalidToken()


def page_operator(request: Request, db: DbSession) -> Any:
    from siyu.tenants.models import Operator

    op_id = request.session.get("operator_id")
    op = db.get(Operator, op_id) if op_id else None
    if op is None or not op.is_active or op.tenant_id != request.session.get("tenant_id"):
        request.session.pop("operator_id", None)
        raise Unauthenticated()
    return op


def requires(permission: str, *, page: bool = False) -> Any:
    """A dependency that yields the signed-in operator if their role has ``permission``."""
    from siyu.tenants import service as tenants

    source = page_operator if page else api_operator

    # A default, not Annotated: with postponed annotations FastAPI would look ``source`` up in
    # the module globals and miss this closure's variable.
    async def check(op: Any = Depends(source)) -> Any:  # no I/O: no thread hop
        if not tenants.can(op.role, permission):
            raise Forbidden(action=permission)
        return op

    return Depends(check)


# --- members ----------------------------------------------------------------------------------


def api_member(db: DbSession, claim: MemberClaim) -> Any:
    return member_of(db, claim)


async def _member_claim(creds: Credentials = Depends(_member_bearer)) -> tuple[int, int]:
    """(tenant id, member id) of a signed member token: checked without the database, so no
    thread hop, and a request without a valid token is refused before its body is looked at."""
    token = creds.credentials if creds else None
    if not token:
        raise Unauthenticated()
    found = security.read_member_token(token)
    if found is None:
        raise InvalidToken()
    return found


# For an endpoint that loads the member with ``member_of`` in its own worker thread
# (``in_one_thread``) instead of in a thread hop of its own (``api_member``).
MemberClaim = Annotated[tuple[int, int], Depends(_member_claim)]


def member_of(db: Session, claim: tuple[int, int]) -> Any:
    from siyu.members.models import Member

    tenant_id, member_id = claim
    # lazyload: every member request authenticates here; tags and accounts (selectin by
    # default, two more queries) load only if the route reads them.
    member = db.get(Member, member_id, options=[lazyload("*")])
    if member is None or member.tenant_id != tenant_id:
        raise InvalidToken()
    return member


def _member_from_token(db: Session, token: str) -> Any:
    found = security.read_member_token(token)
    if found is None:
        raise InvalidToken()
    return member_of(db, found)


def page_member(request: Request, db: DbSession) -> Any:
    """The member signed in to this tenant's H5 (``/m/{slug}/…``)."""
    from siyu.tenants import service as tenants

    slug = request.path_params.get("slug", "")
    tenant = tenants.get_tenant(db, slug=slug)
    token = request.session.get(f"member:{tenant.id}")
    if not token:
        raise Unauthenticated()
    try:
        member = _member_from_token(db, token)
    except InvalidToken:
        request.session.pop(f"member:{tenant.id}", None)
        raise Unauthenticated() from None
    return member


async def idempotency_key(
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> str:
    if not idempotency_key or not idempotency_key.strip():
        raise IdempotencyKeyRequired()
    return idempotency_key.strip()


IdempotencyKey = Annotated[str, Depends(idempotency_key)]


def problems(*errors: type[SiyuError], auth: bool = True) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting the problem+json errors a route can answer
    (``auth``: the route needs a token, so it can answer 401 too)."""
    out: dict[int | str, dict[str, Any]] = {}
    documented: tuple[type[SiyuError], ...] = (*errors, InvalidRequest)
    if auth:
        documented += (Unauthenticated, InvalidToken)
    for err in documented:
        entry = out.setdefault(
            err.status,
            {
                "description": "",
                "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
            },
        )
        entry["description"] = ", ".join(filter(None, [entry["description"], err.code]))
    return out

"""Tenants, operators and API tokens."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from siyu.core import clock, ratelimit, security
from siyu.core.errors import BadCredentials, InvalidToken, NotFound, TooManySignIns
from siyu.core.i18n import gettext as _
from siyu.tenants.errors import (
    InvalidOperator,
    InvalidTenant,
    OperatorExists,
    OperatorNotFound,
    TenantExists,
    TenantNotFound,
)
from siyu.tenants.models import ROLES, ApiToken, Operator, Tenant

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")
MIN_PASSWORD = 8

# Roles nest: analysts read; service staff also edit members; operators also move points,
# send messages and run the live room; owners also manage operators and tenant settings.
ROLE_RANK = {"analyst": 0, "service": 1, "operator": 2, "owner": 3}
# Every permission and the least role that holds it. A new domain adds its lines here.
LEAST_ROLE: dict[str, str] = {
    "tenant.read": "analyst",
    "members.read": "analyst",
    "points.read": "analyst",
    "messages.read": "analyst",
    "live.read": "analyst",
    "members.write": "service",
    "points.adjust": "operator",
    "messages.send": "operator",
    "messages.manage": "operator",
    "live.manage": "operator",
    "orders.read": "analyst",
    "orders.review": "service",
    "orders.import": "operator",
    "mall.read": "analyst",
    "mall.fulfill": "service",
    "mall.manage": "operator",
    "operators.manage": "owner",
    "tenant.manage": "owner",
}
PERMISSIONS: dict[str, frozenset[str]] = {
    role: frozenset(p for p, least in LEAST_ROLE.items() if rank >= ROLE_RANK[least])
    for role, rank in ROLE_RANK.items()
}

DEFAULT_SETTINGS: dict[str, Any] = {
    "points_expiry": {"kind": "year_end", "years": 1},
    "brand_color": "#e8467c",
}


def can(role: str, permission: str) -> bool:
    return permission in PERMISSIONS.get(role, frozenset())


def create_tenant(
    db: Session,
    *,
    slug: str,
    name: str,
    timezone: str = "Asia/Shanghai",
    settings: dict[str, Any] | None = None,
) -> Tenant:
    """Create a tenant with its ledger system accounts and default tiers."""
    from siyu.ledger import service as ledger
    from siyu.members import service as members

    if not _SLUG.match(slug or ""):
        raise InvalidTenant(field="slug", problem=_("2–40 lowercase letters, digits or '-'"))
    if not (name or "").strip():
        raise InvalidTenant(field="name", problem=_("required"))
    if not clock.valid_timezone(timezone):
        raise InvalidTenant(
            field="timezone", problem=_("unknown timezone {tz}").format(tz=timezone)
        )
    tenant = Tenant(
        slug=slug,
        name=name.strip(),
        timezone=timezone,
        settings={**DEFAULT_SETTINGS, **(settings or {})},
        created_at=clock.now(),
    )
    try:
        with db.begin_nested():
            db.add(tenant)
    except IntegrityError:
        raise TenantExists(slug=slug) from None
    ledger.open_accounts(db, tenant_id=tenant.id)
    members.set_tiers(db, tenant_id=tenant.id, tiers=members.DEFAULT_TIERS)
    from siyu.messaging import schedules

    schedules.install_defaults(db, tenant_id=tenant.id)
    return tenant


def find_tenant(db: Session, *, slug: str) -> Tenant | None:
    return db.scalar(select(Tenant).where(Tenant.slug == slug))


def get_tenant(db: Session, *, slug: str) -> Tenant:
    tenant = find_tenant(db, slug=slug)
    if tenant is None:
        raise TenantNotFound(slug=slug)
    return tenant


def list_tenants(db: Session) -> list[Tenant]:
    return list(db.scalars(select(Tenant).order_by(Tenant.id)))


def update_settings(db: Session, *, tenant_id: int, changes: dict[str, Any]) -> Tenant:
    tenant = db.get(Tenant, tenant_id)
    assert tenant is not None
    policy = changes.get("points_expiry")
    if policy is not None:
        _check_expiry_policy(policy)
    tenant.settings = {**tenant.settings, **changes}
    db.flush()
    return tenant


def _check_expiry_policy(policy: Any) -> None:
    ok = isinstance(policy, dict) and (
        policy.get("kind") == "never"
        or (
            policy.get("kind") == "days"
            and isinstance(policy.get("days"), int)
            and 1 <= policy["days"] <= 36500
        )
        or (
            policy.get("kind") == "year_end"
            and isinstance(policy.get("years"), int)
            and 0 <= policy["years"] <= 100
        )
    )
    if not ok:
        raise InvalidTenant(
            field="points_expiry", problem=_("never, N days, or the end of the year after N years")
        )


def create_operator(
    db: Session, *, tenant_id: int, username: str, password: str, role: str, display_name: str = ""
) -> Operator:
    if not _USERNAME.match(username or ""):
        raise InvalidOperator(field="username", problem=_("2–64 letters, digits or _ . @ -"))
    if len(password or "") < MIN_PASSWORD:
        raise InvalidOperator(
            field="password", problem=_("at least {n} characters").format(n=MIN_PASSWORD)
        )
    if role not in ROLES:
        raise InvalidOperator(
            field="role", problem=_("one of {roles}").format(roles=", ".join(ROLES))
        )
    op = Operator(
        tenant_id=tenant_id,
        username=username,
        role=role,
        display_name=display_name or username,
        password_hash=security.hash_password(password),
        created_at=clock.now(),
    )
    try:
        with db.begin_nested():
            db.add(op)
    except IntegrityError:
        raise OperatorExists(username=username) from None
    return op


def list_operators(db: Session, *, tenant_id: int) -> list[Operator]:
    return list(
        db.scalars(select(Operator).where(Operator.tenant_id == tenant_id).order_by(Operator.id))
    )


def get_operator(db: Session, *, tenant_id: int, operator_id: int) -> Operator:
    op = db.scalar(
        select(Operator).where(Operator.id == operator_id, Operator.tenant_id == tenant_id)
    )
    if op is None:
        raise OperatorNotFound(operator_id=operator_id)
    return op


# Failed sign-ins allowed per window, per account and per client address (guessing passwords
# is the attack; a busy office behind one address still gets plenty).
SIGNIN_WINDOW = 15 * 60
SIGNIN_FAILURES_PER_ACCOUNT = 10
SIGNIN_FAILURES_PER_IP = 50


def _check_signin_rate(keys: list[tuple[str, int]]) -> None:
    for key, allowed in keys:
        failures, left = ratelimit.count(key, seconds=SIGNIN_WINDOW)
        if failures >= allowed:
            raise TooManySignIns(minutes=-(-left // 60), retry_after=left)


def authenticate(
    db: Session, *, tenant_slug: str, username: str, password: str, ip: str = ""
) -> Operator:
    """The active operator with these credentials. Raises BadCredentials (same for any miss),
    or TooManySignIns once the account or the client address has failed too often lately
    (checked before the password, so a right guess after the limit gets in no further)."""
    keys = [(f"signin:{tenant_slug}:{username}", SIGNIN_FAILURES_PER_ACCOUNT)]
    if ip:
        keys.append((f"signin-ip:{ip}", SIGNIN_FAILURES_PER_IP))
    _check_signin_rate(keys)
    try:
        return _authenticate(db, tenant_slug=tenant_slug, username=username, password=password)
    except BadCredentials:
        for key, _allowed in keys:
            ratelimit.hit(key, seconds=SIGNIN_WINDOW)
        raise


def _authenticate(db: Session, *, tenant_slug: str, username: str, password: str) -> Operator:
    op = db.scalar(
        select(Operator)
        .join(Tenant, Tenant.id == Operator.tenant_id)
        .where(Tenant.slug == tenant_slug, Operator.username == username)
    )
    ok = security.verify_password(op.password_hash if op else None, password)
    if op is None or not ok or not op.is_active:
        raise BadCredentials()
    op.last_login_at = clock.now()
    db.flush()
    return op


@dataclass
class IssuedToken:
    token: ApiToken
    secret: str


def issue_token(
    db: Session,
    *,
    operator: Operator,
    name: str = "",
    ttl: dt.timedelta | None = dt.timedelta(days=30),
) -> IssuedToken:
    secret, digest, prefix = security.new_api_token()
    now = clock.now()
    token = ApiToken(
        tenant_id=operator.tenant_id,
        operator_id=operator.id,
        name=name[:100],
        token_hash=digest,
        prefix=prefix,
        created_at=now,
        expires_at=now + ttl if ttl else None,
    )
    db.add(token)
    db.flush()
    return IssuedToken(token=token, secret=secret)


def operator_for_token(db: Session, *, secret: str) -> Operator:
    """The operator a bearer token stands for. Raises InvalidToken."""
    token = db.scalar(select(ApiToken).where(ApiToken.token_hash == security.token_digest(secret)))
    now = clock.now()
    if (
        token is None
        or token.revoked_at is not None
        or (token.expires_at is not None and token.expires_at <= now)
    ):
        raise InvalidToken()
    op = db.get(Operator, token.operator_id)
    if op is None or not op.is_active:
        raise InvalidToken()
    return op


def list_tokens(db: Session, *, operator: Operator) -> list[ApiToken]:
    """The operator's own tokens, newest first (secrets are never stored, only prefixes)."""
    return list(
        db.scalars(
            select(ApiToken)
            .where(ApiToken.tenant_id == operator.tenant_id, ApiToken.operator_id == operator.id)
            .order_by(ApiToken.id.desc())
        )
    )


def revoke_token(db: Session, *, operator: Operator, token_id: int) -> ApiToken:
    """Revoke one of the operator's tokens (an owner: any token of the tenant). Idempotent."""
    q = select(ApiToken).where(ApiToken.id == token_id, ApiToken.tenant_id == operator.tenant_id)
    if not can(operator.role, "operators.manage"):
        q = q.where(ApiToken.operator_id == operator.id)
    token = db.scalar(q)
    if token is None:
        raise NotFound(resource=f"token {token_id}")
    token.revoked_at = token.revoked_at or clock.now()
    db.flush()
    return token

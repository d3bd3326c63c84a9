from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter

from siyu.core.errors import BadCredentials, Forbidden, NotFound
from siyu.core.web import DbSession, TxRoute, problems, requires
from siyu.tenants import service
from siyu.tenants.errors import InvalidOperator, InvalidTenant, OperatorExists
from siyu.tenants.models import Operator, Tenant
from siyu.tenants.schemas import (
    ApiTokenRead,
    OperatorCreate,
    OperatorRead,
    TenantRead,
    TenantSettingsUpdate,
    TokenCreate,
    TokenRead,
)

router = APIRouter(prefix="/api/v1", route_class=TxRoute, tags=["tenants"])

SECRET_SETTINGS = ("wechat",)


def tenant_read(tenant: Tenant) -> TenantRead:
    settings: dict[str, Any] = {
        k: v for k, v in tenant.settings.items() if k not in SECRET_SETTINGS
    }
    wechat = tenant.settings.get("wechat") or {}
    settings["wechat"] = {
        "appid": wechat.get("appid", ""),
        "configured": bool(wechat.get("appid") and wechat.get("secret")),
    }
    return TenantRead(
        id=tenant.id,
        slug=tenant.slug,
        name=tenant.name,
        timezone=tenant.timezone,
        settings=settings,
    )


@router.post("/auth/tokens", status_code=201, responses=problems(BadCredentials, auth=False))
def create_token(body: TokenCreate, db: DbSession) -> TokenRead:
    """Exchange an operator's credentials for a bearer token (valid 30 days)."""
    op = service.authenticate(
        db, tenant_slug=body.tenant, username=body.username, password=body.password
    )
    issued = service.issue_token(db, operator=op, name=body.name)
    return TokenRead(
        token=issued.secret,
        expires_at=issued.token.expires_at,
        operator=OperatorRead.model_validate(op),
    )


@router.get("/auth/tokens", responses=problems(Forbidden))
def list_tokens(
    op: Annotated[Operator, requires("tenant.read")], db: DbSession
) -> list[ApiTokenRead]:
    """Your API tokens (secrets are shown once, at creation; here only their prefix)."""
    return [ApiTokenRead.model_validate(t) for t in service.list_tokens(db, operator=op)]


@router.delete("/auth/tokens/{token_id}", status_code=204, responses=problems(Forbidden, NotFound))
def revoke_token(
    token_id: int, op: Annotated[Operator, requires("tenant.read")], db: DbSession
) -> None:
    """Revoke a token at once (owners may revoke any token of the tenant)."""
    service.revoke_token(db, operator=op, token_id=token_id)


@router.get("/tenant", responses=problems(Forbidden))
def read_tenant(db: DbSession, op: Annotated[Operator, requires("tenant.read")]) -> TenantRead:
    tenant = db.get(Tenant, op.tenant_id)
    assert tenant is not None
    return tenant_read(tenant)


@router.patch("/tenant/settings", responses=problems(Forbidden, InvalidTenant))
def update_tenant_settings(
    body: TenantSettingsUpdate, db: DbSession, op: Annotated[Operator, requires("tenant.manage")]
) -> TenantRead:
    changes = body.model_dump(exclude_none=True)
    if "points_expiry" in changes:
        changes["points_expiry"] = {
            k: v for k, v in changes["points_expiry"].items() if v is not None
        }
    return tenant_read(service.update_settings(db, tenant_id=op.tenant_id, changes=changes))


@router.get("/operators", responses=problems(Forbidden))
def list_operators(
    db: DbSession, op: Annotated[Operator, requires("operators.manage")]
) -> list[OperatorRead]:
    return [
        OperatorRead.model_validate(o) for o in service.list_operators(db, tenant_id=op.tenant_id)
    ]


@router.post(
    "/operators", status_code=201, responses=problems(Forbidden, OperatorExists, InvalidOperator)
)
def create_operator(
    body: OperatorCreate, db: DbSession, op: Annotated[Operator, requires("operators.manage")]
) -> OperatorRead:
    created = service.create_operator(
        db,
        tenant_id=op.tenant_id,
        username=body.username,
        password=body.password,
        role=body.role,
        display_name=body.display_name,
    )
    return OperatorRead.model_validate(created)

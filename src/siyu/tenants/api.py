from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from siyu.core.errors import BadCredentials, Forbidden, NotFound, TooManySignIns
from siyu.core.web import DbSession, TxRoute, platform_admin, problems, requires
from siyu.tenants import service
from siyu.tenants.errors import InvalidOperator, InvalidTenant, OperatorExists, TenantExists
from siyu.tenants.models import Operator, Tenant
from siyu.tenants.schemas import (
    ApiTokenRead,
    OperatorCreate,
    OperatorRead,
    TenantCreate,
    TenantCreated,
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


@router.post(
    "/auth/tokens", status_code=201, responses=problems(BadCredentials, TooManySignIns, auth=False)
)
def create_token(body: TokenCreate, db: DbSession, request: Request) -> TokenRead:
    """Exchange an operator's credentials for a bearer token (valid 30 days). Ten failed
    attempts for one account within 15 minutes pause it (429 with Retry-After)."""
    op = service.authenticate(
        db,
        tenant_slug=body.tenant,
        username=body.username,
        password=body.password,
        ip=request.client.host if request.client else "",
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


@router.get(
    "/platform/tenants",
    tags=["platform"],
    dependencies=[Depends(platform_admin)],
    responses=problems(),
)
def list_tenants(db: DbSession) -> list[TenantRead]:
    """Every tenant of the installation (platform admin only)."""
    return [tenant_read(t) for t in service.list_tenants(db)]


@router.post(
    "/platform/tenants",
    status_code=201,
    tags=["platform"],
    dependencies=[Depends(platform_admin)],
    responses=problems(TenantExists, InvalidTenant, InvalidOperator),
)
def create_tenant(body: TenantCreate, db: DbSession) -> TenantCreated:
    """Create a tenant (an anchor or institution) with its first owner."""
    tenant = service.create_tenant(db, slug=body.slug, name=body.name, timezone=body.timezone)
    owner = service.create_operator(
        db,
        tenant_id=tenant.id,
        username=body.owner.username,
        password=body.owner.password,
        role="owner",
    )
    return TenantCreated(tenant=tenant_read(tenant), owner=OperatorRead.model_validate(owner))


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

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from sqlalchemy.orm import Session

from siyu.core.db import after_commit
from siyu.core.errors import Forbidden
from siyu.core.web import DbSession, TxRoute, api_member, problems, requires
from siyu.members.errors import MemberNotFound
from siyu.members.models import Member
from siyu.orders import errors as e
from siyu.orders import models as m
from siyu.orders import service
from siyu.orders.schemas import (
    ClaimIn,
    ClaimRead,
    ImportRead,
    MyClaims,
    OrderRead,
    RebindIn,
    RebindRead,
    RejectIn,
    RejectRead,
    Rule,
    SessionStatsRead,
)
from siyu.tenants.models import Operator, Tenant

router = APIRouter(prefix="/api/v1", route_class=TxRoute, tags=["orders"])
CurrentMember = Annotated[Member, Depends(api_member)]
MAX_UPLOAD = 1 << 30  # 1 GiB: a million-row export is ~300 MB


def claim_read(c: m.Claim) -> ClaimRead:
    return ClaimRead(
        id=c.id,
        member_id=c.member_id,
        platform=c.platform,
        order_no=c.order_no,
        account=c.account,
        status=c.status,
        reason=c.reason.partition(":")[0],
        reason_text=service.reason_text(c.reason) if c.reason else "",
        points=c.points,
        clawed_points=c.clawed_points,
        flagged=c.flagged,
        created_at=c.created_at,
        decided_at=c.decided_at,
    )


def store_upload(
    db: Session, *, op: Operator, upload: UploadFile, fmt: str | None, session_id: int | None
) -> m.Import:
    """Save an uploaded export and queue its import job (sent after commit)."""
    from siyu.orders.tasks import import_file

    folder = service.uploads_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{op.tenant_id}-{uuid.uuid4().hex}"
    size = 0
    with path.open("wb") as out:
        while chunk := upload.file.read(1 << 20):
            size += len(chunk)
            if size > MAX_UPLOAD:
                out.close()
                path.unlink(missing_ok=True)
                raise e.UnreadableFile(problem="file larger than 1 GiB")
            out.write(chunk)
    try:
        imp = service.create_import(
            db,
            tenant_id=op.tenant_id,
            filename=upload.filename or "upload",
            fmt=fmt or None,
            session_id=session_id,
            size_bytes=size,
            operator_id=op.id,
            upload_file=path.name,  # so that a sweep can queue an interrupted import again
        )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    after_commit(db, import_file, imp.id, str(path))
    return imp


@router.post(
    "/orders/imports",
    status_code=202,
    responses=problems(Forbidden, e.UnknownFormat, e.UnreadableFile, e.InvalidClaim),
)
def upload_import(
    db: DbSession,
    op: Annotated[Operator, requires("orders.import")],
    file: Annotated[UploadFile, File(description="Taobao, Douyin or generic CSV/XLSX")],
    format: Annotated[str | None, Form(description="taobao | douyin | generic")] = None,  # noqa: A002
    session_id: Annotated[int | None, Form()] = None,
) -> ImportRead:
    """Queue an import; poll ``GET /orders/imports/{id}`` for progress and counts."""
    imp = store_upload(db, op=op, upload=file, fmt=format, session_id=session_id)
    return ImportRead.model_validate(imp)


@router.get("/orders/imports", responses=problems(Forbidden))
def list_imports(
    db: DbSession, op: Annotated[Operator, requires("orders.read")]
) -> list[ImportRead]:
    return [ImportRead.model_validate(i) for i in service.list_imports(db, tenant_id=op.tenant_id)]


@router.get("/orders/imports/{import_id}", responses=problems(Forbidden, e.ImportNotFound))
def read_import(
    import_id: int, db: DbSession, op: Annotated[Operator, requires("orders.read")]
) -> ImportRead:
    return ImportRead.model_validate(
        service.get_import(db, tenant_id=op.tenant_id, import_id=import_id)
    )


@router.get("/orders/imports/{import_id}/rejects", responses=problems(Forbidden, e.ImportNotFound))
def import_rejects(
    import_id: int, db: DbSession, op: Annotated[Operator, requires("orders.read")]
) -> list[RejectRead]:
    """Every rejected row of an import: line, column, reason."""
    service.get_import(db, tenant_id=op.tenant_id, import_id=import_id)
    return [
        RejectRead.model_validate(r)
        for r in service.list_rejects(db, tenant_id=op.tenant_id, import_id=import_id)
    ]


@router.get("/orders/{platform}/{order_no}", responses=problems(Forbidden, e.OrderNotFound))
def read_order(
    platform: str, order_no: str, db: DbSession, op: Annotated[Operator, requires("orders.read")]
) -> OrderRead:
    return OrderRead.model_validate(
        service.get_order(db, tenant_id=op.tenant_id, platform=platform, order_no=order_no)
    )


@router.get("/claims", responses=problems(Forbidden))
def list_claims(
    db: DbSession,
    op: Annotated[Operator, requires("orders.read")],
    status: Annotated[str | None, Query(max_length=16)] = None,
    member_id: int | None = None,
    before_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[ClaimRead]:
    """Claims, newest first; ``status=review`` is the review queue."""
    return [
        claim_read(c)
        for c in service.list_claims(
            db,
            tenant_id=op.tenant_id,
            status=status,
            member_id=member_id,
            before_id=before_id,
            limit=limit,
        )
    ]


@router.post(
    "/claims/{claim_id}/approve",
    responses=problems(Forbidden, e.ClaimNotFound, e.NotReviewable),
)
def approve_claim(
    claim_id: int, db: DbSession, op: Annotated[Operator, requires("orders.review")]
) -> ClaimRead:
    return claim_read(
        service.approve_claim(db, tenant_id=op.tenant_id, claim_id=claim_id, operator_id=op.id)
    )


@router.post(
    "/claims/{claim_id}/reject",
    responses=problems(Forbidden, e.ClaimNotFound, e.NotReviewable, e.InvalidClaim),
)
def reject_claim(
    claim_id: int,
    body: RejectIn,
    db: DbSession,
    op: Annotated[Operator, requires("orders.review")],
) -> ClaimRead:
    return claim_read(
        service.reject_claim(
            db, tenant_id=op.tenant_id, claim_id=claim_id, operator_id=op.id, reason=body.reason
        )
    )


@router.post(
    "/platform-accounts/rebind",
    status_code=201,
    responses=problems(Forbidden, MemberNotFound, e.InvalidClaim),
)
def rebind_account(
    body: RebindIn, db: DbSession, op: Annotated[Operator, requires("orders.import")]
) -> RebindRead:
    """Move a platform account to another member; recorded with operator and reason."""
    row = service.rebind_account(
        db,
        tenant_id=op.tenant_id,
        platform=body.platform,
        account=body.account,
        to_member_id=body.member_id,
        operator_id=op.id,
        reason=body.reason,
    )
    return RebindRead.model_validate(row)


@router.get("/platform-accounts/rebinds", responses=problems(Forbidden))
def list_rebinds(
    db: DbSession, op: Annotated[Operator, requires("orders.read")]
) -> list[RebindRead]:
    return [RebindRead.model_validate(r) for r in service.list_rebinds(db, tenant_id=op.tenant_id)]


@router.get("/orders-stats/sessions", responses=problems(Forbidden))
def session_stats(
    db: DbSession, op: Annotated[Operator, requires("orders.read")]
) -> list[SessionStatsRead]:
    """Per live session: orders imported, claimed, claim rate, points issued (net of refunds)."""
    return [
        SessionStatsRead(
            session_id=s.session_id,
            orders=s.orders,
            claimed=s.claimed,
            claim_rate=s.claim_rate,
            points=s.points,
        )
        for s in service.session_stats(db, tenant_id=op.tenant_id)
    ]


@router.get("/orders-rule", responses=problems(Forbidden))
def read_rule(db: DbSession, op: Annotated[Operator, requires("orders.read")]) -> Rule:
    tenant = db.get(Tenant, op.tenant_id)
    assert tenant is not None
    return Rule.model_validate(service.rule_of(tenant))


@router.put("/orders-rule", responses=problems(Forbidden, e.InvalidRule))
def save_rule(
    body: Rule, db: DbSession, op: Annotated[Operator, requires("tenant.manage")]
) -> Rule:
    """Points per yuan, multipliers (percent) per session and tier, minimum, cap, window."""
    return Rule.model_validate(service.set_rule(db, tenant_id=op.tenant_id, rule=body.model_dump()))


# --- members ----------------------------------------------------------------------------------


@router.post(
    "/me/claims",
    status_code=201,
    tags=["member"],
    responses=problems(e.InvalidClaim, e.RateLimited, e.ClaimingLocked),
)
def claim_order(body: ClaimIn, request: Request, db: DbSession, member: CurrentMember) -> ClaimRead:
    """Claim an order. The answer is the claim: ``credited``, ``pending`` (not imported yet),
    ``review`` or ``rejected`` with its reason. Repeating a claim returns it unchanged."""
    c = service.claim_order(
        db,
        tenant_id=member.tenant_id,
        member_id=member.id,
        platform=body.platform,
        order_no=body.order_no,
        account=body.account,
        ip=request.client.host if request.client else "",
    )
    return claim_read(c)


@router.get("/me/claims", tags=["member"], responses=problems())
def my_claims(
    db: DbSession,
    member: CurrentMember,
    before_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> MyClaims:
    items = service.list_claims(
        db, tenant_id=member.tenant_id, member_id=member.id, before_id=before_id, limit=limit
    )
    return MyClaims(
        items=[claim_read(c) for c in items],
        debt=service.member_debt(db, tenant_id=member.tenant_id, member_id=member.id),
    )

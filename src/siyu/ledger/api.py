from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from siyu.core import clock
from siyu.core import db as dbmod
from siyu.core.errors import Forbidden
from siyu.core.web import DbSession, IdempotencyKey, TxRoute, api_member, problems, requires
from siyu.ledger import service
from siyu.ledger.errors import (
    EntryNotFound,
    IdempotencyConflict,
    InsufficientPoints,
    InvalidExpiry,
    NotReversible,
    ReversalTooLarge,
)
from siyu.ledger.schemas import (
    BalanceRead,
    EntryPage,
    EntryRead,
    ExpiringRead,
    GrantIn,
    MemberEntryPage,
    MemberEntryRead,
    ReverseIn,
    SpendIn,
    VerifyRead,
)
from siyu.members.errors import MemberNotFound
from siyu.members.models import Member
from siyu.tenants.models import Operator, Tenant

router = APIRouter(prefix="/api/v1", route_class=TxRoute, tags=["points"])
CurrentMember = Annotated[Member, Depends(api_member)]


def balance_read(db: Session, *, tenant_id: int, member_id: int) -> BalanceRead:
    tenant = db.get(Tenant, tenant_id)
    assert tenant is not None
    bal = service.get_balance(db, tenant_id=tenant_id, member_id=member_id)
    return BalanceRead(
        member_id=member_id,
        balance=bal.balance,
        growth=bal.growth,
        expiring=[
            ExpiringRead(
                expires_at=e.expires_at,
                points=e.points,
                expires_on=last_day(e.expires_at, tenant.timezone),
            )
            for e in bal.expiring
        ],
    )


def last_day(expires_at: dt.datetime, tz: str) -> dt.date:
    """The last tenant-local day on which points expiring at ``expires_at`` can be used."""
    return clock.local_date(expires_at - dt.timedelta(microseconds=1), tz)


def entry_page(entries: list[object], limit: int) -> EntryPage:
    items = [EntryRead.model_validate(e) for e in entries]
    return EntryPage(items=items, next_before_id=items[-1].id if len(items) == limit else None)


@router.get("/members/{member_id}/points", responses=problems(Forbidden, MemberNotFound))
def read_balance(
    member_id: int, db: DbSession, op: Annotated[Operator, requires("points.read")]
) -> BalanceRead:
    return balance_read(db, tenant_id=op.tenant_id, member_id=member_id)


@router.get("/members/{member_id}/points/entries", responses=problems(Forbidden, MemberNotFound))
def list_entries(
    member_id: int,
    db: DbSession,
    op: Annotated[Operator, requires("points.read")],
    before_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> EntryPage:
    from siyu.members import service as members

    members.get_member(db, tenant_id=op.tenant_id, member_id=member_id)
    entries = service.list_entries(
        db, tenant_id=op.tenant_id, member_id=member_id, before_id=before_id, limit=limit
    )
    return entry_page(list(entries), limit)


@router.post(
    "/members/{member_id}/points/grant",
    status_code=201,
    responses=problems(Forbidden, MemberNotFound, IdempotencyConflict, InvalidExpiry),
)
def grant_points(
    member_id: int,
    body: GrantIn,
    db: DbSession,
    op: Annotated[Operator, requires("points.adjust")],
    # After the auth dependency: no credentials is 401, whatever headers are missing.
    key: IdempotencyKey,
) -> EntryRead:
    """Credit points. Send an ``Idempotency-Key``: a retry returns the first entry."""
    dbmod.release(db)  # the operator's lookup: the posting is a transaction of its own
    entry = service.alone(
        service.grant,
        tenant_id=op.tenant_id,
        member_id=member_id,
        points=body.points,
        reason=body.reason,
        memo=body.memo,
        reference=body.reference,
        expires_at=body.expires_at,
        counts_for_growth=body.counts_for_growth,
        idempotency_key=key,
        actor=service.Actor.operator(op.id),
    )
    return EntryRead.model_validate(entry)


@router.post(
    "/members/{member_id}/points/spend",
    status_code=201,
    responses=problems(Forbidden, MemberNotFound, InsufficientPoints, IdempotencyConflict),
)
def spend_points(
    member_id: int,
    body: SpendIn,
    db: DbSession,
    op: Annotated[Operator, requires("points.adjust")],
    # After the auth dependency: no credentials is 401, whatever headers are missing.
    key: IdempotencyKey,
) -> EntryRead:
    """Debit points, earliest-expiring first; ``points.insufficient`` takes nothing."""
    dbmod.release(db)  # the operator's lookup: the posting is a transaction of its own
    entry = service.alone(
        service.spend,
        tenant_id=op.tenant_id,
        member_id=member_id,
        points=body.points,
        reason=body.reason,
        memo=body.memo,
        reference=body.reference,
        idempotency_key=key,
        actor=service.Actor.operator(op.id),
    )
    return EntryRead.model_validate(entry)


@router.get("/points/entries/{entry_id}", responses=problems(Forbidden, EntryNotFound))
def read_entry(
    entry_id: int, db: DbSession, op: Annotated[Operator, requires("points.read")]
) -> EntryRead:
    return EntryRead.model_validate(
        service.get_entry(db, tenant_id=op.tenant_id, entry_id=entry_id)
    )


@router.post(
    "/points/entries/{entry_id}/reverse",
    status_code=201,
    responses=problems(
        Forbidden,
        EntryNotFound,
        NotReversible,
        ReversalTooLarge,
        InsufficientPoints,
        IdempotencyConflict,
    ),
)
def reverse_entry(
    entry_id: int,
    body: ReverseIn,
    db: DbSession,
    op: Annotated[Operator, requires("points.adjust")],
    # After the auth dependency: no credentials is 401, whatever headers are missing.
    key: IdempotencyKey,
) -> EntryRead:
    """Reverse all or part of a credit or debit."""
    entry = service.reverse(
        db,
        tenant_id=op.tenant_id,
        entry_id=entry_id,
        points=body.points,
        reason=body.reason,
        memo=body.memo,
        idempotency_key=key,
        actor=service.Actor.operator(op.id),
    )
    return EntryRead.model_validate(entry)


@router.get("/ledger/verify", responses=problems(Forbidden))
def verify_ledger(db: DbSession, op: Annotated[Operator, requires("points.read")]) -> VerifyRead:
    """Recompute every balance and lot from postings; ``ok`` is false on any difference."""
    report = service.verify(db, tenant_id=op.tenant_id)
    return VerifyRead(
        ok=report.ok,
        entries=report.entries,
        accounts=report.accounts,
        lots=report.lots,
        problems=[p.__dict__ for p in report.problems],
    )


@router.get("/me/points", tags=["member"], responses=problems())
def my_balance(db: DbSession, member: CurrentMember) -> BalanceRead:
    return balance_read(db, tenant_id=member.tenant_id, member_id=member.id)


@router.get("/me/points/entries", tags=["member"], responses=problems())
def my_entries(
    db: DbSession,
    member: CurrentMember,
    before_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> MemberEntryPage:
    entries = service.list_entries(
        db, tenant_id=member.tenant_id, member_id=member.id, before_id=before_id, limit=limit
    )
    items = [MemberEntryRead.model_validate(e) for e in entries]
    return MemberEntryPage(
        items=items, next_before_id=items[-1].id if len(items) == limit else None
    )

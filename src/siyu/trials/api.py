from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.core.errors import Forbidden
from siyu.core.web import DbSession, TxRoute, api_member, problems, requires
from siyu.ledger import service as ledger
from siyu.ledger.errors import InsufficientPoints
from siyu.mall.errors import AddressNotFound, AddressRequired
from siyu.members.models import Member
from siyu.tenants.models import Operator
from siyu.trials import models as t
from siyu.trials import service
from siyu.trials.errors import (
    DrawTooEarly,
    InvalidTrial,
    NotAWinner,
    NotOpen,
    ReportAccepted,
    ReportNotFound,
    SeedMismatch,
    SeedRequired,
    TagRequired,
    TierRequired,
    TrialNotFound,
)
from siyu.trials.schemas import (
    ApplicationList,
    ApplicationRead,
    ApplyIn,
    Board,
    BoardRow,
    DrawIn,
    MyTrialRead,
    ReportIn,
    ReportRead,
    ReviewIn,
    TrialCreate,
    TrialList,
    TrialRead,
)

router = APIRouter(prefix="/api/v1", route_class=TxRoute, tags=["trials"])
CurrentMember = Annotated[Member, Depends(api_member)]


def trial_read(trial: t.Trial) -> TrialRead:
    return TrialRead.model_validate(
        {
            **{c.key: getattr(trial, c.key) for c in t.Trial.__table__.columns},
            "seed": trial.seed_hex if trial.status == t.DRAWN else None,
            "verify_url": f"/draws/{trial.public_code}",
        }
    )


@router.get("/trials", responses=problems(Forbidden))
def list_trials(db: DbSession, op: Annotated[Operator, requires("mall.read")]) -> TrialList:
    return TrialList(items=[trial_read(x) for x in service.list_trials(db, tenant_id=op.tenant_id)])


@router.post("/trials", status_code=201, responses=problems(Forbidden, InvalidTrial))
def create_trial(
    body: TrialCreate, db: DbSession, op: Annotated[Operator, requires("mall.manage")]
) -> TrialRead:
    """Open a trial campaign. Its commitment (SHA-256 of the draw's seed) is public at once."""
    trial = service.create_trial(db, tenant_id=op.tenant_id, **body.model_dump())
    return trial_read(trial)


@router.get("/trials/{trial_id}", responses=problems(Forbidden, TrialNotFound))
def read_trial(
    trial_id: int, db: DbSession, op: Annotated[Operator, requires("mall.read")]
) -> TrialRead:
    return trial_read(service.get_trial(db, tenant_id=op.tenant_id, trial_id=trial_id))


@router.get("/trials/{trial_id}/applications", responses=problems(Forbidden, TrialNotFound))
def list_applications(
    trial_id: int,
    db: DbSession,
    op: Annotated[Operator, requires("mall.read")],
    status: Literal["applied", "won", "lost"] | None = None,
) -> ApplicationList:
    apps = service.list_applications(db, tenant_id=op.tenant_id, trial_id=trial_id, status=status)
    return ApplicationList(items=[ApplicationRead.model_validate(a) for a in apps])


@router.post(
    "/trials/{trial_id}/draw",
    responses=problems(Forbidden, TrialNotFound, DrawTooEarly, SeedRequired, SeedMismatch),
)
def draw(
    trial_id: int, body: DrawIn, db: DbSession, op: Annotated[Operator, requires("mall.manage")]
) -> TrialRead:
    """Draw the winners (after the window). Operator-committed trials need ``seed``. Drawing
    again returns the same result."""
    trial = service.draw(db, tenant_id=op.tenant_id, trial_id=trial_id, seed_hex=body.seed)
    return trial_read(trial)


def board(db: Session, tenant_id: int, trial_id: int) -> Board:
    rows = service.report_board(db, tenant_id=tenant_id, trial_id=trial_id)
    return Board(
        items=[
            BoardRow(
                application_id=r.application.id,
                member_id=r.application.member_id,
                rank=r.application.rank,
                order_id=r.application.order_id,
                state=r.state,
                report=ReportRead.model_validate(r.report) if r.report else None,
            )
            for r in rows
        ]
    )


@router.get("/trials/{trial_id}/reports", responses=problems(Forbidden, TrialNotFound))
def list_reports(
    trial_id: int, db: DbSession, op: Annotated[Operator, requires("mall.read")]
) -> Board:
    """Every winner with their report: ``missing`` and ``late`` ones are listed as such."""
    return board(db, op.tenant_id, trial_id)


@router.post(
    "/trial-reports/{report_id}/review",
    responses=problems(Forbidden, ReportNotFound, ReportAccepted),
)
def review_report(
    report_id: int, body: ReviewIn, db: DbSession, op: Annotated[Operator, requires("mall.manage")]
) -> ReportRead:
    """Accept (grants the reward for an on-time report) or reject (the winner may revise)."""
    report = service.review_report(
        db,
        tenant_id=op.tenant_id,
        report_id=report_id,
        accept=body.accept,
        note=body.note,
        actor=ledger.Actor.operator(op.id),
    )
    return ReportRead.model_validate(report)


# --- members ----------------------------------------------------------------------------------


def my_trial(db: Session, member: Member, trial: t.Trial) -> MyTrialRead:
    application = service.find_application(
        db, tenant_id=member.tenant_id, trial_id=trial.id, member_id=member.id
    )
    report = (
        db.scalar(select(t.Report).where(t.Report.application_id == application.id))
        if application
        else None
    )
    return MyTrialRead(
        trial=trial_read(trial),
        application=ApplicationRead.model_validate(application) if application else None,
        report=ReportRead.model_validate(report) if report else None,
    )


@router.get("/me/trials", tags=["member"], responses=problems())
def my_trials(db: DbSession, member: CurrentMember) -> list[MyTrialRead]:
    return [my_trial(db, member, x) for x in service.list_trials(db, tenant_id=member.tenant_id)]


@router.get("/me/trials/{trial_id}", tags=["member"], responses=problems(TrialNotFound))
def read_my_trial(trial_id: int, db: DbSession, member: CurrentMember) -> MyTrialRead:
    trial = service.get_trial(db, tenant_id=member.tenant_id, trial_id=trial_id)
    return my_trial(db, member, trial)


@router.post(
    "/me/trials/{trial_id}/apply",
    tags=["member"],
    responses=problems(
        TrialNotFound,
        NotOpen,
        TierRequired,
        TagRequired,
        AddressRequired,
        AddressNotFound,
        InsufficientPoints,
    ),
)
def apply(trial_id: int, body: ApplyIn, db: DbSession, member: CurrentMember) -> ApplicationRead:
    """Apply (spends the points cost, if any). Applying again returns the first application."""
    application = service.apply(
        db,
        tenant_id=member.tenant_id,
        trial_id=trial_id,
        member_id=member.id,
        address_id=body.address_id,
    )
    return ApplicationRead.model_validate(application)


@router.post(
    "/me/trials/{trial_id}/report",
    tags=["member"],
    responses=problems(TrialNotFound, NotAWinner, ReportAccepted, InvalidTrial),
)
def submit_report(
    trial_id: int, body: ReportIn, db: DbSession, member: CurrentMember
) -> ReportRead:
    """A winner's trial report (text + image URLs); revisable until accepted."""
    report = service.submit_report(
        db,
        tenant_id=member.tenant_id,
        trial_id=trial_id,
        member_id=member.id,
        text=body.text,
        images=body.images,
    )
    return ReportRead.model_validate(report)

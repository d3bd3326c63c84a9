"""Trial pages: the console's campaigns, draw and report review; the member H5's trials,
apply and report; and the public draw verification pages (``/draws/…``, no sign-in)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu import draw as drawing
from siyu.core import clock
from siyu.core.errors import NotFound, SiyuError
from siyu.core.i18n import gettext as _
from siyu.core.web import CsrfChecked, DbSession, TxRoute, page_member, render, requires
from siyu.ledger import service as ledger
from siyu.mall import service as mall
from siyu.members import service as members
from siyu.members.models import Member
from siyu.tenants import service as tenants
from siyu.tenants.models import Operator, Tenant
from siyu.trials import models as t
from siyu.trials import service
from siyu.trials.errors import InvalidTrial

router = APIRouter(route_class=TxRoute, include_in_schema=False)
PageMember = Annotated[Member, Depends(page_member)]
MAX_VERIFY_ENTRIES = 20_000  # the page's form; larger draws: `siyu draw verify`


def _tenant(db: Session, tenant_id: int) -> Tenant:
    tenant = db.get(Tenant, tenant_id)
    assert tenant is not None
    return tenant


def _fmt(tz: str) -> Any:
    zone = ZoneInfo(tz)
    return lambda v: v.astimezone(zone).strftime("%Y-%m-%d %H:%M") if v else "—"


def _parse_local(raw: str, tz: str, name: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(raw.strip()).replace(tzinfo=ZoneInfo(tz))
    except ValueError:
        raise InvalidTrial(field=name, problem=_("a date and time")) from None


def _int(raw: str, name: str, default: int | None = None) -> int | None:
    raw = (raw or "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise InvalidTrial(field=name, problem=_("a whole number"))
    return int(raw)


# --- console ----------------------------------------------------------------------------------


@router.get("/admin/trials")
def admin_trials(
    request: Request, db: DbSession, op: Annotated[Operator, requires("mall.read", page=True)]
) -> HTMLResponse:
    return _trials_page(request, db, op)


def _trials_page(
    request: Request,
    db: Session,
    op: Operator,
    *,
    form: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    tenant = _tenant(db, op.tenant_id)
    return render(
        request,
        "admin/trials.html",
        op=op,
        tenant=tenant,
        trials=service.list_trials(db, tenant_id=op.tenant_id),
        tiers=members.list_tiers(db, tenant_id=op.tenant_id),
        fmt=_fmt(tenant.timezone),
        can_manage=tenants.can(op.role, "mall.manage"),
        form=form or {},
        error=error,
        status_code=status_code,
    )


@router.post("/admin/trials", dependencies=[CsrfChecked])
async def admin_create_trial(
    request: Request, db: DbSession, op: Annotated[Operator, requires("mall.manage", page=True)]
) -> Response:
    form = {k: str(v) for k, v in (await request.form()).items() if k != "csrf_token"}
    from starlette.concurrency import run_in_threadpool

    def create() -> Response:
        tz = _tenant(db, op.tenant_id).timezone
        try:
            trial = service.create_trial(
                db,
                tenant_id=op.tenant_id,
                title=form.get("title", ""),
                description=form.get("description", ""),
                image_url=form.get("image_url", ""),
                slots=_int(form.get("slots", ""), "slots") or 0,
                apply_from=_parse_local(form.get("apply_from", ""), tz, "apply_from"),
                apply_until=_parse_local(form.get("apply_until", ""), tz, "apply_until"),
                report_deadline=_parse_local(
                    form.get("report_deadline", ""), tz, "report_deadline"
                ),
                points_cost=_int(form.get("points_cost", ""), "points_cost", 0) or 0,
                report_reward=_int(form.get("report_reward", ""), "report_reward", 0) or 0,
                min_growth=_int(form.get("min_growth", ""), "min_growth"),
                tag=form.get("tag") or None,
                commitment=form.get("commitment", "").strip() or None,
            )
        except SiyuError as err:
            return _trials_page(request, db, op, form=form, error=err.message(), status_code=422)
        return RedirectResponse(f"/admin/trials/{trial.id}?notice=saved", status_code=303)

    return await run_in_threadpool(create)


@router.get("/admin/trials/{trial_id}")
def admin_trial(
    request: Request,
    trial_id: int,
    db: DbSession,
    op: Annotated[Operator, requires("mall.read", page=True)],
) -> HTMLResponse:
    trial = service.get_trial(db, tenant_id=op.tenant_id, trial_id=trial_id)
    return _trial_page(request, db, op, trial)


def _trial_page(
    request: Request,
    db: Session,
    op: Operator,
    trial: t.Trial,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    tenant = _tenant(db, op.tenant_id)
    return render(
        request,
        "admin/trial.html",
        op=op,
        tenant=tenant,
        trial=trial,
        applicants=service.applicant_count(db, tenant_id=op.tenant_id, trial_id=trial.id),
        board=service.report_board(db, tenant_id=op.tenant_id, trial_id=trial.id)
        if trial.status == t.DRAWN
        else [],
        fmt=_fmt(tenant.timezone),
        now=clock.now(),
        can_manage=tenants.can(op.role, "mall.manage"),
        error=error,
        status_code=status_code,
    )


@router.post("/admin/trials/{trial_id}/draw", dependencies=[CsrfChecked])
def admin_draw(
    request: Request,
    trial_id: int,
    db: DbSession,
    op: Annotated[Operator, requires("mall.manage", page=True)],
    seed: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    trial = service.get_trial(db, tenant_id=op.tenant_id, trial_id=trial_id)
    try:
        with db.begin_nested():
            service.draw(db, tenant_id=op.tenant_id, trial_id=trial.id, seed_hex=seed or None)
    except SiyuError as err:
        db.refresh(trial)
        return _trial_page(request, db, op, trial, error=err.message(), status_code=err.status)
    return RedirectResponse(f"/admin/trials/{trial.id}?notice=saved", status_code=303)


@router.post("/admin/trial-reports/{report_id}/review", dependencies=[CsrfChecked])
def admin_review(
    request: Request,
    report_id: int,
    db: DbSession,
    op: Annotated[Operator, requires("mall.manage", page=True)],
    decision: Annotated[str, Form(max_length=8)] = "",
    note: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    report = service.get_report(db, tenant_id=op.tenant_id, report_id=report_id)
    trial = service.get_trial(db, tenant_id=op.tenant_id, trial_id=report.trial_id)
    try:
        if decision not in ("accept", "reject"):
            raise InvalidTrial(field="decision", problem=_("accept or reject"))
        with db.begin_nested():
            service.review_report(
                db,
                tenant_id=op.tenant_id,
                report_id=report.id,
                accept=decision == "accept",
                note=note,
                actor=ledger.Actor.operator(op.id),
            )
    except SiyuError as err:
        return _trial_page(request, db, op, trial, error=err.message(), status_code=err.status)
    return RedirectResponse(f"/admin/trials/{trial.id}?notice=saved", status_code=303)


# --- member H5 --------------------------------------------------------------------------------


@router.get("/m/{slug}/trials")
def member_trials(request: Request, slug: str, db: DbSession, member: PageMember) -> HTMLResponse:
    tenant = _tenant(db, member.tenant_id)
    mine = {
        a.trial_id: a
        for a in service.member_applications(db, tenant_id=tenant.id, member_id=member.id)
    }
    return render(
        request,
        "m/trials.html",
        tenant=tenant,
        slug=slug,
        member=member,
        trials=service.list_trials(db, tenant_id=tenant.id),
        mine=mine,
        fmt=_fmt(tenant.timezone),
    )


@router.get("/m/{slug}/trials/{trial_id}")
def member_trial(
    request: Request, slug: str, trial_id: int, db: DbSession, member: PageMember
) -> HTMLResponse:
    trial = service.get_trial(db, tenant_id=member.tenant_id, trial_id=trial_id)
    return _member_trial(request, db, slug, member, trial)


def _member_trial(
    request: Request,
    db: Session,
    slug: str,
    member: Member,
    trial: t.Trial,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    tenant = _tenant(db, member.tenant_id)
    application = service.find_application(
        db, tenant_id=tenant.id, trial_id=trial.id, member_id=member.id
    )
    report = (
        db.scalar(select(t.Report).where(t.Report.application_id == application.id))
        if application
        else None
    )
    now = clock.now()
    return render(
        request,
        "m/trial.html",
        tenant=tenant,
        slug=slug,
        member=member,
        trial=trial,
        application=application,
        report=report,
        is_open=trial.status == t.OPEN and trial.apply_from <= now < trial.apply_until,
        addresses=mall.list_addresses(db, tenant_id=tenant.id, member_id=member.id),
        tier=mall._tier_name(db, tenant.id, trial.min_growth)
        if trial.min_growth is not None
        else None,
        fmt=_fmt(tenant.timezone),
        error=error,
        status_code=status_code,
    )


@router.post("/m/{slug}/trials/{trial_id}/apply", dependencies=[CsrfChecked])
def member_apply(
    request: Request,
    slug: str,
    trial_id: int,
    db: DbSession,
    member: PageMember,
    address_id: Annotated[str, Form(max_length=12)] = "",
) -> Response:
    trial = service.get_trial(db, tenant_id=member.tenant_id, trial_id=trial_id)
    try:
        service.apply(
            db,
            tenant_id=member.tenant_id,
            trial_id=trial.id,
            member_id=member.id,
            address_id=int(address_id) if address_id.isdigit() else None,
        )
    except SiyuError as err:
        return _member_trial(
            request, db, slug, member, trial, error=err.message(), status_code=err.status
        )
    return RedirectResponse(f"/m/{slug}/trials/{trial.id}?notice=applied", status_code=303)


@router.post("/m/{slug}/trials/{trial_id}/report", dependencies=[CsrfChecked])
def member_report(
    request: Request,
    slug: str,
    trial_id: int,
    db: DbSession,
    member: PageMember,
    text: Annotated[str, Form(max_length=5000)] = "",
    images: Annotated[str, Form(max_length=5000)] = "",
) -> Response:
    trial = service.get_trial(db, tenant_id=member.tenant_id, trial_id=trial_id)
    try:
        service.submit_report(
            db,
            tenant_id=member.tenant_id,
            trial_id=trial.id,
            member_id=member.id,
            text=text,
            images=[u.strip() for u in images.splitlines() if u.strip()],
        )
    except SiyuError as err:
        return _member_trial(
            request, db, slug, member, trial, error=err.message(), status_code=err.status
        )
    return RedirectResponse(f"/m/{slug}/trials/{trial.id}?notice=reported", status_code=303)


# --- public verification ----------------------------------------------------------------------


@router.get("/draws/verify")
def verify_page(
    request: Request, seed: str = "", entries: str = "", winners: str = ""
) -> HTMLResponse:
    """The published algorithm and a form that re-runs any draw from its published data."""
    result, error = None, None
    if seed or entries or winners:
        try:
            ids = drawing.read_entries(entries)
            if len(ids) > MAX_VERIFY_ENTRIES:
                raise drawing.DrawInputError(
                    _("at most {n} entries here; use `siyu draw verify`").format(
                        n=MAX_VERIFY_ENTRIES
                    )
                )
            if not winners.strip().isdigit():
                raise drawing.DrawInputError(_("the number of winners is a whole number"))
            result = drawing.verify(seed, ids, int(winners))
        except drawing.DrawInputError as err:
            error = str(err)
    return render(
        request,
        "draws/verify.html",
        seed=seed,
        entries=entries,
        winners=winners,
        result=result,
        error=error,
        status_code=422 if error else 200,
    )


def _public_trial(db: Session, code: str) -> t.Trial:
    trial = service.find_by_code(db, code=code)
    if trial is None:
        raise NotFound(resource="draw")
    return trial


@router.get("/draws/{code}")
def public_draw(request: Request, code: str, db: DbSession) -> HTMLResponse:
    """A trial's published draw: commitment, then (after the draw) seed, entries, winners,
    and the result re-computed here from those published values."""
    trial = _public_trial(db, code)
    tenant = _tenant(db, trial.tenant_id)
    check = None
    winners: list[str] = []
    if trial.status == t.DRAWN:
        entries = service.entry_ids(db, tenant_id=trial.tenant_id, trial_id=trial.id)
        check = drawing.verify(trial.seed_hex, entries, trial.slots)
        winners = [
            str(a.id)
            for a in sorted(
                service.list_applications(
                    db, tenant_id=trial.tenant_id, trial_id=trial.id, status=t.WON, limit=100_000
                ),
                key=lambda a: a.rank or 0,
            )
        ]
    return render(
        request,
        "draws/trial.html",
        trial=trial,
        brand=tenant.name,
        check=check,
        winners=winners,
        fmt=_fmt(tenant.timezone),
    )


@router.get("/draws/{code}/entries.txt")
def public_entries(code: str, db: DbSession) -> PlainTextResponse:
    """The entries of a drawn trial, one per line, in the published (sorted) order."""
    trial = _public_trial(db, code)
    if trial.status != t.DRAWN:
        return PlainTextResponse("")
    entries = service.entry_ids(db, tenant_id=trial.tenant_id, trial_id=trial.id)
    return PlainTextResponse("".join(f"{e}\n" for e in entries))

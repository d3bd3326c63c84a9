"""Product trials: the only code that writes trial tables.

- ``create_trial``: the operator either gives the commitment (hex SHA-256 of a seed only they
  know) or lets the server choose a 32-byte seed, kept secret until the draw. The commitment is
  public from the start (API, member pages, ``/draws/{public_code}``).
- ``apply``: in the window, eligible by tier (growth) and tag, with a shipping address; a
  points cost is spent through the ledger (key ``trial:<trial>:<member>``). Applying twice
  returns the first application.
- ``draw``: after the window, with the revealed seed; winners = ``siyu.draw.winners`` of the
  seed and the application ids (strings), ``slots`` of them. Winners get a fulfillment order
  (``mall.service.create_trial_order``); losers who paid points are refunded by ledger
  reversals (``refund_losers``, in batches: the first in the draw's transaction, the rest by
  the ``trials.refund`` job). Drawing a drawn trial returns it unchanged.
- ``submit_report`` / ``review_report``: winners report (text + image URLs); a report after the
  deadline is marked late. Accepting an on-time report grants the reward (key
  ``trial-report:<report>``); late reports are accepted without reward.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from siyu import draw as drawing
from siyu.core import clock
from siyu.core.db import after_commit
from siyu.core.i18n import gettext as _
from siyu.ledger import service as ledger
from siyu.mall import service as mall
from siyu.members import service as members
from siyu.trials import models as t
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

REFUND_BATCH = 200


def _check(trial: t.Trial) -> None:
    if not (trial.title or "").strip() or len(trial.title) > 100:
        raise InvalidTrial(field="title", problem=_("1–100 characters"))
    if not 1 <= trial.slots <= 100_000:
        raise InvalidTrial(field="slots", problem=_("1 to 100,000"))
    for name in ("apply_from", "apply_until", "report_deadline"):
        if getattr(trial, name).tzinfo is None:
            raise InvalidTrial(field=name, problem=_("an instant with a timezone"))
    if trial.apply_until <= trial.apply_from:
        raise InvalidTrial(field="apply_until", problem=_("after apply_from"))
    if trial.report_deadline <= trial.apply_until:
        raise InvalidTrial(field="report_deadline", problem=_("after apply_until"))
    if not 0 <= trial.points_cost <= ledger.MAX_POINTS:
        raise InvalidTrial(field="points_cost", problem=_("0 (free) or more"))
    if not 0 <= trial.report_reward <= ledger.MAX_POINTS:
        raise InvalidTrial(field="report_reward", problem=_("0 or more"))
    if trial.min_growth is not None and trial.min_growth < 0:
        raise InvalidTrial(field="min_growth", problem=_("0 or more"))
    if trial.image_url and not trial.image_url.startswith(("https://", "http://", "/")):
        raise InvalidTrial(field="image_url", problem=_("an http(s) URL"))


def create_trial(
    db: Session,
    *,
    tenant_id: int,
    title: str,
    slots: int,
    apply_from: dt.datetime,
    apply_until: dt.datetime,
    report_deadline: dt.datetime,
    description: str = "",
    image_url: str = "",
    points_cost: int = 0,
    report_reward: int = 0,
    min_growth: int | None = None,
    tag: str | None = None,
    commitment: str | None = None,
) -> t.Trial:
    """A trial campaign. Without ``commitment`` the server chooses the seed and keeps it
    secret until the draw; with one, the operator reveals the seed at the draw."""
    if commitment is not None:
        commitment = commitment.strip().lower()
        if len(commitment) != 64 or any(c not in "0123456789abcdef" for c in commitment):
            raise InvalidTrial(field="commitment", problem=_("64 hex digits (SHA-256)"))
        seed_hex, source = "", "operator"
    else:
        seed_hex, source = secrets.token_hex(32), "server"
        commitment = drawing.commitment(bytes.fromhex(seed_hex))
    trial = t.Trial(
        tenant_id=tenant_id,
        title=(title or "").strip(),
        description=(description or "").strip(),
        image_url=(image_url or "").strip(),
        slots=slots,
        apply_from=apply_from,
        apply_until=apply_until,
        report_deadline=report_deadline,
        points_cost=points_cost,
        report_reward=report_reward,
        min_growth=min_growth,
        tag=(tag or "").strip() or None,
        commitment=commitment,
        seed_hex=seed_hex,
        seed_source=source,
        status=t.OPEN,
        entries=0,
        public_code=secrets.token_urlsafe(12),
        created_at=clock.now(),
    )
    _check(trial)
    db.add(trial)
    db.flush()
    return trial


def get_trial(db: Session, *, tenant_id: int, trial_id: int, lock: bool = False) -> t.Trial:
    q = select(t.Trial).where(t.Trial.id == trial_id, t.Trial.tenant_id == tenant_id)
    if lock:
        q = q.with_for_update().execution_options(populate_existing=True)
    trial = db.scalar(q)
    if trial is None:
        raise TrialNotFound(trial_id=trial_id)
    return trial


def find_by_code(db: Session, *, code: str) -> t.Trial | None:
    """The trial behind a public verification link (any tenant: the link is public)."""
    return db.scalar(select(t.Trial).where(t.Trial.public_code == code))


def list_trials(db: Session, *, tenant_id: int) -> list[t.Trial]:
    return list(
        db.scalars(
            select(t.Trial).where(t.Trial.tenant_id == tenant_id).order_by(t.Trial.id.desc())
        )
    )


def applicant_count(db: Session, *, tenant_id: int, trial_id: int) -> int:
    return int(
        db.scalar(
            select(func.count())
            .select_from(t.Application)
            .where(t.Application.tenant_id == tenant_id, t.Application.trial_id == trial_id)
        )
        or 0
    )


# --- applications -----------------------------------------------------------------------------


def find_application(
    db: Session, *, tenant_id: int, trial_id: int, member_id: int
) -> t.Application | None:
    return db.scalar(
        select(t.Application).where(
            t.Application.tenant_id == tenant_id,
            t.Application.trial_id == trial_id,
            t.Application.member_id == member_id,
        )
    )


def apply(
    db: Session, *, tenant_id: int, trial_id: int, member_id: int, address_id: int | None
) -> t.Application:
    """Apply for a trial. Raises NotOpen, TierRequired, TagRequired, AddressRequired,
    AddressNotFound, InsufficientPoints before taking anything; a repeat returns the first
    application."""
    trial = get_trial(db, tenant_id=tenant_id, trial_id=trial_id)
    found = find_application(db, tenant_id=tenant_id, trial_id=trial.id, member_id=member_id)
    if found is not None:
        return found
    now = clock.now()
    if trial.status != t.OPEN or not trial.apply_from <= now < trial.apply_until:
        raise NotOpen(title=trial.title, start=trial.apply_from, end=trial.apply_until)
    member = members.get_member(db, tenant_id=tenant_id, member_id=member_id)
    if trial.min_growth is not None:
        _, growth = ledger.wallets_of(db, tenant_id=tenant_id, member_ids=[member_id]).get(
            member_id, (0, 0)
        )
        if growth < trial.min_growth:
            raise TierRequired(tier=mall._tier_name(db, tenant_id, trial.min_growth))
    if trial.tag and trial.tag not in member.tags:
        raise TagRequired(tag=trial.tag)
    if address_id is None:
        from siyu.mall.errors import AddressRequired

        raise AddressRequired()
    address = mall.get_address(db, tenant_id=tenant_id, member_id=member_id, address_id=address_id)
    try:
        with db.begin_nested():
            entry = None
            if trial.points_cost:
                entry = ledger.spend(
                    db,
                    tenant_id=tenant_id,
                    member_id=member_id,
                    points=trial.points_cost,
                    reason="trial",
                    memo=trial.title,
                    reference=f"trial:{trial.id}",
                    idempotency_key=f"trial:{trial.id}:{member_id}",
                    actor=ledger.Actor.member(member_id),
                )
            application = t.Application(
                tenant_id=tenant_id,
                trial_id=trial.id,
                member_id=member_id,
                status=t.APPLIED,
                spend_entry_id=entry.id if entry else None,
                ship_name=address.name,
                ship_phone=address.phone,
                ship_address=address.full,
                created_at=now,
            )
            db.add(application)
            db.flush()
    except IntegrityError:
        # A concurrent application of the same member won; the spend's key made it once.
        found = find_application(db, tenant_id=tenant_id, trial_id=trial.id, member_id=member_id)
        if found is None:
            raise
        return found
    return application


def list_applications(
    db: Session, *, tenant_id: int, trial_id: int, status: str | None = None, limit: int = 500
) -> list[t.Application]:
    get_trial(db, tenant_id=tenant_id, trial_id=trial_id)
    q = select(t.Application).where(
        t.Application.tenant_id == tenant_id, t.Application.trial_id == trial_id
    )
    if status:
        q = q.where(t.Application.status == status)
    return list(db.scalars(q.order_by(t.Application.id).limit(limit)))


def entry_ids(db: Session, *, tenant_id: int, trial_id: int) -> list[str]:
    """The draw's entries in the published order (application ids as strings)."""
    ids = db.scalars(
        select(t.Application.id).where(
            t.Application.tenant_id == tenant_id, t.Application.trial_id == trial_id
        )
    )
    return drawing.sorted_entries(str(i) for i in ids)


def member_applications(db: Session, *, tenant_id: int, member_id: int) -> list[t.Application]:
    return list(
        db.scalars(
            select(t.Application)
            .where(t.Application.tenant_id == tenant_id, t.Application.member_id == member_id)
            .order_by(t.Application.id.desc())
        )
    )


# --- the draw ---------------------------------------------------------------------------------


def draw(db: Session, *, tenant_id: int, trial_id: int, seed_hex: str | None = None) -> t.Trial:
    """Draw the winners once the window has closed. Raises DrawTooEarly, SeedRequired,
    SeedMismatch; drawing a drawn trial returns it unchanged."""
    trial = get_trial(db, tenant_id=tenant_id, trial_id=trial_id, lock=True)
    if trial.status == t.DRAWN:
        return trial
    if clock.now() < trial.apply_until:
        raise DrawTooEarly(end=trial.apply_until)
    if trial.seed_source == "operator":
        if not seed_hex:
            raise SeedRequired(commitment=trial.commitment)
        try:
            seed = drawing.parse_seed(seed_hex)
        except drawing.DrawInputError as err:
            raise InvalidTrial(field="seed", problem=str(err)) from None
        if drawing.commitment(seed) != trial.commitment:
            raise SeedMismatch(commitment=trial.commitment)
        trial.seed_hex = seed.hex()
    seed = bytes.fromhex(trial.seed_hex)
    entries = entry_ids(db, tenant_id=tenant_id, trial_id=trial.id)
    winners = drawing.winners(seed, entries, trial.slots)
    won = {int(w): rank for rank, w in enumerate(winners, start=1)}
    winners_members: list[int] = []
    db.execute(
        update(t.Application)
        .where(t.Application.trial_id == trial.id, t.Application.tenant_id == tenant_id)
        .values(status=t.LOST)
        .execution_options(synchronize_session=False)
    )
    if won:
        db.execute(
            update(t.Application),
            [{"id": app_id, "status": t.WON, "rank": rank} for app_id, rank in won.items()],
            execution_options={"synchronize_session": False},
        )
        apps = db.scalars(
            select(t.Application)
            .where(t.Application.id.in_(list(won)))
            .execution_options(populate_existing=True)
        )
        for application in apps:
            order = mall.create_trial_order(
                db,
                tenant_id=tenant_id,
                member_id=application.member_id,
                title=trial.title,
                application_id=application.id,
                ship_name=application.ship_name,
                ship_phone=application.ship_phone,
                ship_address=application.ship_address,
            )
            application.order_id = order.id
            winners_members.append(application.member_id)
        _tell_winners(db, trial, winners_members)
    trial.status = t.DRAWN
    trial.entries = len(entries)
    trial.drawn_at = clock.now()
    db.flush()
    if trial.points_cost and refund_losers(db, tenant_id=tenant_id, trial_id=trial.id):
        from siyu.trials.tasks import refund_trial_losers

        after_commit(db, refund_trial_losers, tenant_id, trial.id)
    return trial


def _tell_winners(db: Session, trial: t.Trial, member_ids: list[int]) -> None:
    """The winners' message (inbox, and wherever messaging routes members), in the draw's own
    transaction and keyed by the trial, so a re-run never sends it twice."""
    from siyu.messaging import service as messaging
    from siyu.tenants.models import Tenant

    tenant = db.get(Tenant, trial.tenant_id)
    assert tenant is not None
    deadline = clock.as_utc(trial.report_deadline).astimezone(ZoneInfo(tenant.timezone))
    messaging.send(
        db,
        tenant_id=trial.tenant_id,
        purpose=f"trials:{trial.id}:won",
        member_ids=member_ids,
        title=_("You won a product trial"),
        body=_(
            "Congratulations! You were drawn for the trial of {{ trial }}. We are preparing"
            " your parcel; please post your trial report by {{ deadline }}."
        ),
        context={"trial": trial.title, "deadline": deadline.strftime("%Y-%m-%d %H:%M")},
        kind="trials",
        created_by="trials",
    )


def refund_losers(db: Session, *, tenant_id: int, trial_id: int, limit: int | None = None) -> int:
    """Refund up to ``limit`` losers who paid points; the number left to refund after this
    batch. Safe to repeat (each refund's key is ``trial-refund:<application>``)."""
    limit = limit or REFUND_BATCH
    batch = list(
        db.scalars(
            select(t.Application)
            .where(
                t.Application.tenant_id == tenant_id,
                t.Application.trial_id == trial_id,
                t.Application.status == t.LOST,
                t.Application.spend_entry_id.is_not(None),
                t.Application.refund_entry_id.is_(None),
            )
            .order_by(t.Application.id)
            .limit(limit + 1)
        )
    )
    for application in batch[:limit]:
        assert application.spend_entry_id is not None
        refund = ledger.reverse(
            db,
            tenant_id=tenant_id,
            entry_id=application.spend_entry_id,
            idempotency_key=f"trial-refund:{application.id}",
            reason="trial_refund",
            actor=ledger.JOB,
        )
        application.refund_entry_id = refund.id
    db.flush()
    return max(0, len(batch) - limit)


def due_for_draw(db: Session, *, now: dt.datetime) -> list[tuple[int, int]]:
    """(tenant, trial) of server-seeded trials whose window has closed, not drawn yet."""
    rows = db.execute(
        select(t.Trial.tenant_id, t.Trial.id).where(
            t.Trial.status == t.OPEN, t.Trial.seed_source == "server", t.Trial.apply_until <= now
        )
    )
    return [(int(a), int(b)) for a, b in rows]


# --- reports ----------------------------------------------------------------------------------


def _check_report(text: str, images: list[str]) -> None:
    if not (text or "").strip() or len(text) > 5000:
        raise InvalidTrial(field="text", problem=_("1–5,000 characters"))
    if len(images) > 9 or any(
        not isinstance(u, str) or not u.startswith(("https://", "http://", "/")) or len(u) > 500
        for u in images
    ):
        raise InvalidTrial(field="images", problem=_("up to 9 http(s) URLs"))


def submit_report(
    db: Session, *, tenant_id: int, trial_id: int, member_id: int, text: str, images: list[str]
) -> t.Report:
    """A winner's report (or its revision, until it is accepted). After the deadline the
    report is kept and marked late. Raises NotAWinner, ReportAccepted."""
    trial = get_trial(db, tenant_id=tenant_id, trial_id=trial_id)
    application = find_application(db, tenant_id=tenant_id, trial_id=trial.id, member_id=member_id)
    if application is None or application.status != t.WON:
        raise NotAWinner()
    _check_report(text, images)
    now = clock.now()
    report = db.scalar(
        select(t.Report)
        .where(t.Report.application_id == application.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if report is not None and report.status == t.ACCEPTED:
        raise ReportAccepted(report_id=report.id)
    if report is None:
        report = t.Report(
            tenant_id=tenant_id,
            trial_id=trial.id,
            application_id=application.id,
            member_id=member_id,
        )
        db.add(report)
    report.text = text.strip()
    report.images = list(images)
    report.status = t.SUBMITTED
    report.late = now > trial.report_deadline
    report.submitted_at = now
    report.reviewed_at = None
    report.review_note = ""
    db.flush()
    return report


def get_report(db: Session, *, tenant_id: int, report_id: int) -> t.Report:
    report = db.scalar(
        select(t.Report).where(t.Report.id == report_id, t.Report.tenant_id == tenant_id)
    )
    if report is None:
        raise ReportNotFound(report_id=report_id)
    return report


def review_report(
    db: Session, *, tenant_id: int, report_id: int, accept: bool, note: str, actor: ledger.Actor
) -> t.Report:
    """Accept (reward if on time) or reject (the winner may revise) a submitted report.
    Accepting an accepted report changes nothing; rejecting one raises ReportAccepted."""
    report = db.scalar(
        select(t.Report)
        .where(t.Report.id == report_id, t.Report.tenant_id == tenant_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if report is None:
        raise ReportNotFound(report_id=report_id)
    if report.status == t.ACCEPTED:
        if accept:
            return report
        raise ReportAccepted(report_id=report.id)
    trial = get_trial(db, tenant_id=tenant_id, trial_id=report.trial_id)
    report.status = t.ACCEPTED if accept else t.REJECTED
    report.review_note = (note or "").strip()[:500]
    report.reviewed_at = clock.now()
    if accept and not report.late and trial.report_reward:
        entry = ledger.grant(
            db,
            tenant_id=tenant_id,
            member_id=report.member_id,
            points=trial.report_reward,
            reason="trial_report",
            memo=trial.title,
            reference=f"trial_report:{report.id}",
            idempotency_key=f"trial-report:{report.id}",
            actor=actor,
        )
        report.reward_entry_id = entry.id
    db.flush()
    return report


@dataclass
class WinnerReport:
    application: t.Application
    report: t.Report | None
    state: str  # due, missing, submitted, late, accepted, rejected


def report_board(db: Session, *, tenant_id: int, trial_id: int) -> list[WinnerReport]:
    """Every winner with their report's state; ``missing``: no report and the deadline passed,
    ``late``: reported after the deadline."""
    trial = get_trial(db, tenant_id=tenant_id, trial_id=trial_id)
    winners = list(
        db.scalars(
            select(t.Application)
            .where(
                t.Application.tenant_id == tenant_id,
                t.Application.trial_id == trial.id,
                t.Application.status == t.WON,
            )
            .order_by(t.Application.rank)
        )
    )
    reports = {
        r.application_id: r
        for r in db.scalars(
            select(t.Report).where(t.Report.tenant_id == tenant_id, t.Report.trial_id == trial.id)
        )
    }
    now = clock.now()
    out = []
    for application in winners:
        report = reports.get(application.id)
        if report is None:
            state = "missing" if now > trial.report_deadline else "due"
        elif report.status == t.SUBMITTED and report.late:
            state = "late"
        else:
            state = report.status
        out.append(WinnerReport(application, report, state))
    return out

"""Admin pages (messages and deliveries, broadcasts, templates, SOP schedules) and the member
H5 inbox."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from siyu.core.errors import SiyuError
from siyu.core.i18n import gettext as _
from siyu.core.web import CsrfChecked, DbSession, TxRoute, page_member, render, requires
from siyu.members import service as members
from siyu.members.models import Member
from siyu.messaging import schedules, service
from siyu.messaging.errors import InvalidMessage
from siyu.messaging.models import FINAL_STATES, MEMBER_CHANNELS, Schedule
from siyu.tenants import service as tenants
from siyu.tenants.models import Operator, Tenant

router = APIRouter(route_class=TxRoute, include_in_schema=False)
PageMember = Annotated[Member, Depends(page_member)]
TARGETS = ("all_members", "members_tag", "all_groups", "groups_tag")


def _tenant(db: Session, tenant_id: int) -> Tenant:
    tenant = db.get(Tenant, tenant_id)
    assert tenant is not None
    return tenant


def _local(when: dt.datetime | None, tz: str) -> str:
    return when.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M") if when else "—"


def _progress(db: Session, message_id: int) -> tuple[dict[str, int], int]:
    counts = service.status_counts(db, message_id=message_id)
    total = sum(counts.values())
    done = sum(counts[s] for s in FINAL_STATES)
    return counts, (100 if total == 0 else done * 100 // total)


# --- messages and deliveries ------------------------------------------------------------------


@router.get("/admin/messages")
def message_list(
    request: Request,
    db: DbSession,
    op: Annotated[Operator, requires("messages.read", page=True)],
    kind: str = "",
    before_id: int | None = None,
) -> HTMLResponse:
    tenant = _tenant(db, op.tenant_id)
    rows = service.list_messages(
        db, tenant_id=op.tenant_id, kind=kind[:16] or None, before_id=before_id, limit=25
    )
    return render(
        request,
        "admin/messages.html",
        op=op,
        tenant=tenant,
        rows=[(m, *_progress(db, m.id)) for m in rows],
        kind=kind,
        local=lambda w: _local(w, tenant.timezone),
        next_before=rows[-1].id if len(rows) == 25 else None,
        can_send=tenants.can(op.role, "messages.send"),
    )


@router.get("/admin/messages/{message_id}")
def message_detail(
    request: Request,
    message_id: int,
    db: DbSession,
    op: Annotated[Operator, requires("messages.read", page=True)],
    status: str = "",
    after_id: int = 0,
) -> HTMLResponse:
    tenant = _tenant(db, op.tenant_id)
    msg = service.get_message(db, tenant_id=op.tenant_id, message_id=message_id)
    counts, progress = _progress(db, msg.id)
    deliveries = service.list_deliveries(
        db,
        tenant_id=op.tenant_id,
        message_id=msg.id,
        status=status[:16] or None,
        after_id=after_id,
        limit=50,
    )
    return render(
        request,
        "admin/message_detail.html",
        op=op,
        tenant=tenant,
        msg=msg,
        counts=counts,
        progress=progress,
        deliveries=deliveries,
        status=status,
        next_after=deliveries[-1].id if len(deliveries) == 50 else None,
        target=service.Target.from_json(msg.target).describe() if msg.target else "",
        local=lambda w: _local(w, tenant.timezone),
        can_cancel=tenants.can(op.role, "messages.send")
        and msg.status not in ("done", "cancelled"),
    )


@router.post("/admin/messages/{message_id}/cancel", dependencies=[CsrfChecked])
def cancel_message(
    request: Request,
    message_id: int,
    db: DbSession,
    op: Annotated[Operator, requires("messages.send", page=True)],
) -> Response:
    service.cancel(db, tenant_id=op.tenant_id, message_id=message_id)
    return RedirectResponse(f"/admin/messages/{message_id}?notice=cancelled", status_code=303)


# --- broadcasts -------------------------------------------------------------------------------


def _broadcast_form(
    request: Request,
    db: Session,
    op: Operator,
    *,
    form: dict[str, str] | None = None,
    confirm: int | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "admin/broadcast.html",
        status_code=status_code,
        op=op,
        tenant=_tenant(db, op.tenant_id),
        templates=service.list_templates(db, tenant_id=op.tenant_id),
        tags=[t for t, _n in members.all_tags(db, tenant_id=op.tenant_id)],
        form=form or {"target": "all_members", "key": uuid.uuid4().hex},
        targets=TARGETS,
        confirm=confirm,
        error=error,
    )


@router.get("/admin/broadcasts/new")
def broadcast_form(
    request: Request, db: DbSession, op: Annotated[Operator, requires("messages.send", page=True)]
) -> HTMLResponse:
    return _broadcast_form(request, db, op)


@router.post("/admin/broadcasts", dependencies=[CsrfChecked])
def create_broadcast(
    request: Request,
    db: DbSession,
    op: Annotated[Operator, requires("messages.send", page=True)],
    target: Annotated[str, Form(max_length=16)] = "all_members",
    tag: Annotated[str, Form(max_length=40)] = "",
    template: Annotated[str, Form(max_length=64)] = "",
    title: Annotated[str, Form(max_length=200)] = "",
    body: Annotated[str, Form(max_length=10_000)] = "",
    send_at: Annotated[str, Form(max_length=20)] = "",
    confirmed: Annotated[str, Form(max_length=12)] = "",
    key: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Two steps: the first post shows the recipient count; the confirmed post sends."""
    form = {
        "target": target,
        "tag": tag,
        "template": template,
        "title": title,
        "body": body,
        "send_at": send_at,
        "key": key or uuid.uuid4().hex,
    }
    tenant = _tenant(db, op.tenant_id)
    try:
        if target not in TARGETS:
            raise InvalidMessage(field="target", problem=_("choose a target"))
        tgt = service.Target(kind=target, tag=tag.strip())
        when = None
        if send_at.strip():
            try:
                when = dt.datetime.fromisoformat(send_at.strip()).replace(
                    tzinfo=ZoneInfo(tenant.timezone)
                )
            except ValueError:
                raise InvalidMessage(
                    field="send_at", problem=_("a time like 2026-11-27T19:30")
                ) from None
        count = service.count_recipients(db, tenant_id=op.tenant_id, target=tgt)
        if not template and not body.strip():
            raise InvalidMessage(field="body", problem=_("a template or a body is required"))
        if confirmed != str(count):
            return _broadcast_form(request, db, op, form=form, confirm=count)
        msg = service.send(
            db,
            tenant_id=op.tenant_id,
            purpose=f"broadcast:{form['key']}",
            target=tgt,
            template=template or None,
            title=title,
            body=body,
            send_at=when,
            kind="broadcast",
            channels=None if tgt.is_groups else (["subscribe", "inbox"] if template else ["inbox"]),
            created_by=f"operator:{op.id}",
        )
    except SiyuError as err:
        return _broadcast_form(request, db, op, form=form, error=err.message(), status_code=422)
    return RedirectResponse(f"/admin/messages/{msg.id}?notice=broadcast", status_code=303)


# --- templates --------------------------------------------------------------------------------


def _template_page(
    request: Request,
    db: Session,
    op: Operator,
    *,
    form: dict[str, Any] | None = None,
    preview: service.Rendered | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "admin/templates.html",
        status_code=status_code,
        op=op,
        tenant=_tenant(db, op.tenant_id),
        templates=service.list_templates(db, tenant_id=op.tenant_id),
        form=form or {},
        preview=preview,
        can_manage=tenants.can(op.role, "messages.manage"),
        error=error,
    )


@router.get("/admin/message-templates")
def template_list(
    request: Request,
    db: DbSession,
    op: Annotated[Operator, requires("messages.read", page=True)],
    key: str = "",
) -> HTMLResponse:
    form: dict[str, Any] = {}
    if key:
        t = service.get_template(db, tenant_id=op.tenant_id, key=key[:64])
        sub = t.subscribe or {}
        form = {
            "key": t.key,
            "name": t.name,
            "title": t.title,
            "body": t.body,
            "robot_format": t.robot_format,
            "sub_template_id": sub.get("template_id", ""),
            "sub_data": "\n".join(f"{k}={v}" for k, v in (sub.get("data") or {}).items()),
        }
    return _template_page(request, db, op, form=form)


@router.post("/admin/message-templates", dependencies=[CsrfChecked])
def save_template(
    request: Request,
    db: DbSession,
    op: Annotated[Operator, requires("messages.manage", page=True)],
    key: Annotated[str, Form(max_length=64)] = "",
    name: Annotated[str, Form(max_length=100)] = "",
    title: Annotated[str, Form(max_length=200)] = "",
    body: Annotated[str, Form(max_length=10_000)] = "",
    robot_format: Annotated[str, Form(max_length=16)] = "text",
    sub_template_id: Annotated[str, Form(max_length=64)] = "",
    sub_data: Annotated[str, Form(max_length=2000)] = "",
    member_id: Annotated[str, Form(max_length=12)] = "",
    action: Annotated[str, Form(max_length=16)] = "save",
) -> Response:
    """Save a template, or (action=preview) render it for a member first."""
    form = {
        "key": key,
        "name": name,
        "title": title,
        "body": body,
        "robot_format": robot_format,
        "sub_template_id": sub_template_id,
        "sub_data": sub_data,
        "member_id": member_id,
    }
    data: dict[str, str] = {}
    for line in sub_data.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            data[k.strip()] = v.strip()
    subscribe = (
        {"template_id": sub_template_id.strip(), "page": "", "data": data}
        if (sub_template_id.strip())
        else None
    )
    try:
        if action == "preview":
            from siyu.messaging.models import MessageTemplate

            draft = MessageTemplate(subscribe=subscribe)
            rendered = service.preview(
                db,
                tenant_id=op.tenant_id,
                member_id=int(member_id) if member_id.strip().isdigit() else None,
                title=title,
                body=body,
                template=draft,
            )
            return _template_page(request, db, op, form=form, preview=rendered)
        service.save_template(
            db,
            tenant_id=op.tenant_id,
            key=key.strip(),
            name=name,
            title=title,
            body=body,
            robot_format=robot_format,
            subscribe=subscribe,
        )
    except SiyuError as err:
        return _template_page(request, db, op, form=form, error=err.message(), status_code=422)
    return RedirectResponse("/admin/message-templates?notice=saved", status_code=303)


# --- schedules --------------------------------------------------------------------------------


def _schedules_page(
    request: Request,
    db: Session,
    op: Operator,
    *,
    form: dict[str, Any] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    tenant = _tenant(db, op.tenant_id)
    tz = ZoneInfo(tenant.timezone)
    rows: list[tuple[Schedule, list[str], dict[str, Any]]] = [
        (
            s,
            [] if s.paused else [_local(w, tenant.timezone) for w in schedules.next_runs(s, tz)],
            schedules.describe(s),
        )
        for s in schedules.list_schedules(db, tenant_id=op.tenant_id)
    ]
    return render(
        request,
        "admin/schedules.html",
        status_code=status_code,
        op=op,
        tenant=tenant,
        rows=rows,
        templates={t.id: t for t in service.list_templates(db, tenant_id=op.tenant_id)},
        form=form or {"kind": "daily", "target": "all_members"},
        targets=TARGETS,
        weekdays=schedules.WEEKDAYS,
        can_manage=tenants.can(op.role, "messages.manage"),
        error=error,
    )


@router.get("/admin/schedules")
def schedule_list(
    request: Request, db: DbSession, op: Annotated[Operator, requires("messages.read", page=True)]
) -> HTMLResponse:
    return _schedules_page(request, db, op)


@router.post("/admin/schedules", dependencies=[CsrfChecked])
def save_schedule(
    request: Request,
    db: DbSession,
    op: Annotated[Operator, requires("messages.manage", page=True)],
    key: Annotated[str, Form(max_length=64)] = "",
    name: Annotated[str, Form(max_length=100)] = "",
    kind: Annotated[str, Form(max_length=16)] = "daily",
    time: Annotated[str, Form(max_length=5)] = "",
    weekdays: Annotated[list[str] | None, Form()] = None,
    cron: Annotated[str, Form(max_length=100)] = "",
    template: Annotated[str, Form(max_length=64)] = "",
    target: Annotated[str, Form(max_length=16)] = "all_members",
    tag: Annotated[str, Form(max_length=40)] = "",
    quiet_start: Annotated[str, Form(max_length=5)] = "",
    quiet_end: Annotated[str, Form(max_length=5)] = "",
    grace_minutes: Annotated[str, Form(max_length=5)] = "30",
) -> Response:
    form = {
        "key": key,
        "name": name,
        "kind": kind,
        "time": time,
        "weekdays": weekdays or [],
        "cron": cron,
        "template": template,
        "target": target,
        "tag": tag,
        "quiet_start": quiet_start,
        "quiet_end": quiet_end,
        "grace_minutes": grace_minutes,
    }
    try:
        tgt = service.Target(kind=target if target in TARGETS else "", tag=tag.strip())
        schedules.save_schedule(
            db,
            tenant_id=op.tenant_id,
            key=key.strip() or f"sop-{uuid.uuid4().hex[:8]}",
            name=name,
            kind=kind,
            time=time,
            weekdays=weekdays or [],
            cron=cron,
            template_key=template,
            target=tgt,
            channels=[] if tgt.is_groups else [c for c in MEMBER_CHANNELS if c != "oa_template"],
            quiet_start=quiet_start.strip(),
            quiet_end=quiet_end.strip(),
            grace_minutes=int(grace_minutes) if grace_minutes.strip().isdigit() else -1,
        )
    except SiyuError as err:
        return _schedules_page(request, db, op, form=form, error=err.message(), status_code=422)
    return RedirectResponse("/admin/schedules?notice=saved", status_code=303)


@router.post("/admin/schedules/defaults", dependencies=[CsrfChecked])
def install_default_schedules(
    db: DbSession, op: Annotated[Operator, requires("messages.manage", page=True)]
) -> Response:
    schedules.install_defaults(db, tenant_id=op.tenant_id)
    return RedirectResponse("/admin/schedules?notice=defaults", status_code=303)


@router.post("/admin/schedules/{schedule_id}/pause", dependencies=[CsrfChecked])
def toggle_schedule(
    request: Request,
    schedule_id: int,
    db: DbSession,
    op: Annotated[Operator, requires("messages.manage", page=True)],
    paused: Annotated[str, Form(max_length=5)] = "1",
) -> Response:
    schedules.set_paused(db, tenant_id=op.tenant_id, schedule_id=schedule_id, paused=paused == "1")
    return RedirectResponse("/admin/schedules?notice=saved", status_code=303)


# --- member H5 inbox --------------------------------------------------------------------------


@router.get("/m/{slug}/messages")
def member_messages(
    request: Request, slug: str, db: DbSession, member: PageMember, before_id: int | None = None
) -> HTMLResponse:
    """The member's inbox, newest first; what is shown is marked read."""
    tenant = _tenant(db, member.tenant_id)
    items = service.list_inbox(
        db, tenant_id=tenant.id, member_id=member.id, before_id=before_id, limit=20
    )
    unread = {i.id for i in items if i.read_at is None}
    service.mark_read(db, tenant_id=tenant.id, member_id=member.id, item_ids=sorted(unread))
    return render(
        request,
        "m/messages.html",
        tenant=tenant,
        slug=slug,
        member=member,
        items=items,
        unread=unread,
        local=lambda w: _local(w, tenant.timezone),
        next_before=items[-1].id if len(items) == 20 else None,
    )

"""Messaging REST API: send and follow messages, broadcasts, templates, SOP schedules,
consents, WeCom groups; a member's own inbox."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from siyu.core import clock
from siyu.core.errors import Forbidden
from siyu.core.web import DbSession, TxRoute, api_member, problems, requires
from siyu.members.errors import MemberNotFound
from siyu.members.models import Member
from siyu.messaging import schedules, service
from siyu.messaging.errors import (
    GroupNotFound,
    InvalidMessage,
    InvalidSchedule,
    InvalidTemplate,
    MessageNotFound,
    NotCancellable,
    ScheduleNotFound,
    TemplateExists,
    TemplateNotFound,
)
from siyu.messaging.models import FINAL_STATES, Message, MessageTemplate, Schedule, WecomGroup
from siyu.messaging.schemas import (
    BroadcastIn,
    ConsentIn,
    ConsentRead,
    CountsRead,
    DeliveryPage,
    DeliveryRead,
    GroupIn,
    GroupRead,
    InboxItemRead,
    InboxPage,
    MessageDetail,
    MessagePage,
    MessageRead,
    PreviewIn,
    PreviewRead,
    ReadIn,
    RecipientCount,
    ScheduleIn,
    ScheduleRead,
    SendIn,
    TargetIn,
    TemplateIn,
    TemplateRead,
)
from siyu.tenants.models import Operator, Tenant

router = APIRouter(prefix="/api/v1", route_class=TxRoute, tags=["messages"])
CurrentMember = Annotated[Member, Depends(api_member)]
Reader = Annotated[Operator, requires("messages.read")]
Sender = Annotated[Operator, requires("messages.send")]
Manager = Annotated[Operator, requires("messages.manage")]


def _target(t: TargetIn) -> service.Target:
    return service.Target(kind=t.kind, tag=t.tag, member_ids=tuple(t.member_ids))


def message_detail(db: Session, msg: Message) -> MessageDetail:
    counts = service.status_counts(db, message_id=msg.id)
    done = sum(counts[s] for s in FINAL_STATES)
    total = sum(counts.values())
    return MessageDetail(
        **MessageRead.model_validate(msg).model_dump(),
        counts=CountsRead(**counts),
        progress=100 if total == 0 else done * 100 // total,
    )


# --- messages ---------------------------------------------------------------------------------


@router.post(
    "/messages",
    status_code=201,
    responses=problems(Forbidden, InvalidMessage, TemplateNotFound),
)
def send_message(body: SendIn, db: DbSession, op: Sender) -> MessageDetail:
    """Queue a message. Sending the same ``purpose`` again reaches only new recipients."""
    msg = service.send(
        db,
        tenant_id=op.tenant_id,
        purpose=body.purpose,
        member_ids=body.member_ids,
        target=_target(body.target) if body.target else None,
        template=body.template,
        title=body.title,
        body=body.body,
        context=body.context,
        channels=body.channels,
        send_at=body.send_at,
        created_by=f"operator:{op.id}",
    )
    return message_detail(db, msg)


@router.get("/messages", responses=problems(Forbidden))
def list_messages(
    db: DbSession,
    op: Reader,
    kind: Annotated[str | None, Query(max_length=16)] = None,
    before_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> MessagePage:
    rows = service.list_messages(
        db, tenant_id=op.tenant_id, kind=kind, before_id=before_id, limit=limit
    )
    return MessagePage(
        items=[MessageRead.model_validate(m) for m in rows],
        next_before_id=rows[-1].id if len(rows) == limit else None,
    )


@router.get("/messages/{message_id}", responses=problems(Forbidden, MessageNotFound))
def read_message(message_id: int, db: DbSession, op: Reader) -> MessageDetail:
    """A message with its delivery counts per status and its progress."""
    return message_detail(
        db, service.get_message(db, tenant_id=op.tenant_id, message_id=message_id)
    )


@router.get("/messages/{message_id}/deliveries", responses=problems(Forbidden, MessageNotFound))
def list_deliveries(
    message_id: int,
    db: DbSession,
    op: Reader,
    status: Annotated[str | None, Query(max_length=16)] = None,
    after_id: int = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DeliveryPage:
    rows = service.list_deliveries(
        db,
        tenant_id=op.tenant_id,
        message_id=message_id,
        status=status,
        after_id=after_id,
        limit=limit,
    )
    return DeliveryPage(
        items=[DeliveryRead.model_validate(d) for d in rows],
        next_after_id=rows[-1].id if len(rows) == limit else None,
    )


@router.post(
    "/messages/{message_id}/cancel",
    responses=problems(Forbidden, MessageNotFound, NotCancellable),
)
def cancel_message(message_id: int, db: DbSession, op: Sender) -> MessageDetail:
    """Cancel what has not gone out yet; what was sent stays sent."""
    return message_detail(db, service.cancel(db, tenant_id=op.tenant_id, message_id=message_id))


@router.post("/recipients/count", responses=problems(Forbidden, InvalidMessage))
def count_recipients(body: TargetIn, db: DbSession, op: Reader) -> RecipientCount:
    """How many recipients a target reaches now (confirm before a broadcast)."""
    target = _target(body)
    return RecipientCount(
        target=target.as_json(),
        recipients=service.count_recipients(db, tenant_id=op.tenant_id, target=target),
    )


@router.post(
    "/broadcasts",
    status_code=201,
    responses=problems(Forbidden, InvalidMessage, TemplateNotFound),
)
def create_broadcast(body: BroadcastIn, db: DbSession, op: Sender) -> MessageDetail:
    """A one-off send to a target, now or at ``send_at``; follow it on /messages/{id}."""
    msg = service.send(
        db,
        tenant_id=op.tenant_id,
        purpose=f"broadcast:{uuid.uuid4().hex}",
        target=_target(body.target),
        template=body.template,
        title=body.title,
        body=body.body,
        context=body.context,
        channels=body.channels,
        send_at=body.send_at,
        kind="broadcast",
        created_by=f"operator:{op.id}",
    )
    return message_detail(db, msg)


# --- templates --------------------------------------------------------------------------------


def _template_in(db: Session, op: Operator, body: TemplateIn, *, create: bool) -> MessageTemplate:
    return service.save_template(
        db,
        tenant_id=op.tenant_id,
        key=body.key,
        name=body.name,
        title=body.title,
        body=body.body,
        robot_format=body.robot_format,
        subscribe=body.subscribe.model_dump() if body.subscribe else None,
        oa_template=body.oa_template.model_dump() if body.oa_template else None,
        create_only=create,
    )


@router.get("/message-templates", responses=problems(Forbidden))
def list_templates(db: DbSession, op: Reader) -> list[TemplateRead]:
    return [
        TemplateRead.model_validate(t) for t in service.list_templates(db, tenant_id=op.tenant_id)
    ]


@router.post(
    "/message-templates",
    status_code=201,
    responses=problems(Forbidden, InvalidTemplate, TemplateExists),
)
def create_template(body: TemplateIn, db: DbSession, op: Manager) -> TemplateRead:
    """Save a template; one that breaks a channel's field limit is refused."""
    return TemplateRead.model_validate(_template_in(db, op, body, create=True))


@router.get("/message-templates/{template_id}", responses=problems(Forbidden, TemplateNotFound))
def read_template(template_id: int, db: DbSession, op: Reader) -> TemplateRead:
    return TemplateRead.model_validate(
        service.get_template_by_id(db, tenant_id=op.tenant_id, template_id=template_id)
    )


@router.put(
    "/message-templates/{template_id}",
    responses=problems(Forbidden, TemplateNotFound, InvalidTemplate, TemplateExists),
)
def update_template(template_id: int, body: TemplateIn, db: DbSession, op: Manager) -> TemplateRead:
    row = service.get_template_by_id(db, tenant_id=op.tenant_id, template_id=template_id)
    if body.key != row.key:
        raise InvalidTemplate(field="key", problem="the key of a template cannot change")
    return TemplateRead.model_validate(_template_in(db, op, body, create=False))


@router.post(
    "/message-templates/preview",
    responses=problems(Forbidden, InvalidTemplate, InvalidMessage, MemberNotFound),
)
def preview_template(body: PreviewIn, db: DbSession, op: Reader) -> PreviewRead:
    """Render text for one member (or a sample member) before saving or sending it."""
    r = service.preview(
        db,
        tenant_id=op.tenant_id,
        member_id=body.member_id,
        title=body.title,
        body=body.body,
        context=body.context,
    )
    return PreviewRead(title=r.title, body=r.body, subscribe=r.subscribe)


# --- schedules --------------------------------------------------------------------------------


def schedule_read(db: Session, s: Schedule) -> ScheduleRead:
    tenant = db.get(Tenant, s.tenant_id)
    assert tenant is not None
    from zoneinfo import ZoneInfo

    out = ScheduleRead.model_validate(s)
    out.next_runs = [] if s.paused else schedules.next_runs(s, ZoneInfo(tenant.timezone))
    return out


def _schedule_in(db: Session, op: Operator, body: ScheduleIn) -> Schedule:
    return schedules.save_schedule(
        db,
        tenant_id=op.tenant_id,
        key=body.key,
        name=body.name,
        kind=body.kind,
        time=body.time,
        weekdays=body.weekdays,
        cron=body.cron,
        template_key=body.template,
        target=_target(body.target),
        channels=body.channels,
        quiet_start=body.quiet_start,
        quiet_end=body.quiet_end,
        grace_minutes=body.grace_minutes,
        paused=body.paused,
    )


@router.get("/schedules", responses=problems(Forbidden))
def list_schedules(db: DbSession, op: Reader) -> list[ScheduleRead]:
    return [schedule_read(db, s) for s in schedules.list_schedules(db, tenant_id=op.tenant_id)]


@router.post(
    "/schedules",
    status_code=201,
    responses=problems(Forbidden, InvalidSchedule, InvalidMessage, TemplateNotFound),
)
def save_schedule(body: ScheduleIn, db: DbSession, op: Manager) -> ScheduleRead:
    """Create or update (by key) a recurring SOP in the tenant's timezone."""
    return schedule_read(db, _schedule_in(db, op, body))


@router.post("/schedules/defaults", responses=problems(Forbidden))
def install_default_schedules(db: DbSession, op: Manager) -> list[ScheduleRead]:
    """Add the ready-made daily rhythm (10:00 check-in reminder, 13:00 live preview, 19:30 "we
    are live", each paused until resumed) where it is missing: a tenant created before it
    shipped, or one that deleted a piece. Existing schedules and templates are left as they
    are; repeating it changes nothing."""
    return [schedule_read(db, s) for s in schedules.install_defaults(db, tenant_id=op.tenant_id)]


@router.get("/schedules/{schedule_id}", responses=problems(Forbidden, ScheduleNotFound))
def read_schedule(schedule_id: int, db: DbSession, op: Reader) -> ScheduleRead:
    """A schedule with its next five run times."""
    return schedule_read(
        db, schedules.get_schedule(db, tenant_id=op.tenant_id, schedule_id=schedule_id)
    )


@router.post("/schedules/{schedule_id}/pause", responses=problems(Forbidden, ScheduleNotFound))
def pause_schedule(schedule_id: int, db: DbSession, op: Manager) -> ScheduleRead:
    return schedule_read(
        db, schedules.set_paused(db, tenant_id=op.tenant_id, schedule_id=schedule_id, paused=True)
    )


@router.post("/schedules/{schedule_id}/resume", responses=problems(Forbidden, ScheduleNotFound))
def resume_schedule(schedule_id: int, db: DbSession, op: Manager) -> ScheduleRead:
    """Resume from the next run after now (runs missed while paused are not sent)."""
    return schedule_read(
        db,
        schedules.set_paused(db, tenant_id=op.tenant_id, schedule_id=schedule_id, paused=False),
    )


# --- consents and groups ----------------------------------------------------------------------


@router.post(
    "/members/{member_id}/consents",
    responses=problems(Forbidden, MemberNotFound, InvalidMessage),
)
def add_consent(member_id: int, body: ConsentIn, db: DbSession, op: Sender) -> ConsentRead:
    """Record subscribe-message consents a member gave (e.g. when reserving a session)."""
    c = service.record_consent(
        db,
        tenant_id=op.tenant_id,
        member_id=member_id,
        template_key=body.template_key,
        count=body.count,
    )
    return ConsentRead(template_key=c.template_key, remaining=c.remaining)


def group_read(g: WecomGroup) -> GroupRead:
    return GroupRead(
        id=g.id,
        chat_id=g.chat_id,
        name=g.name,
        owner_userid=g.owner_userid,
        has_robot=bool(g.robot_key),
        tags=list(g.tags or []),
    )


@router.get("/wecom-groups", responses=problems(Forbidden))
def list_groups(db: DbSession, op: Reader) -> list[GroupRead]:
    return [group_read(g) for g in service.list_groups(db, tenant_id=op.tenant_id)]


@router.post("/wecom-groups", responses=problems(Forbidden, InvalidMessage))
def save_group(body: GroupIn, db: DbSession, op: Manager) -> GroupRead:
    """Create or update (by chat id) a WeCom customer group and its robot webhook key."""
    return group_read(
        service.save_group(
            db,
            tenant_id=op.tenant_id,
            chat_id=body.chat_id,
            name=body.name,
            owner_userid=body.owner_userid,
            robot_key=body.robot_key,
            tags=body.tags,
        )
    )


@router.get("/wecom-groups/{group_id}", responses=problems(Forbidden, GroupNotFound))
def read_group(group_id: int, db: DbSession, op: Reader) -> GroupRead:
    return group_read(service.get_group(db, tenant_id=op.tenant_id, group_id=group_id))


# --- a member's own inbox ---------------------------------------------------------------------


@router.get("/me/messages", responses=problems())
def my_messages(
    db: DbSession,
    member: CurrentMember,
    before_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> InboxPage:
    rows = service.list_inbox(
        db, tenant_id=member.tenant_id, member_id=member.id, before_id=before_id, limit=limit
    )
    return InboxPage(
        items=[InboxItemRead.model_validate(i) for i in rows],
        unread=service.unread_count(db, tenant_id=member.tenant_id, member_id=member.id),
        next_before_id=rows[-1].id if len(rows) == limit else None,
    )


@router.post("/me/messages/read", responses=problems())
def mark_read(body: ReadIn, db: DbSession, member: CurrentMember) -> dict[str, Any]:
    """Mark some of my inbox items read (ids of other members' items are ignored)."""
    n = service.mark_read(db, tenant_id=member.tenant_id, member_id=member.id, item_ids=body.ids)
    return {"marked": n, "at": clock.now().isoformat()}


@router.post("/me/consents", responses=problems(InvalidMessage))
def my_consent(body: ConsentIn, db: DbSession, member: CurrentMember) -> ConsentRead:
    """The mini program reports a ``wx.requestSubscribe`` acceptance."""
    c = service.record_consent(
        db,
        tenant_id=member.tenant_id,
        member_id=member.id,
        template_key=body.template_key,
        count=body.count,
    )
    return ConsentRead(template_key=c.template_key, remaining=c.remaining)

"""Messaging: the one engine every notice, SOP and broadcast goes through.

Public API for other domains (call it inside your own transaction; nothing is sent unless it
commits):

``send(db, *, tenant_id, purpose, member_ids=… | target=…, template=… | title/body,
context=…, channels=…) -> Message``
    Writes the message and one ``Delivery`` per recipient (the outbox) and enqueues the
    dispatch after commit. ``purpose`` names what the message is for (``"live:42:on-sale"``);
    each (purpose, recipient) is delivered at most once, so calling ``send`` again with the same
    purpose (a re-trigger, a retried request, a re-run job) adds only recipients not yet
    reached and returns the same message. ``member_ids`` are written inline; a ``Target``
    (all members, members with a tag, all groups, groups with a tag) is expanded by a worker in
    chunks, so a 100,000-member broadcast commits at once and starts going out within a second.

``record_consent(db, *, tenant_id, member_id, template_key, count=1) -> Consent``
    A member agreed (``wx.requestSubscribe``) to receive ``count`` more subscribe messages of
    one template. Sending consumes one; without one the member gets the message in the inbox.

Flow of a delivery::

    send ──► queued ──claim (lease)──► sending ──► sent | failed | undeliverable
               ▲                          │ retryable error: back to queued with backoff
               └──── lease expired (worker killed) ─┘       queued ──cancel──► cancelled

Workers (``tasks.dispatch``) claim batches with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL) or under
SQLite's write lock. Inbox deliveries are written and marked sent in the claiming transaction:
exactly once, whatever dies when. External sends are marked ``sending`` with a lease first and
their outcome recorded after the call; a worker killed in between leaves them ``sending`` until
the lease runs out, then they are sent again — and for subscribe messages WeChat itself refuses
the second one (the member's single consent is spent, 43101), which is recorded as delivered.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from typing import cast as typecast

from sqlalchemy import String, and_, cast, func, literal, or_, select, text, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from siyu.core import clock
from siyu.core.db import after_commit, in_ids
from siyu.core.i18n import gettext as _
from siyu.core.settings import get_settings
from siyu.members.models import Member, MemberTag
from siyu.messaging import render as tpl
from siyu.messaging.errors import (
    GroupNotFound,
    InvalidMessage,
    InvalidTemplate,
    MessageNotFound,
    NotCancellable,
    TemplateExists,
    TemplateNotFound,
)
from siyu.messaging.models import (
    ACTIVE,
    AWAITING_OWNER,
    CANCELLED,
    CHANNELS,
    CONFIRMED,
    DONE,
    EXPANDING,
    FAILED,
    FINAL_STATES,
    GROUP_CHANNELS,
    GROUP_MASS,
    INBOX,
    MEMBER_CHANNELS,
    OA_TEMPLATE,
    OWNER_WAIT,
    QUEUED,
    ROBOT,
    SCHEDULED,
    SENDING,
    SENT,
    SUBSCRIBE,
    UNDELIVERABLE,
    Consent,
    Delivery,
    InboxItem,
    Message,
    MessageTemplate,
    WecomGroup,
)
from siyu.tenants.models import Tenant

log = logging.getLogger("siyu.messaging")

MAX_ATTEMPTS = 5
EXPAND_CHUNK = 5000
FIRST_CHUNK = 200
TARGET_KINDS = ("members", "all_members", "members_tag", "all_groups", "groups_tag")


@dataclass(frozen=True)
class TargetKind:
    """A target kind another domain registers (``register_target``) so messaging can expand it
    without importing that domain: ``members(tenant_id, ref)`` is a SELECT of member ids (the
    expansion worker inserts from it in chunks, nothing passes inline), ``context(db,
    tenant_id, ref, member_ids)`` adds per-recipient template variables at dispatch and
    ``expanded(db, tenant_id, ref, after, upto)`` runs in the transaction that wrote the
    deliveries of the member ids in (after, upto], so the domain can stamp its own rows chunk by
    chunk instead of all at once; ``settled(db, tenant_id, ref, delivery_ids)`` runs in the
    transaction that gave those deliveries their final status (sent, failed, undeliverable)."""

    label: Any  # a lazy string (`_l`); "{ref}" is replaced by the target's ref
    members: Callable[[int, str], Any]
    context: Callable[[Session, int, str, list[int]], dict[int, dict[str, Any]]] | None = None
    expanded: Callable[[Session, int, str, int, int], None] | None = None
    settled: Callable[[Session, int, str, list[int]], None] | None = None


_REGISTERED: dict[str, TargetKind] = {}


def register_target(
    kind: str,
    *,
    label: Any,
    members: Callable[[int, str], Any],
    context: Callable[[Session, int, str, list[int]], dict[int, dict[str, Any]]] | None = None,
    expanded: Callable[[Session, int, str, int, int], None] | None = None,
    settled: Callable[[Session, int, str, list[int]], None] | None = None,
) -> None:
    """Register (idempotently) a member target kind resolved by another domain."""
    if kind in TARGET_KINDS:
        raise ValueError(f"{kind} is a built-in target kind")
    _REGISTERED[kind] = TargetKind(
        label=label, members=members, context=context, expanded=expanded, settled=settled
    )


@dataclass(frozen=True)
class Target:
    """Who a message goes to: listed members, all members, members with a tag, all WeCom
    groups or groups with a tag."""

    kind: str
    tag: str = ""
    member_ids: tuple[int, ...] = ()
    ref: str = ""  # what a registered kind targets (e.g. a live product's id)

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS and self.kind not in _REGISTERED:
            raise InvalidMessage(
                field="target", problem=_("unknown target {kind}").format(kind=self.kind)
            )
        if self.kind in ("members_tag", "groups_tag") and not self.tag.strip():
            raise InvalidMessage(field="target.tag", problem=_("a tag is required"))

    @property
    def is_groups(self) -> bool:
        return self.kind in ("all_groups", "groups_tag")

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.tag:
            out["tag"] = self.tag
        if self.kind == "members":
            out["member_ids"] = list(self.member_ids)
        if self.ref:
            out["ref"] = self.ref
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Target:
        return cls(
            kind=str(data.get("kind", "")),
            tag=str(data.get("tag", "")),
            member_ids=tuple(int(i) for i in data.get("member_ids") or ()),
            ref=str(data.get("ref", "")),
        )

    def describe(self) -> str:
        if self.kind in _REGISTERED:
            return str(_REGISTERED[self.kind].label).format(ref=self.ref)
        return {
            "members": _("Chosen members"),
            "all_members": _("All members"),
            "members_tag": _("Members tagged {tag}"),
            "all_groups": _("All groups"),
            "groups_tag": _("Groups tagged {tag}"),
        }[self.kind].format(tag=self.tag)


# --- templates --------------------------------------------------------------------------------


def _key_ok(key: str) -> bool:
    return bool(key) and len(key) <= 64 and all(c.isalnum() or c in "_-.:" for c in key)


def _check_template(
    *,
    name: str,
    title: str,
    body: str,
    robot_format: str,
    subscribe: dict[str, Any] | None,
    oa_template: dict[str, Any] | None,
) -> None:
    if not name.strip():
        raise InvalidTemplate(field="name", problem=_("required"))
    if not body.strip() and not (subscribe or {}).get("data"):
        raise InvalidTemplate(field="body", problem=_("required"))
    if robot_format not in ("text", "markdown"):
        raise InvalidTemplate(field="robot_format", problem=_("text or markdown"))
    for fld, cfg in (("subscribe", subscribe), ("oa_template", oa_template)):
        if cfg is None:
            continue
        if not str(cfg.get("template_id") or "").strip():
            raise InvalidTemplate(field=f"{fld}.template_id", problem=_("required"))
        if not isinstance(cfg.get("data"), dict) or not cfg["data"]:
            raise InvalidTemplate(field=f"{fld}.data", problem=_("at least one field"))
    sources = [("title", title), ("body", body)]
    for fld, cfg in (("subscribe", subscribe), ("oa_template", oa_template)):
        for k, v in ((cfg or {}).get("data") or {}).items():
            sources.append((f"{fld}.data.{k}", str(v)))
    for fld, source in sources:
        try:  # valid, and renders (``{{ foo() }}`` parses, then fails when called)
            tpl.render(source, tpl.SAMPLE_CONTEXT)
        except tpl.RenderError as err:
            raise InvalidTemplate(field=fld, problem=str(err)) from None
    problems = tpl.limit_problems(
        title=title,
        body=body,
        robot_format=robot_format,
        subscribe=subscribe,
        oa_template=oa_template,
    )
    if problems:
        fld, problem = problems[0]
        raise InvalidTemplate(field=fld, problem=problem)


def save_template(
    db: Session,
    *,
    tenant_id: int,
    key: str,
    name: str,
    body: str,
    title: str = "",
    robot_format: str = "text",
    subscribe: dict[str, Any] | None = None,
    oa_template: dict[str, Any] | None = None,
    create_only: bool = False,
) -> MessageTemplate:
    """Create or update the template ``key``. Raises InvalidTemplate when the text does not
    parse or, rendered with a sample member and live session, breaks a channel's limit
    (subscribe ``thing`` ≤ 20 characters, robot text ≤ 2048 bytes…)."""
    if not _key_ok(key):
        raise InvalidTemplate(field="key", problem=_("1–64 letters, digits, '_', '-', '.', ':'"))
    _check_template(
        name=name,
        title=title,
        body=body,
        robot_format=robot_format,
        subscribe=subscribe,
        oa_template=oa_template,
    )
    found = find_template(db, tenant_id=tenant_id, key=key)
    if found is not None and create_only:
        raise TemplateExists(key=key)
    row = found or MessageTemplate(tenant_id=tenant_id, key=key, created_at=clock.now())
    row.name, row.title, row.body = name.strip(), title, body
    row.robot_format, row.subscribe, row.oa_template = robot_format, subscribe, oa_template
    row.updated_at = clock.now()
    if found is None:
        try:
            with db.begin_nested():
                db.add(row)
        except IntegrityError:
            raise TemplateExists(key=key) from None
    db.flush()
    return row


def find_template(db: Session, *, tenant_id: int, key: str) -> MessageTemplate | None:
    return db.scalar(
        select(MessageTemplate).where(
            MessageTemplate.tenant_id == tenant_id, MessageTemplate.key == key
        )
    )


def get_template(db: Session, *, tenant_id: int, key: str) -> MessageTemplate:
    found = find_template(db, tenant_id=tenant_id, key=key)
    if found is None:
        raise TemplateNotFound(template=key)
    return found


def get_template_by_id(db: Session, *, tenant_id: int, template_id: int) -> MessageTemplate:
    row = db.get(MessageTemplate, template_id)
    if row is None or row.tenant_id != tenant_id:
        raise TemplateNotFound(template=template_id)
    return row


def list_templates(db: Session, *, tenant_id: int) -> list[MessageTemplate]:
    return list(
        db.scalars(
            select(MessageTemplate)
            .where(MessageTemplate.tenant_id == tenant_id)
            .order_by(MessageTemplate.key)
        )
    )


@dataclass(frozen=True)
class Recipient:
    """What dispatch needs of a member: read as plain columns, not as ORM objects (which
    would also load every member's accounts)."""

    id: int
    openid: str
    nickname: str
    tags: list[str]


def _recipients(db: Session, member_ids: list[int]) -> dict[int, Recipient]:
    if not member_ids:
        return {}
    tags: dict[int, list[str]] = {}
    for mid, tag in db.execute(
        select(MemberTag.member_id, MemberTag.tag)
        .where(in_ids(db, MemberTag.member_id, member_ids))
        .order_by(MemberTag.tag)
    ):
        tags.setdefault(int(mid), []).append(str(tag))
    return {
        int(mid): Recipient(int(mid), str(openid), str(nickname), tags.get(int(mid), []))
        for mid, openid, nickname in db.execute(
            select(Member.id, Member.openid, Member.nickname).where(
                in_ids(db, Member.id, member_ids)
            )
        )
    }


def member_context(member: Member | Recipient | None, tenant: Tenant) -> dict[str, Any]:
    m = (
        {"id": member.id, "nickname": member.nickname, "tags": member.tags}
        if member is not None
        else {"id": 0, "nickname": "", "tags": []}
    )
    return {"member": m, "tenant": {"name": tenant.name}}


class SharedRenders:
    """Renders for one batch of recipients: a source that reads none of the per-recipient
    names (``member``, ``group``, a target's extras) renders the same for all, so once."""

    def __init__(self, varying: set[str]) -> None:
        self.varying = frozenset(varying)
        self._done: dict[str, str] = {}

    def render(self, source: str, context: dict[str, Any]) -> str:
        if tpl.variables(source) & self.varying:
            return tpl.render(source, context)
        if source not in self._done:
            self._done[source] = tpl.render(source, context)
        return self._done[source]


@dataclass(frozen=True)
class Rendered:
    title: str
    body: str
    subscribe: dict[str, str] = field(default_factory=dict)
    oa: dict[str, str] = field(default_factory=dict)


def render_for(
    *,
    title: str,
    body: str,
    template: MessageTemplate | None,
    context: dict[str, Any],
    channel: str = "",
    shared: SharedRenders | None = None,
) -> Rendered:
    """Render a message's text for one recipient (a missing variable renders empty): all of
    it, or only what ``channel`` carries (a subscribe message has no title or body)."""
    every = not channel
    render = shared.render if shared is not None else tpl.render
    try:
        sub = {
            k: tpl.subscribe_value(k, render(str(v), context))
            for k, v in (
                ((template.subscribe if template else None) or {}).get("data") or {}
            ).items()
            if every or channel == SUBSCRIBE
        }
        oa = {
            k: render(str(v), context)[: tpl.OA_VALUE_CHARS]
            for k, v in (
                ((template.oa_template if template else None) or {}).get("data") or {}
            ).items()
            if every or channel == OA_TEMPLATE
        }
        plain = every or channel not in (SUBSCRIBE, OA_TEMPLATE)
        return Rendered(
            title=render(title, context)[:200] if plain else "",
            body=render(body, context) if plain else "",
            subscribe=sub,
            oa=oa,
        )
    except tpl.RenderError as err:
        raise InvalidMessage(field="template", problem=str(err)) from None


def preview(
    db: Session,
    *,
    tenant_id: int,
    member_id: int | None,
    title: str,
    body: str,
    context: dict[str, Any] | None = None,
    template: MessageTemplate | None = None,
) -> Rendered:
    """Render text for one member (or a sample member) before it is saved or sent."""
    from siyu.members import service as members

    tenant = db.get(Tenant, tenant_id)
    assert tenant is not None
    member = members.get_member(db, tenant_id=tenant_id, member_id=member_id) if member_id else None
    ctx = {**tpl.SAMPLE_CONTEXT, **(context or {}), **member_context(member, tenant)}
    if member is None:
        ctx["member"] = tpl.SAMPLE_CONTEXT["member"]
    for fld, source in (("title", title), ("body", body)):
        try:
            tpl.check(source)
        except tpl.RenderError as err:
            raise InvalidTemplate(field=fld, problem=str(err)) from None
    return render_for(title=title, body=body, template=template, context=ctx)


# --- consent ----------------------------------------------------------------------------------


def record_consent(
    db: Session, *, tenant_id: int, member_id: int, template_key: str, count: int = 1
) -> Consent:
    """Add ``count`` consents of ``member_id`` for the subscribe template ``template_key``."""
    from siyu.members import service as members

    if not 1 <= count <= 1000:
        raise InvalidMessage(field="count", problem=_("1 to 1000"))
    if not template_key or len(template_key) > 64:
        raise InvalidMessage(field="template_key", problem=_("1–64 characters"))
    members.get_member(db, tenant_id=tenant_id, member_id=member_id)
    cond = and_(
        Consent.tenant_id == tenant_id,
        Consent.member_id == member_id,
        Consent.template_key == template_key,
    )
    # Conditional increment: two concurrent grants both count.
    hit = rowcount(
        db.execute(
            update(Consent)
            .where(cond)
            .values(remaining=Consent.remaining + count, updated_at=clock.now())
            .execution_options(synchronize_session=False)
        )
    )
    if not hit:
        try:
            with db.begin_nested():
                db.add(
                    Consent(
                        tenant_id=tenant_id,
                        member_id=member_id,
                        template_key=template_key,
                        remaining=count,
                        updated_at=clock.now(),
                    )
                )
        except IntegrityError:  # a concurrent first grant won: add to it
            db.execute(
                update(Consent)
                .where(cond)
                .values(remaining=Consent.remaining + count)
                .execution_options(synchronize_session=False)
            )
    row = db.scalar(select(Consent).where(cond))
    assert row is not None
    db.refresh(row)
    return row


def consents_of(db: Session, *, tenant_id: int, member_id: int) -> dict[str, int]:
    rows = db.execute(
        select(Consent.template_key, Consent.remaining).where(
            Consent.tenant_id == tenant_id, Consent.member_id == member_id
        )
    )
    return {k: int(n) for k, n in rows}


# --- send -------------------------------------------------------------------------------------


def rowcount(result: Any) -> int:
    """Rows an UPDATE matched (typed access to CursorResult.rowcount)."""
    return int(typecast("CursorResult[Any]", result).rowcount or 0)


def _insert(db: Session) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert


def _default_channels(template: MessageTemplate | None, groups: bool) -> list[str]:
    if groups:
        return [ROBOT]
    out = []
    if template is not None and template.subscribe:
        out.append(SUBSCRIBE)
    return [*out, INBOX]


def send(
    db: Session,
    *,
    tenant_id: int,
    purpose: str,
    member_ids: Sequence[int] | None = None,
    target: Target | None = None,
    template: str | MessageTemplate | None = None,
    title: str = "",
    body: str = "",
    context: dict[str, Any] | None = None,
    channels: Sequence[str] | None = None,
    send_at: dt.datetime | None = None,
    kind: str = "api",
    created_by: str = "",
    schedule_id: int | None = None,
) -> Message:
    """Queue ``purpose`` for ``member_ids`` or a ``target``; idempotent per (purpose,
    recipient). Raises InvalidMessage, TemplateNotFound."""
    purpose = (purpose or "").strip()
    if not purpose or len(purpose) > 200:
        raise InvalidMessage(field="purpose", problem=_("1–200 characters"))
    if (member_ids is None) == (target is None):
        raise InvalidMessage(field="target", problem=_("give member_ids or a target"))
    if target is None:
        target = Target(kind="members", member_ids=tuple(int(i) for i in member_ids or ()))
    if isinstance(template, str):
        template = get_template(db, tenant_id=tenant_id, key=template)
    if template is not None:
        title = title or template.title
        body = body or template.body
    if not body.strip() and template is None:
        raise InvalidMessage(field="body", problem=_("a template or a body is required"))
    for fld, source in (("title", title), ("body", body)):
        try:
            tpl.check(source)
        except tpl.RenderError as err:
            raise InvalidMessage(field=fld, problem=str(err)) from None
    chans = list(channels) if channels else _default_channels(template, target.is_groups)
    allowed = GROUP_CHANNELS if target.is_groups else MEMBER_CHANNELS
    bad = [c for c in chans if c not in allowed]
    if bad:
        raise InvalidMessage(
            field="channels",
            problem=_("{bad} cannot reach {who}").format(
                bad=", ".join(bad), who=_("groups") if target.is_groups else _("members")
            ),
        )
    now = clock.now()
    if send_at is not None and send_at.tzinfo is None:
        raise InvalidMessage(field="send_at", problem=_("give a timezone"))
    later = send_at is not None and send_at > now
    msg = find_message(db, tenant_id=tenant_id, purpose=purpose)
    if msg is None:
        msg = Message(
            tenant_id=tenant_id,
            purpose=purpose,
            kind=kind,
            template_id=template.id if template else None,
            schedule_id=schedule_id,
            title=title,
            body=body,
            context=context or {},
            channels=chans,
            target=target.as_json(),
            status=SCHEDULED if later else (ACTIVE if target.kind == "members" else EXPANDING),
            send_at=send_at,
            created_by=created_by,
            created_at=now,
        )
        try:
            with db.begin_nested():
                db.add(msg)
        except IntegrityError:  # a concurrent send of the same purpose won
            msg = find_message(db, tenant_id=tenant_id, purpose=purpose)
            assert msg is not None
    if msg.status == CANCELLED:
        return msg
    if target.kind == "members" and target.member_ids:
        added = _add_members(db, msg, list(target.member_ids))
        if added and msg.status == DONE:
            msg.status, msg.finished_at = ACTIVE, None
        if not later and added:
            _after_commit_dispatch(db, msg.id)
    elif msg.status == EXPANDING and msg.expanded_to == 0:
        from siyu.messaging import tasks

        # The first recipients are written here, so dispatch starts the moment this commits;
        # a worker writes the rest in chunks.
        if expand_chunk(db, message_id=msg.id, chunk=FIRST_CHUNK):
            after_commit(db, tasks.expand, msg.id)
    db.flush()
    return msg


def _add_members(db: Session, msg: Message, member_ids: list[int]) -> int:
    """Insert the deliveries of ``member_ids`` (of the message's tenant) not already there."""
    added = 0
    for i in range(0, len(member_ids), EXPAND_CHUNK):
        chunk = member_ids[i : i + EXPAND_CHUNK]
        added += _insert_member_deliveries(db, msg, Member.id.in_(chunk))
    if added:
        msg.total += added
    return added


def _insert_member_deliveries(db: Session, msg: Message, *cond: Any) -> int:
    now = clock.now()
    sel = select(
        literal(msg.tenant_id),
        literal(msg.id),
        literal(msg.purpose),
        literal("m:") + cast(Member.id, String),
        Member.id,
        literal(""),
        literal(QUEUED),
        literal(0),
        literal(""),
        literal(""),
        literal(""),
        literal(now, type_=Delivery.__table__.c.created_at.type),
    ).where(Member.tenant_id == msg.tenant_id, *cond)
    return _insert_select(db, sel, "member_id")


def _insert_group_deliveries(db: Session, msg: Message, *cond: Any) -> int:
    now = clock.now()
    sel = select(
        literal(msg.tenant_id),
        literal(msg.id),
        literal(msg.purpose),
        literal("g:") + cast(WecomGroup.id, String),
        WecomGroup.id,
        literal(""),
        literal(QUEUED),
        literal(0),
        literal(""),
        literal(""),
        literal(""),
        literal(now, type_=Delivery.__table__.c.created_at.type),
    ).where(WecomGroup.tenant_id == msg.tenant_id, *cond)
    return _insert_select(db, sel, "group_id")


def _insert_select(db: Session, sel: Any, owner_col: str) -> int:
    cols = [
        "tenant_id",
        "message_id",
        "purpose",
        "recipient",
        owner_col,
        "channel",
        "status",
        "attempts",
        "error_code",
        "error_message",
        "external_id",
        "created_at",
    ]
    stmt = (
        _insert(db)(Delivery)
        .from_select(cols, sel)
        .on_conflict_do_nothing(index_elements=["tenant_id", "purpose", "recipient"])
        # rowcount of INSERT … SELECT is -1 on psycopg: count what came back instead.
        .returning(Delivery.id)
    )
    return len(db.execute(stmt).all())


def _target_filter(db: Session, tenant_id: int, target: Target) -> list[Any]:
    if target.kind in _REGISTERED:
        return [Member.id.in_(_REGISTERED[target.kind].members(tenant_id, target.ref))]
    if target.kind == "members":
        return [Member.id.in_(target.member_ids)]
    if target.kind == "members_tag":
        return [
            Member.id.in_(
                select(MemberTag.member_id).where(
                    MemberTag.tenant_id == tenant_id, MemberTag.tag == target.tag
                )
            )
        ]
    if target.kind == "groups_tag":
        ids = [
            g.id
            for g in db.scalars(select(WecomGroup).where(WecomGroup.tenant_id == tenant_id))
            if target.tag in (g.tags or [])
        ]
        return [WecomGroup.id.in_(ids)]
    return []


def count_recipients(db: Session, *, tenant_id: int, target: Target) -> int:
    """How many members or groups ``target`` reaches now (the broadcast confirmation)."""
    model: Any = WecomGroup if target.is_groups else Member
    cond = _target_filter(db, tenant_id, target)
    return int(
        db.scalar(
            select(func.count()).select_from(model).where(model.tenant_id == tenant_id, *cond)
        )
        or 0
    )


def expand_chunk(db: Session, *, message_id: int, chunk: int | None = None) -> bool:
    """Write the next ``chunk`` (``EXPAND_CHUNK``) deliveries of a target message; False when
    it is complete."""
    chunk = chunk or EXPAND_CHUNK
    msg = db.get(Message, message_id, with_for_update=True)
    if msg is None or msg.status != EXPANDING:
        return False
    target = Target.from_json(msg.target)
    model: Any = WecomGroup if target.is_groups else Member
    cond = [
        model.tenant_id == msg.tenant_id,
        model.id > msg.expanded_to,
        *_target_filter(db, msg.tenant_id, target),
    ]
    upto = db.scalar(
        select(
            func.max(select(model.id).where(*cond).order_by(model.id).limit(chunk).subquery().c.id)
        )
    )
    if upto is None:
        msg.status = ACTIVE
        _finish_if_done(db, msg)
        return False
    if target.is_groups:
        added = _insert_group_deliveries(
            db, msg, WecomGroup.id > msg.expanded_to, WecomGroup.id <= upto, *cond[2:]
        )
    else:
        added = _insert_member_deliveries(
            db, msg, Member.id > msg.expanded_to, Member.id <= upto, *cond[2:]
        )
        registered = _REGISTERED.get(target.kind)
        if registered is not None and registered.expanded is not None:
            registered.expanded(db, msg.tenant_id, target.ref, msg.expanded_to, int(upto))
    msg.expanded_to = int(upto)
    msg.total += added
    db.flush()
    if added:
        _after_commit_dispatch(db, msg.id)
    return True


def _after_commit_dispatch(db: Session, message_id: int) -> None:
    from siyu.messaging import tasks

    after_commit(db, tasks.kick, message_id)


def find_message(db: Session, *, tenant_id: int, purpose: str) -> Message | None:
    return db.scalar(
        select(Message).where(Message.tenant_id == tenant_id, Message.purpose == purpose)
    )


def get_message(db: Session, *, tenant_id: int, message_id: int) -> Message:
    msg = db.get(Message, message_id)
    if msg is None or msg.tenant_id != tenant_id:
        raise MessageNotFound(message_id=message_id)
    return msg


def list_messages(
    db: Session,
    *,
    tenant_id: int,
    kind: str | None = None,
    before_id: int | None = None,
    limit: int = 20,
) -> list[Message]:
    q = select(Message).where(Message.tenant_id == tenant_id)
    if kind:
        q = q.where(Message.kind == kind)
    if before_id:
        q = q.where(Message.id < before_id)
    return list(db.scalars(q.order_by(Message.id.desc()).limit(max(1, min(limit, 200)))))


def status_counts(db: Session, *, message_id: int) -> dict[str, int]:
    rows = db.execute(
        select(Delivery.status, func.count())
        .where(Delivery.message_id == message_id)
        .group_by(Delivery.status)
    )
    counts = {s: 0 for s in (QUEUED, SENDING, SENT, FAILED, UNDELIVERABLE, CANCELLED)}
    counts.update({s: int(n) for s, n in rows})
    return counts


def list_deliveries(
    db: Session,
    *,
    tenant_id: int,
    message_id: int,
    status: str | None = None,
    after_id: int = 0,
    limit: int = 50,
) -> list[Delivery]:
    get_message(db, tenant_id=tenant_id, message_id=message_id)
    q = select(Delivery).where(
        Delivery.tenant_id == tenant_id, Delivery.message_id == message_id, Delivery.id > after_id
    )
    if status:
        q = q.where(Delivery.status == status)
    return list(db.scalars(q.order_by(Delivery.id).limit(max(1, min(limit, 500)))))


def cancel(db: Session, *, tenant_id: int, message_id: int) -> Message:
    """Stop what has not gone out: queued deliveries become cancelled; sent ones stay."""
    msg = db.get(Message, message_id, with_for_update=True)
    if msg is None or msg.tenant_id != tenant_id:
        raise MessageNotFound(message_id=message_id)
    if msg.status == CANCELLED:  # cancelling twice is no error: nothing more goes out
        return msg
    if msg.status == DONE:
        raise NotCancellable(message_id=message_id, status=msg.status)
    now = clock.now()
    msg.status, msg.cancelled_at = CANCELLED, now
    db.execute(
        update(Delivery)
        .where(Delivery.message_id == msg.id, Delivery.status == QUEUED)
        .values(status=CANCELLED, error_code="cancelled")
        .execution_options(synchronize_session=False)
    )
    db.flush()
    return msg


def start_due(db: Session, *, now: dt.datetime | None = None) -> list[int]:
    """Start scheduled messages ("send at") whose time has come; returns their ids."""
    now = now or clock.now()
    due = list(
        db.scalars(
            select(Message)
            .where(Message.status == SCHEDULED, Message.send_at <= now)
            .order_by(Message.id)
            .with_for_update(skip_locked=True)
        )
    )
    for msg in due:
        msg.status = ACTIVE if msg.target.get("kind") == "members" else EXPANDING
        from siyu.messaging import tasks

        after_commit(db, tasks.expand if msg.status == EXPANDING else tasks.kick, msg.id)
    db.flush()
    return [m.id for m in due]


# --- dispatch ---------------------------------------------------------------------------------


@dataclass
class Job:
    """One external send, built in the claiming transaction, carried out outside it."""

    delivery_id: int
    tenant_id: int
    channel: str
    payload: dict[str, Any]
    attempts: int
    # Sent again after a worker died mid-call: the first call may have gone through.
    after_interruption: bool = False
    rate_key: str = ""


@dataclass
class Outcome:
    delivery_id: int
    status: str  # SENT, QUEUED (retry/deferred), FAILED, UNDELIVERABLE
    external_id: str = ""
    error_code: str = ""
    error_message: str = ""
    retry_in: float | None = None
    counts_attempt: bool = True
    awaits_owner: bool = False  # a group mass task: its owner still has to confirm it


def _lease() -> dt.timedelta:
    return dt.timedelta(seconds=get_settings().message_lease_seconds)


def backoff(attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``: 2, 4, 8, 16… capped at 10 minutes."""
    return float(min(600, 2 ** max(1, attempts)))


@dataclass(frozen=True)
class _Claimed:
    id: int
    member_id: int | None
    group_id: int | None
    channel: str
    attempts: int  # counting this one
    error_code: str


@dataclass
class Claim:
    claimed: int
    jobs: list[Job]


def claim_batch(db: Session, *, message_id: int, limit: int = 200) -> Claim:
    """Claim up to ``limit`` due deliveries of a message. Inbox ones are delivered here, in
    this transaction; the external ones come back as jobs, marked sending under a lease."""
    now = clock.now()
    msg = db.get(Message, message_id)
    if msg is None or msg.status in (CANCELLED, SCHEDULED):
        return Claim(0, [])
    # Concurrent dispatchers of one message take disjoint batches instead of queueing
    # (SKIP LOCKED; SQLite's write lock, taken at BEGIN IMMEDIATE, serializes them). The rows
    # are read here and written once, below, with their channel and outcome decided.
    picked = db.execute(
        select(
            Delivery.id,
            Delivery.member_id,
            Delivery.group_id,
            Delivery.channel,
            Delivery.attempts,
            Delivery.error_code,
        )
        .where(
            Delivery.message_id == message_id,
            Delivery.status == QUEUED,
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
        )
        .order_by(Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    lease_until = now + _lease()
    claimed = [
        _Claimed(id_, member_id, group_id, channel, int(attempts) + 1, error_code)
        for id_, member_id, group_id, channel, attempts, error_code in picked
    ]
    if not claimed:
        _finish_if_done(db, msg)
        return Claim(0, [])
    tenant = db.get(Tenant, msg.tenant_id)
    assert tenant is not None
    template = db.get(MessageTemplate, msg.template_id) if msg.template_id else None
    member_ids = [r.member_id for r in claimed if r.member_id is not None]
    members = _recipients(db, member_ids)
    group_ids = [r.group_id for r in claimed if r.group_id is not None]
    groups = (
        {g.id: g for g in db.scalars(select(WecomGroup).where(WecomGroup.id.in_(group_ids)))}
        if group_ids
        else {}
    )
    creds = tenant.settings or {}
    sub_cfg = (template.subscribe if template else None) or None
    oa_cfg = (template.oa_template if template else None) or None
    # Decide each member's channel (first dispatch only): a subscribe message needs a consent,
    # taken here in one conditional UPDATE; without one the member falls through to the next
    # channel and finally the inbox, never a doomed API call.
    plan: dict[int, str] = {r.id: r.channel for r in claimed}
    undecided = [r for r in claimed if not r.channel and r.member_id is not None]
    if undecided and SUBSCRIBE in msg.channels and sub_cfg and creds.get("wechat"):
        consented = {
            int(m)
            for m in db.execute(
                update(Consent)
                .where(
                    Consent.tenant_id == msg.tenant_id,
                    Consent.template_key == str(sub_cfg["template_id"]),
                    in_ids(db, Consent.member_id, [int(r.member_id or 0) for r in undecided]),
                    Consent.remaining > 0,
                )
                .values(remaining=Consent.remaining - 1)
                .returning(Consent.member_id)
                .execution_options(synchronize_session=False)
            ).scalars()
        }
        for r in undecided:
            if r.member_id in consented:
                plan[r.id] = SUBSCRIBE
    for r in undecided:
        if plan[r.id]:
            continue
        if OA_TEMPLATE in msg.channels and oa_cfg and creds.get("official_account"):
            plan[r.id] = OA_TEMPLATE
        else:
            plan[r.id] = INBOX
    for r in claimed:
        if not plan[r.id] and r.group_id is not None:
            g = groups.get(r.group_id)
            if ROBOT in msg.channels and g is not None and g.robot_key:
                plan[r.id] = ROBOT
            elif GROUP_MASS in msg.channels and creds.get("wecom"):
                plan[r.id] = GROUP_MASS
            else:
                plan[r.id] = "none"

    base_ctx = {**(msg.context or {})}
    extra = _recipient_context(db, msg, member_ids)
    shared = SharedRenders({"member", "group", *(k for e in extra.values() for k in e)})
    jobs: list[Job] = []
    updates: list[dict[str, Any]] = []
    inbox_rows: list[dict[str, Any]] = []
    for r in claimed:
        channel = plan[r.id]
        member = members.get(r.member_id) if r.member_id is not None else None
        ctx = {**base_ctx, **extra.get(r.member_id or 0, {}), **member_context(member, tenant)}
        if r.group_id is not None:
            g = groups.get(r.group_id)
            ctx["group"] = {"name": g.name if g else ""}
        if channel == "none":
            updates.append(
                {
                    "id": r.id,
                    "status": UNDELIVERABLE,
                    "channel": "",
                    "error_code": "no_channel",
                    "error_message": _("The group has no robot and WeCom is not configured"),
                    "lease_until": None,
                    "attempts": r.attempts,
                }
            )
            continue
        try:
            text = render_for(
                title=msg.title,
                body=msg.body,
                template=template,
                context=ctx,
                channel=channel,
                shared=shared,
            )
        except InvalidMessage as err:
            updates.append(
                {
                    "id": r.id,
                    "status": UNDELIVERABLE,
                    "channel": channel,
                    "error_code": "render",
                    "error_message": err.message()[:500],
                    "lease_until": None,
                    "attempts": r.attempts,
                }
            )
            continue
        if channel == INBOX:
            assert r.member_id is not None
            inbox_rows.append(
                {
                    "tenant_id": msg.tenant_id,
                    "member_id": r.member_id,
                    "delivery_id": r.id,
                    "title": text.title or tenant.name,
                    "body": text.body,
                    "created_at": now,
                }
            )
            updates.append(
                {
                    "id": r.id,
                    "status": SENT,
                    "channel": INBOX,
                    "sent_at": now,
                    "lease_until": None,
                    "error_code": "",
                    "error_message": "",
                    "attempts": r.attempts,
                }
            )
            continue
        # An external send: marked sending under a lease, with its channel, in this
        # transaction; the outcome is recorded after the call.
        updates.append(
            {
                "id": r.id,
                "status": SENDING,
                "channel": channel,
                "lease_until": lease_until,
                "attempts": r.attempts,
            }
        )
        payload: dict[str, Any]
        rate_key = channel
        if channel == SUBSCRIBE:
            assert member is not None
            assert sub_cfg is not None
            payload = {
                "touser": member.openid,
                "template_id": sub_cfg["template_id"],
                "page": shared.render(str(sub_cfg.get("page") or ""), ctx),
                "data": {k: {"value": v} for k, v in text.subscribe.items()},
            }
        elif channel == OA_TEMPLATE:
            assert member is not None
            assert oa_cfg is not None
            payload = {
                "touser": member.openid,
                "template_id": oa_cfg["template_id"],
                "url": shared.render(str(oa_cfg.get("url") or ""), ctx),
                "data": {k: {"value": v} for k, v in text.oa.items()},
            }
        elif channel == ROBOT:
            g = groups[int(r.group_id or 0)]
            content = text.body
            if template is not None and template.robot_format == "markdown":
                payload = {
                    "key": g.robot_key,
                    "msgtype": "markdown",
                    "markdown": {"content": content},
                }
            else:
                payload = {"key": g.robot_key, "msgtype": "text", "text": {"content": content}}
            rate_key = f"robot:{g.robot_key}"
        else:  # GROUP_MASS
            g = groups[int(r.group_id or 0)]
            payload = {
                "chat_type": "group",
                "sender": g.owner_userid or (creds.get("wecom") or {}).get("sender", ""),
                "text": {"content": text.body},
                "chat_id": g.chat_id,
            }
        jobs.append(
            Job(
                delivery_id=r.id,
                tenant_id=msg.tenant_id,
                channel=channel,
                payload=payload,
                attempts=r.attempts,
                after_interruption=r.error_code == "interrupted",
                rate_key=rate_key,
            )
        )
    if inbox_rows:
        db.execute(
            _insert(db)(InboxItem).on_conflict_do_nothing(index_elements=["delivery_id"]),
            inbox_rows,
        )
    _update_deliveries(db, updates)
    _settled(db, msg, [u["id"] for u in updates if u["status"] in FINAL_STATES])
    if inbox_rows and msg.first_sent_at is None:
        msg.first_sent_at = now
    db.flush()
    return Claim(len(claimed), jobs)


def _settled(db: Session, msg: Message, delivery_ids: list[int]) -> None:
    """Tell the domain behind a registered target which deliveries just got a final status."""
    kind = _REGISTERED.get(str((msg.target or {}).get("kind", "")))
    if kind is not None and kind.settled is not None and delivery_ids:
        kind.settled(db, msg.tenant_id, str(msg.target.get("ref", "")), delivery_ids)


def _update_deliveries(db: Session, rows: Sequence[dict[str, Any]]) -> None:
    """UPDATE deliveries by id, each row with its own values. On PostgreSQL one statement per
    set of columns (``UPDATE … FROM unnest(arrays)``): a batch of 500 outcomes is one round trip
    instead of 500 statements. Elsewhere (SQLite, in-process) an executemany."""
    if not rows:
        return
    dialect = db.get_bind().dialect
    if dialect.name != "postgresql":
        db.execute(update(Delivery).execution_options(synchronize_session=False), list(rows))
        return
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(sorted(k for k in r if k != "id")), []).append(r)
    table = Delivery.__table__
    quote = dialect.identifier_preparer.quote
    for cols, group in groups.items():
        params: dict[str, Any] = {"ids": [r["id"] for r in group]}
        arrays, names, sets = ["CAST(:ids AS BIGINT[])"], ["id"], []
        for i, c in enumerate(cols):
            values = [r[c] for r in group]
            sql_type = table.c[c].type.compile(dialect)
            # A value the whole batch shares (a status, a time, an empty error) is one
            # parameter, not an array: psycopg builds arrays element by element in Python.
            if len(set(values)) == 1:
                params[f"v{i}"] = values[0]
                sets.append(f"{quote(c)} = CAST(:v{i} AS {sql_type})")
            else:
                params[f"v{i}"] = values
                arrays.append(f"CAST(:v{i} AS {sql_type}[])")
                names.append(quote(c))
                sets.append(f"{quote(c)} = v.{quote(c)}")
        db.execute(
            text(
                f"UPDATE {quote(Delivery.__tablename__)} AS d SET {', '.join(sets)} "
                f"FROM unnest({', '.join(arrays)}) AS v({', '.join(names)}) WHERE d.id = v.id"
            ),
            params,
        )


def _recipient_context(
    db: Session, msg: Message, member_ids: list[int]
) -> dict[int, dict[str, Any]]:
    """Per-member template variables a registered target kind supplies (tracked links…)."""
    kind = _REGISTERED.get(str((msg.target or {}).get("kind", "")))
    if kind is None or kind.context is None or not member_ids:
        return {}
    return kind.context(db, msg.tenant_id, str(msg.target.get("ref", "")), member_ids)


def record_outcomes(db: Session, *, message_id: int, outcomes: Sequence[Outcome]) -> None:
    """Store what the channels answered for a claimed batch."""
    if not outcomes:
        return
    now = clock.now()
    rows: list[dict[str, Any]] = []
    retry_in: list[float] = []
    for o in outcomes:
        row: dict[str, Any] = {
            "id": o.delivery_id,
            "status": o.status,
            "error_code": o.error_code[:40],
            "error_message": o.error_message[:500],
            "lease_until": None,
        }
        if o.status == SENT:
            row["sent_at"] = now
            row["external_id"] = o.external_id[:100]
        if o.status == QUEUED:
            row["next_attempt_at"] = now + dt.timedelta(seconds=o.retry_in or 1)
            retry_in.append(o.retry_in or 1)
        rows.append(row)
    _update_deliveries(db, rows)
    if awaiting := [o.delivery_id for o in outcomes if o.awaits_owner]:
        db.execute(
            update(Delivery)
            .where(Delivery.id.in_(awaiting))
            .values(confirm_state=AWAITING_OWNER)
            .execution_options(synchronize_session=False)
        )
    # A deferral (rate limit) is not an attempt: give it back.
    free = [o.delivery_id for o in outcomes if not o.counts_attempt]
    if free:
        db.execute(
            update(Delivery)
            .where(Delivery.id.in_(free))
            .values(attempts=Delivery.attempts - 1)
            .execution_options(synchronize_session=False)
        )
    msg = db.get(Message, message_id)
    assert msg is not None
    _settled(db, msg, [o.delivery_id for o in outcomes if o.status in FINAL_STATES])
    if msg.first_sent_at is None and any(o.status == SENT for o in outcomes):
        msg.first_sent_at = now
    db.flush()
    if retry_in:
        from siyu.messaging import tasks

        after_commit(db, tasks.kick_later, message_id, min(retry_in))


# --- group mass confirmation --------------------------------------------------------------------


@dataclass
class MassTask:
    """One ``add_msg_template`` task whose groups wait for their owner: the deliveries by
    chat id, and who to ask (the sender's WeCom userid)."""

    tenant_id: int
    msgid: str
    userid: str
    deliveries: dict[str, int]
    oldest: dt.datetime


def awaiting_owner(db: Session, *, limit: int = 200) -> list[MassTask]:
    """Group mass tasks with deliveries still waiting for their owner's confirmation."""
    rows = db.execute(
        select(
            Delivery.id,
            Delivery.tenant_id,
            Delivery.external_id,
            Delivery.sent_at,
            WecomGroup.chat_id,
            WecomGroup.owner_userid,
            Tenant.settings,
        )
        .join(WecomGroup, WecomGroup.id == Delivery.group_id)
        .join(Tenant, Tenant.id == Delivery.tenant_id)
        .where(Delivery.confirm_state == AWAITING_OWNER, Delivery.channel == GROUP_MASS)
        .order_by(Delivery.id)
        .limit(limit * 50)
    )
    tasks: dict[tuple[int, str], MassTask] = {}
    for d_id, tenant_id, msgid, sent_at, chat_id, owner, settings in rows:
        userid = owner or ((settings or {}).get("wecom") or {}).get("sender", "")
        task = tasks.get((tenant_id, msgid))
        if task is None:
            task = tasks[(tenant_id, msgid)] = MassTask(
                tenant_id, msgid, userid, {}, clock.as_utc(sent_at or clock.now())
            )
        task.deliveries[chat_id] = d_id
    return list(tasks.values())[:limit]


# get_groupmsg_send_result's status per group → what became of the delivery.
_OWNER_REFUSALS = {
    2: ("wecom.not_customer", "the group is not the sender's customer group"),
    3: ("wecom.already_sent_today", "the group already received a mass message today"),
}


def record_owner_results(db: Session, task: MassTask, send_list: Sequence[dict[str, Any]]) -> int:
    """Apply one poll's answer: confirmed (with the time it went out), refused by WeCom
    (undeliverable, with why), or still waiting — given up after ``OWNER_WAIT`` days. Returns
    the deliveries settled."""
    now = clock.now()
    settled = 0
    status_of = {str(r.get("chat_id", "")): r for r in send_list}
    for chat_id, delivery_id in task.deliveries.items():
        row = status_of.get(chat_id)
        status = int(row.get("status", 0)) if row else 0
        values: dict[str, Any]
        if status == 1:
            when = int(row.get("send_time") or 0) if row else 0
            values = {"confirm_state": CONFIRMED}
            if when:
                values["sent_at"] = dt.datetime.fromtimestamp(when, dt.UTC)
        elif status in _OWNER_REFUSALS:
            code, text = _OWNER_REFUSALS[status]
            values = {
                "confirm_state": "",
                "status": UNDELIVERABLE,
                "error_code": code,
                "error_message": text,
            }
        elif now - task.oldest > dt.timedelta(days=OWNER_WAIT):
            values = {
                "confirm_state": "",
                "status": UNDELIVERABLE,
                "error_code": "wecom.owner_did_not_confirm",
                "error_message": f"the group owner did not confirm within {OWNER_WAIT} days",
            }
        else:
            continue
        settled += rowcount(
            db.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id, Delivery.confirm_state == AWAITING_OWNER)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        )
    return settled


def _finish_if_done(db: Session, msg: Message) -> None:
    if msg.status != ACTIVE:
        return
    pending = db.scalar(
        select(Delivery.id)
        .where(Delivery.message_id == msg.id, Delivery.status.in_((QUEUED, SENDING)))
        .limit(1)
    )
    if pending is None:
        msg.status, msg.finished_at = DONE, clock.now()
        db.flush()


def finish_if_done(db: Session, *, message_id: int) -> None:
    msg = db.get(Message, message_id)
    if msg is not None:
        _finish_if_done(db, msg)


def requeue_interrupted(db: Session, *, now: dt.datetime | None = None) -> list[int]:
    """Deliveries whose worker died mid-call (lease expired) go back to the queue; returns
    the messages to dispatch again."""
    now = now or clock.now()
    rows = db.execute(
        update(Delivery)
        .where(Delivery.status == SENDING, Delivery.lease_until < now)
        .values(status=QUEUED, error_code="interrupted", lease_until=None)
        .returning(Delivery.message_id)
        .execution_options(synchronize_session=False)
    ).scalars()
    return sorted(set(rows))


def messages_with_due(db: Session, *, now: dt.datetime | None = None) -> list[int]:
    """Active messages with deliveries due now (retries whose wake-up job was lost)."""
    now = now or clock.now()
    return list(
        db.scalars(
            select(Delivery.message_id)
            .where(
                Delivery.status == QUEUED,
                or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
            )
            .distinct()
            .limit(1000)
        )
    )


# --- inbox ------------------------------------------------------------------------------------


def list_inbox(
    db: Session, *, tenant_id: int, member_id: int, before_id: int | None = None, limit: int = 20
) -> list[InboxItem]:
    q = select(InboxItem).where(InboxItem.tenant_id == tenant_id, InboxItem.member_id == member_id)
    if before_id:
        q = q.where(InboxItem.id < before_id)
    return list(db.scalars(q.order_by(InboxItem.id.desc()).limit(max(1, min(limit, 100)))))


def unread_count(db: Session, *, tenant_id: int, member_id: int) -> int:
    return int(
        db.scalar(
            select(func.count())
            .select_from(InboxItem)
            .where(
                InboxItem.tenant_id == tenant_id,
                InboxItem.member_id == member_id,
                InboxItem.read_at.is_(None),
            )
        )
        or 0
    )


def mark_read(db: Session, *, tenant_id: int, member_id: int, item_ids: Sequence[int]) -> int:
    """Mark the member's own items read (others' ids are ignored)."""
    if not item_ids:
        return 0
    return rowcount(
        db.execute(
            update(InboxItem)
            .where(
                InboxItem.tenant_id == tenant_id,
                InboxItem.member_id == member_id,
                InboxItem.id.in_(list(item_ids)),
                InboxItem.read_at.is_(None),
            )
            .values(read_at=clock.now())
            .execution_options(synchronize_session=False)
        )
    )


# --- groups -----------------------------------------------------------------------------------


def save_group(
    db: Session,
    *,
    tenant_id: int,
    chat_id: str,
    name: str = "",
    owner_userid: str = "",
    robot_key: str = "",
    tags: Sequence[str] = (),
) -> WecomGroup:
    """Create or update a WeCom customer group by its chat id."""
    if not chat_id.strip() or len(chat_id) > 64:
        raise InvalidMessage(field="chat_id", problem=_("1–64 characters"))
    row = db.scalar(
        select(WecomGroup).where(WecomGroup.tenant_id == tenant_id, WecomGroup.chat_id == chat_id)
    )
    if row is None:
        row = WecomGroup(tenant_id=tenant_id, chat_id=chat_id, created_at=clock.now())
        db.add(row)
    row.name, row.owner_userid, row.robot_key = name, owner_userid, robot_key
    row.tags = sorted({t.strip() for t in tags if t.strip()})
    db.flush()
    return row


def list_groups(db: Session, *, tenant_id: int) -> list[WecomGroup]:
    return list(
        db.scalars(
            select(WecomGroup).where(WecomGroup.tenant_id == tenant_id).order_by(WecomGroup.id)
        )
    )


def get_group(db: Session, *, tenant_id: int, group_id: int) -> WecomGroup:
    row = db.get(WecomGroup, group_id)
    if row is None or row.tenant_id != tenant_id:
        raise GroupNotFound(group_id=group_id)
    return row


def channel_counts(db: Session, *, message_id: int) -> dict[str, int]:
    rows = db.execute(
        select(Delivery.channel, func.count())
        .where(Delivery.message_id == message_id, Delivery.status == SENT)
        .group_by(Delivery.channel)
    )
    return dict(Counter({str(c): int(n) for c, n in rows}))


__all__ = [
    "CHANNELS",
    "Target",
    "cancel",
    "count_recipients",
    "record_consent",
    "register_target",
    "send",
]

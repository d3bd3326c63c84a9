"""Messaging tables: templates, the outbox (messages and their deliveries), consents, the
in-app inbox, WeCom customer groups and SOP schedules.

A ``Message`` is one purpose ("live:42:on-sale", "sop:3:2026-11-27T10:00", "broadcast:…"),
unique per tenant; its ``Delivery`` rows are the outbox: one per recipient, unique on
(tenant, purpose, recipient) so no trigger, retry or restart delivers a purpose twice.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from siyu.core import clock
from siyu.core.db import Base, UTCDateTime

# Channels. Member channels reach one fan; group channels reach a WeCom customer group.
INBOX = "inbox"
SUBSCRIBE = "subscribe"  # mini-program subscribe message (needs a consent per message)
OA_TEMPLATE = "oa_template"  # official-account template message
ROBOT = "robot"  # WeCom group robot webhook
GROUP_MASS = "group_mass"  # WeCom customer-group mass message (add_msg_template)
MEMBER_CHANNELS = (SUBSCRIBE, OA_TEMPLATE, INBOX)
GROUP_CHANNELS = (ROBOT, GROUP_MASS)
CHANNELS = (*MEMBER_CHANNELS, *GROUP_CHANNELS)

# Delivery states. queued → sending → sent | failed | undeliverable; queued → cancelled.
QUEUED, SENDING, SENT, FAILED, UNDELIVERABLE, CANCELLED = (
    "queued",
    "sending",
    "sent",
    "failed",
    "undeliverable",
    "cancelled",
)
DELIVERY_STATES = (QUEUED, SENDING, SENT, FAILED, UNDELIVERABLE, CANCELLED)
# A sent customer-group mass message waits for the group owner to confirm it in WeCom; the
# result poll (``get_groupmsg_send_result``) records what happened.
AWAITING_OWNER, CONFIRMED = "awaiting", "confirmed"
OWNER_WAIT = 7  # days: a task its owner never confirmed is given up after this
FINAL_STATES = (SENT, FAILED, UNDELIVERABLE, CANCELLED)

# Message states. scheduled (send_at in the future) → expanding → active → done; or cancelled.
SCHEDULED, EXPANDING, ACTIVE, DONE = "scheduled", "expanding", "active", "done"


class MessageTemplate(Base):
    """Text with Jinja2 (sandboxed) variables, and what each channel needs to carry it."""

    __tablename__ = "message_templates"
    __table_args__ = (UniqueConstraint("tenant_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(200), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    # Robot message type: "text" or "markdown".
    robot_format: Mapped[str] = mapped_column(String(16), default="text")
    # Mini-program subscribe message: {"template_id", "page", "data": {"thing1": "{{ … }}"}}.
    subscribe: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Official-account template message: {"template_id", "url", "data": {"first": "…"}}.
    oa_template: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)


class Message(Base):
    """One purpose sent to a set of recipients; counts are kept on the row for progress."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("tenant_id", "purpose"),
        Index("ix_messages_tenant_created", "tenant_id", "id"),
        Index("ix_messages_due", "status", "send_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    purpose: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default="api")  # api, broadcast, sop
    template_id: Mapped[int | None] = mapped_column(ForeignKey("message_templates.id"))
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("message_schedules.id"))
    title: Mapped[str] = mapped_column(String(200), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    # {"kind": "members", "member_ids": [...]} | {"kind": "all_members"} |
    # {"kind": "members_tag", "tag": …} | {"kind": "all_groups"} | {"kind": "groups_tag", "tag": …}
    target: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    send_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Member id up to which a target has been expanded into deliveries (chunked expansion).
    expanded_to: Mapped[int] = mapped_column(default=0)
    total: Mapped[int] = mapped_column(default=0)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)
    first_sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Delivery(Base):
    """The outbox row of one recipient: a member (``m:<id>``) or a WeCom group (``g:<id>``)."""

    __tablename__ = "message_deliveries"
    __table_args__ = (
        UniqueConstraint("tenant_id", "purpose", "recipient"),
        Index("ix_message_deliveries_message_status", "message_id", "status", "id"),
        # Only rows still to go out (retries due, leases to reclaim): the final update of
        # a delivery adds no entry here. (SQLite would not use it for ``status = 'queued'``:
        # there it indexes every row.)
        Index(
            "ix_message_deliveries_due",
            "status",
            "next_attempt_at",
            postgresql_where=text("status IN ('queued', 'sending')"),
        ),
        # The minute tick's look-up of group mass tasks awaiting their owner (a rare value):
        # only those rows are indexed.
        Index(
            "ix_message_deliveries_confirm",
            "confirm_state",
            postgresql_where=text("confirm_state = 'awaiting'"),
            sqlite_where=text("confirm_state = 'awaiting'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"))
    purpose: Mapped[str] = mapped_column(String(200))
    recipient: Mapped[str] = mapped_column(String(40))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    group_id: Mapped[int | None] = mapped_column(ForeignKey("wecom_groups.id"))
    # The channel that carried (or will carry) it, decided at dispatch (consent fallback).
    channel: Mapped[str] = mapped_column(String(16), default="")
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    error_code: Mapped[str] = mapped_column(String(40), default="")
    error_message: Mapped[str] = mapped_column(String(500), default="")
    external_id: Mapped[str] = mapped_column(String(100), default="")
    # Group mass messages only: "" → awaiting (sent, the owner has to confirm) → confirmed.
    confirm_state: Mapped[str] = mapped_column(String(16), default="", server_default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Consent(Base):
    """Subscribe-message consents a member granted for one template (one message each)."""

    __tablename__ = "message_consents"
    __table_args__ = (UniqueConstraint("tenant_id", "member_id", "template_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    # The mini program's subscribe template id (what the member agreed to in wx.requestSubscribe).
    template_key: Mapped[str] = mapped_column(String(64))
    remaining: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)


class InboxItem(Base):
    """A message in a member's in-app inbox (the embedded default channel)."""

    __tablename__ = "inbox_items"
    __table_args__ = (
        UniqueConstraint("delivery_id"),
        Index("ix_inbox_items_member", "tenant_id", "member_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    delivery_id: Mapped[int] = mapped_column(ForeignKey("message_deliveries.id"))
    title: Mapped[str] = mapped_column(String(200), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)
    read_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class WecomGroup(Base):
    """A WeCom customer group (minimal: the community issue fills it from callbacks)."""

    __tablename__ = "wecom_groups"
    __table_args__ = (UniqueConstraint("tenant_id", "chat_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    chat_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100), default="")
    owner_userid: Mapped[str] = mapped_column(String(64), default="")
    # The group robot's webhook key (…/webhook/send?key=KEY); empty: no robot in the group.
    robot_key: Mapped[str] = mapped_column(String(100), default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)


class Schedule(Base):
    """A recurring SOP: a cron rule in the tenant's timezone, a template, a target."""

    __tablename__ = "message_schedules"
    __table_args__ = (UniqueConstraint("tenant_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    # "daily" / "weekly" are cron rules written for the operator; "cron" is free-form.
    kind: Mapped[str] = mapped_column(String(16), default="daily")
    cron: Mapped[str] = mapped_column(String(100))
    template_id: Mapped[int] = mapped_column(ForeignKey("message_templates.id"))
    target: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Quiet hours "HH:MM"-"HH:MM" (tenant time): a run falling inside is skipped.
    quiet_start: Mapped[str] = mapped_column(String(5), default="")
    quiet_end: Mapped[str] = mapped_column(String(5), default="")
    grace_minutes: Mapped[int] = mapped_column(default=30)
    paused: Mapped[bool] = mapped_column(default=False)
    next_run_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_run_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)

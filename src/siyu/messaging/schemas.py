from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Channel = Literal["inbox", "subscribe", "oa_template", "robot", "group_mass"]
TargetKind = Literal["members", "all_members", "members_tag", "all_groups", "groups_tag"]


class TargetIn(BaseModel):
    kind: TargetKind
    tag: str = Field(default="", max_length=40)
    member_ids: list[int] = Field(default_factory=list, max_length=100_000)


class SendIn(BaseModel):
    purpose: str = Field(
        min_length=1,
        max_length=200,
        description="What the message is for; each (purpose, recipient) is delivered once.",
    )
    member_ids: list[int] | None = Field(default=None, max_length=100_000)
    target: TargetIn | None = None
    template: str | None = Field(default=None, max_length=64, description="template key")
    title: str = Field(default="", max_length=200)
    body: str = Field(default="", max_length=10_000)
    context: dict[str, Any] = Field(default_factory=dict)
    channels: list[Channel] | None = None
    send_at: dt.datetime | None = None


class BroadcastIn(BaseModel):
    target: TargetIn
    template: str | None = Field(default=None, max_length=64)
    title: str = Field(default="", max_length=200)
    body: str = Field(default="", max_length=10_000)
    context: dict[str, Any] = Field(default_factory=dict)
    channels: list[Channel] | None = None
    send_at: dt.datetime | None = Field(default=None, description="empty: send now")


class CountsRead(BaseModel):
    queued: int
    sending: int
    sent: int
    failed: int
    undeliverable: int
    cancelled: int


class MessageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    purpose: str
    kind: str
    status: str
    title: str
    body: str
    channels: list[str]
    target: dict[str, Any]
    total: int
    send_at: dt.datetime | None
    created_at: dt.datetime
    first_sent_at: dt.datetime | None
    finished_at: dt.datetime | None
    cancelled_at: dt.datetime | None


class MessageDetail(MessageRead):
    counts: CountsRead
    progress: int = Field(description="percent of deliveries in a final state")


class MessagePage(BaseModel):
    items: list[MessageRead]
    next_before_id: int | None


class DeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    recipient: str
    member_id: int | None
    group_id: int | None
    channel: str
    status: str
    attempts: int
    error_code: str
    error_message: str
    external_id: str
    confirm_state: str = Field(
        description="Group mass messages: awaiting (the group owner has to confirm the send in"
        " WeCom) or confirmed; empty for other channels"
    )
    sent_at: dt.datetime | None
    next_attempt_at: dt.datetime | None


class DeliveryPage(BaseModel):
    items: list[DeliveryRead]
    next_after_id: int | None


class RecipientCount(BaseModel):
    target: dict[str, Any]
    recipients: int


class SubscribeConfig(BaseModel):
    template_id: str = Field(min_length=1, max_length=64)
    page: str = Field(default="", max_length=200)
    data: dict[str, str]


class OaTemplateConfig(BaseModel):
    template_id: str = Field(min_length=1, max_length=64)
    url: str = Field(default="", max_length=500)
    data: dict[str, str]


class TemplateIn(BaseModel):
    key: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=100)
    title: str = Field(default="", max_length=200)
    body: str = Field(default="", max_length=10_000)
    robot_format: Literal["text", "markdown"] = "text"
    subscribe: SubscribeConfig | None = None
    oa_template: OaTemplateConfig | None = None


class TemplateRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    key: str
    name: str
    title: str
    body: str
    robot_format: str
    subscribe: dict[str, Any] | None
    oa_template: dict[str, Any] | None
    updated_at: dt.datetime


class PreviewIn(BaseModel):
    member_id: int | None = None
    title: str = Field(default="", max_length=200)
    body: str = Field(default="", max_length=10_000)
    context: dict[str, Any] = Field(default_factory=dict)


class PreviewRead(BaseModel):
    title: str
    body: str
    subscribe: dict[str, str]


class ScheduleIn(BaseModel):
    key: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=100)
    kind: Literal["daily", "weekly", "cron"]
    time: str = Field(default="", max_length=5, description="HH:MM (daily, weekly)")
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=list
    )
    cron: str = Field(default="", max_length=100, description="5-field cron rule (cron)")
    template: str = Field(min_length=1, max_length=64)
    target: TargetIn
    channels: list[Channel] = Field(default_factory=list)
    quiet_start: str = Field(default="", max_length=5)
    quiet_end: str = Field(default="", max_length=5)
    grace_minutes: int = Field(default=30, ge=0, le=1440)
    paused: bool = False


class ScheduleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    key: str
    name: str
    kind: str
    cron: str
    template_id: int
    target: dict[str, Any]
    channels: list[str]
    quiet_start: str
    quiet_end: str
    grace_minutes: int
    paused: bool
    next_run_at: dt.datetime | None
    last_run_at: dt.datetime | None
    next_runs: list[dt.datetime] = Field(default_factory=list)


class ConsentIn(BaseModel):
    template_key: str = Field(min_length=1, max_length=64)
    count: int = Field(default=1, ge=1, le=1000)


class ConsentRead(BaseModel):
    template_key: str
    remaining: int


class InboxItemRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    body: str
    created_at: dt.datetime
    read_at: dt.datetime | None


class InboxPage(BaseModel):
    items: list[InboxItemRead]
    unread: int
    next_before_id: int | None


class ReadIn(BaseModel):
    ids: list[int] = Field(max_length=500)


class GroupIn(BaseModel):
    chat_id: str = Field(min_length=1, max_length=64)
    name: str = Field(default="", max_length=100)
    owner_userid: str = Field(default="", max_length=64)
    robot_key: str = Field(default="", max_length=100)
    tags: list[str] = Field(default_factory=list, max_length=20)


class GroupRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    chat_id: str
    name: str
    owner_userid: str
    has_robot: bool
    tags: list[str]

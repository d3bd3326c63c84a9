from __future__ import annotations

import datetime as dt

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class TrialCreate(BaseModel):
    title: str = Field(min_length=1, max_length=100, examples=["新品精华 30ml 试用"])
    description: str = Field(default="", max_length=5000)
    image_url: str = Field(default="", max_length=500)
    slots: int = Field(ge=1, le=100_000)
    apply_from: AwareDatetime
    apply_until: AwareDatetime
    report_deadline: AwareDatetime
    points_cost: int = Field(default=0, ge=0, le=1_000_000_000, description="0: free")
    report_reward: int = Field(default=0, ge=0, le=1_000_000_000)
    min_growth: int | None = Field(default=None, ge=0, description="Required tier's threshold")
    tag: str | None = Field(default=None, max_length=40, description="Required member tag")
    commitment: str | None = Field(
        default=None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="hex SHA-256 of your seed; omit to let the server choose and keep it "
        "secret until the draw",
    )


class TrialRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    description: str
    image_url: str
    slots: int
    apply_from: dt.datetime
    apply_until: dt.datetime
    report_deadline: dt.datetime
    points_cost: int
    report_reward: int
    min_growth: int | None
    tag: str | None
    commitment: str
    seed_source: str
    status: str
    entries: int
    drawn_at: dt.datetime | None
    public_code: str
    seed: str | None = Field(description="Revealed at the draw; null before")
    verify_url: str


class TrialList(BaseModel):
    items: list[TrialRead]


class DrawIn(BaseModel):
    seed: str | None = Field(
        default=None,
        max_length=128,
        description="The seed (hex) whose SHA-256 is the commitment; only for operator seeds",
    )


class ApplyIn(BaseModel):
    address_id: int


class ApplicationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    trial_id: int
    member_id: int
    status: str
    rank: int | None
    spend_entry_id: int | None
    refund_entry_id: int | None
    order_id: int | None
    created_at: dt.datetime


class ApplicationList(BaseModel):
    items: list[ApplicationRead]


class ReportIn(BaseModel):
    text: str = Field(min_length=1, max_length=5000)
    images: list[str] = Field(default_factory=list, max_length=9)


class ReportRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    trial_id: int
    application_id: int
    member_id: int
    text: str
    images: list[str]
    status: str
    late: bool
    submitted_at: dt.datetime
    reviewed_at: dt.datetime | None
    review_note: str
    reward_entry_id: int | None


class ReviewIn(BaseModel):
    accept: bool
    note: str = Field(default="", max_length=500)


class BoardRow(BaseModel):
    application_id: int
    member_id: int
    rank: int | None
    order_id: int | None
    state: str = Field(description="due, missing, submitted, late, accepted or rejected")
    report: ReportRead | None


class Board(BaseModel):
    items: list[BoardRow]


class MyTrialRead(BaseModel):
    trial: TrialRead
    application: ApplicationRead | None
    report: ReportRead | None

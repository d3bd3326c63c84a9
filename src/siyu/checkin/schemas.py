from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field


class Bonus(BaseModel):
    day: int = Field(ge=1, le=366, description="Streak day that earns the bonus")
    points: int = Field(ge=1, le=100_000)


class RuleIO(BaseModel):
    base: int = Field(ge=0, le=100_000, description="Points for every check-in")
    bonuses: list[Bonus] = Field(default_factory=list, max_length=20)
    makeup_days: int = Field(ge=0, le=30, description="How many past days can be made up; 0: off")
    makeup_cost: int = Field(ge=0, le=100_000, description="Points a make-up check-in costs")


class CheckinRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    checked_on: dt.date
    kind: str
    streak: int
    points: int
    bonus: int
    created_at: dt.datetime


class CheckinResult(BaseModel):
    checkin: CheckinRead
    created: bool = Field(description="False: that day was already checked in; nothing paid")
    streak: int


class MakeupIn(BaseModel):
    day: dt.date


class MonthRead(BaseModel):
    year: int
    month: int
    today: dt.date
    streak: int
    checked_today: bool
    checkins: list[CheckinRead]
    makeup_days: list[dt.date]
    themes: dict[str, list[str]] = Field(description="Local day → live session themes")

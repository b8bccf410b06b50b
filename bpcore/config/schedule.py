"""A config's ``schedule`` section: when ``bp deploy`` and ``bp serve`` run it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from bpcore.config.fields import Strict


def _seconds(value: Any) -> Any:
    # strictly a number: "60" is a string, the way true is a boolean
    if isinstance(value, bool | str):
        raise PydanticCustomError("seconds", "not a number of seconds")
    return value


MIN_INTERVAL = 10  # s: shorter schedules start runs faster than a worker starts them, and pile up


class Schedule(Strict):
    """When ``bp deploy`` / ``bp serve`` run the config: a cron expression (in ``timezone``) or every ``interval`` s.

    ``overlap``: what a run that falls due does while the deployment's previous run still goes:
    ``skip`` it (the default), ``queue`` it until that run ends, or ``allow`` both to run.
    """

    cron: str | None = Field(None, min_length=1, description="five-field cron expression, e.g. '0 3 * * *'")
    timezone: str | None = Field(None, description="IANA time zone the cron expression is read in (default UTC)")
    interval: Annotated[float, BeforeValidator(_seconds)] | None = Field(
        None, le=366 * 24 * 3600, allow_inf_nan=False, description=f"seconds, at least {MIN_INTERVAL}")
    overlap: Literal["skip", "queue", "allow"] = Field(
        "skip", description="a due run while the previous one still runs: skip it, queue it, or allow both")

    @field_validator("interval")
    @classmethod
    def _often_enough(cls, interval: float | None) -> float | None:
        if interval is not None and interval < MIN_INTERVAL:
            raise PydanticCustomError("interval", f"at least {MIN_INTERVAL} s: shorter intervals start runs faster "
                                      "than they finish and pile them up")
        return interval

    @field_validator("cron")
    @classmethod
    def _cron(cls, cron: str | None) -> str | None:
        from croniter import croniter

        if cron is not None and (len(cron.split()) != 5 or not croniter.is_valid(cron)):
            raise PydanticCustomError("cron", "not a five-field cron expression (minute hour day month weekday)")
        return cron

    @model_validator(mode="before")
    @classmethod
    def _utc_for_cron(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("cron") is not None and data.get("timezone") is None:
            return {**data, "timezone": "UTC"}  # resolved, so a config shows the zone its cron is read in
        return data

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, name: str | None) -> str | None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        if name is None:
            return None
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise PydanticCustomError("timezone", "not an IANA time zone (e.g. UTC, Europe/Paris)") from None
        return name

    @model_validator(mode="after")
    def _one_kind(self) -> Schedule:
        if (self.cron is None) == (self.interval is None):
            raise ValueError("cron: give exactly one of schedule.cron and schedule.interval")
        if self.interval is not None and self.timezone is not None:
            raise ValueError("timezone: applies to schedule.cron only, not to schedule.interval")
        return self

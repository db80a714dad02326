"""Cron schedules: the document, its validation, fire-time arithmetic and store.

A schedule is ``{"name", "cron", "timezone", "job", "enabled", "catch_up"}``.
``cron`` is a standard 5-field expression or an ``@hourly``-style alias,
evaluated in ``timezone`` by ``croniter`` (so DST is handled: a local time that
happens twice fires twice, one that does not exist fires at the next valid
minute). Times are stored in UTC.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pymongo
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pymongo import AsyncMongoClient, ReturnDocument

from conveyor_kernel.model import JobSubmission, utcnow
from conveyor_kernel.mongo import Document, create_missing_indexes, store_errors

SCHEDULES_COLLECTION = "schedules"
GRACE_S = 60.0  # a fire time this late is on time; later ones were missed
MAX_MISSED = 10_000  # fire times looked at per schedule and round
ALIASES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
CatchUp = Literal["none", "latest"]
SCHEDULED_RUN_AT = "a scheduled job runs at its fire time: drop run_at and delay_s"


def check_cron(expr: str) -> str:
    expr = " ".join(expr.split())
    if expr.lower() in ALIASES:
        return expr.lower()
    if len(expr.split(" ")) != 5 or not croniter.is_valid(expr):
        raise ValueError(
            f"{expr!r} is not a 5-field cron expression (minute hour day month weekday) "
            f"or one of {', '.join(sorted(ALIASES))}"
        )
    return expr


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (an IANA name like Europe/Berlin)") from exc
    return name


def check_job(job: JobSubmission) -> JobSubmission:
    if job.run_at is not None or job.delay_s is not None:
        raise ValueError(SCHEDULED_RUN_AT)
    return job


def fire_times(cron: str, timezone: str, after: datetime, until: datetime) -> list[datetime]:
    """Fire times in ``(after, until]``, in UTC (at most ``MAX_MISSED``)."""
    it = croniter(cron, after.astimezone(ZoneInfo(timezone)))
    out: list[datetime] = []
    while len(out) < MAX_MISSED:
        nxt: datetime = it.get_next(datetime).astimezone(UTC)
        if nxt > until:
            break
        out.append(nxt)
    return out


def next_fire(cron: str, timezone: str, after: datetime) -> datetime:
    nxt: datetime = croniter(cron, after.astimezone(ZoneInfo(timezone))).get_next(datetime)
    return nxt.astimezone(UTC)


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    cron: str = Field(max_length=100, examples=["*/5 * * * *", "@hourly"])
    timezone: str = Field(default="UTC", max_length=64, examples=["Europe/Berlin"])
    job: JobSubmission = Field(description="The submission each fire time creates")
    enabled: bool = True
    catch_up: CatchUp = Field(
        default="none",
        description="Fire times missed while no API ran: none (skip them) or latest "
        "(run the most recent one once)",
    )

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron(value)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("job")
    @classmethod
    def _job(cls, value: JobSubmission) -> JobSubmission:
        return check_job(value)


class SchedulePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=100)
    cron: str | None = Field(default=None, max_length=100)
    timezone: str | None = Field(default=None, max_length=64)
    job: JobSubmission | None = None
    enabled: bool | None = None
    catch_up: CatchUp | None = None

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else check_cron(value)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return None if value is None else check_timezone(value)

    @field_validator("job")
    @classmethod
    def _job(cls, value: JobSubmission | None) -> JobSubmission | None:
        return None if value is None else check_job(value)


class LastRun(BaseModel):
    fire_time: datetime
    at: datetime
    job_id: str | None = None
    error: str | None = None


class ScheduleOut(BaseModel):
    """A schedule as the API shows it."""

    id: str
    name: str
    cron: str
    timezone: str
    job: JobSubmission
    enabled: bool
    catch_up: CatchUp
    next_run_at: datetime | None
    last_run: LastRun | None = None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, schedule: Schedule) -> ScheduleOut:
        return cls.model_validate(schedule.model_dump())


class Schedule(ScheduleOut):
    """As stored (``_id``); the API shows :class:`ScheduleOut`."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(alias="_id")

    def to_document(self) -> Document:
        doc = self.model_dump(mode="python", exclude={"id"})
        return doc | {"_id": self.id, "job": self.job.model_dump(mode="json", exclude_none=True)}


class ScheduleStore:
    def __init__(self, client: AsyncMongoClient[Document], db_name: str) -> None:
        self._col = client[db_name][SCHEDULES_COLLECTION]

    async def ensure_indexes(self) -> None:
        await create_missing_indexes(
            self._col, [pymongo.IndexModel([("enabled", 1), ("next_run_at", 1)], name="due")]
        )

    async def count(self) -> int:
        async with store_errors():
            return int(await self._col.count_documents({}))

    async def create(self, body: ScheduleIn) -> Schedule:
        now = utcnow()
        schedule = Schedule(
            id=uuid.uuid4().hex,
            **body.model_dump(exclude={"job"}),
            job=body.job,
            next_run_at=next_fire(body.cron, body.timezone, now) if body.enabled else None,
            created_at=now,
            updated_at=now,
        )
        async with store_errors():
            await self._col.insert_one(schedule.to_document())
        return schedule

    async def get(self, schedule_id: str) -> Schedule | None:
        async with store_errors():
            doc = await self._col.find_one({"_id": schedule_id})
        return None if doc is None else Schedule.model_validate(doc)

    async def every(self, limit: int) -> list[Schedule]:
        async with store_errors():
            docs = await self._col.find({}).sort("created_at", 1).limit(limit).to_list()
        return [Schedule.model_validate(d) for d in docs]

    async def due(self, now: datetime, limit: int = 100) -> list[Schedule]:
        async with store_errors():
            docs = (
                await self._col.find({"enabled": True, "next_run_at": {"$lte": now}})
                .limit(limit)
                .to_list()
            )
        return [Schedule.model_validate(d) for d in docs]

    async def update(self, schedule_id: str, changes: dict[str, Any]) -> Schedule | None:
        async with store_errors():
            doc = await self._col.find_one_and_update(
                {"_id": schedule_id},
                {"$set": changes | {"updated_at": utcnow()}},
                return_document=ReturnDocument.AFTER,
            )
        return None if doc is None else Schedule.model_validate(doc)

    async def advance(
        self, schedule: Schedule, next_run_at: datetime, last_run: LastRun | None
    ) -> None:
        """Move past fired times (only if nobody moved it further meanwhile)."""
        changes: dict[str, Any] = {"next_run_at": next_run_at}
        if last_run is not None:
            changes["last_run"] = last_run.model_dump()
        async with store_errors():
            await self._col.update_one(
                {"_id": schedule.id, "next_run_at": {"$lte": next_run_at}}, {"$set": changes}
            )

    async def delete(self, schedule_id: str) -> bool:
        async with store_errors():
            result = await self._col.delete_one({"_id": schedule_id})
        return result.deleted_count == 1

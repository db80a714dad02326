"""Opaque list cursors (store.encode_cursor / decode_cursor)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from conveyor_kernel.listing import InvalidCursorError, decode_cursor, encode_cursor
from conveyor_kernel.model import Job, utcnow


def job_at(created: datetime, job_id: str = "0123abcd") -> Job:
    return Job(id=job_id, type="echo", timeout_s=1, created_at=created, updated_at=created)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_round_trip_now() -> None:
    job = job_at(utcnow(), "f" * 32)
    created, job_id = decode_cursor(encode_cursor(job))
    assert created == job.created_at
    assert created.tzinfo is not None
    assert job_id == job.id


@pytest.mark.parametrize("millis", [0, 1, 999, 123, 7919, 86_399_999])
def test_round_trip_each_millisecond(millis: int) -> None:
    created = datetime(2025, 6, 1, tzinfo=UTC) + timedelta(milliseconds=millis)
    assert decode_cursor(encode_cursor(job_at(created))) == (created, "0123abcd")


def test_cursor_is_url_safe_and_unpadded() -> None:
    cursor = encode_cursor(job_at(utcnow(), "id-with:colon"))
    assert "=" not in cursor
    assert not set(cursor) - set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_cursor(cursor)[1] == "id-with:colon"


def test_cursor_orders_by_time_then_id() -> None:
    t = datetime(2025, 1, 1, tzinfo=UTC)
    earlier, later = (
        decode_cursor(encode_cursor(job_at(t))),
        decode_cursor(encode_cursor(job_at(t + timedelta(milliseconds=1)))),
    )
    assert earlier[0] < later[0]


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!!",
        "",
        "a",
        b64(b"no-colon-here"),
        b64(b"notanumber:abc"),
        b64(b"\xff\xfe:abc"),
        b64(b"1.5:abc"),
        b64(b"253402300800000:abc"),  # year 10000
    ],
)
def test_decode_garbage_raises_invalid_cursor(cursor: str) -> None:
    with pytest.raises(InvalidCursorError, match="invalid cursor"):
        decode_cursor(cursor)


def test_invalid_cursor_is_a_value_error() -> None:
    assert issubclass(InvalidCursorError, ValueError)


def test_decode_huge_timestamp_raises_invalid_cursor() -> None:
    with pytest.raises(InvalidCursorError):
        decode_cursor(b64(b"99999999999999999999:abc"))

"""What a payload or result must be to be stored on MongoDB and FerretDB alike."""

from __future__ import annotations

import pytest

from conveyor_kernel.documents import (
    MAX_DEPTH,
    UnstorableError,
    as_stored,
    check_value,
    encoded_size,
)


def nested(depth: int) -> object:
    value: object = {}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"n": 2**63}, "integer at .n is outside the int64 range"),
        ({"n": [-(2**63) - 1]}, "integer at .n[0] is outside"),
        ({"x": float("inf")}, "number at .x is not finite"),
        ({"x": {"$ref": "jobs", "$id": "1"}}, "key '$ref' at .x starts with '$'"),
        ({"a.b": 1}, "key 'a.b' at (top)"),
        ({"k\x00": 1}, "contains NUL"),
        ({"text": "a NUL \x00 in a value"}, "string at .text contains NUL"),
        ({"s": "\ud800"}, "string at .s has a lone surrogate"),
        ({"\udfff": 1}, "has a lone surrogate"),
        (nested(MAX_DEPTH + 1), f"nesting deeper than {MAX_DEPTH} levels"),
        ({"b": b"bytes"}, "is not JSON (bytes)"),
    ],
)
def test_refused_with_where_and_why(value: object, message: str) -> None:
    with pytest.raises(UnstorableError) as exc:
        check_value(value)
    assert message in str(exc.value)


@pytest.mark.parametrize(
    "value",
    [
        {"n": 2**63 - 1, "m": -(2**63), "f": 1.5, "t": True, "z": None},
        {"emoji": "🚚", "dollar": "$ref in a value is fine"},
        nested(MAX_DEPTH - 1),
        {"list": [[1, [2, {"k": "v"}]]]},
    ],
)
def test_accepted(value: object) -> None:
    check_value(value)


def test_size_limit_counts_compact_utf8_json() -> None:
    value = {"s": "é" * 10}
    assert encoded_size(value) == len('{"s":""}') + 20
    assert as_stored(value, encoded_size(value), "the payload") == value
    with pytest.raises(UnstorableError, match="the payload is 28 bytes encoded; the limit is 27"):
        as_stored(value, 27, "the payload")

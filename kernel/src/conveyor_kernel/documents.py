"""What a user-supplied JSON value (payload, result) must be to be stored, on
MongoDB and FerretDB alike. Checked before anything is written, so bad input is
a 4xx (or, for a handler's result, a permanent failure), never a store error.

Refused: integers outside int64, non-finite numbers, keys that start with ``$``
(which also covers DBRef-shaped objects) or contain ``.``, NUL in any key or
string (MongoDB stores it in values, FerretDB's PostgreSQL cannot: refused on
both alike), lone surrogates (not encodable as UTF-8), nesting deeper than
``MAX_DEPTH``, and an encoded value over its byte limit.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 32  # objects and arrays inside one another
MAX_PAYLOAD_BYTES = 256 * 1024  # a job's payload, as compact JSON
MAX_RESULT_BYTES = 1024 * 1024  # a handler's result, as compact JSON
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class UnstorableError(ValueError):
    """The value cannot be stored; the message names where and why."""


def _where(path: list[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path) or "(top)"


def _check_str(value: str, path: list[str | int], what: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UnstorableError(f"{what} at {_where(path)} has a lone surrogate") from None
    if "\x00" in value:
        raise UnstorableError(f"{what} at {_where(path)} contains NUL")


def check_value(value: Any, path: list[str | int] | None = None, depth: int = 0) -> None:
    """Raise :class:`UnstorableError` if ``value`` (JSON-shaped) cannot be stored."""
    path = path or []
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise UnstorableError(f"integer at {_where(path)} is outside the int64 range")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise UnstorableError(f"number at {_where(path)} is not finite")
    elif isinstance(value, str):
        _check_str(value, path, "string")
    elif isinstance(value, dict | list):
        if depth >= MAX_DEPTH:
            raise UnstorableError(f"nesting deeper than {MAX_DEPTH} levels at {_where(path)}")
        if isinstance(value, list):
            for i, item in enumerate(value):
                check_value(item, [*path, i], depth + 1)
            return
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnstorableError(f"key {key!r} at {_where(path)} is not a string")
            _check_str(key, path, f"key {key[:40]!r}")
            if key.startswith("$") or "." in key or "\x00" in key:
                raise UnstorableError(
                    f"key {key[:40]!r} at {_where(path)} starts with '$' or contains '.' or NUL"
                )
            check_value(item, [*path, key], depth + 1)
    else:
        raise UnstorableError(f"value at {_where(path)} is not JSON ({type(value).__name__})")


def encoded_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON (after :func:`check_value`)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def as_stored(value: Any, max_bytes: int, what: str) -> Any:
    """``value`` as it is stored and served: through JSON once (tuples become
    lists, keys strings), checked by :func:`check_value` and against ``max_bytes``
    of compact UTF-8 JSON. Raises ``TypeError`` for what JSON cannot encode."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    stored = json.loads(text)
    check_value(stored)
    size = len(text.encode())
    if size > max_bytes:
        raise UnstorableError(f"{what} is {size} bytes encoded; the limit is {max_bytes}")
    return stored

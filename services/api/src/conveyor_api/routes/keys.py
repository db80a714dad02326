"""``/v1/keys``: create (the key shown once), list and revoke API keys (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from conveyor_api.auth import Admin
from conveyor_api.keys import ApiKey, Scope, new_token, token_hash
from conveyor_api.problems import ApiError
from conveyor_api.state import State
from conveyor_kernel.model import utcnow

router = APIRouter(prefix="/v1", tags=["keys"], dependencies=[Admin])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such key"}}


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    scopes: list[Scope] = Field(min_length=1, max_length=3)
    expires_at: datetime | None = Field(default=None, description="After this, the key is a 401")
    rate_per_s: float | None = Field(
        default=None, ge=0, le=100_000, description="Requests/s (0: unlimited; default: server's)"
    )
    burst: int | None = Field(default=None, ge=1, le=1_000_000)

    @field_validator("expires_at")
    @classmethod
    def _future(cls, value: datetime | None) -> datetime | None:
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("give a time zone (e.g. 2027-01-01T00:00:00Z)")
            if value <= utcnow():
                raise ValueError("must be in the future")
        return value


class KeyOut(BaseModel):
    id: str
    name: str
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    rate_per_s: float | None
    burst: int | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls.model_validate(key.model_dump(exclude={"hash"}))


class KeyCreated(KeyOut):
    key: str = Field(description="The key itself: shown only in this answer, store it now")


@router.post("/keys", status_code=status.HTTP_201_CREATED)
async def create_key(body: KeyIn, state: State) -> KeyCreated:
    key_id, token = new_token()
    key = ApiKey(
        id=key_id,
        name=body.name,
        scopes=sorted(set(body.scopes)),
        hash=token_hash(token),
        created_at=utcnow(),
        expires_at=body.expires_at,
        rate_per_s=body.rate_per_s,
        burst=body.burst,
    )
    await state.keys.insert(key)
    return KeyCreated(**KeyOut.of(key).model_dump(), key=token)


@router.get("/keys")
async def list_keys(state: State) -> list[KeyOut]:
    return [KeyOut.of(k) for k in await state.keys.all()]


@router.delete("/keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def revoke_key(key_id: str, state: State) -> Response:
    """Revoke a key: a 401 from now on (other API replicas: within CONVEYOR_KEY_CACHE_S)."""
    if not await state.keys.delete(key_id):
        raise ApiError(404, "key_not_found", f"no API key {key_id!r}")
    state.auth.forget(key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

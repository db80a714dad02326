"""``POST /v1/jobs/batch``: up to 1,000 jobs in one all-or-nothing request."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from conveyor_api.auth import Write
from conveyor_api.enqueue import IdempotencyKey, enqueue_once
from conveyor_api.state import State
from conveyor_kernel.model import JobSubmission

MAX_BATCH = 1000
router = APIRouter(prefix="/v1", tags=["jobs"])


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: list[JobSubmission] = Field(min_length=1, max_length=MAX_BATCH)


class BatchOut(BaseModel):
    ids: list[str] = Field(description="Job ids, in the order of the request")
    count: int


@router.post(
    "/jobs/batch",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchOut,
    responses={
        413: {"description": "Body over the batch size limit"},
        422: {"description": "Any job invalid or of an unknown type (none accepted)"},
        503: {"description": "Broker or database unavailable (none accepted)"},
    },
    dependencies=[Write],
)
async def submit_batch(
    body: BatchIn, state: State, idempotency_key: IdempotencyKey = None
) -> Response:
    """Accept all the jobs or none: bulk write, pipelined confirmed publishes.

    A ``202`` means every job is stored and every message confirmed. On ``503``
    none of the jobs exists any more (any message that did reach the broker
    finds no job and is dropped by the worker), so the client can resubmit the
    whole batch.
    """
    jobs, replayed = await enqueue_once(
        state, body.jobs, idempotency_key, body.model_dump(mode="json")
    )
    return JSONResponse(
        BatchOut(ids=[j.id for j in jobs], count=len(jobs)).model_dump(),
        status_code=status.HTTP_200_OK if replayed else status.HTTP_202_ACCEPTED,
    )

"""A message that is not a valid job envelope: parked, with the reason, never retried."""

from __future__ import annotations

from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError

from conveyor_kernel.broker import Publisher, settle
from conveyor_kernel.errors import BrokerUnavailableError
from conveyor_kernel.logs import get_logger

log = get_logger(__name__)


async def park_poison(
    publisher: Publisher, message: AbstractIncomingMessage, error: ValidationError
) -> None:
    """Into the parking lot with ``x-conveyor-reason``; if the broker refuses the
    copy, a reject lets the dead-letter exchange park the message, sans reason."""
    reason = "poison: not a valid job envelope: " + str(error).replace("\n", "; ")
    log.warning("poison message; parking it", message_id=message.message_id, error=reason)
    try:
        await publisher.park(
            message.body,
            reason[:1000],
            {"x-conveyor-original-message-id": message.message_id or ""},
        )
    except BrokerUnavailableError:
        await settle(message.reject(requeue=False))
    else:
        await settle(message.ack())

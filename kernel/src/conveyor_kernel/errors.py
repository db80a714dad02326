"""One error taxonomy for the whole stack: retryable or permanent."""

from __future__ import annotations


class ConveyorError(Exception):
    """Base of every error Conveyor raises on purpose."""


class RetryableError(ConveyorError):
    """The attempt failed but a later attempt may succeed (the default for handler errors)."""


class PermanentError(ConveyorError):
    """The job can never succeed; do not spend retries on it."""


class JobTimeoutError(RetryableError):
    """The attempt exceeded the job's ``timeout_s``."""


class BrokerUnavailableError(ConveyorError):
    """RabbitMQ did not accept a message (down, nack, unroutable or confirm timeout)."""


class StoreUnavailableError(ConveyorError):
    """MongoDB could not be reached or did not acknowledge a write."""


class DocumentRefusedError(ConveyorError):
    """The store refused a document as invalid or too large: bad data, not an outage
    (the API answers 422; retrying the same write cannot succeed)."""


class ContentionError(ConveyorError):
    """A job document kept changing under a compare-and-set (another writer won);
    the message is requeued and decided again from the stored state."""


class InvalidEnvelopeError(PermanentError):
    """A broker message that cannot be parsed or validated (a poison message)."""

"""Secrets at rest: webhook signing secrets are stored sealed with Fernet.

``CONVEYOR_SECRETS_KEY`` holds one or more Fernet keys, comma-separated (make one
with ``Fernet.generate_key()``; ``make run`` keeps one in ``.infra/secrets-key``).
The first seals; every one opens, so keys rotate by putting the new one first
and dropping the old one once every stored secret has been rewritten (rotating
a subscription's secret rewrites it). A stored value is ``fernet:<token>``; one
without the prefix was stored before sealing was configured and is read as it
is (and sealed on its next write).
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

PREFIX = "fernet:"


class SealError(Exception):
    """A stored secret cannot be opened with the configured keys."""


class Sealer:
    def __init__(self, keys: Sequence[SecretStr]) -> None:
        self._fernet = (
            MultiFernet([Fernet(k.get_secret_value().encode()) for k in keys]) if keys else None
        )

    @property
    def enabled(self) -> bool:
        return self._fernet is not None

    def seal(self, secret: str) -> str:
        if self._fernet is None:
            return secret
        return PREFIX + self._fernet.encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str:
        if not stored.startswith(PREFIX):
            return stored
        if self._fernet is None:
            raise SealError("a sealed secret was found but CONVEYOR_SECRETS_KEY is not set")
        try:
            return self._fernet.decrypt(stored.removeprefix(PREFIX).encode()).decode()
        except InvalidToken:
            raise SealError("a sealed secret does not open with CONVEYOR_SECRETS_KEY") from None


def check_fernet_key(key: str) -> None:
    """Raise ``ValueError`` unless ``key`` is a Fernet key (32 bytes, urlsafe base64)."""
    try:
        Fernet(key.encode())
    except (ValueError, TypeError):
        raise ValueError(
            "not a Fernet key (32 bytes, urlsafe base64; make one with Fernet.generate_key())"
        ) from None

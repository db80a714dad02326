"""Webhook secrets at rest: sealed with Fernet, keys rotate, legacy values read."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr, ValidationError

from conveyor_kernel.sealing import PREFIX, Sealer, SealError
from conveyor_notifier.settings import NotifierSettings


def key() -> SecretStr:
    return SecretStr(Fernet.generate_key().decode())


def test_sealed_values_open_and_hide_the_secret() -> None:
    sealer = Sealer([key()])
    sealed = sealer.seal("whsec_top-secret")
    assert sealed.startswith(PREFIX)
    assert "top-secret" not in sealed
    assert sealer.seal("whsec_top-secret") != sealed  # randomised
    assert sealer.open(sealed) == "whsec_top-secret"


def test_keys_rotate_new_first_old_still_opens() -> None:
    old, new = key(), key()
    sealed_before = Sealer([old]).seal("s1")
    rotated = Sealer([new, old])
    assert rotated.open(sealed_before) == "s1"
    sealed_after = rotated.seal("s2")
    assert Sealer([new]).open(sealed_after) == "s2"
    with pytest.raises(SealError, match="does not open"):
        Sealer([new]).open(sealed_before)  # the old key was dropped too early


def test_unsealed_legacy_values_are_read_as_they_are() -> None:
    assert Sealer([key()]).open("whsec_legacy") == "whsec_legacy"
    assert Sealer([]).seal("whsec_plain") == "whsec_plain"
    with pytest.raises(SealError, match="not set"):
        Sealer([]).open(Sealer([key()]).seal("x"))


def test_settings_refuse_a_key_that_is_not_fernet() -> None:
    good = Fernet.generate_key().decode()
    settings = NotifierSettings(secrets_key=[good])
    assert settings.secrets_key[0].get_secret_value() == good
    with pytest.raises(ValidationError, match="not a Fernet key"):
        NotifierSettings(secrets_key=["hunter2"])

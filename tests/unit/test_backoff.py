"""Backoff policy and delay tiers (pure functions)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from conveyor_kernel.model import Backoff, JobSubmission
from conveyor_kernel.topology import DELAY_TIERS_S, delay_tier


def test_defaults_are_sane() -> None:
    b = JobSubmission(type="echo").backoff
    assert (b.base_s, b.factor, b.max_s, b.jitter) == (1.0, 2.0, 3600.0, True)


def test_nominal_delay_grows_exponentially_and_is_capped() -> None:
    b = Backoff(base_s=1, factor=2, max_s=10, jitter=False)
    assert [b.delay_s(n, 0.99) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_huge_retry_numbers_do_not_overflow() -> None:
    assert Backoff(base_s=1, factor=100, max_s=60).nominal_s(10_000) == 60


@pytest.mark.parametrize("rand", [0.0, 0.25, 0.999999])
def test_jitter_stays_between_half_and_full_delay(rand: float) -> None:
    b = Backoff(base_s=8, factor=1, max_s=100, jitter=True)
    assert 4 <= b.delay_s(1, rand) <= 8
    assert b.delay_s(1, 0.0) == 4


def test_zero_base_means_immediate_retry() -> None:
    assert Backoff(base_s=0).delay_s(5, 0.5) == 0


@pytest.mark.parametrize("bad", [{"base_s": -1}, {"factor": 0.5}, {"max_s": -2}, {"x": 1}])
def test_invalid_backoff_is_rejected(bad: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        JobSubmission(type="echo", backoff=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("remaining", "tier"),
    [
        (-5, None),
        (0, None),
        (0.99, None),
        (1, 1),
        (4.9, 1),
        (5, 5),
        (29, 5),
        (31, 30),
        (600, 600),
        (3599, 600),
        (3600, 3600),
        (86400 * 3, 3600),
    ],
)
def test_delay_tier_never_overshoots(remaining: float, tier: int | None) -> None:
    assert delay_tier(remaining) == tier


def test_tiers_are_sorted_and_start_at_one_second() -> None:
    assert list(DELAY_TIERS_S) == sorted(DELAY_TIERS_S)
    assert DELAY_TIERS_S[0] == 1

"""The chaos run's short variant (``make chaos`` runs the full one): 1,000 jobs
through one worker SIGKILL and one RabbitMQ restart, with the same invariants."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.chaos.run import Scenario, run
from tests.infra import Infra

pytestmark = pytest.mark.integration

SHORT = Scenario(
    jobs=1000,
    workers=2,
    worker_concurrency=16,
    spread_s=20.0,
    worker_kills=1,
    kill_api=False,
    restart_broker=True,
    restart_store=False,
    kill_notifier=False,
    deadline_s=150.0,
    seed=7,
    log_level="INFO",
)


@pytest.mark.timeout(240)
async def test_short_chaos_run_loses_and_duplicates_nothing(infra: Infra, tmp_path: Path) -> None:
    if infra.kind != "local" or shutil.which("rabbitmqctl") is None:
        pytest.skip("restarts the local broker (scripts/infra.sh)")
    rec = await run(SHORT, infra, tmp_path)
    print(rec.to_json())
    assert rec.faults, "no fault was injected"
    assert rec.accepted == rec.submitted == SHORT.jobs
    assert rec.lost == 0
    assert rec.duplicated_completions == 0
    assert rec.duplicated_keys == 0
    assert rec.unaccepted_jobs == 0
    assert rec.violations == [], rec.to_json()
    assert sum(rec.terminal.values()) == SHORT.jobs
    assert rec.parked == rec.expected_parked + rec.failed_by_lost_attempts > 0

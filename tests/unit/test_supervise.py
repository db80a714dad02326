"""The `make run` supervisor's restart policy: capped backoff, crash-loop cap."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture(scope="module")
def supervise() -> ModuleType:
    sys.path.insert(0, str(SCRIPTS))  # supervise.py imports mongo_ping beside it
    try:
        spec = importlib.util.spec_from_file_location("supervise", SCRIPTS / "supervise.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["supervise"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(SCRIPTS))


def test_backoff_doubles_per_recent_crash_and_is_capped(supervise: ModuleType) -> None:
    policy = supervise.RestartPolicy(
        backoff_s=0.5, backoff_max_s=3, crash_limit=10, crash_window_s=60
    )
    child = supervise.Child("worker-1", ["true"], {})
    delays = []
    for t in (0.0, 1.0, 2.0, 3.0, 4.0):
        assert child.crashed(t, policy)
        delays.append(child.restart_at - t)
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_crash_loop_is_the_limit_within_the_window(supervise: ModuleType) -> None:
    policy = supervise.RestartPolicy(crash_limit=3, crash_window_s=60)
    child = supervise.Child("notifier", ["true"], {})
    assert child.crashed(0.0, policy)
    assert child.crashed(30.0, policy)
    assert not child.crashed(59.0, policy)  # third exit within 60 s


def test_old_crashes_are_forgotten(supervise: ModuleType) -> None:
    policy = supervise.RestartPolicy(backoff_s=1, crash_limit=3, crash_window_s=60)
    child = supervise.Child("api", ["true"], {})
    assert child.crashed(0.0, policy)
    assert child.crashed(30.0, policy)
    assert child.crashed(100.0, policy)  # the first two are over 60 s old
    assert child.restart_at == 101.0  # and the backoff starts over


def test_exit_codes_name_the_signal(supervise: ModuleType) -> None:
    assert supervise.describe_exit(-9) == "-9 (SIGKILL)"
    assert supervise.describe_exit(3) == "3"


def test_policy_from_env_rejects_nonsense(supervise: ModuleType) -> None:
    policy = supervise.RestartPolicy.from_env({"CONVEYOR_RUN_CRASH_LIMIT": "2"})
    assert policy.crash_limit == 2
    assert policy.backoff_max_s == 10
    with pytest.raises(SystemExit, match="CONVEYOR_RUN_RESTART_BACKOFF_S='soon'"):
        supervise.RestartPolicy.from_env({"CONVEYOR_RUN_RESTART_BACKOFF_S": "soon"})


def test_a_local_admin_key_is_generated_once_and_kept(
    supervise: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env: dict[str, str] = {}
    supervise.ensure_admin_key(env, tmp_path / "state")
    key = env["CONVEYOR_ADMIN_KEY"]
    assert len(key) >= 32
    path = tmp_path / "state" / "admin-key"
    assert path.read_text().strip() == key
    assert path.stat().st_mode & 0o777 == 0o600
    assert key in capsys.readouterr().err  # printed on first start
    again: dict[str, str] = {}
    supervise.ensure_admin_key(again, tmp_path / "state")
    assert again["CONVEYOR_ADMIN_KEY"] == key
    assert key not in capsys.readouterr().err  # later starts say where it is
    given = {"CONVEYOR_ADMIN_KEY": "from-the-environment-" + "x" * 20}
    supervise.ensure_admin_key(given, tmp_path / "other")
    assert not (tmp_path / "other").exists()

"""List settings accept comma-separated values as well as JSON; invalid settings
give one line naming the variable, never a traceback or a secret."""

from __future__ import annotations

import os
from ipaddress import IPv4Network

import pytest
from pydantic import ValidationError

from conveyor_kernel.settings import load_settings, settings_errors
from conveyor_notifier.settings import NotifierSettings
from conveyor_worker.settings import WorkerSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CONVEYOR_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    "raw",
    ["127.0.0.0/8,10.0.0.0/8", " 127.0.0.0/8 , 10.0.0.0/8 ,", '["127.0.0.0/8", "10.0.0.0/8"]'],
)
def test_list_setting_takes_commas_or_json(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("CONVEYOR_NOTIFY_ALLOWED_NETWORKS", raw)
    settings = NotifierSettings()
    assert settings.notify_allowed_networks == [
        IPv4Network("127.0.0.0/8"),
        IPv4Network("10.0.0.0/8"),
    ]


def test_numbers_and_empty_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_NOTIFY_RETRY_SCHEDULE_S", "1,2.5,10")
    monkeypatch.setenv("CONVEYOR_HANDLER_MODULES", "")
    settings = NotifierSettings()
    assert settings.notify_retry_schedule_s == [1.0, 2.5, 10.0]
    assert settings.handler_modules == []
    assert settings.max_attempts == 4


def test_invalid_item_names_the_variable_and_the_item(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_NOTIFY_ALLOWED_NETWORKS", "10.0.0.0/8,nope")
    with pytest.raises(ValidationError) as exc:
        NotifierSettings()
    (line,) = settings_errors(NotifierSettings, exc.value)
    assert line.startswith("invalid setting CONVEYOR_NOTIFY_ALLOWED_NETWORKS='10.0.0.0/8,nope': ")
    assert "(item 2)" in line
    assert line.endswith("e.g. CONVEYOR_NOTIFY_ALLOWED_NETWORKS=127.0.0.0/8,10.0.0.0/8")


def test_broken_json_list_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_NOTIFY_RETRY_SCHEDULE_S", "[1,")
    with pytest.raises(ValidationError) as exc:
        NotifierSettings()
    (line,) = settings_errors(NotifierSettings, exc.value)
    assert "not a valid JSON list" in line
    assert "e.g. CONVEYOR_NOTIFY_RETRY_SCHEDULE_S=5,30,120" in line


def test_load_settings_exits_2_with_one_line_per_problem(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONVEYOR_WORKER_CONCURRENCY", "many")
    monkeypatch.setenv("CONVEYOR_WEBHOOK_SECRET", "hunter2-not-a-whsec")
    with pytest.raises(SystemExit) as exc:
        load_settings(WorkerSettings, "conveyor-worker")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert all(line.startswith("conveyor-worker: invalid setting CONVEYOR_") for line in lines)
    assert "CONVEYOR_WORKER_CONCURRENCY='many'" in err
    assert "CONVEYOR_WEBHOOK_SECRET=(hidden)" in err
    assert "hunter2" not in err
    assert "Traceback" not in err

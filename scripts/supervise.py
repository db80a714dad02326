"""Run api + worker(s) + notifier in the foreground; Ctrl-C / SIGTERM stops them all.

Used by ``make run``. ``CONVEYOR_RUN_WORKERS`` sets how many worker processes run
(default 1); each gets its own metrics port (9101, then 9103, 9104, ...; the
notifier 9102; ``CONVEYOR_METRICS_PORT`` moves the base). If any child exits on
its own, the others are stopped and the supervisor exits with that child's code.

If ``scripts/infra.sh`` started the local FerretDB (``.infra/ferretdb.pid``
exists and ``CONVEYOR_MONGODB_URL`` is unset), a watchdog thread pings it every
10 s with a 5 s deadline; when the ping times out (FerretDB v1 wedges once its
PostgreSQL pool is exhausted) or the port stops answering, it runs
``scripts/infra.sh heal``, which checks again and restarts FerretDB. FerretDB
keeps no state of its own, so the services only see a few failed operations.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mongo_ping  # scripts/mongo_ping.py, next to this file

STOP_TIMEOUT_S = 45.0
WATCHDOG_INTERVAL_S = 10.0
PING_TIMEOUT_S = 5.0
HEAL_TIMEOUT_S = 300.0
ROOT = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    print(f"[supervise] {message}", file=sys.stderr, flush=True)


def watch_ferretdb(stop: threading.Event, state_dir: Path, port: int = 27017) -> None:
    """Until ``stop`` is set: ping the FerretDB infra.sh started; heal it when it hangs."""
    pid_file = state_dir / "ferretdb.pid"
    while not stop.wait(WATCHDOG_INTERVAL_S):
        if not pid_file.exists():  # not ours (or stopped with `infra.sh down`)
            continue
        result = mongo_ping.ping("127.0.0.1", port, PING_TIMEOUT_S)
        if result.code == mongo_ping.TIMED_OUT:
            reason = f"ping timed out after {PING_TIMEOUT_S:g} s (wedged PostgreSQL pool?)"
        elif result.code == mongo_ping.UNREACHABLE:
            reason = f"it does not accept connections ({result.detail})"
        else:
            continue  # answered (an error reply is not a wedge; infra.sh status shows it)
        log(f"ferretdb: {reason}; running scripts/infra.sh heal")
        try:
            healed = subprocess.run(
                [str(ROOT / "scripts" / "infra.sh"), "heal"],
                stdin=subprocess.DEVNULL,
                timeout=HEAL_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            log(f"ferretdb: infra.sh heal did not finish within {HEAL_TIMEOUT_S:g} s")
            continue
        if healed.returncode != 0:
            log(f"ferretdb: infra.sh heal exited with {healed.returncode}")


def main() -> int:
    workers = int(os.environ.get("CONVEYOR_RUN_WORKERS", "1"))
    py = sys.executable
    # One metrics port per process: workers 9101, 9103, 9104, ...; the notifier 9102.
    base = int(os.environ.get("CONVEYOR_METRICS_PORT", "9101"))
    worker_ports = [base] + [base + 1 + i for i in range(1, workers)]
    commands = [
        ([py, "-m", "conveyor_api.main"], {}),
        *(
            ([py, "-m", "conveyor_worker.main"], {"CONVEYOR_METRICS_PORT": str(port)})
            for port in worker_ports
        ),
        ([py, "-m", "conveyor_notifier.main"], {"CONVEYOR_METRICS_PORT": str(base + 1)}),
    ]
    children = [subprocess.Popen(cmd, env=os.environ | extra) for cmd, extra in commands]
    stopping = False
    watchdog_stop = threading.Event()
    if "CONVEYOR_MONGODB_URL" not in os.environ:
        state_dir = Path(os.environ.get("CONVEYOR_STATE_DIR", ROOT / ".infra"))
        threading.Thread(
            target=watch_ferretdb,
            args=(watchdog_stop, state_dir),
            name="ferretdb-watchdog",
            daemon=True,
        ).start()

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    exit_code = 0
    while not stopping:
        for child, (cmd, _extra) in zip(children, commands, strict=True):
            code = child.poll()
            if code is not None:
                log(f"{cmd[-1]} (pid {child.pid}) exited with {code}; stopping the rest")
                stopping, exit_code = True, code or 1
                break
        time.sleep(0.2)
    watchdog_stop.set()
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            exit_code = exit_code or 1
    return exit_code


if __name__ == "__main__":
    sys.exit(main())

"""Run api + worker(s) + notifier in the foreground; Ctrl-C / SIGTERM stops them all.

Used by ``make run``. ``CONVEYOR_RUN_WORKERS`` sets how many worker processes run
(default 1); each gets its own metrics port (9101, then 9103, 9104, ...; the
notifier 9102; ``CONVEYOR_METRICS_PORT`` moves the base). If any child exits on
its own, the others are stopped and the supervisor exits with that child's code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

STOP_TIMEOUT_S = 45.0


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

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    exit_code = 0
    while not stopping:
        for child in children:
            code = child.poll()
            if code is not None:
                print(
                    f"[supervise] {child.args[0]} exited with {code}; stopping the rest",
                    file=sys.stderr,
                )
                stopping, exit_code = True, code or 1
                break
        time.sleep(0.2)
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

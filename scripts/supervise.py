"""Run api + worker(s) + notifier in the foreground; Ctrl-C / SIGTERM stops them all.

Used by ``make run``. ``CONVEYOR_RUN_WORKERS`` sets how many worker processes run
(default 1); each gets its own metrics port (9101, then 9103, 9104, ...; the
notifier 9102; ``CONVEYOR_METRICS_PORT`` moves the base).

A process that exits on its own (crash, SIGKILL, OOM) is restarted, like
compose's ``restart: unless-stopped``: after a capped exponential backoff
(``CONVEYOR_RUN_RESTART_BACKOFF_S`` 0.5 s, doubling per recent crash, at most
``CONVEYOR_RUN_RESTART_BACKOFF_MAX_S`` 10 s), each restart logged with the exit
code. The others carry on meanwhile. A crash loop, ``CONVEYOR_RUN_CRASH_LIMIT``
(5) exits of one process within ``CONVEYOR_RUN_CRASH_WINDOW_S`` (60 s), stops
everything and exits with 1, naming the process. Ctrl-C or SIGTERM stops every
process and exits with 0.

Without ``CONVEYOR_ADMIN_KEY`` it generates a local admin API key on first start,
prints it and keeps it in ``.infra/admin-key`` (mode 0600) for later starts.

If ``scripts/infra.sh`` started the local FerretDB (``.infra/ferretdb.pid``
exists and ``CONVEYOR_MONGODB_URL`` is unset), a watchdog thread pings it every
10 s with a 5 s deadline; when the ping times out (FerretDB v1 wedges once its
PostgreSQL pool is exhausted) or the port stops answering, it runs
``scripts/infra.sh heal``, which checks again and restarts FerretDB. FerretDB
keeps no state of its own, so the services only see a few failed operations.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import mongo_ping  # scripts/mongo_ping.py, next to this file

STOP_TIMEOUT_S = 45.0
WATCHDOG_INTERVAL_S = 10.0
PING_TIMEOUT_S = 5.0
HEAL_TIMEOUT_S = 300.0
ROOT = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    print(f"[supervise] {message}", file=sys.stderr, flush=True)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"{code} ({signal.Signals(-code).name})"
        except ValueError:
            return str(code)
    return str(code)


@dataclass(frozen=True)
class RestartPolicy:
    backoff_s: float = 0.5
    backoff_max_s: float = 10.0
    crash_limit: int = 5
    crash_window_s: float = 60.0

    @classmethod
    def from_env(cls, env: dict[str, str]) -> RestartPolicy:
        def number(name: str, default: float) -> float:
            raw = env.get(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                value = -1.0
            if value < 0:
                sys.exit(f"invalid setting {name}={raw!r}: a number >= 0 is needed; e.g. {name}=5")
            return value

        return cls(
            backoff_s=number("CONVEYOR_RUN_RESTART_BACKOFF_S", cls.backoff_s),
            backoff_max_s=number("CONVEYOR_RUN_RESTART_BACKOFF_MAX_S", cls.backoff_max_s),
            crash_limit=max(1, int(number("CONVEYOR_RUN_CRASH_LIMIT", cls.crash_limit))),
            crash_window_s=number("CONVEYOR_RUN_CRASH_WINDOW_S", cls.crash_window_s),
        )


@dataclass
class Child:
    """One supervised process and its recent crashes."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    crashes: deque[float] = field(default_factory=deque)
    restart_at: float | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, env=self.env)
        self.restart_at = None

    def crashed(self, now: float, policy: RestartPolicy) -> bool:
        """Record an exit at ``now``; ``False`` when that makes a crash loop."""
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > policy.crash_window_s:
            self.crashes.popleft()
        if len(self.crashes) >= policy.crash_limit:
            return False
        delay = min(policy.backoff_max_s, policy.backoff_s * 2 ** (len(self.crashes) - 1))
        self.restart_at = now + delay
        return True


def ensure_secrets_key(env: dict[str, str], state_dir: Path) -> None:
    """Without ``CONVEYOR_SECRETS_KEY``, use (or make) the local Fernet key in
    ``<state>/secrets-key``: it seals webhook secrets at rest."""
    if env.get("CONVEYOR_SECRETS_KEY"):
        return
    path = state_dir / "secrets-key"
    if not path.exists():
        key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(key + "\n")
        log(f"generated a local key sealing webhook secrets at rest: {path}")
    env["CONVEYOR_SECRETS_KEY"] = path.read_text().strip()


def ensure_admin_key(env: dict[str, str], state_dir: Path) -> None:
    """Without ``CONVEYOR_ADMIN_KEY``, use the local one in ``<state>/admin-key``,
    generating it (and printing it) on first start."""
    if env.get("CONVEYOR_ADMIN_KEY"):
        return
    path = state_dir / "admin-key"
    if path.exists():
        key = path.read_text().strip()
        log(f"admin API key: in {path} (export CONVEYOR_API_KEY=$(cat {path}))")
    else:
        key = "cvadm_" + secrets.token_urlsafe(32)
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(key + "\n")
        log(f"generated a local admin API key: {key}")
        log(f"kept in {path}; use it with: export CONVEYOR_API_KEY=$(cat {path})")
    env["CONVEYOR_ADMIN_KEY"] = key


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


def children_from_env(env: dict[str, str]) -> list[Child]:
    workers = int(env.get("CONVEYOR_RUN_WORKERS", "1"))
    py = sys.executable
    # One metrics port per process: workers 9101, 9103, 9104, ...; the notifier 9102.
    base = int(env.get("CONVEYOR_METRICS_PORT", "9101"))
    worker_ports = [base] + [base + 1 + i for i in range(1, workers)]
    return [
        Child("api", [py, "-m", "conveyor_api.main"], env),
        *(
            Child(
                "worker" if workers == 1 else f"worker-{i + 1}",
                [py, "-m", "conveyor_worker.main"],
                env | {"CONVEYOR_METRICS_PORT": str(port)},
            )
            for i, port in enumerate(worker_ports)
        ),
        Child(
            "notifier",
            [py, "-m", "conveyor_notifier.main"],
            env | {"CONVEYOR_METRICS_PORT": str(base + 1)},
        ),
    ]


def supervise(children: list[Child], policy: RestartPolicy, stopping: threading.Event) -> int:
    """Keep every child running until ``stopping`` is set (0) or one crash-loops (1)."""
    for child in children:
        child.start()
    while not stopping.wait(0.2):
        now = time.monotonic()
        for child in children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.start()
                    assert child.proc is not None
                    log(f"{child.name} restarted (pid {child.proc.pid})")
                continue
            assert child.proc is not None
            code = child.proc.poll()
            if code is None:
                continue
            pid = child.proc.pid
            if not child.crashed(now, policy):
                log(
                    f"{child.name} (pid {pid}) exited with {describe_exit(code)}: "
                    f"{len(child.crashes)} exits within {policy.crash_window_s:g} s, a crash "
                    f"loop; giving up on {child.name} and stopping the rest"
                )
                return 1
            assert child.restart_at is not None
            log(
                f"{child.name} (pid {pid}) exited with {describe_exit(code)}; restarting it in "
                f"{child.restart_at - now:.1f} s (exit {len(child.crashes)} of "
                f"{policy.crash_limit} allowed within {policy.crash_window_s:g} s); "
                "the other processes carry on"
            )
    return 0


def stop_all(children: list[Child]) -> bool:
    """SIGTERM every running child, SIGKILL any still there after STOP_TIMEOUT_S;
    ``True`` if all stopped in time."""
    running = [c.proc for c in children if c.proc is not None and c.proc.poll() is None]
    for proc in running:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    clean = True
    for proc in running:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            clean = False
    return clean


def main() -> int:
    env = dict(os.environ)
    state_dir = Path(env.get("CONVEYOR_STATE_DIR", ROOT / ".infra"))
    ensure_admin_key(env, state_dir)
    ensure_secrets_key(env, state_dir)
    policy = RestartPolicy.from_env(env)
    children = children_from_env(env)
    stopping = threading.Event()
    watchdog_stop = threading.Event()
    if "CONVEYOR_MONGODB_URL" not in env:
        threading.Thread(
            target=watch_ferretdb,
            args=(watchdog_stop, state_dir),
            name="ferretdb-watchdog",
            daemon=True,
        ).start()

    def stop(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    exit_code = supervise(children, policy, stopping)
    watchdog_stop.set()
    if not stop_all(children):
        exit_code = exit_code or 1
    return exit_code


if __name__ == "__main__":
    sys.exit(main())

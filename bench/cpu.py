"""CPU time by process group, read from ``/proc``: what each part of a system costs.

A :class:`CpuMeter` samples, every ``interval_s`` in a thread, the user + system
CPU of each group: the processes a bench started (with all their descendants,
e.g. Celery's pool or uvicorn's), RabbitMQ (every Erlang process of the
machine), the store (FerretDB and every PostgreSQL process) and the bench's
own process (the load client). :meth:`CpuMeter.between` gives each group's CPU
seconds between two wall-clock times, from the samples nearest to them, so a
run's window can be chosen after the run (first submit to last result), leaving
out the harness's counting afterwards.

A process that exits inside the window takes its CPU with it (``/proc`` keeps no
record); the groups measured here live for the whole run.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
RABBITMQ = frozenset({"beam.smp", "erl_child_setup", "epmd", "inet_gethost"})
STORE = frozenset({"ferretdb", "postgres"})


def _read_all() -> dict[int, tuple[str, int, float]]:
    """Every process: pid -> (comm, ppid, CPU seconds)."""
    out: dict[int, tuple[str, int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # comm is in parentheses and may contain spaces: split after the last ')'.
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        ppid, utime, stime = int(fields[1]), int(fields[11]), int(fields[12])
        out[int(entry.name)] = (comm, ppid, (utime + stime) / CLK_TCK)
    return out


def _with_descendants(roots: Iterable[int], procs: dict[int, tuple[str, int, float]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    seen: set[int] = set()
    todo = [p for p in roots if p in procs]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children.get(pid, ()))
    return seen


class CpuMeter:
    """``groups``: name -> root pids (descendants included). ``rabbitmq``, ``store``
    and ``client`` are added by process name and by this process's pid."""

    def __init__(self, groups: dict[str, list[int]], interval_s: float = 0.5) -> None:
        self._groups = dict(groups)
        self._interval_s = interval_s
        self._times: list[float] = []
        self._samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cpu-meter", daemon=True)

    @property
    def names(self) -> list[str]:
        return [*self._groups, "rabbitmq", "store", "client"]

    def sample(self) -> dict[str, float]:
        procs = _read_all()
        me = os.getpid()
        taken: set[int] = {me}
        out: dict[str, float] = {}
        for name, roots in self._groups.items():
            pids = _with_descendants(roots, procs) - taken
            taken |= pids
            out[name] = sum(procs[p][2] for p in pids)
        out["rabbitmq"] = sum(c for p, (n, _, c) in procs.items() if n in RABBITMQ)
        out["store"] = sum(c for p, (n, _, c) in procs.items() if n in STORE)
        out["client"] = procs[me][2] if me in procs else 0.0
        return out

    def _loop(self) -> None:
        while not self._stop.is_set():
            now, sample = time.time(), self.sample()
            self._times.append(now)
            self._samples.append(sample)
            self._stop.wait(self._interval_s)

    def __enter__(self) -> CpuMeter:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _nearest(self, t: float) -> dict[str, float]:
        i = bisect.bisect_left(self._times, t)
        if i == len(self._times):
            return self._samples[-1]
        if i > 0 and t - self._times[i - 1] < self._times[i] - t:
            i -= 1
        return self._samples[i]

    def between(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds of each group from wall time ``start`` to ``end``."""
        if not self._samples:
            return {}
        a, b = self._nearest(start), self._nearest(end)
        return {k: max(0.0, b.get(k, 0.0) - a.get(k, 0.0)) for k in b}


def per_job_ms(cpu_s: dict[str, float], jobs: int) -> dict[str, float]:
    """CPU ms per job by group, plus ``total`` and ``total_less_client``."""
    if not jobs:
        return {}
    out = {k: round(v * 1000 / jobs, 3) for k, v in cpu_s.items()}
    out["total"] = round(sum(cpu_s.values()) * 1000 / jobs, 3)
    out["total_less_client"] = round(
        sum(v for k, v in cpu_s.items() if k != "client") * 1000 / jobs, 3
    )
    return out

"""Conveyor vs Celery, side by side, on the same RabbitMQ and MongoDB-wire server.

Runs N no-op jobs through each system with the same number of worker processes
and concurrent submitters, then prints one table (submit rate, end-to-end
jobs/s, enqueue latency p50/p99, store round trips per job), the
Conveyor/Celery ratios, and a scaling series over 1, 2 and 4 worker processes.
The JSON goes to bench/results/. See bench/README.md for what is measured.

    uv run python bench/compare.py --jobs 20000 --workers 2
    uv run python bench/compare.py --jobs 2000 --no-scaling
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from benchlib import add_server_args
from compare_celery import run_celery
from compare_common import RunResult, RunSpec, log
from compare_conveyor import run_conveyor

ROOT = Path(__file__).resolve().parent.parent
Runner = Callable[[RunSpec, RunResult], Awaitable[None]]
SYSTEMS: dict[str, tuple[str, Runner]] = {
    "conveyor": ("Conveyor", run_conveyor),
    "celery": ("Celery", run_celery),
}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=2, help="worker processes of each system")
    ap.add_argument("--clients", type=int, default=64, help="concurrent submitters")
    ap.add_argument(
        "--worker-concurrency", type=int, default=16, help="Conveyor: jobs in flight per process"
    )
    ap.add_argument(
        "--prefetch-multiplier",
        type=int,
        default=16,
        help="Celery: messages prefetched per pool process (16 = Conveyor's prefetch)",
    )
    ap.add_argument(
        "--celery-confirm-publish",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="apply_async waits for the broker's confirm, as Conveyor's POST does",
    )
    ap.add_argument("--deadline-s", type=float, default=1800, help="per system and run")
    ap.add_argument(
        "--scaling", action=argparse.BooleanOptionalAction, default=True, help="scaling series"
    )
    ap.add_argument("--scaling-jobs", type=int, default=5000)
    ap.add_argument("--scaling-workers", default="1,2,4", help="comma-separated process counts")
    ap.add_argument(
        "--io-scaling",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Conveyor's I/O-bound series: sleep jobs over --io-workers processes",
    )
    ap.add_argument("--io-workers", default="1,2,4,8", help="comma-separated process counts")
    ap.add_argument("--io-jobs", type=int, default=4000)
    ap.add_argument("--io-sleep-ms", type=int, default=50)
    ap.add_argument("--systems", default="conveyor,celery", help="run only some (debugging)")
    ap.add_argument(
        "--preload",
        type=int,
        default=0,
        metavar="N",
        help="Conveyor's main run: N finished jobs stored before it, in bulk (cost must not "
        "grow with them)",
    )
    ap.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="py-spy flame graphs of Conveyor's API, workers and notifier (main run) into DIR",
    )
    add_server_args(ap)
    ap.add_argument(
        "--rabbitmq-api",
        default="http://guest:guest@127.0.0.1:15672",
        help="management API, to delete each run's queues and exchanges",
    )
    return ap.parse_args()


async def run_one(name: str, runner: Runner, spec: RunSpec) -> RunResult:
    log(name, f"{spec.jobs} jobs, {spec.workers} worker processes")
    result = RunResult(name, spec.workers, spec.jobs)
    try:
        await runner(spec, result)
    except TimeoutError:
        result.error = f"deadline of {spec.deadline_s:.0f} s exceeded"
    except Exception as exc:  # noqa: BLE001 - reported in the table; the other runs go on
        result.error = f"{type(exc).__name__}: {exc}"
    if result.error:
        result.error += f" ({len(result.latencies)} of {spec.jobs} submitted by then)"
        log(name, f"FAILED: {result.error}")
    return result


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def cell(r: RunResult | None) -> str:
    if r is None:
        return "-"
    return "failed" if r.error else fmt(r.end_to_end_rate)


def breakdown(counts: dict[str, float] | None, jobs: int) -> str:
    if counts is None:
        return ""
    parts = sorted(counts.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k} {v / jobs:.2f}" for k, v in parts) or "none"


CPU_PARTS = ("api", "workers", "notifier", "rabbitmq", "store", "client", "total_less_client")


def cpu_table(runs: list[RunResult]) -> list[str]:
    """CPU ms per job by process group, first submit to last result (bench/cpu.py)."""
    measured = [r for r in runs if not r.error and r.cpu_ms]
    if not measured:
        return []
    names = [r.system for r in measured]
    lines = [
        "",
        "CPU per job (ms, user + system, first submit to last result; "
        "rabbitmq and store are the whole servers):",
        "",
        "| Part | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for part in CPU_PARTS:
        cells = [
            fmt((r.cpu_ms or {}).get(part), 2) if part in (r.cpu_ms or {}) else "-"
            for r in measured
        ]
        label = "total less client" if part == "total_less_client" else part
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def io_table(runs: list[RunResult], args: argparse.Namespace) -> str:
    """The I/O-bound series: jobs/s per worker count, the CPU it used of the
    machine's cores, and the part that spends the most CPU per job."""
    if not runs:
        return ""
    cores = os.cpu_count() or 1
    lines = [
        "",
        "",
        f"I/O-bound scaling (Conveyor): {args.io_jobs:,} sleep jobs of {args.io_sleep_ms} ms, "
        f"{args.worker_concurrency} in flight per worker process",
        "",
        "| Worker processes | End-to-end (jobs/s) | Ideal (jobs/s) | CPU used (of "
        f"{cores} cores) | Costliest part (ms/job) |",
        "|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        ideal = r.workers * args.worker_concurrency * 1000 / args.io_sleep_ms
        if r.error or not r.cpu_ms:
            lines.append(f"| {r.workers} | {cell(r)} | {ideal:,.0f} | | |")
            continue
        parts = {k: v for k, v in r.cpu_ms.items() if k in CPU_PARTS[:-1]}
        top = max(parts, key=lambda k: parts[k])
        used = r.cpu_ms["total"] * r.end_to_end_rate / 1000
        lines.append(
            f"| {r.workers} | {fmt(r.end_to_end_rate)} | {ideal:,.0f} "
            f"| {used:.2f} ({used / cores:.0%}) | {top} {parts[top]:.2f} |"
        )
    return "\n".join(lines)


def report(main: list[RunResult], scaling: list[RunResult], args: argparse.Namespace) -> str:
    lines = [
        f"Conveyor vs Celery: {args.jobs:,} no-op jobs, {args.workers} worker processes each, "
        f"{args.clients} concurrent submitters",
        f"(Conveyor: {args.worker_concurrency} jobs in flight per worker process; Celery: "
        f"prefork, --prefetch-multiplier {args.prefetch_multiplier}, apply_async from "
        f"{args.clients} threads, confirm_publish {args.celery_confirm_publish})",
        "",
        "| System | Submit (jobs/s) | End-to-end (jobs/s) | Enqueue p50 (ms) "
        "| Enqueue p99 (ms) | Store round trips/job | Not accepted |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in main:
        if r.error:
            lines.append(f"| {r.system} | failed: {r.error} | | | | | |")
            continue
        lines.append(
            f"| {r.system} | {fmt(r.submit_rate)} | {fmt(r.end_to_end_rate)} "
            f"| {fmt(r.enqueue_ms(50), 2)} | {fmt(r.enqueue_ms(99), 2)} "
            f"| {fmt(r.store_per_job(), 2)} | {r.errors} |"
        )
    by = {r.system: r for r in main if not r.error}
    if "Conveyor" in by and "Celery" in by:
        c, k = by["Conveyor"], by["Celery"]
        lines.append(
            f"\nConveyor/Celery: end-to-end {ratio(c.end_to_end_rate, k.end_to_end_rate)}, "
            f"submit {ratio(c.submit_rate, k.submit_rate)}"
        )
    if any(not r.error for r in main):
        lines.append("\nStore round trips per job (MongoDB commands, by command):")
    for r in (r for r in main if not r.error):
        who = "API + workers" if r.system == "Conveyor" else "result backend"
        per_job = r.store_per_job()
        counts = "n/a (not exported)" if per_job is None else f"{per_job:.2f} = "
        lines.append(f"  {r.system} ({who}): {counts}{breakdown(r.store_commands, r.accepted)}")
        if r.extra_commands is not None:
            extra = sum(r.extra_commands.values()) / r.accepted
            lines.append(f"    + notifier: {extra:.2f} = {breakdown(r.extra_commands, r.accepted)}")
        lines.extend(f"    note: {n}" for n in r.notes)
    lines.extend(cpu_table(main))
    if scaling:
        lines += [
            "",
            f"Scaling: end-to-end jobs/s, {args.scaling_jobs:,} jobs per run",
            "",
            "| Worker processes | Conveyor | Celery | Conveyor/Celery |",
            "|---:|---:|---:|---:|",
        ]
        for w in sorted({r.workers for r in scaling}):
            row = {r.system: r for r in scaling if r.workers == w}
            cells = [cell(row.get(s)) for s in ("Conveyor", "Celery")]
            rates = [row[s].end_to_end_rate if s in row else 0.0 for s in ("Conveyor", "Celery")]
            lines.append(f"| {w} | {cells[0]} | {cells[1]} | {ratio(*rates)} |")
    return "\n".join(lines)


async def main() -> int:
    args = parse_args()
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = [SYSTEMS[s.strip()] for s in args.systems.split(",") if s.strip()]
    spec = RunSpec(
        jobs=args.jobs,
        workers=args.workers,
        clients=args.clients,
        worker_concurrency=args.worker_concurrency,
        prefetch_multiplier=args.prefetch_multiplier,
        confirm_publish=args.celery_confirm_publish,
        deadline_s=args.deadline_s,
        amqp_url=args.amqp_url,
        mongodb_url=args.mongodb_url,
        rabbit_api=args.rabbitmq_api,
        out_dir=out_dir,
        profile_dir=args.profile,
        preload=args.preload,
    )
    task = asyncio.current_task()
    assert task is not None

    def interrupted(sig: signal.Signals) -> None:
        if task.cancelling():  # a second signal must not cut the cleanup short
            log("compare", f"{sig.name}: already stopping, cleaning up")
            return
        log("compare", f"{sig.name}: stopping after cleaning up the current run")
        task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, interrupted, sig)
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())

    path = out_dir / f"compare-{started}.json"
    main_runs: list[RunResult] = []
    scaling_runs: list[RunResult] = []
    io_runs: list[RunResult] = []

    def save(table: str | None = None) -> None:
        """After every run, so that an interrupted run keeps what it measured."""
        body = {
            "started": started,
            "argv": sys.argv[1:],
            "config": vars(args),
            "main": [r.to_json() for r in main_runs],
            "scaling": [r.to_json() for r in scaling_runs],
            "io_scaling": [r.to_json() for r in io_runs],
            "table": table,
        }
        path.write_text(json.dumps(body, indent=2, default=str))

    try:
        for name, runner in chosen:
            main_runs.append(await run_one(name, runner, spec))
            save()
        conveyor = [(n, r) for n, r in chosen if n == "Conveyor"]
        for w in (int(x) for x in args.io_workers.split(",")) if args.io_scaling else ():
            for name, runner in conveyor:
                sub = replace(
                    spec,
                    jobs=args.io_jobs,
                    workers=w,
                    profile_dir=None,
                    sleep_ms=args.io_sleep_ms,
                    preload=0,
                )
                io_runs.append(await run_one(name, runner, sub))
                save()
        for w in (int(x) for x in args.scaling_workers.split(",")) if args.scaling else ():
            for name, runner in chosen:
                sub = replace(spec, jobs=args.scaling_jobs, workers=w, profile_dir=None, preload=0)
                scaling_runs.append(await run_one(name, runner, sub))
                save()
    finally:  # interrupted too: the runs that finished
        table = report(main_runs, scaling_runs, args) + io_table(io_runs, args)
        print(table)
        save(table)
        print(f"\nJSON: {path.relative_to(ROOT)}")
    return 1 if any(r.error for r in main_runs + scaling_runs + io_runs) else 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted (the current run was cleaned up)", file=sys.stderr)
        sys.exit(130)

"""The README's benchmark figures, drawn with matplotlib from a ``compare.py`` JSON.

    uv run --frozen python bench/plot.py bench/results/compare-<time>.json

writes ``docs/bench-cpu.png`` (CPU ms per job of each part, Conveyor beside
Celery) and ``docs/bench-scaling.png`` (end-to-end jobs/s over worker processes:
the no-op series of both systems and Conveyor's I/O-bound series with its ideal).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parent.parent
PARTS = ["api", "workers", "notifier", "rabbitmq", "store", "client"]


def plot_cpu(main: list[dict[str, Any]], out: Path) -> None:
    runs = [r for r in main if r.get("cpu_ms") and not r.get("error")]
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
    width = 0.8 / max(1, len(runs))
    for i, r in enumerate(runs):
        xs = [p + i * width for p in range(len(PARTS))]
        values = [r["cpu_ms"].get(part, 0.0) for part in PARTS]
        bars = ax.bar(xs, values, width, label=f"{r['system']} ({r['end_to_end_jobs_per_s']}/s)")
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks([p + width * (len(runs) - 1) / 2 for p in range(len(PARTS))], PARTS)
    ax.set_ylabel("CPU ms per job")
    jobs = runs[0]["jobs"] if runs else 0
    ax.set_title(f"CPU per job by part, {jobs:,} no-op jobs, 2 worker processes")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def plot_scaling(body: dict[str, Any], out: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
    for system in ("Conveyor", "Celery"):
        runs = [r for r in body.get("scaling", []) if r["system"] == system and not r["error"]]
        if runs:
            ax.plot(
                [r["workers"] for r in runs],
                [r["end_to_end_jobs_per_s"] for r in runs],
                marker="o",
                label=f"{system}, no-op jobs",
            )
    io = [r for r in body.get("io_scaling", []) if not r["error"]]
    config = body["config"]
    if io:
        ws = [r["workers"] for r in io]
        ax.plot(
            ws,
            [r["end_to_end_jobs_per_s"] for r in io],
            marker="s",
            label=f"Conveyor, sleep {config['io_sleep_ms']} ms jobs",
        )
        ideal = [w * config["worker_concurrency"] * 1000 / config["io_sleep_ms"] for w in ws]
        ax.plot(ws, ideal, linestyle=":", color="grey", label="sleep jobs, no overhead")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("worker processes")
    ax.set_ylabel("end-to-end jobs/s")
    ax.set_title("Scaling over worker processes (2 cores)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("json", type=Path)
    ap.add_argument("--out-dir", type=Path, default=ROOT / "docs")
    args = ap.parse_args()
    body = json.loads(args.json.read_text())
    plot_cpu(body["main"], args.out_dir / "bench-cpu.png")
    plot_scaling(body, args.out_dir / "bench-scaling.png")
    print(f"wrote {args.out_dir / 'bench-cpu.png'} and {args.out_dir / 'bench-scaling.png'}")


if __name__ == "__main__":
    main()

"""``python -m tests.chaos`` (``make chaos``): the full run, its table and JSON.

Exits 1 if any invariant fails. Needs the local stack's servers
(``scripts/infra.sh up``): it restarts RabbitMQ and the MongoDB-wire server.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tests.chaos.reckoning import Reckoning
from tests.chaos.run import Scenario, run
from tests.infra import provide


def print_table(rec: Reckoning, console: Console) -> None:
    table = Table(title="Chaos reckoning")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("must be")
    for row in rec.rows():
        table.add_row(*row)
    console.print(table)
    for fault in rec.faults:
        console.print(f"  fault: {fault}")
    verdict = "PASS" if not rec.violations else "FAIL: " + "; ".join(rec.violations)
    console.print(verdict, style="bold green" if not rec.violations else "bold red")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--spread-s", type=float, default=90.0)
    ap.add_argument("--deadline-s", type=float, default=900.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench/results/chaos.json"))
    args = ap.parse_args()
    scenario = Scenario(
        jobs=args.jobs, spread_s=args.spread_s, deadline_s=args.deadline_s, seed=args.seed
    )
    infra = provide()
    workdir = Path(tempfile.mkdtemp(prefix="conveyor-chaos-"))
    print(f"logs: {workdir}", file=sys.stderr)
    rec = asyncio.run(run(scenario, infra, workdir))
    print_table(rec, Console())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(rec.to_json() + "\n")
    print(f"written: {args.out}", file=sys.stderr)
    return 1 if rec.violations else 0


if __name__ == "__main__":
    sys.exit(main())

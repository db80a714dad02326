"""py-spy flame graphs of running services, for ``compare.py --profile DIR``.

:class:`Profiler` starts one ``py-spy record`` per process (``--nonblocking``, so
the services are never paused; 100 Hz; subprocesses included, for uvicorn's or
Celery's children) and stops them with SIGINT, on which py-spy writes its SVG.
Open the SVGs in a browser: the widest frames are where the CPU goes.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path


class Profiler:
    def __init__(self, out_dir: Path, rate_hz: int = 100) -> None:
        self._out_dir = out_dir
        self._rate_hz = rate_hz
        self._procs: list[subprocess.Popen[bytes]] = []
        self.files: list[Path] = []

    def start(self, targets: dict[str, int]) -> None:
        """``targets``: the SVG's name (``api``, ``worker-0``, …) -> pid."""
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self._out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in targets.items():
            out = self._out_dir / f"{name}.svg"
            cmd = [exe, "record", "--pid", str(pid), "--rate", str(self._rate_hz)]
            cmd += ["--nonblocking", "--subprocesses", "--format", "flamegraph", "-o", str(out)]
            self._procs.append(
                subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
            self.files.append(out)

    def stop(self) -> list[Path]:
        """SIGINT each recorder and wait for its SVG; the files written."""
        for p in self._procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in self._procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        self._procs.clear()
        return [f for f in self.files if f.exists()]

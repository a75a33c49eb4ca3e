"""CPU contention: how long the step thread waited for a core while it was runnable.

On a shared machine the step thread can be ready to run and still wait in the kernel's
run queue. That wait lengthens the step's wall time outside every op, so a trace counts
it as framework overhead. ``ContentionMeter`` measures it directly from Linux's
``/proc/self/task/<tid>/schedstat`` (second field: nanoseconds spent runnable but waiting
for a CPU) between ``start()`` and ``stop()``, together with the load average and the
busiest other processes, so the analysis can show it as its own category,
``cpu_contention``, and a finding can name what else was running.

Elsewhere (no schedstat) the meter reports ``available: False`` with the reason: never 0.
Must not import tensorflow, pynvml or streamlit.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import psutil

BUSIEST_N = 5


def _schedstat_path(tid: int) -> Path:
    return Path(f"/proc/self/task/{tid}/schedstat")


def read_wait_ns(tid: int) -> int | None:
    """Run-queue wait of thread ``tid`` so far, in ns, or None where the kernel has none."""
    try:
        fields = _schedstat_path(tid).read_text().split()
    except OSError:
        return None
    return int(fields[1]) if len(fields) >= 2 else None


def busiest_processes(primed: dict[int, psutil.Process], n: int = BUSIEST_N) -> list[dict[str, Any]]:
    """Other processes by CPU use since ``primed`` was taken (cpu_percent needs two calls)."""
    me = os.getpid()
    rows = []
    for pid, proc in primed.items():
        if pid == me:
            continue
        try:
            pct = proc.cpu_percent(None)
            name = proc.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if pct > 0:
            rows.append({"pid": pid, "name": name, "cpu_pct": round(pct, 1)})
    rows.sort(key=lambda r: -r["cpu_pct"])
    return rows[:n]


def _prime() -> dict[int, psutil.Process]:
    out: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter():
        try:
            proc.cpu_percent(None)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        out[proc.pid] = proc
    return out


class ContentionMeter:
    """Run-queue wait of one thread (the caller of ``start``) over a span of wall time.

    ``start``/``stop`` may be called from different threads (a timer may close a window):
    the thread measured is the one that called ``start``.
    """

    def __init__(self) -> None:
        self.tid: int | None = None
        self._wait0: int | None = None
        self._t0: int | None = None
        self._primed: dict[int, psutil.Process] = {}
        self.result: dict[str, Any] | None = None

    def start(self) -> None:
        self.tid = threading.get_native_id()
        self._wait0 = read_wait_ns(self.tid)
        self._t0 = time.perf_counter_ns()
        if self._wait0 is not None:
            self._primed = _prime()

    def stop(self) -> dict[str, Any]:
        if self.result is not None:
            return self.result
        if self._t0 is None or self.tid is None:
            self.result = {"available": False, "reason": "the contention meter never started"}
            return self.result
        wall_ns = time.perf_counter_ns() - self._t0
        wait1 = read_wait_ns(self.tid)
        if self._wait0 is None or wait1 is None:
            self.result = {"available": False,
                           "reason": "no /proc/<pid>/task/<tid>/schedstat here (Linux with "
                                     "schedstats only): CPU contention cannot be measured"}
            return self.result
        wait_ns = max(wait1 - self._wait0, 0)
        try:
            load = [round(x, 2) for x in os.getloadavg()]
        except OSError:
            load = None
        self.result = {
            "available": True, "wait_ms": wait_ns / 1e6, "wall_ms": wall_ns / 1e6,
            "fraction": min(wait_ns / wall_ns, 1.0) if wall_ns > 0 else None,
            "loadavg": load, "cpu_count": os.cpu_count(),
            "busiest": busiest_processes(self._primed),
            "source": "/proc/self/task/<tid>/schedstat run-queue wait of the step thread",
        }
        return self.result

"""Utilization samplers: host (psutil) and GPU (NVML), ticked by one background thread.

A ``SamplerSet`` runs one daemon thread that, every ``interval_s`` (10 Hz by default),
asks each *available* sampler for its readings and stores them as rows of the
``samples`` table (``ts_us, source, metric, value``; metric names carry units).
``ts_us`` is ``(time.perf_counter_ns() - t0_ns) / 1e3``: the step recorder's clock, so
utilization lines up with steps and phases.

No silent zeros: a sampler that cannot measure reports ``available=False`` with its
reason (``status()``, for the manifest), and a metric it cannot read (NVML
``NotSupported`` for power, a pid NVML does not list, ...) is omitted from the table and
the reason is kept in that sampler's ``notes``. Nothing is ever stored as 0 in its place.

With ``live_path`` every tick also appends its rows as JSON lines (flushed), which the
dashboard reads with ``read_live`` while a run is going.

Must not import tensorflow or streamlit. ``pynvml`` is imported only inside
``GpuSampler``'s methods, never at module level. Nothing runs at import time.
"""
from __future__ import annotations

import json
import os
import statistics
import threading
import time
from pathlib import Path
from types import ModuleType, TracebackType
from typing import IO, Any, ClassVar

import pandas as pd
import psutil

from profilers.errors import BadInput, BadTable, CaptureFailed
from profilers.model import empty_table, validate_table
from profilers.registry import lookup

MIB = 1024 * 1024

#: One reading: (metric name with its unit, value).
Reading = tuple[str, float]

#: How long ``stop()`` waits for the sampling thread before giving up loudly.
JOIN_TIMEOUT_S = 10.0


class Sampler:
    """One source of utilization readings.

    Life cycle, driven by ``SamplerSet``: ``open()`` in the caller's thread (acquire
    handles; returns availability), ``prime()`` once in the sampling thread, ``read()``
    every tick in the sampling thread, ``close()`` in the caller's thread.
    ``availability()`` can be called on its own, without starting anything, and holds
    no resource afterwards.
    """

    name: ClassVar[str] = ""

    def __init__(self, *, pid: int | None = None) -> None:
        self.pid: int = os.getpid() if pid is None else int(pid)
        #: metric (or call) -> why it is missing from the table. Written by ``read``.
        self.notes: dict[str, str] = {}

    def availability(self) -> tuple[bool, str | None]:
        return True, None

    def open(self) -> tuple[bool, str | None]:
        return self.availability()

    def prime(self) -> None:
        """Called once in the sampling thread before the first tick."""

    def read(self) -> list[Reading]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what ``open`` acquired. Safe to call more than once."""


# -- host ---------------------------------------------------------------------------
class HostSampler(Sampler):
    """psutil readings of one process (``pid``, default: this one) and of the machine.

    Metrics: ``proc_cpu_pct`` (percent of one core, psutil semantics: 2 busy cores =
    200), ``rss_mib``, ``threads`` (OS threads: BLAS pools and, for this process, the
    sampler's own thread included), ``system_cpu_pct`` (all cores, 0-100) and
    ``core<N>_cpu_pct``. CPU percentages cover the time since the previous tick;
    ``system_cpu_pct`` is the mean of the per-core figures (one ``/proc/stat`` read).
    """

    name = "host"

    def __init__(self, *, pid: int | None = None) -> None:
        super().__init__(pid=pid)
        self._proc: psutil.Process | None = None

    def availability(self) -> tuple[bool, str | None]:
        try:
            proc = psutil.Process(self.pid)
            proc.memory_info()
        except psutil.NoSuchProcess:
            return False, f"no process with pid {self.pid}"
        except psutil.AccessDenied:
            return False, f"no permission to read process {self.pid} (psutil AccessDenied)"
        return True, None

    def open(self) -> tuple[bool, str | None]:
        ok, reason = self.availability()
        if ok:
            self._proc = psutil.Process(self.pid)  # reused every tick
        return ok, reason

    def prime(self) -> None:
        # interval=None compares with the previous call; the first call of each (per
        # process object / per thread for the system-wide ones) is meaningless.
        assert self._proc is not None, "open() first"
        try:
            self._proc.cpu_percent(interval=None)
        except (psutil.NoSuchProcess, psutil.AccessDenied) as exc:
            self.notes["proc_cpu_pct"] = _psutil_reason(exc, self.pid)
        psutil.cpu_percent(interval=None, percpu=True)

    def read(self) -> list[Reading]:
        assert self._proc is not None, "open() first"
        out: list[Reading] = []
        try:
            with self._proc.oneshot():
                out.append(("proc_cpu_pct", self._proc.cpu_percent(interval=None)))
                out.append(("rss_mib", self._proc.memory_info().rss / MIB))
                out.append(("threads", float(self._proc.num_threads())))
        except (psutil.NoSuchProcess, psutil.AccessDenied) as exc:
            for metric in ("proc_cpu_pct", "rss_mib", "threads"):
                if all(m != metric for m, _ in out):
                    self.notes[metric] = _psutil_reason(exc, self.pid)
        per_core = psutil.cpu_percent(interval=None, percpu=True)
        out.extend((f"core{i}_cpu_pct", pct) for i, pct in enumerate(per_core))
        if per_core:  # one /proc/stat read per tick: the machine is the mean of its cores
            out.append(("system_cpu_pct", sum(per_core) / len(per_core)))
        return out

    def close(self) -> None:
        self._proc = None


def _psutil_reason(exc: psutil.Error, pid: int) -> str:
    if isinstance(exc, psutil.NoSuchProcess):
        return f"process {pid} is gone ({type(exc).__name__})"
    return f"no permission to read process {pid} ({type(exc).__name__})"


# -- GPU ----------------------------------------------------------------------------
#: NVML errors that will not go away by asking again: stop asking for that metric.
_PERMANENT_NVML_ERRORS = ("NVMLError_NotSupported", "NVMLError_NoPermission",
                          "NVMLError_FunctionNotFound")

#: What an nvmlInit failure means, by error class name.
_INIT_MEANINGS = {
    "NVMLError_LibraryNotFound": "NVML library not found (no NVIDIA driver)",
    "NVMLError_DriverNotLoaded": "NVIDIA driver not loaded",
    "NVMLError_NoPermission": "no permission to use NVML",
    "NVMLError_LibRmVersionMismatch": "NVML library and kernel driver versions differ",
}


def _nvml_reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class GpuSampler(Sampler):
    """NVML readings per GPU index ``i``.

    Metrics: ``gpu<i>_util_pct``, ``gpu<i>_mem_used_mib``, ``gpu<i>_mem_total_mib``,
    ``gpu<i>_power_w``, ``gpu<i>_sm_clock_mhz`` and ``gpu<i>_proc_mem_mib`` (memory of
    the sampled pid, when NVML lists it among the compute processes and reports its
    memory). A metric NVML cannot give is omitted and its reason kept in ``notes``.
    """

    name = "gpu"

    def __init__(self, *, pid: int | None = None) -> None:
        super().__init__(pid=pid)
        self._probe: tuple[bool, str | None] | None = None
        self._nvml: ModuleType | None = None
        self._handles: list[Any] | None = None
        self._skip: set[str] = set()
        self._permanent: tuple[type[BaseException], ...] = ()

    @staticmethod
    def _import() -> tuple[ModuleType | None, str | None]:
        try:
            import pynvml  # deferred: only the GPU sampler pays for it
        except ImportError as exc:
            return None, f"nvidia-ml-py is not installed (import pynvml failed: {exc})"
        return pynvml, None

    def availability(self) -> tuple[bool, str | None]:
        if self._handles is not None:
            return True, None
        if self._probe is None:
            ok, reason = self._init()
            if ok:
                self._shutdown()
            self._probe = (ok, reason)
        return self._probe

    def open(self) -> tuple[bool, str | None]:
        if self._handles is not None:
            return True, None
        ok, reason = self._init()
        self._probe = (ok, reason)
        return ok, reason

    def _init(self) -> tuple[bool, str | None]:
        """nvmlInit + handles. On success NVML stays initialised (``_shutdown`` ends it)."""
        nv, reason = self._import()
        if nv is None:
            return False, reason
        try:
            nv.nvmlInit()
        except nv.NVMLError as exc:
            meaning = _INIT_MEANINGS.get(type(exc).__name__, "NVML could not start")
            return False, f"{meaning}: {_nvml_reason(exc)}"
        try:
            count = nv.nvmlDeviceGetCount()
            handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except nv.NVMLError as exc:
            self._nvml = nv
            self._shutdown()
            return False, f"NVML could not enumerate GPUs: {_nvml_reason(exc)}"
        self._nvml = nv
        if not handles:
            self._shutdown()
            return False, "NVML found no NVIDIA GPU"
        self._handles = handles
        self._permanent = tuple(
            cls for cls in (getattr(nv, n, None) for n in _PERMANENT_NVML_ERRORS)
            if isinstance(cls, type)
        )
        return True, None

    def _shutdown(self) -> None:
        nv, self._nvml, self._handles = self._nvml, None, None
        if nv is None:
            return
        try:
            nv.nvmlShutdown()
        except nv.NVMLError as exc:
            self.notes["nvmlShutdown"] = _nvml_reason(exc)

    def _ask(self, metric: str, call: Any, *args: Any) -> Any:
        """``call(*args)``, or None with the reason noted (and stop asking if permanent)."""
        assert self._nvml is not None
        if metric in self._skip:
            return None
        try:
            return call(*args)
        except self._nvml.NVMLError as exc:
            self.notes[metric] = _nvml_reason(exc)
            if isinstance(exc, self._permanent):
                self._skip.add(metric)
            return None

    def read(self) -> list[Reading]:
        nv, handles = self._nvml, self._handles
        assert nv is not None and handles is not None, "open() first"
        out: list[Reading] = []
        for i, h in enumerate(handles):
            p = f"gpu{i}_"
            util = self._ask(p + "util_pct", nv.nvmlDeviceGetUtilizationRates, h)
            if util is not None:
                out.append((p + "util_pct", float(util.gpu)))
            mem = self._ask(p + "mem_used_mib", nv.nvmlDeviceGetMemoryInfo, h)
            if mem is None:
                if p + "mem_used_mib" in self.notes:
                    self.notes[p + "mem_total_mib"] = self.notes[p + "mem_used_mib"]
            else:
                out.append((p + "mem_used_mib", mem.used / MIB))
                out.append((p + "mem_total_mib", mem.total / MIB))
            power_mw = self._ask(p + "power_w", nv.nvmlDeviceGetPowerUsage, h)
            if power_mw is not None:
                out.append((p + "power_w", power_mw / 1000.0))
            sm_mhz = self._ask(p + "sm_clock_mhz", nv.nvmlDeviceGetClockInfo, h,
                               nv.NVML_CLOCK_SM)
            if sm_mhz is not None:
                out.append((p + "sm_clock_mhz", float(sm_mhz)))
            procs = self._ask(p + "proc_mem_mib",
                              nv.nvmlDeviceGetComputeRunningProcesses, h)
            if procs is not None:
                self._proc_mem(out, p + "proc_mem_mib", procs)
        return out

    def _proc_mem(self, out: list[Reading], metric: str, procs: list[Any]) -> None:
        mine = [pr for pr in procs if pr.pid == self.pid]
        if not mine:
            self.notes[metric] = (
                f"pid {self.pid} is not among NVML's compute processes (no CUDA context "
                "yet, or a PID namespace such as a container hides it)")
            return
        if any(pr.usedGpuMemory is None for pr in mine):
            self.notes[metric] = (f"NVML lists pid {self.pid} but not its memory "
                                  "(usedGpuMemory not available, e.g. under WDDM)")
            return
        out.append((metric, sum(pr.usedGpuMemory for pr in mine) / MIB))

    def close(self) -> None:
        self._shutdown()
        self._skip.clear()


#: Sampler registry (sorted). CLI choices and UI selectboxes are built from it.
SAMPLERS: dict[str, type[Sampler]] = dict(sorted({
    GpuSampler.name: GpuSampler,
    HostSampler.name: HostSampler,
}.items()))


# -- the set and its thread ---------------------------------------------------------
class SamplerSet:
    """Samplers ticked together by one daemon thread; ``stop()`` returns the table.

    ``t0_ns`` is the run's ``time.perf_counter_ns()`` origin (the step recorder's).
    Usable as a context manager; the table is then in ``.table`` after the block.
    """

    THREAD_NAME = "sgdscope-sampler"

    def __init__(
        self,
        names: list[str] | tuple[str, ...],
        *,
        interval_s: float = 0.1,
        t0_ns: int,
        pid: int | None = None,
        live_path: str | Path | None = None,
    ) -> None:
        if not interval_s > 0:
            raise BadInput(f"Sampling interval must be > 0 s, got {interval_s!r}.",
                           "Use e.g. interval_s=0.1 (10 Hz).")
        if len(set(names)) != len(names):
            raise BadInput(f"Sampler names repeat: {list(names)}.", "Name each sampler once.")
        self.samplers: list[Sampler] = [
            lookup(SAMPLERS, n, "sampler")(pid=pid) for n in names]
        self.interval_s = float(interval_s)
        self.t0_ns = int(t0_ns)
        self.live_path = Path(live_path) if live_path is not None else None
        self.table: pd.DataFrame | None = None
        self._status: dict[str, tuple[bool, str | None]] = {}
        self._active: list[Sampler] = []
        self._rows: list[tuple[float, str, str, float]] = []
        self._tick_wall_ns: list[int] = []
        self._tick_cpu_ns: list[int] = []
        self._live: IO[str] | None = None
        self._live_error: str | None = None
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    # -- control ---------------------------------------------------------------------
    def start(self) -> "SamplerSet":
        if self._thread is not None or self.table is not None:
            raise RuntimeError("SamplerSet.start() called twice; make a new SamplerSet.")
        try:
            for s in self.samplers:
                ok, reason = s.open()
                self._status[s.name] = (ok, reason)
                if ok:
                    self._active.append(s)
            if self.live_path is not None:
                self.live_path.parent.mkdir(parents=True, exist_ok=True)
                self._live = open(self.live_path, "a", encoding="utf-8")
        except BaseException:
            for s in self.samplers:  # release NVML etc. before the error goes up
                s.close()
            raise
        self._thread = threading.Thread(target=self._run, name=self.THREAD_NAME, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> pd.DataFrame:
        """Stop and join the thread, close samplers and the live file; return ``samples``."""
        if self.table is not None:
            return self.table
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop_event.set()
            thread.join(JOIN_TIMEOUT_S)
            if thread.is_alive():
                raise CaptureFailed(
                    f"The sampler thread did not stop within {JOIN_TIMEOUT_S:.0f} s "
                    "(a psutil or NVML call is stuck).",
                    "Run again without the GPU sampler, or check the NVIDIA driver.")
        for s in self.samplers:
            s.close()
        if self._live is not None:
            self._live.close()
            self._live = None
        if self._rows:
            df = pd.DataFrame(self._rows, columns=["ts_us", "source", "metric", "value"])
        else:
            df = empty_table("samples")
        self.table = validate_table("samples", df, " (sampler output)")
        return self.table

    def __enter__(self) -> "SamplerSet":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- reports ---------------------------------------------------------------------
    def status(self) -> dict[str, dict[str, Any]]:
        """``{name: {"available", "reason", "notes"}}`` for the manifest.

        Before ``start()`` this probes each sampler's ``availability()``. ``notes``
        maps a metric (or call) to why it is missing from the table.
        """
        out: dict[str, dict[str, Any]] = {}
        for s in self.samplers:
            ok, reason = self._status.get(s.name) or s.availability()
            out[s.name] = {"available": ok, "reason": reason, "notes": dict(s.notes)}
        return out

    @property
    def ticks(self) -> int:
        return len(self._tick_wall_ns)

    def stats(self) -> dict[str, Any]:
        """The sampler's own cost: ticks done, wall and thread CPU time per tick (µs)."""
        walls_us = [w / 1e3 for w in self._tick_wall_ns]
        cpus_us = [c / 1e3 for c in self._tick_cpu_ns]
        return {
            "interval_s": self.interval_s,
            "ticks": len(walls_us),
            "tick_wall_us_median": statistics.median(walls_us) if walls_us else None,
            "tick_wall_us_max": max(walls_us) if walls_us else None,
            "tick_cpu_us_median": statistics.median(cpus_us) if cpus_us else None,
            "tick_cpu_s_total": sum(cpus_us) / 1e6,
            "live_path": str(self.live_path) if self.live_path else None,
            "live_error": self._live_error,
        }

    # -- the thread ------------------------------------------------------------------
    def _run(self) -> None:
        for s in list(self._active):
            self._guarded(s, s.prime)
        interval_ns = int(self.interval_s * 1e9)
        next_ns = time.perf_counter_ns() + interval_ns
        while not self._stop_event.wait(max(0.0, (next_ns - time.perf_counter_ns()) / 1e9)):
            self._tick()
            next_ns += interval_ns
            now = time.perf_counter_ns()
            if next_ns <= now:  # fell behind (loaded machine): skip, don't burst
                next_ns = now + interval_ns

    def _tick(self) -> None:
        begin, begin_cpu = time.perf_counter_ns(), time.thread_time_ns()
        rows: list[tuple[float, str, str, float]] = []
        for s in list(self._active):
            ts_us = (time.perf_counter_ns() - self.t0_ns) / 1e3
            readings = self._guarded(s, s.read)
            if readings:
                rows.extend((ts_us, s.name, m, float(v)) for m, v in readings)
        self._rows.extend(rows)
        if self._live is not None and rows:
            self._write_live(rows)
        self._tick_cpu_ns.append(time.thread_time_ns() - begin_cpu)
        self._tick_wall_ns.append(time.perf_counter_ns() - begin)

    def _guarded(self, s: Sampler, call: Any) -> Any:
        # Thread boundary: an unexpected error here would otherwise only reach
        # threading.excepthook and vanish from the run. The sampler is dropped and the
        # error goes into status() (the manifest), with the time it happened.
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - recorded in status(), not swallowed
            ts_s = (time.perf_counter_ns() - self.t0_ns) / 1e9
            self._status[s.name] = (
                True, f"sampling stopped at t={ts_s:.3f} s: {type(exc).__name__}: {exc}")
            self._active.remove(s)
            return None

    def _write_live(self, rows: list[tuple[float, str, str, float]]) -> None:
        assert self._live is not None
        text = "".join(
            json.dumps({"ts_us": t, "source": src, "metric": m, "value": v},
                       separators=(",", ":")) + "\n"
            for t, src, m, v in rows)
        try:
            self._live.write(text)
            self._live.flush()
        except OSError as exc:
            self._live_error = f"live file {self.live_path} stopped: {exc}"
            self._live.close()
            self._live = None


def read_live(path: str | Path, since_ts_us: float | None = None) -> pd.DataFrame:
    """Rows written so far to a live samples file (JSON lines), as a ``samples`` table.

    A missing or empty file gives an empty table (the run has not ticked yet). A last
    line without its newline (being written right now) is ignored; a bad line before
    it is a ``BadTable``. ``since_ts_us`` keeps only rows with ``ts_us`` greater than it.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return empty_table("samples")
    lines = text.split("\n")
    # The part after the last newline is a line still being written (or "").
    records: list[dict[str, Any]] = []
    for lineno, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise BadTable(f"Live samples file {path}, line {lineno}, is not JSON: {exc}.",
                           "The file is damaged; the run's samples table is authoritative.") from None
    if not records:
        return empty_table("samples")
    df = validate_table("samples", pd.DataFrame.from_records(records), f" ({path})")
    if since_ts_us is not None:
        df = df[df["ts_us"] > since_ts_us].reset_index(drop=True)
    return df

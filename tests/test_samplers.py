"""Tests for profilers.samplers: host (psutil), GPU (NVML, faked at the pynvml module
boundary, and the real library on a machine without a GPU), the SamplerSet thread and
the live file. No TensorFlow; no timing assertions. Run with ``python -m pytest``.
"""
from __future__ import annotations

import ast
import ctypes.util
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from profilers.errors import BadInput, BadTable, UnknownName
from profilers.model import SCHEMAS
from profilers.samplers import (
    MIB,
    SAMPLERS,
    GpuSampler,
    HostSampler,
    SamplerSet,
    read_live,
)
from tests.fake_pynvml import (
    NVML_CLOCK_GRAPHICS,
    NVML_CLOCK_MEM,
    NVML_CLOCK_SM,
    FakeGpu,
    FakeProc,
    NVMLError_GpuIsLost,
    NVMLError_LibraryNotFound,
    NVMLError_NotSupported,
    make_fake_pynvml,
)

INTERVAL_S = 0.01
GIB = 1024 * MIB


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == SamplerSet.THREAD_NAME]


@pytest.fixture(autouse=True)
def no_sampler_thread_left():
    """Invariant: no test leaves a sampler thread running (STYLE 12)."""
    assert sampler_threads() == [], "a sampler thread was already running"
    yield
    assert sampler_threads() == [], "a sampler thread was left running"


def run_for_ticks(ss: SamplerSet, ticks: int = 3, deadline_s: float = 10.0) -> pd.DataFrame:
    """Start, wait until ``ticks`` ticks are done (not a timing assertion), stop."""
    ss.start()
    end = time.monotonic() + deadline_s
    while ss.ticks < ticks and time.monotonic() < end:
        time.sleep(INTERVAL_S)
    df = ss.stop()
    assert ss.ticks >= ticks, f"only {ss.ticks} ticks in {deadline_s} s"
    return df


def two_gpus() -> list[FakeGpu]:
    me = os.getpid()
    return [
        FakeGpu(util_pct=37, mem_used_bytes=3 * GIB // 2, mem_total_bytes=16 * GIB,
                power_mw=123_456,
                clocks_mhz={NVML_CLOCK_SM: 1410, NVML_CLOCK_GRAPHICS: 9001,
                            NVML_CLOCK_MEM: 7777},
                procs=[FakeProc(pid=me + 1, usedGpuMemory=999 * MIB),
                       FakeProc(pid=me, usedGpuMemory=512 * MIB)]),
        FakeGpu(util_pct=5, mem_used_bytes=GIB, mem_total_bytes=8 * GIB, power_mw=40_000,
                clocks_mhz={NVML_CLOCK_SM: 300},
                procs=[FakeProc(pid=me, usedGpuMemory=None)]),
    ]


def last_values(df: pd.DataFrame, source: str) -> dict[str, float]:
    sub = df[df["source"] == source]
    return sub.groupby("metric")["value"].last().to_dict()


# -- registry --------------------------------------------------------------------------
def test_registry_is_sorted_and_unknown_name_lists_valid_ones():
    assert list(SAMPLERS) == sorted(SAMPLERS) == ["gpu", "host"]
    assert SAMPLERS["gpu"] is GpuSampler and SAMPLERS["host"] is HostSampler
    with pytest.raises(UnknownName) as err:
        SamplerSet(["host", "tpu"], t0_ns=time.perf_counter_ns())
    assert "'tpu'" in str(err.value) and "gpu, host" in str(err.value)


@pytest.mark.parametrize("interval_s", [0, -1.0])
def test_bad_interval_is_rejected(interval_s):
    with pytest.raises(BadInput):
        SamplerSet(["host"], interval_s=interval_s, t0_ns=0)


def test_module_imports_no_pynvml_tensorflow_or_streamlit_at_top_level():
    src = Path(__file__).parents[1] / "profilers" / "samplers.py"
    tree = ast.parse(src.read_text(encoding="utf-8"))
    top: set[str] = set()
    for node in tree.body:  # module level only; GpuSampler imports pynvml in a method
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            top.add(node.module.split(".")[0])
    assert "psutil" in top  # the check does see imports
    assert not top & {"pynvml", "tensorflow", "streamlit"}


# -- GPU with a fake pynvml ------------------------------------------------------------
def test_fake_gpu_values_reach_samples_table_with_units(monkeypatch):
    fake = make_fake_pynvml(two_gpus())
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    ss = SamplerSet(["gpu"], interval_s=INTERVAL_S, t0_ns=time.perf_counter_ns())
    df = run_for_ticks(ss)

    assert list(df.columns) == list(SCHEMAS["samples"])
    assert set(df["source"]) == {"gpu"}
    got = last_values(df, "gpu")
    assert got == {
        "gpu0_util_pct": 37.0,
        "gpu0_mem_used_mib": 1536.0,
        "gpu0_mem_total_mib": 16384.0,
        "gpu0_power_w": pytest.approx(123.456),
        "gpu0_sm_clock_mhz": 1410.0,  # the SM clock, not graphics (9001) or memory
        "gpu0_proc_mem_mib": 512.0,  # our pid only, not the other process's 999
        "gpu1_util_pct": 5.0,
        "gpu1_mem_used_mib": 1024.0,
        "gpu1_mem_total_mib": 8192.0,
        "gpu1_power_w": 40.0,
        "gpu1_sm_clock_mhz": 300.0,
        # gpu1_proc_mem_mib: NVML lists the pid but not its memory -> omitted, not 0
    }
    status = ss.status()["gpu"]
    assert status["available"] is True and status["reason"] is None
    assert "usedGpuMemory" in status["notes"]["gpu1_proc_mem_mib"]
    # nvmlShutdown on stop: every init (the open) is matched by a shutdown
    assert fake.calls["nvmlInit"] == fake.calls["nvmlShutdown"] >= 1
    assert fake.state["initialised"] == 0


def test_power_not_supported_is_omitted_with_reason(monkeypatch):
    gpus = two_gpus()[:1]
    gpus[0].raises["nvmlDeviceGetPowerUsage"] = NVMLError_NotSupported
    gpus[0].procs = []  # our process has no CUDA context on this GPU
    fake = make_fake_pynvml(gpus)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    ss = SamplerSet(["gpu"], interval_s=INTERVAL_S, t0_ns=time.perf_counter_ns())
    df = run_for_ticks(ss)

    metrics = set(df["metric"])
    assert metrics == {"gpu0_util_pct", "gpu0_mem_used_mib", "gpu0_mem_total_mib",
                       "gpu0_sm_clock_mhz"}
    assert not (df["value"] == 0).any()
    notes = ss.status()["gpu"]["notes"]
    assert notes["gpu0_power_w"] == "NVMLError_NotSupported: Not Supported"
    assert f"pid {os.getpid()} is not among" in notes["gpu0_proc_mem_mib"]
    # NotSupported is permanent: asked once, not every tick
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 1
    assert fake.calls["nvmlDeviceGetUtilizationRates"] >= 3


def test_transient_nvml_error_is_retried_and_never_stored_as_zero(monkeypatch):
    gpus = two_gpus()[:1]
    gpus[0].raises["nvmlDeviceGetUtilizationRates"] = NVMLError_GpuIsLost
    fake = make_fake_pynvml(gpus)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    sampler = GpuSampler()
    assert sampler.open() == (True, None)
    try:
        first, second = sampler.read(), sampler.read()
        gpus[0].raises.clear()
        third = sampler.read()
    finally:
        sampler.close()
    assert "gpu0_util_pct" not in dict(first) and "gpu0_util_pct" not in dict(second)
    assert dict(third)["gpu0_util_pct"] == 37.0
    assert fake.calls["nvmlDeviceGetUtilizationRates"] == 3
    assert sampler.notes["gpu0_util_pct"] == "NVMLError_GpuIsLost: GPU is lost"


def test_fake_init_failure_gives_nvml_reason_and_no_rows(monkeypatch):
    fake = make_fake_pynvml(two_gpus(), init_error=NVMLError_LibraryNotFound)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    ok, reason = GpuSampler().availability()
    assert ok is False
    assert reason == ("NVML library not found (no NVIDIA driver): "
                      "NVMLError_LibraryNotFound: NVML Shared Library Not Found")
    assert "nvmlDeviceGetCount" not in fake.calls


def test_zero_gpus_is_unavailable_and_init_is_balanced(monkeypatch):
    fake = make_fake_pynvml([])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert GpuSampler().availability() == (False, "NVML found no NVIDIA GPU")
    assert fake.calls["nvmlInit"] == fake.calls["nvmlShutdown"] == 1


def test_availability_probe_holds_no_nvml_session(monkeypatch):
    fake = make_fake_pynvml(two_gpus())
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert GpuSampler().availability() == (True, None)
    assert fake.state["initialised"] == 0


def test_missing_pynvml_module_is_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    ok, reason = GpuSampler().availability()
    assert ok is False and "nvidia-ml-py is not installed" in reason


# -- the real NVML library on this GPU-less machine --------------------------------------
needs_no_nvml = pytest.mark.skipif(
    ctypes.util.find_library("nvidia-ml") is not None,
    reason="an NVIDIA driver is installed here; this checks the no-GPU path")


@needs_no_nvml
def test_real_pynvml_without_driver_is_unavailable_with_reason():
    pytest.importorskip("pynvml")
    ok, reason = GpuSampler().availability()
    assert ok is False
    assert "library not found" in reason.lower()
    assert "NVMLError_LibraryNotFound" in reason


@needs_no_nvml
def test_host_and_gpu_without_gpu_gives_host_rows_and_no_gpu_rows():
    pytest.importorskip("pynvml")
    ss = SamplerSet(["host", "gpu"], interval_s=INTERVAL_S, t0_ns=time.perf_counter_ns())
    df = run_for_ticks(ss)
    assert set(df["source"]) == {"host"}
    assert (df["source"] == "gpu").sum() == 0
    assert not df["metric"].str.startswith("gpu").any()
    status = ss.status()
    assert status["host"] == {"available": True, "reason": None, "notes": {}}
    assert status["gpu"]["available"] is False
    assert "NVMLError_LibraryNotFound" in status["gpu"]["reason"]


# -- host -------------------------------------------------------------------------------
def test_host_metrics_of_this_process():
    t0 = time.perf_counter_ns()
    ss = SamplerSet(["host"], interval_s=INTERVAL_S, t0_ns=t0)
    ss.start()
    end = time.monotonic() + 10.0
    while (ss.ticks < 3 or time.process_time() < 0.05) and time.monotonic() < end:
        sum(range(10_000))  # keep this process busy so proc_cpu_pct has something
    df = ss.stop()
    host = df[df["source"] == "host"]
    ncores = psutil.cpu_count()
    expected = {"proc_cpu_pct", "rss_mib", "threads", "system_cpu_pct"} | {
        f"core{i}_cpu_pct" for i in range(ncores)}
    assert set(host["metric"]) == expected
    by = host.groupby("metric")["value"]
    assert 0 < by.min()["rss_mib"] < psutil.virtual_memory().total / MIB
    assert by.min()["threads"] >= 2  # main + the sampler thread itself
    assert by.max()["proc_cpu_pct"] > 0
    for m in ["system_cpu_pct"] + [f"core{i}_cpu_pct" for i in range(ncores)]:
        assert 0 <= by.min()[m] and by.max()[m] <= 100


def test_host_sampler_of_another_pid():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        sampler = HostSampler(pid=child.pid)
        assert sampler.open() == (True, None)
        sampler.prime()
        got = dict(sampler.read())
        assert got["threads"] == 1.0  # the child, not this multi-threaded test process
        assert got["rss_mib"] > 0
        child.kill()
        child.wait()
        after = dict(sampler.read())
        assert "rss_mib" not in after and "system_cpu_pct" in after
        assert "is gone" in sampler.notes["rss_mib"]
        sampler.close()
    finally:
        child.kill()
        child.wait()


def test_host_sampler_unknown_pid_is_unavailable():
    # a pid above the kernel's maximum cannot exist
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    ok, reason = HostSampler(pid=pid_max + 1).availability()
    assert ok is False and str(pid_max + 1) in reason


# -- the thread and the clock -------------------------------------------------------------
def test_start_stop_leaves_no_thread_and_stop_is_idempotent():
    before = set(threading.enumerate())
    ss = SamplerSet(["host"], interval_s=INTERVAL_S, t0_ns=time.perf_counter_ns())
    ss.start()
    assert len(sampler_threads()) == 1 and sampler_threads()[0].daemon
    df = ss.stop()
    assert set(threading.enumerate()) == before
    assert ss.stop() is df
    with pytest.raises(RuntimeError):
        ss.start()


def test_context_manager_stops_on_error_and_keeps_table():
    ss = SamplerSet(["host"], interval_s=INTERVAL_S, t0_ns=time.perf_counter_ns())
    with pytest.raises(ZeroDivisionError):
        with ss:
            assert len(sampler_threads()) == 1
            1 / 0
    assert sampler_threads() == []
    assert ss.table is not None and list(ss.table.columns) == list(SCHEMAS["samples"])


def test_timestamps_are_monotonic_and_on_the_given_t0_clock():
    offset_us = 5_000_000.0  # t0 five seconds in the past
    t0 = time.perf_counter_ns() - int(offset_us * 1e3)
    before_us = (time.perf_counter_ns() - t0) / 1e3
    ss = SamplerSet(["host"], interval_s=INTERVAL_S, t0_ns=t0)
    df = run_for_ticks(ss, ticks=5)
    after_us = (time.perf_counter_ns() - t0) / 1e3
    ts = df["ts_us"]
    assert ts.is_monotonic_increasing
    assert before_us <= ts.min() and ts.max() <= after_us
    assert ts.min() >= offset_us  # measured from t0, not from start()
    assert ts.nunique() == ss.ticks == ss.stats()["ticks"] >= 5  # one timestamp per tick
    assert ss.stats()["tick_cpu_s_total"] > 0


def test_a_failing_sampler_is_dropped_and_reported_not_silent(monkeypatch):
    def boom(self):
        raise KeyError("cpu0")
    monkeypatch.setattr(HostSampler, "read", boom)
    ss = SamplerSet(["host"], interval_s=INTERVAL_S, t0_ns=time.perf_counter_ns())
    ss.start()
    end = time.monotonic() + 10.0
    while ss.status()["host"]["reason"] is None and time.monotonic() < end:
        time.sleep(INTERVAL_S)
    df = ss.stop()
    assert df.empty
    assert "KeyError" in ss.status()["host"]["reason"]


# -- live file ----------------------------------------------------------------------------
def test_live_file_round_trip(tmp_path):
    live = tmp_path / "run" / "samples.live.jsonl"
    ss = SamplerSet(["host"], interval_s=INTERVAL_S, t0_ns=time.perf_counter_ns(),
                    live_path=live)
    ss.start()
    end = time.monotonic() + 10.0
    while ss.ticks < 3 and time.monotonic() < end:
        time.sleep(INTERVAL_S)
    during = read_live(live)  # while running: each tick is flushed
    df = ss.stop()
    assert len(during) > 0 and set(during["source"]) == {"host"}
    back = read_live(live)
    pd.testing.assert_frame_equal(back, df)
    assert live.read_text().endswith("\n")
    cut = float(df["ts_us"].iloc[len(df) // 2])
    later = read_live(live, since_ts_us=cut)
    assert len(later) > 0 and (later["ts_us"] > cut).all()
    assert len(later) == (df["ts_us"] > cut).sum()


def test_live_file_tolerates_a_torn_last_line(tmp_path):
    live = tmp_path / "live.jsonl"
    rows = [{"ts_us": 10.0 * i, "source": "host", "metric": "rss_mib", "value": 1.0 + i}
            for i in range(3)]
    whole = "".join(json.dumps(r) + "\n" for r in rows)
    live.write_text(whole + '{"ts_us": 30.0, "source": "ho')
    df = read_live(live)
    assert list(df["ts_us"]) == [0.0, 10.0, 20.0]
    assert str(df["source"].dtype) == "string"
    # the torn line is completed later: it shows up on the next read
    live.write_text(whole + json.dumps({**rows[0], "ts_us": 30.0}) + "\n")
    assert list(read_live(live, since_ts_us=20.0)["ts_us"]) == [30.0]


def test_live_file_missing_empty_or_damaged(tmp_path):
    assert read_live(tmp_path / "nope.jsonl").empty
    (tmp_path / "empty.jsonl").write_text("")
    assert list(read_live(tmp_path / "empty.jsonl").columns) == list(SCHEMAS["samples"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"ts_us": 1, "source": "host", "metric": "m", "value": 1}\n'
                   "garbage\n"
                   '{"ts_us": 2, "source": "host", "metric": "m", "value": 1}\n')
    with pytest.raises(BadTable, match="line 2"):
        read_live(bad)


def test_failed_start_releases_nvml(monkeypatch, tmp_path):
    fake = make_fake_pynvml(two_gpus())
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    ss = SamplerSet(["gpu"], interval_s=INTERVAL_S, t0_ns=0, live_path=tmp_path)  # a dir
    with pytest.raises(IsADirectoryError):
        ss.start()
    assert fake.calls["nvmlInit"] == 1 and fake.state["initialised"] == 0


# -- the stack sampler of a TF script's thread (profilers.script_capture.StackSampler) ----------
def test_stack_class_reads_from_the_leaf_to_the_first_frame_that_decides():
    from profilers.script_capture import _HARNESS_DIR, stack_class, where_of

    user, tf_file = "/home/u/train.py", f"{os.sep}x{os.sep}site-packages{os.sep}tensorflow{os.sep}ops.py"
    numpy_file = f"{os.sep}x{os.sep}site-packages{os.sep}numpy{os.sep}linalg.py"
    kind, frame = stack_class([(numpy_file, 5, "inv"), (user, 14, "Logger.on_train_batch_end"), (tf_file, 1, "fit")],
                              {user})
    assert (kind, where_of(frame)) == ("user", "Logger.on_train_batch_end (train.py:14)")
    # TF's time under a user's line keeps that line: the time model.predict(x) takes.
    assert stack_class([(tf_file, 9, "matmul"), (numpy_file, 2, "f"), (user, 3, "<module>")],
                       {user}) == ("framework", (user, 3, "<module>"))
    assert stack_class([(_HARNESS_DIR + "script_capture.py", 1, "_end"), (tf_file, 2, "fit")], {user}) == ("harness", None)
    assert stack_class([(numpy_file, 1, "f")], {user}) == ("other", None)


def test_stack_sampler_sees_python_bursts_shorter_than_the_default_switch_interval(tmp_path):
    """A pure-Python burst holds the GIL: a sampling thread got in during a 3 ms burst
    only when the burst ended (with Python's 5 ms switch interval, never), and the burst's
    time went to what followed. The signal handler runs between bytecodes, in the burst.
    Ground truth: the time of each phase, measured here."""
    from profilers.script_capture import StackSampler

    fw = tmp_path / "tensorflow" / "waits.py"  # "framework" by its directory
    fw.parent.mkdir()
    fw.write_text("import time\ndef wait(s):\n    time.sleep(s)\n")
    waits = _load(fw)
    sampler = StackSampler(time.perf_counter_ns(), frozenset({__file__}), lambda: True)
    sampler.start()
    assert sampler.error is None
    burst_s = wait_s = 0.0
    try:
        end = time.perf_counter() + 1.5
        while time.perf_counter() < end:
            t = time.perf_counter()
            while time.perf_counter() - t < 0.003:  # pure Python, holding the GIL
                pass
            t2 = time.perf_counter()
            waits.wait(0.003)
            burst_s += t2 - t
            wait_s += time.perf_counter() - t2
    finally:
        sampler.stop()
    import signal

    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None)  # restored
    table = sampler.table()
    weights = table.groupby("kind")["weight_us"].sum()
    user = weights.get("user", 0.0) / weights.sum()
    truth = burst_s / (burst_s + wait_s)
    assert abs(user - truth) <= 0.15, (user, truth, weights.to_dict())
    assert weights.get("framework", 0.0) > 0
    places = set(table["where"][table["kind"] == "user"])
    assert places and all(p.startswith("test_stack_sampler_sees_python_bursts_shorter_than_the_default_"
                                       f"switch_interval ({Path(__file__).name}:") for p in places), places


def _load(path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("fake_tf_waits", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

"""CPU contention is measured (run-queue wait of the step thread) and is not framework
overhead: the meter sees burners beside it, the finding names them, and a clean compiled
loop profiled beside two CPU burners gets no high framework_overhead finding."""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

import pytest

from profilers import contention, triage
from tests.test_triage_rules import make_run

SCHEDSTAT = Path(f"/proc/self/task/{os.getpid()}/schedstat").exists()


def _burn(stop: "mp.synchronize.Event") -> None:
    x = 0
    while not stop.is_set():
        for _ in range(10000):
            x += 1


class Burners:
    """As many CPU-burning processes as there are cores (at least two)."""

    def __init__(self, n: int | None = None) -> None:
        self.n = n or max(2, os.cpu_count() or 2)
        self.stop = mp.Event()
        self.procs = [mp.Process(target=_burn, args=(self.stop,), daemon=True) for _ in range(self.n)]

    def __enter__(self) -> "Burners":
        for p in self.procs:
            p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()


@pytest.mark.skipif(not SCHEDSTAT, reason="no /proc/<pid>/task/<tid>/schedstat on this kernel")
def test_the_meter_sees_the_wait_for_a_core_beside_burners():
    meter = contention.ContentionMeter()
    with Burners():
        time.sleep(0.3)  # let the burners get going
        meter.start()
        deadline = time.perf_counter() + 1.0
        x = 0
        while time.perf_counter() < deadline:  # a busy step thread, competing for a core
            x += 1
        got = meter.stop()
    assert got["available"] and 0.0 < got["wall_ms"]
    # Burners on every core plus this thread: the thread waits in the run queue a lot.
    assert got["fraction"] > 0.05, got
    assert any(p["cpu_pct"] > 10 for p in got["busiest"]), got["busiest"]


def test_without_schedstat_the_meter_says_why_never_zero(monkeypatch):
    monkeypatch.setattr(contention, "read_wait_ns", lambda tid: None)
    meter = contention.ContentionMeter()
    meter.start()
    got = meter.stop()
    assert got["available"] is False and "schedstat" in got["reason"] and "fraction" not in got


def test_contention_finding_names_the_busiest_processes():
    run = make_run({"forward": 0.3, "cpu_contention": 0.4, "framework_overhead": 0.1},
                   results={"cpu_contention_share": 0.4})
    run.manifest["capture"]["cpu_contention"] = {
        "available": True, "fraction": 0.45, "loadavg": [3.9, 3.1, 2.0], "cpu_count": 2,
        "busiest": [{"pid": 7, "name": "burner", "cpu_pct": 99.0}], "source": "schedstat"}
    found = {f["rule"]: f for f in triage.evaluate(run)}
    f = found["cpu_contention"]
    assert f["severity"] == "high" and f["evidence"]["loadavg"] == [3.9, 3.1, 2.0]
    assert "burner" in f["recommendation"]
    # The wait is its own rule: framework_overhead keeps only its own 10 %, not the 50 % together.
    assert found["framework_overhead"]["severity"] != "high"
    assert found["framework_overhead"]["share"] == pytest.approx(0.1)
    run.manifest["results"]["cpu_contention_share"] = 0.05
    assert "cpu_contention" not in {f["rule"] for f in triage.evaluate(run)}


@pytest.mark.tf
def test_clean_compiled_loop_beside_two_burners_gets_no_high_framework_overhead(tmp_path):
    from profilers.cli_triage import analyze_profile, launch_script, make_spec
    from profilers.store import RunStore

    store = RunStore(tmp_path / "home")
    spec = make_spec(Path(__file__).parent / "scripts" / "compiled_prefetched.py", function=None, argv=[],
                     max_steps=50, skip_steps=3, window_s=8.0, timeout_s=300.0)
    with Burners(2):
        handle = launch_script(store, spec)
        handle.wait()
    (run,) = store.experiment_runs(handle.experiment_id)
    assert run.manifest["status"] == "ok", run.manifest.get("error")
    doc = analyze_profile(store, run, save=False)
    high = [f["rule"] for f in doc["findings"] if f["severity"] == "high"]
    assert "framework_overhead" not in high, doc["findings"]
    cont = run.manifest["capture"]["cpu_contention"]
    assert cont["available"] and cont["fraction"] is not None
    assert run.manifest["analysis"]["warnings"] == []

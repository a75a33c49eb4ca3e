"""Warm workers (``profilers.warm``) through the services layer: a launch goes to the worker
started ahead of time, a crash there costs only that experiment, cancel and the timeout
still work, the next warm worker starts only once no experiment runs, and an idle one
leaves when the process that started it is gone. The toy workload, without TensorFlow
(``WarmPool(import_tf=False)``), so the tests stay fast.
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from profilers import services
from profilers.spec import ExperimentSpec
from profilers.store import RunStore
from profilers.warm import WarmPool

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("SGDSCOPE_WORKLOAD_MODULES", "tests.toy_workload")
    monkeypatch.setenv("SGDSCOPE_HOME", str(tmp_path / "home"))
    importlib.import_module("tests.toy_workload")
    return RunStore(tmp_path / "home")


def ready_pool(store: RunStore) -> WarmPool:
    pool = WarmPool(store, import_tf=False)
    slot = pool.ensure()
    deadline = time.monotonic() + 60
    while not slot.ready:
        assert slot.alive and time.monotonic() < deadline, (slot.slot_dir / "worker.stderr").read_text()
        time.sleep(0.05)
    return pool


def warm_pid(store: RunStore, experiment_id: str) -> int | None:
    lines = (store.experiments / experiment_id / "progress.jsonl").read_text().splitlines()
    return next((json.loads(x)["pid"] for x in lines if '"warm"' in x), None)


def toy(variants, **kw) -> ExperimentSpec:
    return ExperimentSpec(workload="toy", variants=variants, params={"steps": 5, "warmup_steps": 1},
                          samplers=["host"], **kw)


def test_a_launch_runs_in_the_waiting_worker_and_the_next_starts_after_it(store):
    pool = ready_pool(store)
    pid = pool.idle().info()["pid"]
    handle = services.launch(toy(["ok", "ok2"]), store, pool=pool)
    assert pool.idle() is None and pool.ensure() is None, "no second worker while the experiment runs"
    state = handle.wait()
    assert state["status"] == "ok" and len(state["run_ids"]) == 2
    assert warm_pid(store, handle.experiment_id) == pid
    assert set(store.list()["status"]) == {"ok"}
    deadline = time.monotonic() + 30
    while (nxt := pool.ensure()) is None:  # a new warm worker, a few seconds after it ended
        assert time.monotonic() < deadline, "no new warm worker after the experiment ended"
        time.sleep(0.2)
    assert nxt.slot_dir != Path(handle.exp_dir)
    nxt.process.terminate()
    nxt.process.wait(timeout=10)


def test_a_crash_in_the_warm_worker_costs_only_its_experiment(store):
    pool = ready_pool(store)
    handle = services.launch(toy(["ok", "die"]), store, pool=pool)
    state = handle.wait()
    assert state["status"] == "failed"
    runs = store.list().set_index("variant")
    assert runs.loc["ok", "status"] == "ok" and runs.loc["die", "status"] == "failed"
    assert "SIGKILL" in store.load(runs.loc["die", "run_id"]).manifest["error"]
    again = services.launch(toy(["ok"]), store, pool=ready_pool(store))
    assert again.wait()["status"] == "ok"


def test_cancel_and_timeout_hold_in_a_warm_worker(store):
    handle = services.launch(toy(["hang"]), store, pool=ready_pool(store))
    deadline = time.monotonic() + 30
    while handle.progress()["variants"]["hang"]["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    handle.cancel()
    assert handle.wait()["status"] == "cancelled"
    timed = services.launch(toy(["hang"], timeout_s=2.0), store, pool=ready_pool(store))
    state = timed.wait()
    assert state["status"] == "timeout" and "timeout of 2 s" in state["error"]


def test_a_chatty_variant_output_is_capped_in_a_warm_worker(store):
    from profilers.session import OUTPUT_CAP_BYTES
    from tests.toy_workload import CHATTY_MB

    assert CHATTY_MB * 2**20 > OUTPUT_CAP_BYTES
    handle = services.launch(toy(["chatty"]), store, pool=ready_pool(store))
    assert handle.wait()["status"] == "ok"
    kept = Path(handle.exp_dir) / "worker.stdout"
    assert kept.stat().st_size <= OUTPUT_CAP_BYTES
    assert kept.read_bytes().rstrip().endswith(b"the last line")
    assert b"bytes of this output were dropped" in kept.read_bytes()[:200]


def test_an_idle_warm_worker_leaves_with_the_process_that_started_it(store, tmp_path):
    code = ("import sys, time; from profilers.store import RunStore; from profilers.warm import WarmPool; "
            "s = WarmPool(RunStore(sys.argv[1]), import_tf=False).ensure(); "
            "print(s.process.pid, flush=True); time.sleep(30)")
    parent = subprocess.Popen([sys.executable, "-c", code, str(store.home)], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    supervisor = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 30
    while Path(f"/proc/{supervisor}").exists() and b"zombie" not in Path(f"/proc/{supervisor}/status").read_bytes().lower():
        assert time.monotonic() < deadline, "the idle warm supervisor outlived its parent"
        time.sleep(0.1)
    assert not list((store.home / "_warm").glob("*/ready")), "its slot was cleaned up"


@pytest.mark.tf
def test_a_four_size_three_variant_sweep_imports_tensorflow_once(store):
    grid = [{"m": m, "n": n} for m, n in ((3, 2), (100, 10), (300, 10), (1000, 100))]
    handle = services.start_sweep(store, "linreg", ["numpy", "tf_eager", "tf_function"], grid,
                                  {"steps": "20", "warmup_steps": "2"}, 300.0)
    state = handle.wait()
    assert state["status"] == "ok", state
    log = handle.log_path.read_text()
    assert log.count("imported TensorFlow") == 1, log
    assert "runs all 4 experiment(s) of this job" in log and log.count("TensorFlow already imported, not again") == 4
    pids = {warm_pid(store, e["experiment_id"]) for e in handle.record["experiments"]}
    assert len(pids) == 1 and None not in pids, "every size ran in the one worker"
    assert len(store.list()) == 12 and set(store.list()["status"]) == {"ok"}

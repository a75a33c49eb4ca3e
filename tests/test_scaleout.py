"""Scale-out: distributed mlp variants, remote capture, attach, per-worker analysis, rules, page.

Fast tests use synthetic tables and dead ports. The ``tf`` tests run real 2-worker jobs
on loopback (small: samples=2048, 64 steps) and check that no worker process outlives
them: every job directory lives under the test's ``tmp_path`` (``TMPDIR``), so a leftover
process is one whose command line names it.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from profilers import scaleout, triage_distributed
from profilers.errors import BadInput, CaptureFailed
from profilers.model import RunProfile, validate_table
from profilers.remote_capture import (Address, check_reachable, free_ports, parse_addresses,
                                      place_worker_xplanes)
from profilers.store import RunStore, new_id

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "dashboard" / "pages" / "workers.py")


# -- helpers ------------------------------------------------------------------------------------
def _env(home: Path, tmp: Path) -> dict[str, str]:
    return dict(os.environ, SGDSCOPE_HOME=str(home), TMPDIR=str(tmp), TF_CPP_MIN_LOG_LEVEL="3",
                PYTHONPATH=str(ROOT))


def _cli(args: list[str], env: dict[str, str], timeout: float = 300,
         prelude: str = "") -> subprocess.CompletedProcess:
    """The real CLI, with ``attach`` registered and the distributed rules added to triage's
    registry (what the COMMAND_MODULES line and the triage hook do once wired)."""
    code = ("import sys\nimport profilers.cli_scaleout\nfrom profilers import triage, triage_distributed\n"
            "triage_distributed.register(triage.RULES)\n" + prelude +
            "from profilers import cli\nsys.exit(cli.main(sys.argv[1:]))\n")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _processes_naming(text: str) -> list[str]:
    import psutil

    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info.get("cmdline") or [])
        if text in cmd and p.pid != os.getpid():
            out.append(f"{p.pid}: {cmd[:160]}")
    return out


def _no_leftovers(marker: str, within_s: float = 15.0) -> list[str]:
    deadline = time.monotonic() + within_s
    while True:
        left = _processes_naming(marker)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.25)


def _events(rows: list[tuple]) -> pd.DataFrame:
    """Synthetic trace events: (name, long_name, ts_us, dur_us, step, marker, tf_op)."""
    df = pd.DataFrame(rows, columns=["name", "long_name", "ts_us", "dur_us", "step", "marker", "tf_op"])
    df["step"] = df["step"].astype("Int64")
    df["hlo_op"] = False
    return df


def _sync_rows(own_ms: list[float], wait_ms: float = 1.0) -> list[dict]:
    """per_worker rows of a synchronous job: every wall step equals the slowest worker's
    own work; the others spend the difference in the all-reduce."""
    wall = max(own_ms) + wait_ms
    return [{"worker": k, "steps": 50, "traced_steps": 10,
             "step_ms": {"median": wall, "p10": wall, "p90": wall},
             "collective_ms": {"median": wall - own}, "non_collective_ms": {"median": own},
             "collective_share": (wall - own) / wall} for k, own in enumerate(own_ms)]


# -- remote capture: addresses, ports, dead servers ------------------------------------------------
def test_parse_addresses_accepts_lists_and_rejects_malformed():
    assert parse_addresses("localhost:6009, grpc://10.0.0.2:6010") == [
        Address("localhost", 6009), Address("10.0.0.2", 6010)]
    for bad in ("localhost", "localhost:http", ":6009", "host:70000", "", "a:1,a:1"):
        with pytest.raises(BadInput):
            parse_addresses(bad)


def test_free_ports_are_distinct_and_bindable():
    ports = free_ports(4)
    assert len(set(ports)) == 4
    for port in ports:
        with socket.socket() as s:
            s.bind(("localhost", port))  # raises if the port was not free


def test_check_reachable_names_every_dead_address_quickly():
    dead = [Address("localhost", p) for p in free_ports(2)]
    with socket.socket() as live:
        live.bind(("localhost", 0))
        live.listen()
        alive = Address("localhost", live.getsockname()[1])
        check_reachable([alive])  # a listening port passes
        t = time.monotonic()
        with pytest.raises(CaptureFailed) as err:
            check_reachable([alive, *dead])
    assert time.monotonic() - t < 5
    assert all(str(a) in err.value.message for a in dead) and str(alive) not in err.value.message
    assert "server.start" in err.value.hint


def test_attach_to_a_dead_address_fails_cleanly_and_stores_nothing(tmp_path):
    port = free_ports(1)[0]
    t = time.monotonic()
    out = _cli(["attach", f"localhost:{port}", "--duration-ms", "500", "--json"],
               _env(tmp_path / "home", tmp_path), timeout=60)
    assert time.monotonic() - t < 30
    assert out.returncode == CaptureFailed.exit_code, out.stderr
    assert f"Cannot reach the profiler server at localhost:{port}" in out.stderr
    assert json.loads(out.stdout)["kind"] == "CaptureFailed"
    assert "Traceback" not in out.stderr
    assert RunStore(tmp_path / "home").list().empty
    staging = tmp_path / "home" / "_staging"
    assert not staging.exists() or not any(staging.iterdir())


def test_place_worker_xplanes_gives_each_worker_its_own_directory(tmp_path):
    ts = tmp_path / "trace" / "plugins" / "profile" / "2026_01_01_00_00_00"
    ts.mkdir(parents=True)
    files = [ts / "localhost_5001.xplane.pb", ts / "localhost_5002.xplane.pb"]
    for f in files:
        f.write_bytes(b"x")
    rel = place_worker_xplanes(tmp_path, files)
    assert rel == ["trace/plugins/profile/2026_01_01_00_00_00/localhost_5001.xplane.pb",
                   "workers/1/trace/plugins/profile/2026_01_01_00_00_00/localhost_5002.xplane.pb"]
    assert all((tmp_path / r).is_file() for r in rel)
    assert sorted(p.name for p in ts.iterdir()) == ["localhost_5001.xplane.pb"]


# -- analysis -------------------------------------------------------------------------------------------
def test_step_collectives_counts_overlaps_once_and_only_inside_steps():
    ev = _events([
        ("train 3", None, 0.0, 100.0, 3, True, False),
        ("train 4", None, 100.0, 100.0, 4, True, False),
        # step 3: two overlapping all-reduces (10-40, 30-50) = 40 us, and one spilling past the end
        ("CollectiveReduceV2", "sgd/CollectiveReduceV2:CollectiveReduceV2", 10.0, 30.0, 3, False, True),
        ("CollectiveReduceV2", "sgd/CollectiveReduceV2_1:CollectiveReduceV2", 30.0, 20.0, 3, False, True),
        ("NcclAllReduce", "x/NcclAllReduce:NcclAllReduce", 90.0, 20.0, 3, False, True),
        # not collectives: an executor event named like one, and a MatMul
        ("CollectiveExecutor::RunClosure", None, 0.0, 100.0, 3, False, False),
        ("MatMul", "forward/MatMul:MatMul", 120.0, 50.0, 4, False, True),
    ])
    got = scaleout.step_collectives(ev).set_index("step")
    assert got.loc[3, "collective_us"] == pytest.approx(40.0 + 10.0)  # union, clipped at 100
    assert got.loc[4, "collective_us"] == pytest.approx(10.0)  # the spill 100-110
    assert got.loc[3, "marker_us"] == 100.0
    assert scaleout.step_collectives(ev[~ev["marker"]]).empty


def test_per_worker_summary_from_the_workers_table():
    host = {}
    for k, wall in ((0, 10_000.0), (1, 10_000.0)):
        n = 8
        host[k] = validate_table("steps", pd.DataFrame({
            "step": np.arange(n), "epoch": 0, "start_us": np.arange(n) * wall, "wall_us": wall,
            "warmup": np.arange(n) < 2, "derived": False, "in_profile_window": False, "loss": np.nan}))
    traced = {0: pd.DataFrame({"step": [2, 3, 4], "collective_us": [8000.0, 8000.0, 8000.0]}),
              1: pd.DataFrame({"step": [2, 3, 4], "collective_us": [500.0, 500.0, 500.0]})}
    table = scaleout.workers_table(host, traced)
    assert list(table.columns[:7]) == ["worker", "step", "start_us", "wall_us", "warmup",
                                      "in_profile_window", "collective_us"]
    assert int(table["in_profile_window"].sum()) == 6 and table["collective_us"].notna().sum() == 6
    rows = scaleout.per_worker(table)
    assert [r["worker"] for r in rows] == [0, 1]
    assert rows[0]["steps"] == 6 and rows[0]["traced_steps"] == 3
    assert rows[0]["step_ms"]["median"] == pytest.approx(10.0)
    assert rows[0]["collective_share"] == pytest.approx(0.8)
    assert rows[1]["non_collective_ms"]["median"] == pytest.approx(9.5)
    found = scaleout.stragglers(rows)
    assert found["metric"] == "non_collective_ms" and [d["worker"] for d in found["workers"]] == [1]


def test_straggler_metric_falls_back_to_wall_time_without_a_trace():
    rows = [{"worker": 0, "step_ms": {"median": 10.0}, "non_collective_ms": {"median": None}},
            {"worker": 1, "step_ms": {"median": 10.5}, "non_collective_ms": {"median": None}},
            {"worker": 2, "step_ms": {"median": 14.0}, "non_collective_ms": {"median": None}}]
    found = scaleout.stragglers(rows)
    assert found["metric"] == "step_ms" and found["median_ms"] == 10.5
    assert [d["worker"] for d in found["workers"]] == [2]
    assert scaleout.stragglers(rows[:2])["workers"] == []  # 10.5 is within 20% of 10.25


def test_spread_and_collective_share():
    rows = _sync_rows([5.0, 55.0])
    assert scaleout.spread(rows)["non_collective_ms_max_over_min"] == pytest.approx(11.0)
    assert scaleout.spread(rows)["step_ms_max_over_min"] == pytest.approx(1.0)
    assert scaleout.spread(rows)["slowest_worker"] == 1
    assert scaleout.collective_share(rows) == pytest.approx(np.median([51 / 56, 1 / 56]))
    assert scaleout.collective_share([{"worker": 0, "collective_share": None}]) is None


# -- rules -------------------------------------------------------------------------------------------
def test_straggler_rule_names_the_worker():
    f = triage_distributed.rule_straggler({"results": {"per_worker": _sync_rows([5.0, 55.0, 5.5])}})
    assert f is not None and f["rule"] == "straggler" and f["severity"] == "high"
    assert [s["worker"] for s in f["evidence"]["stragglers"]] == [1]
    assert f["recommendation"].startswith("Worker 1 is the straggler")
    assert 0.8 < f["share"] <= 1.0  # the others wait ~50 of ~56 ms


@pytest.mark.parametrize("own", [[5.0, 5.5], [5.0], []])
def test_no_straggler_when_balanced_or_alone(own):
    assert triage_distributed.rule_straggler({"results": {"per_worker": _sync_rows(own) if own else []}}) is None


@pytest.mark.parametrize("share,severity", [(0.05, None), (0.06, "moderate"), (0.149, "moderate"),
                                            (0.15, "high"), (0.6, "high")])
def test_collective_bound_thresholds(share, severity):
    rows = [{"worker": k, "collective_share": share, "collective_ms": {"median": 1.0},
             "step_ms": {"median": 10.0}, "non_collective_ms": {"median": 9.0}} for k in range(2)]
    f = triage_distributed.rule_collective_bound({"results": {"per_worker": rows}})
    assert (f and f["severity"]) == severity
    if f:
        assert f["share"] == pytest.approx(share) and "waiting_for_straggler" not in f["evidence"]


def test_collective_bound_blames_the_straggler_when_there_is_one():
    f = triage_distributed.rule_collective_bound({"results": {"per_worker": _sync_rows([5.0, 55.0])}})
    assert f["evidence"]["waiting_for_straggler"] == 1 and "worker 1" in f["recommendation"]
    assert triage_distributed.rule_collective_bound({"results": {}}) is None


def test_register_adds_the_rules_and_keeps_the_registry_sorted():
    from profilers import triage

    assert {"straggler", "collective_bound"} <= set(triage.RULES)  # triage registers them
    rules = {k: v for k, v in triage.RULES.items() if k not in ("straggler", "collective_bound")}
    triage_distributed.register(rules)
    triage_distributed.register(rules)  # twice: no duplicate, same order
    assert list(rules) == sorted(rules)
    assert rules == triage.RULES


# -- the variants' contract --------------------------------------------------------------------------
def test_mlp_declares_the_distributed_variants_and_their_params_only_for_them():
    from workloads import WORKLOADS, distributed

    mlp = WORKLOADS["mlp"]
    assert {"mirrored", "multi_worker"} <= set(mlp.variants)
    assert {"workers", "straggler", "straggler_ms"} <= set(mlp.params)
    params = mlp.resolve_params({})
    assert not set(distributed.PARAMS) & set(mlp.params_for("numpy", params))
    assert set(mlp.params_for("multi_worker", params)) >= set(distributed.PARAMS)
    assert "straggler" not in mlp.params_for("mirrored", params)


@pytest.mark.parametrize("change,message", [
    ({"batch_size": 33}, "does not split evenly"),
    ({"straggler": 2}, "not a worker index"),
    ({"clip_norm": 1.0}, "clip_norm is not supported"),
])
def test_bad_params_fail_before_any_process_starts(change, message):
    from workloads import distributed

    params = {"workers": 2, "batch_size": 32, "straggler": -1, "straggler_ms": 50.0,
              "clip_norm": None, **change}
    with pytest.raises(BadInput, match=message):
        distributed.run_multi_worker(params, None, None, None)  # no data, no recorder: never reached


# -- the Workers page ------------------------------------------------------------------------------------
def _distributed_run(own_ms: list[float]) -> RunProfile:
    rows = _sync_rows(own_ms)
    n = 6
    table = pd.concat([pd.DataFrame({
        "worker": k, "step": np.arange(n), "start_us": np.arange(n) * 1e4,
        "wall_us": r["step_ms"]["median"] * 1e3, "warmup": np.arange(n) < 1,
        "in_profile_window": True, "collective_us": r["collective_ms"]["median"] * 1e3})
        for k, r in enumerate(rows)], ignore_index=True)
    run_id = new_id("mlp", "multi_worker")
    return RunProfile(manifest={
        "schema_version": 1, "run_id": run_id, "experiment_id": "exp", "workload": "mlp",
        "variant": "multi_worker", "params": {}, "status": "ok", "error": None, "created_at": "2026-01-01",
        "results": {"steps": n, "step_ms": rows[0]["step_ms"], "per_worker": rows},
        "capture": {}, "source": "workload"}, tables={"workers": validate_table("workers", table)})


@pytest.fixture()
def page_store(tmp_path, monkeypatch) -> RunStore:
    monkeypatch.setenv("SGDSCOPE_HOME", str(tmp_path / "home"))
    store = RunStore(tmp_path / "home")
    store.save(_distributed_run([5.0, 55.0]))
    return store


def test_workers_page_marks_the_straggler_and_shows_the_collective_share(page_store):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(PAGE, default_timeout=30).run()
    assert not at.exception
    assert any("Straggler: **worker 1**" in w.value for w in at.warning)
    assert len(at.get("vega_lite_chart")) == 2  # own work vs collectives; step distributions
    shown = at.dataframe[0].value
    assert shown.loc[shown["straggler"], "worker"].tolist() == [1]
    assert shown["collective share"].tolist() == ["91.1%", "1.8%"]
    assert [m.value for m in at.metric][0] == "2"


def test_workers_page_without_a_straggler_says_so(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SGDSCOPE_HOME", str(tmp_path / "home"))
    RunStore(tmp_path / "home").save(_distributed_run([5.0, 5.2]))
    at = AppTest.from_file(PAGE, default_timeout=30).run()
    assert not at.exception and not at.warning
    assert any("No straggler" in s.value for s in at.success)


def test_workers_page_on_an_empty_store_and_a_dead_attach(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SGDSCOPE_HOME", str(tmp_path / "home"))
    at = AppTest.from_file(PAGE, default_timeout=30).run()
    assert not at.exception
    assert any("No distributed run yet" in i.value for i in at.info)
    port = free_ports(1)[0]
    at.text_input[0].set_value(f"localhost:{port}")
    at.button[0].click().run()
    assert not at.exception
    assert any(f"Cannot reach the profiler server at localhost:{port}" in e.value for e in at.error)


# -- real jobs (TensorFlow) ------------------------------------------------------------------------------
@pytest.mark.tf
def test_mirrored_and_multi_worker_give_per_worker_and_analyze_names_the_planted_straggler(tmp_path):
    env = _env(tmp_path / "home", tmp_path)
    out = _cli(["run", "mlp", "--variants", "mirrored,multi_worker", "--param", "workers=2",
                "--param", "samples=2048", "--param", "straggler=1", "--profile", "--json"], env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = {r["variant"]: r for r in json.loads(out.stdout)["runs"]}
    assert set(runs) == {"mirrored", "multi_worker"}
    store = RunStore(tmp_path / "home")
    for variant, n_workers in (("mirrored", 1), ("multi_worker", 2)):
        run = runs[variant]
        assert run["status"] == "ok", run["error"]
        assert run["loss_matches_baseline"] is True  # same maths as the NumPy baseline
        rows = run["per_worker"]
        assert [r["worker"] for r in rows] == list(range(n_workers))
        for r in rows:
            assert r["step_ms"]["median"] > 0
            assert 0 < r["collective_share"] < 1  # all-reduce ops found in every worker's trace
        profile = store.load(run["run_id"])
        assert all((profile.run_dir / r["xplane"]).is_file() for r in rows)
        assert sorted(profile.table("workers")["worker"].unique()) == list(range(n_workers))
        assert profile.table("steps")["in_profile_window"].any()
        assert not profile.table("breakdown").empty  # finalize read worker 0's capture
    assert runs["mirrored"]["per_worker"][0]["replicas"] == 2
    # The planted 50 ms sleep: worker 1's own work dwarfs worker 0's, whose steps wait for it.
    mw = runs["multi_worker"]["per_worker"]
    assert mw[1]["non_collective_ms"]["median"] > mw[0]["non_collective_ms"]["median"] + 25
    out = _cli(["analyze", runs["multi_worker"]["run_id"], "--json"], env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    findings = {f["rule"]: f for f in json.loads(out.stdout)["findings"]}
    assert [s["worker"] for s in findings["straggler"]["evidence"]["stragglers"]] == [1]
    assert "Worker 1 is the straggler" in findings["straggler"]["recommendation"]
    assert findings["collective_bound"]["evidence"]["waiting_for_straggler"] == 1
    assert _no_leftovers(str(tmp_path)) == []


@pytest.mark.tf
def test_cancelling_a_distributed_run_leaves_no_worker_behind(tmp_path):
    import signal

    env = _env(tmp_path / "home", tmp_path)
    code = ("import sys\nfrom profilers import cli\nsys.exit(cli.main(sys.argv[1:]))\n")
    run = subprocess.Popen([sys.executable, "-c", code, "run", "mlp", "--variants", "multi_worker",
                            "--param", "workers=2", "--param", "samples=8192", "--param", "straggler=0",
                            "--param", "straggler_ms=200", "--json"],
                           cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           # Ctrl-C reaches the CLI as from a terminal even when the suite itself
                           # runs as a background job, whose children inherit SIGINT ignored.
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 180
        # Both workers past warm-up: TensorFlow loaded, cluster joined, training.
        while len(list(tmp_path.glob("sgdscope-multi_worker-*/ready-*.json"))) < 2:
            assert run.poll() is None, run.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.2)
        assert len(_processes_naming(f"distributed_worker {tmp_path}")) == 2
        run.send_signal(signal.SIGINT)  # the CLI's Ctrl-C: cancel the experiment
        stdout, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    doc = json.loads(stdout)
    assert doc["status"] == "cancelled", stderr[-2000:]
    assert [r["status"] for r in doc["runs"]] == ["cancelled"]
    assert _no_leftovers(str(tmp_path)) == []


JOB = '''
import os, sys, time
port, ready, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3]
parent = os.getppid()
import tensorflow as tf
tf.profiler.experimental.server.start(port)
w = tf.Variable(tf.zeros((64, 10)))
x = tf.random.uniform((32, 64), seed=0)

@tf.function
def step():
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(x @ w - 1.0))
    w.assign_sub(0.01 * tape.gradient(loss, w))
    return loss

deadline = time.monotonic() + 120
i = 0
while not os.path.exists(stop) and time.monotonic() < deadline and os.getppid() == parent:
    with tf.profiler.experimental.Trace("train", step_num=i, _r=1):
        step()
        time.sleep(0.002)
    i += 1
    if i == 3:
        open(ready, "w").close()
'''


@pytest.mark.tf
def test_attach_to_a_running_job_stores_a_run_with_its_breakdown(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(JOB, encoding="utf-8")
    port = free_ports(1)[0]
    ready, stop = tmp_path / "ready", tmp_path / "stop"
    env = _env(tmp_path / "home", tmp_path)
    job = subprocess.Popen([sys.executable, str(script), str(port), str(ready), str(stop)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert job.poll() is None, job.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.2)
        out = _cli(["attach", f"localhost:{port}", "--duration-ms", "800", "--json"], env, timeout=180)
    finally:
        stop.touch()
        try:
            job.wait(20)
        except subprocess.TimeoutExpired:
            job.kill()
            job.wait()
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout)
    profile = RunStore(tmp_path / "home").load(doc["run"]["run_id"])
    m = profile.manifest
    assert m["source"] == "attach" and m["status"] == "ok"
    assert m["capture"]["steps_from"] == "markers"
    assert doc["run"]["steps"] >= 5 and doc["run"]["step_ms"]["median"] > 0
    assert not profile.table("breakdown").empty and doc["run"]["breakdown_ms"]
    assert [r["worker"] for r in doc["run"]["per_worker"]] == [0]
    assert doc["run"]["per_worker"][0]["collective_share"] == 0  # one process: no all-reduce
    assert profile.xplane_path().is_file()
    assert isinstance(doc["findings"], list)
    assert job.returncode is not None
    assert _no_leftovers(str(tmp_path)) == []

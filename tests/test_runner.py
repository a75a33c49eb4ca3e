"""Runner: the JSON contract, and crash / kill / timeout / cancel each stored as a run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from profilers.session import launch
from profilers.spec import ExperimentSpec
from profilers.store import RunStore

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def toy_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SGDSCOPE_WORKLOAD_MODULES", "tests.toy_workload")
    monkeypatch.setenv("SGDSCOPE_HOME", str(tmp_path / "home"))
    import workloads

    workloads._load()
    return RunStore(tmp_path / "home")


def cli(*args: str, env_home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, SGDSCOPE_HOME=str(env_home), SGDSCOPE_WORKLOAD_MODULES="tests.toy_workload",
               PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "profilers.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_run_json_contract(toy_env):
    out = cli("run", "toy", "--variants", "ok2,ok", "--param", "steps=12", "--json", env_home=toy_env.home)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(doc) >= {"experiment_id", "runs"}
    assert [r["variant"] for r in doc["runs"]] == ["ok2", "ok"]  # the user's order
    for run in doc["runs"]:
        assert set(run) >= {"run_id", "workload", "variant", "status", "steps", "step_ms",
                            "final_loss", "loss_matches_baseline", "error"}
        assert run["status"] == "ok" and run["error"] is None
        assert run["steps"] == 12
        assert set(run["step_ms"]) == {"median", "p10", "p90"}
        assert run["step_ms"]["p10"] <= run["step_ms"]["median"] <= run["step_ms"]["p90"]
        assert run["loss_matches_baseline"] is True
        assert run["final_loss"] == pytest.approx(100 * 0.9 ** 12)
    listed = json.loads(cli("list", "--json", env_home=toy_env.home).stdout)["runs"]
    assert {r["run_id"] for r in listed} == {r["run_id"] for r in doc["runs"]}


def test_crash_is_a_failed_run_and_the_next_variant_still_runs(toy_env):
    out = cli("run", "toy", "--variants", "crash,ok", "--json", env_home=toy_env.home)
    assert out.returncode != 0
    runs = {r["variant"]: r for r in json.loads(out.stdout)["runs"]}
    assert runs["crash"]["status"] == "failed"
    assert "toy crash at step 3" in runs["crash"]["error"]
    assert runs["ok"]["status"] == "ok"
    stored = toy_env.load(runs["crash"]["run_id"])
    assert "Traceback" in stored.manifest["stderr_tail"]
    assert len(stored.table("steps")) == 4  # the steps before the crash are kept


def test_killed_worker_is_stored_with_its_reason(toy_env):
    out = cli("run", "toy", "--variants", "ok,die,ok2", "--json", env_home=toy_env.home)
    runs = {r["variant"]: r for r in json.loads(out.stdout)["runs"]}
    assert runs["ok"]["status"] == "ok"
    assert runs["die"]["status"] == "failed" and "SIGKILL" in runs["die"]["error"]
    assert runs["ok2"]["status"] == "failed" and runs["ok2"]["error"].startswith("not started")


def test_timeout_is_stored_as_timeout(toy_env):
    out = cli("run", "toy", "--variants", "hang", "--timeout", "4", "--json", env_home=toy_env.home)
    run = json.loads(out.stdout)["runs"][0]
    assert run["status"] == "timeout" and "timeout of 4 s" in run["error"]


def test_cancel_from_a_handle(toy_env):
    handle = launch(ExperimentSpec(workload="toy", variants=["hang", "ok2"], timeout_s=120), toy_env)
    deadline = time.monotonic() + 60
    while handle.progress()["variants"]["hang"]["status"] != "running":
        assert time.monotonic() < deadline, handle.progress()
        time.sleep(0.1)
    handle.cancel()
    state = handle.wait()
    assert state["status"] == "cancelled"
    statuses = {p.manifest["variant"]: p.manifest["status"] for p in toy_env.experiment_runs(handle.experiment_id)}
    assert statuses == {"hang": "cancelled", "ok2": "cancelled"}


@pytest.mark.parametrize("args, needle", [
    (["run", "nosuch", "--variants", "ok"], "Valid workloads:"),
    (["run", "toy", "--variants", "ok,nosuch"], "Valid toy variants: chatty, crash, die, hang, ok, ok2"),
    (["run", "toy", "--variants", "ok", "--param", "bogus=1"], "Valid toy params: sleep_ms, steps, warmup_steps"),
    (["run", "toy", "--variants", "ok", "--param", "steps=abc"], "not a valid int"),
    (["show", "20250101-000000-toy-ok-abcdef"], "No run"),
])
def test_bad_input_lists_the_valid_choices(toy_env, args, needle):
    out = cli(*args, env_home=toy_env.home)
    assert out.returncode == 2 or out.returncode == 3
    assert needle in out.stderr
    assert not toy_env.experiments.exists() or not any(toy_env.experiments.iterdir())


def test_progress_carries_sampler_status_and_final_step_counts(toy_env):
    from profilers.session import read_progress

    handle = launch(ExperimentSpec(workload="toy", variants=["ok", "ok2"], params={"steps": "7"}), toy_env)
    handle.wait()
    state = read_progress(handle.exp_dir)
    assert {v["done"] for v in state["variants"].values()} == {7}
    gpu = state["samplers"]["gpu"]
    assert gpu["available"] is False and "NVML" in gpu["reason"]  # this machine has no GPU
    assert state["samplers"]["host"]["available"] is True

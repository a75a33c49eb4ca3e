"""Synthetic but schema-valid stored runs for the dashboard tests.

``populate(store)`` writes two experiments through ``RunStore.save`` (so they go through
the same validation and index as real runs):

- ``LINREG`` (the newer one): numpy (baseline, breakdown), tf_eager (breakdown, TF
  environment), tf_function (no breakdown, loss does not match), tf_xla (failed, with
  a stderr tail, made by the supervisor's own ``failed_run``).
- ``TOY`` (older): ok (baseline) and ok2, no breakdown, no samples.

Every run that finished has a steps table whose measured medians are exactly
``MEDIANS_MS``; host samples (CPU %, RSS) but no GPU rows, and a ``gpu`` sampler that is
unavailable with ``GPU_REASON``. Nothing here is random. Imports no tensorflow.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from profilers import analysis
from profilers.model import CATEGORIES, SCHEMA_VERSION, RunProfile, validate_table
from profilers.session import failed_run
from profilers.spec import ExperimentSpec
from profilers.store import RunStore, new_id

GPU_REASON = ("NVML library not found (no NVIDIA driver): NVMLError_LibraryNotFound: "
              "NVML Shared Library Not Found")
LINREG_EXP = "20260102-100000-exp-linreg-aaaaaa"
TOY_EXP = "20260101-100000-exp-toy-bbbbbb"
LINREG_CREATED = "2026-01-02T10:00:00+00:00"
TOY_CREATED = "2026-01-01T10:00:00+00:00"

#: Median measured step (ms) of every run that finished.
MEDIANS_MS: dict[str, dict[str, float]] = {
    "linreg": {"numpy": 0.05, "tf_eager": 24.0, "tf_function": 2.0},
    "toy": {"ok": 1.0, "ok2": 1.2},
}
FAILED_VARIANT = "tf_xla"
FAILED_ERROR = "the worker was killed by SIGKILL (the kernel's OOM killer sends SIGKILL)"
FAILED_STDERR = "Traceback (most recent call last):\n  File \"x.py\", line 1\nMemoryError: fixture stderr tail"

SHARES: dict[str, dict[str, float]] = {
    "numpy": {"input_wait": 0.05, "forward": 0.45, "backward": 0.3, "optimizer_update": 0.1,
              "framework_overhead": 0.1},
    "tf_eager": {"input_wait": 0.01, "forward": 0.1, "backward": 0.1, "optimizer_update": 0.04,
                 "framework_overhead": 0.75},
}

ENVIRONMENT: dict = {
    "python": "3.11.7", "platform": "Linux-test-x86_64", "hostname": "fixture",
    "cpu_model": "Fixture CPU 9000", "cpu_logical": 2, "cpu_physical": 2, "affinity_cores": 2,
    "memory_gib": 23.5,
    "versions": {"numpy": "2.4.6", "pandas": "3.1.1", "tensorflow-cpu": "2.21.0", "keras": "3.15.1"},
    "blas": [{"user_api": "blas", "internal_api": "openblas", "version": "0.3.31", "num_threads": 2,
              "architecture": "Haswell", "prefix": "libscipy_openblas"}],
    "env": {},
}
TF_ENVIRONMENT: dict = {"tf_version": "2.21.0", "intra_op_threads": 0, "inter_op_threads": 0,
                        "threads_note": "0 means TensorFlow's default (one per logical core)",
                        "onednn_enabled": False, "onednn_env": None, "devices": ["/device:CPU:0"],
                        "gpus": [], "built_with_cuda": False, "import_s": 4.4}
SAMPLERS: dict = {"host": {"available": True, "reason": None, "notes": {}},
                  "gpu": {"available": False, "reason": GPU_REASON, "notes": {}}}


def steps_table(median_ms: float, n_steps: int = 30, warmup: int = 5, loss0: float = 1.0) -> pd.DataFrame:
    """Warm-up steps at 3x the median, then an odd number of measured steps spread
    symmetrically around ``median_ms`` (so their median is exactly it)."""
    measured = n_steps - warmup
    assert measured % 2 == 1, "an odd number of measured steps has an exact median"
    half = measured // 2
    wall_us = [3 * median_ms * 1e3] * warmup + [median_ms * 1e3 * (1 + k / 100) for k in range(-half, half + 1)]
    start = np.concatenate([[1000.0], 1000.0 + np.cumsum(wall_us[:-1]) + 20.0 * np.arange(1, n_steps)])
    df = pd.DataFrame({
        "step": np.arange(n_steps), "epoch": 0, "start_us": start, "wall_us": wall_us,
        "warmup": np.arange(n_steps) < warmup, "derived": False, "in_profile_window": False,
        "loss": loss0 * 0.95 ** np.arange(n_steps)})
    return validate_table("steps", df)


def breakdown_table(steps: pd.DataFrame, shares: dict[str, float]) -> pd.DataFrame:
    """Measured steps split by ``shares`` (the rest to ``other``): each step's categories
    add up to its wall time, as ``profilers.breakdown.check_breakdown`` demands."""
    shares = {**{c: 0.0 for c in CATEGORIES}, **shares}
    shares["other"] += 1.0 - sum(shares.values())
    rows = [{"step": int(s.step), "category": c, "ms": s.wall_us / 1e3 * shares[c]}
            for s in steps[~steps["warmup"]].itertuples() for c in CATEGORIES]
    return validate_table("breakdown", pd.DataFrame(rows))


def samples_table(steps: pd.DataFrame, ticks: int = 20) -> pd.DataFrame:
    """Host samples over the run's span (CPU %, RSS, threads); no GPU rows."""
    end = float((steps["start_us"] + steps["wall_us"]).max())
    ts = np.linspace(0.0, end, ticks)
    rows = []
    for i, t in enumerate(ts):
        rows += [(t, "host", "proc_cpu_pct", 90.0 + (i % 3)), (t, "host", "system_cpu_pct", 55.0),
                 (t, "host", "rss_mib", 120.0 + i), (t, "host", "threads", 7.0)]
    return validate_table("samples", pd.DataFrame(rows, columns=["ts_us", "source", "metric", "value"]))


def make_run(workload: str, variant: str, experiment_id: str, created_at: str, order: int, *,
             baseline: str, baseline_loss: float | None, loss_matches: bool | None,
             loss0: float = 1.0, shares: dict[str, float] | None = None, tf: bool = False,
             samples: bool = True, params: dict | None = None) -> RunProfile:
    steps = steps_table(MEDIANS_MS[workload][variant], loss0=loss0)
    tables = {"steps": steps}
    if samples:
        tables["samples"] = samples_table(steps)
    res = {"steps": len(steps), "step_ms": analysis.step_stats(steps),
           "final_loss": float(steps["loss"].iloc[-1]), "baseline_variant": baseline,
           "baseline_loss": baseline_loss, "loss_matches_baseline": loss_matches}
    if shares:
        tables["breakdown"] = breakdown_table(steps, shares)
        res["breakdown_source"] = "phases"
        # As the stored analysis keeps it (docs/ANALYSIS_CONTRACT.md): scaled to the median step.
        res["breakdown_ms"] = {c: share * res["step_ms"]["median"] for c, share in shares.items()}
    # The worker imports TF once per experiment, so every run of it records TF's settings.
    env = dict(ENVIRONMENT, **({"tensorflow": TF_ENVIRONMENT} if tf else {}))
    manifest = {
        "schema_version": SCHEMA_VERSION, "sgdscope_version": "0.1.0",
        "run_id": new_id(workload, variant), "experiment_id": experiment_id, "order": order,
        "workload": workload, "variant": variant, "params": params or {},
        "status": "ok", "error": None, "stderr_tail": "", "created_at": created_at,
        "timings": {"started_at": created_at, "finished_at": created_at,
                    "wall_s": float((steps["start_us"] + steps["wall_us"]).max()) / 1e6},
        "environment": env, "results": res,
        "capture": {"profiled": False, "xplane": None, "window_steps": None, "overhead": None,
                    "unavailable_reason": "profiling was off for this experiment"},
        "samplers": SAMPLERS if samples else {}, "source": "workload",
    }
    return RunProfile(manifest=manifest, tables=tables)


@dataclass
class Filled:
    """What ``populate`` stored: run ids by (experiment, variant)."""

    store: RunStore
    run_ids: dict[tuple[str, str], str] = field(default_factory=dict)

    def run_id(self, experiment_id: str, variant: str) -> str:
        return self.run_ids[(experiment_id, variant)]


def populate(store: RunStore) -> Filled:
    filled = Filled(store)
    linreg_params = {"m": 100, "n": 10, "steps": 30, "lr": 0.01, "warmup_steps": 5, "seed": 0}
    base_loss = float(steps_table(MEDIANS_MS["linreg"]["numpy"])["loss"].iloc[-1])
    toy_loss = float(steps_table(MEDIANS_MS["toy"]["ok"])["loss"].iloc[-1])
    runs = [
        make_run("linreg", "numpy", LINREG_EXP, LINREG_CREATED, 0, baseline="numpy", baseline_loss=base_loss,
                 loss_matches=True, shares=SHARES["numpy"], tf=True, params=linreg_params),
        make_run("linreg", "tf_eager", LINREG_EXP, LINREG_CREATED, 1, baseline="numpy", baseline_loss=base_loss,
                 loss_matches=True, shares=SHARES["tf_eager"], tf=True, params=linreg_params),
        make_run("linreg", "tf_function", LINREG_EXP, LINREG_CREATED, 2, baseline="numpy",
                 baseline_loss=base_loss, loss_matches=False, loss0=1.5, tf=True, params=linreg_params),
        make_run("toy", "ok", TOY_EXP, TOY_CREATED, 0, baseline="ok", baseline_loss=toy_loss,
                 loss_matches=True, samples=False),
        make_run("toy", "ok2", TOY_EXP, TOY_CREATED, 1, baseline="ok", baseline_loss=toy_loss,
                 loss_matches=True, samples=False),
    ]
    # A stored finding with a measured fix, as the analysis ranks them (docs/ANALYSIS_CONTRACT.md).
    eager, function = runs[1], runs[2]
    eager.findings = [{
        "rule": "eager_execution", "severity": "high", "share": 0.75,
        "evidence": {"framework_overhead_ms": 0.75 * MEDIANS_MS["linreg"]["tf_eager"], "dispatches_per_step": 12},
        "recommendation": "Wrap the step in tf.function.",
        "counterfactual": {"variant": "tf_function", "run_id": function.run_id,
                           "median_ms": MEDIANS_MS["linreg"]["tf_function"], "measured": True,
                           "speedup": MEDIANS_MS["linreg"]["tf_eager"] / MEDIANS_MS["linreg"]["tf_function"],
                           "text": "measured: tf_function is faster"}}]
    spec = ExperimentSpec(workload="linreg", variants=["numpy", "tf_eager", "tf_function", FAILED_VARIANT],
                          params=linreg_params, experiment_id=LINREG_EXP)
    failed = failed_run(spec, FAILED_VARIANT, "failed", FAILED_ERROR, FAILED_STDERR, order=3)
    failed.manifest["created_at"] = LINREG_CREATED
    runs.append(failed)
    for p in runs:
        store.save(p)
        filled.run_ids[(p.manifest["experiment_id"], p.manifest["variant"])] = p.run_id
    return filled

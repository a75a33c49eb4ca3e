"""The experiment worker: ``python -m profilers.worker <exp_dir>``.

Runs every variant of one experiment in this one process (TensorFlow is imported once,
not once per variant), records steps, samples utilization, captures the TF profiler
window, and stores each variant as a run (staged, then renamed into place). A variant
that raises is stored as ``failed`` with its traceback, and the next one still runs.
Started only by ``profilers.session``; this is the one place, with the workloads, that
imports TensorFlow.
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from profilers import analysis, environment, stored_analysis
from profilers.model import RunProfile, new_manifest
from profilers.recorder import StepRecorder
from profilers.session import emit, now_iso
from profilers.spec import ExperimentSpec
from profilers.store import RunStore, new_id


class _Progress:
    """Throttled step-progress events (at most ~5 per second)."""

    def __init__(self, exp_dir: Path, variant: str) -> None:
        self.exp_dir, self.variant, self.last = exp_dir, variant, 0.0

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last >= 0.2:
            self.last = now
            emit(self.exp_dir, "step", variant=self.variant, done=done)


def _find_xplane(run_dir: Path) -> str | None:
    found = sorted((run_dir / "trace").glob("plugins/profile/*/*.xplane.pb"))
    return str(found[-1].relative_to(run_dir)) if found else None


def run_variant(spec: ExperimentSpec, workload: Any, params: dict[str, Any], data: Any,
                variant: str, order: int, env: dict[str, Any], store: RunStore,
                exp_dir: Path, baseline_loss: float | None) -> RunProfile:
    from profilers.samplers import SamplerSet

    run_id = new_id(spec.workload, variant)
    emit(exp_dir, "variant_start", variant=variant, run_id=run_id,
         total_steps=workload.total_steps(params))
    staged = store.staging_dir(run_id)
    wants_trace = spec.profile and workload.variant(variant).needs_tf
    t0 = time.perf_counter_ns()
    rec = StepRecorder(t0_ns=t0, warmup_steps=workload.warmup_steps(params),
                       profile_logdir=staged / "trace" if wants_trace else None,
                       profile_steps=spec.profile_steps, on_step=_Progress(exp_dir, variant))
    samplers = SamplerSet(spec.samplers, interval_s=spec.sample_interval_s, t0_ns=t0,
                          live_path=exp_dir / f"live-{variant}.jsonl")
    started = now_iso()
    status, error, tb, result = "ok", None, "", None
    samplers.start()
    # What the samplers can measure is known now, not only when the variant ends.
    emit(exp_dir, "samplers", variant=variant, status=samplers.status())
    try:
        result = workload.run(variant, params, data, rec)
    except Exception as exc:  # stored as a failed run with its traceback; next variant runs
        status, error, tb = "failed", f"{type(exc).__name__}: {exc}", traceback.format_exc()
    finally:
        samples = samplers.stop()
        tables = rec.finish()
    wall_s = (time.perf_counter_ns() - t0) / 1e9
    tables["samples"] = samples
    if result is not None:
        tables.update(result.tables)  # measured by the variant itself (e.g. distributed workers)
    final_loss = result.final_loss if result is not None else None
    if variant == workload.baseline:
        baseline_loss = final_loss  # the baseline matches itself by definition
    results: dict[str, Any] = {
        "steps": int(len(tables["steps"])),
        "step_ms": analysis.step_stats(tables["steps"]),
        "final_loss": final_loss,
        "baseline_variant": workload.baseline,
        "baseline_loss": baseline_loss,
        "loss_matches_baseline": analysis.loss_matches(
            final_loss, baseline_loss, workload.loss_rtol, workload.loss_atol),
        **(result.extra if result is not None else {}),
    }
    xplane = _find_xplane(staged) if wants_trace else None
    capture = {
        "profiled": bool(spec.profile),
        "xplane": xplane,
        "window_steps": spec.profile_steps if wants_trace else None,
        "overhead": analysis.profile_overhead(tables["steps"]) if xplane else None,
        "cpu_contention": rec.contention,
        "unavailable_reason": None if xplane else (
            rec.profiler_error or ("profiling was off for this experiment" if not spec.profile else
                                   "not a TensorFlow variant: no TF trace; the breakdown comes from "
                                   "phase spans" if not wants_trace else "the profiler wrote no xplane")),
    }
    manifest = new_manifest(
        run_id=run_id, experiment_id=spec.experiment_id, order=order,
        workload=spec.workload, variant=variant, params=workload.params_for(variant, params),
        status=status, error=error, stderr_tail=tb[-4000:], created_at=started,
        timings={"started_at": started, "finished_at": now_iso(), "wall_s": wall_s},
        environment=env, results=results, capture=capture,
        samplers=samplers.status(), source="workload",
        flops_per_step=workload.flops_per_step(params))
    profile = RunProfile(manifest=manifest, tables=tables)
    profile.run_dir = staged
    stored_analysis.analyse_before_commit(profile, store)
    store.commit(profile, staged)
    emit(exp_dir, "variant_end", variant=variant, run_id=run_id, status=status,
         done=int(len(tables["steps"])))
    return profile


def main(exp_dir: Path) -> int:
    from workloads import WORKLOADS

    spec = ExperimentSpec.load(exp_dir / "spec.json")
    store = RunStore(os.environ.get("SGDSCOPE_HOME"))
    workload = WORKLOADS[spec.workload]
    params = spec.validate()
    env = environment.collect()
    if workload.flops_per_step(params):
        # The peak that achieved GFLOP/s is compared with: measured here, never in analysis.
        emit(exp_dir, "phase", text="measuring this machine's GEMM peak")
        env["gemm_peak"] = environment.gemm_peak(store.home / "_machine", dtype=workload.compute_dtype)
    if any(workload.variant(v).needs_tf for v in spec.variants):
        warm = "tensorflow" in sys.modules  # a warm worker imported it before this experiment
        emit(exp_dir, "phase", text="TensorFlow already imported (warm worker)" if warm else "importing TensorFlow")
        t = time.perf_counter()
        import tensorflow as tf

        env["tensorflow"] = environment.collect_tf(tf)
        env["tensorflow"]["import_s"] = None if warm else time.perf_counter() - t
        if warm:
            env["tensorflow"]["import_note"] = ("imported by the warm worker before this experiment "
                                                "started: its cost was not part of this run")
    emit(exp_dir, "phase", text="preparing data")
    data = workload.prepare(params)
    # The baseline runs first so every other variant can be checked against its loss.
    order = sorted(spec.variants, key=lambda v: v != workload.baseline)
    baseline_loss = None
    if workload.baseline and workload.baseline not in spec.variants:
        emit(exp_dir, "phase", text=f"computing the {workload.baseline} baseline loss")
        baseline_loss = workload.run(workload.baseline, params, data, StepRecorder(
            t0_ns=time.perf_counter_ns(), warmup_steps=0)).final_loss
    emit(exp_dir, "phase", text="running")
    try:
        for variant in order:
            profile = run_variant(spec, workload, params, data, variant, spec.variants.index(variant),
                                  env, store, exp_dir, baseline_loss)
            if variant == workload.baseline:
                baseline_loss = profile.manifest["results"]["final_loss"]
    finally:
        workload.cleanup(data)
    # Every run is judged again with the whole experiment in view (counterfactuals).
    stored_analysis.rejudge_experiment(store, spec.experiment_id)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))

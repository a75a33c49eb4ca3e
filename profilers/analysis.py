"""Run analysis: pure functions from a run's tables to its summary numbers.

Tables in, tables/dicts out: no I/O of its own (xprof conversion goes through
``profilers.xprof_tools``, which caches in the run directory), no streamlit, no altair,
no tensorflow.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def measured_steps(steps: pd.DataFrame) -> pd.DataFrame:
    """Steps that count for statistics: not warm-up."""
    return steps[~steps["warmup"].astype(bool)]


def step_stats(steps: pd.DataFrame) -> dict[str, Any]:
    """Median, p10, p90 and mean step wall time in ms over the non-warm-up steps."""
    wall_ms = measured_steps(steps)["wall_us"].to_numpy(dtype=float) / 1e3
    if wall_ms.size == 0:
        return {"median": None, "p10": None, "p90": None, "mean": None, "count": 0}
    p10, median, p90 = np.percentile(wall_ms, [10, 50, 90])
    return {"median": float(median), "p10": float(p10), "p90": float(p90),
            "mean": float(wall_ms.mean()), "count": int(wall_ms.size)}


def loss_matches(loss: float | None, baseline: float | None, rtol: float, atol: float) -> bool | None:
    """Whether ``loss`` agrees with the baseline's within float32 tolerance (None: no baseline)."""
    if baseline is None or loss is None:
        return None
    if not (math.isfinite(loss) and math.isfinite(baseline)):
        return False
    return bool(abs(loss - baseline) <= atol + rtol * abs(baseline))


def profile_overhead(steps: pd.DataFrame) -> dict[str, Any]:
    """The capture's own cost: median step inside the profiler window vs outside it."""
    m = measured_steps(steps)
    inside = m.loc[m["in_profile_window"].astype(bool), "wall_us"]
    outside = m.loc[~m["in_profile_window"].astype(bool), "wall_us"]
    if inside.empty or outside.empty:
        return {"inside_ms": None, "outside_ms": None, "ratio": None,
                "reason": "needs steps both inside and outside the profiler window"}
    ins, outs = float(inside.median()) / 1e3, float(outside.median()) / 1e3
    return {"inside_ms": ins, "outside_ms": outs, "ratio": ins / outs if outs > 0 else None,
            "reason": None}


def input_wait_share(steps: pd.DataFrame, phases: pd.DataFrame) -> float | None:
    """Fraction of measured step time spent in ``input_wait`` phases (time in next(iterator))."""
    m = measured_steps(steps)
    total_us = float(m["wall_us"].sum())
    if total_us <= 0 or phases.empty:
        return None
    waits = phases[(phases["phase"] == "input_wait") & phases["step"].isin(m["step"])]
    return float(waits["dur_us"].sum()) / total_us


def scaled_breakdown(breakdown: pd.DataFrame, step_median_ms: float | None) -> dict[str, Any]:
    """Category shares of the analysed steps, applied to the run's median step.

    The breakdown covers the steps it could attribute (for a TF run: the profiler window,
    whose steps carry the profiler's own cost), while the median covers every measured
    step. So the shares come from the window and the scale from the whole run, and the
    categories add up to ``step_ms.median`` by construction. The unscaled means are kept
    as ``window_ms``.
    """
    from profilers.model import CATEGORIES

    per_cat = breakdown.groupby("category")["ms"].sum()
    n_steps = breakdown["step"].nunique()
    window_ms = {c: float(per_cat.get(c, 0.0)) / n_steps for c in CATEGORIES} if n_steps else {}
    window_total = sum(window_ms.values())
    if not window_ms or window_total <= 0 or step_median_ms is None:
        return {"breakdown_ms": None, "window_ms": window_ms or None, "scale": None}
    scale = step_median_ms / window_total
    return {"breakdown_ms": {c: v * scale for c, v in window_ms.items()},
            "window_ms": window_ms, "scale": scale, "window_steps": int(n_steps)}


CUPTI_FIX = (
    "TensorFlow saw a GPU but the trace has no GPU activity: CUPTI, which records GPU "
    "kernels, was most likely refused access to the performance counters "
    "(CUPTI_ERROR_INSUFFICIENT_PRIVILEGES). Fix: run as root, or allow profiling for all "
    "users (`options nvidia NVreg_RestrictProfilingToAdminUsers=0` in /etc/modprobe.d/, then "
    "reload the driver), or in a container add --cap-add=SYS_ADMIN; then profile again.")


def gpu_trace_warning(environment: dict[str, Any], events: pd.DataFrame) -> dict[str, Any] | None:
    """A warning when TF saw a GPU but the capture holds no GPU device events (CUPTI)."""
    gpus = ((environment or {}).get("tensorflow") or {}).get("gpus") or []
    if not gpus or events is None:
        return None
    device = events["process"].astype("string").fillna("").str.contains("GPU", case=False)
    if bool(device.any()):
        return None
    return {"kind": "cupti_empty_gpu_trace", "message": CUPTI_FIX,
            "evidence": {"tf_gpus": gpus, "trace_processes": sorted(set(events["process"].dropna()))}}


def finalize(profile: Any, machine_dir: Any = None) -> None:
    """Turn a captured run's raw tables into its breakdown, op statistics and summary numbers.

    Writes ``tables["breakdown"]``/``tables["ops"]`` and ``manifest["results"]`` keys
    ``breakdown_ms``, ``breakdown_source``, ``input_wait_share``, ``ops_per_step``,
    ``overhead_us_per_op`` and ``gflops``. A trace that cannot be read does not lose the
    run: the breakdown falls back to phase spans and the reason is recorded.
    """
    from profilers import breakdown as bd
    from profilers.errors import BadTable, DependencyMissing, TraceUnavailable

    res = profile.manifest.setdefault("results", {})
    steps, phases = profile.table("steps"), profile.table("phases")
    xplane = profile.xplane_path()
    cache_dir = profile.run_dir / "cache" if profile.run_dir is not None else None
    share = input_wait_share(steps, phases)
    if share is not None:
        res.setdefault("input_wait_share", share)
    source, events = "phases", None
    try:
        if xplane is not None:
            from profilers import xprof_tools

            from profilers.step_inference import consumer_view

            # tf.data's own worker threads produce elements in parallel with the step;
            # counting them would split (halve) the step's real input wait.
            all_events = xprof_tools.trace_events(xplane, cache_dir=cache_dir)
            warning = gpu_trace_warning(profile.manifest.get("environment") or {}, all_events)
            if warning is not None:
                profile.manifest.setdefault("capture", {}).setdefault("warnings", []).append(warning)
            events = consumer_view(all_events)
            table = bd.breakdown_from_trace(steps, events, phases)
            source = "trace"
            tables = xprof_tools.run_tables(xplane, cache_dir=cache_dir).tables
            if "ops" in tables:
                profile.tables["ops"] = tables["ops"]
        else:
            table = bd.breakdown_from_phases(steps, phases)
        bd.check_breakdown(table, steps)
    except (TraceUnavailable, DependencyMissing, BadTable) as exc:
        res["breakdown_error"] = f"{type(exc).__name__}: {exc}"
        if source == "phases" and xplane is None:
            return
        table, source, events = bd.breakdown_from_phases(steps, phases), "phases", None
    if table.empty:
        res["breakdown_error"] = "no step could be attributed (no measured steps with spans)"
        return
    profile.tables["breakdown"] = table
    scaled = scaled_breakdown(table, (res.get("step_ms") or {}).get("median"))
    res.update(breakdown_ms=scaled["breakdown_ms"], breakdown_window_ms=scaled["window_ms"],
               breakdown_scale=scaled["scale"], breakdown_source=source)
    if events is not None:
        counts = bd.ops_per_step(steps, events)
        if not counts.empty:
            res["ops_per_step"] = float(counts["ops"].median())
            res["dispatches_per_step"] = float(counts["dispatches"].median())
            per_op = bd.overhead_us_per_op(table, counts)
            res["overhead_us_per_op"] = None if math.isnan(per_op) else per_op
    flops = profile.manifest.get("flops_per_step") or {}
    if flops and scaled["breakdown_ms"]:
        gflops = {k: (None if math.isnan(v) else v)
                  for k, v in bd.achieved_gflops(scaled["breakdown_ms"], flops).items()}
        res["gflops"] = gflops
        if machine_dir is not None:
            res["gemm_peak_gflops"] = bd.measure_gemm_peak_gflops(machine_dir)

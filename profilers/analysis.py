"""Run analysis: the one path from a stored run to its facts, breakdown and findings.

``analyse(profile, context)`` serves every kind of run (workload variant, script, attach,
multi-worker) and writes, under the same keys whatever the source (see
docs/ANALYSIS_CONTRACT.md):

* ``derive``: the breakdown table (trace or phase spans) and the facts in
  ``manifest["results"]``: ``breakdown_ms`` scaled to the median step, op and dispatch
  counts, the overhead per dispatch, the eager share, achieved GFLOP/s against the peak
  measured in the worker, the CPU-contention carve-out; every null fact with its reason
  in ``results["unavailable"]``.
* ``judge``: the triage findings (ranked by measured gain, then severity and share), the
  invariant check, and ``manifest["analysis"]`` = ``{version, warnings, context}``.

Tables in, tables/dicts out: no I/O of its own (xprof conversion goes through
``profilers.xprof_tools``, which caches in the run directory; the store side lives in
``profilers.stored_analysis``), no timing, no streamlit, no altair, no tensorflow.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

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


#: Bumped whenever what ``analyse`` derives changes: ``sgdscope analyze`` re-derives a run
#: whose stored analysis has another version, and only then.
ANALYSIS_VERSION = 5  # 3: forward found by order in unscoped steps; advice per what runs eagerly; 4: backward pass starts at 5% of its time; 5: calls run eagerly (run_functions_eagerly) are eager time, the user's own Python share

#: The facts ``derive`` owns in ``manifest["results"]``; cleared before each derivation so
#: a re-analysis never keeps a stale one.
DERIVED_KEYS: tuple[str, ...] = (
    "breakdown_ms", "breakdown_window_ms", "breakdown_scale", "breakdown_source", "breakdown_steps",
    "breakdown_left_out_steps",
    "breakdown_error", "input_wait_share", "ops_per_step", "eager_ops_per_step", "graph_ops_per_step",
    "function_calls_per_step", "dispatches_per_step", "overhead_us_per_dispatch", "overhead_us_per_op",
    "eager_share", "eager_ms_per_step", "eager_window_ms_per_step", "gflops", "gemm_peak_gflops", "cpu_contention_share",
    "capture_ms", "tf_functions", "input_stages", "xprof_input_conclusion", "unavailable",
    "user_python_share", "user_python_ms_per_step", "user_python_samples", "user_python_where", "user_lines",
)

#: Input-wait share from which the tf.data stage table is read (xprof's moderate threshold).
INPUT_STAGES_FROM = 0.05

#: Labels of where the breakdown came from.
SOURCE_TEXT = {
    "trace": "TF trace inside the step markers, attributed by profilers.breakdown.breakdown_from_trace",
    "trace_inferred": "TF trace, steps inferred from the repeated dispatches (profilers.step_inference), "
                      "attributed by profilers.breakdown.breakdown_from_trace",
    "phases": "host phase spans timed around each part of the step (profilers.recorder)",
}


def _median_of(df: pd.DataFrame, col: str) -> float | None:
    vals = df[col].to_numpy(dtype=float) if col in df.columns and len(df) else np.zeros(0)
    vals = vals[np.isfinite(vals)]
    return float(np.median(vals)) if vals.size else None


def carve_contention(table: pd.DataFrame, fraction: float | None) -> pd.DataFrame:
    """Move each step's CPU contention out of ``framework_overhead`` into ``cpu_contention``.

    ``fraction`` is the share of wall time the step thread spent runnable but waiting for a
    core over the measured span (``profilers.contention``); a step's contention is that
    fraction of its wall time, never more than its framework overhead (time inside ops that
    waited for a core stays in the op, where the trace put it)."""
    if fraction is None or fraction <= 0 or table.empty:
        return table
    out = table.copy()
    fo = out["category"] == "framework_overhead"
    cc = out["category"] == "cpu_contention"
    wall_ms = out.groupby("step")["ms"].transform("sum")
    want = (wall_ms * float(fraction)).where(fo, 0.0)
    moved = np.minimum(out["ms"].where(fo, 0.0), want)
    out.loc[fo, "ms"] = out.loc[fo, "ms"] - moved[fo]
    per_step = pd.Series(moved[fo].to_numpy(), index=out.loc[fo, "step"].to_numpy())
    if cc.any():
        out.loc[cc, "ms"] = out.loc[cc, "ms"].to_numpy() + per_step.reindex(out.loc[cc, "step"]).fillna(0.0).to_numpy()
    return out


def _inferred_markers(steps: pd.DataFrame, capture: dict[str, Any]) -> pd.DataFrame | None:
    """Synthetic ``train N`` markers for steps the script worker inferred from the trace."""
    from profilers.step_inference import StepCut, marker_events

    offset = float(capture.get("trace_offset_us") or 0.0)
    lane = capture.get("inferred_lane")
    if steps.empty:
        return None
    start = steps["start_us"].to_numpy(dtype=float) - offset
    cut = StepCut(start_us=start, end_us=start + steps["wall_us"].to_numpy(dtype=float),
                  lane=tuple(lane) if lane else None, method="stored")
    return marker_events(cut, first_step=int(steps["step"].iloc[0]))


def derive(profile: Any) -> None:
    """The run's breakdown table and facts (see the module docstring). A trace that cannot
    be read does not lose the run: the breakdown falls back to phase spans, with the reason."""
    from profilers import breakdown as bd
    from profilers.errors import BadTable, DependencyMissing, TraceUnavailable
    from profilers.model import CATEGORIES

    m = profile.manifest
    res = m.setdefault("results", {})
    provided_source = res.get("breakdown_source")  # a capture that brought its own breakdown says how
    for key in DERIVED_KEYS:
        res.pop(key, None)
    capture = m.setdefault("capture", {})
    capture["warnings"] = [w for w in capture.get("warnings") or []  # derived again below
                           if w.get("kind") not in ("cupti_empty_gpu_trace", "trace_event_cap")]
    unavailable: dict[str, str] = {}
    steps, phases = profile.table("steps"), profile.table("phases")
    if not steps.empty:
        res["steps"] = int(len(steps))
        res["step_ms"] = step_stats(steps)
    median = (res.get("step_ms") or {}).get("median")
    measured_ids = set(measured_steps(steps)["step"].tolist()) if not steps.empty else set()
    xplane = profile.xplane_path()
    cache_dir = profile.run_dir / "cache" if profile.run_dir is not None else None
    table, source, events_all, events = None, None, None, None
    if xplane is not None and not steps.empty:
        try:
            from profilers import xprof_tools
            from profilers.step_inference import consumer_view

            events_all = xprof_tools.trace_events(xplane, cache_dir=cache_dir)
            warning = gpu_trace_warning(m.get("environment") or {}, events_all)
            if warning is not None:
                capture["warnings"].append(warning)
            # TF's event cap: a capture cut short says so (the analysis goes on with what was kept).
            expected = xprof_tools.expected_markers(steps) if capture.get("steps_from") != "inferred" else None
            cut = xprof_tools.capture_limit_warning(xplane, expected, cache_dir=cache_dir)
            if cut is not None:
                capture["warnings"].append(cut)
            # tf.data's own worker threads produce elements in parallel with the step;
            # counting them would split (halve) the step's real input wait.
            events = consumer_view(events_all)
            source = "trace"
            if capture.get("steps_from") == "inferred":
                markers = _inferred_markers(steps, capture)
                events = xprof_tools.conform("events", pd.concat([events, markers], ignore_index=True))
                source = "trace_inferred"
            table = bd.breakdown_from_trace(steps, events, phases)
            bd.check_breakdown(table, steps)
            ops = xprof_tools.convert(xplane, "framework_op_stats", {}, cache_dir=cache_dir).tables.get("ops")
            if ops is not None:
                profile.tables["ops"] = ops
        except (TraceUnavailable, DependencyMissing, BadTable) as exc:
            res["breakdown_error"] = f"{type(exc).__name__}: {exc.message}"
            table, source, events = None, None, None
    if table is None and not phases.empty and not steps.empty:
        try:
            table, source = bd.breakdown_from_phases(steps, phases), "phases"
            bd.check_breakdown(table, steps)
        except BadTable as exc:
            res["breakdown_error"] = f"{type(exc).__name__}: {exc.message}"
            table, source = None, None
    if table is None and not profile.table("breakdown").empty:
        table = profile.table("breakdown")  # a capture that brings its own (a sampled script)
        source = "stored"
    if table is None or table.empty:
        res.setdefault("breakdown_error", "no step could be attributed (no measured steps with spans)")
        unavailable["breakdown_ms"] = res["breakdown_error"]
        profile.tables.pop("breakdown", None)
    else:
        if "cpu_contention" not in set(table["category"].astype(str)):
            extra = pd.DataFrame({"step": table["step"].drop_duplicates().to_numpy(),
                                  "category": "cpu_contention", "ms": 0.0})
            table = pd.concat([table, extra], ignore_index=True)
            order = {c: i for i, c in enumerate(CATEGORIES)}
            table = table.sort_values(["step", "category"], key=lambda s: s.map(order) if s.name == "category" else s,
                                      kind="stable").reset_index(drop=True)
        cont = capture.get("cpu_contention") or {}
        fraction = cont.get("fraction") if cont.get("available") else None
        if not cont.get("available"):
            unavailable["cpu_contention_share"] = cont.get("reason") or "not measured for this run"
        table = carve_contention(table, fraction)
        profile.tables["breakdown"] = table
        stepwise = bool(measured_ids) and table["step"].isin(measured_ids).any()
        sel = table[table["step"].isin(measured_ids)] if stepwise else table
        scaled = scaled_breakdown(sel, median)
        # The typical step's split (outlier steps left out; the median step's split of a
        # trace), applied to the median step: the same shares the triage rules read.
        shares, left_out = bd.typical_shares(sel, measured_steps(steps) if stepwise else steps.iloc[0:0],
                                             pooled=res.get("profiler") in bd.SAMPLED_PROFILERS)
        if shares and median:
            scaled["breakdown_ms"] = {c: shares.get(c, 0.0) * median for c in CATEGORIES}
        res.update(breakdown_ms=scaled["breakdown_ms"], breakdown_window_ms=scaled["window_ms"],
                   breakdown_steps=int(sel["step"].nunique()),
                   breakdown_left_out_steps=left_out,
                   breakdown_source=SOURCE_TEXT.get(source) or provided_source or source)
        if scaled["breakdown_ms"] is None:
            unavailable["breakdown_ms"] = ("no measured step: only a whole-run breakdown "
                                           "(breakdown_window_ms) exists" if median is None else
                                           "the analysed steps took no time")
        else:
            bms = scaled["breakdown_ms"]
            res["input_wait_share"] = bms["input_wait"] / median if median else None
            if fraction is not None:
                res["cpu_contention_share"] = bms.get("cpu_contention", 0.0) / median if median else None
    _derive_user_python(profile, res, steps, unavailable)
    _derive_counts(profile, res, steps, events, events_all, measured_ids, unavailable)
    if events is not None and (res.get("input_wait_share") or 0.0) >= INPUT_STAGES_FROM:
        _derive_input_stages(xplane, cache_dir, res, unavailable)
    _derive_gflops(m, res, unavailable)
    for key in ("ops_per_step", "dispatches_per_step", "overhead_us_per_dispatch", "eager_share"):
        if res.get(key) is None and key not in unavailable:
            unavailable[key] = ("no TF trace for this run: " + (capture.get("unavailable_reason") or
                                                                "not profiled")) if events is None else \
                "not measured in this capture"
    res["unavailable"] = unavailable


def _derive_counts(profile: Any, res: dict[str, Any], steps: pd.DataFrame, events: pd.DataFrame | None,
                   events_all: pd.DataFrame | None, measured_ids: set[int], unavailable: dict[str, str]) -> None:
    """Ops and dispatches per step, overhead per dispatch, eager share, tf.function facts:
    all over the same window (the measured steps inside the profiler window)."""
    from profilers import breakdown as bd
    from profilers import step_inference as si
    from profilers.errors import SgdscopeError

    if events is None or events_all is None:
        return
    try:
        counts = bd.ops_per_step(steps, events)
    except SgdscopeError as exc:
        unavailable["ops_per_step"] = exc.message
        counts = pd.DataFrame()
    if not counts.empty:
        meas = counts[counts["step"].isin(measured_ids)]
        meas = meas if not meas.empty else counts
        for key, col in (("ops_per_step", "ops"), ("eager_ops_per_step", "eager_ops"),
                         ("graph_ops_per_step", "graph_ops"), ("function_calls_per_step", "function_calls"),
                         ("dispatches_per_step", "dispatches")):
            res[key] = _median_of(meas, col)
    fo = (res.get("breakdown_ms") or {}).get("framework_overhead")
    if fo is not None:  # the user's own Python (a callback, bookkeeping) is no dispatch's cost
        fo = max(fo - (res.get("user_python_ms_per_step") or 0.0), 0.0)
    calls = res.get("dispatches_per_step")
    if fo is not None and calls:
        res["overhead_us_per_dispatch"] = fo * 1e3 / calls
    elif fo is not None:
        unavailable["overhead_us_per_dispatch"] = "no eager op or tf.function call was dispatched in a step"
    marked = events
    facts = si.eager_facts(marked, steps)
    if facts and facts.get("eager_share") is not None:
        # A share of the window's steps, applied to the median step like every category.
        res["eager_share"] = facts["eager_share"]
        median = (res.get("step_ms") or {}).get("median")
        res["eager_ms_per_step"] = facts["eager_share"] * median if median else None
        res["eager_window_ms_per_step"] = facts.get("eager_ms_per_step")
    ends = events_all["ts_us"] + events_all["dur_us"]
    res["capture_ms"] = float((ends.max() - events_all["ts_us"].min()) / 1e3) if len(events_all) else None
    fns = si.function_calls(events_all)
    res["tf_functions"] = fns.to_dict(orient="records")


#: The user's own lines named in ``user_python_where``.
USER_PYTHON_TOP = 3
#: Below this share of the measured steps' time covered by stack samples, no share is given.
USER_PYTHON_MIN_COVER = 0.5


def _derive_user_python(profile: Any, res: dict[str, Any], steps: pd.DataFrame,
                        unavailable: dict[str, str]) -> None:
    """The share of the typical step the script's thread spent in the user's own Python
    (``py_stacks`` samples of kind ``user``: a Keras callback, per-step bookkeeping), pooled
    over the measured steps the breakdown keeps (its outlier steps left out), and where;
    and ``user_lines``: the user's lines with the most time under them, TF's included
    (``model.predict(x)`` in the loop). Weighted by the wall time each sample stands for,
    over all samples in those steps."""
    if (profile.manifest.get("source") != "script"
            or not (profile.manifest.get("capture") or {}).get("xplane")):
        return  # only a TF script's thread is stack-sampled (a NumPy script has top_lines)
    stacks = profile.table("py_stacks")
    if stacks.empty:
        harness = ((profile.manifest.get("capture") or {}).get("harness") or {}).get("components") or {}
        why = (harness.get("stack_sampler") or {}).get("error")
        unavailable["user_python_share"] = (
            f"the stack sampler could not run: {why}" if why else
            "no stack samples of the script's thread in the profiler window (a run captured before "
            "sgdscope sampled stacks: profile it again)")
        return
    left_out = set(res.get("breakdown_left_out_steps") or [])
    sel = measured_steps(steps)
    sel = sel[~sel["step"].isin(left_out)].sort_values("start_us")
    start = sel["start_us"].to_numpy(dtype=float)
    end = start + sel["wall_us"].to_numpy(dtype=float)
    ts = stacks["ts_us"].to_numpy(dtype=float)
    k = np.searchsorted(start, ts, side="right") - 1
    inside = (k >= 0) & (ts < end[np.clip(k, 0, None)])
    got = stacks[inside]
    weight = float(got["weight_us"].sum())
    if weight <= 0:
        unavailable["user_python_share"] = "no stack sample fell inside a measured step"
        return
    covered = weight / float(sel["wall_us"].sum())
    if covered < USER_PYTHON_MIN_COVER:  # e.g. the script set its own signal.alarm: one timer per process
        unavailable["user_python_share"] = (f"the stack samples cover only {covered:.0%} of the measured steps' "
                                            "time (did the script use SIGALRM or signal.alarm itself?)")
        return
    user = got[got["kind"].astype(str) == "user"]
    share = float(user["weight_us"].sum()) / weight
    median = (res.get("step_ms") or {}).get("median")
    by_line = user.groupby(user["where"].astype(str))["weight_us"].sum().sort_values(ascending=False)
    # Inclusive: all the time under each of the user's lines, TF's and Keras' included.
    called = got[got["where"].astype(str) != ""]
    by_caller = called.groupby([called["where"].astype(str), called["code"].astype(str)])["weight_us"].sum()
    res.update(user_python_share=share, user_python_ms_per_step=share * median if median else None,
               user_python_samples=int(len(got)),
               user_python_where=[{"where": w, "share": float(v) / weight}
                                  for w, v in by_line.head(USER_PYTHON_TOP).items()],
               user_lines=[{"where": w, "code": c, "share": float(v) / weight}
                           for (w, c), v in by_caller.sort_values(ascending=False).head(USER_PYTHON_TOP).items()])


def _derive_input_stages(xplane: Any, cache_dir: Any, res: dict[str, Any], unavailable: dict[str, str]) -> None:
    """The slowest tf.data stages (xprof's input_pipeline_analyzer), for an input-bound run."""
    from profilers import xprof_tools
    from profilers.errors import SgdscopeError

    try:
        pipe = xprof_tools.convert(xplane, "input_pipeline_analyzer", {}, cache_dir=cache_dir)
    except SgdscopeError as exc:
        unavailable["input_stages"] = f"{type(exc).__name__}: {exc.message}"
        return
    stages = pipe.table("input_stages").sort_values("self_ms", ascending=False).head(5)
    res["input_stages"] = [{"stage": str(r.stage), "self_ms": float(r.self_ms),
                            "self_pct": float(r.self_pct), "count": int(r.count)} for r in stages.itertuples()]
    if pipe.info.get("steps"):
        res["xprof_input_conclusion"] = pipe.info.get("input_conclusion")


#: Above this multiple of the measured peak, an achieved GFLOP/s figure cannot be true.
PEAK_SLACK = 1.1


def _derive_gflops(m: dict[str, Any], res: dict[str, Any], unavailable: dict[str, str]) -> None:
    from profilers import breakdown as bd

    flops = m.get("flops_per_step") or {}
    bms = res.get("breakdown_ms")
    if not flops:
        unavailable["gflops"] = "the workload declares no FLOP count for its step"
        return
    if not bms:
        unavailable["gflops"] = "no breakdown to time the maths with"
        return
    gflops = {k: (None if math.isnan(v) else v) for k, v in bd.achieved_gflops(bms, flops).items()}
    peak = ((m.get("environment") or {}).get("gemm_peak") or {})
    res["gemm_peak_gflops"] = peak.get("gflops")
    if peak.get("gflops") is None:
        unavailable["gemm_peak_gflops"] = peak.get("reason") or "the GEMM peak was not measured for this run"
    elif (gflops.get("compute") or 0.0) > PEAK_SLACK * float(peak["gflops"]):
        unavailable["gflops"] = (f"the achieved {gflops['compute']:.3g} GFLOP/s came out above "
                                 f"{PEAK_SLACK:g}x the measured {peak.get('dtype', '')} GEMM peak "
                                 f"({peak['gflops']:.3g}): the step's maths is not timed finely enough "
                                 "to give a rate")
        return
    res["gflops"] = gflops


def judge(profile: Any, context: Mapping[str, Any] | None = None) -> None:
    """Findings, the invariant check and ``manifest["analysis"]`` from the derived facts.

    ``context`` is ``{"experiment": [{variant, status, run_id, median_ms}, ...]}`` for the
    other runs of the run's experiment; without one, the context stored with the run's
    last analysis is used (so an imported run judges as it did at home)."""
    from profilers import invariants, triage

    m = profile.manifest
    stored = (m.get("analysis") or {}).get("context") or {}
    src = context or stored
    ctx = {"experiment": list(src.get("experiment") or []), "variants": src.get("variants")}
    # Gains a what-if rerun measured for this run (profilers.whatif) outlive a re-judging.
    whatif = {f["rule"]: f["counterfactual"] for f in profile.findings or []
              if (f.get("counterfactual") or {}).get("source") == "whatif"}
    findings = triage.evaluate(profile, ctx)
    for f in findings:
        if f["rule"] in whatif and not (f.get("counterfactual") or {}).get("measured"):
            f["counterfactual"] = whatif[f["rule"]]
    profile.findings = triage.order_findings(findings)
    m["analysis"] = {"version": ANALYSIS_VERSION, "context": ctx, "warnings": []}
    m["analysis"]["warnings"] = invariants.check(profile)


def analyse(profile: Any, context: Mapping[str, Any] | None = None) -> None:
    """``derive`` then ``judge``: the run's whole analysis, stored in ``profile`` (not on disk)."""
    derive(profile)
    judge(profile, context)


def is_current(manifest: Mapping[str, Any]) -> bool:
    """Whether the stored analysis was made by this version of ``analyse``."""
    return (manifest.get("analysis") or {}).get("version") == ANALYSIS_VERSION

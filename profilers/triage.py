"""Triage rules: a registry of pure functions that name a run's bottlenecks, with evidence.

``RULES`` maps a rule id to a function ``rule(facts) -> finding | None``. ``facts`` is
built once per run by ``gather(profile, context)`` from the run's tables (steps,
breakdown, samples, ops) and manifest (environment, the trace facts the script worker
stored in ``results``). A finding is::

    {"rule": str, "severity": "high" | "moderate" | "low",
     "share": float | None,          # fraction of step (or run) time the finding is about
     "evidence": {...},               # the numbers, each with where it came from
     "recommendation": str}           # what to change, with a short code snippet

plus ``counterfactual`` when the run's experiment has a variant that applies the fix
(``"measured: 7.9x faster with tf_function"``), or names the variant to run.

A rule returns None when its data says nothing is wrong *and* when its data is absent:
an unavailable measurement (no GPU, no trace) never fires a rule and is never read as 0.

Thresholds follow XProf's where it has them (``xprof/convert/op_stats_to_input_pipeline_
analysis.cc`` and ``op_stats_to_overview_page.h``): input-bound 5 % moderate / 20 % high;
"all other" host time 3 % / 15 %; eager report 10 %; expensive tf.function 20 %;
host-to-device significant at 10 %.

Pure: no I/O, no streamlit, no tensorflow, no xprof.
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from profilers.model import CATEGORIES, RunProfile

Finding = dict[str, Any]
Facts = dict[str, Any]
Rule = Callable[[Facts], "Finding | None"]

SEVERITIES: tuple[str, ...] = ("high", "moderate", "low")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}

# -- thresholds (fractions of step time unless said otherwise) -----------------------------------
INPUT_MODERATE, INPUT_HIGH = 0.05, 0.20  # xprof kModerately/kHighlyInfeedBoundThresholdInPercent
EAGER_MODERATE, EAGER_HIGH = 0.10, 0.20  # xprof kEagerReportThresholdInPercent; kTfFunctionReport...
OVERHEAD_MODERATE, OVERHEAD_HIGH = 0.03, 0.15  # xprof k*AllOtherBoundThresholdInPercent
TRANSFER_MODERATE, TRANSFER_HIGH = 0.10, 0.25  # xprof kHostToDeviceTimePercentAsSignificant
COMPILE_MODERATE, COMPILE_HIGH = 0.10, 0.30  # share of the captured run
RETRACE_WARN_TRACES = 5  # TF warns at 5 traces in the last 10 calls
RETRACE_HIGH_CALL_SHARE = 0.5
SMALL_PROBLEM_HIGH_RATIO = 5.0
#: Outlier steps and the typical step's shares: one definition, in profilers.breakdown.
from profilers.breakdown import (OUTLIER_FACTOR, OUTLIER_MAX_FRACTION, OUTLIER_MIN_STEPS,  # noqa: E402,F401
                                 SAMPLED_PROFILERS, outlier_steps as _outlier_steps, typical_shares)
#: Share of the measured time the outliers took beyond a median step.
OUTLIER_MODERATE, OUTLIER_HIGH = 0.05, 0.20
#: Interpreter share of a NumPy script: the signal-delay sampler reads C calls shorter
#: than ~0.1 ms as interpreter time (about 5 % of a vectorised minibatch step, measured
#: on tests/scripts/numpy_vectorised.py), so lower shares are below its resolution.
NUMPY_INTERP_MODERATE, NUMPY_INTERP_HIGH = 0.10, 0.30  # fixed cost >= 5x the maths
GPU_UTIL_P95_LOW = 70.0
GPU_UTIL_P95_VERY_LOW = 30.0
CPU_BOUND_GPU_MAX, CPU_BOUND_CPU_MIN = 10.0, 90.0

COMPUTE = ("forward", "backward", "optimizer_update", "other")

#: Fix -> bundled variants that apply it, best first (for counterfactuals).
FIX_VARIANTS: dict[str, tuple[str, ...]] = {
    "eager_execution": ("tf_function", "tf_xla", "tf_graph_loop", "tf_graph_loop_xla"),
    "framework_overhead": ("tf_graph_loop_xla", "tf_graph_loop", "tf_xla", "tf_function"),
    "small_problem": ("tf_graph_loop_xla", "tf_graph_loop", "tf_xla", "numpy"),
    "input_bound": ("all", "prefetch", "parallel_map", "cache"),
}

CONTENTION_MODERATE, CONTENTION_HIGH = 0.15, 0.30  # share of the step waiting for a core


# -- facts -----------------------------------------------------------------------------------
def _measured(steps: pd.DataFrame) -> pd.DataFrame:
    return steps[~steps["warmup"].astype(bool)] if not steps.empty else steps


def gather(profile: RunProfile, context: Mapping[str, Any] | None = None) -> Facts:
    """Everything the rules read, from one run (and, in ``context``, its experiment).

    ``context`` may hold ``experiment``: ``[{"variant", "status", "median_ms", "run_id"}]``
    for the runs of the same experiment (counterfactuals and the NumPy baseline), and
    ``trace_facts``: ``{"eager_share", "eager_ms_per_step"}`` read from the run's capture
    by the caller (for runs whose results do not hold them).
    """
    m = profile.manifest
    res = m.get("results") or {}
    steps = profile.table("steps")
    bd = profile.table("breakdown")
    measured = _measured(steps)
    mids = set(measured["step"].tolist())
    # A run without steps (a sampled script) has one whole-run pseudo-step: use it all.
    bd_measured = bd[bd["step"].isin(mids)] if not bd.empty and not steps.empty else bd
    facts: Facts = {
        "run_id": m.get("run_id"), "source": m.get("source", "workload"),
        "workload": m.get("workload"), "variant": m.get("variant"),
        "status": m.get("status"), "results": res, "environment": m.get("environment") or {},
        "capture": m.get("capture") or {}, "script": m.get("script") or {},
        "samples": profile.table("samples"), "ops": profile.table("ops"),
        "steps_all": steps, "steps": measured, "breakdown_all": bd,
        "experiment": list((context or {}).get("experiment") or []),
        # The variants the run's workload has (a fix is only offered as a run to make if it exists).
        "workload_variants": (context or {}).get("variants"),
        "trace_facts": dict((context or {}).get("trace_facts") or {}),
        "step_count": int(len(measured)),
        "median_ms": float(measured["wall_us"].median() / 1e3) if len(measured) else None,
    }
    facts["outlier_steps"] = _outlier_steps(measured)
    shares_scope = "steps"
    if bd_measured.empty and not bd.empty:
        # Steps without a breakdown of their own (e.g. no sampler tick inside them): the
        # whole-run breakdown, said so in the evidence; never a 0 standing for unknown.
        bd_measured, shares_scope = bd, "whole run"
    elif not steps.empty and bd_measured.empty:
        shares_scope = None
    # One stalled step must not decide a share: steps longer than OUTLIER_FACTOR x the
    # median are left out (the outlier_steps rule reports them), the rest pooled.
    outlier_ids = {o["step"] for o in facts["outlier_steps"]}
    kept = bd_measured[~bd_measured["step"].isin(outlier_ids)] if outlier_ids else bd_measured
    per_step_ms: dict[str, float] = {}
    bd_steps = int(kept["step"].nunique()) if not kept.empty else 0
    # The same shares the analysis scaled breakdown_ms from (profilers.breakdown.typical_shares).
    shares, _ = typical_shares(bd_measured, measured if shares_scope == "steps" else measured.iloc[0:0],
                               pooled=res.get("profiler") in SAMPLED_PROFILERS)
    if shares and not kept.empty:
        tot = kept.groupby("category")["ms"].sum()
        per_step_ms = {c: float(kept[kept["category"] == c]["ms"].median())
                       if c in tot.index else 0.0 for c in CATEGORIES}
    facts["shares"] = shares
    facts["shares_scope"] = shares_scope if shares else None
    facts["shares_left_out_steps"] = sorted(outlier_ids)
    # Per-step figures in evidence are the stored ones, scaled to the median step.
    facts["breakdown_median_ms"] = dict(res.get("breakdown_ms") or per_step_ms)
    facts["breakdown_steps"] = bd_steps
    facts["breakdown_source"] = res.get("breakdown_source") or (
        "the run's breakdown table" if shares else None)
    if not bd.empty:
        tot_all = bd.groupby("category")["ms"].sum()
        all_ms = float(tot_all.sum())
        facts["compile_share_all"] = float(tot_all.get("compile_trace", 0.0)) / all_ms if all_ms > 0 else None
        facts["captured_ms"] = all_ms
    else:
        facts["compile_share_all"] = None
        facts["captured_ms"] = None
    facts["eager"] = _eager_facts(facts)
    return facts


def _eager_facts(facts: Facts) -> dict[str, Any] | None:
    """Eager op share: from the trace facts the script worker stored, else the ops table."""
    res = {**facts["trace_facts"], **facts["results"]}
    if res.get("eager_share") is not None:
        return {"share": float(res["eager_share"]), "ms_per_step": res.get("eager_ms_per_step"),
                "ops_per_step": res.get("eager_ops_per_step"),
                "source": "TF trace: top-level eager dispatches (EagerExecute and the Python-to-C++ "
                          "call around it) on the script's thread, per step"}
    ops = facts["ops"]
    steps_all = facts["steps_all"]
    if ops.empty or "eager" not in ops.columns or steps_all.empty:
        return None
    window = steps_all[steps_all["in_profile_window"].astype(bool)]
    if window.empty:
        return None
    host = ops[ops["host_or_device"].astype(str).str.lower().str.contains("host")] \
        if "host_or_device" in ops.columns else ops
    eager_us = float(host.loc[host["eager"].astype(bool), "total_self_us"].sum())
    op_us = float(host["total_self_us"].sum())
    wall_us = float(window["wall_us"].sum())
    if wall_us <= 0:
        return None
    return {"share": eager_us / wall_us, "ms_per_step": eager_us / 1e3 / len(window),
            "op_time_eager_pct": 100.0 * eager_us / op_us if op_us > 0 else None,
            "source": "xprof framework_op_stats: self time of ops run eagerly, over the profiled steps"}


# -- helpers -----------------------------------------------------------------------------------
def _sev(share: float, moderate: float, high: float) -> str | None:
    if share >= high:
        return "high"
    if share >= moderate:
        return "moderate"
    return None


def _finding(rule: str, severity: str, share: float | None, evidence: dict[str, Any],
             recommendation: str, fix_traits: list[str] | None = None) -> Finding:
    out = {"rule": rule, "severity": severity,
           "share": None if share is None or not math.isfinite(share) else round(float(share), 4),
           "evidence": evidence, "recommendation": recommendation}
    if fix_traits is not None:
        out["fix_traits"] = sorted(fix_traits)  # what the recommendation would make the run
    return out


#: Ways to put more work in each trip through the framework: (trait it gives, how, code).
_MORE_WORK = (
    ("tf_function", "compile the step into a graph",
     "train_step = tf.function(train_step)"),
    ("whole_loop", "run many steps per call (a tf.range loop inside one tf.function; Keras: "
                   "steps_per_execution)",
     "@tf.function\ndef train(n_steps):\n    for _ in tf.range(n_steps):\n        train_step()\n"
     "model.compile(..., steps_per_execution=32)   # Keras"),
    ("xla", "compile it with XLA", "@tf.function(jit_compile=True)"),
)


def _more_work_per_call(f: Facts, why: str) -> tuple[str, list[str]]:
    """The recommendation for a fixed per-call cost, leaving out what the run already is."""
    from profilers.invariants import traits

    have = traits(f["variant"]) if f["source"] == "workload" else frozenset()
    todo = [(t, how, code) for t, how, code in _MORE_WORK if t not in have]
    if not todo:
        return (f"{why} This variant already runs the whole loop compiled by XLA in one call, so "
                "what is left is the per-call cost itself: give each call more work (a larger batch "
                "or problem), or use NumPy for a problem this small.", [])
    text = f"{why} Put more work in each call: " + "; ".join(how for _, how, _ in todo) + \
        "; or use a larger batch.\n```python\n" + "\n".join(code for _, _, code in todo) + "\n```"
    return text, [t for t, _, _ in todo]


def _step_evidence(f: Facts) -> dict[str, Any]:
    return {"steps_measured": f["step_count"], "median_step_ms": _r(f["median_ms"]),
            "breakdown_steps": f["breakdown_steps"], "breakdown_source": f["breakdown_source"]}


def _r(x: Any, nd: int = 4) -> Any:
    """``x`` rounded to ``nd`` decimals, or to ``nd`` significant digits when it is smaller
    (a 0.57 µs step is not 0.0006 ms: rounding must never make a per-step figure larger
    than the step it is part of)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    x = float(x)
    digits = nd if x == 0 else max(nd, nd - 1 - math.floor(math.log10(abs(x))))
    return round(x, digits)


# -- rules --------------------------------------------------------------------------------------
def rule_input_bound(f: Facts) -> Finding | None:
    share = f["shares"].get("input_wait")
    if share is None:
        return None
    sev = _sev(share, INPUT_MODERATE, INPUT_HIGH)
    if sev is None:
        return None
    ev = {**_step_evidence(f), "input_wait_share": _r(share),
          "input_wait_ms_per_step": _r(f["breakdown_median_ms"].get("input_wait")),
          "thresholds": {"moderate": INPUT_MODERATE, "high": INPUT_HIGH,
                         "from": "xprof kModerately/kHighlyInfeedBoundThresholdInPercent"},
          "measured_as": "time the step waits in IteratorGetNext (the iterator fetch), per step"}
    res = f["results"]
    stages = res.get("input_stages") or []
    slow = None
    if stages:
        slow = max(stages, key=lambda s: s.get("self_ms") or 0.0)
        ev["slowest_tf_data_stage"] = {**slow, "source": "xprof input_pipeline_analyzer (tf.data stages, self time)"}
    if res.get("xprof_input_conclusion"):
        ev["xprof_says"] = res["xprof_input_conclusion"]
    stage_txt = f" The slowest tf.data stage is `{slow['stage']}` ({slow.get('self_ms', 0):.1f} ms self time)." \
        if slow else ""
    if slow and str(slow.get("stage", "")).endswith("Generator"):
        rec = ("The step waits for its next batch, and the slowest stage is a Python generator "
               "(tf.data's from_generator, or Keras wrapping one)." + stage_txt + " A generator runs "
               "on one thread holding the GIL: tf.data can prefetch it but not parallelise it. Move "
               "the per-batch work into tf.data ops that run in parallel, or give Keras a PyDataset "
               "with workers:\n```python\nds = tf.data.Dataset.from_tensor_slices(raw).map("
               "augment, num_parallel_calls=tf.data.AUTOTUNE).batch(64).prefetch(tf.data.AUTOTUNE)\n"
               "# Keras: class Batches(keras.utils.PyDataset) with super().__init__(workers=4, "
               "use_multiprocessing=True)\n```")
    else:
        rec = ("The step waits for its next batch. Overlap input with compute: parallelise the "
               "slow map, prefetch, and cache what does not change per epoch." + stage_txt + "\n"
               "```python\nds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)\n"
               "ds = ds.cache().prefetch(tf.data.AUTOTUNE)   # cache() only if it fits in memory\n```")
    return _finding("input_bound", sev, share, ev, rec)


def _graph_run(f: Facts) -> dict[str, Any] | None:
    """The same experiment's graph-mode run of this eager variant, when it ran."""
    if f["source"] != "workload" or not f["median_ms"] or "eager" not in str(f["variant"] or ""):
        return None
    for r in f["experiment"]:
        if r.get("variant") == "tf_function" and r.get("status") == "ok" and r.get("median_ms"):
            return r
    return None


def rule_eager_execution(f: Facts) -> Finding | None:
    """The part of the step graph mode would remove: eager dispatch and the Python around
    it (``step_inference.eager_time``); the measured eager/graph ratio when the experiment
    ran the graph variant."""
    eager = f["eager"]
    if not eager or eager.get("share") is None:
        return None
    share = float(eager["share"])
    graph = _graph_run(f)
    measured = None
    if graph is not None:
        measured = 1.0 - float(graph["median_ms"]) / float(f["median_ms"])
        if measured > 0:  # graph mode was faster: its measured gain is the share
            share = measured
    sev = _sev(share, EAGER_MODERATE, EAGER_HIGH)
    if sev is None:
        return None
    ev = {**_step_evidence(f), "eager_share": _r(share), "eager_ms_per_step": _r(eager.get("ms_per_step")),
          "eager_ops_per_step": _r(eager.get("ops_per_step"), 1), "source": eager["source"],
          "measured_as": "the part of the step graph mode would remove: eager dispatches and the "
                         "Python between them, less the op kernels (a graph runs those too), the "
                         "input wait and time already inside tf.function calls; median step",
          "thresholds": {"moderate": EAGER_MODERATE, "high": EAGER_HIGH,
                         "from": "xprof kEagerReportThresholdInPercent (10); high at its "
                                 "kTfFunctionReportThresholdInPercent (20)"}}
    if measured is not None:
        ev.update({"trace_eager_share": _r(float(eager["share"])), "graph_variant": graph["variant"],
                   "graph_median_ms": _r(float(graph["median_ms"])), "graph_run_id": graph.get("run_id"),
                   "measured_removed_share": _r(measured)})
        if measured > 0:
            ev["source"] = "measured: 1 - graph step / eager step, same experiment"
    if eager.get("op_time_eager_pct") is not None:
        ev["op_time_eager_pct"] = _r(eager["op_time_eager_pct"], 1)
    rec = _keras_per_call_advice(f, ev) or _eager_advice(f, ev)
    return _finding("eager_execution", sev, share, ev, rec)


#: Keras' own compiled train functions (Keras 3, then tf.keras 2).
KERAS_TRAIN_FUNCTIONS = frozenset({"one_step_on_data", "multi_step_on_iterator", "one_step_on_iterator",
                                   "multi_step_on_data", "train_function"})


def _eager_advice(f: Facts, ev: dict[str, Any]) -> str:
    """What removes the eager time, from what runs eagerly. A tf.function whose calls TF
    marked as run eagerly -> turn ``run_functions_eagerly`` off. Without a compiled call per
    step: ``tf.function`` for a custom loop, ``run_eagerly=False`` for Keras. With one (the
    eager ops left are around the call: converting inputs, reading outputs): Keras ``fit``
    -> ``steps_per_execution``; Keras ``train_on_batch`` -> ``fit`` on a dataset; a custom
    loop -> move them into the function or run several steps per call."""
    window = f["capture"].get("window") or {}
    fit = bool(window.get("fit_calls")) or (f["source"] == "workload" and "keras" in str(f["variant"] or ""))
    fns = [d.get("function") for d in f["results"].get("tf_functions") or [] if d.get("function")]
    keras_fns = [fn for fn in fns if fn in KERAS_TRAIN_FUNCTIONS]
    ran_eagerly = [d["function"] for d in f["results"].get("tf_functions") or []
                   if d.get("function") and (d.get("eager_calls") or 0) > 0]
    if ran_eagerly:
        # TF marks each such call; decorating again or run_eagerly=False would change nothing.
        ev["functions_run_eagerly"] = ran_eagerly
        names = ", ".join(f"`{fn}`" for fn in ran_eagerly)
        return (f"{names} {'is a' if len(ran_eagerly) == 1 else 'are'} tf.function but ran op by op: "
                "`tf.config.run_functions_eagerly(True)` is set (a debugging switch; it also makes "
                "Keras' compiled train step eager). Remove it, or turn it off once debugging is done:"
                "\n```python\ntf.config.run_functions_eagerly(False)\n```")
    calls = f["results"].get("function_calls_per_step")
    if calls:
        ev["compiled_calls_per_step"] = _r(calls, 2)
        if fns:
            ev["compiled_functions"] = fns
        if fit:
            return ("Keras already runs the train step as a compiled function, once per step; the "
                    "eager ops left are its own, paid once per call (it fetches each call's outputs "
                    "eagerly). Run several steps per call so they are paid once per call, not once "
                    "per step:\n```python\nmodel.compile(..., steps_per_execution=32)\n```")
        if keras_fns:
            return ("Keras runs its compiled train function once per `train_on_batch` call and, "
                    "around it, converts the batch and reads the outputs op by op. Give Keras the "
                    "whole loop, several steps per call:\n```python\nmodel.compile(..., "
                    "steps_per_execution=32)\nmodel.fit(tf.data.Dataset.from_tensor_slices((X, Y))"
                    ".batch(32).prefetch(tf.data.AUTOTUNE))\n```")
        return ("The step already calls a compiled function once per step; the eager ops left run "
                "outside it (converting inputs, metrics, reading the loss). Move them into the "
                "tf.function, or run several steps per call:\n```python\n@tf.function\n"
                "def train(n):\n    for _ in tf.range(n):\n        train_step(next(it))\n```")
    if fit or keras_fns:
        return ("Keras runs the train step op by op, each op paying Python and dispatch cost: "
                "`run_eagerly=True` (or `tf.config.run_functions_eagerly(True)`) is set. Let Keras "
                "compile the step into a graph:\n"
                "```python\nmodel.compile(..., run_eagerly=False)   # the default\n"
                "tf.config.run_functions_eagerly(False)\n```")
    return ("TF ops run one by one in eager mode, each paying Python and dispatch cost. "
            "Compile the step into a graph with tf.function:\n"
            "```python\n@tf.function\ndef train_step(x, y):\n    with tf.GradientTape() as tape:\n"
            "        loss = loss_fn(y, model(x))\n    grads = tape.gradient(loss, model.trainable_variables)\n"
            "    opt.apply_gradients(zip(grads, model.trainable_variables))\n    return loss\n```")


def _functions(f: Facts) -> list[dict[str, Any]]:
    """tf.function facts: trace counts from the capture, joined with the live report."""
    res = f["results"]
    trace = {d["function"]: d for d in res.get("tf_functions") or []}
    live = {d["function"]: d for d in (f["script"].get("tf_functions") or [])}
    out = []
    for name in sorted(set(trace) | set(live)):
        t, lv = trace.get(name, {}), live.get(name, {})
        out.append({"function": name, **t, "tracing_count": lv.get("tracing_count"),
                    "changing_args": lv.get("changing_args") or []})
    return out


def rule_retracing(f: Facts) -> Finding | None:
    worst = None
    for fn in _functions(f):
        calls = int(fn.get("calls") or 0)
        traced = int(fn.get("traced_calls") or 0)
        retraces = max(traced - 1, 0)  # the first trace is the normal one
        total = fn.get("tracing_count")
        count = max(int(total or 0), traced)
        if not (count >= RETRACE_WARN_TRACES or (retraces >= 2 and calls and traced / calls >= RETRACE_HIGH_CALL_SHARE)):
            continue
        key = (count, fn.get("traced_ms") or 0.0)
        if worst is None or key > worst[0]:
            worst = (key, fn, calls, traced, count)
    if worst is None:
        return None
    _, fn, calls, traced, count = worst
    captured = f["results"].get("capture_ms") or f.get("captured_ms")
    traced_ms = float(fn.get("traced_ms") or 0.0)
    share = traced_ms / captured if captured else None
    call_share = traced / calls if calls else None
    high = (call_share is not None and call_share >= RETRACE_HIGH_CALL_SHARE) or (share or 0) >= EAGER_HIGH
    per_call = fn.get("median_traced_ms")
    base = fn.get("median_untraced_ms")
    ev: dict[str, Any] = {
        "function": fn["function"], "traces_total": count,
        "calls_in_capture": calls, "traced_calls_in_capture": traced,
        "traced_share_of_calls": _r(call_share),
        "traced_call_ms_median": _r(per_call), "untraced_call_ms_median": _r(base),
        "cost_per_retrace_ms": _r(per_call - base) if per_call is not None and base is not None else _r(per_call),
        "time_in_traced_calls_ms": _r(traced_ms, 2), "captured_ms": _r(captured, 2),
        "share_of_captured_time": _r(share),
        "source": "TF trace: tf.function call events (tf_function_call traced-*/notTraced-*); "
                  "traces_total from the function's experimental_get_tracing_count() after the run",
        "tf_warns_at": f"{RETRACE_WARN_TRACES} traces in the last 10 calls",
        "reference": "measured here, 100x10 gradient step: 29 ms per call when each call retraces, "
                     "0.54 ms when none does",
    }
    changing = fn.get("changing_args") or []
    if changing:
        ev["changing_args"] = changing
    warnings = (f["script"].get("tf_warnings") or {}).get("retracing_warnings")
    if warnings:
        ev["tf_retracing_warnings"] = warnings
    what = ""
    if changing:
        c = changing[0]
        kind = {"python_scalar": "a Python scalar whose value changes (each value is a new graph)",
                "tensor_shape": "a tensor whose shape changes",
                "tensor_dtype": "a tensor whose dtype changes",
                "python_object": "a Python object that changes"}.get(c["kind"], "an argument that changes")
        what = f" Argument `{c['arg']}` is {kind}: {', '.join(c['examples'][:3])}..."
    rec = (f"`{fn['function']}` was traced {count} times.{what} Pass changing numbers as tensors, "
           "and let shapes vary without a new trace:\n"
           "```python\nlr = tf.Variable(0.1)            # or tf.constant(value) per call\n"
           "@tf.function(reduce_retracing=True)   # or input_signature=[tf.TensorSpec([None, n])]\n"
           "def train_step(x, lr): ...\ntrain_step(x, tf.constant(0.05))\n```")
    return _finding("retracing", "high" if high else "moderate", share, ev, rec)


def _numpy_script(f: Facts) -> bool:
    """A script run without TensorFlow (sampled; its overhead is the interpreter's)."""
    return f["source"] == "script" and f["results"].get("profiler") in ("pyinstrument", "signal-delay sampler")


def _harness_ms_per_step(f: Facts) -> float | None:
    """What sgdscope's own capture added to each step's framework_overhead (manifest
    ``capture.harness.framework_overhead_share``, a fraction of step time), if measured."""
    h = f["capture"].get("harness") or {}
    share = h.get("framework_overhead_share")
    if not isinstance(share, (int, float)) or not math.isfinite(share) or not f["median_ms"]:
        return None
    return float(share) * f["median_ms"]


#: The user's own Python leads the host time when it is at least this share of it.
USER_PYTHON_LEADS = 0.5
_KERAS_BATCH_HOOK_RE = re.compile(r"\.on_(train_|test_|predict_)?batch_(begin|end) \(")


def _user_python(f: Facts) -> dict[str, Any] | None:
    """The typical step's time in the user's own Python (``analysis._derive_user_python``),
    with each place's ms per step; None when not measured."""
    res = f["results"]
    share = res.get("user_python_share")
    if not isinstance(share, (int, float)) or not math.isfinite(share) or not f["median_ms"]:
        return None
    where = [{"where": w["where"], "share": _r(w["share"]), "ms_per_step": _r(w["share"] * f["median_ms"])}
             for w in res.get("user_python_where") or []]
    return {"share": float(share), "ms_per_step": float(share) * f["median_ms"], "where": where,
            "samples": res.get("user_python_samples")}


#: A user's line that holds at least this share of the step is named with the finding.
LINE_LEADS = 0.5
_KERAS_PER_CALL_RE = re.compile(r"\.(predict|evaluate)\(")


def _lines(f: Facts) -> list[dict[str, Any]]:
    """The user's lines with the most time under them, TF's and Keras' included
    (``analysis._derive_user_python``), with ms per step."""
    return [{"where": w["where"], "code": w.get("code") or "", "share": _r(w["share"]),
             "ms_per_step": _r(w["share"] * f["median_ms"])}
            for w in f["results"].get("user_lines") or [] if f["median_ms"]]


def _keras_per_call_advice(f: Facts, ev: dict[str, Any]) -> str | None:
    """When most of the step is under one line calling Keras' ``predict``/``evaluate``: each
    call builds a data adapter, an iterator and callbacks again, every step."""
    lines = _lines(f)
    if not lines:
        return None
    ev["time_under_your_lines"] = lines
    top = lines[0]
    call = _KERAS_PER_CALL_RE.search(top["code"])
    if (top["share"] or 0) < LINE_LEADS or call is None:
        return None
    call = call.group(1)
    return (f"{top['ms_per_step']:.3g} ms of each step is under your line `{top['code']}` ({top['where']}): "
            f"Keras' `{call}` builds a data adapter, an iterator and its callbacks again on every call. "
            "In the loop, call the model directly, or run it once after training:\n```python\n"
            "pred = model(x, training=False)   # instead of model.predict(x) every step\n```")


def _user_python_advice(user: dict[str, Any]) -> str:
    """Advice for host time spent in the user's own code: do it less often. A Keras batch
    hook (``on_train_batch_end``...) runs after every batch; other code once per step."""
    places = "; ".join(f"`{w['where']}` {w['ms_per_step']:.3g} ms" for w in user["where"]) or "your code"
    head = (f"Most of this host time is your own Python, not TensorFlow: {places} per step. "
            "Compiling the step or a bigger framework cannot remove it. ")
    if any(_KERAS_BATCH_HOOK_RE.search(w["where"]) for w in user["where"]):
        return head + ("It is a Keras callback hook that runs after every batch: do the work every N "
                       "batches, or once per epoch:\n```python\nclass Logger(keras.callbacks.Callback):\n"
                       "    def on_train_batch_end(self, batch, logs=None):\n"
                       "        if batch % 100 == 0:   # not every batch\n            ...\n"
                       "    def on_epoch_end(self, epoch, logs=None): ...   # or here, once\n```")
    return head + ("It runs once per step, outside the compiled step: do it every N steps, vectorise it, "
                   "or move it into the tf.function as TF ops:\n```python\nfor step, x in enumerate(ds):\n"
                   "    loss = train_step(x)\n    if step % 100 == 0:   # bookkeeping every 100 steps\n"
                   "        log(float(loss))\n```")


def rule_framework_overhead(f: Facts) -> Finding | None:
    share = f["shares"].get("framework_overhead")
    if share is None:
        return None
    no_tf = _numpy_script(f)
    harness = _harness_ms_per_step(f)
    raw = share
    if harness is not None and f["median_ms"]:
        share = max(share - harness / f["median_ms"], 0.0)  # sgdscope's own cost is not the user's
    waited = f["shares"].get("cpu_contention") or 0.0
    if no_tf and 0.0 < waited < 1.0:
        # The interpreter's share of the time the thread ran: waiting for a core (reported
        # as cpu_contention) says nothing about how vectorised the code is.
        share = min(share / (1.0 - waited), 1.0)
    moderate, high = (NUMPY_INTERP_MODERATE, NUMPY_INTERP_HIGH) if no_tf else (OVERHEAD_MODERATE, OVERHEAD_HIGH)
    sev = _sev(share, moderate, high)
    if sev is None:
        return None
    ev = {**_step_evidence(f), "overhead_share": _r(share),
          "overhead_ms_per_step": _r(f["breakdown_median_ms"].get("framework_overhead")),
          "shares_over": f.get("shares_scope"),
          "measured_as": ("time on the script's thread in the Python interpreter, not in native code: "
                          "SIGALRM ticks classed by the handler's delay (a tick that waited for a C "
                          "call is NumPy/native whatever the line's text)" if no_tf else
                          "step wall time outside every op, input wait and compile span: Python, "
                          "dispatch, executor"),
          "thresholds": {"moderate": moderate, "high": high,
                         "from": ("the sampler's resolution on a vectorised NumPy step (C calls shorter "
                                  "than ~0.1 ms read as interpreter)" if no_tf else
                                  "xprof k*AllOtherBoundThresholdInPercent")}}
    if f.get("shares_left_out_steps"):
        ev["outlier_steps_left_out"] = f["shares_left_out_steps"]
    if no_tf and waited:
        ev["share_of_running_time"] = True
        ev["cpu_contention_share"] = _r(waited)
    if harness is not None:
        ev["harness_ms_per_step"] = _r(harness)
        ev["share_before_harness"] = _r(raw)
    if no_tf:
        lines = [t for t in f["results"].get("top_lines") or [] if (t.get("interpreter_s") or 0) > 0]
        lines = sorted(lines, key=lambda t: -(t.get("interpreter_s") or 0))[:3]
        if lines:
            ev["interpreter_lines"] = lines
        where = f" The interpreter's time is mostly on {', '.join(t['line'] for t in lines)}." if lines else ""
        rec = ("Most of the step runs in the Python interpreter, not in NumPy." + where + " Vectorise "
               "those loops so each NumPy call does more work:\n"
               "```python\n# instead of: for i in range(n): g[i] = sum(X[i] * r)\ng = X.T @ r\n```")
    else:
        user = _user_python(f)
        if user is not None:
            every = (((f["capture"].get("harness") or {}).get("components") or {}).get("stack_sampler")
                     or {}).get("interval_s")
            ev.update(user_python_share=_r(user["share"]), user_python_ms_per_step=_r(user["ms_per_step"]),
                      user_python_where=user["where"], user_python_samples=user["samples"],
                      user_python_measured_as=(f"the script thread's stack sampled every {every * 1e3:g} ms"
                                               if every else "the script thread's stack, sampled") +
                      " in the measured steps: time whose innermost TF, Keras or user frame is in your files")
        if user is not None and user["share"] >= USER_PYTHON_LEADS * raw:
            return _finding("framework_overhead", sev, share, ev, _user_python_advice(user))
        per_call = _keras_per_call_advice(f, ev)
        if per_call is not None:
            return _finding("framework_overhead", sev, share, ev, per_call)
        rec, fix = _more_work_per_call(f, "The host spends this time between ops (Python, dispatch, "
                                          "the executor), not computing.")
        return _finding("framework_overhead", sev, share, ev, rec, fix)
    return _finding("framework_overhead", sev, share, ev, rec)


_RETRACE_ADVICE = ("A step that traces or compiles again is slow: see the retracing and compilation "
                   "findings; keep shapes and Python arguments fixed so the function traces once.")

#: What an outlier step's longest events point at, and the advice for it (first match wins).
_OUTLIER_CAUSES: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("DeleteTensorHandle", "DeleteIterator", "AnonymousIterator", "MakeIterator", "IteratorV2"),
     "iterator teardown/creation at an epoch boundary",
     "Keep one iterator across epochs instead of a new one per epoch, so nothing is torn down "
     "mid-run:\n```python\nit = iter(ds.repeat())\nfor step in range(epochs * steps_per_epoch):\n"
     "    train_step(next(it))\n```"),
    (("SaveV2", "MergeV2Checkpoints", "RestoreV2", "WriteFile", "save"),
     "checkpoint saving",
     "Save less often, or off the training thread:\n```python\nckpt_manager.save(checkpoint_number=step)  "
     "# every N epochs, not every epoch\n# or tf.train.CheckpointOptions(experimental_enable_async_checkpoint=True)\n```"),
    (("traced", "Trace", "compile", "Compile"), "tracing/compilation inside the loop", _RETRACE_ADVICE),
)


#: An outlier step's dominant breakdown category (marker steps carry no event list), and
#: what it means; used when the step's events name no cause.
_OUTLIER_CATEGORY_CAUSES = {
    "compile_trace": ("tracing/compilation inside the loop", _RETRACE_ADVICE),
    "input_wait": ("a stall waiting for the next batch",
                   "The input pipeline stalled in this step: see the input findings; prefetch and "
                   "parallelise the slow stage so one slow batch does not hold the step:\n```python\n"
                   "ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)\n```"),
}


def _outlier_cause_from_categories(worst: dict[str, Any], f: Facts) -> tuple[str | None, str | None]:
    """The cause of the longest outlier from its own breakdown: the category holding at least
    half of its time. A Keras ``fit`` call's first step that traces is named as such (each
    ``compile`` before a ``fit`` makes Keras build its train function again)."""
    cats = worst.get("largest_categories_ms") or {}
    if not cats:
        return None, None
    top, ms = max(cats.items(), key=lambda kv: kv[1])
    if top not in _OUTLIER_CATEGORY_CAUSES or ms < 0.5 * worst["ms"]:
        return None, None
    cause, advice = _OUTLIER_CATEGORY_CAUSES[top]
    firsts = ((f["capture"].get("window") or {}).get("fit_first_steps") or [])
    if top == "compile_trace" and worst["step"] in firsts[1:]:
        k = firsts.index(worst["step"]) + 1
        cause = f"a new train function traced at the start of fit call {k} of {len(firsts)}"
        advice = (f"Keras builds its train function again in the first step of a `fit` call when "
                  f"`compile` ran since the last one (as when fine-tuning): {ms:.0f} ms once per "
                  f"`fit` call, not per step. Leave it if the recompile is needed (a new optimizer, "
                  f"unfrozen layers); otherwise compile once and call `fit` once with more epochs.")
    return cause, advice


def rule_outlier_steps(f: Facts) -> Finding | None:
    """Steps longer than OUTLIER_FACTOR x the median step, with what they contained."""
    outliers = f.get("outlier_steps") or []
    if not outliers or not f["median_ms"]:
        return None
    measured = f["steps"]
    total_ms = float(measured["wall_us"].sum() / 1e3)
    excess_ms = sum(o["ms"] - f["median_ms"] for o in outliers)
    share = excess_ms / total_ms if total_ms > 0 else None
    if share is None:
        return None
    sev = _sev(share, OUTLIER_MODERATE, OUTLIER_HIGH) or "low"
    # What the outlier steps contained: the trace's longest events (inferred steps), the
    # sampled lines (NumPy scripts), else the step's own breakdown.
    inside = {int(o["step"]): o for o in (f["capture"].get("step_inference") or {}).get("outlier_steps") or []}
    inside.update({int(o["step"]): o for o in f["results"].get("outlier_steps") or []})
    bd = f["breakdown_all"]
    details = []
    for o in outliers:
        row = dict(o)
        got = inside.get(o["step"])
        if got is not None:
            row.update({k: v for k, v in got.items() if k not in ("step", "ms")})
        elif not bd.empty:
            cats = bd[bd["step"] == o["step"]].set_index("category")["ms"]
            if len(cats):
                row["largest_categories_ms"] = {str(c): _r(float(v), 2) for c, v in cats.nlargest(3).items() if v > 0}
        details.append(row)
    names = " ".join(str(e.get("name", "")) for d in details for e in d.get("longest_events") or [])
    cause, advice = None, None
    for keys, what, rec_ in _OUTLIER_CAUSES:
        if any(k in names for k in keys):
            cause, advice = what, rec_
            break
    worst = max(details, key=lambda d: d["ms"])
    if cause is None:
        cause, advice = _outlier_cause_from_categories(worst, f)
    top = (worst.get("longest_events") or [{}])[0]
    where = f", in {top['name']} ({top['ms']:.0f} ms)" if top.get("name") else ""
    if worst.get("top_lines"):
        where = f", on {worst['top_lines'][0]['line']}"
    if (worst.get("untraced_ms") or 0) > 0.3 * worst["ms"]:
        where += f", and {worst['untraced_ms']:.0f} ms in Python outside any TF event"
    text = (f"{len(outliers)} of {len(measured)} steps took more than {OUTLIER_FACTOR:g}x the median "
            f"step ({f['median_ms']:.1f} ms); the longest, step {worst['step']}, took {worst['ms']:.0f} ms{where}"
            + (f": {cause}" if cause else "") + ".")
    ev = {"outliers": details, "steps_measured": len(measured), "median_step_ms": _r(f["median_ms"]),
          "excess_ms": _r(excess_ms, 2), "threshold_x_median": OUTLIER_FACTOR,
          "cause": cause or "not recognised from what the steps contained (see outliers)",
          "summary": text, "note": "these steps are left out of every other finding's share",
          "thresholds": {"moderate": OUTLIER_MODERATE, "high": OUTLIER_HIGH,
                         "of": "measured time the outliers took beyond a median step"}}
    rec = text + " " + (advice or (
        "Find what runs only in those steps (work at an epoch boundary: evaluation, logging, "
        "checkpointing, a new iterator, garbage collection) and move it out of the loop, do it less "
        "often, or overlap it with training. The other findings describe the typical step.\n"
        "```python\nfor epoch in range(epochs):\n    for x in ds:\n        train_step(x)\n"
        "    if epoch % 5 == 4:   # the epoch-boundary work, less often\n        evaluate_and_save()\n```"))
    return _finding("outlier_steps", sev, share, ev, rec)


def _baseline(f: Facts) -> dict[str, Any] | None:
    for r in f["experiment"]:
        if r.get("variant") == "numpy" and r.get("status") == "ok" and r.get("median_ms"):
            return r
    return None


def rule_small_problem(f: Facts) -> Finding | None:
    med = f["breakdown_median_ms"]
    if not med or _numpy_script(f):
        return None  # no framework in a NumPy script: framework_overhead covers the interpreter
    user = _user_python(f)
    # The user's own Python (a callback, bookkeeping) is no fixed cost of the framework.
    fixed = max(med.get("framework_overhead", 0.0) - (user["ms_per_step"] if user else 0.0), 0.0)
    maths = sum(med.get(c, 0.0) for c in COMPUTE)
    if fixed <= 0 or fixed <= maths:
        return None
    ratio = fixed / maths if maths > 0 else float("inf")
    share = f["shares"].get("framework_overhead", 0.0) - (user["share"] if user else 0.0)
    if share < OVERHEAD_MODERATE:
        return None  # the step is dominated by something else (input, compilation)
    sev = "high" if ratio >= SMALL_PROBLEM_HIGH_RATIO and share >= OVERHEAD_HIGH else "moderate"
    ev = {**_step_evidence(f), "fixed_cost_ms_per_step": _r(fixed), "maths_ms_per_step": _r(maths),
          "fixed_over_maths": _r(ratio, 2) if math.isfinite(ratio) else None,
          "measured_as": "median per step: framework overhead (host time outside ops, input and "
                         "compile, less the user's own Python) vs op (kernel) time"}
    if user is not None:
        ev["user_python_ms_left_out"] = _r(user["ms_per_step"])
    base = _baseline(f)
    if base is not None and f["variant"] != "numpy":
        ev["numpy_same_maths_ms"] = _r(base["median_ms"])
        ev["numpy_run_id"] = base.get("run_id")
        if f["median_ms"]:
            ev["slower_than_numpy"] = _r(f["median_ms"] / base["median_ms"], 2)
    else:
        ev["numpy_same_maths_ms"] = None
        ev["numpy_note"] = "no NumPy baseline run in this experiment"
    per_call = _keras_per_call_advice(f, ev)
    if per_call is not None:
        return _finding("small_problem", sev, share, ev, per_call)
    rec, fix = _more_work_per_call(f, "Each step does less maths than the framework's fixed "
                                         "per-step cost, so a bigger framework cannot help.")
    return _finding("small_problem", sev, share, ev, rec, fix)


def _metric(samples: pd.DataFrame, pattern: str) -> pd.Series:
    if samples.empty:
        return pd.Series([], dtype="float64")
    sel = samples[samples["metric"].astype(str).str.fullmatch(pattern)]
    return sel["value"].astype(float)


def _gpu_util(f: Facts) -> pd.Series | None:
    util = _metric(f["samples"], r"gpu\d+_util_pct")
    return None if util.empty else util


def rule_gpu_underutilized(f: Facts) -> Finding | None:
    util = _gpu_util(f)
    if util is None:
        return None  # no GPU readings: unavailable, never 0 %
    p95 = float(np.percentile(util.to_numpy(), 95))
    if p95 >= GPU_UTIL_P95_LOW:
        return None
    sev = "high" if p95 < GPU_UTIL_P95_VERY_LOW else "moderate"
    ev = {"gpu_util_p95_pct": _r(p95, 1), "gpu_util_median_pct": _r(float(util.median()), 1),
          "samples": int(len(util)), "threshold_p95_pct": GPU_UTIL_P95_LOW,
          "source": "NVML utilization samples (samples table, gpu<i>_util_pct)"}
    rec = ("The GPU sits idle much of the time. Find what it waits for (input, host "
           "overhead, small kernels) in the other findings; then feed it more work per step:\n"
           "```python\nds = ds.batch(larger_batch).prefetch(tf.data.AUTOTUNE)\n"
           "model.compile(..., jit_compile=True, steps_per_execution=32)\n```")
    return _finding("gpu_underutilized", sev, None, ev, rec)


def rule_cpu_bottleneck(f: Facts) -> Finding | None:
    util = _gpu_util(f)
    if util is None:
        return None
    cpu = _metric(f["samples"], "system_cpu_pct")
    if cpu.empty:
        return None
    gpu_med, cpu_med = float(util.median()), float(cpu.median())
    if not (gpu_med < CPU_BOUND_GPU_MAX and cpu_med > CPU_BOUND_CPU_MIN):
        return None
    ev = {"gpu_util_median_pct": _r(gpu_med, 1), "cpu_util_median_pct": _r(cpu_med, 1),
          "thresholds": {"gpu_below_pct": CPU_BOUND_GPU_MAX, "cpu_above_pct": CPU_BOUND_CPU_MIN},
          "source": "samples table: NVML gpu<i>_util_pct and psutil system_cpu_pct"}
    rec = ("The CPU is saturated while the GPU idles: host work (input preprocessing, Python) "
           "is the bottleneck. Move preprocessing into tf.data with parallel calls, or onto the GPU:\n"
           "```python\nds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)\n```")
    return _finding("cpu_bottleneck", "high", None, ev, rec)


def rule_host_device_transfer(f: Facts) -> Finding | None:
    share = f["shares"].get("host_device_transfer")
    if share is None:
        return None
    sev = _sev(share, TRANSFER_MODERATE, TRANSFER_HIGH)
    if sev is None:
        return None
    ev = {**_step_evidence(f), "transfer_share": _r(share),
          "transfer_ms_per_step": _r(f["breakdown_median_ms"].get("host_device_transfer")),
          "measured_as": "Memcpy/_Send/_Recv time inside the step (TF trace)",
          "threshold": {"moderate": TRANSFER_MODERATE, "from": "xprof kHostToDeviceTimePercentAsSignificant"}}
    rec = ("Copies between host and device take a large part of the step. Keep data on the "
           "device, copy once, and overlap copies with compute:\n"
           "```python\nds = ds.prefetch(tf.data.AUTOTUNE)   # or tf.data.experimental.prefetch_to_device('/gpu:0')\n```")
    return _finding("host_device_transfer", sev, share, ev, rec)


def rule_compilation(f: Facts) -> Finding | None:
    bd = f["breakdown_all"]
    if bd.empty:
        return None
    steady = f["shares"].get("compile_trace")
    once = f.get("compile_share_all")
    sev = _sev(steady, COMPILE_MODERATE, COMPILE_HIGH) if steady is not None else None
    share = steady
    if sev is None and once is not None and once >= COMPILE_MODERATE:
        sev, share = "low", once  # a one-time cost, amortised by a longer run
    if sev is None:
        return None
    ms = float(bd.loc[bd["category"] == "compile_trace", "ms"].sum())
    ev = {"compile_trace_ms": _r(ms, 2), "captured_ms": _r(f.get("captured_ms"), 2),
          "share_after_warmup": _r(steady), "share_with_warmup": _r(once),
          "steps_in_capture": int(bd["step"].nunique()),
          "thresholds": {"moderate": COMPILE_MODERATE, "high": COMPILE_HIGH,
                         "low": "one-time compile >= 10% of the captured run, none after warm-up"},
          "measured_as": "tf.function tracing and XLA compilation spans in the TF trace"}
    rec = ("Tracing/compiling takes a large share of the run. Trace once (see `retracing` if it "
           "repeats), keep compiled functions alive across calls, and for short runs weigh "
           "XLA's compile time against its gain:\n"
           "```python\nstep = tf.function(train_step)   # define once, outside the loop\n```")
    return _finding("compilation", sev, share, ev, rec)


def rule_thread_config(f: Facts) -> Finding | None:
    env = f["environment"]
    cores = env.get("affinity_cores") or env.get("cpu_logical")
    if not cores:
        return None
    tf_env = env.get("tensorflow") or {}
    notes = []
    sev = None
    intra, inter = tf_env.get("intra_op_threads"), tf_env.get("inter_op_threads")
    if intra and intra > cores:
        notes.append(f"intra_op_parallelism_threads={intra} > {cores} usable cores (oversubscribed)")
        sev = "moderate"
    if inter and inter > cores:
        notes.append(f"inter_op_parallelism_threads={inter} > {cores} usable cores")
        sev = sev or "low"
    compute_share = sum(f["shares"].get(c, 0.0) for c in COMPUTE)
    if intra == 1 and cores > 1 and compute_share >= 0.5:
        notes.append(f"intra_op_parallelism_threads=1 while ops take {compute_share:.0%} of the step "
                     f"and {cores} cores are usable")
        sev = sev or "low"
    blas = [b for b in env.get("blas") or [] if isinstance(b, dict)]
    for b in blas:
        n = b.get("num_threads")
        if n and n > cores:
            notes.append(f"{b.get('internal_api')} uses {n} threads on {cores} usable cores")
            sev = sev or "low"
    if not notes:
        return None
    ev = {"usable_cores": cores, "intra_op_threads": intra, "inter_op_threads": inter,
          "blas_threads": [b.get("num_threads") for b in blas], "issues": notes,
          "source": "manifest environment (tf.config.threading after the run; threadpoolctl)"}
    rec = ("Match thread pools to the cores this process may use:\n"
           f"```python\ntf.config.threading.set_intra_op_parallelism_threads({cores})\n"
           "tf.config.threading.set_inter_op_parallelism_threads(2)\n```")
    return _finding("thread_config", sev, None, ev, rec)


def rule_cpu_contention(f: Facts) -> Finding | None:
    """The step thread waited for a CPU core: the machine is busy with other work."""
    cont = (f["capture"].get("cpu_contention") or {})
    share = f["results"].get("cpu_contention_share")
    if share is None or not cont.get("available"):
        return None
    sev = _sev(share, CONTENTION_MODERATE, CONTENTION_HIGH)
    if sev is None:
        return None
    ev = {**_step_evidence(f), "cpu_contention_share": _r(share),
          "cpu_contention_ms_per_step": _r((f["results"].get("breakdown_ms") or {}).get("cpu_contention")),
          "run_queue_wait_fraction": _r(cont.get("fraction")), "loadavg": cont.get("loadavg"),
          "cpu_count": cont.get("cpu_count"), "busiest_other_processes": cont.get("busiest") or [],
          "measured_as": cont.get("source"),
          "thresholds": {"moderate": CONTENTION_MODERATE, "high": CONTENTION_HIGH}}
    busy = ", ".join(f"{p['name']} ({p['cpu_pct']:.0f}%)" for p in (cont.get("busiest") or [])[:3])
    rec = ("The step thread was ready to run but waited for a free core: other processes "
           f"were using the CPUs{' (' + busy + ')' if busy else ''}. This is not framework "
           "overhead and no code change fixes it: measure again on a quiet machine, or pin the "
           "job to cores the others do not use.\n```bash\ntaskset -c 0,1 python train.py\n```")
    return _finding("cpu_contention", sev, share, ev, rec)


#: The rule registry (sorted by id). CLI and UI choices are built from it.
RULES: dict[str, Rule] = dict(sorted({
    "compilation": rule_compilation,
    "cpu_bottleneck": rule_cpu_bottleneck,
    "cpu_contention": rule_cpu_contention,
    "eager_execution": rule_eager_execution,
    "framework_overhead": rule_framework_overhead,
    "gpu_underutilized": rule_gpu_underutilized,
    "host_device_transfer": rule_host_device_transfer,
    "input_bound": rule_input_bound,
    "outlier_steps": rule_outlier_steps,
    "retracing": rule_retracing,
    "small_problem": rule_small_problem,
    "thread_config": rule_thread_config,
}.items()))

# The multi-worker rules (straggler, collective_bound) register themselves in RULES.
from profilers.triage_distributed import register as _register_distributed  # noqa: E402

_register_distributed(RULES)


# -- counterfactuals ------------------------------------------------------------------------------
def counterfactual(finding: Finding, f: Facts) -> dict[str, Any] | None:
    """The measured gain of the fix, from a variant of the same experiment that applies it
    and ran faster; or, for a bundled workload that has not run such a variant, which one
    to run. Variants that ran and were not faster are not offered."""
    candidates = [v for v in FIX_VARIANTS.get(finding["rule"], ()) if v != f["variant"]]
    if not candidates or f["source"] != "workload" or not f.get("median_ms"):
        return None
    ran = {r["variant"]: r for r in f["experiment"]}
    faster = [ran[v] for v in candidates if v in ran and ran[v].get("status") == "ok"
              and ran[v].get("median_ms") and f["median_ms"] > ran[v]["median_ms"]]
    if faster:  # the best measured fix, not the first listed one
        r = min(faster, key=lambda x: x["median_ms"])
        v = r["variant"]
        speedup = f["median_ms"] / r["median_ms"]
        return {"variant": v, "run_id": r.get("run_id"), "median_ms": _r(r["median_ms"]),
                "speedup": _r(speedup, 2), "measured": True,
                "text": f"measured: {speedup:.1f}x faster with {v} (same experiment)"}
    known = f.get("workload_variants")
    not_run = [v for v in candidates if v not in ran and (known is None or v in known)]
    if not not_run:
        return None
    v = not_run[0]
    return {"variant": v, "measured": False, "workload": f["workload"],
            "text": f"not measured yet: run the {v} variant of {f['workload']} to see the gain",
            "command": f"sgdscope run {f['workload']} --variants {f['variant']},{v}"}


# -- entry points ---------------------------------------------------------------------------------
def evaluate(profile: RunProfile, context: Mapping[str, Any] | None = None,
             rules: Mapping[str, Rule] | None = None) -> list[Finding]:
    """Every rule over one run; findings ordered by severity, then share (largest first)."""
    facts = gather(profile, context)
    out: list[Finding] = []
    for name, rule in (rules or RULES).items():
        found = rule(facts)
        if found is None:
            continue
        cf = counterfactual(found, facts)
        if cf is not None:
            found["counterfactual"] = cf
        out.append(found)
    return order_findings(out)


def order_findings(findings: list[Finding]) -> list[Finding]:
    from profilers.invariants import measured_gain

    """Findings with a measured gain first, largest gain first; then by severity and share."""
    def key(x: Finding) -> tuple:
        gain = measured_gain(x)
        return (gain is None, -(gain or 0.0), SEVERITY_RANK.get(x["severity"], 9), -(x.get("share") or 0.0),
                x["rule"])
    return sorted(findings, key=key)


def summary(profile: RunProfile) -> dict[str, Any]:
    """``steps`` (measured count and median ms) and ``breakdown_ms`` as the analysis stored
    them (scaled to the median step; null with the reason in ``unavailable`` when the run
    has none), plus the profiler-window figures under their own, labelled name."""
    res = profile.manifest.get("results") or {}
    step_ms = res.get("step_ms") or {}
    return {"steps": {"count": int(step_ms.get("count") or 0), "median_ms": step_ms.get("median")},
            "breakdown_ms": res.get("breakdown_ms"),
            "breakdown_window_ms": res.get("breakdown_window_ms"),
            "unavailable": res.get("unavailable") or {}}

"""Plain-words explanations of where a variant's step time goes, computed from its numbers.

Pure: manifests' ``results`` in, sentences out (no I/O, no streamlit, no tensorflow).
Example: "tf_eager: 3.39 ms/step, of which 3.13 ms (92%) is framework overhead over 25 ops
(≈134 µs/op); the maths takes 0.26 ms; numpy does the whole step in 17.6 µs."
"""
from __future__ import annotations

from typing import Any, Mapping

COMPUTE = ("forward", "backward", "optimizer_update")
WORDS = {
    "input_wait": "waiting for input",
    "framework_overhead": "framework overhead",
    "cpu_contention": "waiting for a CPU core other processes held",
    "host_device_transfer": "host↔device copies",
    "compile_trace": "tracing and compiling",
    "other": "ops outside the step's name scopes",
}


def fmt_time(ms: float | None) -> str:
    if ms is None:
        return "n/a"
    if ms < 1:
        return f"{ms * 1e3:.3g} µs"
    return f"{ms:.3g} ms" if ms < 1000 else f"{ms / 1e3:.3g} s"


def explain_run(variant: str, results: Mapping[str, Any],
                baseline: tuple[str, Mapping[str, Any]] | None = None) -> str | None:
    """One sentence for one run, or None when the run has no breakdown."""
    bd = results.get("breakdown_ms")
    step = (results.get("step_ms") or {}).get("median")
    if not bd or not step:
        return None
    maths = sum(bd.get(c, 0.0) for c in COMPUTE)
    other = bd.get("other", 0.0)
    top = max(bd, key=lambda c: bd[c])
    parts = [f"{variant}: {fmt_time(step)}/step"]
    if top in COMPUTE or maths >= 0.5 * step:
        text = f"mostly the maths ({fmt_time(maths)}, {maths / step:.0%})"
        gflops = (results.get("gflops") or {}).get("compute")
        if gflops:
            text += f" at {gflops:.3g} GFLOP/s"
            peak = results.get("gemm_peak_gflops")
            if peak:
                text += f" (this machine's NumPy GEMM peak: {peak:.3g} GFLOP/s)"
        parts.append(text)
    else:
        text = f"of which {fmt_time(bd[top])} ({bd[top] / step:.0%}) is {WORDS.get(top, top)}"
        ops, calls = results.get("ops_per_step"), results.get("dispatches_per_step")
        per = results.get("overhead_us_per_dispatch")  # the one stored figure, never recomputed
        if top == "framework_overhead" and ops:
            text += f" over {ops:.3g} ops"
            if calls and per is not None:  # the overhead shared out over the trips through the framework
                trips = (f"{calls:.3g} dispatch{'es' if calls != 1 else ''} per step" if calls >= 1
                         else f"one dispatch every {1 / calls:.3g} steps")
                text += f" in {trips} (≈{per:.3g} µs each)"
        user = results.get("user_python_ms_per_step")
        if top == "framework_overhead" and user and user >= 0.1 * bd[top]:
            where = (results.get("user_python_where") or [{}])[0].get("where")
            text += f", {fmt_time(user)} of it your own Python" + (f" ({where})" if where else "")
        parts.append(text)
        parts.append(f"the maths takes {fmt_time(maths)}" if maths > 0 else
                     f"the maths is not split out of the ops ({fmt_time(other)} in ops outside the "
                     "step's name scopes, e.g. XLA's fused kernels)" if other > 0 else
                     "no op time was measured inside the step")
    sentence = ", ".join(parts[:2]) + ("; " + "; ".join(parts[2:]) if len(parts) > 2 else "")
    if baseline is not None and baseline[0] != variant:
        b_name, b_res = baseline
        b_step = (b_res.get("step_ms") or {}).get("median")
        if b_step:
            sentence += f"; {b_name} does the whole step in {fmt_time(b_step)}"
            b_gflops = (b_res.get("gflops") or {}).get("compute")
            gflops = (results.get("gflops") or {}).get("compute")
            if (top in COMPUTE or maths >= 0.5 * step) and gflops and b_gflops:
                sentence += (f" at {b_gflops:.3g} GFLOP/s, so here the gap is kernel against "
                             f"kernel ({gflops / b_gflops:.2g}× {b_name}'s rate)")
    return sentence + "."


def explain_experiment(runs: list[tuple[str, Mapping[str, Any]]], baseline: str | None) -> list[str]:
    """Sentences for every run of an experiment that has a breakdown, baseline first."""
    base = next(((v, r) for v, r in runs if v == baseline), None)
    out = []
    for variant, results in runs:
        text = explain_run(variant, results, base)
        if text:
            out.append(text)
    return out

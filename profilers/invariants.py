"""The invariant checker: can the numbers of a run be true?

One place that asks, for every analysed run, the questions a careful reader would:

* the categories of ``breakdown_ms`` add up to the median step (±5 %);
* no per-step figure (a category, an overhead per step in a finding's evidence) exceeds
  the median step, unless its name says it is a profiler-window figure (``window``);
* ops × overhead per dispatch ≤ the step (dispatches × overhead per dispatch ≤ step);
* achieved GFLOP/s ≤ 1.1 × the measured peak;
* the user's own Python (stack-sampled) fits in the step's time outside TF ops
  (± ``SAMPLED_TOLERANCE`` of the step: it is sampled, the ops are traced);
* a measured counterfactual names a variant that really is faster;
* a recommendation never proposes what the run already is;
* findings are ranked by measured gain where there is one, then by severity and share.

``check(profile)`` returns the violations as ``[{"invariant", "message"}]``; the analysis
stores them in ``manifest["analysis"]["warnings"]`` (shown with the run, never silently),
and the tests apply the checker to every capture fixture and every run the suite makes.
Pure: no I/O. Must not import tensorflow, pynvml or streamlit.
"""
from __future__ import annotations

from typing import Any

#: What each variant already is, so a recommendation never proposes it.
VARIANT_TRAITS: dict[str, frozenset[str]] = {
    "tf_function": frozenset({"tf_function"}),
    "tf_xla": frozenset({"tf_function", "xla"}),
    "tf_graph_loop": frozenset({"tf_function", "whole_loop"}),
    "tf_graph_loop_xla": frozenset({"tf_function", "xla", "whole_loop"}),
    "keras_fit": frozenset({"tf_function"}),
    "mirrored": frozenset({"tf_function"}),
    "multi_worker": frozenset({"tf_function"}),
}


def traits(variant: str | None) -> frozenset[str]:
    return VARIANT_TRAITS.get(variant or "", frozenset())


SUM_TOLERANCE = 0.05
PEAK_SLACK = 1.1
#: A sampled share against traced times: ~100 samples give a few points of noise each way.
SAMPLED_TOLERANCE = 0.15
#: Categories that are TF's own op time on the step's path.
_OP_CATEGORIES = ("forward", "backward", "optimizer_update", "host_device_transfer")

#: Evidence keys that hold a per-step time in ms (checked against the median step).
_PER_STEP_MS_SUFFIX = "_ms_per_step"


def _v(name: str, message: str) -> dict[str, str]:
    return {"invariant": name, "message": message}


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x and abs(x) != float("inf")


def check_results(results: dict[str, Any]) -> list[dict[str, str]]:
    """The invariants of the facts alone (no findings)."""
    out: list[dict[str, str]] = []
    median = (results.get("step_ms") or {}).get("median")
    bms = results.get("breakdown_ms")
    if bms and _finite(median) and median > 0:
        total = sum(v for v in bms.values() if _finite(v))
        if abs(total - median) > SUM_TOLERANCE * median:
            out.append(_v("breakdown_sums_to_step", f"the categories add up to {total:.4g} ms, the median "
                                                    f"step is {median:.4g} ms"))
        for cat, ms in bms.items():
            if _finite(ms) and ms < -1e-9:
                out.append(_v("breakdown_non_negative", f"{cat} is negative ({ms:.4g} ms)"))
            if _finite(ms) and ms > median * (1 + 1e-6):
                out.append(_v("per_step_within_step", f"{cat} takes {ms:.4g} ms in a {median:.4g} ms step"))
    per = results.get("overhead_us_per_dispatch")
    calls = results.get("dispatches_per_step")
    if _finite(per) and _finite(calls) and _finite(median):
        if calls <= 0:
            out.append(_v("per_dispatch_needs_dispatches", "an overhead per dispatch with 0 dispatches per step"))
        elif per * calls / 1e3 > median * (1 + SUM_TOLERANCE):
            out.append(_v("dispatches_times_cost_within_step",
                          f"{calls:.3g} dispatches × {per:.3g} µs = {per * calls / 1e3:.4g} ms in a "
                          f"{median:.4g} ms step"))
    gflops = (results.get("gflops") or {}).get("compute")
    peak = results.get("gemm_peak_gflops")
    if _finite(gflops) and _finite(peak) and gflops > PEAK_SLACK * peak:
        out.append(_v("gflops_within_peak", f"achieved {gflops:.3g} GFLOP/s above {PEAK_SLACK}× the "
                                            f"measured peak {peak:.3g}"))
    user = results.get("user_python_ms_per_step")
    if bms and _finite(user) and _finite(median) and median > 0:
        ops = sum(bms.get(c) or 0.0 for c in _OP_CATEGORIES if _finite(bms.get(c)))
        if user > median - ops + SAMPLED_TOLERANCE * median:
            out.append(_v("user_python_outside_ops", f"{user:.4g} ms of the user's Python in a {median:.4g} ms "
                                                     f"step whose TF ops take {ops:.4g} ms"))
    for key in ("input_wait_share", "eager_share", "cpu_contention_share", "user_python_share"):
        share = results.get(key)
        if _finite(share) and not (-1e-9 <= share <= 1 + SUM_TOLERANCE):
            out.append(_v("share_in_unit_interval", f"{key} = {share:.4g}"))
    return out


def measured_gain(finding: dict[str, Any]) -> float | None:
    """The measured speed-up of a finding's fix, when one was measured and it is a gain: a
    faster variant of the same experiment, or a what-if rerun whose interval is above 1."""
    cf = finding.get("counterfactual") or {}
    if not cf.get("measured") or not _finite(cf.get("speedup")):
        return None
    if cf.get("source") == "whatif" and cf.get("verdict") != "faster":
        return None  # measured, and no measurable gain (or slower): nothing to rank by
    return float(cf["speedup"]) if cf["speedup"] > 1 else None



def check_findings(findings: list[dict[str, Any]], results: dict[str, Any], variant: str | None,
                   traits: frozenset[str], experiment: list[dict[str, Any]]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    median = (results.get("step_ms") or {}).get("median")
    medians = {r.get("variant"): r.get("median_ms") for r in experiment if r.get("status") == "ok"}
    for f in findings:
        rule = f.get("rule")
        for key, value in (f.get("evidence") or {}).items():
            if (key.endswith(_PER_STEP_MS_SUFFIX) and "window" not in key and _finite(value)
                    and _finite(median) and value > median * (1 + SUM_TOLERANCE)):
                out.append(_v("evidence_within_step", f"{rule}: {key} = {value:.4g} ms in a {median:.4g} ms step"))
        cf = f.get("counterfactual") or {}
        if cf.get("measured") and cf.get("source") == "whatif":
            lo = (cf.get("interval") or [None])[0]
            if cf.get("verdict") == "faster" and not (_finite(lo) and lo > 1):
                out.append(_v("counterfactual_is_faster",
                              f"{rule}: the what-if fix {cf.get('variant')} is called faster, but its "
                              f"interval starts at {lo}"))
        elif cf.get("measured"):
            other = medians.get(cf.get("variant"))
            if not (_finite(other) and _finite(median) and other < median):
                out.append(_v("counterfactual_is_faster",
                              f"{rule}: the measured fix {cf.get('variant')} ({other} ms) is not faster "
                              f"than this run ({median} ms)"))
            if cf.get("variant") == variant:
                out.append(_v("counterfactual_is_another_variant", f"{rule}: proposes the run's own variant"))
        proposed = set(f.get("fix_traits") or [])
        if proposed and proposed <= traits:
            out.append(_v("recommendation_not_already_done",
                          f"{rule}: recommends {', '.join(sorted(proposed))}, which {variant} already is"))
    gains = [measured_gain(f) for f in findings]
    measured = [g for g in gains if g is not None]
    if measured:
        first_unmeasured = next((i for i, g in enumerate(gains) if g is None), len(gains))
        if any(g is not None for g in gains[first_unmeasured:]):
            out.append(_v("findings_ranked_by_gain", "a finding with a measured gain comes after one without"))
        if measured != sorted(measured, reverse=True):
            out.append(_v("findings_ranked_by_gain", f"measured gains out of order: {measured}"))
    return out


def check(profile: Any) -> list[dict[str, str]]:
    """Every invariant over one analysed run (``RunProfile``)."""
    m = profile.manifest
    res = m.get("results") or {}
    ctx = (m.get("analysis") or {}).get("context") or {}
    return (check_results(res)
            + check_findings(profile.findings or [], res, m.get("variant"), traits(m.get("variant")),
                             list(ctx.get("experiment") or [])))

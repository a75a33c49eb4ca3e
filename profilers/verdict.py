"""The verdict: one sentence, built from the stored analysis, that answers the question
first. It says how much slower or faster a TensorFlow variant is than the baseline
(NumPy), the cause with its number, and the measured best fix with its gain; where
something was not measured it says so and names the run that would measure it.

Reads only what ``docs/ANALYSIS_CONTRACT.md`` stores (``manifest["results"]``,
``findings.json``); computes no statistics of its own. Pure: no I/O, no streamlit,
no tensorflow, no pynvml.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

#: How the verdict names a variant (others keep their own name).
LABELS: dict[str, str] = {
    "python": "pure Python", "numpy": "NumPy", "numpy_blas": "NumPy with BLAS axpy",
    "tf_eager": "TF eager", "tf_function": "tf.function", "tf_xla": "tf.function under XLA",
    "tf_graph_loop": "the whole loop in one graph", "tf_graph_loop_xla": "the whole loop under XLA",
    "keras_fit": "Keras fit", "mirrored": "MirroredStrategy", "multi_worker": "MultiWorkerMirroredStrategy",
}
#: Variants that count as TensorFlow (the subject of the question).
TF_PREFIXES = ("tf_", "keras", "mirrored", "multi_worker")
#: The fixes to offer, in order, when an experiment measured none.
FIX_VARIANTS = ("tf_function", "tf_xla", "tf_graph_loop_xla")
CATEGORY_WORDS: dict[str, str] = {
    "input_wait": "waiting for input", "forward": "the forward pass", "backward": "the backward pass",
    "optimizer_update": "the optimizer update", "framework_overhead": "framework overhead",
    "host_device_transfer": "host-device copies", "compile_trace": "tracing and compiling",
    "cpu_contention": "waiting for a CPU core", "other": "other work",
}


@dataclass
class Verdict:
    text: str
    #: Variants to run to measure what the verdict could not (empty when nothing is missing).
    suggest_variants: list[str] = field(default_factory=list)
    subject: str | None = None


def label(variant: str | None) -> str:
    return LABELS.get(variant or "", variant or "this variant")


def is_tf(variant: str | None) -> bool:
    return bool(variant) and str(variant).startswith(TF_PREFIXES)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def median_ms(manifest: Mapping[str, Any]) -> float | None:
    if manifest.get("status") != "ok":
        return None
    v = _num(((manifest.get("results") or {}).get("step_ms") or {}).get("median"))
    return v if v and v > 0 else None


def ratio_text(ms: float, base_ms: float, baseline: str) -> str:
    """``"113× slower than NumPy"`` / ``"3.3× faster than NumPy"``."""
    r = ms / base_ms
    word, r = ("slower", r) if r >= 1 else ("faster", 1 / r)
    return f"{times(r)} {word} than {label(baseline)}"


def times(r: float) -> str:
    """``"113×"``, ``"19.7×"``, ``"3.3×"``, ``"1.05×"``."""
    return f"{r:,.0f}×" if r >= 100 else f"{r:.2f}×" if r < 1.1 else f"{r:.1f}×"


def duration(ms: float) -> str:
    us = ms * 1000
    if us < 1000:
        return f"{us:.3g} µs"
    return f"{ms:.3g} ms"


def cause(results: Mapping[str, Any], base_ms: float | None) -> str | None:
    """The cause with its number, from the stored facts (None when none was stored)."""
    bd = {k: _num(v) for k, v in (results.get("breakdown_ms") or {}).items()}
    bd = {k: v for k, v in bd.items() if v is not None and v > 0}
    per_dispatch = _num(results.get("overhead_us_per_dispatch"))
    dispatches = _num(results.get("dispatches_per_step"))
    against = f" against {duration(base_ms)} for NumPy's whole step" if base_ms else ""
    user = _num(results.get("user_python_ms_per_step"))
    if user and bd.get("framework_overhead") and user >= 0.5 * bd["framework_overhead"]:
        where = (results.get("user_python_where") or [{}])[0].get("where")
        return (f"{duration(user)} of each step is your own Python" + (f", mostly {where}" if where else "")
                + f", of {duration(bd['framework_overhead'])} of host time outside ops")
    if per_dispatch and dispatches and bd.get("framework_overhead"):
        return (f"{per_dispatch:.0f} µs of fixed cost per dispatch × {dispatches:.0f} dispatches "
                f"= {duration(bd['framework_overhead'])} of framework overhead per step{against}")
    wait = _num(results.get("input_wait_share"))
    if wait is not None and wait >= 0.3:
        return f"{wait:.0%} of each step is spent waiting for input"
    if not bd:
        return None
    top = max(bd, key=lambda k: bd[k])
    total = sum(bd.values())
    return (f"its largest cost is {CATEGORY_WORDS.get(top, top)}, {duration(bd[top])} "
            f"({bd[top] / total:.0%}) of a {duration(total)} step{against}")


def _unmeasured_cause(results: Mapping[str, Any]) -> str:
    reasons = results.get("unavailable") or {}
    reason = reasons.get("breakdown_ms") or reasons.get("overhead_us_per_dispatch")
    return "the cause was not measured" + (f" ({reason})" if reason else "")


def experiment_verdict(manifests: Sequence[Mapping[str, Any]],
                       findings: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                       subject: str | None = None, baseline: str | None = None,
                       usable_variants: Sequence[str] = ()) -> Verdict:
    """The verdict on one experiment (its runs' manifests, in launch order).

    ``subject``: the variant the sentence is about (default: the first TF variant that
    finished); ``findings``: ``{run_id: findings}`` (their measured counterfactuals);
    ``usable_variants``: what could run here, to offer the run that would measure a fix."""
    findings = findings or {}
    runs = {str(m.get("variant")): m for m in manifests}
    baseline = baseline or next((str((m.get("results") or {}).get("baseline_variant"))
                                 for m in manifests if (m.get("results") or {}).get("baseline_variant")), "numpy")
    tf_ok = [v for v, m in runs.items() if is_tf(v) and median_ms(m)]
    if subject is None:
        subject = tf_ok[0] if tf_ok else None
    if subject is None:
        missing = [v for v in ("tf_eager", "tf_function") if v in usable_variants]
        if not missing and not any(is_tf(v) for v in runs):
            return _no_tf_verdict(runs, baseline)
        failed = [v for v, m in runs.items() if is_tf(v) and m.get("status") != "ok"]
        why = (f"{', '.join(failed)} did not finish" if failed else "no TensorFlow variant ran here")
        return Verdict(f"No TensorFlow step time was measured: {why}. Run {', '.join(missing)} "
                       f"beside {baseline} to compare.", suggest_variants=[baseline, *missing])
    sub = runs[subject]
    sub_ms, base_ms = median_ms(sub), median_ms(runs.get(baseline, {}))
    if sub_ms is None:
        return Verdict(f"{label(subject)} did not finish ({sub.get('status')}: "
                       f"{sub.get('error') or 'no reason recorded'}), so it has no step time.", subject=subject)
    if base_ms is None:
        return Verdict(f"{label(subject)} takes {duration(sub_ms)} a step; there is no finished {label(baseline)} "
                       f"run to compare with: run {baseline} beside it.", [baseline, subject], subject)
    head = f"{label(subject)} is {ratio_text(sub_ms, base_ms, baseline)} here"
    why = cause(sub.get("results") or {}, base_ms) or _unmeasured_cause(sub.get("results") or {})
    text = f"{head}: {why}. {best_fix(runs, subject, baseline, base_ms, sub_ms, findings, usable_variants)}"
    found = _measured_fix(runs, subject, findings)
    suggest = _suggest(runs, subject, baseline, usable_variants)
    if found is not None and found[1] > base_ms and suggest:
        text += f" Not measured yet: {', '.join(label(v) for v in suggest[2:])} (run {', '.join(suggest[2:])})."
    elif found is not None:
        suggest = []
    return Verdict(text, subject=subject, suggest_variants=suggest)


def _no_tf_verdict(runs: Mapping[str, Mapping[str, Any]], baseline: str) -> Verdict:
    """A workload without TensorFlow variants: the fastest variant against the baseline."""
    timed = {v: median_ms(m) for v, m in runs.items() if median_ms(m)}
    base_ms = timed.get(baseline)
    if not timed:
        return Verdict("No variant of this experiment has a measured step time.")
    best = min(timed, key=lambda v: timed[v])  # type: ignore[arg-type,return-value]
    if base_ms is None:
        return Verdict(f"{label(best)} has the fastest step, {duration(timed[best])} (no finished {label(baseline)} "
                       "run to compare with).")
    if best == baseline:
        return Verdict(f"{label(baseline)} (the baseline) has the fastest step here, {duration(base_ms)}: "
                       "no variant measured beats it.")
    return Verdict(f"{label(best)} is {ratio_text(timed[best], base_ms, baseline)} here "
                   f"({duration(timed[best])} against {duration(base_ms)} per step), the fastest variant measured.")


def _measured_fix(runs: Mapping[str, Mapping[str, Any]], subject: str,
                  findings: Mapping[str, Sequence[Mapping[str, Any]]]) -> tuple[str, float] | None:
    """The fastest other TF variant measured in this experiment (or a measured
    counterfactual of the subject's findings), with its median ms."""
    options = {v: median_ms(m) for v, m in runs.items() if v != subject and is_tf(v)}
    for f in findings.get(str(runs[subject].get("run_id")), ()):
        cf = f.get("counterfactual") or {}
        ms = _num(cf.get("median_ms"))
        if cf.get("measured") and ms and is_tf(cf.get("variant")) and cf.get("variant") != subject:
            options.setdefault(str(cf["variant"]), ms)
    options = {v: ms for v, ms in options.items() if ms}
    if not options:
        return None
    best = min(options, key=lambda v: options[v])  # type: ignore[arg-type,return-value]
    return best, float(options[best])  # type: ignore[arg-type]


def _suggest(runs: Mapping[str, Any], subject: str, baseline: str, usable: Sequence[str]) -> list[str]:
    fixes = [v for v in FIX_VARIANTS if v not in runs and (not usable or v in usable)]
    return [baseline, subject, *fixes] if fixes else []


def best_fix(runs: Mapping[str, Mapping[str, Any]], subject: str, baseline: str, base_ms: float,
             sub_ms: float, findings: Mapping[str, Sequence[Mapping[str, Any]]],
             usable: Sequence[str] = ()) -> str:
    found = _measured_fix(runs, subject, findings)
    if found is None:
        fixes = _suggest(runs, subject, baseline, usable)
        if not fixes:
            return "No fix was measured here."
        return (f"No fix was measured here: run {', '.join(fixes)} together to measure "
                f"{' and '.join(label(v) for v in fixes[2:])}.")
    variant, ms = found
    if ms >= sub_ms:
        return f"Nothing measured here beats it: the next best, {label(variant)}, is {ratio_text(ms, base_ms, baseline)}."
    gain = sub_ms / ms
    tail = ratio_text(ms, base_ms, baseline)
    if ms > base_ms:
        tail += ", so at this size NumPy still wins (the Sweep page shows where TF catches up)"
    return f"Measured best fix: {label(variant)}, {times(gain)} faster than {label(subject)} and {tail}."


def for_profiles(profiles: Sequence[Any], subject: str | None = None, baseline: str | None = None,
                 usable_variants: Sequence[str] = ()) -> Verdict:
    """``experiment_verdict`` over loaded ``RunProfile``s (their manifests and findings)."""
    return experiment_verdict([p.manifest for p in profiles],
                              {str(p.manifest.get("run_id")): p.findings for p in profiles},
                              subject=subject, baseline=baseline, usable_variants=usable_variants)

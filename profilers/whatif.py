"""What-if on the user's own script (``sgdscope whatif``): each fix measured, not advised.

The script is profiled as is (the *original* run, whose findings choose the fixes), then
the baseline and each fix (``profilers.fixes``, applied from outside the script inside
the worker) are run ``repeat`` times, interleaved round by round, each in its own
supervised worker (``profilers.session.launch(spec, store, kind="script")``) with the same
step window and skip. Then:

- the gain of a fix is the ratio of median step times (baseline / fix), per baseline step
  where a fix changes how much one step does (``step_scale``), with an interval that is the
  wider of a two-level bootstrap (runs, then steps within runs) and a t interval on the
  runs' log trimmed-mean step times with the run-to-run variance pooled over every arm,
  so drift between runs widens it; an interval that includes 1.0, or
  a gain under ``MIN_EFFECT``, is "no measurable gain";
- the loss check compares final losses (Keras fit's logged loss, or the scalar a custom
  loop's ``tf.function`` step returns, kept by ``fixes.OBSERVE_LOSS`` in every run): "same",
  "changes the maths", or "not checkable" with the reason;
- the fixes that gain without changing the maths are measured together (the combination);
- every measured run is relabelled into one experiment (``manifest["whatif"]``), and each
  finding of the original run whose fix was measured gains ``counterfactual.measured``.

Pure statistics (``gain_interval``, ``loss_check``) are separate from the orchestration.
Must not import tensorflow, pynvml or streamlit.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from profilers import fixes as fx
from profilers.errors import BadInput, CaptureFailed
from profilers.model import RunProfile
from profilers.registry import lookup
from profilers.store import RunStore, new_id

#: Finding rule -> fixes to try, best first (the issue's mapping).
RULE_FIXES: dict[str, tuple[str, ...]] = {
    "compilation": (),
    "eager_execution": ("run_eagerly_false", "steps_per_execution"),
    "framework_overhead": ("steps_per_execution", "jit_compile"),
    "input_bound": ("prefetch", "parallel_map", "data_options"),
    "retracing": ("reduce_retracing",),
    "small_problem": ("steps_per_execution", "jit_compile"),
    "thread_config": ("threads",),
}
#: Tried when no finding names a fix: the ones that never change the maths and cost little.
DEFAULT_FIXES = ("prefetch", "parallel_map", "reduce_retracing")
#: Smallest gain reported as a gain: separate worker processes on a shared machine differ
#: by a few percent for reasons no fix controls.
MIN_EFFECT = 0.05
LOSS_RTOL = 1e-3
BOOTSTRAP = 2000
LEVEL = 0.95
BASELINE = "baseline"
COMBINATION = "combination"

Progress = Callable[[str], None]


# -- statistics (pure) --------------------------------------------------------------------------
def step_samples_ms(profile: RunProfile) -> np.ndarray:
    """Measured (non-warm-up) step times of a run in ms, per baseline step: divided by the
    run's ``step_scale`` (steps_per_execution, a larger batch)."""
    steps = profile.tables.get("steps")
    if steps is None or steps.empty:
        return np.zeros(0)
    wall = steps.loc[~steps["warmup"].astype(bool), "wall_us"].to_numpy(dtype=float) / 1e3
    scale = float(((profile.manifest.get("script") or {}).get("fixes") or {}).get("step_scale") or 1.0)
    return wall[np.isfinite(wall) & (wall > 0)] / scale


def gain_interval(base_runs: list[np.ndarray], fix_runs: list[np.ndarray], *, n: int = BOOTSTRAP,
                  level: float = LEVEL, seed: int = 0,
                  noise: tuple[float, int] | None = None) -> tuple[float, float, float]:
    """(gain, lo, hi): gain = median(baseline steps) / median(fix steps), pooled over runs.

    The interval is the wider of two: a two-level bootstrap of that ratio (runs with
    replacement, then steps within each: the spread of the steps) and a t interval on the
    runs' log ``run_level`` step times (the spread between runs: separate processes on a
    busy machine drift, and with few runs a bootstrap cannot see that). ``noise`` =
    (variance, degrees of freedom) of a run's log level, pooled over every arm of the
    what-if (``run_noise``); by default pooled over these two arms."""
    base_runs = [r for r in base_runs if len(r)]
    fix_runs = [r for r in fix_runs if len(r)]
    if not base_runs or not fix_runs:
        raise CaptureFailed("A what-if arm has no measured steps.",
                            "Check that the script runs more than --skip-steps steps.")
    gain = float(np.median(np.concatenate(base_runs)) / np.median(np.concatenate(fix_runs)))
    rng = np.random.default_rng(seed)

    def draw(runs: list[np.ndarray]) -> float:
        picked = rng.integers(0, len(runs), len(runs))
        return float(np.median(np.concatenate([runs[i][rng.integers(0, len(runs[i]), len(runs[i]))]
                                               for i in picked])))

    ratios = np.array([draw(base_runs) / draw(fix_runs) for _ in range(n)])
    lo, hi = (float(v) for v in np.quantile(ratios, [(1 - level) / 2, 1 - (1 - level) / 2]))
    t_lo, t_hi = between_runs_interval(base_runs, fix_runs, level, noise or run_noise([base_runs, fix_runs]))
    return gain, min(lo, t_lo), max(hi, t_hi)


def run_level(steps_ms: np.ndarray) -> float:
    """One run's step time for the between-run spread: the 10%-trimmed mean. A pipelined
    input makes step times bimodal (a batch ready, or not), and a run's median then jumps
    between the two modes from run to run although its throughput does not; the trimmed
    mean follows the throughput and still ignores outlier steps."""
    from scipy import stats

    return float(stats.trim_mean(steps_ms, 0.1))


def run_noise(arms: list[list[np.ndarray]]) -> tuple[float, int] | None:
    """(variance, df) of a run's log ``run_level`` around its arm's mean, pooled over the
    arms with two runs or more; None when no arm has two."""
    ss, df = 0.0, 0
    for runs in arms:
        logs = np.log([run_level(r) for r in runs if len(r)])
        if len(logs) >= 2:
            ss += float(((logs - logs.mean()) ** 2).sum())
            df += len(logs) - 1
    return (ss / df, df) if df else None


def between_runs_interval(base_runs: list[np.ndarray], fix_runs: list[np.ndarray], level: float,
                          noise: tuple[float, int] | None) -> tuple[float, float]:
    """t interval of exp(mean log level(base run) - mean log level(fix run)) with the
    pooled run-to-run ``noise``; (inf, -inf), i.e. no constraint, without one."""
    from scipy import stats

    if noise is None:
        return float("inf"), float("-inf")
    var, df = noise
    b = np.log([run_level(r) for r in base_runs])
    f = np.log([run_level(r) for r in fix_runs])
    diff = float(b.mean() - f.mean())
    se = float(np.sqrt(var * (1 / len(b) + 1 / len(f))))
    t = float(stats.t.ppf(1 - (1 - level) / 2, df))
    return float(np.exp(diff - t * se)), float(np.exp(diff + t * se))


def verdict(gain: float, lo: float, hi: float) -> tuple[str, str]:
    """("faster" | "slower" | "no measurable gain", words)."""
    span = f"{gain:.2f}x ({LEVEL:.0%} interval {lo:.2f}-{hi:.2f}x)"
    if lo > 1.0 and gain >= 1 + MIN_EFFECT:
        return "faster", f"{span} faster"
    if hi < 1.0 and gain <= 1 / (1 + MIN_EFFECT):
        return "slower", f"{span}: slower"
    why = "the interval includes 1.0" if lo <= 1.0 <= hi else f"under the {MIN_EFFECT:.0%} a separate run resolves"
    return "no measurable gain", f"no measurable gain: {span}, {why}"


def final_losses(runs: list[RunProfile]) -> list[float]:
    """Each run's final loss: Keras fit's logged one, else the last scalar a custom loop's
    ``tf.function`` step returned (``fixes.OBSERVE_LOSS``); runs with neither are left out."""
    out = []
    for p in runs:
        v = (p.manifest.get("results") or {}).get("final_loss")
        if v is None:
            v = ((_fix_report(p, fx.OBSERVE_LOSS).get("details")) or {}).get("final_loss")
        if v is not None and np.isfinite(v):
            out.append(float(v))
    return out


def loss_check(base: list[float], fixed: list[float], *, n_base_runs: int, n_fix_runs: int,
               declared_maths: bool) -> dict[str, Any]:
    """``{"status": "same" | "changes the maths" | "not checkable", "detail"}`` from the final
    losses of the runs that have one (``n_*_runs``: how many runs there were)."""
    if not base or len(fixed) < n_fix_runs:
        detail = ("the script's losses are not observed (sgdscope sees Keras fit's logged loss, or the "
                  "scalar a custom loop's tf.function step returns; this script shows neither)")
        if declared_maths:
            return {"status": "changes the maths", "detail": f"by design; {detail}"}
        return {"status": "not checkable", "detail": detail}
    ref = float(np.median(base))
    scale = max(abs(ref), 1e-12)
    spread = (max(base) - min(base)) / scale
    if spread > 1e-2:
        return {"status": "not checkable",
                "detail": f"the baseline's own final losses differ by {spread:.1%} between runs "
                          "(unseeded randomness?), so a fix's effect on the loss cannot be told apart"}
    tol = max(LOSS_RTOL, 2 * spread)
    diff = abs(float(np.median(fixed)) - ref) / scale
    words = f"final loss {np.median(fixed):.6g} vs {ref:.6g} (relative difference {diff:.2e}, tolerance {tol:.0e})"
    if diff <= tol and not declared_maths:
        return {"status": "same", "detail": words}
    if declared_maths and diff <= tol:
        return {"status": "changes the maths", "detail": f"by design, although {words}"}
    return {"status": "changes the maths", "detail": words}


def choose_fixes(findings: list[dict[str, Any]]) -> tuple[list[str], dict[str, list[str]], str]:
    """(fixes, {fix: [rules]}, how chosen) from the original run's findings."""
    chosen: dict[str, list[str]] = {}
    for f in findings:
        for name in RULE_FIXES.get(f.get("rule", ""), ()):
            chosen.setdefault(name, []).append(f["rule"])
    if chosen:
        return list(chosen), chosen, "findings"
    return list(DEFAULT_FIXES), {}, "default (no finding named a fix)"


def rank_key(row: dict[str, Any]) -> tuple:
    order = {"faster": 0, "no measurable gain": 1, "slower": 2}
    return (order.get(row.get("verdict") or "", 3), bool(row.get("maths_changed")), -(row.get("gain") or 0.0))


# -- orchestration ----------------------------------------------------------------------------
class _Runner:
    def __init__(self, store: RunStore, base_spec: Any, progress: Progress, wait: Callable[[Any], Any]) -> None:
        self.store, self.base_spec, self.progress, self.wait = store, base_spec, progress, wait
        self.count = 0

    def run(self, fixes: list[str], label: str) -> RunProfile:
        from profilers.session import launch

        spec = dataclasses.replace(self.base_spec, experiment_id="",
                                   params={**self.base_spec.params, "fixes": [*fixes, fx.OBSERVE_LOSS]})
        self.count += 1
        self.progress(f"run {self.count}: {label}")
        handle = launch(spec, self.store, kind="script")
        state = self.wait(handle)
        if state.get("status") == "cancelled":
            raise CaptureFailed("The what-if was cancelled.", "Runs measured so far are stored.")
        runs = self.store.experiment_runs(handle.experiment_id)
        if not runs:
            raise CaptureFailed(f"The run {label} stored nothing: {state.get('error')}.",
                                f"See {handle.exp_dir}/supervisor.log.")
        return runs[0]


def _user_source(profile: RunProfile) -> str:
    script = profile.manifest.get("script") or {}
    files = [script.get("path"), *((script.get("scan") or {}).get("files") or [])]
    return "\n".join(fx._read(f) for f in dict.fromkeys(filter(None, files)))


def _fix_report(profile: RunProfile, name: str) -> dict[str, Any]:
    return (((profile.manifest.get("script") or {}).get("fixes") or {}).get("fixes") or {}).get(name) or {}


def run_whatif(store: RunStore, base_spec: Any, *, fixes: list[str] | None = None, repeat: int = 3,
               original: RunProfile | None = None, progress: Progress = lambda s: None,
               wait: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """Measure each fix on the script of ``base_spec`` (``cli_triage.make_spec``); see the
    module docstring. ``original``: an already stored plain profile of the script."""
    if repeat < 2:
        raise BadInput(f"--repeat must be at least 2 (got {repeat}).",
                       "The interval needs more than one run of each arm to see run-to-run noise.")
    for name in fixes or []:
        lookup(fx.FIXES, name, "fix")
    runner = _Runner(store, base_spec, progress, wait or (lambda h: h.wait()))
    if original is None:
        original = runner.run([], f"{BASELINE} (round 1: the original profile)")
    if original.manifest.get("status") != "ok":
        raise CaptureFailed(f"The script's own run failed: {original.manifest.get('error')}.",
                            f"Fix the script first; its output is in {original.run_dir}/logs/.")
    findings = list(original.findings or [])
    if fixes:
        chosen, by_rule, how = list(dict.fromkeys(fixes)), {}, "--fix"
    else:
        chosen, by_rule, how = choose_fixes(findings)
    source = _user_source(original)
    uses_tf = ((original.manifest.get("script") or {}).get("scan") or {}).get("uses_tf", True)
    arms: dict[str, list[RunProfile]] = {BASELINE: [original]}
    rows: dict[str, dict[str, Any]] = {}
    active: list[str] = []
    for name in chosen:
        fix = fx.FIXES[name]
        rows[name] = {"fix": name, "changes": fix.changes, "changes_maths": fix.changes_maths,
                      "for_findings": by_rule.get(name, []), "applied": None, "reason": None, "runs": []}
        reason = fix.static_reason(source) if uses_tf else "the script does not use TensorFlow"
        if reason:
            rows[name].update(applied=False, reason=reason)
        else:
            active.append(name)
            arms[name] = []
    for rnd in range(1, repeat + 1):
        if rnd > 1:
            arms[BASELINE].append(runner.run([], f"{BASELINE} (round {rnd})"))
        for name in list(active):
            run = runner.run([name], f"{name} (round {rnd})")
            arms[name].append(run)
            rep = _fix_report(run, name)
            if run.manifest.get("status") != "ok":
                active.remove(name)
                rows[name].update(applied=False, reason=f"the script failed with this fix: {run.manifest.get('error')}")
            elif not rep.get("applied"):
                active.remove(name)
                rows[name].update(applied=False, reason=rep.get("reason") or "it changed nothing")
            else:
                rows[name]["applied"] = True
    base_samples = [step_samples_ms(p) for p in arms[BASELINE]]
    noise = run_noise([[step_samples_ms(p) for p in arms[a]] for a in [BASELINE, *active]])
    base_losses = final_losses(arms[BASELINE])
    script_path = (original.manifest.get("script") or {}).get("path") or base_spec.params["script"]
    for name in active:
        _measure(rows[name], arms[name], base_samples, base_losses, len(arms[BASELINE]), script_path, noise)
    combo = None
    winners = [n for n in active if rows[n].get("verdict") == "faster" and not rows[n]["maths_changed"]]
    if len(winners) >= 2:
        combo_runs = [runner.run(winners, f"{COMBINATION} {'+'.join(winners)} (round {k})")
                      for k in range(1, repeat + 1)]
        arms[COMBINATION] = combo_runs
        combo = {"fix": COMBINATION, "fixes": winners, "changes": "; ".join(fx.FIXES[n].changes for n in winners),
                 "changes_maths": False, "applied": all(r.manifest.get("status") == "ok" for r in combo_runs),
                 "reason": None, "runs": [], "for_findings": []}
        if combo["applied"]:
            _measure(combo, combo_runs, base_samples, base_losses, len(arms[BASELINE]), script_path, noise)
        else:
            combo["reason"] = "the script failed with the fixes together"
    ranked = sorted(rows.values(), key=rank_key)
    for i, row in enumerate(ranked, 1):
        row["rank"] = i
    wid = new_id("whatif", str(base_spec.variants[0]))
    _relabel(store, wid, base_spec.variants[0], arms)
    base_median = float(np.median(np.concatenate([s for s in base_samples if len(s)]))) if any(
        len(s) for s in base_samples) else None
    best = next((r for r in ranked if r.get("verdict") == "faster"), None)
    doc = {"whatif_id": wid, "experiment_id": wid, "script": script_path, "original_run_id": original.run_id,
           "repeat": repeat, "chosen_from": how, "min_effect": MIN_EFFECT, "level": LEVEL,
           "baseline": {"median_ms": base_median, "runs": [p.run_id for p in arms[BASELINE]],
                        "final_loss": float(np.median(base_losses)) if base_losses else None},
           "fixes": ranked, "combination": combo, "summary": summarize(ranked, combo, best)}
    original = store.load(original.run_id)
    original.findings = annotate_findings(original.findings or [], ranked, combo)
    original.manifest["whatif"]["result"] = doc  # what the Triage page shows
    store.update(original)
    return {**doc, "findings": original.findings}


def result_frame(result: dict[str, Any]) -> Any:
    """One row per measured arm of a stored what-if (``manifest["whatif"]["result"]``):
    ``arm, median_ms, lo_ms, hi_ms, gain_text, verdict, loss_check`` with the step-time
    interval derived from the gain's (baseline median / gain bounds). Empty when nothing
    was measured."""
    import pandas as pd

    base = (result.get("baseline") or {}).get("median_ms")
    rows = []
    if base is not None:
        rows.append({"arm": "baseline", "median_ms": base, "lo_ms": base, "hi_ms": base,
                     "gain_text": "1.00x", "verdict": "baseline", "loss_check": ""})
    for r in list(result.get("fixes") or []) + ([result["combination"]] if result.get("combination") else []):
        if r.get("gain") is None or base is None:
            continue
        lo, hi = r["interval"]
        name = r["fix"] if r["fix"] != COMBINATION else "+".join(r["fixes"])
        rows.append({"arm": name + (" (changes the maths)" if r.get("maths_changed") else ""),
                     "median_ms": float(r["median_ms"]), "lo_ms": base / hi, "hi_ms": base / lo,
                     "gain_text": f"{r['gain']:.2f}x [{lo:.2f}-{hi:.2f}]", "verdict": r["verdict"],
                     "loss_check": (r.get("loss_check") or {}).get("status", "")})
    return pd.DataFrame(rows, columns=["arm", "median_ms", "lo_ms", "hi_ms", "gain_text", "verdict", "loss_check"])


def _measure(row: dict[str, Any], runs: list[RunProfile], base_samples: list[np.ndarray],
             base_losses: list[float], n_base: int, script_path: str,
             noise: tuple[float, int] | None) -> None:
    samples = [step_samples_ms(p) for p in runs]
    gain, lo, hi = gain_interval(base_samples, samples, noise=noise)
    v, words = verdict(gain, lo, hi)
    rep = _fix_report(runs[0], row["fix"]) if row["fix"] != COMBINATION else {}
    check = loss_check(base_losses, final_losses(runs), n_base_runs=n_base, n_fix_runs=len(runs),
                       declared_maths=row["changes_maths"])
    median = float(np.median(np.concatenate([s for s in samples if len(s)])))
    row.update(runs=[p.run_id for p in runs], median_ms=median, gain=gain, interval=[lo, hi], verdict=v,
               verdict_text=words, loss_check=check, maths_changed=check["status"] == "changes the maths",
               step_unit=(rep.get("details") or {}).get("step_unit"),
               details=rep.get("details") or {}, notes=rep.get("notes") or [])
    if row["fix"] == COMBINATION:
        texts = [fx.code_diff(n, _fix_report(runs[0], n), script_path) for n in row["fixes"]]
        row["diff"] = "".join(t for t in texts if t) or None
    else:
        row["diff"] = fx.code_diff(row["fix"], rep, script_path)
    batch = (rep.get("details") or {}).get("batch_before")
    if batch:
        row["ms_per_sample"] = median / batch  # per baseline step of `batch` samples


def _relabel(store: RunStore, wid: str, variant: str, arms: dict[str, list[RunProfile]]) -> None:
    """Every measured run becomes a run of experiment ``wid`` (Compare, Diff and bundles)."""
    order = 0
    for arm, runs in arms.items():
        for k, p in enumerate(runs, 1):
            p = store.load(p.run_id)
            m = p.manifest
            m["whatif"] = {"experiment_id": wid, "arm": arm, "round": k,
                           "launched_as": m.get("experiment_id"), "fixes": [] if arm == BASELINE else
                           [f for f in ((m.get("script") or {}).get("fixes") or {}).get("requested", [])
                            if f in fx.FIXES]}
            m["experiment_id"] = wid
            m["variant"] = f"{variant}.r{k}" if arm == BASELINE else f"{variant}+{arm}.r{k}"
            m["order"] = order
            order += 1
            store.update(p)


def annotate_findings(findings: list[dict[str, Any]], ranked: list[dict[str, Any]],
                      combo: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each finding whose fix was measured gets ``counterfactual`` with ``measured: true``."""
    measured = [r for r in ranked if r.get("gain") is not None]
    out = []
    for f in findings:
        f = dict(f)
        names = RULE_FIXES.get(f.get("rule", ""), ())
        cands = [r for r in measured if r["fix"] in names]
        if cands:
            r = sorted(cands, key=rank_key)[0]
            lo, hi = r["interval"]
            f["counterfactual"] = {"variant": r["fix"], "run_id": r["runs"][0], "median_ms": r["median_ms"],
                                   "speedup": r["gain"], "interval": [lo, hi], "verdict": r["verdict"],
                                   "measured": True, "source": "whatif",
                                   "text": f"measured by what-if: {r['fix']}: {r['verdict_text']}"}
        out.append(f)
    return out


def summarize(ranked: list[dict[str, Any]], combo: dict[str, Any] | None, best: dict[str, Any] | None) -> str:
    if best is None:
        tried = [r["fix"] for r in ranked if r.get("applied")]
        if not tried:
            return "No fix applied to this script (see each fix's reason)."
        slower = [f"{r['fix']} ({r['verdict_text']})" for r in ranked if r.get("verdict") == "slower"]
        return (f"No measurable gain for any fix ({', '.join(tried)})."
                + (f" Slower: {'; '.join(slower)}." if slower else ""))
    text = f"Best fix: {best['fix']}, {best['verdict_text']}."
    if best.get("maths_changed"):
        text += " It changes the maths (see the loss check)."
    if combo and combo.get("gain") is not None:
        text += f" Together ({'+'.join(combo['fixes'])}): {combo['verdict_text']}."
    return text

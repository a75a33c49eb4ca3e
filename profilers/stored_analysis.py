"""The analysis at the store's edge: when a run is stored, and when it is asked for.

* ``analyse_before_commit(profile, store)``: the worker, the script worker and attach call
  it on a staged run, so ``findings.json`` and the facts are there right after ``run``.
  An analysis that fails never loses the measured run: the error is recorded as an
  analysis warning with the run.
* ``rejudge_experiment(store, experiment_id)``: when an experiment ends, every run's
  findings are judged again with the whole experiment as context (a variant stored early
  could not yet see the faster ones stored after it). Only ``judge`` runs: no trace is
  read again.
* ``current_analysis(store, profile)``: what ``sgdscope analyze`` shows: the stored
  analysis when its version is current, else a fresh one (stored back when the run is in
  the store).

The experiment context a run was judged with is stored with it, so a run imported alone
into another store judges exactly as it did at home.
Must not import tensorflow, pynvml or streamlit.
"""
from __future__ import annotations

import math
from typing import Any

from profilers import analysis
from profilers.errors import SgdscopeError
from profilers.model import RunProfile


def workload_variants(profile: RunProfile) -> list[str] | None:
    """The variants of the run's workload (None for a script or an unknown workload)."""
    if profile.manifest.get("source", "workload") != "workload":
        return None
    from workloads import WORKLOADS

    wl = WORKLOADS.get(profile.manifest.get("workload") or "")
    return sorted(wl.variants) if wl is not None else None


def experiment_context(store: Any, profile: RunProfile, listing: Any = None) -> dict[str, Any] | None:
    """The other runs of the run's experiment, as the store has them now, merged over the
    context stored with the run (runs the store lacks keep their stored summary), and the
    variants its workload has. ``listing`` is ``store.list()`` when the caller has it."""
    exp = profile.manifest.get("experiment_id")
    stored_ctx = (profile.manifest.get("analysis") or {}).get("context") or {}
    stored = stored_ctx.get("experiment") or []
    variants = workload_variants(profile) or stored_ctx.get("variants")
    if not exp or store is None:
        return {"experiment": list(stored), "variants": variants} if (stored or variants) else None
    df = store.list() if listing is None else listing
    rows = df[(df["experiment_id"] == exp) & (df["status"] != "damaged")]
    here = {}
    for r in rows.itertuples():
        if r.run_id == profile.run_id:
            continue
        med = None if r.median_ms is None or (isinstance(r.median_ms, float) and math.isnan(r.median_ms)) \
            else float(r.median_ms)
        here[r.run_id] = {"variant": r.variant, "status": r.status, "run_id": r.run_id, "median_ms": med}
    merged = {d.get("run_id"): d for d in stored if d.get("run_id") != profile.run_id}
    merged.update(here)
    return {"experiment": sorted(merged.values(), key=lambda d: str(d.get("variant"))), "variants": variants}


def _record_failure(profile: RunProfile, exc: BaseException) -> None:
    m = profile.manifest
    m["analysis"] = {"version": analysis.ANALYSIS_VERSION, "context": {"experiment": []},
                     "warnings": [{"invariant": "analysis_failed",
                                   "message": f"the analysis failed: {type(exc).__name__}: {exc}"}]}
    profile.findings = []


def analyse_before_commit(profile: RunProfile, store: Any) -> None:
    """Analyse a staged run in place (before ``store.commit``). Only ``ok`` runs have facts
    to derive; a failed run is judged on what it has (usually nothing)."""
    try:
        if profile.manifest.get("status") == "ok":
            analysis.derive(profile)
        analysis.judge(profile, experiment_context(store, profile))
    except (SgdscopeError, ValueError, KeyError, TypeError, IndexError, AttributeError, ArithmeticError) as exc:
        # The measured run is worth more than its analysis: keep it, say what failed.
        _record_failure(profile, exc)


def rejudge_experiment(store: Any, experiment_id: str) -> int:
    """Judge every run of an experiment again with the whole experiment as context; returns
    how many runs were rewritten."""
    n = 0
    listing = store.list()  # once: every run's context comes from the same listing
    for profile in store.experiment_runs(experiment_id):
        before = (profile.findings, (profile.manifest.get("analysis") or {}).get("context"))
        analysis.judge(profile, experiment_context(store, profile, listing))
        after = (profile.findings, profile.manifest["analysis"]["context"])
        if before != after:
            store.update(profile)
            n += 1
    return n


def current_analysis(store: Any, profile: RunProfile, *, recompute: bool = False) -> RunProfile:
    """The run with a current analysis: stored as is, or derived again (for another
    analysis version, or ``recompute``) and stored back when the run is in ``store``."""
    if analysis.is_current(profile.manifest) and not recompute:
        return profile
    if profile.manifest.get("status") == "ok":
        analysis.derive(profile)
    analysis.judge(profile, experiment_context(store, profile))
    if store is not None and profile.run_dir is not None:
        store.update(profile)
    return profile

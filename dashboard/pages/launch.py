"""Launch page: pick a workload, its variants and params (a param shows only when a chosen
variant reads it), run it, and watch the step-time comparison and the verdict fill in
beside the form as each variant finishes. The run goes to a warm worker when one waits
(``profilers.services.launch``), else to a new supervised worker; the page never blocks.
Must not import tensorflow or pynvml.
"""
from __future__ import annotations

from typing import Any, Mapping

import streamlit as st

from dashboard import frames, loaders, nav, ui
from profilers import services, verdict
from profilers.errors import SgdscopeError
from profilers.spec import DEFAULT_TIMEOUT_S, ExperimentSpec

POLL_S = 0.3
EXP_KEY = "launch_experiment"
NO_PRESET = "(none)"


def default_variants(w: Any, usable: list[str]) -> list[str]:
    """The baseline and up to two TF variants (else the next usable ones); or ?variants=."""
    asked = [v for v in (st.query_params.get("variants") or "").split(",") if v in usable]
    if asked:
        return asked
    tf = [v for v in usable if verdict.is_tf(v)][:2]
    rest = [v for v in usable if v != w.baseline]
    return list(dict.fromkeys(v for v in (w.baseline, *(tf or rest[:1])) if v in usable))


def launch_form(registry: Mapping[str, Any]) -> None:
    names = sorted(registry)
    wanted = st.query_params.get("workload") if st.query_params.get("workload") in names else "linreg"
    wname = st.selectbox("Workload", names, index=names.index(wanted) if wanted in names else 0,
                         help="Each workload is the same maths in several implementations (variants).")
    w = registry[wname]
    if w.help:
        st.caption(w.help)
    preset = NO_PRESET
    if w.presets:
        preset = st.selectbox("Preset", [NO_PRESET, *w.presets], key=f"preset_{wname}",
                              help="A named set of params (e.g. a seed's configuration); the fields start from it.")
    base = {n: p.default for n, p in w.params.items()}
    if preset != NO_PRESET:
        base.update(w.presets[preset])
    usable, missing = ui.variant_options(w)
    chosen = st.multiselect(
        "Variants", usable, default=default_variants(w, usable), key=f"variants_{wname}",
        help="\n".join(f"- **{n}**: {w.variants[n].help}" for n in usable)
             + (f"\n\nThe baseline is **{w.baseline}**: every variant's loss is checked against it." if w.baseline else ""))
    with st.form(f"launch_{wname}"):
        cols = st.columns(2)
        values = {}
        shown = [p for p in w.params.values() if p.used_by(chosen)]
        for i, p in enumerate(shown):
            with cols[i % 2]:
                values[p.name] = ui.param_widget(p, base[p.name], key=f"param_{wname}_{preset}_{p.name}")
        timeout_s = cols[len(shown) % 2].number_input("Timeout (s)", min_value=1.0, value=float(DEFAULT_TIMEOUT_S), step=30.0,
                                    format="%g", help="For the whole experiment; past it the worker is "
                                                      "killed and the unfinished variants are stored as timeout.")
        profile = st.toggle("profile (TF trace)", value=False,
                            help="Capture a TF profiler window of a few steps after warm-up (TF variants "
                                 "only): their breakdown then comes from the trace.")
        go = st.form_submit_button("Run", type="primary")
    if missing:
        st.caption("Not available here: " + "; ".join(f"**{n}**: {r}" for n, r in missing.items()))
    if go:
        params: dict[str, Any] = {k: v for k, v in values.items() if v != base[k]}
        if preset != NO_PRESET:
            params["preset"] = preset
        spec = ExperimentSpec(workload=wname, variants=list(chosen), params=params,
                              timeout_s=float(timeout_s), profile=bool(profile))
        handle = services.launch(spec, loaders.store(), pool=loaders.warm_pool())
        loaders.remember(handle)
        st.session_state[EXP_KEY] = handle.experiment_id


def results(experiment_id: str, partial: bool) -> None:
    """The verdict and the step-time comparison of the runs stored so far."""
    profiles = loaders.experiment_profiles(experiment_id)
    if not profiles:
        st.caption("The comparison appears here as soon as the first variant finishes.")
        return
    workload = profiles[0].manifest.get("workload")
    usable = ui.variant_options(loaders.workloads()[workload])[0] if workload in loaders.workloads() else []
    found = verdict.for_profiles(profiles, usable_variants=usable)
    if partial and found.subject is None:
        st.caption("The verdict appears when the first TensorFlow variant finishes.")
    else:
        ui.verdict_box(found, workload, partial=partial)
    ui.step_time_chart(frames.variant_summary(profiles), "No variant has a measured step time yet.")


@st.fragment(run_every=POLL_S)
def running_panel(experiment_id: str) -> None:
    """Re-run every 0.3 s while the experiment runs; a full rerun when it is over."""
    try:
        state = ui.running_experiment(loaders.handle(experiment_id), "Running", f"cancel_{experiment_id}")
        results(experiment_id, partial=True)
        ui.live_utilization(experiment_id, state)
    except SgdscopeError as exc:
        ui.show_error(exc)


def finished_panel(experiment_id: str, state: Mapping[str, Any]) -> None:
    st.subheader("Finished")
    if state["status"] == "ok":
        st.success(f"Experiment {experiment_id} finished: {len(state['run_ids'])} run(s) stored.")
    else:
        st.error(f"Experiment {experiment_id} ended {state['status']}: {state.get('error') or 'no reason given'}")
    results(experiment_id, partial=False)
    c1, c2 = st.columns([3, 1])
    with c1:
        st.page_link(nav.path("compare"), label="Compare these runs", icon=":material/compare_arrows:",
                     query_params={"exp": experiment_id})
    with c2:
        if st.button("Dismiss", key=f"dismiss_{experiment_id}"):
            st.session_state.pop(EXP_KEY, None)
            st.rerun()
    with st.expander("Variants"):
        ui.progress_bars(state)


def main() -> None:
    st.title("Launch")
    st.caption("Run the same maths in several implementations; the verdict and the comparison "
               f"appear on the right as each variant finishes. Worker: {loaders.keep_warm()}.")
    registry = loaders.workloads()
    if not registry:
        st.info("No workload is registered. Built-ins live in `workloads/`; extra modules are named in "
                "`SGDSCOPE_WORKLOAD_MODULES`.")
        return
    form, answer = st.columns([2, 3], gap="large")
    with form:
        launch_form(registry)
    with answer:
        experiment_id = st.session_state.get(EXP_KEY)
        if not experiment_id:
            st.caption("Choose variants and press Run: the verdict and the step-time chart appear here.")
            return
        state = loaders.handle(experiment_id).progress()
        if state["status"] == "running":
            running_panel(experiment_id)
        else:
            finished_panel(experiment_id, state)


ui.run_page(main)

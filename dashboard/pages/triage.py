"""Triage page: a stored run's findings (``findings.json``, ranked when the run was
stored), each with its share of the step, the change to make, its evidence, and the
measured gain of the fix (or a button that runs the variant that applies it).

A script can be profiled from here only when the server was started with
``SGDSCOPE_ALLOW_SCRIPTS=1`` (it runs code on this machine). Thin: loaders -> frames ->
charts; acting through ``profilers.services``. Must not import tensorflow or pynvml.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import charts, frames, loaders, theme, ui, whatif_panel
from profilers import services
from profilers.spec import ExperimentSpec

ALLOW_ENV = "SGDSCOPE_ALLOW_SCRIPTS"
SEVERITY_ICON = {"high": ":red[HIGH]", "moderate": ":orange[MODERATE]", "low": ":blue[LOW]"}


def pick_run() -> str | None:
    runs = loaders.runs()
    if runs.empty:
        st.info("No stored runs yet. Profile a script with `sgdscope profile train.py`, or launch a workload.")
        return None
    labels = {r["run_id"]: frames.run_label(r) for r in runs.to_dict("records")}
    wanted = st.session_state.pop("triage_run_id", None)  # set by Run's link or a finished profile
    if wanted in labels:
        st.query_params["run"] = wanted
    return ui.synced_select("Run", list(labels), key="triage_pick", param="run", format_func=labels.get)


def profile_form() -> None:
    if os.environ.get(ALLOW_ENV, "").strip() != "1":
        st.info(f"Profiling a script from the web UI is **off**: it runs the script, i.e. executes "
                f"code on this machine. Start the server with `{ALLOW_ENV}=1` to allow it, or run "
                "`sgdscope profile train.py` in a terminal and pick the stored run here.")
        return
    with st.form("profile_script"):
        path = st.text_input("Script path", placeholder="/path/to/train.py")
        c1, c2, c3, c4 = st.columns(4)
        function = c1.text_input("Function (optional)")
        skip = c2.number_input("Skip steps", min_value=0, value=3)
        max_steps = c3.number_input("Max steps", min_value=1, value=50)
        timeout = c4.number_input("Timeout (s)", min_value=5, value=600)
        go = st.form_submit_button("Profile")
    if go:
        handle = services.profile_script(loaders.store(), Path(path), function=function or None,
                                         max_steps=int(max_steps), skip_steps=int(skip), timeout_s=float(timeout))
        st.session_state["triage_experiment"] = handle.experiment_id
    if st.session_state.get("triage_experiment"):
        watch(st.session_state["triage_experiment"])


@st.fragment(run_every=1.0)
def watch(experiment_id: str) -> None:
    state = loaders.handle(experiment_id).progress()
    if state["status"] == "running":
        st.caption(f"Profiling… {state.get('phase', '')}")
        return
    if state["run_ids"]:
        st.session_state["triage_run_id"] = state["run_ids"][0]
    st.session_state.pop("triage_experiment", None)
    st.rerun()


def run_header(profile: Any) -> None:
    m, res = profile.manifest, profile.manifest.get("results") or {}
    step = res.get("step_ms") or {}
    st.markdown(f"**{m.get('workload')} / {m.get('variant')}** {theme.status_badge(m.get('status'))}")
    c1, c2, c3 = st.columns(3)
    c1.metric("Steps measured", step.get("count") or 0)
    c2.metric("Median step", "unavailable" if step.get("median") is None else f"{step['median']:.4g} ms")
    c3.metric("Findings", len(profile.findings))
    if m.get("status") != "ok":
        ui.run_error(m)
    script = m.get("script") or {}
    if script:
        st.caption(f"Script {script.get('path')} · exit code {script.get('exit_code')} · "
                   f"steps from {(m.get('capture') or {}).get('steps_from') or 'unavailable'}")
        if script.get("traceback"):
            with st.expander("Traceback"):
                st.code(script["traceback"], language="text")


def show_finding(profile: Any, f: dict[str, Any], i: int) -> None:
    share = f.get("share")
    st.subheader(f"{SEVERITY_ICON.get(f.get('severity'), f.get('severity'))} {f.get('rule')}"
                 + ("" if share is None else f" · {share:.0%} of the step"))
    if share is not None:
        st.altair_chart(charts.share_bar(frames.share_frame(str(f.get("rule")), share), "part", "share"),
                        width="stretch")
    cf = f.get("counterfactual") or {}
    if cf.get("measured"):
        st.success(cf.get("text") or "")
    elif cf:
        st.info(cf.get("text") or "")
        if st.button(f"Run {cf.get('variant')}", key=f"cf-{i}"):
            m = profile.manifest
            spec = ExperimentSpec(workload=m["workload"], variants=[m["variant"], cf["variant"]],
                                  params=dict(m.get("params") or {}), profile=True)
            handle = services.launch(spec, loaders.store(), pool=loaders.warm_pool())
            st.success(f"Launched experiment {handle.experiment_id}: its runs appear in the run list when done.")
    st.markdown(f.get("recommendation") or "")
    evidence = f.get("evidence") or {}
    scalars = {k: v for k, v in evidence.items() if not isinstance(v, (dict, list))}
    st.dataframe(pd.DataFrame({"evidence": list(scalars), "value": [frames.value_text(v) for v in scalars.values()]}),
                 hide_index=True, width="stretch")


def main() -> None:
    st.title("Triage")
    st.caption("What slows this run down, with the numbers behind it and the change to make.")
    if st.radio("Source", ["Stored run", "Profile a script"], horizontal=True) == "Profile a script":
        profile_form()
    run_id = pick_run()
    if run_id is None:
        return
    profile = loaders.profile(run_id)
    run_header(profile)
    bd = frames.breakdown_frame([profile])
    if bd.empty:
        st.caption("This run has no step-time breakdown (no trace, phases or samples to build one from).")
    else:
        st.altair_chart(charts.breakdown_bars(bd, "variant", "category", "ms"), width="stretch")
    if not profile.findings:
        st.success("No finding: no rule found a bottleneck in the data this run has. Rules whose data "
                   "is unavailable here (e.g. GPU utilization without a GPU) say nothing.")
    for i, f in enumerate(profile.findings):
        show_finding(profile, f, i)
    whatif_panel.show(profile, os.environ.get(ALLOW_ENV, "").strip() == "1")


ui.run_page(main)

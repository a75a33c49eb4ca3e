"""Triage page: a stored run's bottlenecks, ordered by severity, each with its evidence,
a chart of the share it talks about, the change to make, and (for a bundled workload)
the measured gain of the fix or a button to run the variant that applies it.

A script can also be profiled from here, but only when the server was started with
``SGDSCOPE_ALLOW_SCRIPTS=1``: profiling runs the script, i.e. executes code on this
machine. Otherwise the page says so and points to ``sgdscope profile``.

Thin: store -> ``profilers.triage`` -> chart builders -> Streamlit. Never imports
tensorflow or pynvml (the profiling runs in a supervised subprocess).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from profilers import triage
from profilers.cli_triage import experiment_context, launch_script, make_spec
from profilers.errors import SgdscopeError
from profilers.model import CATEGORIES
from profilers.store import RunStore

ALLOW_ENV = "SGDSCOPE_ALLOW_SCRIPTS"
SEVERITY_ICON = {"high": ":red[HIGH]", "moderate": ":orange[MODERATE]", "low": ":blue[LOW]"}


def scripts_allowed() -> bool:
    return os.environ.get(ALLOW_ENV, "").strip() == "1"


# -- chart builders (pure: df + column names -> alt.Chart) ---------------------------------------
def share_chart(df: pd.DataFrame, part: str, value: str, title: str = "") -> alt.Chart:
    """One horizontal bar split into parts (e.g. the finding's share vs the rest)."""
    return (alt.Chart(df, title=title).mark_bar()
            .encode(x=alt.X(f"{value}:Q", stack="normalize", axis=alt.Axis(format="%"), title=None),
                    color=alt.Color(f"{part}:N", sort=list(df[part]), legend=alt.Legend(orient="bottom")),
                    order=alt.Order("order:Q"), tooltip=[part, alt.Tooltip(f"{value}:Q", format=".1%")])
            .properties(height=60))


def breakdown_chart(df: pd.DataFrame, category: str, ms: str) -> alt.Chart:
    return (alt.Chart(df).mark_bar()
            .encode(x=alt.X(f"{ms}:Q", title="ms per step (median)"),
                    y=alt.Y(f"{category}:N", sort=list(CATEGORIES), title=None),
                    tooltip=[category, alt.Tooltip(f"{ms}:Q", format=".3f")])
            .properties(height=220))


def share_frame(finding: dict[str, Any]) -> pd.DataFrame | None:
    share = finding.get("share")
    if share is None:
        return None
    return pd.DataFrame({"part": [finding["rule"], "rest"], "share": [share, max(0.0, 1.0 - share)],
                         "order": [0, 1]})


# -- sections ----------------------------------------------------------------------------------------
def pick_run(store: RunStore) -> str | None:
    runs = store.list()
    if runs.empty:
        st.info("No stored runs yet. Profile a script with `sgdscope profile train.py`, or launch a workload.")
        return None
    labels = {r.run_id: f"{r.variant} · {r.workload} · {r.status} · {r.run_id}" for r in runs.itertuples()}
    wanted = st.session_state.get("triage_run_id")
    ids = list(labels)
    index = ids.index(wanted) if wanted in ids else 0
    return st.selectbox("Run", ids, index=index, format_func=labels.get)


def profile_form(store: RunStore) -> None:
    if not scripts_allowed():
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
        try:
            spec = make_spec(Path(path), function=function or None, argv=[], max_steps=int(max_steps),
                             skip_steps=int(skip), window_s=8.0, timeout_s=float(timeout))
            handle = launch_script(store, spec)
        except SgdscopeError as exc:
            st.error(f"{exc.message} {exc.hint}")
            return
        st.session_state["triage_experiment"] = handle.experiment_id
    exp = st.session_state.get("triage_experiment")
    if exp:
        watch_experiment(store, exp)


def watch_experiment(store: RunStore, experiment_id: str) -> None:
    from profilers.session import attach

    @st.fragment(run_every=1.0)
    def progress() -> None:
        state = attach(store, experiment_id).progress()
        if state["status"] == "running":
            st.caption(f"Profiling… {state.get('phase', '')}")
            return
        if state["run_ids"]:
            st.session_state["triage_run_id"] = state["run_ids"][0]
        st.session_state.pop("triage_experiment", None)
        st.rerun()

    progress()


def run_header(profile: Any, doc: dict[str, Any]) -> None:
    m = profile.manifest
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Status", m.get("status", "?"))
    c2.metric("Steps measured", doc["steps"]["count"])
    med = doc["steps"]["median_ms"]
    c3.metric("Median step", "n/a" if med is None else f"{med:.3f} ms")
    c4.metric("Findings", len(doc["findings"]))
    if m.get("error"):
        st.error(m["error"])
    script = m.get("script") or {}
    if script:
        st.caption(f"Script {script.get('path')} · exit code {script.get('exit_code')} · "
                   f"steps from {(m.get('capture') or {}).get('steps_from') or 'n/a'}")
        if script.get("traceback"):
            with st.expander("Traceback"):
                st.code(script["traceback"], language="text")
        if profile.run_dir is not None:
            for name in ("stdout", "stderr"):
                path = profile.run_dir / "logs" / f"{name}.txt"
                if path.is_file() and path.stat().st_size:
                    with st.expander(f"Script {name}"):
                        st.code(path.read_text(encoding="utf-8", errors="replace")[-5000:], language="text")
    reason = (m.get("capture") or {}).get("unavailable_reason") or (m.get("capture") or {}).get("analysis_error")
    if reason:
        st.caption(f"Capture: {reason}")


def show_finding(store: RunStore, profile: Any, f: dict[str, Any], i: int) -> None:
    share = "" if f["share"] is None else f" — {f['share']:.0%}"
    st.subheader(f"{SEVERITY_ICON.get(f['severity'], f['severity'])} {f['rule']}{share}")
    frame = share_frame(f)
    if frame is not None:
        st.altair_chart(share_chart(frame, "part", "share"), width="stretch")
    cf = f.get("counterfactual")
    if cf and cf.get("measured"):
        st.success(cf["text"])
    elif cf:
        st.info(cf["text"])
        if st.button(f"Run {cf['variant']}", key=f"cf-{i}"):
            launch_variant(store, profile, cf["variant"])
    st.markdown(f["recommendation"])
    scalars = {k: v for k, v in f["evidence"].items() if not isinstance(v, (dict, list))}
    nested = {k: v for k, v in f["evidence"].items() if isinstance(v, (dict, list))}
    st.dataframe(pd.DataFrame({"evidence": list(scalars), "value": [str(v) for v in scalars.values()]}),
                 hide_index=True, width="stretch")
    if nested:
        with st.expander("More evidence"):
            st.json(nested)


def launch_variant(store: RunStore, profile: Any, variant: str) -> None:
    from profilers.session import launch
    from profilers.spec import ExperimentSpec

    m = profile.manifest
    spec = ExperimentSpec(workload=m["workload"], variants=[m["variant"], variant],
                          params=dict(m.get("params") or {}), profile=True)
    try:
        handle = launch(spec, store)
    except SgdscopeError as exc:
        st.error(f"{exc.message} {exc.hint}")
        return
    st.success(f"Launched experiment {handle.experiment_id}: its runs appear in the run list when done.")


# -- page ------------------------------------------------------------------------------------------------
def main() -> None:
    st.title("Triage")
    st.caption("What slows this run down, with the numbers behind it and the change to make.")
    store = RunStore()
    source = st.radio("Source", ["Stored run", "Profile a script"], horizontal=True)
    if source == "Profile a script":
        profile_form(store)
    run_id = pick_run(store)
    if run_id is None:
        return
    try:
        profile = store.load(run_id)
        doc = {"findings": triage.evaluate(profile, experiment_context(store, profile)),
               **triage.summary(profile)}
    except SgdscopeError as exc:
        st.error(f"{exc.message} {exc.hint}")
        st.stop()
    run_header(profile, doc)
    if doc["breakdown_ms"]:
        bd = pd.DataFrame({"category": list(doc["breakdown_ms"]), "ms": list(doc["breakdown_ms"].values())})
        st.altair_chart(breakdown_chart(bd, "category", "ms"), width="stretch")
    else:
        st.caption("This run has no step-time breakdown (no trace, phases or samples to build one from).")
    if not doc["findings"]:
        st.success("No finding: no rule found a bottleneck in the data this run has. Rules whose data "
                   "is unavailable here (e.g. GPU utilization without a GPU) say nothing.")
    for i, f in enumerate(doc["findings"]):
        show_finding(store, profile, f, i)


main()

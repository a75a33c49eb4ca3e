"""Launch page: pick a workload, its variants and params (widgets generated from the
workload's ``Param`` declarations), run it as an experiment, and watch it.

The run happens in a supervised subprocess (``profilers.session.launch`` returns at
once); a fragment polls ``handle.progress()`` every second for the progress bars, the
phase, Cancel, and live CPU %/RSS from the live samples files. The page never blocks on
a run. Must not import tensorflow or pynvml.
"""
from __future__ import annotations

from typing import Any, Mapping

import pandas as pd
import streamlit as st

from dashboard import charts, frames, loaders, nav, ui
from dashboard.ui import param_widget, progress_bars, variant_options
from profilers.errors import SgdscopeError
from profilers.session import launch
from profilers.spec import DEFAULT_TIMEOUT_S, ExperimentSpec

POLL_S = 1.0
EXP_KEY = "launch_experiment"
NO_PRESET = "(none)"
LIVE_X = "seconds since the variant started"


# -- form -------------------------------------------------------------------------------------
def launch_form(registry: Mapping[str, Any]) -> None:
    names = sorted(registry)
    wname = st.selectbox("Workload", names, index=names.index("linreg") if "linreg" in names else 0,
                         help="Each workload is the same maths in several implementations (variants).")
    w = registry[wname]
    if w.help:
        st.caption(w.help)
    preset = NO_PRESET
    if w.presets:
        preset = st.selectbox("Preset", [NO_PRESET, *w.presets], key=f"preset_{wname}",
                              help="A named set of params (e.g. a seed's configuration); the fields "
                                   "below start from it.")
    base = {n: p.default for n, p in w.params.items()}
    if preset != NO_PRESET:
        base.update(w.presets[preset])
    usable, missing = variant_options(w)
    default = list(dict.fromkeys(v for v in (w.baseline, *usable) if v in usable))[:2]
    with st.form(f"launch_{wname}"):
        chosen = st.multiselect(
            "Variants", usable, default=default,
            help="\n".join(f"- **{n}**: {w.variants[n].help}" for n in usable)
                 + (f"\n\nThe baseline is **{w.baseline}**: every variant's loss is checked against it."
                    if w.baseline else ""))
        cols = st.columns(3)
        values = {}
        for i, p in enumerate(w.params.values()):
            with cols[i % 3]:
                values[p.name] = param_widget(p, base[p.name], key=f"param_{wname}_{preset}_{p.name}")
        c1, c2 = st.columns(2)
        timeout_s = c1.number_input("Timeout (s)", min_value=1.0, value=float(DEFAULT_TIMEOUT_S), step=30.0,
                                    format="%g", help="For the whole experiment; past it the worker is "
                                                      "killed and the unfinished variants are stored as timeout.")
        profile = c2.toggle("profile (TF trace)", value=False,
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
        handle = launch(spec, loaders.store())
        loaders.remember(handle)
        st.session_state[EXP_KEY] = handle.experiment_id


# -- watching ---------------------------------------------------------------------------------
def gpu_status_line(experiment_id: str, gpu_rows: bool,
                    live_status: Mapping[str, Any] | None = None) -> str:
    """GPU status while running: live readings, else what the running worker's samplers
    reported at start, else the reason a stored run recorded (this experiment's first,
    else the newest on this machine). Never a zero."""
    if gpu_rows:
        return "GPU: sampled (chart below)"
    if live_status and live_status.get("gpu"):
        _, text = frames.sampler_status(live_status, "gpu")
        return f"GPU: {text}"
    stored = [p for p in loaders.experiment_profiles(experiment_id)
              if (p.manifest.get("samplers") or {}).get("gpu")]
    if stored:
        _, text = frames.sampler_status(stored[0].manifest["samplers"], "gpu")
        return f"GPU: {text}"
    info, run_id = loaders.latest_sampler_status("gpu")
    if info is not None:
        _, text = frames.sampler_status({"gpu": info}, "gpu")
        return f"GPU: {text} (as recorded by the last stored run, {run_id})"
    return "GPU: status not known yet: it is recorded when the first variant finishes."


def live_charts(experiment_id: str, state: Mapping[str, Any]) -> None:
    h = loaders.handle(experiment_id)
    started = [n for n, v in state["variants"].items() if v["status"] != "pending"]
    samples = {n: loaders.live_samples(h.exp_dir, n) for n in started}
    cpu = [frames.metric_frame(df, ["proc_cpu_pct"], series=n) for n, df in samples.items()]
    rss = [frames.metric_frame(df, ["rss_mib"], series=n) for n, df in samples.items()]
    gpu = [frames.metric_frame(df, frames.gpu_util_metrics(df), series=n) for n, df in samples.items()]
    cpu_df, rss_df, gpu_df = (pd.concat(x, ignore_index=True) if x else pd.DataFrame() for x in (cpu, rss, gpu))
    st.caption(gpu_status_line(experiment_id, not gpu_df.empty, state.get("samplers")))
    if cpu_df.empty and rss_df.empty:
        st.caption("No utilization samples yet (the sampler ticks every 0.1 s once a variant starts).")
        return
    c1, c2 = st.columns(2)
    if not cpu_df.empty:
        c1.altair_chart(charts.metric_chart(cpu_df, "t_s", "value", "series", "CPU % (100 = 1 core)",
                                            series_is_variant=True, x_title=LIVE_X), width="stretch")
    if not rss_df.empty:
        c2.altair_chart(charts.metric_chart(rss_df, "t_s", "value", "series", "RSS (MiB)",
                                            series_is_variant=True, x_title=LIVE_X), width="stretch")
    if not gpu_df.empty:
        st.altair_chart(charts.metric_chart(gpu_df, "t_s", "value", "series", "GPU utilization %",
                                            series_is_variant=True, x_title=LIVE_X), width="stretch")


@st.fragment(run_every=POLL_S)
def running_panel(experiment_id: str) -> None:
    """Re-run every second while the experiment runs; a full rerun when it is over."""
    try:
        state = ui.running_experiment(loaders.handle(experiment_id), "Running", f"cancel_{experiment_id}")
        live_charts(experiment_id, state)
    except SgdscopeError as exc:
        ui.show_error(exc)


def finished_panel(experiment_id: str, state: Mapping[str, Any]) -> None:
    st.subheader("Finished")
    if state["status"] == "ok":
        st.success(f"Experiment {experiment_id} finished: {len(state['run_ids'])} run(s) stored.")
    else:
        st.error(f"Experiment {experiment_id} ended {state['status']}: {state.get('error') or 'no reason given'}")
    progress_bars(state)
    c1, c2, _ = st.columns([1, 1, 3])
    with c1:
        st.page_link(nav.path("compare"), label="Compare these runs", icon=":material/compare_arrows:",
                     query_params={"exp": experiment_id})
    with c2:
        if st.button("Dismiss", key=f"dismiss_{experiment_id}"):
            st.session_state.pop(EXP_KEY, None)
            st.rerun()


def main() -> None:
    st.title("Launch")
    st.caption("Run the same maths in several implementations. Each variant runs in a supervised "
               "subprocess and is stored as a run; the baseline runs first.")
    registry = loaders.workloads()
    if not registry:
        st.info("No workload is registered. Built-ins live in `workloads/`; extra modules are named in "
                "`SGDSCOPE_WORKLOAD_MODULES`.")
        return
    launch_form(registry)
    experiment_id = st.session_state.get(EXP_KEY)
    if not experiment_id:
        return
    state = loaders.handle(experiment_id).progress()
    if state["status"] == "running":
        running_panel(experiment_id)
    else:
        finished_panel(experiment_id, state)


ui.run_page(main)

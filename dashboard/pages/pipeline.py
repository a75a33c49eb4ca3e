"""Input pipeline page: the tf.data fixes (workload ``input_pipeline``), each measured on
its own against the naive pipeline, and ``all`` with every fix together.

"Run the fixes" launches one experiment (``profilers.services.launch``; a fragment polls
it, with Cancel) over naive, prefetch, parallel map, cache, vectorized and all, with
params from the workload's ``Param`` declarations or its ArtificialDataset preset. For a
stored experiment: each variant's median step and stall share (the ``input_wait`` share
of the step), its speed-up vs naive, and, when profiled, the slowest stage of xprof's
tf.data stage table. A value that was not measured says so, never 0 or None.
Must not import tensorflow or pynvml.
"""
from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard import charts, frames, loaders, ui
from profilers import services
from profilers.errors import BadInput
from profilers.spec import DEFAULT_TIMEOUT_S, ExperimentSpec

WORKLOAD = "input_pipeline"
DEFAULT_RUNGS: tuple[str, ...] = ("naive", "prefetch", "parallel_map", "cache", "vectorized", "all")
NO_PRESET = "(none)"
EXP_KEY = "pipeline_experiment"
PROFILE_HINT = "profile the ladder to see the slow tf.data stage"


def ladder_form(w: Any) -> None:
    from workloads.input_pipeline import ARTIFICIAL_VARIANTS

    preset = NO_PRESET
    if w.presets:
        preset = st.selectbox("Preset", [NO_PRESET, *w.presets], key="pipeline_preset",
                              help="artificial_dataset: the tf.data guide's ArtificialDataset (open 30 ms, read "
                                   "15 ms per sample, train step 10 ms); its variants are naive, prefetch, interleave.")
    base = {n: p.default for n, p in w.params.items()}
    if preset != NO_PRESET:
        base.update(w.presets[preset])
    usable, missing = ui.variant_options(w)
    artificial = base.get("source") == "artificial"
    offered = [v for v in frames.ladder_order(usable) if not artificial or v in ARTIFICIAL_VARIANTS]
    with st.form(f"ladder_{preset}"):
        rungs = st.multiselect("Rungs", offered, default=[v for v in (ARTIFICIAL_VARIANTS if artificial else DEFAULT_RUNGS)
                                                         if v in offered],
                               help="\n".join(f"- **{n}**: {w.variants[n].help}" for n in offered))
        cols = st.columns(3)
        values = {}
        for i, p in enumerate(w.params.values()):
            with cols[i % 3]:
                values[p.name] = ui.param_widget(p, base[p.name], key=f"pipeline_{preset}_{p.name}")
        c1, c2 = st.columns(2)
        timeout_s = c1.number_input("Timeout (s)", min_value=1.0, value=float(DEFAULT_TIMEOUT_S), step=30.0,
                                    format="%g", key="pipeline_timeout")
        profile = c2.toggle("profile (TF trace)", value=False, key="pipeline_profile",
                            help="A TF profiler window per variant: xprof's tf.data stage table then names the slow stage.")
        go = st.form_submit_button("Run the ladder", type="primary")
    if missing:
        st.caption("Not available here: " + "; ".join(f"**{n}**: {r}" for n, r in missing.items()))
    if not go:
        return
    if values.get("source") == "artificial" and [r for r in rungs if r not in ARTIFICIAL_VARIANTS]:
        raise BadInput(f"{', '.join(r for r in rungs if r not in ARTIFICIAL_VARIANTS)} has no ArtificialDataset "
                       f"pipeline.", f"With source=artificial choose among {', '.join(ARTIFICIAL_VARIANTS)}.")
    params: dict[str, Any] = {k: v for k, v in values.items() if v != base[k]}
    if preset != NO_PRESET:
        params["preset"] = preset
    spec = ExperimentSpec(workload=WORKLOAD, variants=frames.ladder_order(list(rungs)), params=params,
                          timeout_s=float(timeout_s), profile=bool(profile))
    handle = services.launch(spec, loaders.store(), pool=loaders.warm_pool())
    loaders.remember(handle)
    st.session_state[EXP_KEY] = handle.experiment_id


@st.fragment(run_every=1.0)
def running_panel(experiment_id: str) -> None:
    """Re-run every second while the experiment runs; a full rerun when it is over."""
    ui.running_experiment(loaders.handle(experiment_id), "Ladder running", f"pipeline_cancel_{experiment_id}")


def ladder_results(experiment_id: str) -> None:
    df = frames.ladder_frame(loaders.experiment_profiles(experiment_id))
    measured = df[df["median_ms"].notna()]
    if measured.empty:
        st.info("No variant of this experiment has a measured step time (every run failed).")
    else:
        best = measured.loc[measured["median_ms"].idxmin()]
        if best["rung"] != frames.PIPELINE_BASELINE and best["speedup"] is not None and best["speedup"] == best["speedup"]:
            st.markdown(f"**{best['rung']}** has the fastest step: {best['median_ms']:.3g} ms, "
                        f"{frames.format_ratio(float(best['speedup']))} faster than naive.")
        elif (df["rung"] == frames.PIPELINE_BASELINE).any() and best["rung"] == frames.PIPELINE_BASELINE:
            st.markdown("No fix beat **naive** here.")
        else:
            st.markdown(f"Fastest step: **{best['rung']}**, {best['median_ms']:.3g} ms (no measured naive run).")
        st.altair_chart(charts.ladder_chart(measured, "rung", "median_ms", "stall_share", "vs_naive"), width="stretch")
        st.caption("Bars: median ms per step, labelled with the speed-up vs naive. Each bar is naive plus ONE "
                   "fix (not cumulative); all has every fix. Red line: the stall share, the part of the step "
                   "spent waiting in next(iterator); a variant without a measured share has no point.")
    stages = {r: loaders.slowest_stage(r) for r in df["run_id"]}
    st.dataframe(frames.ladder_table(df, stages), hide_index=True, width="stretch")
    if all(n == "not profiled" for _, n in stages.values()):
        st.info(f"Not profiled: {PROFILE_HINT} (switch on **profile (TF trace)** above and run it again).")
    for r in df[df["status"] != "ok"].itertuples():
        st.error(f"{r.rung} {r.status}: {r.error or 'no reason recorded'}")


def pick_experiment(focus: str | None) -> str | None:
    exps = frames.experiments_frame(loaders.runs())
    exps = exps[exps["workload"] == WORKLOAD]
    if exps.empty:
        st.info(f"No {WORKLOAD} experiment stored yet. Run the ladder above, or from a terminal: "
                f"`sgdscope run {WORKLOAD} --variants {','.join(DEFAULT_RUNGS)} --json`.")
        return None
    labels = {r["experiment_id"]: frames.experiment_label(r) for r in exps.to_dict("records")}
    if focus in labels:
        st.query_params["exp"] = focus
    return ui.synced_select("Experiment", list(labels), key="pipeline_pick", param="exp",
                            format_func=lambda e: labels[e], help="input_pipeline experiments, newest first.")


def main() -> None:
    st.title("Input pipeline")
    st.caption("Which tf.data fix helps this pipeline? naive, then naive plus one fix each (prefetch, parallel map, "
               "cache, vectorized), then all of them: same model, same batches; only the pipeline changes.")
    registry = loaders.workloads()
    if WORKLOAD in registry:
        with st.expander("Run the ladder", expanded=False):
            ladder_form(registry[WORKLOAD])
    focus = st.session_state.get(EXP_KEY)
    if focus:
        state = loaders.handle(focus).progress()
        if state["status"] == "running":
            running_panel(focus)
        elif state["status"] == "ok":
            st.success(f"Ladder {focus} finished: {len(state['run_ids'])} rung(s) stored.")
        else:
            st.error(f"Ladder {focus} ended {state['status']}: {state.get('error') or 'no reason given'}")
    st.subheader("Results")
    exp = pick_experiment(focus)
    if exp:
        ladder_results(exp)


ui.run_page(main)

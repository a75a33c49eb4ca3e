"""Compare page: one experiment's variants side by side against the NumPy baseline.

Median step time with its p10-p90 range (log scale), the speed-up or slow-down vs the
baseline, a correctness badge per variant (``loss_matches_baseline``), overlaid loss
curves, the stacked step-time breakdown where runs have one, failed runs with their
error, and the environment that decided the numbers beside the figures.
Thin: loaders -> frames -> charts. Must not import tensorflow or pynvml.
"""
from __future__ import annotations


import pandas as pd
import streamlit as st

from dashboard import charts, frames, loaders, nav, theme, ui
from dashboard.export_button import export_button
from profilers import verdict
from profilers.explain import explain_experiment
from profilers.model import RunProfile


def pick_experiment() -> str | None:
    exps = frames.experiments_frame(loaders.runs())
    if exps.empty:
        st.info("No stored experiment yet. Launch one on the Launch page, or from a terminal: "
                "`sgdscope run linreg --variants numpy,tf_eager`.")
        st.page_link(nav.path("launch"), label="Launch an experiment", icon=":material/rocket_launch:")
        return None
    labels = {r["experiment_id"]: frames.experiment_label(r) for r in exps.to_dict("records")}
    return ui.synced_select("Experiment", list(labels), key="compare_exp", param="exp",
                            format_func=lambda e: labels[e], help="Newest first.")


def registry_baseline(workload: str | None) -> str | None:
    w = loaders.workloads().get(workload or "")
    return None if w is None else w.baseline


def step_times(summary: pd.DataFrame, baseline: str | None) -> None:
    st.subheader("Step time per variant")
    if not ui.step_time_chart(summary, "No variant of this experiment finished with measured steps."):
        return
    if baseline is None:
        st.caption("This workload declares no baseline: no speed-up to show.")
        return
    if baseline not in set(frames.measured_steps(summary)["variant"]):
        st.warning(f"No finished **{baseline}** run in this experiment, so there is no baseline step "
                   f"time to compare with. Launch it with {baseline} among the variants.")
    lines = [f"- **{r.text}** · {frames.correctness_badge(r.match, baseline)}"
             for r in frames.speedups(summary, baseline).itertuples()]
    if lines:
        st.markdown("\n".join(lines))


def loss_curves(profiles: list[RunProfile]) -> None:
    st.subheader("Loss")
    df = frames.loss_frame(profiles)
    if df.empty:
        st.caption("No run of this experiment recorded a loss.")
        return
    st.altair_chart(charts.loss_chart(df, "step", "loss", "variant"), width="stretch")
    st.caption("Every variant runs the same maths on the same seeded data: curves that lie on top "
               "of each other agree.")


def breakdown(profiles: list[RunProfile]) -> None:
    st.subheader("Where a step's time goes")
    df = frames.breakdown_frame(profiles)
    if df.empty:
        st.caption("No breakdown stored for these runs (no phase spans or trace to build one from).")
        return
    scale = st.radio("Scale", ["ms per step", "share of the step"], horizontal=True, key="compare_bd_scale",
                     label_visibility="collapsed")
    st.altair_chart(charts.breakdown_bars(df, "variant", "category", "ms", share=scale != "ms per step"),
                    width="stretch")
    without = [p.manifest.get("variant") for p in profiles
               if p.manifest.get("status") == "ok" and p.table("breakdown").empty]
    note = f" No breakdown stored for: {', '.join(map(str, without))}." if without else ""
    st.caption("Each category's share of the analysed steps (a TF run's profiler window, or every "
               "measured step), applied to the run's median step: a bar is as long as the median "
               "step." + note)


def summary_table(summary: pd.DataFrame) -> None:
    with st.expander("Runs of this experiment"):
        st.dataframe(frames.readable(summary.drop(columns=["order"]).round(4)), hide_index=True, width="stretch",
                     column_config={"run_id": st.column_config.TextColumn(width="large")})


def explanations(profiles: list[RunProfile], baseline: str | None) -> None:
    """Where each variant's step goes, in plain words computed from its breakdown."""
    lines = explain_experiment([(p.manifest.get("variant"), p.manifest.get("results") or {})
                                for p in profiles if p.manifest.get("status") == "ok"], baseline)
    if lines:
        st.subheader("In plain words")
        st.markdown("\n".join(f"- {line}" for line in lines))


def main() -> None:
    st.title("Compare")
    st.caption("The same maths in several implementations, against the NumPy baseline.")
    experiment_id = pick_experiment()
    if experiment_id is None:
        return
    profiles = loaders.experiment_profiles(experiment_id)
    if not profiles:
        st.info("This experiment has no stored run (it was deleted).")
        return
    first = profiles[0].manifest
    baseline = frames.baseline_variant(profiles) or registry_baseline(first.get("workload"))
    workload = loaders.workloads().get(first.get("workload") or "")
    params = frames.params_for(first.get("params") or {}, [p.manifest.get("variant") for p in profiles],
                               getattr(workload, "params", None))
    st.markdown(f"**{first.get('workload')}** · {ui.escape(params)}  \n"
                + " ".join(f"{p.manifest.get('variant')} {theme.status_badge(p.manifest.get('status'))}"
                           for p in profiles))
    usable = ui.variant_options(workload)[0] if workload is not None else []
    ui.verdict_box(verdict.for_profiles(profiles, usable_variants=usable), first.get("workload"))
    summary = frames.variant_summary(profiles)
    figures, side = st.columns([5, 2], gap="medium")
    with figures:
        step_times(summary, baseline)
        for p in profiles:
            if p.manifest.get("status") != "ok":
                ui.run_error(p.manifest)
        loss_curves(profiles)
        breakdown(profiles)
        explanations(profiles, baseline)
        summary_table(summary)
    with side:
        ui.environment_panel(*frames.experiment_environment(profiles))
        for p in profiles:
            st.page_link(nav.path("run"), label=f"Run: {p.manifest.get('variant')}",
                         icon=":material/timeline:", query_params={"run": p.run_id})
        export_button(loaders.store(), [p.run_id for p in profiles], key="compare_export",
                      label="Download (.zip)",
                      help="The experiment's runs as one bundle: manifests, tables, traces and report.html.")


ui.run_page(main)

"""Compare page: one experiment's variants side by side against the NumPy baseline.

Median step time with its p10-p90 range (log scale), the speed-up or slow-down vs the
baseline, a correctness badge per variant (``loss_matches_baseline``), overlaid loss
curves, the stacked step-time breakdown where runs have one, failed runs with their
error, and the environment that decided the numbers beside the figures.
Thin: loaders -> frames -> charts. Must not import tensorflow or pynvml.
"""
from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dashboard import charts, frames, loaders, nav, theme, ui
from dashboard.export_button import export_button
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
    ok = summary[(summary["status"] == "ok") & summary["median_ms"].notna()
                 & (summary["median_ms"] > 0)].copy()
    if ok.empty:
        st.info("No variant of this experiment finished with measured steps.")
        return
    for col in ("p10_ms", "p90_ms"):
        ok[col] = ok[col].fillna(ok["median_ms"])
    st.altair_chart(charts.step_range_chart(ok, "variant", "median_ms", "p10_ms", "p90_ms"), width="stretch")
    if baseline is None:
        st.caption("This workload declares no baseline: no speed-up to show.")
        return
    if baseline not in set(ok["variant"]):
        st.warning(f"No finished **{baseline}** run in this experiment, so there is no baseline step "
                   f"time to compare with. Launch it with {baseline} among the variants.")
    ratios = frames.speedups(summary, baseline)
    lines = []
    for r in ratios.itertuples():
        match = summary.loc[summary["variant"] == r.variant, "loss_matches_baseline"].iloc[0]
        lines.append(f"- **{r.text}** · {frames.correctness_badge(match, baseline)}")
    if lines:
        st.markdown("\n".join(lines))


def failed_runs(profiles: list[RunProfile]) -> None:
    for p in profiles:
        m = p.manifest
        if m.get("status") == "ok":
            continue
        st.error(f"**{m.get('variant')}** {m.get('status')}: {m.get('error') or 'no reason recorded'}")
        tail = m.get("stderr_tail") or ""
        if tail.strip():
            with st.expander(f"{m.get('variant')}: stderr tail"):
                st.code(tail, language="text")


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
    st.caption("Median ms per step of each category over the steps the breakdown covers (a TF run's "
               "profiler window, or every measured step); medians need not add up to the median "
               "step." + note)


def summary_table(summary: pd.DataFrame) -> None:
    with st.expander("Runs of this experiment"):
        st.dataframe(summary.drop(columns=["order"]), hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.4g")
                                    for c in ("median_ms", "p10_ms", "p90_ms", "final_loss")})


def environment_of(profiles: list[RunProfile]) -> tuple[Any, Any]:
    """The experiment's environment (one worker ran every variant): the first run that
    recorded TF's settings, else the first that recorded any."""
    recorded = [p.manifest for p in profiles if p.manifest.get("environment")]
    for m in sorted(recorded, key=lambda m: "tensorflow" not in m["environment"]):
        return m["environment"], m.get("samplers")
    return None, None


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
    params = ", ".join(f"{k}={v}" for k, v in sorted((first.get("params") or {}).items()))
    st.markdown(f"**{first.get('workload')}** · {params or 'default params'}  \n"
                + " ".join(f"{p.manifest.get('variant')} {theme.status_badge(p.manifest.get('status'))}"
                           for p in profiles))
    summary = frames.variant_summary(profiles)
    figures, side = st.columns([3, 1], gap="medium")
    with figures:
        step_times(summary, baseline)
        failed_runs(profiles)
        loss_curves(profiles)
        breakdown(profiles)
        explanations(profiles, baseline)
        summary_table(summary)
    with side:
        ui.environment_panel(*environment_of(profiles))
        for p in profiles:
            st.page_link(nav.path("run"), label=f"Run: {p.manifest.get('variant')}",
                         icon=":material/timeline:", query_params={"run": p.run_id})
        export_button(loaders.store(), [p.run_id for p in profiles], key="compare_export",
                      label="Download the experiment (.zip)")


ui.run_page(main)

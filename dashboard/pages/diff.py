"""Diff page: two runs (stored, or inside uploaded bundles) side by side: the step-time
delta per category, the step-time distributions overlaid on a log axis, ops added/
removed/increased/decreased (HolisticTraceAnalysis's trace-diff categories) and findings
that appeared or disappeared; a warning first when the two are different workloads.
Plus a download of both runs as one bundle, and a bundle importer.

Thin: loaders (stored runs, opened bundles) -> ``profilers.diff.diff_runs`` -> frames ->
charts. Nothing is written to the store unless Import is pressed. Must not import
tensorflow or pynvml.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, frames, loaders, ui
from dashboard.export_button import export_button, import_uploader
from profilers.diff import OP_STATUSES, diff_runs, ops_summary
from profilers.model import RunProfile

SOURCES = ("Stored run", "Bundle (.zip)")


def pick(side: str, runs: pd.DataFrame, default_index: int) -> RunProfile | None:
    st.subheader(f"{side} ({'control' if side == 'A' else 'test'})")
    source = st.radio("Source", SOURCES, key=f"diff-src-{side}", horizontal=True)
    if source == SOURCES[0]:
        if runs.empty:
            st.info("No stored runs yet: run a workload, or pick a bundle.")
            return None
        labels = {r["run_id"]: frames.run_label(r) for r in runs.to_dict("records")}
        ids = list(labels)
        rid = st.selectbox("Run", ids, index=min(default_index, len(ids) - 1), key=f"diff-run-{side}",
                           format_func=labels.get)
        return loaders.profile(rid) if rid else None
    upload = st.file_uploader("Bundle", type=["zip"], key=f"diff-file-{side}")
    if upload is None:
        return None
    profiles = loaders.bundle_runs(upload.getvalue())
    if len(profiles) == 1:
        return profiles[0]
    labels = {p.run_id: f"{p.manifest.get('variant')} · {p.run_id}" for p in profiles}
    rid = st.selectbox("Run in the bundle", list(labels), key=f"diff-brun-{side}", format_func=labels.get,
                       index=min(default_index, len(labels) - 1))
    return next(p for p in profiles if p.run_id == rid)


def show_diff(a: RunProfile, b: RunProfile) -> None:
    d = diff_runs(a, b)
    wa, wb = a.manifest.get("workload"), b.manifest.get("workload")
    if wa != wb:
        st.warning(f"A is **{wa}** / {a.manifest.get('variant')} and B is **{wb}** / {b.manifest.get('variant')}: "
                   "different workloads do different maths, so their step times are not a like-for-like "
                   "comparison. Pick two runs of one workload to see what a change did.")
    c1, c2, c3 = st.columns(3)
    for col, side, info in ((c1, "A", d.a), (c2, "B", d.b)):
        col.metric(f"{side} median step ({info['variant']})",
                   "unavailable" if info["median_ms"] is None else f"{info['median_ms']:.4g} ms")
    if d.speedup:
        c3.metric("B vs A", f"{d.speedup:.2f}× faster" if d.speedup >= 1 else f"{1 / d.speedup:.2f}× slower")
    for note in d.notes:
        st.caption(note)

    st.markdown(f"#### Step time per category (ms per median step, from {d.category_source})")
    if d.category_source == "breakdown":
        st.altair_chart(charts.breakdown_bars(frames.category_frame(d.categories), "run", "category", "ms"),
                        width="stretch")
    st.dataframe(frames.readable(d.categories.round(4)), hide_index=True, width="stretch")

    st.markdown("#### Step-time distributions")
    if d.distributions.empty:
        st.caption("Neither run has measured steps.")
    else:
        st.altair_chart(charts.distribution_chart(d.distributions, "wall_ms", "run"), width="stretch")

    st.markdown(f"#### Ops ({d.ops_unit.replace('_', ' ')})")
    st.write(" · ".join(f"**{k}** {v}" for k, v in ops_summary(d.ops).items()))
    if d.ops.empty:
        st.caption("No op statistics: ops come from a TF profiler capture (profiled TF variants).")
    else:
        changes = frames.top_op_changes(d.ops)
        if not changes.empty:
            st.altair_chart(charts.ops_delta_chart(changes, "op_name", "delta_self_us_per_step", "status"),
                            width="stretch")
        status = st.multiselect("Show ops that are", list(OP_STATUSES),
                                default=[s for s in OP_STATUSES if s != "unchanged"])
        st.dataframe(frames.readable(d.ops[d.ops["status"].isin(status)]), hide_index=True, width="stretch")

    st.markdown("#### Findings")
    if d.findings.empty:
        st.caption("No findings in either run: no triage rule found a bottleneck in their stored analyses.")
    else:
        st.dataframe(frames.readable(d.findings), hide_index=True, width="stretch")


def main() -> None:
    st.title("Diff")
    st.caption("Two runs, or runs from bundles, side by side: what changed in the step, the ops and the findings.")
    runs = loaders.runs()
    left, right = st.columns(2)
    with left:
        a = pick("A", runs, 1)
    with right:
        b = pick("B", runs, 0)
    store = loaders.store()
    if a is None or b is None:
        st.info("Pick a run (or a bundle) for A and for B.")
    else:
        show_diff(a, b)
        stored = [p.run_id for p in (a, b) if p.run_dir is not None and p.run_dir.parent == store.home]
        if stored:
            export_button(store, stored, key="diff-export", label="Download these runs as a bundle")
    with st.expander("Import a bundle into the store"):
        import_uploader(store, key="diff-import")


ui.run_page(main)

"""Diff page: two runs (stored, or inside uploaded bundles) side by side: the step-time
delta per category, the step-time distributions overlaid, ops added/removed/increased/
decreased (HolisticTraceAnalysis's trace-diff categories) and findings that appeared or
disappeared. Plus a download of both runs as one bundle, and a bundle importer.

Thin: store / uploaded bundle -> ``profilers.diff.diff_runs`` -> chart builders ->
Streamlit. An uploaded bundle is validated whole by ``profilers.bundle`` and opened in a
temporary folder; nothing is written to the store unless Import is pressed. Never
imports tensorflow or pynvml.
"""
from __future__ import annotations

import hashlib
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from dashboard.export_button import export_button, import_uploader
from profilers import bundle
from profilers.diff import OP_STATUSES, diff_runs, ops_summary
from profilers.errors import SgdscopeError
from profilers.model import CATEGORIES, RunProfile
from profilers.store import RunStore

SOURCES = ("Stored run", "Bundle (.zip)")


# -- chart builders (pure: df + column names -> alt.Chart) ---------------------------------------
def category_delta_chart(df: pd.DataFrame, category: str, run: str, ms: str) -> alt.Chart:
    """Per category, A's and B's ms per median step as side-by-side bars."""
    cats = [c for c in CATEGORIES if c in set(df[category])]
    return (alt.Chart(df).mark_bar()
            .encode(y=alt.Y(f"{category}:N", sort=cats, title=None, axis=alt.Axis(labelLimit=220)),
                    yOffset=alt.YOffset(f"{run}:N"),
                    x=alt.X(f"{ms}:Q", title="ms per step (median)"),
                    color=alt.Color(f"{category}:N", sort=cats, legend=None),
                    opacity=alt.Opacity(f"{run}:N", scale=alt.Scale(range=[0.45, 1.0]),
                                        legend=alt.Legend(orient="bottom", title=None)),
                    tooltip=[run, category, alt.Tooltip(f"{ms}:Q", format=".4f")])
            .properties(height=alt.Step(18)))


def overlay_chart(df: pd.DataFrame, value: str, group: str) -> alt.Chart:
    """Step-time histograms of both runs, overlaid (not stacked)."""
    return (alt.Chart(df).mark_bar(opacity=0.55, binSpacing=0)
            .encode(x=alt.X(f"{value}:Q", bin=alt.Bin(maxbins=50), title="wall step time, ms"),
                    y=alt.Y("count():Q", stack=None, title="steps"),
                    color=alt.Color(f"{group}:N", legend=alt.Legend(orient="bottom", title=None)),
                    tooltip=[group, "count()"])
            .properties(height=240))


def ops_delta_chart(df: pd.DataFrame, op: str, delta: str, status: str) -> alt.Chart:
    """The largest self-time changes per op (B minus A)."""
    return (alt.Chart(df).mark_bar()
            .encode(y=alt.Y(f"{op}:N", sort="-x", title=None, axis=alt.Axis(labelLimit=320)),
                    x=alt.X(f"{delta}:Q", title="self time change, us per step"),
                    color=alt.Color(f"{status}:N", sort=list(OP_STATUSES), legend=alt.Legend(orient="bottom", title=None)),
                    tooltip=[op, status, alt.Tooltip(f"{delta}:Q", format=".2f")])
            .properties(height=alt.Step(22)))


# -- data for the charts ----------------------------------------------------------------------------
def category_frame(categories: pd.DataFrame) -> pd.DataFrame:
    rows = categories[categories["category"] != "total"]
    return pd.concat([pd.DataFrame({"category": rows["category"], "run": "A", "ms": rows["a_ms"]}),
                      pd.DataFrame({"category": rows["category"], "run": "B", "ms": rows["b_ms"]})],
                     ignore_index=True)


def top_op_changes(ops: pd.DataFrame, n: int = 15) -> pd.DataFrame:
    changed = ops[ops["status"] != "unchanged"]
    return changed.reindex(changed["delta_self_us_per_step"].abs().sort_values(ascending=False).index).head(n)


# -- picking a run ------------------------------------------------------------------------------------
def _bundle_runs(upload: Any) -> list[RunProfile]:
    """Runs of an uploaded bundle, opened once per upload (kept in the session)."""
    data = upload.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    opened = st.session_state.setdefault("diff_bundles", {})
    if digest not in opened:
        opened[digest] = bundle.open_bundle(data)
    return opened[digest]


def pick(side: str, store: RunStore, runs: pd.DataFrame, default_index: int) -> RunProfile | None:
    st.subheader(f"{side} ({'control' if side == 'A' else 'test'})")
    source = st.radio("Source", SOURCES, key=f"diff-src-{side}", horizontal=True)
    if source == SOURCES[0]:
        if runs.empty:
            st.info("No stored runs yet: run a workload, or pick a bundle.")
            return None
        labels = {r.run_id: f"{r.workload} · {r.variant} · {r.status} · {r.run_id}" for r in runs.itertuples()}
        ids = list(labels)
        rid = st.selectbox("Run", ids, index=min(default_index, len(ids) - 1), key=f"diff-run-{side}",
                           format_func=labels.get)
        return store.load(rid) if rid else None
    upload = st.file_uploader("Bundle", type=["zip"], key=f"diff-file-{side}")
    if upload is None:
        return None
    profiles = _bundle_runs(upload)
    if len(profiles) == 1:
        return profiles[0]
    labels = {p.run_id: f"{p.manifest.get('variant')} · {p.run_id}" for p in profiles}
    rid = st.selectbox("Run in the bundle", list(labels), key=f"diff-brun-{side}", format_func=labels.get,
                       index=min(default_index, len(labels) - 1))
    return next(p for p in profiles if p.run_id == rid)


# -- page ------------------------------------------------------------------------------------------------
def show_diff(a: RunProfile, b: RunProfile) -> None:
    d = diff_runs(a, b)
    c1, c2, c3 = st.columns(3)
    c1.metric(f"A median step ({d.a['variant']})", "n/a" if d.a["median_ms"] is None else f"{d.a['median_ms']:.3f} ms")
    c2.metric(f"B median step ({d.b['variant']})", "n/a" if d.b["median_ms"] is None else f"{d.b['median_ms']:.3f} ms")
    if d.speedup:
        c3.metric("B vs A", f"{d.speedup:.2f}x faster" if d.speedup >= 1 else f"{1 / d.speedup:.2f}x slower")
    for note in d.notes:
        st.caption(note)

    st.markdown(f"#### Step time per category (ms per median step, from {d.category_source})")
    cats = d.categories
    if d.category_source == "breakdown":
        st.altair_chart(category_delta_chart(category_frame(cats), "category", "run", "ms"), width="stretch")
    st.dataframe(cats, hide_index=True, width="stretch",
                 column_config={"delta_pct": st.column_config.NumberColumn("delta %", format="%.1f%%")})

    st.markdown("#### Step-time distributions")
    if d.distributions.empty:
        st.caption("Neither run has measured steps.")
    else:
        st.altair_chart(overlay_chart(d.distributions, "wall_ms", "run"), width="stretch")

    st.markdown(f"#### Ops ({d.ops_unit.replace('_', ' ')})")
    summary = ops_summary(d.ops)
    st.write(" · ".join(f"**{k}** {v}" for k, v in summary.items()))
    if d.ops.empty:
        st.caption("No op statistics: ops come from a TF profiler capture (profiled TF variants).")
    else:
        changes = top_op_changes(d.ops)
        if not changes.empty:
            st.altair_chart(ops_delta_chart(changes, "op_name", "delta_self_us_per_step", "status"), width="stretch")
        status = st.multiselect("Show ops that are", list(OP_STATUSES), default=[s for s in OP_STATUSES
                                                                               if s != "unchanged"])
        st.dataframe(d.ops[d.ops["status"].isin(status)], hide_index=True, width="stretch")

    st.markdown("#### Findings")
    if d.findings.empty:
        st.caption("No findings in either run (the Triage page or `sgdscope analyze` computes them).")
    else:
        st.dataframe(d.findings, hide_index=True, width="stretch")


def main() -> None:
    st.title("Diff")
    st.caption("Two runs, or runs from bundles, side by side: what changed in the step, the ops and the findings.")
    store = RunStore()
    try:
        runs = store.list()
    except SgdscopeError as exc:
        st.error(f"{exc.message} {exc.hint}")
        st.stop()
    left, right = st.columns(2)
    try:
        with left:
            a = pick("A", store, runs, 1)
        with right:
            b = pick("B", store, runs, 0)
    except SgdscopeError as exc:
        st.error(f"{exc.message} {exc.hint}")
        st.stop()
    if a is None or b is None:
        st.info("Pick a run (or a bundle) for A and for B.")
    else:
        show_diff(a, b)
        stored = [p.run_id for p in (a, b) if p.run_dir is not None and p.run_dir.parent == store.home]
        if stored:
            export_button(store, stored, key="diff-export", label="Download these runs as a bundle")
    with st.expander("Import a bundle into the store"):
        import_uploader(store, key="diff-import")


main()

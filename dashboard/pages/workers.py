"""Workers page: a distributed run's workers side by side, the straggler marked, and the
share of each step spent in collectives; plus a form to attach to a running job.

Runs with a per-worker view are the ``mirrored``/``multi_worker`` variants and attached
jobs (``sgdscope attach``). Thin: store -> ``profilers.scaleout`` / the run's
``workers`` table -> chart builders -> Streamlit. The attach form calls
``profilers.remote_capture.attach`` (a gRPC trace of the job's profiler servers; no
TensorFlow here). Never imports tensorflow or pynvml.
"""
from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from profilers import scaleout
from profilers.errors import SgdscopeError
from profilers.store import RunStore

DISTRIBUTED_VARIANTS = ("mirrored", "multi_worker")
PARTS = ("own work", "collectives")
METRIC_TEXT = {"non_collective_ms": "step time outside collectives", "step_ms": "wall step time"}


# -- chart builders (pure: df + column names -> alt.Chart) ---------------------------------------
def split_chart(df: pd.DataFrame, worker: str, part: str, ms: str, label: str) -> alt.Chart:
    """One bar per worker: its median step split into own work and collective time;
    ``label`` is text shown beside the bar (e.g. "straggler")."""
    base = alt.Chart(df).encode(y=alt.Y(f"{worker}:N", title=None, sort=None))
    bars = base.mark_bar().encode(
        x=alt.X(f"sum({ms}):Q", title="ms per step (median, traced steps)"),
        color=alt.Color(f"{part}:N", sort=list(PARTS), legend=alt.Legend(orient="bottom", title=None)),
        order=alt.Order("order:Q"),
        tooltip=[worker, part, alt.Tooltip(f"{ms}:Q", format=".2f")])
    text = base.transform_filter(f"datum.{label} != ''").transform_aggregate(
        total=f"sum({ms})", groupby=[worker, label]).mark_text(
        align="left", dx=4, fontWeight="bold", color="#c0392b").encode(x="total:Q", text=f"{label}:N")
    # A band per worker (alt.Step): Streamlit's "content" height drops a fixed pixel height
    # of a chart with a discrete axis.
    return (bars + text).properties(height=alt.Step(36))


def steps_chart(df: pd.DataFrame, worker: str, ms: str) -> alt.Chart:
    """Each worker's distribution of wall step times (measured steps), side by side."""
    return (alt.Chart(df).mark_boxplot(extent="min-max")
            .encode(x=alt.X(f"{ms}:Q", title="wall step time, ms"), y=alt.Y(f"{worker}:N", title=None),
                    color=alt.Color(f"{worker}:N", legend=None))
            .properties(height=alt.Step(36)))


# -- data for the charts ----------------------------------------------------------------------------
def split_frame(rows: list[dict[str, Any]], straggler_ids: set[int]) -> pd.DataFrame:
    out = []
    for r in rows:
        coll = (r.get("collective_ms") or {}).get("median")
        own = (r.get("non_collective_ms") or {}).get("median")
        if coll is None or own is None:
            own, coll = (r.get("step_ms") or {}).get("median"), None
        name = f"worker {r['worker']}"
        tag = "straggler" if r["worker"] in straggler_ids else ""
        out.append({"worker": name, "part": PARTS[0], "ms": own or 0.0, "order": 0, "tag": tag})
        if coll is not None:
            out.append({"worker": name, "part": PARTS[1], "ms": coll, "order": 1, "tag": tag})
    return pd.DataFrame(out)


def rows_frame(rows: list[dict[str, Any]], straggler_ids: set[int]) -> pd.DataFrame:
    def ms(d: Any, key: str = "median") -> Any:
        v = (d or {}).get(key)
        return None if v is None else round(v, 3)

    def pct(v: Any) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    return pd.DataFrame([{
        "worker": r["worker"], "straggler": r["worker"] in straggler_ids,
        "median step ms": ms(r.get("step_ms")), "p10 ms": ms(r.get("step_ms"), "p10"),
        "p90 ms": ms(r.get("step_ms"), "p90"), "own work ms": ms(r.get("non_collective_ms")),
        "collectives ms": ms(r.get("collective_ms")), "collective share": pct(r.get("collective_share")),
        "steps": r.get("steps"), "traced steps": r.get("traced_steps"),
        "where": r.get("address") or r.get("xplane") or "",
    } for r in rows])


# -- sections ----------------------------------------------------------------------------------------
def pick_run(store: RunStore) -> str | None:
    runs = store.list()
    runs = runs[runs["variant"].isin(DISTRIBUTED_VARIANTS) | (runs["source"] == "attach")] if not runs.empty else runs
    if runs.empty:
        st.info("No distributed run yet. Run one with `sgdscope run mlp --variants mirrored,multi_worker "
                "--param workers=2 --profile`, or attach to a running job below.")
        return None
    labels = {r.run_id: f"{r.variant} · {r.workload} · {r.status} · {r.run_id}" for r in runs.itertuples()}
    ids = list(labels)
    wanted = st.session_state.get("workers_run_id")
    return st.selectbox("Run", ids, index=ids.index(wanted) if wanted in ids else 0, format_func=labels.get)


def show_run(profile: Any) -> None:
    m = profile.manifest
    res = m.get("results") or {}
    rows = res.get("per_worker") or []
    if m.get("error"):
        st.error(m["error"])
    if not rows:
        reason = (m.get("capture") or {}).get("analysis_error") or (m.get("capture") or {}).get("unavailable_reason")
        st.info("This run has no per-worker data." + (f" Capture: {reason}" if reason else ""))
        return
    found = scaleout.stragglers(rows)
    lagging = {d["worker"] for d in found["workers"]}
    share = scaleout.collective_share(rows)
    spread = scaleout.spread(rows)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Workers", len(rows))
    med = (res.get("step_ms") or {}).get("median")
    c2.metric("Median step (worker 0)", "n/a" if med is None else f"{med:.2f} ms")
    c3.metric("Collective share of the step", "n/a" if share is None else f"{share:.0%}")
    ratio = spread.get("non_collective_ms_max_over_min") or spread.get("step_ms_max_over_min")
    c4.metric("Slowest / fastest", "n/a" if ratio is None else f"{ratio:.2f}x")
    if found["workers"]:
        w = found["workers"][0]
        st.warning(f"Straggler: **worker {w['worker']}**: {METRIC_TEXT[found['metric']]} median "
                   f"{w['median_ms']:.1f} ms, {w['over']:.0%} over the median of all workers "
                   f"({found['median_ms']:.1f} ms). The other workers wait for it in the all-reduce.")
    elif len(rows) > 1:
        st.success("No straggler: every worker is within 20% of the median of all workers.")
    st.subheader("Step time per worker: own work and collectives")
    st.altair_chart(split_chart(split_frame(rows, lagging), "worker", "part", "ms", "tag"), width="stretch")
    st.caption("In synchronous training every worker's wall step is as long as the slowest one's: the "
               "others wait inside the collective. The straggler is the worker with the most own work.")
    table = profile.table("workers")
    measured = table[~table["warmup"]] if not table.empty else table
    if not measured.empty:
        st.subheader("Wall step times, every measured step")
        frame = pd.DataFrame({"worker": [f"worker {w}" for w in measured["worker"]],
                              "wall_ms": measured["wall_us"].to_numpy() / 1e3})
        st.altair_chart(steps_chart(frame, "worker", "wall_ms"), width="stretch")
    st.dataframe(rows_frame(rows, lagging), hide_index=True, width="stretch")


def attach_form(store: RunStore) -> None:
    with st.form("attach_job"):
        addresses = st.text_input("Profiler servers", placeholder="localhost:6009,localhost:6010",
                                  help="HOST:PORT of each worker's tf.profiler.experimental.server "
                                       "(worker 0 first)")
        duration = st.number_input("Duration (ms)", min_value=100, max_value=60_000, value=2000, step=500)
        go = st.form_submit_button("Attach")
    if not go:
        return
    from profilers.remote_capture import attach

    try:
        with st.spinner(f"Tracing {addresses} for {int(duration)} ms…"):
            profile = attach(store, addresses, int(duration))
    except SgdscopeError as exc:
        st.error(f"{exc.message} {exc.hint}")
        return
    st.session_state["workers_run_id"] = profile.run_id
    st.success(f"Stored run {profile.run_id}.")


# -- page ------------------------------------------------------------------------------------------------
def main() -> None:
    st.title("Workers")
    st.caption("tf.distribute runs worker by worker: who is slow, and how much of each step goes to "
               "collectives (all-reduce).")
    store = RunStore()
    with st.expander("Attach to a running job"):
        attach_form(store)
    run_id = pick_run(store)
    if run_id is None:
        return
    try:
        profile = store.load(run_id)
    except SgdscopeError as exc:
        st.error(f"{exc.message} {exc.hint}")
        st.stop()
    show_run(profile)


if __name__ == "__main__":
    main()

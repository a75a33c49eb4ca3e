"""Workers page: a distributed run's workers side by side, the straggler marked, and the
share of each step spent in collectives; plus a form to attach to a running job.

Runs with a per-worker view are the ``mirrored``/``multi_worker`` variants and attached
jobs. Attaching is an ``attach`` experiment (``profilers.services.attach_job``): the
gRPC trace runs in a supervised worker, never in this script; the page polls it.
Thin: loaders -> ``profilers.scaleout`` -> frames -> charts. Must not import tensorflow
or pynvml.
"""
from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dashboard import charts, frames, loaders, ui
from profilers import scaleout, services

DISTRIBUTED_VARIANTS = ("mirrored", "multi_worker")
METRIC_TEXT = {"non_collective_ms": "step time outside collectives", "step_ms": "wall step time"}
ATTACH_KEY = "workers_attach"


def pick_run() -> str | None:
    runs = loaders.runs()
    runs = runs[runs["variant"].isin(DISTRIBUTED_VARIANTS) | (runs["source"] == "attach")] if not runs.empty else runs
    if runs.empty:
        st.info("No distributed run yet. Run one with `sgdscope run mlp --variants mirrored,multi_worker "
                "--param workers=2 --profile`, or attach to a running job below.")
        return None
    labels = {r["run_id"]: frames.run_label(r) for r in runs.to_dict("records")}
    ids = list(labels)
    wanted = st.session_state.get("workers_run_id")
    return st.selectbox("Run", ids, index=ids.index(wanted) if wanted in ids else 0, format_func=labels.get)


def show_run(profile: Any) -> None:
    m, res = profile.manifest, profile.manifest.get("results") or {}
    rows = res.get("per_worker") or []
    if m.get("status") != "ok":
        ui.run_error(m)
    if not rows:
        cap = m.get("capture") or {}
        reason = cap.get("analysis_error") or cap.get("unavailable_reason")
        st.info("This run has no per-worker data." + (f" Capture: {reason}" if reason else ""))
        return
    found, share, spread = scaleout.stragglers(rows), scaleout.collective_share(rows), scaleout.spread(rows)
    lagging = {d["worker"] for d in found["workers"]}
    med = (res.get("step_ms") or {}).get("median")
    ratio = spread.get("non_collective_ms_max_over_min") or spread.get("step_ms_max_over_min")
    for col, (label, value) in zip(st.columns(4), (
            ("Workers", len(rows)), ("Median step (worker 0)", "unavailable" if med is None else f"{med:.2f} ms"),
            ("Collective share of the step", "unavailable" if share is None else f"{share:.0%}"),
            ("Slowest / fastest", "unavailable" if ratio is None else f"{ratio:.2f}×"))):
        col.metric(label, value)
    if found["workers"]:
        w = found["workers"][0]
        st.warning(f"Straggler: **worker {w['worker']}**: {METRIC_TEXT[found['metric']]} median "
                   f"{w['median_ms']:.1f} ms, {w['over']:.0%} over the median of all workers "
                   f"({found['median_ms']:.1f} ms). The other workers wait for it in the all-reduce.")
    elif len(rows) > 1:
        st.success("No straggler: every worker is within 20% of the median of all workers.")
    st.subheader("Step time per worker: own work and collectives")
    st.altair_chart(charts.worker_split_chart(frames.worker_split_frame(rows, lagging), "worker", "part", "ms", "tag"),
                    width="stretch")
    st.caption("In synchronous training every worker's wall step is as long as the slowest one's: the "
               "others wait inside the collective. The straggler is the worker with the most own work.")
    table = profile.table("workers")
    measured = table[~table["warmup"].astype(bool)] if not table.empty else table
    if not measured.empty:
        st.subheader("Wall step times, every measured step")
        frame = pd.DataFrame({"worker": [f"worker {w}" for w in measured["worker"]],
                              "wall_ms": measured["wall_us"].to_numpy() / 1e3})
        st.altair_chart(charts.worker_steps_chart(frame, "worker", "wall_ms"), width="stretch")
    st.dataframe(frames.worker_rows_frame(rows, lagging), hide_index=True, width="stretch")


def attach_form() -> None:
    with st.form("attach_job"):
        addresses = st.text_input("Profiler servers", placeholder="localhost:6009,localhost:6010",
                                  help="HOST:PORT of each worker's tf.profiler.experimental.server (worker 0 first)")
        duration = st.number_input("Duration (ms)", min_value=100, max_value=60_000, value=2000, step=500)
        go = st.form_submit_button("Attach")
    if go:
        st.session_state[ATTACH_KEY] = services.attach_job(loaders.store(), addresses, int(duration)).experiment_id
    if st.session_state.get(ATTACH_KEY):
        watch_attach(st.session_state[ATTACH_KEY])


@st.fragment(run_every=1.0)
def watch_attach(experiment_id: str) -> None:
    state = loaders.handle(experiment_id).progress()
    if state["status"] == "running":
        st.caption(f"Attached: {state.get('phase') or 'starting'}…")
        return
    st.session_state.pop(ATTACH_KEY, None)
    if state["run_ids"]:
        st.session_state["workers_run_id"] = state["run_ids"][0]
    st.rerun()


def main() -> None:
    st.title("Workers")
    st.caption("tf.distribute runs worker by worker: who is slow, and how much of each step goes to "
               "collectives (all-reduce).")
    with st.expander("Attach to a running job"):
        attach_form()
    run_id = pick_run()
    if run_id is not None:
        show_run(loaders.profile(run_id))


ui.run_page(main)

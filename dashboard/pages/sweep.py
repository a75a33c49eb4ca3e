"""Sweep page: one workload over several problem sizes: where does the best TF variant
overtake NumPy, or how far away is that size?

Every size runs, one after another, in ONE worker (``profilers.services.start_sweep``:
TensorFlow imported once, the sweep's log says so; a waiting warm worker when there is
one). A fragment polls the sweep's handle; Stop cancels it. Results of any stored
sweep: median step per variant against size (log-log), the sizes where TF wins marked,
the summary sentence, the ratio table. Must not import tensorflow or pynvml.
"""
from __future__ import annotations

from typing import Any, Mapping

import streamlit as st

from dashboard import charts, frames, loaders, nav, ui
from profilers import services
from profilers.spec import DEFAULT_TIMEOUT_S, parse_param_args
from profilers.sweep import (crossover_distance, crossover_table, describe_crossover, list_sweeps, parse_grid,
                             sweep_log, sweep_points)

POLL_S = 1.0
SWEEP_KEY = "sweep_running"
BASELINE, TF_PREFIXES = "numpy", ("tf_", "keras")
#: Sizes offered first (``key=v1,v2`` lines, zipped): they reach the crossover with the default variants.
DEFAULT_SIZES = {"linreg": "m=3,100,1000,10000\nn=2,10,100,100"}
DEFAULT_FIXED = {"linreg": "steps=200"}
#: Variants offered first: the baseline, tf.function, and the whole loop under XLA (the one TF
#: variant that beats NumPy on a CPU), so the default sweep has a crossover to show.
DEFAULT_VARIANTS = ("numpy", "tf_function", "tf_graph_loop_xla")


def parse_lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace(";", "\n").splitlines() if line.strip()]


def sweep_form(registry: Mapping[str, Any]) -> None:
    names = sorted(registry)
    wname = st.selectbox("Workload", names, index=names.index("linreg") if "linreg" in names else 0,
                         key="sweep_workload")
    w = registry[wname]
    usable, missing = ui.variant_options(w)
    first = next((p for p in w.params.values() if p.kind is int and p.default), None)
    sizes_default = DEFAULT_SIZES.get(wname) or ("" if first is None else f"{first.name}={first.default},{first.default * 10}")
    with st.form(f"sweep_{wname}"):
        variants = st.multiselect("Variants", usable, help="The crossover needs numpy and at least one TF variant.",
                                  default=[v for v in DEFAULT_VARIANTS if v in usable] or usable[:2])
        c1, c2 = st.columns(2)
        sizes = c1.text_area("Sizes (one swept param per line: key=v1,v2,...; the lines are zipped)",
                             value=sizes_default, height=110,
                             help=f"e.g. m=3,100 and n=2,10 give the sizes 3×2 and 100×10. Params: {', '.join(w.params)}.")
        fixed = c2.text_area("Fixed params (key=value per line)", value=DEFAULT_FIXED.get(wname, ""), height=110)
        timeout_s = st.number_input("Timeout per size (s)", min_value=1.0, value=float(DEFAULT_TIMEOUT_S),
                                    step=30.0, format="%g")
        go = st.form_submit_button("Start sweep", type="primary")
    if missing:
        st.caption("Not available here: " + "; ".join(f"**{n}**: {r}" for n, r in missing.items()))
    if go:
        handle = services.start_sweep(loaders.store(), wname, list(variants), parse_grid(parse_lines(sizes)),
                                      parse_param_args(parse_lines(fixed)), float(timeout_s),
                                      pool=loaders.warm_pool())
        st.session_state[SWEEP_KEY] = handle.sweep_id


@st.fragment(run_every=POLL_S)
def running_panel(sweep_id: str) -> None:
    """Re-run every second while the sweep runs; a full rerun when it is over."""
    handle = services.sweep_handle(loaders.store(), sweep_id)
    state = handle.progress()
    if state["status"] != "running":
        st.rerun()
    st.subheader("Sweep running")
    st.progress(state["done"] / len(state["points"]), text=f"**{state['done']}/{len(state['points'])} sizes done**")
    current = next((p for p in state["points"] if p["status"] == "running"), None)
    if current:
        st.markdown(f"Size **{current['label']}**, phase: {current.get('phase') or 'starting'}")
        ui.progress_bars(loaders.handle(current["experiment_id"]).progress())
    if st.button("Stop sweep", key=f"stop_{sweep_id}"):
        handle.cancel()
        st.warning("Stop requested: the sweep's worker is being stopped.")


def results(focus: str | None) -> None:
    st.subheader("Stored sweeps")
    store = loaders.store()
    records = {r["sweep_id"]: r for r in list_sweeps(store)}
    if not records:
        st.info("No stored sweep yet. Start one above, or from a terminal: "
                "`sgdscope sweep linreg --variants numpy,tf_function --grid m=3,100,1000 --grid n=2,10,100`.")
        return
    if focus in records:
        st.query_params["sweep"] = focus
    sid = ui.synced_select("Sweep", list(records), key="sweep_pick", param="sweep", help="Newest first.",
                           format_func=lambda s: f"{s} · {records[s]['workload']}: {', '.join(records[s]['variants'])}")
    record = records[sid]
    points = sweep_points(store, record)
    drawn = points[(points["status"] == "ok") & points["median_ms"].notna()]
    table, summary = crossover_table(points, baseline=BASELINE, tf_prefixes=TF_PREFIXES)
    if drawn.empty:
        st.info("No size of this sweep has a measured step time yet (every run failed, or none finished).")
    elif "best_tf" not in table.columns:
        st.info(f"No crossover to find: it needs {BASELINE} and a TF variant that finished at the same size.")
    else:
        st.markdown(f"**{describe_crossover(summary, baseline=BASELINE)}**")
        distance = crossover_distance(table, summary)
        if distance:
            st.warning(distance)
    if not drawn.empty:
        marks = frames.crossover_marks(table, summary, BASELINE) if "best_tf" in table.columns else None
        st.altair_chart(charts.crossover_chart(drawn, "size", "median_ms", "variant", "label", marks), width="stretch")
        st.caption("Dashed green lines: the sizes where the best TF variant beats NumPy." if marks is not None
                   and not marks.empty else "One line per variant; no size where TF beats NumPy, so no mark.")
        st.dataframe(frames.readable(frames.ratio_table(table, record["variants"])), hide_index=True, width="stretch")
    failed = points[points["status"] != "ok"]
    if not failed.empty:
        st.warning("Runs that did not finish: " + "; ".join(
            f"{r['label']} / {r['variant']}: {r['status']}" for r in failed.to_dict("records")))
    with st.expander("Experiments and log of this sweep"):
        for exp in record["experiments"]:
            st.page_link(nav.path("compare"), label=f"{exp['label']} ({exp['experiment_id']})",
                         icon=":material/compare_arrows:", query_params={"exp": exp["experiment_id"]})
        st.code(sweep_log(store, record) or "no log (a sweep stored before sweeps had one)", language="text")


def main() -> None:
    st.title("Sweep")
    st.caption("One workload over growing problem sizes: where does the best TF variant overtake NumPy? "
               "Every size runs in one worker (TensorFlow imported once); this page polls it.")
    registry = loaders.workloads()
    sweep_id = st.session_state.get(SWEEP_KEY)
    with st.expander("New sweep", expanded=not sweep_id):
        sweep_form(registry)
    sweep_id = st.session_state.get(SWEEP_KEY)
    if sweep_id and services.sweep_handle(loaders.store(), sweep_id).progress()["status"] == "running":
        running_panel(sweep_id)
    results(sweep_id)


ui.run_page(main)

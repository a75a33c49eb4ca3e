"""Run page: one stored run in detail, under its experiment's verdict.

Every step on the run's clock (warm-up cut at the top of the axis), stacked by category,
with the utilization the samplers recorded on the same time axis (or why they could
not); a failed run's error and stderr tail; for a profiled TF run the stored facts, top
ops, one step's timeline per thread (xprof's trace_viewer@) and the trace JSON.
Thin: loaders -> frames -> charts. Must not import tensorflow or pynvml.
"""
from __future__ import annotations

import streamlit as st

from dashboard import charts, frames, loaders, nav, theme, ui
from dashboard.export_button import export_button
from profilers import verdict
from profilers.errors import SgdscopeError
from profilers.model import RunProfile

GANTT_MAX_EVENTS = 400


def pick_run() -> str | None:
    runs = loaders.runs()
    if runs.empty:
        st.info("No stored runs yet. Launch an experiment on the Launch page, or from a terminal: "
                "`sgdscope run linreg --variants numpy,python`.")
        st.page_link(nav.path("launch"), label="Launch an experiment", icon=":material/rocket_launch:")
        return None
    labels = {r["run_id"]: frames.run_label(r) for r in runs.to_dict("records")}
    return ui.synced_select("Run", list(labels), key="run_pick", param="run",
                            format_func=lambda r: labels[r], help="Newest first.")


def header(p: RunProfile) -> None:
    m = p.manifest
    res = m.get("results") or {}
    step = res.get("step_ms") or {}
    if m.get("experiment_id"):
        sub = m.get("variant") if verdict.is_tf(m.get("variant")) else None
        ui.verdict_box(verdict.for_profiles(loaders.experiment_profiles(m["experiment_id"]), subject=sub),
                       m.get("workload"))
    st.markdown(f"**{m.get('workload')} / {m.get('variant')}** {theme.status_badge(m.get('status'))} "
                f"{frames.correctness_badge(res.get('loss_matches_baseline'), res.get('baseline_variant'))}")
    med, p10, p90, loss = step.get("median"), step.get("p10"), step.get("p90"), res.get("final_loss")
    for col, (label, value) in zip(st.columns([1, 1.3, 1, 1]), (
            ("Median step", "unavailable" if med is None else f"{med:.4g} ms"),
            ("p10–p90 (ms)", "unavailable" if p10 is None or p90 is None else f"{p10:.3g}–{p90:.3g}"),
            ("Measured steps (after warm-up)", step.get("count", 0) if step else 0),
            ("Final loss", "unavailable" if loss is None else f"{loss:.6g}"))):
        col.metric(label, value)
    if m.get("status") != "ok":
        ui.run_error(m)
    with st.expander("Manifest summary", expanded=False):
        ui.facts(frames.run_facts(m, getattr(loaders.workloads().get(m.get("workload") or ""), "params", None)))


def timeline(p: RunProfile) -> None:
    st.subheader("Steps and utilization")
    steps = p.table("steps")
    if steps.empty:
        st.info("This run recorded no steps" + (" (it failed before its first step)."
                                                if p.manifest.get("status") != "ok" else "."))
        return
    bd = p.table("breakdown")
    samples = p.table("samples")
    cpu = frames.metric_frame(samples, frames.CPU_METRICS)
    rss = frames.metric_frame(samples, frames.MEMORY_METRICS)
    gpu = frames.metric_frame(samples, frames.gpu_util_metrics(samples))
    # One time axis: every panel gets the same x domain and the same plot width (legends
    # drawn in a column of their own, which would otherwise narrow each plot differently).
    domain = frames.time_domain_s(steps, samples)
    sf = frames.step_frame(steps, bd)
    cats = [c for c in theme.CATEGORY_ORDER if c in set(sf.loc[sf["ms"] > 0, "category"])]
    panels = [(charts.step_chart(sf, "start_s", "end_s", "ms_lo", "ms_hi", "category", frames.warmup_end_s(steps),
                                 x_domain=domain, legend=False, y_max=frames.measured_max_ms(steps)),
               charts.legend_chart(cats, theme.category_scale(cats)))]
    for df, title in ((cpu, "CPU %"), (rss, "RSS (MiB)"), (gpu, "GPU util %")):
        if not df.empty:
            labels = list(dict.fromkeys(df["label"]))
            panels.append((charts.metric_chart(df, "t_s", "value", "label", title, x_domain=domain, legend=False),
                           charts.legend_chart(labels, theme.metric_scale(labels))))
    for chart, legend in panels:
        left, right = st.columns([5, 1], vertical_alignment="center")
        left.altair_chart(chart, width="stretch")
        right.altair_chart(legend, width="stretch")
    st.caption(" ".join(frames.timeline_notes(p.manifest, steps, bd, cpu.empty and rss.empty)))
    gpu_ok, gpu_text = frames.sampler_status(p.manifest.get("samplers"), "gpu")
    if gpu.empty:
        st.info(f"GPU: {gpu_text}" if gpu_ok is not True else
                "GPU: the sampler was available but recorded no utilization reading.")


def trace_panel(p: RunProfile) -> None:
    st.subheader("Trace")
    cap = p.manifest.get("capture") or {}
    for w in cap.get("warnings") or []:
        st.warning(w.get("message", str(w)))
    xplane = p.xplane_path()
    if xplane is None:
        st.info(f"No TF trace: {cap.get('unavailable_reason') or 'this run was not profiled'}.")
        return
    ui.facts(frames.trace_facts(p.manifest))
    ops = p.table("ops")
    if not ops.empty:
        st.markdown("**Top ops by self time (profiler window)**")
        st.dataframe(frames.top_ops(ops, 15), hide_index=True, width="stretch")
    steps = p.table("steps")
    profiled = steps.loc[steps["in_profile_window"].astype(bool), "step"].astype(int).tolist()
    if profiled:
        step = st.selectbox("Timeline of profiled step", profiled, key="run_trace_step")
        try:
            events = loaders.step_events(p.run_id, int(step))
        except SgdscopeError as exc:
            st.warning(f"{exc.message} {exc.hint}".strip())
            events = None
        if events is not None and not events.empty:
            ev = frames.gantt_frame(events, GANTT_MAX_EVENTS)
            st.altair_chart(charts.gantt_chart(ev, "start_us", "end_us", "lane", "name"), width="stretch")
            st.caption(f"The {len(ev)} longest of {len(events)} events in this step, one row per thread; "
                       "the step's own span has a row of its own. Hover a bar for its name and duration.")
    # Built on click (a large capture's JSON is not read on every rerun).
    st.download_button("Download trace (Chrome/Perfetto JSON)", data=lambda: loaders.trace_json(p.run_id),
                       file_name=f"{p.run_id}.trace.json", mime="application/json", key="run_trace_json",
                       on_click="ignore", help="Opens in ui.perfetto.dev or chrome://tracing.")


def links(p: RunProfile) -> None:
    if p.manifest.get("experiment_id"):
        st.page_link(nav.path("compare"), label="Compare its experiment", icon=":material/compare_arrows:",
                     query_params={"exp": p.manifest["experiment_id"]})
    if nav.available("triage"):
        st.page_link(nav.path("triage"), label="Triage this run", icon=":material/troubleshoot:",
                     query_params={"run": p.run_id})


def main() -> None:
    st.title("Run")
    run_id = pick_run()
    if run_id is None:
        return
    p = loaders.profile(run_id)
    header(p)
    timeline(p)
    trace_panel(p)
    links(p)
    export_button(loaders.store(), [p.run_id], key="run_export")


ui.run_page(main)

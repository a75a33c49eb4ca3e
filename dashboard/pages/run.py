"""Run page: one stored run in detail.

Its manifest summary; every step on the run's clock (warm-up marked), stacked by
category when the run has a breakdown table; and under it, on the same time axis, the
utilization the samplers recorded (worker CPU %, RSS, GPU) or why a sampler could not
measure. A failed run shows its error and stderr tail. For a profiled TF run: capture
warnings (e.g. CUPTI), ops and dispatches per step, GFLOP/s against the GEMM peak, the
top ops, one step's timeline as a Gantt of trace events per thread (xprof's windowed
trace_viewer@), and the Chrome/Perfetto trace JSON to download.
Thin: loaders -> frames -> charts. Must not import tensorflow or pynvml.
"""
from __future__ import annotations

import streamlit as st

from dashboard import charts, frames, loaders, nav, theme, ui
from dashboard.export_button import export_button
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
    st.markdown(f"**{m.get('workload')} / {m.get('variant')}** {theme.status_badge(m.get('status'))} "
                f"{frames.correctness_badge(res.get('loss_matches_baseline'), res.get('baseline_variant'))}")
    c1, c2, c3, c4 = st.columns(4)
    med, p10, p90 = step.get("median"), step.get("p10"), step.get("p90")
    c1.metric("Median step", "n/a" if med is None else f"{med:.4g} ms")
    c2.metric("p10 – p90", "n/a" if p10 is None or p90 is None else f"{p10:.3g} – {p90:.3g} ms")
    c3.metric("Measured steps", step.get("count", 0) if step else 0,
              help="Steps after warm-up; the chart also shows the warm-up steps.")
    loss = res.get("final_loss")
    c4.metric("Final loss", "n/a" if loss is None else f"{loss:.6g}")
    if m.get("status") != "ok":
        st.error(f"This run {m.get('status')}: {m.get('error') or 'no reason recorded'}")
        tail = m.get("stderr_tail") or ""
        if tail.strip():
            st.markdown("**stderr (tail)**")
            st.code(tail, language="text")
        else:
            st.caption("No stderr was captured for this run.")
    with st.expander("Manifest summary", expanded=False):
        ui.facts(frames.run_facts(m))


def timeline(p: RunProfile) -> None:
    st.subheader("Steps and utilization")
    steps = p.table("steps")
    if steps.empty:
        st.info("This run recorded no steps" + (" (it failed before its first step)."
                                                if p.manifest.get("status") != "ok" else "."))
        return
    bd = p.table("breakdown")
    samples = p.table("samples")
    samplers = p.manifest.get("samplers") or {}
    cpu = frames.metric_frame(samples, frames.CPU_METRICS)
    rss = frames.metric_frame(samples, frames.MEMORY_METRICS)
    gpu = frames.metric_frame(samples, frames.gpu_util_metrics(samples))
    # One time axis: every panel gets the same x domain and the same plot width (legends
    # drawn in a column of their own, which would otherwise narrow each plot differently).
    domain = frames.time_domain_s(steps, samples)
    sf = frames.step_frame(steps, bd)
    cats = [c for c in theme.CATEGORY_ORDER if c in set(sf.loc[sf["ms"] > 0, "category"])]
    panels = [(charts.step_chart(sf, "start_s", "end_s", "ms_lo", "ms_hi", "category",
                                 frames.warmup_end_s(steps), x_domain=domain, legend=False),
               charts.legend_chart(cats, theme.category_scale(cats)))]
    for df, title in ((cpu, "CPU %"), (rss, "RSS (MiB)"), (gpu, "GPU util %")):
        if not df.empty:
            labels = list(dict.fromkeys(df["label"]))
            panels.append((charts.metric_chart(df, "t_s", "value", "label", title, x_domain=domain,
                                               legend=False),
                           charts.legend_chart(labels, theme.metric_scale(labels))))
    for chart, legend in panels:
        left, right = st.columns([5, 1], vertical_alignment="center")
        left.altair_chart(chart, width="stretch")
        right.altair_chart(legend, width="stretch")
    notes = []
    res = p.manifest.get("results") or {}
    if bd.empty:
        reason = res.get("breakdown_error")
        notes.append("No breakdown stored for this run" + (f": {reason}." if reason else "."))
    else:
        notes.append(f"Steps split by category (from {res.get('breakdown_source') or 'the breakdown table'}); "
                     f"gray steps have no breakdown.")
    if (steps["derived"].astype(bool)).any():
        notes.append("Some steps ran as one compiled block: each shows the block's mean wall time.")
    host_ok, host_text = frames.sampler_status(samplers, "host")
    if cpu.empty and rss.empty:
        span_s = float((steps["start_us"] + steps["wall_us"]).max()) / 1e6
        why = host_text if host_ok is False else (
            f"none recorded; the run lasted {span_s:.3g} s, and the sampler ticks every 0.1 s by default")
        notes.append(f"CPU/RSS: {why}.")
    st.caption(" ".join(notes))
    gpu_ok, gpu_text = frames.sampler_status(samplers, "gpu")
    if gpu.empty:
        st.info(f"GPU: {gpu_text}" if gpu_ok is not True else
                "GPU: the sampler was available but recorded no utilization reading.")


def trace_facts(p: RunProfile) -> list[tuple[str, str]]:
    res, cap = p.manifest.get("results") or {}, p.manifest.get("capture") or {}
    rows = [("breakdown from", res.get("breakdown_source") or "n/a")]
    if res.get("ops_per_step") is not None:
        rows.append(("ops per step", f"{res['ops_per_step']:.0f}"))
    if res.get("dispatches_per_step"):
        rows.append(("framework dispatches per step", f"{res['dispatches_per_step']:.0f}"))
        fo = (res.get("breakdown_ms") or {}).get("framework_overhead")
        if fo is not None:
            rows.append(("framework overhead per dispatch", f"{fo * 1e3 / res['dispatches_per_step']:.0f} µs"))
    gflops, peak = (res.get("gflops") or {}).get("compute"), res.get("gemm_peak_gflops")
    if gflops is not None:
        rows.append(("maths achieved", f"{gflops:.3g} GFLOP/s" + (f" (NumPy GEMM peak here: {peak:.3g})" if peak else "")))
    over = cap.get("overhead") or {}
    if over.get("ratio"):
        rows.append(("profiler's own cost", f"steps in the window {over['ratio']:.2f}× those outside"))
    return rows


def trace_panel(p: RunProfile) -> None:
    st.subheader("Trace")
    cap = p.manifest.get("capture") or {}
    for w in cap.get("warnings") or []:
        st.warning(w.get("message", str(w)))
    xplane = p.xplane_path()
    if xplane is None:
        st.info(f"No TF trace: {cap.get('unavailable_reason') or 'this run was not profiled'}.")
        return
    ui.facts(trace_facts(p))
    ops = p.table("ops")
    if not ops.empty:
        st.markdown("**Top ops by self time (profiler window)**")
        top = ops.sort_values("total_self_us", ascending=False).head(15)
        st.dataframe(top[["op_name", "op_type", "occurrences", "total_self_us", "avg_self_us"]]
                     .rename(columns={"total_self_us": "self µs (total)", "avg_self_us": "µs per occurrence"}),
                     hide_index=True, width="stretch")
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
            ev = events[events["dur_us"] > 0].nlargest(GANTT_MAX_EVENTS, "dur_us").copy()
            t0 = float(ev["ts_us"].min())
            ev["start_us"], ev["end_us"] = ev["ts_us"] - t0, ev["ts_us"] - t0 + ev["dur_us"]
            ev["lane"] = ev["thread"].astype(str)
            st.altair_chart(charts.gantt_chart(ev, "start_us", "end_us", "lane", "name"), width="stretch")
            if len(events) > len(ev):
                st.caption(f"The {len(ev)} longest of {len(events)} events in this step are drawn.")
    # Built on click (a large capture's JSON is not read on every rerun).
    st.download_button("Download trace (Chrome/Perfetto JSON)", data=lambda: loaders.trace_json(p.run_id),
                       file_name=f"{p.run_id}.trace.json", mime="application/json", key="run_trace_json",
                       on_click="ignore", help="Opens in ui.perfetto.dev or chrome://tracing.")


def links(p: RunProfile) -> None:
    exp = p.manifest.get("experiment_id")
    c1, c2, _ = st.columns([1, 1, 3])
    if exp:
        with c1:
            st.page_link(nav.path("compare"), label="Compare its experiment", icon=":material/compare_arrows:",
                         query_params={"exp": exp})
    if nav.available("triage"):
        st.session_state["triage_run_id"] = p.run_id  # the Triage page opens on this run
        with c2:
            st.page_link(nav.path("triage"), label="Triage", icon=":material/troubleshoot:")


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

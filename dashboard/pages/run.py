"""Run page: one stored run in detail.

Its manifest summary; every step on the run's clock (warm-up marked), stacked by
category when the run has a breakdown table; and under it, on the same time axis, the
utilization the samplers recorded (worker CPU %, RSS, GPU) or why a sampler could not
measure. A failed run shows its error and stderr tail.
Thin: loaders -> frames -> charts. Must not import tensorflow or pynvml.
"""
from __future__ import annotations

import streamlit as st

from dashboard import charts, frames, loaders, nav, theme, ui
from profilers.model import RunProfile


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
    links(p)


ui.run_page(main)

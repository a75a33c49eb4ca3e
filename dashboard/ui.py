"""Small Streamlit pieces every page shares: the error funnel, a selectbox kept in the
URL, the environment panel and sampler status lines, the widget generated from a
``Param`` declaration, a workload's usable variants, and a running experiment's progress
bars and Cancel button.

Uses ``st.*`` but caches nothing (that is ``dashboard.loaders``' job). Must not import
tensorflow or pynvml.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import streamlit as st

from dashboard import charts, frames, nav
from profilers.errors import SgdscopeError
from profilers.verdict import Verdict


def show_error(exc: SgdscopeError) -> None:
    st.error(f"{exc.message} {exc.hint}".strip())


def run_page(main: Callable[[], None]) -> None:
    """Run a page; a user error (``SgdscopeError``) is shown as its message and hint, and
    the page stops there. Anything else is a bug and keeps Streamlit's traceback."""
    try:
        main()
    except SgdscopeError as exc:
        show_error(exc)
        st.stop()


def synced_select(label: str, options: Sequence[str], *, key: str, param: str,
                  format_func: Callable[[str], str], help: str | None = None) -> str:
    """A selectbox whose choice is kept in the URL query param ``param`` (so a link such as
    ``?exp=...`` opens a given item) and survives a visit to another page."""
    options = list(options)
    kept_key = f"_{key}_kept"
    current = st.session_state.get(key)
    wanted = st.query_params.get(param)
    if wanted in options and wanted != current:
        current = wanted
    elif current not in options:
        kept = st.session_state.get(kept_key)
        current = kept if kept in options else options[0]
    st.session_state[key] = current

    def remember() -> None:
        st.session_state[kept_key] = st.session_state[key]
        st.query_params[param] = st.session_state[key]

    value = st.selectbox(label, options, key=key, format_func=format_func, on_change=remember, help=help)
    st.session_state[kept_key] = value
    if st.query_params.get(param) != value:
        st.query_params[param] = value
    return value


def facts(rows: Sequence[tuple[str, str]]) -> None:
    """Label/value pairs as a compact markdown list."""
    st.markdown("\n".join(f"- **{label}**: {_escape(value)}" for label, value in rows))


def environment_panel(env: Mapping[str, Any] | None, samplers: Mapping[str, Any] | None) -> None:
    """What decides the numbers: CPU, BLAS, TF threads, oneDNN, versions; and what the
    samplers could measure (GPU: available, or unavailable with its reason)."""
    with st.container(border=True):
        st.markdown("**Environment**")
        facts(frames.environment_rows(env))
        for name, label in (("host", "CPU/RSS sampling"), ("gpu", "GPU sampling")):
            _, text = frames.sampler_status(samplers, name)
            st.markdown(f"- **{label}**: {_escape(text)}")


# -- launching and watching (Launch, Input pipeline) ----------------------------------------
def param_widget(p: Any, value: Any, key: str) -> Any:
    """One input generated from a ``Param`` declaration (int, float, str with choices, bool)."""
    label, help_text = p.name, p.help
    if p.kind is bool:
        return st.checkbox(label, value=bool(value), help=help_text, key=key)
    if p.choices:
        choices = list(p.choices)
        return st.selectbox(label, choices, index=choices.index(value) if value in choices else 0,
                            help=help_text, key=key)
    if p.kind is int:
        minimum = None if p.minimum is None else int(math.ceil(p.minimum))
        return st.number_input(label, value=int(value), min_value=minimum, step=1, help=help_text, key=key)
    if p.kind is float:
        minimum = None if p.minimum is None else float(p.minimum)
        step = 10.0 ** math.floor(math.log10(abs(value))) if value else 0.1
        return st.number_input(label, value=None if value is None else float(value), min_value=minimum,
                               step=step, format="%g", placeholder="none", help=help_text, key=key)
    return st.text_input(label, value="" if value is None else str(value), help=help_text, key=key)


def variant_options(workload: Any) -> tuple[list[str], dict[str, str]]:
    """Variants that can run here, and the others with their reason."""
    ok, missing = [], {}
    for name, v in workload.variants.items():
        usable, reason = v.availability() if v.availability is not None else (True, None)
        if usable:
            ok.append(name)
        else:
            missing[name] = reason or "unavailable"
    return ok, missing


def progress_bars(state: Mapping[str, Any]) -> None:
    """One bar per variant. Step events are throttled (a few per second), so a variant
    that ended ``ok`` is shown whole, and one that failed at its last known step."""
    for name, v in state["variants"].items():
        status, total, done = v["status"], v.get("total"), v.get("done") or 0
        if status == "ok":
            frac, text = 1.0, f"done, {total} steps" if total else "done"
        elif status in ("pending", "running"):
            frac = min(1.0, done / total) if total else 0.0
            text = f"{status} · {done}/{total} steps" if total else status
        else:
            frac = min(1.0, done / total) if total else 0.0
            text = f"{status} after ≈{done}/{total} steps" if total else status
        st.progress(frac, text=f"**{name}** · {text}")


def running_experiment(handle: Any, title: str, cancel_key: str) -> Mapping[str, Any]:
    """A running experiment's heading, phase, progress bars and Cancel button; reruns the
    whole page once the experiment is over. ``handle`` is a ``profilers.session`` handle."""
    state = handle.progress()
    if state["status"] != "running":
        st.rerun()
    st.subheader(title)
    st.caption(f"Experiment {handle.experiment_id} · phase: {state.get('phase') or 'starting'}")
    progress_bars(state)
    if (handle.exp_dir / "cancel").exists():
        st.warning("Cancel requested: the worker is being stopped.")
    elif st.button("Cancel", key=cancel_key):
        handle.cancel()
        st.warning("Cancel requested: the worker is being stopped.")
    return state


def run_error(manifest: Mapping[str, Any]) -> None:
    """A run that did not finish: its status, reason and stderr tail."""
    st.error(f"**{manifest.get('variant')}** {manifest.get('status')}: {manifest.get('error') or 'no reason recorded'}")
    tail = manifest.get("stderr_tail") or ""
    if tail.strip():
        with st.expander(f"{manifest.get('variant')}: stderr tail"):
            st.code(tail, language="text")
    else:
        st.caption("No stderr was captured for this run.")


# -- live utilization of a running experiment (Launch, Input pipeline) --------------------------
LIVE_X = "seconds since the variant started"


def gpu_status_line(experiment_id: str, gpu_rows: bool, live_status: Mapping[str, Any] | None = None) -> str:
    """GPU status while running: live readings, else what the running worker's samplers
    reported at start, else the reason a stored run recorded. Never a zero."""
    from dashboard import loaders

    if gpu_rows:
        return "GPU: sampled (chart below)"
    if live_status and live_status.get("gpu"):
        return f"GPU: {frames.sampler_status(live_status, 'gpu')[1]}"
    stored = [p for p in loaders.experiment_profiles(experiment_id) if (p.manifest.get("samplers") or {}).get("gpu")]
    if stored:
        return f"GPU: {frames.sampler_status(stored[0].manifest['samplers'], 'gpu')[1]}"
    info, run_id = loaders.latest_sampler_status("gpu")
    if info is not None:
        return f"GPU: {frames.sampler_status({'gpu': info}, 'gpu')[1]} (as recorded by the last stored run, {run_id})"
    return "GPU: status not known yet: it is recorded when the first variant finishes."


def live_utilization(experiment_id: str, state: Mapping[str, Any]) -> None:
    """CPU % and RSS of each started variant so far (and GPU when sampled)."""
    from dashboard import loaders

    exp_dir = Path(loaders.handle(experiment_id).exp_dir)
    started = [n for n, v in state["variants"].items() if v["status"] != "pending"]
    frames_by = frames.live_frames({n: loaders.live_samples(exp_dir, n) for n in started})
    st.caption(gpu_status_line(experiment_id, not frames_by["gpu"].empty, state.get("samplers")))
    if frames_by["cpu"].empty and frames_by["rss"].empty:
        st.caption("No utilization samples yet (the sampler ticks every 0.1 s once a variant starts).")
        return
    cols = st.columns(2)
    for col, key, title in ((cols[0], "cpu", "CPU % (100 = 1 core)"), (cols[1], "rss", "RSS (MiB)"),
                            (st, "gpu", "GPU utilization %")):
        if not frames_by[key].empty:
            col.altair_chart(charts.metric_chart(frames_by[key], "t_s", "value", "series", title,
                                                 series_is_variant=True, x_title=LIVE_X), width="stretch")


# -- the answer: verdict and step-time comparison (Launch, Compare, Run) -----------------------
def verdict_box(verdict: Verdict, workload: str | None = None, partial: bool = False) -> None:
    """The verdict sentence, first thing on the page; when it names a run that would
    measure what is missing, a link to Launch with those variants chosen."""
    head = "Verdict so far" if partial else "Verdict"
    st.info(f"**{head}.** {_escape(verdict.text)}", icon=":material/gavel:")
    if verdict.suggest_variants and workload and not partial:
        st.page_link(nav.path("launch"), label=f"Launch {', '.join(verdict.suggest_variants)}",
                     icon=":material/rocket_launch:",
                     query_params={"workload": workload, "variants": ",".join(verdict.suggest_variants)})


def step_time_chart(summary: Any, empty_text: str) -> bool:
    """Median step per variant with its p10-p90 range (log axis); False when none."""
    ok = frames.measured_steps(summary)
    if ok.empty:
        st.caption(empty_text)
        return False
    st.altair_chart(charts.step_range_chart(ok, "variant", "median_ms", "p10_ms", "p90_ms"), width="stretch")
    return True


def escape(text: str) -> str:
    """Markdown-safe text (see ``_escape``)."""
    return _escape(text)


def _escape(text: str) -> str:
    """Keep Streamlit markdown from reading ``$``, ``*``, ``_`` or ``~`` in values."""
    for ch in ("\\", "$", "*", "_", "~", "`", "[", "]"):
        text = text.replace(ch, "\\" + ch)
    return text

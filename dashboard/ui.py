"""Small Streamlit pieces every page shares: the error funnel, a selectbox kept in the
URL, the environment panel and sampler status lines, the widget generated from a
``Param`` declaration, a workload's usable variants, and a running experiment's progress
bars and Cancel button.

Uses ``st.*`` but caches nothing (that is ``dashboard.loaders``' job). Must not import
tensorflow or pynvml.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import streamlit as st

from dashboard import frames
from profilers.errors import SgdscopeError


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


def _escape(text: str) -> str:
    """Keep Streamlit markdown from reading ``$``, ``*``, ``_`` or ``~`` in values."""
    for ch in ("\\", "$", "*", "_", "~", "`", "[", "]"):
        text = text.replace(ch, "\\" + ch)
    return text

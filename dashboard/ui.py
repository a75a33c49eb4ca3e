"""Small Streamlit pieces every page shares: the error funnel, a selectbox kept in the
URL, the environment panel and sampler status lines.

Uses ``st.*`` but caches nothing (that is ``dashboard.loaders``' job). Must not import
tensorflow or pynvml.
"""
from __future__ import annotations

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


def _escape(text: str) -> str:
    """Keep Streamlit markdown from reading ``$``, ``*``, ``_`` or ``~`` in values."""
    for ch in ("\\", "$", "*", "_", "~", "`", "[", "]"):
        text = text.replace(ch, "\\" + ch)
    return text

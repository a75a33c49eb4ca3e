"""Runs page: the stored history as a table, links to a run and its experiment, and
delete (two steps: choose, then confirm). Runs that cannot be read are listed as
``damaged`` with the reason, and can be deleted like any other; a rebuilt index is
reported once.

Thin: loaders (``RunStore.list`` / ``delete``) -> Streamlit. Must not import tensorflow
or pynvml.
"""
from __future__ import annotations

import streamlit as st

from dashboard import frames, loaders, nav, ui

PICK_KEY = "runs_delete_pick"
PENDING_KEY = "runs_delete_pending"
DONE_KEY = "runs_deleted"

COLUMNS = ["created_at", "workload", "variant", "status", "steps", "median_ms", "final_loss",
           "loss_matches_baseline", "experiment_id", "run_id", "source", "damage"]


def ask_confirm() -> None:
    st.session_state[PENDING_KEY] = list(st.session_state.get(PICK_KEY) or [])


def cancel() -> None:
    st.session_state.pop(PENDING_KEY, None)


def delete_pending() -> None:
    """Callback of the confirm button: delete, then clear the choice (before the rerun
    draws the widgets again)."""
    pending = st.session_state.pop(PENDING_KEY, [])
    for run_id in pending:
        loaders.delete_run(run_id)
    st.session_state[PICK_KEY] = []
    st.session_state[DONE_KEY] = pending


def delete_section(labels: dict[str, str]) -> None:
    st.subheader("Delete runs")
    done = st.session_state.pop(DONE_KEY, None)
    if done:
        st.success(f"Deleted {len(done)} run(s): {', '.join(done)}.")
    chosen = [r for r in st.session_state.get(PICK_KEY) or [] if r in labels]
    st.session_state[PICK_KEY] = chosen
    st.multiselect("Runs to delete", list(labels), key=PICK_KEY, format_func=lambda r: labels[r])
    pending = [r for r in st.session_state.get(PENDING_KEY) or [] if r in labels]
    if not pending:
        st.button("Delete selected…", disabled=not chosen, on_click=ask_confirm)
        return
    st.warning(f"Delete {len(pending)} run(s) for good? Their directories (tables, trace, logs) are "
               "removed from the store:\n\n" + "\n".join(f"- {labels[r]}" for r in pending))
    c1, c2, _ = st.columns([1, 1, 4])
    c1.button("Yes, delete", type="primary", on_click=delete_pending)
    c2.button("Cancel", on_click=cancel)


def damaged_section(runs) -> None:
    damaged = runs[runs["status"] == "damaged"]
    if damaged.empty:
        return
    st.warning(f"{len(damaged)} run(s) cannot be read and are set aside; every other run works. "
               "Delete them below, or re-import them from their bundles:\n\n"
               + "\n".join(f"- `{r.run_id}`: {r.damage}" for r in damaged.itertuples()))


def main() -> None:
    st.title("Runs")
    runs = loaders.all_runs()
    for notice in loaders.take_notices():
        st.warning(notice)
    if runs.empty:
        st.info(f"No stored runs in `{loaders.home()}` yet. Launch an experiment on the Launch page, or "
                "from a terminal: `sgdscope run linreg --variants numpy,python`. The store location "
                "is `SGDSCOPE_HOME`.")
        st.page_link(nav.path("launch"), label="Launch an experiment", icon=":material/rocket_launch:")
        return
    st.caption(f"{len(runs)} run(s) in `{loaders.home()}`, newest first.")
    damaged_section(runs)
    st.dataframe(runs[[c for c in COLUMNS if c in runs.columns]], hide_index=True, width="stretch",
                 column_config={"median_ms": st.column_config.NumberColumn("median ms", format="%.4g"),
                                "final_loss": st.column_config.NumberColumn("final loss", format="%.6g"),
                                "loss_matches_baseline": st.column_config.CheckboxColumn("loss ok")})
    labels = {r["run_id"]: frames.run_label(r) for r in runs.to_dict("records")}
    readable = list(runs.loc[runs["status"] != "damaged", "run_id"])
    if readable:
        with st.container(border=True):
            pick = st.selectbox("Open a run", readable, format_func=lambda r: labels[r])
            exp = runs.loc[runs["run_id"] == pick, "experiment_id"].iloc[0]
            c1, c2 = st.columns(2)
            with c1:
                st.page_link(nav.path("run"), label="Open in Run", icon=":material/timeline:",
                             query_params={"run": pick})
            if isinstance(exp, str) and exp:
                with c2:
                    st.page_link(nav.path("compare"), label="Compare its experiment",
                                 icon=":material/compare_arrows:", query_params={"exp": exp})
    with st.container(border=True):
        delete_section(labels)


ui.run_page(main)

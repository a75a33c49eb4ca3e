"""The what-if section of the Triage page (``sgdscope whatif``): the stored table and a
chart of step time per fix with its interval, and, only when script execution is allowed
(``SGDSCOPE_ALLOW_SCRIPTS=1``), a button that measures the fixes for the shown run's
script in the background (``profilers.services.start_whatif``).

Reads through ``loaders``, draws with ``charts``; never runs a process itself. Must never
bring in tensorflow or pynvml.
"""
from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard import charts, loaders
from profilers import services, whatif


def show_result(result: dict[str, Any]) -> None:
    st.subheader("What-if: each fix measured (sgdscope whatif)")
    st.caption(f"{result['summary']} {result['repeat']} runs of each, interleaved (experiment "
               f"{result['experiment_id']}). Step time per baseline step; the bar is the gain's 95% interval.")
    df = whatif.result_frame(result)
    if df.empty:
        st.info("No fix applied to this script; the reasons are in `sgdscope show` of its runs.")
        return
    st.altair_chart(charts.whatif_chart(df, "arm", "median_ms", "lo_ms", "hi_ms", "verdict"), width="stretch")
    st.dataframe(df.drop(columns=["lo_ms", "hi_ms"]), hide_index=True, width="stretch")
    skipped = [r for r in result.get("fixes") or [] if r.get("gain") is None]
    for r in skipped:
        st.caption(f"{r['fix']}: not applied: {r.get('reason')}")


def show(profile: Any, scripts_allowed: bool) -> None:
    """The run's stored what-if, or (scripts allowed, a script run) a button to measure it."""
    wi = profile.manifest.get("whatif") or {}
    if wi.get("result"):
        show_result(wi["result"])
        return
    if profile.manifest.get("source") != "script" or profile.manifest.get("status") != "ok" or wi:
        return
    st.subheader("What-if")
    if not scripts_allowed:
        st.caption("Measuring each fix reruns the script (`sgdscope whatif SCRIPT.py` in a terminal, "
                   "or start the server with SGDSCOPE_ALLOW_SCRIPTS=1).")
        return
    if st.button("Measure the fixes (what-if: reruns the script)", key="whatif-start"):
        log = services.start_whatif(loaders.store(), profile.run_id)
        st.success(f"Started: each fix runs 3 times beside the baseline; the table appears here when it "
                   f"is done (log: {log}).")

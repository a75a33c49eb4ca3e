"""sgdscope dashboard: ``streamlit run app.py``.

The entry point only sets the page up and runs the page chosen in the navigation
(``dashboard.nav``): Launch, Compare, Run, Runs (and Triage, Workers). Nothing heavy
happens here; the dashboard never imports tensorflow or pynvml: workloads run in a
supervised subprocess (``profilers.session``).
"""
from __future__ import annotations

import streamlit as st

from dashboard import nav

st.set_page_config(page_title="sgdscope", page_icon=":material/speed:", layout="wide")
st.navigation(nav.pages()).run()

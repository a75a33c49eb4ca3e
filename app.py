"""sgdscope dashboard: ``streamlit run app.py``.

The entry point only sets the page up and runs the page chosen in the navigation
(``dashboard.nav``), after making sure a warm worker waits for the next launch
(``profilers.warm``). The dashboard never imports tensorflow or pynvml: workloads run in
supervised subprocesses.
"""
from __future__ import annotations

import streamlit as st

from dashboard import loaders, nav

st.set_page_config(page_title="sgdscope", page_icon=":material/speed:", layout="wide")
# A worker with TensorFlow imported waits for the next launch (SGDSCOPE_WARM=0: none).
loaders.keep_warm()
st.navigation(nav.pages()).run()

"""The dashboard's chart builders are ``profilers.charts``: ONE set, with the theme
(``profilers.theme``), shared by the pages and ``report.html``. Re-exported here so pages
keep writing ``charts.step_range_chart(...)``. Must not import tensorflow or pynvml.
"""
from __future__ import annotations

from profilers.charts import *  # noqa: F401,F403

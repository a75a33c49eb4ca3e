"""The theme lives in ``profilers.theme`` (shared by the pages and ``report.html``);
re-exported here. Must not import tensorflow or pynvml.
"""
from __future__ import annotations

from profilers.theme import *  # noqa: F401,F403

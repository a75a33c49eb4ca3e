"""Run analysis: pure functions from a run's tables to its summary numbers.

Tables in, tables/dicts out: no I/O of its own (xprof conversion goes through
``profilers.xprof_tools``, which caches in the run directory), no streamlit, no altair,
no tensorflow.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def measured_steps(steps: pd.DataFrame) -> pd.DataFrame:
    """Steps that count for statistics: not warm-up."""
    return steps[~steps["warmup"].astype(bool)]


def step_stats(steps: pd.DataFrame) -> dict[str, Any]:
    """Median, p10, p90 and mean step wall time in ms over the non-warm-up steps."""
    wall_ms = measured_steps(steps)["wall_us"].to_numpy(dtype=float) / 1e3
    if wall_ms.size == 0:
        return {"median": None, "p10": None, "p90": None, "mean": None, "count": 0}
    p10, median, p90 = np.percentile(wall_ms, [10, 50, 90])
    return {"median": float(median), "p10": float(p10), "p90": float(p90),
            "mean": float(wall_ms.mean()), "count": int(wall_ms.size)}


def loss_matches(loss: float | None, baseline: float | None, rtol: float, atol: float) -> bool | None:
    """Whether ``loss`` agrees with the baseline's within float32 tolerance (None: no baseline)."""
    if baseline is None or loss is None:
        return None
    if not (math.isfinite(loss) and math.isfinite(baseline)):
        return False
    return bool(abs(loss - baseline) <= atol + rtol * abs(baseline))


def profile_overhead(steps: pd.DataFrame) -> dict[str, Any]:
    """The capture's own cost: median step inside the profiler window vs outside it."""
    m = measured_steps(steps)
    inside = m.loc[m["in_profile_window"].astype(bool), "wall_us"]
    outside = m.loc[~m["in_profile_window"].astype(bool), "wall_us"]
    if inside.empty or outside.empty:
        return {"inside_ms": None, "outside_ms": None, "ratio": None,
                "reason": "needs steps both inside and outside the profiler window"}
    ins, outs = float(inside.median()) / 1e3, float(outside.median()) / 1e3
    return {"inside_ms": ins, "outside_ms": outs, "ratio": ins / outs if outs > 0 else None,
            "reason": None}

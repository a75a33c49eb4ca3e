"""One theme for every chart: colors per step-time category, per variant and per status,
plus the chart sizes. Chart builders take their scales from here so a category or a
variant has the same color on every page.

Pure: no streamlit, no I/O. Must not import tensorflow or pynvml.
"""
from __future__ import annotations

import zlib
from typing import Iterable, Sequence

import altair as alt

from profilers.model import CATEGORIES

#: Pseudo-categories of the per-step chart: steps that have no category split.
WARMUP = "warm-up"
UNATTRIBUTED = "no breakdown"

CATEGORY_COLORS: dict[str, str] = {
    "input_wait": "#e45756",
    "forward": "#4c78a8",
    "backward": "#72b7b2",
    "optimizer_update": "#54a24b",
    "framework_overhead": "#f58518",
    "cpu_contention": "#bab0ac",
    "host_device_transfer": "#b279a2",
    "compile_trace": "#eeca3b",
    "other": "#9d755d",
    WARMUP: "#d0d0d0",
    UNATTRIBUTED: "#8c8c8c",
}
assert all(c in CATEGORY_COLORS for c in CATEGORIES), "every category needs a color"

#: Categories in display order, then the pseudo-categories.
CATEGORY_ORDER: tuple[str, ...] = (*CATEGORIES, WARMUP, UNATTRIBUTED)

#: Variants of the built-in workloads keep these colors everywhere.
VARIANT_COLORS: dict[str, str] = {
    "numpy": "#1f77b4",
    "python": "#8c564b",
    "numpy_blas": "#17becf",
    "tf_eager": "#d62728",
    "tf_function": "#ff7f0e",
    "tf_xla": "#2ca02c",
    "tf_graph_loop": "#9467bd",
    "tf_graph_loop_xla": "#e377c2",
    "keras_fit": "#bcbd22",
}
#: Colors for other variants (plugins, input_pipeline, toy), picked by a stable hash.
FALLBACK_COLORS: tuple[str, ...] = (
    "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d",
    "#31a354", "#756bb1", "#636363", "#6baed6", "#fd8d3c", "#74c476", "#9e9ac8",
)

STATUS_COLORS: dict[str, str] = {"ok": "green", "failed": "red", "timeout": "orange",
                                 "cancelled": "gray"}

#: Chart sizes (px). Streamlit fits a chart into its ``height``, axes and legend included.
ROW_HEIGHT = 40
AXIS_HEIGHT = 60
LEGEND_ROW_PX = 20
STEP_CHART_HEIGHT = 300
UTIL_CHART_HEIGHT = 170
LOSS_CHART_HEIGHT = 300
#: Width of every y axis of the charts stacked on one time axis.
Y_AXIS_PX = 56


def rows_height(rows: int) -> int:
    """Height of a chart with one band per row, plus its x axis."""
    return ROW_HEIGHT * max(1, rows) + AXIS_HEIGHT


def legend_height(entries: int) -> int:
    """Height a vertical legend of ``entries`` needs."""
    return LEGEND_ROW_PX * max(1, entries) + 40  # + the x axis under the plot, which shares the height


def variant_colors(variants: Iterable[str]) -> dict[str, str]:
    """Color per variant: fixed for known variants, else a stable hash into the fallback
    palette, probing past colors already taken in this set (no two alike in one chart)."""
    names = list(dict.fromkeys(variants))
    out = {v: VARIANT_COLORS[v] for v in names if v in VARIANT_COLORS}
    taken = set(out.values())
    for v in sorted(n for n in names if n not in VARIANT_COLORS):
        i = zlib.crc32(v.encode("utf-8")) % len(FALLBACK_COLORS)
        for k in range(len(FALLBACK_COLORS)):
            color = FALLBACK_COLORS[(i + k) % len(FALLBACK_COLORS)]
            if color not in taken:
                break
        out[v] = color
        taken.add(color)
    return {v: out[v] for v in names}


def variant_scale(variants: Sequence[str]) -> alt.Scale:
    colors = variant_colors(variants)
    return alt.Scale(domain=list(colors), range=list(colors.values()))


def category_scale(categories: Sequence[str] | None = None) -> alt.Scale:
    """Category colors in CATEGORY_ORDER; ``categories`` limits the legend to those present."""
    present = set(CATEGORY_ORDER if categories is None else categories)
    domain = [c for c in CATEGORY_ORDER if c in present]
    return alt.Scale(domain=domain, range=[CATEGORY_COLORS[c] for c in domain])


def status_badge(status: str | None) -> str:
    """Streamlit markdown badge for a run status."""
    color = STATUS_COLORS.get(status or "", "gray")
    return f":{color}-badge[{status or 'unknown'}]"


#: Utilization lines (worker process, machine, RSS, GPU ...), in the order given.
METRIC_PALETTE: tuple[str, ...] = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2")


def metric_scale(labels: Sequence[str]) -> alt.Scale:
    names = list(dict.fromkeys(labels))
    return alt.Scale(domain=names, range=[METRIC_PALETTE[i % len(METRIC_PALETTE)] for i in range(len(names))])

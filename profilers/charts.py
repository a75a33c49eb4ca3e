"""Chart builders: ``(df, column names) -> alt.Chart``, colors from ``profilers.theme``.

The ONE set of builders: the dashboard's pages (``dashboard.charts`` re-exports this
module) and the offline ``report.html`` (``profilers.report``) draw with these, so a chart
reads the same everywhere. Each builder draws what it is given and nothing else: no
loading, no statistics beyond what Vega-Lite does for display. Must not import
tensorflow, pynvml or streamlit.
"""
from __future__ import annotations

import altair as alt
import pandas as pd

from profilers import theme

TIME_TITLE = "seconds since the run started"


def step_range_chart(df: pd.DataFrame, variant: str, median: str, p10: str, p90: str) -> alt.LayerChart:
    """Median step time per variant (dot, labelled) with its p10-p90 range (bar), log x."""
    order = list(df[variant])
    scale = theme.variant_scale(order)
    x_scale = alt.Scale(type="log")
    lo, hi = float(df[[p10, median]].min().min()), float(df[[p90, median]].max().max())
    ticks = log_ticks(lo, hi)
    base = alt.Chart(df).encode(
        y=alt.Y(f"{variant}:N", sort=order, title=None),
        color=alt.Color(f"{variant}:N", scale=scale, legend=None),
        tooltip=[alt.Tooltip(f"{variant}:N"), alt.Tooltip(f"{median}:Q", format=".4g", title="median ms"),
                 alt.Tooltip(f"{p10}:Q", format=".4g", title="p10 ms"),
                 alt.Tooltip(f"{p90}:Q", format=".4g", title="p90 ms")])
    rng = base.mark_rule(strokeWidth=4, opacity=0.55).encode(
        x=alt.X(f"{p10}:Q", scale=x_scale, title="ms per step (median, p10–p90; log scale)",
                axis=alt.Axis(values=ticks, format="~g")),
        x2=f"{p90}:Q")
    dot = base.mark_point(filled=True, size=110, opacity=1).encode(x=alt.X(f"{median}:Q", scale=x_scale))
    label = base.mark_text(align="left", dx=9, dy=-9, fontSize=11).encode(
        x=alt.X(f"{median}:Q", scale=x_scale), text=alt.Text(f"{median}:Q", format=".3g"))
    return (rng + dot + label).properties(height=theme.rows_height(len(order)))


def log_ticks(lo_ms: float, hi_ms: float) -> list[float]:
    """1-3-10 ticks covering ``lo_ms``..``hi_ms`` (a log axis readable at a glance)."""
    import math

    k0, k1 = math.floor(math.log10(lo_ms)), math.ceil(math.log10(hi_ms))
    return [m * 10.0 ** k for k in range(k0, k1 + 1) for m in (1, 3) if m * 10.0 ** k <= 10.0 ** k1]


def loss_chart(df: pd.DataFrame, step: str, loss: str, variant: str) -> alt.Chart:
    """Loss per step, one line per variant (lines that coincide agree)."""
    variants = list(dict.fromkeys(df[variant]))
    return (alt.Chart(df).mark_line(strokeWidth=2, opacity=0.8)
            .encode(x=alt.X(f"{step}:Q", title="step"),
                    y=alt.Y(f"{loss}:Q", title="loss", scale=alt.Scale(zero=False)),
                    color=alt.Color(f"{variant}:N", scale=theme.variant_scale(variants),
                                    legend=alt.Legend(orient="right", title=None)),
                    strokeDash=alt.StrokeDash(f"{variant}:N", legend=None),
                    tooltip=[variant, step, alt.Tooltip(f"{loss}:Q", format=".6g")])
            .properties(height=theme.LOSS_CHART_HEIGHT))


def breakdown_bars(df: pd.DataFrame, variant: str, category: str, ms: str, share: bool = False) -> alt.Chart:
    """One horizontal bar per variant, split into categories (CATEGORIES order); with
    ``share`` each bar is scaled to 100 % (variants of very different speeds)."""
    variants = list(dict.fromkeys(df[variant]))
    present = list(dict.fromkeys(df.loc[df[ms] > 0, category])) or list(df[category])
    order_expr = f"indexof({list(theme.CATEGORY_ORDER)!r}, datum['{category}'])"
    return (alt.Chart(df[df[ms] > 0]).mark_bar()
            .transform_calculate(cat_order=order_expr)
            .encode(y=alt.Y(f"{variant}:N", sort=variants, title=None),
                    x=alt.X(f"{ms}:Q", stack="normalize" if share else "zero",
                            title="share of the step" if share else "ms per step (median over steps, per category)",
                            axis=alt.Axis(format="%") if share else alt.Axis()),
                    color=alt.Color(f"{category}:N", scale=theme.category_scale(present),
                                    legend=alt.Legend(orient="right", title=None)),
                    order=alt.Order("cat_order:Q"),
                    tooltip=[variant, category, alt.Tooltip(f"{ms}:Q", format=".4g")])
            .properties(height=max(theme.rows_height(len(variants)), theme.legend_height(len(present)))))


def step_chart(df: pd.DataFrame, start: str, end: str, lo: str, hi: str, category: str,
               warmup_end: float | None = None, x_domain: tuple[float, float] | None = None,
               legend: bool = True, y_max: float | None = None) -> alt.LayerChart | alt.Chart:
    """Each step as a bar spanning its wall time on the run's clock (x: ``start``..``end``),
    its height the step's ms split into categories (``lo``..``hi``), warm-up in gray and
    its end marked. Give charts meant to line up one ``x_domain`` and draw their legends
    apart (``legend=False`` + ``legend_chart``): a legend inside would narrow the plot.
    ``y_max`` (``frames.measured_max_ms``) tops the axis at the measured steps: a longer
    warm-up step is cut there instead of flattening them."""
    present = list(dict.fromkeys(df[category]))
    y_scale = alt.Scale(domain=[0, y_max], nice=False) if y_max else alt.Scale()
    bars = (alt.Chart(df).mark_bar(stroke=None, clip=True)
            .encode(x=alt.X(f"{start}:Q", title=TIME_TITLE, scale=_time_scale(x_domain)), x2=f"{end}:Q",
                    y=alt.Y(f"{lo}:Q", title="ms per step", axis=_y_axis(), scale=y_scale), y2=f"{hi}:Q",
                    color=alt.Color(f"{category}:N", scale=theme.category_scale(present),
                                    legend=alt.Legend(orient="right", title=None) if legend else None),
                    tooltip=[alt.Tooltip("step:Q"), alt.Tooltip(f"{category}:N"),
                             alt.Tooltip("ms:Q", format=".4g", title="ms"),
                             alt.Tooltip("derived:N", title="block average")])
            .properties(height=theme.STEP_CHART_HEIGHT))
    if warmup_end is None or (x_domain is not None and not x_domain[0] <= warmup_end <= x_domain[1]):
        return bars
    mark = pd.DataFrame({"x": [warmup_end], "text": ["warm-up ends"]})
    rule = alt.Chart(mark).mark_rule(strokeDash=[4, 3], color="#555").encode(x="x:Q")
    text = alt.Chart(mark).mark_text(align="left", dx=4, baseline="top", color="#555").encode(
        x="x:Q", y=alt.value(2), text="text:N")
    return alt.layer(bars, rule, text)


def metric_chart(df: pd.DataFrame, t: str, value: str, series: str, y_title: str,
                 series_is_variant: bool = False, x_title: str = TIME_TITLE,
                 x_domain: tuple[float, float] | None = None, legend: bool = True) -> alt.Chart:
    """Lines of one kind of utilization over time, one per ``series`` (a metric label, or
    a variant when ``series_is_variant``). Give charts meant to line up one ``x_domain``
    and ``legend=False`` (see ``step_chart``)."""
    names = list(dict.fromkeys(df[series]))
    scale = theme.variant_scale(names) if series_is_variant else theme.metric_scale(names)
    return (alt.Chart(df).mark_line(strokeWidth=1.5, interpolate="step-after", clip=True)
            .encode(x=alt.X(f"{t}:Q", title=x_title, scale=_time_scale(x_domain)),
                    y=alt.Y(f"{value}:Q", title=y_title, axis=_y_axis()),
                    color=alt.Color(f"{series}:N", scale=scale,
                                    legend=alt.Legend(orient="right", title=None) if legend else None),
                    tooltip=[series, alt.Tooltip(f"{t}:Q", format=".2f"),
                             alt.Tooltip(f"{value}:Q", format=".1f")])
            .properties(height=theme.UTIL_CHART_HEIGHT))


def _time_scale(domain: tuple[float, float] | None) -> alt.Scale:
    return alt.Scale(domain=list(domain), nice=False) if domain is not None else alt.Scale(zero=False)


def _y_axis() -> alt.Axis:
    """A y axis of fixed width, so charts stacked on one page share their plot's left edge."""
    return alt.Axis(minExtent=theme.Y_AXIS_PX, maxExtent=theme.Y_AXIS_PX)


def legend_chart(labels: list[str], scale: alt.Scale) -> alt.LayerChart:
    """A legend on its own (a colored square and its label per entry), for charts drawn
    with ``legend=False`` so that their plots keep one width."""
    df = pd.DataFrame({"label": labels, "i": range(len(labels))})
    base = alt.Chart(df).encode(y=alt.Y("i:O", axis=None))
    squares = base.mark_square(size=90).encode(
        x=alt.value(8), color=alt.Color("label:N", scale=scale, legend=None))
    text = base.mark_text(align="left", dx=0, fontSize=11).encode(x=alt.value(20), text="label:N")
    return (squares + text).properties(height=theme.legend_height(len(labels)))


# -- crossover sweep (Sweep page) ------------------------------------------------------------
def crossover_chart(df: pd.DataFrame, size: str, ms: str, variant: str, label: str,
                    marks: pd.DataFrame | None = None, mark_size: str = "size",
                    mark_text: str = "text") -> alt.LayerChart:
    """Median step time against problem size, one line per variant, both axes log.
    ``marks`` (``mark_size``, ``mark_text``): sizes to mark with a dashed rule and a note
    (where the best TF variant beats NumPy, and where it overtakes it)."""
    variants = list(dict.fromkeys(df[variant]))
    lo, hi = float(df[ms].min()), float(df[ms].max())
    x = alt.X(f"{size}:Q", scale=alt.Scale(type="log"), title="problem size (product of the swept params; log)",
              axis=alt.Axis(format="~s"))
    y = alt.Y(f"{ms}:Q", scale=alt.Scale(type="log"), title="median ms per step (log)",
              axis=alt.Axis(values=log_ticks(lo, hi), format="~g"))
    base = alt.Chart(df).encode(
        x=x, y=y, color=alt.Color(f"{variant}:N", scale=theme.variant_scale(variants),
                                  legend=alt.Legend(orient="bottom", title=None)),
        tooltip=[alt.Tooltip(f"{label}:N", title="size"), alt.Tooltip(f"{variant}:N"),
                 alt.Tooltip(f"{ms}:Q", format=".4g", title="median ms")])
    layers: list[alt.Chart] = [base.mark_line(strokeWidth=2, opacity=0.8),
                               base.mark_point(filled=True, size=60, opacity=1)]
    if marks is not None and not marks.empty:
        color = theme.STATUS_COLORS["ok"]
        rule = alt.Chart(marks).mark_rule(strokeDash=[5, 3], color=color, strokeWidth=1.5).encode(
            x=alt.X(f"{mark_size}:Q", scale=alt.Scale(type="log")),
            tooltip=[alt.Tooltip(f"{mark_text}:N", title="mark")])
        text = alt.Chart(marks).mark_text(align="left", dx=4, baseline="top", color=color, fontSize=11).encode(
            x=alt.X(f"{mark_size}:Q", scale=alt.Scale(type="log")), y=alt.value(4), text=f"{mark_text}:N")
        layers += [rule, text]
    return alt.layer(*layers).properties(height=theme.STEP_CHART_HEIGHT)


# -- tf.data fixes (Input pipeline page) ------------------------------------------------
def ladder_chart(df: pd.DataFrame, rung: str, ms: str, share: str, speedup_text: str) -> alt.LayerChart:
    """One bar per pipeline variant (naive plus one fix each, not cumulative) (x in the frame's order): its median step (left axis, labelled with
    ``speedup_text``), and the stall share as a line over it (right axis, 0-100 %). Rungs
    whose share was not measured have no point on the line (never a 0)."""
    order = list(df[rung])
    x = alt.X(f"{rung}:N", sort=order, title="pipeline variant (naive plus one fix each; all: every fix)",
              axis=alt.Axis(labelAngle=0))
    tooltip = [alt.Tooltip(f"{rung}:N"), alt.Tooltip(f"{ms}:Q", format=".4g", title="median ms"),
               alt.Tooltip(f"{share}:Q", format=".1%", title="stall share"),
               alt.Tooltip(f"{speedup_text}:N", title="vs naive")]
    bars = alt.Chart(df).mark_bar(opacity=0.85).encode(
        x=x, y=alt.Y(f"{ms}:Q", title="median ms per step", axis=_y_axis()),
        color=alt.Color(f"{rung}:N", scale=theme.variant_scale(order), legend=None), tooltip=tooltip)
    labels = alt.Chart(df).mark_text(baseline="bottom", dy=-3, fontSize=11).encode(
        x=x, y=alt.Y(f"{ms}:Q"), text=alt.Text(f"{speedup_text}:N"))
    stall_color = theme.CATEGORY_COLORS["input_wait"]
    measured = df[df[share].notna()]
    line = alt.Chart(measured).encode(
        x=x, y=alt.Y(f"{share}:Q", title="stall share (time in next(iterator))",
                     scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%", titleColor=stall_color)),
        tooltip=tooltip)
    stall = line.mark_line(color=stall_color, strokeWidth=2) + line.mark_point(color=stall_color, filled=True, size=70)
    return (alt.layer(bars + labels, stall).resolve_scale(y="independent")
            .properties(height=theme.STEP_CHART_HEIGHT))


def gantt_chart(df: pd.DataFrame, start: str, end: str, lane: str, label: str) -> alt.LayerChart:
    """Trace events of one step as bars per thread (``lane``) from ``start`` to ``end``
    (µs from the step's start), coloured by event ``label`` and labelled on the bar where
    it is wide enough (the colour legend would list hundreds of names; the tooltip has
    each). ``frames.gantt_frame`` puts the enclosing step span in a lane of its own."""
    lanes = list(dict.fromkeys(["step", *df[lane]])) if "step" in set(df[lane]) else list(dict.fromkeys(df[lane]))
    base = alt.Chart(df).encode(x=alt.X(f"{start}:Q", title="µs since the step started"),
                                y=alt.Y(f"{lane}:N", title="thread", sort=lanes, axis=alt.Axis(labelLimit=200)))
    bars = base.mark_bar(height=alt.RelativeBandSize(0.8)).encode(
        x2=f"{end}:Q", color=alt.Color(f"{label}:N", legend=None),
        tooltip=[alt.Tooltip(f"{label}:N", title="event"), alt.Tooltip(f"{lane}:N", title="thread"),
                 alt.Tooltip("dur_us:Q", format=".4g", title="µs")])
    span = float(df[end].max()) if not df.empty else 1.0
    wide = df[(df[end] - df[start]) >= 0.08 * span]
    text = alt.Chart(wide).mark_text(align="left", dx=3, fontSize=10, color="black", limit=160).encode(
        x=alt.X(f"{start}:Q"), y=alt.Y(f"{lane}:N", sort=lanes), text=f"{label}:N")
    return alt.layer(bars, text).properties(height=alt.Step(22))


# -- shares, distributions, diffs (Triage, Diff, report.html) ------------------------------------
def share_bar(df: pd.DataFrame, part: str, share: str) -> alt.LayerChart:
    """One bar split into parts that add up to 1 (a finding's share and the rest), each
    part labelled with its percentage at ``mid`` (frames.share_frame adds ``row``, ``mid``
    and ``order``). Height leaves room for the axis, so the bar draws."""
    parts = list(df[part])
    colors = [theme.CATEGORY_COLORS["framework_overhead"], "#d0d0d0", *theme.METRIC_PALETTE][:len(parts)]
    base = alt.Chart(df)
    bar = base.mark_bar(height=alt.RelativeBandSize(0.7)).encode(
        x=alt.X(f"{share}:Q", stack="zero", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title=None),
        y=alt.Y("row:N", axis=None), color=alt.Color(f"{part}:N", scale=alt.Scale(domain=parts, range=colors),
                                                    legend=alt.Legend(orient="right", title=None, labelLimit=260)),
        order=alt.Order("order:Q"), tooltip=[part, alt.Tooltip(f"{share}:Q", format=".1%")])
    text = base.mark_text(color="black", fontSize=11).encode(
        x=alt.X("mid:Q", scale=alt.Scale(domain=[0, 1])), y=alt.Y("row:N", axis=None),
        text=alt.Text(f"{share}:Q", format=".0%"))
    return alt.layer(bar, text).properties(height=90)


def distribution_chart(df: pd.DataFrame, value: str, group: str, bins: int = 40) -> alt.Chart:
    """Step-time histograms of ``value`` (ms) on a log x axis, one translucent colour per
    ``group``: Vega-Lite bins log10 of the value, so a 0.2 ms bulk and a 500 ms warm-up
    both read. Values <= 0 are left out."""
    groups = list(dict.fromkeys(df[group]))
    pos = df[df[value] > 0]
    lo_v, hi_v = (float(pos[value].min()), float(pos[value].max())) if not pos.empty else (1.0, 10.0)
    return (alt.Chart(df[[value, group]]).transform_filter(f"datum['{value}'] > 0")
            .transform_calculate(lg=f"log(datum['{value}']) / LN10")
            .transform_bin("lg_bin", "lg", bin=alt.Bin(maxbins=bins))
            .transform_calculate(lo="pow(10, datum.lg_bin)", hi="pow(10, datum.lg_bin_end)")
            .transform_aggregate(steps="count()", groupby=["lo", "hi", group])
            .mark_rect(opacity=0.55)
            .encode(x=alt.X("lo:Q", scale=alt.Scale(type="log"), title="wall step time, ms (log)",
                            axis=alt.Axis(values=log_ticks(lo_v, hi_v), format="~g")),
                    x2="hi:Q", y=alt.Y("steps:Q", title="steps"), y2=alt.datum(0),
                    color=alt.Color(f"{group}:N", scale=theme.metric_scale(groups),
                                    legend=alt.Legend(orient="right", title=None, labelLimit=260)),
                    tooltip=[group, alt.Tooltip("lo:Q", format=".4g", title="from ms"),
                             alt.Tooltip("hi:Q", format=".4g", title="to ms"), "steps:Q"])
            .properties(height=theme.UTIL_CHART_HEIGHT + 60))


def top_ops_chart(df: pd.DataFrame, op: str, value: str, group: str) -> alt.Chart:
    """Horizontal bars of ``value`` (ms per step) per ``op``, one colour per ``group``."""
    groups = list(dict.fromkeys(df[group]))
    return (alt.Chart(df[[op, value, group]]).mark_bar()
            .encode(y=alt.Y(f"{op}:N", sort="-x", title=None, axis=alt.Axis(labelLimit=320)),
                    yOffset=alt.YOffset(f"{group}:N"),
                    x=alt.X(f"{value}:Q", title="self time, ms per captured step"),
                    color=alt.Color(f"{group}:N", scale=theme.variant_scale(groups),
                                    legend=alt.Legend(orient="right", title=None)),
                    tooltip=[group, op, alt.Tooltip(f"{value}:Q", format=".4f")])
            .properties(height=alt.Step(14)))


def ops_delta_chart(df: pd.DataFrame, op: str, delta: str, status: str) -> alt.Chart:
    """Ops whose self time changed most (µs per step), coloured by how they changed."""
    statuses = list(dict.fromkeys(df[status]))
    return (alt.Chart(df).mark_bar()
            .encode(y=alt.Y(f"{op}:N", sort="-x", title=None, axis=alt.Axis(labelLimit=320)),
                    x=alt.X(f"{delta}:Q", title="self time change, µs per step"),
                    color=alt.Color(f"{status}:N", scale=theme.metric_scale(statuses),
                                    legend=alt.Legend(orient="right", title=None)),
                    tooltip=[op, status, alt.Tooltip(f"{delta}:Q", format=".2f")])
            .properties(height=theme.rows_height(len(df)) // 2 + theme.AXIS_HEIGHT))


# -- workers of a distributed run (Workers page) ----------------------------------------------------
def worker_split_chart(df: pd.DataFrame, worker: str, part: str, ms: str, label: str) -> alt.LayerChart:
    """One bar per worker: its median step split into own work and collective time;
    ``label`` is text beside the bar (e.g. "straggler")."""
    parts = list(dict.fromkeys(df[part]))
    base = alt.Chart(df).encode(y=alt.Y(f"{worker}:N", title=None, sort=None))
    bars = base.mark_bar().encode(
        x=alt.X(f"sum({ms}):Q", title="ms per step (median, traced steps)"),
        color=alt.Color(f"{part}:N", scale=theme.metric_scale(parts), legend=alt.Legend(orient="right", title=None)),
        order=alt.Order("order:Q"), tooltip=[worker, part, alt.Tooltip(f"{ms}:Q", format=".2f")])
    text = base.transform_filter(f"datum.{label} != ''").transform_aggregate(
        total=f"sum({ms})", groupby=[worker, label]).mark_text(
        align="left", dx=4, fontWeight="bold", color=theme.STATUS_COLORS["failed"]).encode(x="total:Q", text=f"{label}:N")
    return (bars + text).properties(height=alt.Step(36))


def worker_steps_chart(df: pd.DataFrame, worker: str, ms: str) -> alt.Chart:
    """Each worker's distribution of wall step times (measured steps), log axis."""
    workers = list(dict.fromkeys(df[worker]))
    return (alt.Chart(df).mark_boxplot(extent="min-max")
            .encode(x=alt.X(f"{ms}:Q", title="wall step time, ms (log)", scale=alt.Scale(type="log")),
                    y=alt.Y(f"{worker}:N", title=None),
                    color=alt.Color(f"{worker}:N", scale=theme.metric_scale(workers), legend=None))
            .properties(height=alt.Step(36)))


# -- what-if (Triage) -----------------------------------------------------------------------------
def whatif_chart(df: pd.DataFrame, arm: str, median: str, lo: str, hi: str, verdict: str) -> alt.LayerChart:
    """Median step time per what-if arm (dot, labelled), with the interval its gain has
    (bar), coloured by verdict; baseline first (profilers.whatif.result_frame)."""
    order = list(df[arm])
    colors = {"baseline": "#7f7f7f", "faster": "green", "no measurable gain": "#1f77b4", "slower": "red"}
    domain = [v for v in colors if v in set(df[verdict])]
    base = alt.Chart(df).encode(
        y=alt.Y(f"{arm}:N", sort=order, title=None, axis=alt.Axis(labelLimit=320)),
        color=alt.Color(f"{verdict}:N", scale=alt.Scale(domain=domain, range=[colors[v] for v in domain]),
                        legend=alt.Legend(orient="bottom", title=None)),
        tooltip=[alt.Tooltip(f"{arm}:N"), alt.Tooltip(f"{median}:Q", format=".4g", title="median ms"),
                 alt.Tooltip(f"{lo}:Q", format=".4g", title="interval low ms"),
                 alt.Tooltip(f"{hi}:Q", format=".4g", title="interval high ms"), alt.Tooltip(f"{verdict}:N")])
    rng = base.mark_rule(strokeWidth=4, opacity=0.55).encode(
        x=alt.X(f"{lo}:Q", title="ms per step (median, with the gain's 95% interval)", scale=alt.Scale(zero=True)),
        x2=f"{hi}:Q")
    dot = base.mark_point(filled=True, size=110, opacity=1).encode(x=alt.X(f"{median}:Q"))
    label = base.mark_text(align="left", dx=9, dy=-9, fontSize=11).encode(
        x=alt.X(f"{median}:Q"), text=alt.Text(f"{median}:Q", format=".3g"))
    return (rng + dot + label).properties(height=theme.rows_height(len(order)))

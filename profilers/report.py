"""``report.html``: one self-contained, offline page for the runs of a bundle.

The page holds the run summary, the key charts (step time per step, the step-time
distribution, the per-category breakdown, the top ops) as Vega-Lite specs rendered by
vega-embed, the findings with their evidence and recommendation, and each run's
environment. vega, vega-lite and vega-embed are inlined from the ``vl-convert-python``
package's JavaScript bundle (what altair's ``save(..., inline=True)`` uses), so the page
loads nothing from the network: no CDN, no fonts, no editor links.

The page opens with the verdict of each experiment it holds (``profilers.verdict``, from
the stored analysis). Its charts come from ``profilers.charts``, the builders the
dashboard's pages use, so a chart reads the same in both. Must not import tensorflow,
pynvml or streamlit.
"""
from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from typing import Any, Sequence

import altair as alt
import pandas as pd

from profilers import __version__, verdict
from profilers import charts as shared
from profilers.analysis import measured_steps, scaled_breakdown, step_stats
from profilers.errors import DependencyMissing
from profilers.model import RunProfile, json_safe

#: Rows per chart at most (charts carry their data inline; longer tables are strided).
MAX_CHART_ROWS = 5000
#: The pinned package that ships the vega/vega-lite/vega-embed JavaScript bundle.
VL_CONVERT_PIN = "vl-convert-python==1.9.0.post1"
CHART_WIDTH_PX = 640
SEVERITY_ORDER = {"high": 0, "moderate": 1, "low": 2, "info": 3}


# -- charts: the shared builders (profilers.charts), sized for a fixed-width page -------------
def _themed(chart: alt.Chart | alt.LayerChart, title: str) -> alt.Chart | alt.LayerChart:
    return chart.properties(title=title, width=CHART_WIDTH_PX).configure_view(stroke=None).configure_axis(
        labelFontSize=11, titleFontSize=12)


def _strided(df: pd.DataFrame, max_rows: int = MAX_CHART_ROWS) -> pd.DataFrame:
    if len(df) <= max_rows:
        return df
    return df.iloc[:: -(-len(df) // max_rows)]


# -- tables for the charts (pure) -----------------------------------------------------------
def run_labels(profiles: Sequence[RunProfile]) -> dict[str, str]:
    """A short, unique label per run: its variant, plus the id's tail when variants repeat."""
    variants = [str(p.manifest.get("variant") or p.run_id) for p in profiles]
    return {p.run_id: (v if variants.count(v) == 1 else f"{v} ({p.run_id[-6:]})")
            for p, v in zip(profiles, variants)}


def steps_long(profiles: Sequence[RunProfile], labels: dict[str, str]) -> pd.DataFrame:
    frames = []
    for p in profiles:
        m = measured_steps(p.table("steps"))
        if not m.empty:
            frames.append(pd.DataFrame({"run": labels[p.run_id], "step": m["step"].astype(int).to_numpy(),
                                        "wall_ms": m["wall_us"].to_numpy(dtype=float) / 1e3}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run", "step", "wall_ms"])


def breakdown_ms(profile: RunProfile) -> dict[str, float] | None:
    """Per-category ms of the median step: the manifest's, else from the breakdown table."""
    stored = (profile.manifest.get("results") or {}).get("breakdown_ms")
    if isinstance(stored, dict) and stored:
        return {str(k): float(v) for k, v in stored.items() if v is not None}
    table = profile.table("breakdown")
    if table.empty:
        return None
    return scaled_breakdown(table, step_stats(profile.table("steps"))["median"])["breakdown_ms"]


def breakdown_long(profiles: Sequence[RunProfile], labels: dict[str, str]) -> pd.DataFrame:
    rows = [{"run": labels[p.run_id], "category": c, "ms": v}
            for p in profiles for c, v in (breakdown_ms(p) or {}).items() if v]
    return pd.DataFrame(rows, columns=["run", "category", "ms"])


def top_ops_long(profiles: Sequence[RunProfile], labels: dict[str, str], top: int = 15) -> pd.DataFrame:
    frames = []
    for p in profiles:
        ops = p.table("ops")
        if ops.empty:
            continue
        window = int(p.table("steps")["in_profile_window"].astype(bool).sum()) or 1
        per = ops.groupby("op_name", as_index=False)["total_self_us"].sum()
        per = per.nlargest(top, "total_self_us")
        frames.append(pd.DataFrame({"run": labels[p.run_id], "op": per["op_name"].astype(str).to_numpy(),
                                    "self_ms_per_step": per["total_self_us"].to_numpy(dtype=float) / 1e3 / window}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run", "op", "self_ms_per_step"])


# -- the page ------------------------------------------------------------------------------
def vega_javascript() -> str:
    """vega + vega-lite + vega-embed as one script (from vl-convert-python), for offline pages."""
    try:
        import vl_convert as vlc
        from altair.utils._importers import vl_version_for_vl_convert
    except ImportError as exc:
        raise DependencyMissing(f"report.html needs the vega JavaScript bundle from vl-convert-python ({exc}).",
                                f"Install it: pip install {VL_CONVERT_PIN}") from None
    return vlc.javascript_bundle(vl_version=vl_version_for_vl_convert())


def _script_json(obj: Any) -> str:
    """JSON that is safe inside a <script> element."""
    text = json.dumps(json_safe(obj), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _summary_rows(profiles: Sequence[RunProfile], labels: dict[str, str]) -> str:
    rows = []
    for p in profiles:
        m = p.manifest
        stats = step_stats(p.table("steps"))
        res = m.get("results") or {}
        cells = [labels[p.run_id], p.run_id, m.get("workload"), m.get("variant"), m.get("status"),
                 stats["count"], stats["median"], stats["p10"], stats["p90"], res.get("final_loss"),
                 "yes" if (m.get("capture") or {}).get("xplane") else "no"]
        rows.append("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in cells) + "</tr>")
    head = ["run", "run id", "workload", "variant", "status", "measured steps", "median ms", "p10 ms",
            "p90 ms", "final loss", "TF trace"]
    return ("<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _findings_html(profile: RunProfile) -> str:
    findings = list(profile.findings)  # ranked by the analysis (measured gain, then severity)
    if not findings:
        return ("<p class='muted'>No findings: no triage rule found a bottleneck in this run's "
                "stored analysis.</p>")
    parts = []
    for f in findings:
        sev = html.escape(str(f.get("severity", "")))
        share = f.get("share")
        share_txt = f" ({share:.0%} of step time)" if isinstance(share, (int, float)) else ""
        evidence = f.get("evidence") or {}
        ev_rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_fmt(v))}</td></tr>"
                          for k, v in evidence.items() if not isinstance(v, (dict, list)))
        cf = (f.get("counterfactual") or {}).get("text") if isinstance(f.get("counterfactual"), dict) else None
        parts.append(
            f"<div class='finding sev-{sev}'><h4><span class='badge'>{sev.upper()}</span> "
            f"{html.escape(str(f.get('rule', '')))}{html.escape(share_txt)}</h4>"
            + (f"<table class='evidence'>{ev_rows}</table>" if ev_rows else "")
            + (f"<p class='cf'>&rarr; {html.escape(str(cf))}</p>" if cf else "")
            + f"<pre class='rec'>{html.escape(str(f.get('recommendation', '')))}</pre></div>")
    return "".join(parts)


def _flatten(prefix: str, value: Any, out: list[tuple[str, Any]], depth: int = 0) -> None:
    if isinstance(value, dict) and depth < 3:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out, depth + 1)
    elif isinstance(value, list) and depth < 3 and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            _flatten(f"{prefix}[{i}]", v, out, depth + 1)
    else:
        out.append((prefix, value))


def _environment_html(profile: RunProfile) -> str:
    m = profile.manifest
    items: list[tuple[str, Any]] = []
    _flatten("", m.get("environment") or {}, items)
    for name, s in (m.get("samplers") or {}).items():
        if isinstance(s, dict):
            items.append((f"sampler.{name}", "available" if s.get("available") else f"unavailable: {s.get('reason')}"))
    if not items:
        return "<p class='muted'>The manifest records no environment.</p>"
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(_fmt(v))}</td></tr>" for k, v in items)
    return f"<details><summary>Environment ({len(items)} facts)</summary><table class='env'>{rows}</table></details>"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1000px;
color:#222;padding:0 1rem}
h1{font-size:1.6rem}.verdict{background:#e8f0fe;border-left:4px solid #4c78a8;padding:.6rem .8rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}.muted{color:#777}.chart{margin:1rem 0}
.finding{border-left:4px solid #999;padding:.2rem .8rem;margin:.8rem 0;background:#fafafa}
.sev-high{border-color:#c0392b}.sev-moderate{border-color:#e67e22}.sev-low{border-color:#f1c40f}
.badge{font-size:.7rem;background:#eee;padding:.1rem .3rem;border-radius:3px}
pre.rec{white-space:pre-wrap;font-family:inherit}code{background:#f4f4f4;padding:0 .2rem}
"""


def summary_frame(profiles: Sequence[RunProfile], labels: dict[str, str]) -> pd.DataFrame:
    """``run, median_ms, p10_ms, p90_ms`` of every run with a measured median step."""
    rows = []
    for p in profiles:
        st = (p.manifest.get("results") or {}).get("step_ms") or {}
        med = st.get("median")
        if p.manifest.get("status") == "ok" and isinstance(med, (int, float)) and med > 0:
            rows.append({"run": labels[p.run_id], "median_ms": float(med),
                         "p10_ms": float(st.get("p10") or med), "p90_ms": float(st.get("p90") or med)})
    return pd.DataFrame(rows, columns=["run", "median_ms", "p10_ms", "p90_ms"])


def build_charts(profiles: Sequence[RunProfile]) -> list[tuple[str, alt.Chart]]:
    """The report's charts, as (id, chart); charts without data are left out."""
    labels = run_labels(profiles)
    charts: list[tuple[str, alt.Chart]] = []
    summary = summary_frame(profiles, labels)
    steps = steps_long(profiles, labels)
    if not summary.empty and not steps.empty:
        charts.append(("chart-steps", _themed(shared.step_range_chart(summary, "run", "median_ms", "p10_ms", "p90_ms"),
                                              "Median step per run, p10–p90 (log scale)")))
    if not steps.empty:
        charts.append(("chart-distribution", _themed(shared.distribution_chart(_strided(steps), "wall_ms", "run"),
                                                     "Step-time distribution (measured steps, log scale)")))
    bd = breakdown_long(profiles, labels)
    if not bd.empty:
        charts.append(("chart-breakdown", _themed(shared.breakdown_bars(bd, "run", "category", "ms"),
                                                  "Where a step's time goes (ms per median step)")))
    ops = top_ops_long(profiles, labels)
    if not ops.empty:
        charts.append(("chart-ops", _themed(shared.top_ops_chart(ops, "op", "self_ms_per_step", "run"),
                                            "Top ops by self time (ms per captured step)")))
    return charts


def _verdicts_html(profiles: Sequence[RunProfile]) -> str:
    """One verdict per experiment in the report (from the stored analysis)."""
    groups: dict[str, list[RunProfile]] = {}
    for p in profiles:
        groups.setdefault(str(p.manifest.get("experiment_id") or p.run_id), []).append(p)
    parts = []
    for exp_id, runs in groups.items():
        text = verdict.for_profiles(sorted(runs, key=lambda p: p.manifest.get("order", 0))).text
        where = f" <small class='muted'>({html.escape(exp_id)})</small>" if len(groups) > 1 else ""
        parts.append(f"<p class='verdict'><strong>Verdict.</strong> {html.escape(text)}{where}</p>")
    return "".join(parts)


def render_report(profiles: Sequence[RunProfile], *, title: str | None = None) -> str:
    """The whole page as one HTML string (about 1 MB: the vega JavaScript is inlined)."""
    profiles = list(profiles)
    js = vega_javascript()
    labels = run_labels(profiles)
    charts = build_charts(profiles)
    title = title or ("sgdscope report: " + ", ".join(labels[p.run_id] for p in profiles))
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    chart_divs = "".join(
        f"<div class='chart'><div id='{cid}' class='vega-chart'></div>"
        f"<script type='application/json' id='{cid}-spec'>{_script_json(chart.to_dict())}</script></div>"
        for cid, chart in charts) or "<p class='muted'>No measured steps to chart.</p>"
    sections = []
    for p in profiles:
        m = p.manifest
        err = m.get("error")
        sections.append(
            f"<h3>{html.escape(labels[p.run_id])} <small class='muted'>{html.escape(p.run_id)}</small></h3>"
            + (f"<p><strong>Error:</strong> {html.escape(str(err))}</p>" if err else "")
            + f"<p>params: <code>{html.escape(json.dumps(json_safe(m.get('params') or {}), sort_keys=True))}</code></p>"
            + _findings_html(p) + _environment_html(p))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
<script>{js}</script>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p class="muted">Generated {now} by sgdscope {html.escape(__version__)}. This page works offline.
The bundle's <code>trace/</code> folder opens with <code>xprof --logdir trace</code>; each
<code>runs/&lt;run_id&gt;/trace.json.gz</code> opens in Perfetto or chrome://tracing.</p>
{_verdicts_html(profiles)}
<h2>Runs</h2>
{_summary_rows(profiles, labels)}
<h2>Charts</h2>
{chart_divs}
<h2>Findings and environment</h2>
{''.join(sections)}
<script>
document.querySelectorAll(".vega-chart").forEach(function (el) {{
  var spec = JSON.parse(document.getElementById(el.id + "-spec").textContent);
  vegaEmbed(el, spec, {{renderer: "svg", actions: false, mode: "vega-lite"}}).then(function () {{
    el.setAttribute("data-rendered", "true");
  }}).catch(function (err) {{
    el.setAttribute("data-error", String(err));
    el.textContent = "Chart failed to render: " + err;
  }});
}});
</script>
</body>
</html>
"""

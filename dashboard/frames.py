"""Pure shaping of stored runs into the small tables the pages chart and print.

Tables in, tables (or text) out: no streamlit, no altair, no I/O. The analysis proper
(step statistics, the breakdown) lives in ``profilers``; this module only selects,
joins and formats it for display. Must not import tensorflow or pynvml.
"""
from __future__ import annotations

import math
import re
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from dashboard.theme import CATEGORY_ORDER, UNATTRIBUTED, WARMUP
from profilers.breakdown import summarize
from profilers.model import CATEGORIES, RunProfile

#: Utilization metrics drawn on the Run and Launch pages, by panel, with their labels.
CPU_METRICS: dict[str, str] = {
    "proc_cpu_pct": "worker process (100 = one core)",
    "system_cpu_pct": "machine (mean of all cores)",
}
MEMORY_METRICS: dict[str, str] = {"rss_mib": "worker RSS"}
GPU_UTIL_RE = re.compile(r"^gpu(\d+)_util_pct$")


# -- experiments and runs ------------------------------------------------------------------
def experiments_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per experiment in a ``RunStore.list()`` frame, newest first:
    ``experiment_id, workload, created_at, variants, runs, failed``."""
    cols = ["experiment_id", "workload", "created_at", "variants", "runs", "failed"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    df = runs[runs["experiment_id"].notna() & (runs["experiment_id"] != "")]
    rows = []
    for exp_id, g in df.groupby("experiment_id", sort=False):
        rows.append({
            "experiment_id": exp_id, "workload": g["workload"].iloc[0],
            "created_at": g["created_at"].max(),
            "variants": ", ".join(sorted(g["variant"].astype(str))),
            "runs": len(g), "failed": int((g["status"] != "ok").sum()),
        })
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values(["created_at", "experiment_id"], ascending=False).reset_index(drop=True)


def experiment_label(row: Mapping[str, Any]) -> str:
    failed = f" · {row['failed']} failed" if row.get("failed") else ""
    return f"{row['created_at']} · {row['workload']}: {row['variants']}{failed}"


def run_label(row: Mapping[str, Any]) -> str:
    return f"{row['created_at']} · {row['workload']} / {row['variant']} · {row['status']}"


# -- compare --------------------------------------------------------------------------------
def variant_summary(profiles: Sequence[RunProfile]) -> pd.DataFrame:
    """One row per run of an experiment, in launch order: its status and step statistics."""
    rows = []
    for p in profiles:
        m = p.manifest
        res = m.get("results") or {}
        step = res.get("step_ms") or {}
        rows.append({
            "variant": m.get("variant"), "status": m.get("status"), "run_id": p.run_id,
            "median_ms": step.get("median"), "p10_ms": step.get("p10"), "p90_ms": step.get("p90"),
            "steps": res.get("steps"), "final_loss": res.get("final_loss"),
            "loss_matches_baseline": res.get("loss_matches_baseline"),
            "error": m.get("error"), "order": m.get("order", 0),
        })
    cols = ["variant", "status", "run_id", "median_ms", "p10_ms", "p90_ms", "steps", "final_loss",
            "loss_matches_baseline", "error", "order"]
    return pd.DataFrame(rows, columns=cols)


def measured_steps(summary: pd.DataFrame) -> pd.DataFrame:
    """The finished runs with a measured median step (p10/p90 default to the median), for
    the step-time comparison chart."""
    ok = summary[(summary["status"] == "ok") & summary["median_ms"].notna()].copy()
    ok = ok[ok["median_ms"].astype(float) > 0]
    for col in ("p10_ms", "p90_ms"):
        ok[col] = ok[col].fillna(ok["median_ms"]).astype(float)
    ok["median_ms"] = ok["median_ms"].astype(float)
    return ok


def baseline_variant(profiles: Sequence[RunProfile], registry_baseline: str | None = None) -> str | None:
    """The variant every other is measured against: what the runs recorded, else the
    workload's declared baseline."""
    for p in profiles:
        name = (p.manifest.get("results") or {}).get("baseline_variant")
        if name:
            return str(name)
    return registry_baseline


def format_ratio(ratio: float) -> str:
    if ratio >= 100:
        return f"{ratio:,.0f}×"
    if ratio >= 10:
        return f"{ratio:.1f}×"
    return f"{ratio:.2f}×"


def speedup_text(variant: str, median_ms: float | None, baseline: str, baseline_ms: float | None) -> str:
    """``"tf_eager: 480× slower than numpy"`` (or faster, or why there is no ratio)."""
    if variant == baseline:
        return f"{variant}: the baseline"
    if median_ms is None or baseline_ms is None or not (median_ms > 0 and baseline_ms > 0):
        return f"{variant}: no ratio (no measured step time)"
    ratio = median_ms / baseline_ms
    if ratio >= 1:
        return f"{variant}: {format_ratio(ratio)} slower than {baseline}"
    return f"{variant}: {format_ratio(1 / ratio)} faster than {baseline}"


def speedups(summary: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """``variant, ratio, text`` for every run with a median, vs the baseline's median
    (``ratio`` = variant median / baseline median; > 1 is slower)."""
    base = summary.loc[(summary["variant"] == baseline) & (summary["status"] == "ok"), "median_ms"]
    base_ms = None if base.empty or pd.isna(base.iloc[0]) else float(base.iloc[0])
    rows = []
    for r in summary.itertuples():
        med = None if r.median_ms is None or pd.isna(r.median_ms) else float(r.median_ms)
        if r.status != "ok":
            continue
        ratio = med / base_ms if med and base_ms else None
        rows.append({"variant": r.variant, "ratio": ratio,
                     "text": speedup_text(r.variant, med, baseline, base_ms)})
    return pd.DataFrame(rows, columns=["variant", "ratio", "text"])


def correctness_badge(match: Any, baseline: str | None) -> str:
    """Streamlit markdown badge for ``loss_matches_baseline``: true, false, or null (not
    checked). Numpy booleans (a column of a frame) count as booleans."""
    base = baseline or "the baseline"
    if match is None or (isinstance(match, float) and math.isnan(match)):
        return ":gray-badge[loss not checked]"
    if bool(match):
        return f":green-badge[loss matches {base}]"
    return f":red-badge[loss differs from {base}]"


def loss_frame(profiles: Sequence[RunProfile]) -> pd.DataFrame:
    """``variant, step, loss`` from each run's steps table (rows without a loss dropped)."""
    parts = []
    for p in profiles:
        steps = p.table("steps")
        if steps.empty:
            continue
        df = steps.loc[steps["loss"].notna(), ["step", "loss"]].copy()
        df.insert(0, "variant", p.manifest.get("variant"))
        parts.append(df)
    if not parts:
        return pd.DataFrame(columns=["variant", "step", "loss"])
    return pd.concat(parts, ignore_index=True)


def breakdown_frame(profiles: Sequence[RunProfile]) -> pd.DataFrame:
    """``variant, category, ms``: the median ms per step of each category, for every run
    that has a breakdown table (categories in CATEGORIES order)."""
    rows = []
    for p in profiles:
        bd = p.table("breakdown")
        if bd.empty:
            continue
        med = summarize(bd)
        rows.extend({"variant": p.manifest.get("variant"), "category": c, "ms": med[c]}
                    for c in CATEGORIES)
    return pd.DataFrame(rows, columns=["variant", "category", "ms"])


# -- run ------------------------------------------------------------------------------------
def step_frame(steps: pd.DataFrame, breakdown: pd.DataFrame) -> pd.DataFrame:
    """One row per (step, category) on the run's clock, for the per-step chart:
    ``step, start_s, end_s, category, ms, warmup, derived, ms_lo, ms_hi`` (``ms_lo``..
    ``ms_hi``: the category's slice of the step's bar, stacked in CATEGORY_ORDER).

    A step with breakdown rows is split into its categories (they add up to its wall
    time); a step without is one row, ``warm-up`` or ``no breakdown``.
    """
    cols = ["step", "start_s", "end_s", "category", "ms", "warmup", "derived"]
    if steps.empty:
        return pd.DataFrame(columns=[*cols, "ms_lo", "ms_hi"])
    base = pd.DataFrame({
        "step": steps["step"].to_numpy(), "start_s": steps["start_us"].to_numpy() / 1e6,
        "end_s": (steps["start_us"] + steps["wall_us"]).to_numpy() / 1e6,
        "wall_ms": steps["wall_us"].to_numpy() / 1e3, "warmup": steps["warmup"].to_numpy(dtype=bool),
        "derived": steps["derived"].to_numpy(dtype=bool),
    })
    split = base.merge(breakdown[["step", "category", "ms"]], on="step", how="inner") \
        if not breakdown.empty else pd.DataFrame(columns=[*base.columns, "category", "ms"])
    whole = base[~base["step"].isin(split["step"])].copy()
    whole["category"] = [WARMUP if w else UNATTRIBUTED for w in whole["warmup"]]
    whole["ms"] = whole["wall_ms"]
    out = pd.concat([split[cols], whole[cols]], ignore_index=True) if not split.empty else whole[cols].copy()
    out["category"] = out["category"].astype(str)
    rank = {c: i for i, c in enumerate(CATEGORY_ORDER)}
    out["rank"] = out["category"].map(rank).fillna(len(rank))
    out = out.sort_values(["step", "rank"], kind="stable").reset_index(drop=True)
    out["ms_hi"] = out.groupby("step")["ms"].cumsum()
    out["ms_lo"] = out["ms_hi"] - out["ms"]
    return out.drop(columns="rank")


def time_domain_s(steps: pd.DataFrame, samples: pd.DataFrame) -> tuple[float, float]:
    """The run's time span in seconds, covering its steps and its samples (one clock)."""
    ends = [0.0]
    if not steps.empty:
        ends.append(float((steps["start_us"] + steps["wall_us"]).max()) / 1e6)
    if not samples.empty:
        ends.append(float(samples["ts_us"].max()) / 1e6)
    return 0.0, max(ends) or 1e-3


def warmup_end_s(steps: pd.DataFrame) -> float | None:
    """Where the warm-up ends on the run's clock (None when no step is warm-up)."""
    w = steps[steps["warmup"].astype(bool)]
    if w.empty:
        return None
    return float((w["start_us"] + w["wall_us"]).max()) / 1e6


def metric_frame(samples: pd.DataFrame, metrics: Mapping[str, str] | Iterable[str],
                 series: str | None = None) -> pd.DataFrame:
    """``t_s, metric, label, value`` of the given metrics (``{metric: label}`` or names);
    ``series`` adds a column of that name (e.g. the variant, for live charts)."""
    labels = dict(metrics) if isinstance(metrics, Mapping) else {m: m for m in metrics}
    df = samples[samples["metric"].isin(list(labels))]
    out = pd.DataFrame({"t_s": df["ts_us"].to_numpy() / 1e6, "metric": df["metric"].astype(str).to_numpy(),
                        "label": df["metric"].map(labels).astype(str).to_numpy(),
                        "value": df["value"].to_numpy()})
    if series is not None:
        out["series"] = series
    return out


def live_frames(samples: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """``{"cpu", "rss", "gpu"}``: metric frames of live samples, ``series`` = variant."""
    out = {}
    for key in ("cpu", "rss", "gpu"):
        parts = [metric_frame(df, {"cpu": ["proc_cpu_pct"], "rss": ["rss_mib"]}.get(key) or gpu_util_metrics(df),
                              series=n) for n, df in samples.items()]
        out[key] = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
            columns=["t_s", "metric", "label", "value", "series"])
    return out


def gpu_util_metrics(samples: pd.DataFrame) -> dict[str, str]:
    names = sorted({m for m in samples["metric"].astype(str) if GPU_UTIL_RE.match(m)})
    return {m: f"GPU {GPU_UTIL_RE.match(m).group(1)} utilization" for m in names}  # type: ignore[union-attr]


def sampler_status(samplers: Mapping[str, Any] | None, name: str) -> tuple[bool | None, str]:
    """``(available, text)`` for one sampler of a manifest: ``"unavailable: <reason>"``
    when it could not measure; ``(None, ...)`` when the run did not record it."""
    info = (samplers or {}).get(name)
    if info is None:
        return None, "not recorded for this run"
    if info.get("available"):
        notes = info.get("notes") or {}
        extra = "; ".join(f"{k}: {v}" for k, v in notes.items())
        return True, "available" + (f" (missing: {extra})" if extra else "")
    return False, f"unavailable: {info.get('reason') or 'no reason recorded'}"


def run_facts(manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Label/value pairs of a run's manifest worth reading at a glance."""
    res = manifest.get("results") or {}
    cap = manifest.get("capture") or {}
    tim = manifest.get("timings") or {}
    params = manifest.get("params") or {}
    out = [
        ("workload / variant", f"{manifest.get('workload')} / {manifest.get('variant')}"),
        ("experiment", str(manifest.get("experiment_id"))),
        ("params", ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "none"),
        ("created", str(manifest.get("created_at"))),
    ]
    if tim.get("wall_s") is not None:
        out.append(("wall time", f"{tim['wall_s']:.3f} s"))
    if res.get("breakdown_source"):
        out.append(("breakdown from", str(res["breakdown_source"])))
    elif res.get("breakdown_error"):
        out.append(("breakdown", f"unavailable: {res['breakdown_error']}"))
    if cap.get("xplane"):
        out.append(("TF trace", f"{cap['xplane']} ({cap.get('window_steps')} steps)"))
    elif cap.get("unavailable_reason"):
        out.append(("TF trace", f"unavailable: {cap['unavailable_reason']}"))
    for key, label in (("ops_per_step", "ops per step"), ("overhead_us_per_op", "overhead µs per op"),
                       ("input_wait_share", "input-wait share")):
        v = res.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v):
            out.append((label, f"{v:.1%}" if key == "input_wait_share" else f"{v:.3g}"))
    return out


# -- environment ------------------------------------------------------------------------------
def environment_rows(env: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """The environment that decides the numbers, as label/value pairs (manifest
    ``environment``): CPU, BLAS, TensorFlow threads and oneDNN, library versions."""
    if not env:
        return [("environment", "not recorded (the run never started its worker)")]
    rows = [("CPU", str(env.get("cpu_model") or "unknown")),
            ("cores", f"{env.get('cpu_logical')} logical, {env.get('cpu_physical')} physical, "
                      f"{env.get('affinity_cores')} usable by this process")]
    if env.get("memory_gib") is not None:
        rows.append(("memory", f"{env['memory_gib']} GiB"))
    pools = env.get("blas") or []
    if not pools:
        rows.append(("BLAS", "not detected by threadpoolctl"))
    for pool in pools:
        label = {"blas": "BLAS", "openmp": "OpenMP"}.get(pool.get("user_api") or "", "thread pool")
        rows.append((label,
                     f"{pool.get('internal_api')} {pool.get('version') or ''} · architecture "
                     f"{pool.get('architecture') or 'unknown'} · {pool.get('num_threads')} threads"))
    tf = env.get("tensorflow")
    if tf:
        intra, inter = tf.get("intra_op_threads"), tf.get("inter_op_threads")
        default = " (0 = TF's default: one per logical core)" if 0 in (intra, inter) else ""
        rows.append(("TensorFlow", f"{tf.get('tf_version')} · intra-op {intra}, inter-op {inter} "
                                   f"threads{default}"))
        onednn = tf.get("onednn_enabled")
        state = "unknown" if onednn is None else ("on" if onednn else "off")
        env_var = tf.get("onednn_env")
        rows.append(("oneDNN", state + (f" (TF_ENABLE_ONEDNN_OPTS={env_var})" if env_var is not None else "")))
        if tf.get("import_s") is not None:
            rows.append(("TF import", f"{tf['import_s']:.1f} s"))
    else:
        rows.append(("TensorFlow", "not imported in this experiment (no TF variant ran)"))
    versions = env.get("versions") or {}
    if versions:
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    if env.get("python"):
        rows.append(("Python", f"{env['python']} on {env.get('platform', '?')}"))
    for k, v in (env.get("env") or {}).items():
        rows.append((k, str(v)))
    return rows

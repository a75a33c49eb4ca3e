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
        rows.append({"variant": r.variant, "ratio": ratio, "match": getattr(r, "loss_matches_baseline", None),
                     "text": speedup_text(r.variant, med, baseline, base_ms)})
    return pd.DataFrame(rows, columns=["variant", "ratio", "match", "text"])


def experiment_environment(profiles: Sequence[RunProfile]) -> tuple[Any, Any]:
    """The experiment's environment (one worker ran every variant): the first run that
    recorded TF's settings, else the first that recorded any; and its samplers."""
    recorded = [p.manifest for p in profiles if p.manifest.get("environment")]
    for m in sorted(recorded, key=lambda m: "tensorflow" not in m["environment"]):
        return m["environment"], m.get("samplers")
    return None, None


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
    """``variant, category, ms``: each run's stored ``results.breakdown_ms`` (scaled to its
    median step, so the categories add up to it), categories in CATEGORIES order; runs
    without one are left out (their ``results.unavailable`` says why)."""
    rows = []
    for p in profiles:
        stored = (p.manifest.get("results") or {}).get("breakdown_ms") or {}
        rows.extend({"variant": p.manifest.get("variant"), "category": c, "ms": float(stored[c])}
                    for c in CATEGORIES if isinstance(stored.get(c), (int, float)) and math.isfinite(stored[c]))
    return pd.DataFrame(rows, columns=["variant", "category", "ms"])


def value_text(value: Any) -> str:
    """A value for a table cell or a label: never "None" or "nan"."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "unavailable"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


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


def measured_max_ms(steps: pd.DataFrame) -> float | None:
    """The slowest measured (non-warm-up) step, ms: the top of the step chart's axis, so a
    560 ms warm-up step does not flatten 0.2 ms steps (it is cut at the top instead)."""
    measured = steps[~steps["warmup"].astype(bool)]
    if measured.empty:
        return None
    return float(measured["wall_us"].max()) / 1e3 * 1.1


def warmup_note(steps: pd.DataFrame) -> str | None:
    """How the warm-up is drawn, when it is cut at the top of the axis."""
    top, warm = measured_max_ms(steps), steps[steps["warmup"].astype(bool)]
    if top is None or warm.empty or float(warm["wall_us"].max()) / 1e3 <= top:
        return None
    return (f"The {len(warm)} warm-up step(s) (gray, up to {float(warm['wall_us'].max()) / 1e3:.4g} ms) "
            f"are cut at the top of the axis, which is scaled to the measured steps.")


def timeline_notes(manifest: Mapping[str, Any], steps: pd.DataFrame, breakdown: pd.DataFrame,
                   cpu_empty: bool) -> list[str]:
    """What the step/utilization charts show and what they cannot."""
    res, notes = manifest.get("results") or {}, []
    if breakdown.empty:
        reason = (res.get("unavailable") or {}).get("breakdown_ms") or res.get("breakdown_error")
        notes.append("No breakdown stored for this run" + (f": {reason}." if reason else "."))
    else:
        notes.append(f"Steps split by category (from {res.get('breakdown_source') or 'the breakdown table'}); "
                     "gray steps have no breakdown.")
    if (steps["derived"].astype(bool)).any():
        notes.append("Some steps ran as one compiled block: each shows the block's mean wall time.")
    note = warmup_note(steps)
    if note:
        notes.append(note)
    host_ok, host_text = sampler_status(manifest.get("samplers"), "host")
    if cpu_empty:
        span_s = float((steps["start_us"] + steps["wall_us"]).max()) / 1e6
        why = host_text if host_ok is False else (
            f"none recorded; the run lasted {span_s:.3g} s, and the sampler ticks every 0.1 s by default")
        notes.append(f"CPU/RSS: {why}.")
    return notes


def trace_facts(manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Label/value rows of a profiled run: where its breakdown came from, the stored
    facts, and the profiler's own cost."""
    res, cap = manifest.get("results") or {}, manifest.get("capture") or {}
    rows = [("breakdown from", res.get("breakdown_source") or
             f"unavailable ({(res.get('unavailable') or {}).get('breakdown_ms', 'no breakdown')})")]
    rows.extend(analysis_facts(manifest))
    over = cap.get("overhead") or {}
    if over.get("ratio"):
        rows.append(("profiler's own cost", f"steps in the window {over['ratio']:.2f}× those outside"))
    return rows


def top_ops(ops: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` ops with the most self time in the profiler window, for a table."""
    top = ops.sort_values("total_self_us", ascending=False).head(n)
    return readable(top[["op_name", "op_type", "occurrences", "total_self_us", "avg_self_us"]]
                    .rename(columns={"total_self_us": "self µs (total)", "avg_self_us": "µs per occurrence"}))


def gantt_frame(events: pd.DataFrame, max_events: int) -> pd.DataFrame:
    """The longest ``max_events`` events of one step, µs from its start, one lane per
    thread; an event spanning (almost) the whole step, such as the step marker itself,
    gets a lane of its own ("step") so it does not cover the ops it encloses."""
    ev = events[events["dur_us"] > 0].nlargest(max_events, "dur_us").copy()
    if ev.empty:
        return ev.assign(start_us=[], end_us=[], lane=[])
    t0 = float(ev["ts_us"].min())
    ev["start_us"], ev["end_us"] = ev["ts_us"] - t0, ev["ts_us"] - t0 + ev["dur_us"]
    span = float(ev["end_us"].max())
    ev["lane"] = ev["thread"].astype(str).where(ev["dur_us"] < 0.9 * span, "step")
    return ev


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


def run_facts(manifest: Mapping[str, Any], declared: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """Label/value pairs of a run's manifest worth reading at a glance; ``declared`` (the
    workload's ``Param``s) keeps only the params its variant reads."""
    res = manifest.get("results") or {}
    cap = manifest.get("capture") or {}
    tim = manifest.get("timings") or {}
    out = [
        ("workload / variant", f"{manifest.get('workload')} / {manifest.get('variant')}"),
        ("experiment", str(manifest.get("experiment_id") or "none (a single run)")),
        ("params", params_for(manifest.get("params") or {}, [str(manifest.get("variant"))], declared)),
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
    out.extend(analysis_facts(manifest))
    return out


#: The stored facts worth a row, with how each is shown (see docs/ANALYSIS_CONTRACT.md).
FACT_ROWS: tuple[tuple[str, str, str], ...] = (
    ("ops_per_step", "ops per step", "{:.3g}"),
    ("dispatches_per_step", "framework dispatches per step", "{:.3g}"),
    ("overhead_us_per_dispatch", "framework overhead per dispatch", "{:.3g} µs"),
    ("input_wait_share", "input-wait share", "{:.1%}"),
    ("eager_share", "eager share of the step", "{:.1%}"),
    ("cpu_contention_share", "waiting for a CPU core", "{:.1%}"),
)


def analysis_facts(manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Label/value rows of a run's stored facts: a fact the analysis could not measure is
    "unavailable (reason)", never blank, None or 0; a count of 0 gives no per-item cost."""
    res = manifest.get("results") or {}
    why = res.get("unavailable") or {}
    rows = []
    for key, label, fmt in FACT_ROWS:
        v = res.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            rows.append((label, fmt.format(v)))
        elif key in why:
            rows.append((label, f"unavailable ({why[key]})"))
    gflops, peak = (res.get("gflops") or {}).get("compute"), res.get("gemm_peak_gflops")
    if isinstance(gflops, (int, float)) and math.isfinite(gflops):
        rows.append(("maths achieved", f"{gflops:.3g} GFLOP/s" +
                     (f" (NumPy GEMM peak here, same dtype and threads: {peak:.3g})" if peak else "")))
    elif "gflops" in why:
        rows.append(("maths achieved", f"unavailable ({why['gflops']})"))
    win = res.get("breakdown_window_ms")
    if win and res.get("breakdown_steps"):
        total = sum(v for v in win.values() if isinstance(v, (int, float)))
        rows.append(("mean step inside the profiler window", f"{total:.4g} ms over {res['breakdown_steps']} "
                     "steps (the capture's own cost included; the breakdown's shares come from here)"))
    return rows


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
        elif tf.get("import_note"):
            rows.append(("TF import", f"not in this run ({tf['import_note']})"))
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


def category_frame(categories: pd.DataFrame) -> pd.DataFrame:
    """``run, category, ms`` (A and B) from ``diff_runs``' per-category table."""
    rows = categories[categories["category"] != "total"]
    return pd.concat([pd.DataFrame({"category": rows["category"], "run": "A", "ms": rows["a_ms"]}),
                      pd.DataFrame({"category": rows["category"], "run": "B", "ms": rows["b_ms"]})],
                     ignore_index=True).fillna({"ms": 0.0})


def top_op_changes(ops: pd.DataFrame, n: int = 15) -> pd.DataFrame:
    """The ``n`` ops whose self time changed most, either way."""
    changed = ops[ops["status"] != "unchanged"]
    return changed.reindex(changed["delta_self_us_per_step"].abs().sort_values(ascending=False).index).head(n)


def crossover_marks(table: pd.DataFrame, summary: Mapping[str, Any], baseline: str) -> pd.DataFrame:
    """``size, label, text``: the sizes where the best TF variant beat the baseline, the
    size it overtakes at named, for the Sweep chart's dashed marks."""
    faster = set(summary["tf_faster_at"])
    rows = [{"size": float(r["size"]), "label": r["label"],
             "text": f"TF overtakes {baseline} ({r['label']})" if r["label"] == summary["overtakes_at"]
             else f"TF faster ({r['label']})"}
            for r in table.to_dict("records") if r["label"] in faster]
    return pd.DataFrame(rows, columns=["size", "label", "text"])


def ratio_table(table: pd.DataFrame, variants: Sequence[str]) -> pd.DataFrame:
    """The Sweep's table: size, each variant's median ms, the best TF variant, each TF
    variant's ratio to NumPy (formatted, so a cell reads "3.7×")."""
    ms_cols = [v for v in variants if v in table.columns]
    ratio_cols = [c for c in table.columns if c.endswith("_over_numpy")]
    out = pd.DataFrame({"size": table["label"]})
    for c in ms_cols:
        out[f"{c} ms"] = [value_text(v) for v in table[c]]
    if "best_tf" in table.columns:
        out["best TF"] = table["best_tf"]
    for c in ratio_cols:
        out[c.replace("_over_numpy", " / numpy")] = ["unavailable" if pd.isna(v) else f"{v:.3g}×" for v in table[c]]
    return out


WORKER_PARTS = ("own work", "collectives")


def worker_split_frame(rows: Sequence[Mapping[str, Any]], straggler_ids: set[int]) -> pd.DataFrame:
    """``worker, part, ms, order, tag`` per worker of ``results.per_worker``: its median
    step split into own work and collectives (the whole step when the split is unknown)."""
    out = []
    for r in rows:
        coll = (r.get("collective_ms") or {}).get("median")
        own = (r.get("non_collective_ms") or {}).get("median")
        if coll is None or own is None:
            own, coll = (r.get("step_ms") or {}).get("median"), None
        name, tag = f"worker {r['worker']}", "straggler" if r["worker"] in straggler_ids else ""
        out.append({"worker": name, "part": WORKER_PARTS[0], "ms": own or 0.0, "order": 0, "tag": tag})
        if coll is not None:
            out.append({"worker": name, "part": WORKER_PARTS[1], "ms": coll, "order": 1, "tag": tag})
    return pd.DataFrame(out, columns=["worker", "part", "ms", "order", "tag"])


def worker_rows_frame(rows: Sequence[Mapping[str, Any]], straggler_ids: set[int]) -> pd.DataFrame:
    """The Workers table, one row per worker, every cell readable."""
    def ms(d: Any, key: str = "median") -> str:
        return value_text((d or {}).get(key))

    return pd.DataFrame([{
        "worker": r["worker"], "straggler": r["worker"] in straggler_ids,
        "median step ms": ms(r.get("step_ms")), "p10 ms": ms(r.get("step_ms"), "p10"),
        "p90 ms": ms(r.get("step_ms"), "p90"), "own work ms": ms(r.get("non_collective_ms")),
        "collectives ms": ms(r.get("collective_ms")),
        "collective share": "unavailable" if r.get("collective_share") is None else f"{100 * r['collective_share']:.1f}%",
        "steps": value_text(r.get("steps")), "traced steps": value_text(r.get("traced_steps")),
        "where": r.get("address") or r.get("xplane") or "",
    } for r in rows])


# -- the tf.data fixes (Input pipeline page) -------------------------------------------------------------
PIPELINE_BASELINE = "naive"
#: The pipeline variants in display order: naive, each single fix, then ``all`` (every fix).
LADDER: tuple[str, ...] = ("naive", "prefetch", "parallel_map", "cache", "vectorized", "interleave", "all")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def ladder_order(variants: Sequence[str]) -> list[str]:
    """Known pipeline variants first, in LADDER order; any other after them, as given."""
    return [v for v in LADDER if v in variants] + [v for v in variants if v not in LADDER]


def vs_naive(median_ms: float | None, naive_ms: float | None, rung: str) -> tuple[float | None, str]:
    """``(naive median / rung median, text)``: > 1 is faster than naive."""
    if rung == PIPELINE_BASELINE:
        return (1.0, "baseline") if median_ms is not None else (None, "not measured")
    if median_ms is None or naive_ms is None or median_ms <= 0:
        return None, "no naive run" if naive_ms is None else "not measured"
    ratio = naive_ms / median_ms
    return ratio, f"{format_ratio(ratio)} faster" if ratio >= 1 else f"{format_ratio(1 / ratio)} slower"


def ladder_frame(profiles: Sequence[RunProfile]) -> pd.DataFrame:
    """One row per pipeline variant in LADDER order: status, median step, stall share,
    input wait, speed-up vs naive (numbers stay None where not measured, for the chart)."""
    by_variant = {p.manifest.get("variant"): p for p in profiles}
    naive = by_variant.get(PIPELINE_BASELINE)
    ok = naive is not None and naive.manifest.get("status") == "ok"
    naive_ms = _number(((naive.manifest.get("results") or {}).get("step_ms") or {}).get("median")) if ok else None
    rows = []
    for rung in ladder_order(list(by_variant)):
        p = by_variant[rung]
        m = p.manifest
        res = (m.get("results") or {}) if m.get("status") == "ok" else {}
        median = _number((res.get("step_ms") or {}).get("median"))
        ratio, text = vs_naive(median, naive_ms, rung)
        rows.append({"rung": rung, "status": m.get("status"), "median_ms": median,
                     "stall_share": _number(res.get("input_wait_share")),
                     "input_wait_ms": _number(res.get("input_wait_ms_median")),
                     "speedup": ratio, "vs_naive": text, "run_id": p.run_id, "error": m.get("error")})
    return pd.DataFrame(rows, columns=["rung", "status", "median_ms", "stall_share", "input_wait_ms", "speedup",
                                       "vs_naive", "run_id", "error"])


def slowest_stage(stages: pd.DataFrame) -> dict[str, Any] | None:
    """The tf.data stage with the most self time (xprof's ``input_stages`` table)."""
    if stages.empty or stages["self_ms"].isna().all():
        return None
    row = stages.loc[stages["self_ms"].idxmax()]
    return {"stage": str(row["stage"]), "self_ms": float(row["self_ms"]),
            "self_pct": _number(float(row["self_pct"])), "count": int(row["count"])}


def ladder_table(df: pd.DataFrame, stages: Mapping[str, tuple[dict[str, Any] | None, str]]) -> pd.DataFrame:
    """The table under the chart, every cell readable ("not measured", never None/nan)."""
    def num(v: Any, fmt: str) -> str:
        return "not measured" if v is None or pd.isna(v) else fmt.format(v)

    return pd.DataFrame({
        "rung": df["rung"], "status": df["status"],
        "median_ms": [num(v, "{:.4g}") for v in df["median_ms"]],
        "stall_share": [num(v, "{:.0%}") for v in df["stall_share"]],
        "input_wait_ms": [num(v, "{:.3g}") for v in df["input_wait_ms"]], "vs_naive": df["vs_naive"],
        "stage": [(stages[r][0] or {}).get("stage", "") for r in df["run_id"]],
        "stage_self_ms": [num((stages[r][0] or {}).get("self_ms"), "{:.4g}") if stages[r][0] else ""
                          for r in df["run_id"]],
        "stage_note": [stages[r][1] for r in df["run_id"]]})


# -- display ------------------------------------------------------------------------------------
def share_frame(rule: str, share: float) -> pd.DataFrame:
    """A finding's share of the step and the rest, for ``charts.share_bar``."""
    share = min(1.0, max(0.0, float(share)))
    return pd.DataFrame({"part": [rule, "rest of the step"], "share": [share, 1.0 - share],
                         "order": [0, 1], "row": "share", "mid": [share / 2, share + (1.0 - share) / 2]})


def readable(df: pd.DataFrame, missing: str = "") -> pd.DataFrame:
    """A copy for ``st.dataframe`` in which no cell reads None or nan (``missing`` instead)."""
    out = df.copy()
    for col in out.columns:
        if out[col].isna().any():
            out[col] = [missing if v is None or (isinstance(v, float) and math.isnan(v)) else value_text(v)
                        for v in out[col]]
    return out


def params_for(params: Mapping[str, Any], variants: Iterable[str], declared: Mapping[str, Any] | None) -> str:
    """``"k=v, ..."``: the params that one of ``variants`` reads (``Param.variants``; all
    when the workload does not say), or "default params"."""
    declared, variants = declared or {}, list(variants)
    kept = {k: v for k, v in params.items() if k not in declared or declared[k].used_by(variants)}
    return ", ".join(f"{k}={value_text(v) if v is None else v}" for k, v in sorted(kept.items())) or "default params"

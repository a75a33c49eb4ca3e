"""Crossover sweeps: one workload over several problem sizes and several variants.

A sweep is a list of experiments, one per size (params zipped from ``grid``), run one
after another in ONE worker process (``profilers.services.start_sweep`` / ``run_sweep``:
TensorFlow is imported once, and the sweep's log ``_sweeps/<id>.log`` says so); its record (``_sweeps/<id>.json`` in the store) lists them so the CLI,
the dashboard and bench/crossover.py read the same thing. ``crossover_table`` is pure:
per size, each variant's median step and its ratio to the NumPy baseline, the best TF
variant, and the first size where that variant overtakes NumPy.

Must not import tensorflow, pynvml or streamlit.
"""
from __future__ import annotations

import json
from typing import Any

import pandas as pd

from profilers.errors import BadInput
from profilers.store import RunStore


def parse_grid(pairs: list[str]) -> list[dict[str, str]]:
    """``["m=3,100", "n=2,10"]`` -> ``[{"m": "3", "n": "2"}, {"m": "100", "n": "10"}]`` (zipped)."""
    columns: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, values = pair.partition("=")
        if not sep or not values:
            raise BadInput(f"--grid {pair!r} is not KEY=V1,V2,...", "Example: --grid m=3,100,1000")
        columns[key.strip()] = [v.strip() for v in values.split(",") if v.strip()]
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise BadInput("Every --grid key needs the same number of values (they are zipped).",
                       ", ".join(f"{k}: {len(v)}" for k, v in columns.items()))
    n = lengths.pop()
    return [{k: v[i] for k, v in columns.items()} for i in range(n)]


def size_label(point: dict[str, Any]) -> str:
    return "×".join(str(v) for v in point.values())


def list_sweeps(store: RunStore) -> list[dict[str, Any]]:
    folder = store.home / "_sweeps"
    if not folder.is_dir():
        return []
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"), reverse=True)]


def sweep_log(store: RunStore, record: dict[str, Any]) -> str:
    """The sweep's log (which worker ran it, TensorFlow imported once), or ""."""
    path = store.home / "_sweeps" / f"{record['sweep_id']}.log"
    return path.read_text(encoding="utf-8") if path.exists() else ""


def sweep_points(store: RunStore, record: dict[str, Any]) -> pd.DataFrame:
    """One row per (size, variant): ``label, size, variant, status, median_ms, p10_ms, p90_ms``."""
    rows = []
    for order, exp in enumerate(record["experiments"]):
        size = 1.0
        for value in exp["point"].values():
            size *= float(value)
        for profile in store.experiment_runs(exp["experiment_id"]):
            m = profile.manifest
            step_ms = (m.get("results") or {}).get("step_ms") or {}
            rows.append({"order": order, "label": exp["label"], "size": size, "variant": m["variant"],
                         "status": m["status"], "median_ms": step_ms.get("median"),
                         "p10_ms": step_ms.get("p10"), "p90_ms": step_ms.get("p90")})
    return pd.DataFrame(rows, columns=["order", "label", "size", "variant", "status",
                                       "median_ms", "p10_ms", "p90_ms"])


def crossover_table(points: pd.DataFrame, baseline: str = "numpy",
                    tf_prefixes: tuple[str, ...] = ("tf_", "keras")) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per size: each variant's median over the baseline's and the best TF variant; and a
    summary: the sizes where the best TF variant is faster than the baseline, those where
    it is not, and ``overtakes_at``, the first size where TF turns from slower to faster
    (None when it never does, including when TF is already faster at the smallest size)."""
    ok = points[(points["status"] == "ok") & points["median_ms"].notna()]
    wide = ok.pivot_table(index=["order", "label", "size"], columns="variant", values="median_ms")
    wide = wide.sort_index()
    tf_cols = [c for c in wide.columns if c.startswith(tf_prefixes)]
    out = wide.reset_index()
    summary: dict[str, Any] = {"tf_faster_at": [], "baseline_faster_at": [], "not_measured_at": [],
                               "overtakes_at": None}
    if baseline in wide.columns and tf_cols:
        best = wide[tf_cols].min(axis=1)
        out["best_tf"] = wide[tf_cols].idxmin(axis=1).to_numpy()
        out["best_tf_over_numpy"] = (best / wide[baseline]).to_numpy()
        for col in tf_cols:
            out[f"{col}_over_numpy"] = (wide[col] / wide[baseline]).to_numpy()
        ratio = out["best_tf_over_numpy"]
        measured = ratio.notna().tolist()  # a size where either side failed is not a verdict
        all_labels = out["label"].astype(str).tolist()
        summary["not_measured_at"] = [lab for lab, m in zip(all_labels, measured) if not m]
        labels = [lab for lab, m in zip(all_labels, measured) if m]
        faster = [bool(r < 1.0) for r, m in zip(ratio.tolist(), measured) if m]
        summary["tf_faster_at"] = [lab for lab, f in zip(labels, faster) if f]
        summary["baseline_faster_at"] = [lab for lab, f in zip(labels, faster) if not f]
        summary["overtakes_at"] = next((labels[i] for i in range(1, len(faster))
                                        if faster[i] and not faster[i - 1]), None)
    return out, summary


def describe_crossover(summary: dict[str, Any], baseline: str = "numpy") -> str:
    faster, slower = summary["tf_faster_at"], summary["baseline_faster_at"]
    if not faster:
        text = (f"{baseline} was faster than every TF variant at every size measured"
                if slower else "no size was measured on both sides")
    else:
        text = f"the best TF variant beat {baseline} at {', '.join(faster)}"
        if slower:
            text += f"; {baseline} was faster at {', '.join(slower)}"
    if summary["overtakes_at"]:
        text += f"; TF overtakes {baseline} at {summary['overtakes_at']}"
    if summary.get("not_measured_at"):
        text += f"; not measured (a run failed) at {', '.join(summary['not_measured_at'])}"
    return text[0].upper() + text[1:] + "."


def crossover_distance(table: pd.DataFrame, summary: dict[str, Any]) -> str | None:
    """When the best TF variant never beat the baseline, how far the crossover is: its
    ratio at the largest size measured and, from the trend of the last two sizes on a
    log-log scale, the size where it would reach 1 (None when TF was faster somewhere,
    or there is nothing to go on)."""
    import math

    if summary.get("tf_faster_at") or "best_tf_over_numpy" not in table.columns:
        return None
    ok = table[table["best_tf_over_numpy"].notna()].sort_values("size")
    if ok.empty:
        return None
    last = ok.iloc[-1]
    text = (f"The crossover is beyond the sizes measured: at the largest, {last['label']}, the best TF "
            f"variant ({last['best_tf']}) is still {last['best_tf_over_numpy']:.2f}× slower than NumPy")
    if len(ok) >= 2:
        prev = ok.iloc[-2]
        slope = (math.log(last["best_tf_over_numpy"]) - math.log(prev["best_tf_over_numpy"])) / \
            (math.log(last["size"]) - math.log(prev["size"]))
        if slope < 0:
            at = last["size"] * math.exp(-math.log(last["best_tf_over_numpy"]) / slope)
            text += (f"; its ratio is falling, and at that rate it would reach NumPy near size "
                     f"{at:.3g} (product of the swept params): add larger sizes, or a whole-loop XLA variant")
        else:
            text += "; its ratio is not falling with size, so larger sizes will not reach it: try a whole-loop XLA variant"
    return text + "."

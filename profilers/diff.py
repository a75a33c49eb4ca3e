"""Diff of two runs, A (control) and B (test): pure functions, tables in, tables out.

- ``category_delta``: ms per step in each step-time category, A vs B. From the breakdown
  tables when both runs have one (each scaled to its run's median step, as everywhere in
  sgdscope, so the categories add up to the median); else only the median step
  (``source == "step_ms"``). A ``total`` row always closes the table.
- ``ops_diff``: ops added, removed, increased, decreased or unchanged, as in
  HolisticTraceAnalysis's trace diff (``TraceDiff.ops_diff``): an op is *added* when only
  B runs it, *removed* when only A does, else *increased*/*decreased*/*unchanged* by its
  count per captured step. Counts and self time are divided by the steps in each run's
  profiler window, so captures of different lengths compare.
- ``step_distributions``: the measured steps of both runs, long format, for an overlay.
- ``findings_diff``: triage findings that appeared, disappeared or persisted (by rule).

No I/O, no streamlit, no altair, no tensorflow: ``diff_runs`` takes two ``RunProfile``s
(from the store or from bundles) and returns a ``RunDiff``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from profilers.analysis import measured_steps, scaled_breakdown, step_stats
from profilers.model import CATEGORIES, RunProfile, json_safe

#: HTA's trace-diff categories, in display order.
OP_STATUSES: tuple[str, ...] = ("added", "removed", "increased", "decreased", "unchanged")
FINDING_STATUSES: tuple[str, ...] = ("appeared", "disappeared", "persisted")
#: Relative change in count per step below which an op counts as unchanged.
COUNT_RTOL = 1e-6

CATEGORY_COLUMNS = ["category", "a_ms", "b_ms", "delta_ms", "delta_pct"]
OPS_COLUMNS = ["op_name", "op_type", "status", "a_count_per_step", "b_count_per_step",
               "a_self_us_per_step", "b_self_us_per_step", "delta_self_us_per_step"]
FINDINGS_COLUMNS = ["rule", "status", "a_severity", "b_severity", "a_share", "b_share"]


def _pct(a: float, b: float) -> float:
    return (b - a) / a * 100.0 if a else float("nan")


def _per_category(breakdown: pd.DataFrame, steps: pd.DataFrame) -> dict[str, float] | None:
    if breakdown.empty:
        return None
    return scaled_breakdown(breakdown, step_stats(steps)["median"])["breakdown_ms"]


def category_delta(a_steps: pd.DataFrame, b_steps: pd.DataFrame, a_breakdown: pd.DataFrame | None = None,
                   b_breakdown: pd.DataFrame | None = None, *,
                   stored: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None) -> tuple[pd.DataFrame, str]:
    """(table of ``CATEGORY_COLUMNS``, source): per-category ms per median step, A vs B.

    ``stored`` gives the two runs' stored ``results``: their ``step_ms.median`` and
    ``breakdown_ms`` are used as they are (the one analysis), the tables only for runs
    that have none stored."""
    a_med = step_stats(a_steps)["median"]
    b_med = step_stats(b_steps)["median"]
    a_cat = _per_category(a_breakdown, a_steps) if a_breakdown is not None else None
    b_cat = _per_category(b_breakdown, b_steps) if b_breakdown is not None else None
    if stored is not None:
        a_res, b_res = stored
        a_med = (a_res.get("step_ms") or {}).get("median", a_med)
        b_med = (b_res.get("step_ms") or {}).get("median", b_med)
        a_cat = a_res.get("breakdown_ms") or a_cat
        b_cat = b_res.get("breakdown_ms") or b_cat
    rows: list[dict[str, Any]] = []
    source = "step_ms"
    if a_cat and b_cat:
        source = "breakdown"
        extra = sorted((set(a_cat) | set(b_cat)) - set(CATEGORIES))
        for c in list(CATEGORIES) + extra:
            a, b = float(a_cat.get(c, 0.0)), float(b_cat.get(c, 0.0))
            if a == 0.0 and b == 0.0:
                continue
            rows.append({"category": c, "a_ms": a, "b_ms": b, "delta_ms": b - a, "delta_pct": _pct(a, b)})
    a_tot = float("nan") if a_med is None else a_med
    b_tot = float("nan") if b_med is None else b_med
    rows.append({"category": "total", "a_ms": a_tot, "b_ms": b_tot, "delta_ms": b_tot - a_tot,
                 "delta_pct": _pct(a_tot, b_tot)})
    return pd.DataFrame(rows, columns=CATEGORY_COLUMNS), source


def _window_steps(steps: pd.DataFrame) -> int:
    return int(steps["in_profile_window"].astype(bool).sum()) if not steps.empty else 0


def _op_totals(ops: pd.DataFrame, per_steps: int) -> pd.DataFrame:
    if ops.empty:
        return pd.DataFrame(columns=["op_name", "op_type", "count", "self_us"])
    g = ops.assign(op_name=ops["op_name"].astype(str), op_type=ops["op_type"].astype(str)) \
        .groupby(["op_name", "op_type"], as_index=False) \
        .agg(count=("occurrences", "sum"), self_us=("total_self_us", "sum"))
    g["count"] = g["count"].astype(float) / per_steps
    g["self_us"] = g["self_us"].astype(float) / per_steps
    return g


def ops_diff(a_ops: pd.DataFrame, b_ops: pd.DataFrame, a_steps: pd.DataFrame | None = None,
             b_steps: pd.DataFrame | None = None) -> tuple[pd.DataFrame, str]:
    """(table of ``OPS_COLUMNS``, unit): HTA's trace-diff categories per (op_name, op_type).

    With both runs' steps and a profiler window in each, counts and self times are per
    captured step (unit ``"per_step"``); otherwise they are per capture (``"per_capture"``).
    Sorted by status, then by the size of the self-time change.
    """
    a_win = _window_steps(a_steps) if a_steps is not None else 0
    b_win = _window_steps(b_steps) if b_steps is not None else 0
    unit = "per_step" if a_win and b_win else "per_capture"
    a = _op_totals(a_ops, a_win if unit == "per_step" else 1)
    b = _op_totals(b_ops, b_win if unit == "per_step" else 1)
    m = a.merge(b, on=["op_name", "op_type"], how="outer", suffixes=("_a", "_b"), indicator=True)
    if m.empty:
        return pd.DataFrame(columns=OPS_COLUMNS), unit
    ca, cb = m["count_a"].astype(float), m["count_b"].astype(float)
    status = np.select(
        [m["_merge"] == "right_only", m["_merge"] == "left_only",
         np.isclose(ca, cb, rtol=COUNT_RTOL, atol=0), cb > ca],
        ["added", "removed", "unchanged", "increased"], default="decreased")
    out = pd.DataFrame({
        "op_name": m["op_name"].astype(str), "op_type": m["op_type"].astype(str), "status": status,
        "a_count_per_step": ca.fillna(0.0), "b_count_per_step": cb.fillna(0.0),
        "a_self_us_per_step": m["self_us_a"].astype(float).fillna(0.0),
        "b_self_us_per_step": m["self_us_b"].astype(float).fillna(0.0)})
    out["delta_self_us_per_step"] = out["b_self_us_per_step"] - out["a_self_us_per_step"]
    order = {s: i for i, s in enumerate(OP_STATUSES)}
    out = out.assign(_o=out["status"].map(order), _d=-out["delta_self_us_per_step"].abs()) \
        .sort_values(["_o", "_d", "op_name"]).drop(columns=["_o", "_d"]).reset_index(drop=True)
    return out[OPS_COLUMNS], unit


def ops_summary(ops: pd.DataFrame) -> dict[str, int]:
    counts = ops["status"].value_counts() if not ops.empty else pd.Series(dtype=int)
    return {s: int(counts.get(s, 0)) for s in OP_STATUSES}


def step_distributions(a_steps: pd.DataFrame, b_steps: pd.DataFrame, labels: Sequence[str] = ("A", "B")) -> pd.DataFrame:
    """Measured steps of both runs: columns run, step, wall_ms."""
    frames = []
    for label, steps in zip(labels, (a_steps, b_steps)):
        m = measured_steps(steps)
        frames.append(pd.DataFrame({"run": label, "step": m["step"].astype(int).to_numpy(),
                                    "wall_ms": m["wall_us"].to_numpy(dtype=float) / 1e3}))
    return pd.concat(frames, ignore_index=True)


def _by_rule(findings: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for f in findings:
        out.setdefault(str(f.get("rule")), f)
    return out


def findings_diff(a_findings: Sequence[Mapping[str, Any]], b_findings: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Findings by rule: ``appeared`` (only B), ``disappeared`` (only A) or ``persisted``."""
    a, b = _by_rule(a_findings), _by_rule(b_findings)
    rows = []
    for rule in sorted(set(a) | set(b)):
        fa, fb = a.get(rule), b.get(rule)
        status = "appeared" if fa is None else "disappeared" if fb is None else "persisted"
        rows.append({"rule": rule, "status": status,
                     "a_severity": None if fa is None else fa.get("severity"),
                     "b_severity": None if fb is None else fb.get("severity"),
                     "a_share": None if fa is None else fa.get("share"),
                     "b_share": None if fb is None else fb.get("share")})
    order = {s: i for i, s in enumerate(FINDING_STATUSES)}
    rows.sort(key=lambda r: (order[r["status"]], r["rule"]))
    return pd.DataFrame(rows, columns=FINDINGS_COLUMNS)


def describe_run(profile: RunProfile) -> dict[str, Any]:
    m = profile.manifest
    stats = step_stats(profile.table("steps"))
    return {"run_id": profile.run_id, "workload": m.get("workload"), "variant": m.get("variant"),
            "status": m.get("status"), "steps": stats["count"], "median_ms": stats["median"],
            "p10_ms": stats["p10"], "p90_ms": stats["p90"]}


@dataclass
class RunDiff:
    a: dict[str, Any]
    b: dict[str, Any]
    categories: pd.DataFrame
    category_source: str
    ops: pd.DataFrame
    ops_unit: str
    distributions: pd.DataFrame
    findings: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    @property
    def speedup(self) -> float | None:
        """A's median over B's: above 1, B is faster."""
        a, b = self.a.get("median_ms"), self.b.get("median_ms")
        return a / b if a and b else None

    def to_json(self) -> dict[str, Any]:
        return json_safe({
            "a": self.a, "b": self.b, "speedup_a_over_b": self.speedup,
            "categories": {"source": self.category_source, "rows": self.categories.to_dict(orient="records")},
            "ops": {"unit": self.ops_unit, "summary": ops_summary(self.ops),
                    "rows": self.ops.to_dict(orient="records")},
            "findings": self.findings.to_dict(orient="records"),
            "distributions": {
                run: {"count": int(len(g)), "median_ms": float(g["wall_ms"].median()) if len(g) else None}
                for run, g in self.distributions.groupby("run", sort=False)},
            "notes": self.notes,
        })


def diff_runs(a: RunProfile, b: RunProfile) -> RunDiff:
    """Everything the Diff page and ``sgdscope diff`` show, for A (control) vs B (test)."""
    a_steps, b_steps = a.table("steps"), b.table("steps")
    a_bd = a.tables.get("breakdown")
    b_bd = b.tables.get("breakdown")
    categories, source = category_delta(a_steps, b_steps, a_bd, b_bd, stored=(
        a.manifest.get("results") or {}, b.manifest.get("results") or {}))
    notes = []
    if source == "step_ms":
        missing = [x for x, t in (("A", a_bd), ("B", b_bd)) if t is None or t.empty]
        notes.append(f"no breakdown table in {' and '.join(missing)}: only the median step is compared")
    a_ops, b_ops = a.tables.get("ops"), b.tables.get("ops")
    if (a_ops is None or a_ops.empty) and (b_ops is None or b_ops.empty):
        ops, unit = pd.DataFrame(columns=OPS_COLUMNS), "per_step"
        notes.append("neither run has an ops table (ops come from a TF profiler capture)")
    else:
        if a_ops is None or a_ops.empty or b_ops is None or b_ops.empty:
            notes.append("only one run has an ops table: every op shows as added or removed")
        ops, unit = ops_diff(a.table("ops"), b.table("ops"), a_steps, b_steps)
    labels = (f"A: {a.manifest.get('variant') or a.run_id}", f"B: {b.manifest.get('variant') or b.run_id}")
    if a.manifest.get("workload") != b.manifest.get("workload"):
        notes.append(f"A and B are different workloads ({a.manifest.get('workload')} vs "
                     f"{b.manifest.get('workload')}): their maths differ, so only the shape of "
                     "their steps compares")
    return RunDiff(a=describe_run(a), b=describe_run(b), categories=categories, category_source=source,
                   ops=ops, ops_unit=unit, distributions=step_distributions(a_steps, b_steps, labels),
                   findings=findings_diff(a.findings, b.findings), notes=notes)

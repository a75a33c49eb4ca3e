"""Scale-out analysis: per-worker step times, collective time and the spread between workers.

Pure: tables in, tables/dicts out. The inputs are each worker's host-timed steps (the
``steps`` schema) and each worker's trace ``events`` (``profilers.xprof_tools``'
``events`` table, read by the caller); the output is the run's ``workers`` table
(``profilers.model.SCHEMAS``) and the manifest's ``results.per_worker``::

    [{"worker": 0, "steps": 59, "traced_steps": 10,
      "step_ms": {"median", "p10", "p90"},   # wall time of the worker's own steps
      "collective_ms": {"median"},            # time inside collective ops, traced steps
      "non_collective_ms": {"median"},        # step wall minus collective time, traced steps
      "collective_share": 0.42}, ...]         # collective / wall over the traced steps

**Collectives** are op events (TF ops, XLA HLO ops) whose type is a collective
(``COLLECTIVE_TYPE_RE``: ``CollectiveReduceV2``, ``CollectiveGatherV2``, ``NcclAllReduce``,
``all-reduce``...). A collective op's event lasts until its peers arrive, so it measures
transfer *and* waiting. Time is counted once where collectives overlap (interval union),
inside each step marker's window.

**Straggler.** In synchronous training every worker's step lasts as long as the slowest
worker's: the fast ones wait inside the all-reduce. Wall step times are then nearly equal,
and the straggler is the worker whose step *minus its collective time* is longest: it
arrives last, so it waits least. ``straggler_metric`` uses that (``non_collective_ms``) when
every worker has traced steps, else the wall ``step_ms``.

Must not import tensorflow, xprof, streamlit or pynvml.
"""
from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from profilers.errors import BadTable
from profilers.model import empty_table, validate_table

#: Op types that are collectives (TF ops, NCCL ops, XLA HLO collectives).
COLLECTIVE_TYPE_RE = re.compile(
    r"^(Collective\w+|Nccl\w+|\w*AllReduce\w*|\w*AllGather\w*|\w*ReduceScatter\w*|\w*AllToAll\w*"
    r"|(all-reduce|all-gather|reduce-scatter|all-to-all|collective-permute|collective-broadcast)"
    r"(-start|-done)?(\.\d+)?)$")

#: A worker is a straggler when its median is more than this fraction over the median of all.
STRAGGLER_THRESHOLD = 0.20

_EVENT_COLS = ("name", "long_name", "ts_us", "dur_us", "step", "marker", "tf_op", "hlo_op")


def _need(df: pd.DataFrame, what: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise BadTable(f"{what} is missing column(s): {', '.join(missing)}.",
                       f"Expected columns: {', '.join(columns)}.")


def op_type(name: str, long_name: Any) -> str:
    """The op type of a trace event: after the last ``:`` of ``scope/op:Type``, else the name."""
    if isinstance(long_name, str) and ":" in long_name:
        return long_name.rsplit(":", 1)[1]
    return str(name)


def collective_events(events: pd.DataFrame) -> pd.DataFrame:
    """The op events of ``events`` whose type is a collective."""
    _need(events, "The events table", _EVENT_COLS)
    ops = events[events["tf_op"].astype(bool) | events["hlo_op"].astype(bool)]
    if ops.empty:
        return ops
    types = [op_type(n, ln) for n, ln in zip(ops["name"].astype(str), ops["long_name"].astype(object))]
    return ops[[bool(COLLECTIVE_TYPE_RE.match(t)) for t in types]]


def _union_in(starts: np.ndarray, ends: np.ndarray, a: float, b: float) -> float:
    """Length of the union of [starts, ends) intervals clipped to [a, b)."""
    s = np.clip(starts, a, b)
    e = np.clip(ends, a, b)
    keep = e > s
    if not keep.any():
        return 0.0
    s, e = s[keep], e[keep]
    order = np.argsort(s, kind="stable")
    s, e = s[order], e[order]
    total, cur_s, cur_e = 0.0, s[0], e[0]
    for lo, hi in zip(s[1:], e[1:]):
        if lo > cur_e:
            total += cur_e - cur_s
            cur_s, cur_e = lo, hi
        else:
            cur_e = max(cur_e, hi)
    return float(total + cur_e - cur_s)


def window_collectives(events: pd.DataFrame, steps: Sequence[int], starts_us: Sequence[float],
                       ends_us: Sequence[float]) -> pd.DataFrame:
    """Collective time inside each step window of one worker's trace: ``step``,
    ``marker_start_us``, ``marker_us`` (the window's length) and ``collective_us``."""
    coll = collective_events(events)
    cs = coll["ts_us"].to_numpy(dtype=float)
    ce = cs + coll["dur_us"].to_numpy(dtype=float)
    a = np.asarray(starts_us, dtype=float)
    b = np.asarray(ends_us, dtype=float)
    return pd.DataFrame({
        "step": np.asarray(steps, dtype=np.int64), "marker_start_us": a, "marker_us": b - a,
        "collective_us": np.asarray([_union_in(cs, ce, lo, hi) for lo, hi in zip(a, b)], dtype=float),
    })


def step_collectives(events: pd.DataFrame) -> pd.DataFrame:
    """``window_collectives`` over the step markers (``train N``) of one worker's trace;
    empty when the trace has no markers."""
    _need(events, "The events table", _EVENT_COLS)
    markers = events[events["marker"].astype(bool) & events["step"].notna()]
    if markers.empty:
        return window_collectives(events, [], [], [])
    win = (markers.assign(end_us=markers["ts_us"] + markers["dur_us"], step=markers["step"].astype("int64"))
           .groupby("step").agg(start=("ts_us", "min"), end=("end_us", "max")).reset_index())
    return window_collectives(events, win["step"], win["start"], win["end"])


def workers_table(host_steps: Mapping[int, pd.DataFrame],
                  traced: Mapping[int, pd.DataFrame] | None = None) -> pd.DataFrame:
    """The ``workers`` table from each worker's own steps (``steps`` schema) and, for the
    workers that were traced, their ``step_collectives``. A step is in the profile window
    when the worker's trace has its marker; ``collective_us`` is NaN outside it."""
    frames = []
    for worker in sorted(host_steps):
        steps = host_steps[worker]
        _need(steps, f"Worker {worker}'s steps", ("step", "start_us", "wall_us", "warmup"))
        coll = (traced or {}).get(worker)
        by_step = (dict(zip(coll["step"].astype(int), coll["collective_us"].astype(float)))
                   if coll is not None and not coll.empty else {})
        frames.append(pd.DataFrame({
            "worker": np.full(len(steps), worker, dtype=np.int64),
            "step": steps["step"].to_numpy(dtype=np.int64),
            "start_us": steps["start_us"].to_numpy(dtype=float),
            "wall_us": steps["wall_us"].to_numpy(dtype=float),
            "warmup": steps["warmup"].to_numpy(dtype=bool),
            "in_profile_window": steps["step"].isin(set(by_step)).to_numpy(dtype=bool),
            "collective_us": [by_step.get(int(s), np.nan) for s in steps["step"]],
        }))
    if not frames:
        return empty_table("workers")
    return validate_table("workers", pd.concat(frames, ignore_index=True))


def steps_from_markers(marks: pd.DataFrame, warmup_steps: int = 0) -> pd.DataFrame:
    """A ``steps`` table from ``step_collectives`` rows: each marker window is a step (for a
    job captured from outside, whose host step times sgdscope did not record)."""
    marks = marks.sort_values("step")
    n = len(marks)
    return validate_table("steps", pd.DataFrame({
        "step": marks["step"].to_numpy(dtype=np.int64), "epoch": np.zeros(n, dtype=np.int64),
        "start_us": marks["marker_start_us"].to_numpy(dtype=float),
        "wall_us": marks["marker_us"].to_numpy(dtype=float),
        "warmup": np.arange(n) < warmup_steps, "derived": np.zeros(n, dtype=bool),
        "in_profile_window": np.ones(n, dtype=bool), "loss": np.full(n, np.nan)}))


def _ms(values: pd.Series) -> dict[str, float | None]:
    v = values.to_numpy(dtype=float) / 1e3
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"median": None, "p10": None, "p90": None}
    p10, med, p90 = np.percentile(v, [10, 50, 90])
    return {"median": float(med), "p10": float(p10), "p90": float(p90)}


def per_worker(workers: pd.DataFrame) -> list[dict[str, Any]]:
    """``results.per_worker``: each worker's step-time distribution (measured steps) and, over
    its traced measured steps, its collective time and share of the step."""
    workers = validate_table("workers", workers)
    out: list[dict[str, Any]] = []
    for worker, df in workers.groupby("worker", sort=True):
        measured = df[~df["warmup"]]
        traced = measured[measured["in_profile_window"] & measured["collective_us"].notna()]
        wall = float(traced["wall_us"].sum())
        coll = float(traced["collective_us"].sum())
        out.append({
            "worker": int(worker), "steps": int(len(measured)), "traced_steps": int(len(traced)),
            "step_ms": _ms(measured["wall_us"]),
            "collective_ms": {"median": _ms(traced["collective_us"])["median"]},
            "non_collective_ms": {"median": _ms(traced["wall_us"] - traced["collective_us"])["median"]},
            "collective_share": coll / wall if wall > 0 else None,
        })
    return out


def straggler_metric(rows: Sequence[Mapping[str, Any]]) -> tuple[str, dict[int, float]]:
    """(metric name, {worker: median ms}) used to compare workers; see the module doc."""
    non_coll = {int(r["worker"]): (r.get("non_collective_ms") or {}).get("median") for r in rows}
    if rows and all(v is not None for v in non_coll.values()):
        return "non_collective_ms", {k: float(v) for k, v in non_coll.items()}
    wall = {int(r["worker"]): (r.get("step_ms") or {}).get("median") for r in rows}
    return "step_ms", {k: float(v) for k, v in wall.items() if v is not None}


def stragglers(rows: Sequence[Mapping[str, Any]], threshold: float = STRAGGLER_THRESHOLD) -> dict[str, Any]:
    """Workers whose median (``straggler_metric``) is more than ``threshold`` over the median
    of all workers: ``{"metric", "median_ms", "workers": [{"worker", "median_ms", "over"}]}``
    (``over`` = fraction above the median; empty with fewer than two workers)."""
    metric, values = straggler_metric(rows)
    if len(values) < 2:
        return {"metric": metric, "median_ms": None, "workers": [], "values_ms": values}
    mid = float(np.median(list(values.values())))
    found = [{"worker": w, "median_ms": v, "over": v / mid - 1.0}
             for w, v in sorted(values.items()) if mid > 0 and v > mid * (1.0 + threshold)]
    found.sort(key=lambda d: -d["over"])
    return {"metric": metric, "median_ms": mid, "workers": found, "values_ms": values}


def spread(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The step-time spread between workers: slowest over fastest median, for the wall step
    and for the step minus collectives (None where not measured)."""
    def ratio(vals: list[float]) -> float | None:
        vals = [v for v in vals if v is not None and math.isfinite(v)]
        return max(vals) / min(vals) if len(vals) >= 2 and min(vals) > 0 else None

    wall = [(r.get("step_ms") or {}).get("median") for r in rows]
    non_coll = [(r.get("non_collective_ms") or {}).get("median") for r in rows]
    return {"workers": len(rows), "step_ms_max_over_min": ratio(wall),
            "non_collective_ms_max_over_min": ratio(non_coll),
            "slowest_worker": max(((r["worker"], v) for r, v in zip(rows, non_coll) if v is not None),
                                  key=lambda t: t[1], default=(None, None))[0]}


def collective_share(rows: Sequence[Mapping[str, Any]]) -> float | None:
    """The run's collective share: the median over workers of each one's share (None when no
    worker was traced)."""
    shares = [r["collective_share"] for r in rows if r.get("collective_share") is not None]
    return float(np.median(shares)) if shares else None

"""Steps of a script that has no step markers, inferred from its TF profiler trace.

A user's training script is profiled unchanged, so a custom loop has no
``Trace("train", step_num=i)`` markers (xprof then says "No step time measured"). The
steps are found in the capture's events instead (``xprof_tools.trace_events``):

1. **The dispatch thread**: the thread that issued the most eager ops (``EagerExecute``)
   and ``tf.function`` calls (events with a ``tf_function_call`` arg) - the script's
   Python thread.
2. **The dispatch sequence**: on that thread, the top-level ``tf.function`` calls
   (labelled by function name) and the eager ops outside any call (labelled by op type,
   ``IteratorGetNext`` included), in time order; an eager op starts where the Python call
   that dispatched it (``TFE_Py_*``) starts.
3. **The period** ``p``: the smallest shift at which the sequence matches itself for at
   least ``MIN_PERIOD_SCORE`` of its positions (a loop body dispatches the same things in
   the same order every iteration; an extra dispatch now and then, such as logging every
   7 steps, only lowers the score: one in every 7 iterations of a 2-dispatch body leaves
   80 %).
4. **The phase**: where an iteration starts, read in the longest stretch that repeats
   (the loop, not a few repeated set-up dispatches before it). The iterator fetch if the body has one (a
   step = fetch + compute, as the markers place it); else right after the body's last
   variable update (``Assign*VariableOp`` / ``ResourceApply*``: an SGD step ends with it);
   else the first top-level ``tf.function`` call; else the first element of the first
   repeating unit.
5. **Boundaries**: every occurrence of the shortest run of labels starting at that phase
   that occurs once per iteration. A step runs from one boundary to the next; the last,
   incomplete one is dropped.
6. **When nothing repeats** (a loop that retraces on most calls dispatches different eager
   ops while it traces, which breaks the pattern): the steps start at each top-level
   iterator fetch (``method = "iterator"``), else at each top-level call of the most
   called ``tf.function`` (``method = "function_calls"``). Function labels are
   normalised first (``function_label``): ``__inference_train_step_123`` is
   ``train_step`` whatever its trace id, so a retrace is still the same function.

The result becomes synthetic step markers, so ``profilers.breakdown.breakdown_from_trace``
attributes the inferred steps exactly as it does marked ones. ``consumer_view`` drops the
events of tf.data's own worker threads: their time is already seen, from the step's side,
as the wait in ``IteratorGetNext``; counting their ops as well would split a wait in two.

Pure: tables in, tables out. Must not import tensorflow, xprof, streamlit or pynvml.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: A shift must reproduce at least this share of the dispatch sequence to be the period.
MIN_PERIOD_SCORE = 0.6
#: Longest loop body looked for, in dispatches.
MAX_PERIOD = 600
#: The period is searched in the first this many dispatches (cost grows with the product).
PERIOD_SEARCH_LEN = 12000
#: A period must repeat at least this many times to count as a loop.
MIN_REPEATS = 3

GETNEXT_RE = re.compile(r"IteratorGetNext")
#: ``__inference_train_step_123`` (and XLA's ``..._123_jit``...): the function, any trace id.
_TRACE_ID_RE = re.compile(r"^(?:EagerLocalExecute: )?__(?:inference|forward|backward)_(.+?)_\d+(?:_[A-Za-z]\w*)?$")
#: A step with at least this many eager dispatches (and mostly outside tf.function calls)
#: is an eager step: graph mode would remove all of its host time but kernels and fetches.
EAGER_STEP_MIN_DISPATCHES = 8
#: Fallback cuts need at least this many boundaries (two complete steps).
MIN_FALLBACK_BOUNDARIES = 3
_UPDATE_RE = re.compile(r"^(Assign(Add|Sub)?VariableOp|ResourceApply\w+|ResourceSparseApply\w+)$")
_TFDATA_THREAD_RE = re.compile(r"^tf_data")
_TFE_PY_RE = re.compile(r"^TFE_Py_")
_EAGER_EXECUTE_RE = re.compile(r"^EagerExecute$")


@dataclass
class StepCut:
    """Inferred steps on the trace clock, and how they were found."""

    start_us: np.ndarray
    end_us: np.ndarray
    lane: tuple[int, int] | None  # (pid, tid) of the dispatch thread
    method: str  # "period" | "iterator" | "function_calls" | "none"
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return int(len(self.start_us))


def function_label(name: str) -> str:
    """A tf.function's name without its trace id: ``__inference_train_step_123`` and
    ``__inference_train_step_456`` are both ``train_step`` (each retrace gets a new id)."""
    m = _TRACE_ID_RE.match(name)
    return m.group(1) if m else name


def consumer_view(events: pd.DataFrame) -> pd.DataFrame:
    """The events as the training step sees them: tf.data worker threads left out.

    Events on threads named ``tf_data*`` are the pipeline producing elements (its map
    functions, prefetch threads). The step waits for them in ``IteratorGetNext``, which is
    kept wherever it runs (Keras runs it on ``tf_data_iterator_get_next``).
    """
    if events.empty:
        return events
    producer = _matches(events["thread"], _TFDATA_THREAD_RE) & ~_matches(events["name"], GETNEXT_RE)
    return events[~producer].reset_index(drop=True)


def _matches(col: pd.Series, rx: re.Pattern[str]) -> np.ndarray:
    """``rx.search`` over a column, as a bool array. A categorical column (the events table's
    strings) is matched once per category, not once per event: a big capture has hundreds
    of thousands of events but a few hundred distinct names."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        cats = col.cat.categories.astype(str)
        hit = np.fromiter((rx.search(c) is not None for c in cats), dtype=bool, count=len(cats))
        codes = col.cat.codes.to_numpy()
        return np.where(codes >= 0, hit[np.maximum(codes, 0)], False) if len(cats) else np.zeros(len(col), bool)
    text = col.astype("string").fillna("")
    return text.str.contains(rx.pattern, regex=True).to_numpy(dtype=bool)


def _top_level(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Mask of intervals not nested inside an earlier one (inputs sorted by start)."""
    keep = np.zeros(len(starts), dtype=bool)
    reach = -np.inf
    for i, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
        if s >= reach:
            keep[i] = True
            reach = e
    return keep


#: ``tf_function_call`` of a tf.function call that ran its Python op by op because
#: ``tf.config.run_functions_eagerly(True)`` is set (TF's ``Function.__call__``).
EAGER_CALL = "eager"


def dispatch_lane(events: pd.DataFrame) -> tuple[int, int] | None:
    """(pid, tid) of the script's dispatch thread: the one with the most tf.function calls
    and eager dispatches; None when there are none."""
    if events.empty:
        return None
    is_call = events["function_call"].notna().to_numpy()
    is_exec = (events["name"] == "EagerExecute").fillna(False).to_numpy(dtype=bool)
    is_eager = is_exec & ~events["is_func"].to_numpy(dtype=bool)
    rel = events[is_call | is_eager]
    if rel.empty:
        return None
    pid, tid = (int(x) for x in rel.groupby(["pid", "tid"]).size().idxmax())
    return pid, tid


def dispatch_sequence(events: pd.DataFrame) -> tuple[pd.DataFrame, tuple[int, int] | None]:
    """Top-level dispatches of the script's thread: ``label, ts_us, dur_us, kind``.

    ``kind`` is ``call`` (a tf.function call, labelled by function name) or ``eager``
    (an eager op outside any call, labelled by op type).
    """
    cols = ["label", "ts_us", "dur_us", "kind"]
    empty = pd.DataFrame({c: pd.Series([], dtype=t) for c, t in
                          zip(cols, ["string", "float64", "float64", "string"])})
    lane = dispatch_lane(events)
    if lane is None:
        return empty, None
    pid, tid = lane
    on = events[(events["pid"] == pid) & (events["tid"] == tid)]
    calls = on[on["function_call"].notna()].sort_values("ts_us")
    c_start = calls["ts_us"].to_numpy(dtype=float)
    c_end = c_start + calls["dur_us"].to_numpy(dtype=float)
    top = _top_level(c_start, c_end)
    calls, c_start, c_end = calls[top], c_start[top], c_end[top]
    eager = on[(on["name"] == "EagerExecute").fillna(False) & ~on["is_func"].astype(bool)]
    e_start = eager["ts_us"].to_numpy(dtype=float)
    # An eager op inside a call is part of that call (e.g. while it traces).
    k = np.searchsorted(c_start, e_start, side="right") - 1
    inside = (k >= 0) & (e_start < c_end[np.clip(k, 0, None)]) if len(c_start) else np.zeros(len(e_start), bool)
    eager = eager[~inside]
    # An eager op starts where the Python call that dispatched it starts.
    e_ts = eager["ts_us"].to_numpy(dtype=float)
    e_end = e_ts + eager["dur_us"].to_numpy(dtype=float)
    py = on[_matches(on["name"], _TFE_PY_RE)].sort_values("ts_us")
    if len(py) and len(e_ts):
        p_s = py["ts_us"].to_numpy(dtype=float)
        p_e = p_s + py["dur_us"].to_numpy(dtype=float)
        k = np.searchsorted(p_s, e_ts, side="right") - 1
        ok = (k >= 0) & (e_end <= p_e[np.clip(k, 0, None)])
        e_ts = np.where(ok, p_s[np.clip(k, 0, None)], e_ts)
        e_end = np.where(ok, p_e[np.clip(k, 0, None)], e_end)
    seq = pd.concat([
        pd.DataFrame({"label": _labels(calls["name"]), "ts_us": c_start, "dur_us": c_end - c_start,
                      "kind": "call"}),
        pd.DataFrame({"label": _labels(eager["eager_op"]), "ts_us": e_ts, "dur_us": e_end - e_ts,
                      "kind": "eager"}),
    ], ignore_index=True).sort_values("ts_us", kind="stable").reset_index(drop=True)
    return seq.astype({"label": "string", "kind": "string"}), (pid, tid)


def _labels(col: pd.Series) -> list[str]:
    """``function_label`` of each value ("?" for a missing one); a categorical column is
    labelled once per category, not once per event."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        cats = [function_label(str(c)) for c in col.cat.categories] + ["?"]  # code -1 -> "?"
        return [cats[k] for k in col.cat.codes.tolist()]
    return [function_label(str(x)) for x in col.astype("string").fillna("?").tolist()]


def find_period(codes: np.ndarray, *, max_period: int = MAX_PERIOD,
                min_score: float = MIN_PERIOD_SCORE) -> tuple[int, float]:
    """(period, score): the smallest shift under which ``codes`` matches itself for at
    least ``min_score`` of the positions; (0, best score) when there is none."""
    n = len(codes)
    best = 0.0
    for p in range(1, min(max_period, n // MIN_REPEATS) + 1):
        score = float(np.mean(codes[:-p] == codes[p:]))
        best = max(best, score)
        if score >= min_score:
            return p, score
    return 0, best


def _main_stretch(codes: np.ndarray, p: int) -> int:
    """Start of the longest stretch where ``codes[i] == codes[i + p]`` holds throughout:
    the loop itself, not a few repeated set-up dispatches before it."""
    eq = np.concatenate([[False], codes[:-p] == codes[p:], [False]]).astype(np.int8)
    edges = np.diff(eq)
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    if len(starts) == 0:
        return 0
    longest = int(np.argmax(ends - starts))
    return int(starts[longest])


def _phase(unit: list[str], kinds: list[str]) -> tuple[int, str]:
    """Index in ``unit`` where an iteration starts, and why."""
    for i, label in enumerate(unit):
        if GETNEXT_RE.search(label):
            return i, "iterator fetch"
    updates = [i for i, label in enumerate(unit) if _UPDATE_RE.match(label)]
    if updates:
        return (updates[-1] + 1) % len(unit), "after the last variable update"
    for i, kind in enumerate(kinds):
        if kind == "call":
            return i, "tf.function call"
    return 0, "first repeating dispatch"


def _anchor(unit: list[int], start: int) -> list[int]:
    """Shortest run of the cyclic ``unit`` from ``start`` that occurs once in it."""
    p = len(unit)
    doubled = unit + unit
    for k in range(1, p + 1):
        gram = doubled[start:start + k]
        hits = sum(1 for i in range(p) if doubled[i:i + k] == gram)
        if hits == 1:
            return gram
    return doubled[start:start + p]


def _occurrences(codes: np.ndarray, gram: list[int]) -> np.ndarray:
    k = len(gram)
    if len(codes) < k:
        return np.zeros(0, dtype=np.int64)
    match = np.ones(len(codes) - k + 1, dtype=bool)
    for j, g in enumerate(gram):
        match &= codes[j:len(codes) - k + 1 + j] == g
    return np.nonzero(match)[0]


def infer_steps(events: pd.DataFrame) -> StepCut:
    """Cut a marker-less capture into steps (see the module docstring)."""
    seq, lane = dispatch_sequence(events)
    none = np.zeros(0)
    if seq.empty:
        return StepCut(none, none, None, "none",
                       "no eager op or tf.function call was dispatched in the capture window")
    labels = seq["label"].astype(str).tolist()
    vocab: dict[str, int] = {}
    codes = np.asarray([vocab.setdefault(x, len(vocab)) for x in labels], dtype=np.int64)
    p, score = find_period(codes[:PERIOD_SEARCH_LEN])
    details: dict[str, Any] = {"dispatches": int(len(codes)), "distinct": len(vocab),
                               "dispatch_thread": {"pid": lane[0], "tid": lane[1]} if lane else None,
                               "period": p, "period_score": round(score, 4)}
    if p == 0:
        why_not = (f"no repeating pattern in the {len(codes)} dispatches of the capture "
                   f"(best self-match {score:.0%} < {MIN_PERIOD_SCORE:.0%})")
        return _with_outliers(events, _fallback_cut(seq, lane, details, why_not))
    s0 = _main_stretch(codes, p)
    unit = codes[s0:s0 + p].tolist()
    names = {v: k for k, v in vocab.items()}
    kinds = seq["kind"].astype(str).tolist()[s0:s0 + p]
    offset, why = _phase([names[c] for c in unit], kinds)
    gram = _anchor(unit, offset)
    hits = _occurrences(codes, gram)
    ts = seq["ts_us"].to_numpy(dtype=float)
    starts = ts[hits]
    details.update({"body": [names[c] for c in unit[offset:] + unit[:offset]],
                    "step_starts_at": why, "anchor": [names[c] for c in gram],
                    "boundaries": int(len(hits))})
    if len(starts) < 2:
        return _with_outliers(events, _fallback_cut(seq, lane, details,
                                                    "the loop body repeats, but fewer than two iterations were captured"))
    return _with_outliers(events, StepCut(starts[:-1], starts[1:], lane, "period", None, details))


#: An inferred step longer than this many median steps gets its contents described.
OUTLIER_FACTOR = 5.0
OUTLIER_MIN_STEPS = 10


def step_contents(events: pd.DataFrame, start_us: float, end_us: float, lane: tuple[int, int] | None,
                  n: int = 3) -> dict[str, Any]:
    """What one step window contained: its ``n`` longest events (any thread; clipped to the
    window; one per name) and ``untraced_ms``, the time the dispatch thread spent in no
    TF event at all (Python)."""
    ts = events["ts_us"].to_numpy(dtype=float)
    te = ts + events["dur_us"].to_numpy(dtype=float)
    inside = (ts < end_us) & (te > start_us) & ~events["marker"].to_numpy(dtype=bool)
    sel = events[inside]
    dur = np.minimum(te[inside], end_us) - np.maximum(ts[inside], start_us)
    order = np.argsort(-dur, kind="stable")
    out, seen = [], set()
    names = sel["name"].astype(str).to_numpy()
    threads = sel["thread"].astype("string").fillna("").to_numpy()
    for k in order.tolist():
        name = function_label(names[k])
        if name in seen:
            continue
        seen.add(name)
        out.append({"name": name, "ms": round(float(dur[k]) / 1e3, 3), "thread": str(threads[k])})
        if len(out) >= n:
            break
    untraced = None
    if lane is not None:
        on = inside & (events["pid"].to_numpy() == lane[0]) & (events["tid"].to_numpy() == lane[1])
        untraced = round((end_us - start_us - _union_in(ts[on], te[on], start_us, end_us)) / 1e3, 3)
    return {"longest_events": out, "untraced_ms": untraced}


def _with_outliers(events: pd.DataFrame, cut: StepCut) -> StepCut:
    """Adds ``details["outlier_steps"]``: the steps longer than ``OUTLIER_FACTOR`` x the
    median, each with ``step_contents`` (the triage's outlier_steps rule reads them)."""
    if cut.count < OUTLIER_MIN_STEPS:
        return cut
    wall = cut.end_us - cut.start_us
    med = float(np.median(wall))
    idx = np.nonzero(wall > OUTLIER_FACTOR * med)[0] if med > 0 else []
    cut.details["outlier_steps"] = [
        {"step": int(i), "ms": round(float(wall[i]) / 1e3, 3),
         **step_contents(events, float(cut.start_us[i]), float(cut.end_us[i]), cut.lane)}
        for i in list(idx)[:10]]
    return cut


def _fallback_cut(seq: pd.DataFrame, lane: tuple[int, int] | None, details: dict[str, Any],
                  why_not: str) -> StepCut:
    """Steps from one boundary signal when the dispatches do not repeat: each top-level
    iterator fetch, else each top-level call of the most called tf.function."""
    none = np.zeros(0)
    label = seq["label"].astype(str)
    ts = seq["ts_us"].to_numpy(dtype=float)
    fetch = ts[label.str.contains(GETNEXT_RE.pattern).to_numpy(dtype=bool)]
    details["period_failed"] = why_not
    if len(fetch) >= MIN_FALLBACK_BOUNDARIES:
        details.update({"step_starts_at": "iterator fetch", "boundaries": int(len(fetch))})
        return StepCut(fetch[:-1], fetch[1:], lane, "iterator", None, details)
    calls = seq[seq["kind"].astype(str) == "call"]
    if len(calls):
        counts = calls["label"].astype(str).value_counts()
        fn, n = str(counts.index[0]), int(counts.iloc[0])
        if n >= MIN_FALLBACK_BOUNDARIES:
            starts = calls.loc[calls["label"].astype(str) == fn, "ts_us"].to_numpy(dtype=float)
            details.update({"step_starts_at": f"tf.function call ({fn})", "boundaries": int(len(starts))})
            return StepCut(starts[:-1], starts[1:], lane, "function_calls", None, details)
    return StepCut(none, none, lane, "none",
                   f"{why_not}; fewer than {MIN_FALLBACK_BOUNDARIES} iterator fetches and "
                   f"tf.function calls to cut at", details)


def marker_events(cut: StepCut, first_step: int = 0) -> pd.DataFrame:
    """Synthetic ``train N`` marker events for the inferred steps (events schema columns)."""
    n = cut.count
    pid, tid = cut.lane if cut.lane else (0, 0)
    steps = np.arange(first_step, first_step + n, dtype=np.int64)
    return pd.DataFrame({
        "pid": np.full(n, pid, dtype=np.int64), "tid": np.full(n, tid, dtype=np.int64),
        "process": pd.array(["/host:CPU"] * n, dtype="string"),
        "thread": pd.array(["sgdscope-inferred-steps"] * n, dtype="string"),
        "name": pd.array([f"train {s}" for s in steps], dtype="string"),
        "long_name": pd.array([pd.NA] * n, dtype="string"),
        "ts_us": cut.start_us.astype(float), "dur_us": (cut.end_us - cut.start_us).astype(float),
        "step": pd.array(steps, dtype="Int64"), "group_id": pd.array([pd.NA] * n, dtype="Int64"),
        "marker": np.ones(n, dtype=bool), "tf_op": np.zeros(n, dtype=bool),
        "hlo_op": np.zeros(n, dtype=bool), "eager_op": pd.array([pd.NA] * n, dtype="string"),
        "is_func": np.zeros(n, dtype=bool), "function_call": pd.array([pd.NA] * n, dtype="string"),
    })


def marker_windows(events: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(step, start_us, end_us) of the capture's own ``train N`` markers, by time."""
    m = events[events["marker"].astype(bool) & events["step"].notna()].sort_values("ts_us")
    m = m.drop_duplicates("step")
    start = m["ts_us"].to_numpy(dtype=float)
    return m["step"].to_numpy(dtype=np.int64), start, start + m["dur_us"].to_numpy(dtype=float)


def _union_in(starts: np.ndarray, ends: np.ndarray, a: float, b: float) -> float:
    s, e = np.clip(starts, a, b), np.clip(ends, a, b)
    keep = e > s
    if not keep.any():
        return 0.0
    order = np.argsort(s[keep])
    s, e = s[keep][order], e[keep][order]
    total, cur_s, cur_e = 0.0, s[0], e[0]
    for x, y in zip(s[1:].tolist(), e[1:].tolist()):
        if x > cur_e:
            total += cur_e - cur_s
            cur_s, cur_e = x, y
        else:
            cur_e = max(cur_e, y)
    return total + cur_e - cur_s


def eager_time(events: pd.DataFrame, starts: np.ndarray, ends: np.ndarray,
               lane: tuple[int, int] | None = None) -> np.ndarray:
    """µs per window that graph mode would remove: eager dispatch and the Python around it.

    On the dispatch thread (``lane``; by default the one ``dispatch_sequence`` picks), the
    eager dispatches are each non-function ``EagerExecute`` together with the
    Python-to-C++ call around it (``TFE_Py_*``). Within a window the eager region runs from
    the first dispatch's start to the last one's end: the model's Python between the ops
    is eager cost too (a ``tf.function`` runs it once, at trace time). Left out of it: the
    op kernels themselves (``tf_op`` events inside the dispatches: a graph runs them too),
    the iterator fetch (input wait), and ``tf.function`` calls (already graphs; eager ops
    inside them run while tracing: tracing time), except calls run eagerly
    (``EAGER_CALL``: their ops are the eager ops). A window with one dispatch counts just
    that dispatch. An eager step (at least ``EAGER_STEP_MIN_DISPATCHES`` dispatches, and
    less than half of it inside tf.function calls, e.g. Keras ``run_eagerly=True``) counts
    the whole window, less those: the Python before its first op and after its last one
    is the eager train step's own code too (graph mode runs it once, at trace time).
    """
    if lane is None:
        lane = dispatch_lane(events)
    if lane is None or events.empty:
        return np.zeros(len(starts))
    on = events[(events["pid"] == lane[0]) & (events["tid"] == lane[1])]
    ts = on["ts_us"].to_numpy(dtype=float)
    te = ts + on["dur_us"].to_numpy(dtype=float)
    is_exec = _matches(on["name"], _EAGER_EXECUTE_RE) & ~on["is_func"].to_numpy(dtype=bool)
    fetch = _matches(on["eager_op"], GETNEXT_RE)
    ex = is_exec & ~fetch
    e_s, e_e = ts[ex], te[ex]
    # A call run eagerly (run_functions_eagerly) is no graph: its ops are eager ops.
    calls = (on["function_call"].notna() & (on["function_call"] != EAGER_CALL)).to_numpy(dtype=bool)
    c_s, c_e = ts[calls], te[calls]
    if calls.any():
        o = np.argsort(c_s)
        cs, ce = c_s[o], np.maximum.accumulate(c_e[o])
        k = np.searchsorted(cs, e_s, side="right") - 1
        inside = (k >= 0) & (e_s < ce[np.clip(k, 0, None)])
        e_s, e_e = e_s[~inside], e_e[~inside]
    py = _matches(on["name"], _TFE_PY_RE)
    if py.any() and len(e_s):
        p_s, p_e = ts[py], te[py]
        o = np.argsort(p_s)
        p_s, p_e = p_s[o], p_e[o]
        k = np.searchsorted(p_s, e_s, side="right") - 1
        ok = (k >= 0) & (e_e <= p_e[np.clip(k, 0, None)])
        e_s = np.where(ok, p_s[np.clip(k, 0, None)], e_s)
        e_e = np.where(ok, p_e[np.clip(k, 0, None)], e_e)
    # Not removable by graph mode: kernels, fetches, function calls.
    kern = on["tf_op"].to_numpy(dtype=bool) & ~is_exec
    eager_iv = _Intervals(e_s, e_e)
    call_iv = _Intervals(c_s, c_e)
    keep_iv = _Intervals(np.concatenate([ts[kern], ts[is_exec & fetch], c_s]),
                         np.concatenate([te[kern], te[is_exec & fetch], c_e]))
    out = np.zeros(len(starts))
    for i, (a, b) in enumerate(zip(starts.tolist(), ends.tolist())):
        w_s, w_e = eager_iv.overlapping(a, b)
        n = len(w_s)
        if n == 0:
            continue
        if n >= EAGER_STEP_MIN_DISPATCHES and _union_in(*call_iv.overlapping(a, b), a, b) < 0.5 * (b - a):
            lo, hi = a, b  # an eager step: its Python runs only to dispatch ops, all of it goes
        elif n == 1:
            lo, hi = max(float(w_s[0]), a), min(float(w_e[0]), b)
        else:
            lo, hi = max(float(w_s.min()), a), min(float(w_e.max()), b)
        out[i] = max(hi - lo - _union_in(*keep_iv.overlapping(lo, hi), lo, hi), 0.0)
    return out


class _Intervals:
    """Intervals sorted by start, to find those overlapping a window without scanning all
    of them (a capture of hundreds of steps has tens of thousands of dispatches)."""

    def __init__(self, starts: np.ndarray, ends: np.ndarray) -> None:
        order = np.argsort(starts, kind="stable")
        self.starts, self.ends = starts[order], ends[order]
        # The furthest end so far: nondecreasing, so the first interval that can reach
        # past a window's start is found by bisection.
        self.reach = np.maximum.accumulate(self.ends) if len(order) else self.ends

    def overlapping(self, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
        """(starts, ends) of the intervals with start < b and end > a."""
        lo = int(np.searchsorted(self.reach, a, side="right"))
        hi = int(np.searchsorted(self.starts, b, side="left"))
        s, e = self.starts[lo:hi], self.ends[lo:hi]
        sel = e > a
        return s[sel], e[sel]


def function_calls(events: pd.DataFrame, starts: np.ndarray | None = None,
                   ends: np.ndarray | None = None) -> pd.DataFrame:
    """Per tf.function: calls, traced calls and their durations in the capture.

    Columns: ``function, calls, traced_calls, eager_calls, median_call_ms,
    median_traced_ms, median_untraced_ms, traced_ms, xla`` (``xla``: any call ran
    jit-compiled; ``eager_calls``: calls that ran the Python function op by op, under
    ``tf.config.run_functions_eagerly(True)``, which TF marks ``tf_function_call="eager"``).
    With windows, only calls that start inside one count.
    """
    calls = events[events["function_call"].notna()]
    if starts is not None and ends is not None and len(calls):
        ts = calls["ts_us"].to_numpy(dtype=float)
        order = np.argsort(starts)
        s, e = starts[order], ends[order]
        k = np.searchsorted(s, ts, side="right") - 1
        ok = (k >= 0) & (ts < e[np.clip(k, 0, None)])
        calls = calls[ok]
    rows = []
    names = calls["name"].astype(str).map(function_label)
    for name, grp in calls.groupby(names, sort=True):
        kind = grp["function_call"].astype(str)
        traced = kind.str.startswith("traced")
        dur_ms = grp["dur_us"].to_numpy(dtype=float) / 1e3
        rows.append({
            "function": name, "calls": int(len(grp)), "traced_calls": int(traced.sum()),
            "eager_calls": int((kind == EAGER_CALL).sum()),
            "median_call_ms": float(np.median(dur_ms)),
            "median_traced_ms": float(np.median(dur_ms[traced.to_numpy()])) if traced.any() else None,
            "median_untraced_ms": float(np.median(dur_ms[~traced.to_numpy()])) if (~traced).any() else None,
            "traced_ms": float(dur_ms[traced.to_numpy()].sum()),
            "xla": bool(kind.str.lower().str.endswith("-xla").any()),
        })
    return pd.DataFrame(rows, columns=["function", "calls", "traced_calls", "eager_calls", "median_call_ms",
                                       "median_traced_ms", "median_untraced_ms", "traced_ms", "xla"])


def eager_facts(events: pd.DataFrame, steps: pd.DataFrame) -> dict[str, float] | None:
    """Eager share of the measured, marked steps of a capture (a workload run's trace):
    ``eager_share`` (median over steps of the removable eager time over the step, see
    ``eager_time``), ``eager_ms_per_step``; None when no measured step has a marker."""
    m_steps, m_start, m_end = marker_windows(events)
    if not len(m_steps):
        return None
    measured = set(steps.loc[~steps["warmup"].astype(bool), "step"].tolist())
    keep = np.asarray([s in measured for s in m_steps.tolist()], dtype=bool)
    if not keep.any():
        return None
    eager = eager_time(events, m_start[keep], m_end[keep])
    wall = (m_end - m_start)[keep]
    ok = wall > 0
    if not ok.any():
        return None
    # The median step's share: one stalled step in the window must not decide it.
    return {"eager_share": float(np.median(eager[ok] / wall[ok])),
            "eager_ms_per_step": float(np.median(eager) / 1e3)}

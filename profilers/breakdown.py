"""Step-time breakdown: every variant's measured step wall time split into ``CATEGORIES``.

Two sources, one result (the ``breakdown`` table: ``step``, ``category``, ``ms``; long
format; the categories of a step add up to its wall time):

* ``breakdown_from_phases`` (NumPy, pure Python, any variant without a trace): the
  recorder's phase spans give their categories; ``framework_overhead`` is the step wall
  minus the phases (interpreter time between them).
* ``breakdown_from_trace`` (TF variants): the step markers of the TF profiler capture
  (``train N``) align the trace with the recorder's steps; inside each step's wall-time
  window, time is attributed on a timeline, thread by thread (``_attribute``):

  ====================  =====================================================================
  compile_trace         tf.function tracing (``tf.function-graph_building``), XLA compilation
                        (``*Compil*``, ``HLO passes*``, XLA codegen threads), ``_XlaCompile``;
                        and, at the lowest priority, the rest of a call marked ``traced-*``
  input_wait            host ``input_wait`` phases; ``IteratorGetNextOp::DoCompute``;
                        ops of type IteratorGetNext*/Optional*Value
  forward / backward /  kernel time of ops whose name scope says so: ``forward``,
  optimizer_update      ``gradient_tape``/``gradients``/``backward``, ``optimizer_update`` (and
                        Keras' ``compile_loss`` and optimizer scopes such as ``sgd_1``); eager ops
                        carry no scope in the trace, so a host phase of that name gives it
  host_device_transfer  ``_Send``/``_Recv`` ops, ``Memcpy*`` events (and ``EagerCopyToDevice``
                        when the capture has a device besides the host)
                        (``forward`` also: ops no scope names that start before the step's
                        backward pass, the forward pass and loss of a user's own step)
  other                 kernel time of ops outside those scopes (e.g. XLA HLO ops, which XLA
                        fuses across scopes), after the step's backward pass began
  framework_overhead    the step wall minus all of the above: dispatch, Python, executor
  ====================  =====================================================================

  "Kernel time" is the span of the innermost op event: TF op events (``is_eager`` arg),
  HLO op events, and for eager ops ``KernelAndDevice*::Run`` under a non-function
  ``EagerExecute``. Ops that contain other ops (function calls) count as overhead. When
  several threads are busy at once, the instant is split equally between them, so the
  categories never exceed the wall time.

Also: ``ops_per_step``, ``achieved_gflops`` and ``check_breakdown`` (the sum invariant).
The per-category ms of a run, the overhead per dispatch and the GEMM peak are not here:
``profilers.analysis`` derives each once (scaled to the median step) and stores it with
the run; the peak is measured by the worker (``profilers.environment.gemm_peak``).

Pure: tables in, tables out. One exception, at the edge: ``breakdown_for_run`` reads a
capture through ``profilers.xprof_tools``. Op classification is ``profilers.op_category``.
Must not import tensorflow, streamlit, altair or pynvml.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from profilers.errors import BadInput, BadTable, TraceUnavailable
from profilers.model import CATEGORIES, validate_table
from profilers.op_category import (  # noqa: F401  (re-exported: one classification)
    _CAT, _DEFAULT_RULES, OP_TYPE_CATEGORIES, SCOPE_RULES, _compile_rules, _op_category, op_category)

COMPUTE_CATEGORIES: tuple[str, ...] = ("forward", "backward", "optimizer_update")
MARKER_HINT = "'train N' events with step_num"

_COMPILE_EVENT_RE = re.compile(
    r"^tf\.function-graph_building$|^TraceFunction|^FunctionTrace|Compil|^HLO passes|^RunHloPasses"
    r"|^RunBackend")
_COMPILE_THREAD_RE = re.compile(r"(?i)codegen|compil")
_INPUT_EVENT_RE = re.compile(r"^IteratorGetNextOp::DoCompute$|^IteratorGetNextAsOptionalOp")
_TRANSFER_EVENT_RE = re.compile(r"^Memcpy(H2D|D2H|D2D|P2P)|^(cu|cuda|hip)Memcpy")
_EAGER_KERNELS = frozenset({"KernelAndDeviceFunc::Run", "KernelAndDeviceOp::Run"})
#: The op XLA runs a jit-compiled function as: ``__inference_f_12:__inference_f_12``.
_XLA_LAUNCH_RE = re.compile(r"^(__inference_\S+):\1$")

# Priorities on a thread's timeline (higher wins where labelled events overlap).
_T_COMPILE, _T_INPUT, _T_OP, _T_TRACED_CALL = 4, 3, 2, 1


def _need(df: pd.DataFrame, table: str, columns: Sequence[str]) -> None:
    """Raise ``BadTable`` naming the columns ``df`` lacks (a cheap boundary check; the
    tables come validated from ``RunProfile``)."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise BadTable(f"Table {table!r} is missing column(s): {', '.join(missing)}.",
                       f"Expected at least: {', '.join(columns)}.")


_STEP_COLS = ("step", "start_us", "wall_us", "warmup", "derived", "in_profile_window")
_PHASE_COLS = ("step", "phase", "start_us", "dur_us")


# -- timeline attribution -------------------------------------------------------------------
def _attribute(lane: np.ndarray, start: np.ndarray, end: np.ndarray, tier: np.ndarray,
               cat: np.ndarray, win_start: np.ndarray, win_end: np.ndarray, weak_tier: int = 0) -> np.ndarray:
    """µs of each category inside each window: array (n_windows, len(CATEGORIES)).

    On each lane (thread), an instant belongs to the highest-tier labelled interval
    covering it; an instant claimed on several lanes is split equally between them. A
    lane whose claim is of tier ``weak_tier`` or lower counts only at instants no other
    lane claims (the rest of a traced call must not take time from the ops it runs). So a
    window's categories never add up to more than its length.
    """
    n_cat = len(CATEGORIES)
    out = np.zeros((len(win_start), n_cat))
    if len(win_start) == 0:
        return out
    lo, hi = float(win_start.min()), float(win_end.max())
    keep = (tier > 0) & (end > lo) & (start < hi) & (end > start)
    lane, tier, cat = lane[keep], tier[keep], cat[keep]
    start, end = np.clip(start[keep], lo, hi), np.clip(end[keep], lo, hi)
    bounds = np.unique(np.concatenate([start, end, win_start, win_end]))
    k = len(bounds) - 1
    if k <= 0:
        return out
    i0 = np.searchsorted(bounds, start)
    i1 = np.searchsorted(bounds, end)
    strong = (np.zeros((n_cat, k)), np.zeros(k))
    weak = (np.zeros((n_cat, k)), np.zeros(k))
    # Groups of intervals by (lane, tier descending, category), in that order.
    order = np.lexsort((cat, -tier, lane))
    lane, tier, cat, i0, i1 = lane[order], tier[order], cat[order], i0[order], i1[order]
    cuts = np.nonzero((np.diff(lane) != 0) | (np.diff(tier) != 0) | (np.diff(cat) != 0))[0] + 1
    starts = np.concatenate([[0], cuts]).tolist() if len(lane) else []
    stops = np.concatenate([cuts, [len(lane)]]).tolist() if len(lane) else []
    assigned = np.full(k, -1, dtype=np.int64)
    assigned_tier = np.zeros(k, dtype=np.int64)
    for g, (a, b) in enumerate(zip(starts, stops)):
        if g and lane[a] != lane[starts[g - 1]]:
            _tally(assigned, assigned_tier, weak_tier, strong, weak)
            assigned = np.full(k, -1, dtype=np.int64)
        diff = np.bincount(i0[a:b], minlength=k + 1) - np.bincount(i1[a:b], minlength=k + 1)
        free = (np.cumsum(diff[:k]) > 0) & (assigned < 0)
        assigned[free] = cat[a]
        assigned_tier[free] = tier[a]
    if len(lane):
        _tally(assigned, assigned_tier, weak_tier, strong, weak)
    use_weak = strong[1] == 0
    counts = np.where(use_weak, weak[0], strong[0])
    active = np.where(use_weak, weak[1], strong[1])
    contrib = counts / np.maximum(active, 1.0) * np.diff(bounds)
    cum = np.concatenate([np.zeros((n_cat, 1)), np.cumsum(contrib, axis=1)], axis=1)
    ws, we = np.searchsorted(bounds, win_start), np.searchsorted(bounds, win_end)
    return (cum[:, we] - cum[:, ws]).T


def _tally(assigned: np.ndarray, assigned_tier: np.ndarray, weak_tier: int,
           strong: tuple[np.ndarray, np.ndarray], weak: tuple[np.ndarray, np.ndarray]) -> None:
    """Add one lane's per-segment category to the counts (each segment once per lane)."""
    for (counts, active), sel in ((strong, (assigned >= 0) & (assigned_tier > weak_tier)),
                                  (weak, (assigned >= 0) & (assigned_tier <= weak_tier))):
        idx = np.nonzero(sel)[0]
        active[idx] += 1.0
        counts[assigned[idx], idx] += 1.0


def _long_table(steps: Sequence[int], per_step_us: np.ndarray, wall_us: np.ndarray) -> pd.DataFrame:
    """Long ``breakdown`` table; framework_overhead = wall − the other categories."""
    us = np.array(per_step_us, dtype=float, copy=True)
    fo = _CAT["framework_overhead"]
    us[:, fo] += wall_us - us.sum(axis=1)
    # Floating-point residue only: attribution never exceeds the window.
    us[:, fo] = np.where(np.abs(us[:, fo]) < 1e-6, 0.0, us[:, fo])
    return pd.DataFrame({
        "step": np.repeat(np.asarray(steps, dtype=np.int64), len(CATEGORIES)),
        "category": pd.array(np.tile(np.asarray(CATEGORIES, dtype=object), len(steps)), dtype="string"),
        "ms": us.reshape(-1) / 1e3,
    })


# -- from phases --------------------------------------------------------------------------------
def breakdown_from_phases(steps: pd.DataFrame, phases: pd.DataFrame, *,
                          include_warmup: bool = False) -> pd.DataFrame:
    """Breakdown from the recorder's phase spans (NumPy, pure Python, or any variant).

    Each phase counts toward its category inside its step's wall-time window;
    ``framework_overhead`` is the step wall minus the phases. Overlapping phases of
    different categories share their overlap equally.
    """
    _need(steps, "steps", _STEP_COLS)
    _need(phases, "phases", _PHASE_COLS)
    unknown = sorted(set(phases["phase"].dropna()) - set(CATEGORIES))
    if unknown:
        raise BadTable(f"Phase name(s) {', '.join(map(repr, unknown))} are not breakdown categories.",
                       f"Name phases after a category: {', '.join(CATEGORIES)}.")
    sel = steps if include_warmup else steps[~steps["warmup"].astype(bool)]
    sel = sel.sort_values("start_us")
    win_start = sel["start_us"].to_numpy(dtype=float)
    win_end = win_start + sel["wall_us"].to_numpy(dtype=float)
    ph = phases[phases["step"].isin(set(sel["step"]))]
    cat = ph["phase"].map(_CAT).to_numpy(dtype=np.int64)
    p_start = ph["start_us"].to_numpy(dtype=float)
    per = _attribute(cat, p_start, p_start + ph["dur_us"].to_numpy(dtype=float),
                     np.ones(len(ph), dtype=np.int64), cat, win_start, win_end)
    return _long_table(sel["step"].tolist(), per, sel["wall_us"].to_numpy(dtype=float))


# -- from the trace -------------------------------------------------------------------------------
_EVENT_COLUMNS = ("pid", "tid", "thread", "process", "name", "long_name", "ts_us", "dur_us", "step",
                  "marker", "tf_op", "hlo_op", "eager_op", "is_func", "function_call")


@dataclass
class _Windows:
    """Profiled steps (or blocks of derived steps) paired with their step markers.

    Window ``w`` covers ``steps[w]`` and spans ``start_us[w]..end_us[w]`` on the trace
    clock: the recorder's span, centred on the marker. ``offset_us`` is trace − recorder
    clock; ``lane`` the marker's thread.
    """

    steps: list[list[int]]
    wall_us: list[list[float]]
    start_us: np.ndarray
    end_us: np.ndarray
    offset_us: np.ndarray
    lane: np.ndarray


def _windows(steps: pd.DataFrame, events: pd.DataFrame) -> _Windows:
    _need(steps, "steps", _STEP_COLS)
    in_win = steps["in_profile_window"].to_numpy(dtype=bool)
    if not in_win.any():
        raise BadInput("No step is marked in_profile_window.",
                       "Profile the run (TF variants), or use breakdown_from_phases.")
    rec_start = steps["start_us"].to_numpy(dtype=float)[in_win]
    o = np.argsort(rec_start, kind="stable")
    num = steps["step"].to_numpy(dtype=np.int64)[in_win][o].tolist()
    start = rec_start[o].tolist()
    wall = steps["wall_us"].to_numpy(dtype=float)[in_win][o].tolist()
    derived = steps["derived"].to_numpy(dtype=bool)[in_win][o].tolist()
    is_marker = events["marker"].to_numpy(dtype=bool)
    if not is_marker.any():
        raise TraceUnavailable(f"The trace has no step markers ({MARKER_HINT}).",
                               "Steps must be wrapped in tf.profiler.experimental.Trace('train', "
                               "step_num=i, _r=1) while the profiler runs.")
    m_idx = np.nonzero(is_marker)[0]
    m_ts = events["ts_us"].to_numpy(dtype=float)[m_idx]
    o = np.argsort(m_ts, kind="stable")
    m_idx, m_ts = m_idx[o], m_ts[o]
    m_dur = events["dur_us"].to_numpy(dtype=float)[m_idx]
    m_step = events["step"].to_numpy(dtype=np.int64, na_value=-1)[m_idx]
    m_lane = ((events["pid"].to_numpy(dtype=np.int64) << 32) + events["tid"].to_numpy(dtype=np.int64))[m_idx]
    pool: dict[int, list[int]] = {}
    for j, s in enumerate(m_step.tolist()):
        pool.setdefault(s, []).append(j)
    # Blocks: a non-derived step alone; consecutive derived steps together.
    blocks: list[list[int]] = []
    for i in range(len(num)):
        if derived[i] and i and derived[i - 1] and num[i] == num[i - 1] + 1:
            blocks[-1].append(i)
        else:
            blocks.append([i])
    out = _Windows([], [], np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64))
    w_start: list[float] = []
    w_end: list[float] = []
    w_off: list[float] = []
    w_lane: list[int] = []
    for block in blocks:
        j = next((pool[num[i]].pop(0) for i in block if pool.get(num[i])), None)
        if j is None:
            continue  # no marker for this step: left out rather than guessed
        span = start[block[-1]] + wall[block[-1]] - start[block[0]]
        ws = m_ts[j] + m_dur[j] / 2.0 - span / 2.0
        out.steps.append([num[i] for i in block])
        out.wall_us.append([wall[i] for i in block])
        w_start.append(ws)
        w_end.append(ws + span)
        w_off.append(ws - start[block[0]])
        w_lane.append(m_lane[j])
    if not out.steps:
        raise TraceUnavailable("No profiled step has a step marker in the trace.",
                               f"Markers found for steps: {', '.join(map(str, sorted(set(m_step.tolist()))))}.")
    out.start_us = np.asarray(w_start)
    out.end_us = np.asarray(w_end)
    out.offset_us = np.asarray(w_off)
    out.lane = np.asarray(w_lane, dtype=np.int64)
    return out


def _cat_flags(col: pd.Series, test: Callable[[str], bool]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(per-event codes, per-category flag, categories) of a categorical-like column."""
    cat = col if isinstance(col.dtype, pd.CategoricalDtype) else col.astype("category")
    cats = [str(c) for c in cat.cat.categories]
    flags = np.asarray([test(c) for c in cats] + [test("")])  # code -1 (NaN) -> last slot
    return cat.cat.codes.to_numpy(), flags, cats


def _prepare_events(events: pd.DataFrame, rules: Sequence[tuple[str, str]] | None) -> dict[str, np.ndarray]:
    """Label every event: (lane, start, end, tier, category index) plus op/dispatch flags."""
    compiled = _DEFAULT_RULES if rules is None else _compile_rules(rules)
    missing = [c for c in _EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise BadTable(f"The events table is missing column(s): {', '.join(missing)}.",
                       "Build it with profilers.xprof_tools.trace_events().")
    n = len(events)
    ts = events["ts_us"].to_numpy(dtype=float)
    dur = events["dur_us"].to_numpy(dtype=float)
    end = ts + dur
    lane = (events["pid"].to_numpy(dtype=np.int64) << 32) + events["tid"].to_numpy(dtype=np.int64)
    tf_op = events["tf_op"].to_numpy(dtype=bool)
    hlo_op = events["hlo_op"].to_numpy(dtype=bool)
    is_func = events["is_func"].to_numpy(dtype=bool)

    # Per distinct name, not per event: what kind of event it is.
    name_codes, _, name_cats = _cat_flags(events["name"], lambda c: False)
    kinds = np.zeros(len(name_cats) + 1, dtype=np.int64)
    for k, c in enumerate(name_cats):
        if c in _EAGER_KERNELS:
            kinds[k] = 1
        elif c == "EagerExecute":
            kinds[k] = 2
        elif _COMPILE_EVENT_RE.search(c):
            kinds[k] = 3
        elif _INPUT_EVENT_RE.search(c):
            kinds[k] = 4
        elif _TRANSFER_EVENT_RE.search(c):
            kinds[k] = 5
        elif c == "EagerCopyToDevice":
            kinds[k] = 6
    kind = kinds[name_codes]
    thread_codes, compile_thread, _ = _cat_flags(events["thread"], lambda c: bool(_COMPILE_THREAD_RE.search(c)))
    long_codes, xla_launch, long_cats = _cat_flags(events["long_name"], lambda c: bool(_XLA_LAUNCH_RE.match(c)))
    eager_codes, _, eager_cats = _cat_flags(events["eager_op"], lambda c: False)
    call_codes, traced_call, _ = _cat_flags(events["function_call"], lambda c: c.startswith("traced"))
    is_exec = kind == 2

    # One pass per thread, in nesting order, over the events that nest meaningfully:
    # ops (to find leaves), EagerExecute (the op above a kernel), XLA launches.
    container = np.zeros(n, dtype=bool)
    kernel_of = np.full(n, -1, dtype=np.int64)  # eager kernel -> its EagerExecute
    in_xla = np.zeros(n, dtype=bool)
    rel = np.nonzero(tf_op | hlo_op | (kind == 1) | is_exec | xla_launch[long_codes])[0]
    order = rel[np.lexsort((-dur[rel], ts[rel], lane[rel]))]
    # The loop reads Python lists (indexing a NumPy array per event costs several times more).
    is_func_l = is_func.tolist()
    stack: list[tuple[float, int, int, bool]] = []  # (end, nearest op, nearest EagerExecute, in XLA launch)
    prev_lane = None
    for i, ln, t, e, op, kernel_kind, execs, launches in zip(
            order.tolist(), lane[order].tolist(), ts[order].tolist(), end[order].tolist(),
            (tf_op | hlo_op)[order].tolist(), (kind == 1)[order].tolist(), is_exec[order].tolist(),
            xla_launch[long_codes[order]].tolist()):
        if ln != prev_lane:
            stack.clear()
            prev_lane = ln
        while stack and stack[-1][0] <= t:
            stack.pop()
        near_op, near_exec, xla = stack[-1][1:] if stack else (-1, -1, False)
        is_op = op
        if not is_op and kernel_kind and near_exec >= 0 and not is_func_l[near_exec]:
            is_op = True
            kernel_of[i] = near_exec
        if is_op:
            if near_op >= 0:
                container[near_op] = True
            near_op = i
        if xla:
            in_xla[i] = True
        stack.append((e, near_op, i if execs else near_exec, xla or launches))

    tier = np.zeros(n, dtype=np.int64)
    cat = np.full(n, -1, dtype=np.int64)
    # Non-op events by kind.
    procs = {str(p) for p in events["process"].unique()}  # a categorical's distinct values: cheap
    has_device = any(p and p != "nan" and not p.startswith("/host") for p in procs)
    compile_ev = (kind == 3) | compile_thread[thread_codes]
    tier[compile_ev], cat[compile_ev] = _T_COMPILE, _CAT["compile_trace"]
    input_ev = (kind == 4) & ~compile_ev
    tier[input_ev], cat[input_ev] = _T_INPUT, _CAT["input_wait"]
    transfer_ev = ((kind == 5) | ((kind == 6) & has_device)) & ~compile_ev
    tier[transfer_ev], cat[transfer_ev] = _T_OP, _CAT["host_device_transfer"]
    # Leaf ops: TF ops by type and scope (per distinct long name), eager kernels by type.
    long_cat = np.asarray([_CAT.get(_op_category(c, None, compiled) or "", -1) for c in long_cats] + [-1])
    eager_cat = np.asarray([_CAT.get(OP_TYPE_CATEGORIES.get(c, ""), -1) for c in eager_cats] + [-1])
    leaf_tf = tf_op & ~container
    leaf_hlo = hlo_op & ~container & ~tf_op
    kernels = np.nonzero((kernel_of >= 0) & ~container)[0]
    op_cat = np.full(n, -1, dtype=np.int64)
    op_cat[leaf_tf] = long_cat[long_codes[leaf_tf]]
    op_cat[kernels] = eager_cat[eager_codes[kernel_of[kernels]]]
    # TF kernels inside an XLA launch run only while XLA compiles (constant folding).
    op_cat[leaf_tf & in_xla] = _CAT["compile_trace"]
    leaf = leaf_tf | leaf_hlo
    leaf[kernels] = True
    unscoped = leaf & (op_cat < 0)
    op_cat[unscoped] = _CAT["other"]
    tier[leaf] = _T_OP
    cat[leaf] = op_cat[leaf]
    tier[leaf & (op_cat == _CAT["input_wait"])] = _T_INPUT
    tier[leaf & (op_cat == _CAT["compile_trace"])] = _T_COMPILE
    traced = traced_call[call_codes] & (tier == 0)
    tier[traced], cat[traced] = _T_TRACED_CALL, _CAT["compile_trace"]
    return {"lane": lane, "start": ts, "end": end, "tier": tier, "cat": cat, "unscoped": unscoped,
            "eager_dispatch": is_exec & ~is_func, "function_call": is_exec & is_func,
            "graph_op": tf_op | hlo_op}


def _scope_from_phases(ev: dict[str, np.ndarray], phases: pd.DataFrame | None,
                       win: _Windows) -> tuple[np.ndarray, ...]:
    """Host phases on the trace clock: input_wait spans become intervals on the marker's
    thread; compute-category spans give their category to unscoped ops inside them."""
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64),
             np.zeros(0, dtype=np.int64))
    if phases is None or phases.empty:
        return empty
    _need(phases, "phases", _PHASE_COLS)
    off_of: dict[int, float] = {}
    lane_of: dict[int, int] = {}
    for w, block in enumerate(win.steps):
        for s in block:
            off_of[s], lane_of[s] = float(win.offset_us[w]), int(win.lane[w])
    p_step = phases["step"].to_numpy(dtype=np.int64)
    keep = np.fromiter((s in off_of for s in p_step.tolist()), dtype=bool, count=len(p_step))
    if not keep.any():
        return empty
    p_step = p_step[keep]
    off = np.asarray([off_of[s] for s in p_step.tolist()])
    p_lane = np.asarray([lane_of[s] for s in p_step.tolist()], dtype=np.int64)
    p_start = phases["start_us"].to_numpy(dtype=float)[keep] + off
    p_end = p_start + phases["dur_us"].to_numpy(dtype=float)[keep]
    names = np.asarray(phases["phase"].to_numpy(dtype=object, na_value=""), dtype=str)[keep]
    # Unscoped ops (eager kernels, unnamed graph ops) take the compute phase around them.
    compute = np.isin(names, COMPUTE_CATEGORIES)
    if compute.any() and ev["unscoped"].any():
        order = np.argsort(p_start[compute])
        cs, ce, cn = p_start[compute][order], p_end[compute][order], names[compute][order]
        idx_ops = np.nonzero(ev["unscoped"])[0]
        mid = (ev["start"][idx_ops] + ev["end"][idx_ops]) / 2.0
        k = np.searchsorted(cs, mid, side="right") - 1
        ok = (k >= 0) & (mid < ce[np.clip(k, 0, None)])
        ev["cat"][idx_ops[ok]] = [_CAT[c] for c in cn[k[ok]]]
    inp = names == "input_wait"
    n_inp = int(inp.sum())
    return (p_lane[inp], p_start[inp], p_end[inp], np.full(n_inp, _T_INPUT, dtype=np.int64),
            np.full(n_inp, _CAT["input_wait"], dtype=np.int64))


#: The backward pass starts where the step's backward ops have begun more than this share
#: of their time. A graph runs ops without data inputs (``gradient_tape/Tile`` of the
#: constant upstream gradient, shape ops) as soon as the step starts, before the forward
#: pass: a few µs that must not end the forward pass at time zero.
BACKWARD_START_SHARE = 0.05


def _forward_before_backward(ev: dict[str, np.ndarray], win: _Windows) -> None:
    """Unscoped ops (a user's own step names no phase) that start before the step's
    backward pass are its forward pass: the gradients need the forward outputs and the loss
    first. The backward pass starts at the backward op that takes the backward time begun
    so far past ``BACKWARD_START_SHARE`` (not at the first backward op: see there). Only
    in a step that has backward ops; what runs after that point stays ``other``."""
    unplaced = ev["unscoped"] & (ev["cat"] == _CAT["other"])
    backward = (ev["tier"] == _T_OP) & (ev["cat"] == _CAT["backward"])
    if not unplaced.any() or not backward.any() or not len(win.start_us):
        return
    order = np.argsort(win.start_us, kind="stable")
    w_start, w_end = win.start_us[order], win.end_us[order]

    def window_of(idx: np.ndarray) -> np.ndarray:
        """Index into the sorted windows of each event's start, -1 outside every window."""
        t = ev["start"][idx]
        k = np.searchsorted(w_start, t, side="right") - 1
        inside = (k >= 0) & (t < w_end[np.clip(k, 0, None)])
        return np.where(inside, k, -1)

    b_idx = np.nonzero(backward)[0]
    b_win = window_of(b_idx)
    b_idx, b_win = b_idx[b_win >= 0], b_win[b_win >= 0]
    start, dur = ev["start"][b_idx], ev["end"][b_idx] - ev["start"][b_idx]
    by = np.lexsort((start, b_win))  # per window, in start order
    b_win, start, dur = b_win[by], start[by], dur[by]
    total = np.bincount(b_win, weights=dur, minlength=len(w_start))
    csum = np.cumsum(dur)
    first = np.searchsorted(b_win, b_win, side="left")  # each op's window's first op
    begun = csum - dur - (csum[first] - dur[first])       # backward time begun before the op
    before = begun <= BACKWARD_START_SHARE * total[b_win]
    bwd_start = np.full(len(w_start), -np.inf)
    np.maximum.at(bwd_start, b_win[before], start[before])  # the last op still before the line
    u_idx = np.nonzero(unplaced)[0]
    u_win = window_of(u_idx)
    bound = bwd_start[np.clip(u_win, 0, None)]
    fwd = (u_win >= 0) & np.isfinite(bound) & (ev["start"][u_idx] < bound)
    ev["cat"][u_idx[fwd]] = _CAT["forward"]


def breakdown_from_trace(steps: pd.DataFrame, events: pd.DataFrame, phases: pd.DataFrame | None = None,
                         *, scope_rules: Sequence[tuple[str, str]] | None = None) -> pd.DataFrame:
    """Breakdown of the profiled steps from the capture's events (see the module docstring).

    ``events`` is ``xprof_tools.trace_events(xplane)`` (whole capture, with long names);
    ``phases`` the recorder's phase spans (``input_wait``; compute phases name the scope
    of eager ops). Derived steps (an in-graph loop) share their block's mean. Steps
    without a marker in the trace are left out. ``scope_rules`` replaces ``SCOPE_RULES``.
    """
    if events.empty:
        raise TraceUnavailable("The trace has no events.", "Re-run the variant with profiling on.")
    win = _windows(steps, events)
    ev = _prepare_events(events, scope_rules)
    p_lane, p_start, p_end, p_tier, p_cat = _scope_from_phases(ev, phases, win)
    _forward_before_backward(ev, win)
    per_win = _attribute(np.concatenate([ev["lane"], p_lane]), np.concatenate([ev["start"], p_start]),
                         np.concatenate([ev["end"], p_end]), np.concatenate([ev["tier"], p_tier]),
                         np.concatenate([ev["cat"], p_cat]), win.start_us, win.end_us,
                         weak_tier=_T_TRACED_CALL)
    step_ids: list[int] = []
    rows: list[np.ndarray] = []
    walls: list[float] = []
    for w, block in enumerate(win.steps):
        for s, wall in zip(block, win.wall_us[w]):
            step_ids.append(s)
            rows.append(per_win[w] / len(block))
            walls.append(wall)
    return _long_table(step_ids, np.vstack(rows), np.asarray(walls))


def ops_per_step(steps: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Ops run per profiled step: ``eager_ops`` (eager dispatches), ``function_calls``
    (tf.function calls), ``graph_ops`` (TF op kernels inside graphs + XLA HLO ops),
    ``dispatches`` = eager_ops + function_calls, ``ops`` = eager_ops + graph_ops.
    Derived steps get their block's mean."""
    win = _windows(steps, events)
    is_exec = (events["name"] == "EagerExecute").to_numpy(dtype=bool)
    is_func = events["is_func"].to_numpy(dtype=bool)
    flags = {"eager_ops": is_exec & ~is_func, "function_calls": is_exec & is_func,
             "graph_ops": events["tf_op"].to_numpy(dtype=bool) | events["hlo_op"].to_numpy(dtype=bool)}
    ts = events["ts_us"].to_numpy(dtype=float)
    order = np.argsort(ts, kind="stable")
    starts = ts[order]
    cum = {k: np.concatenate([[0], np.cumsum(f[order])]) for k, f in flags.items()}
    a = np.searchsorted(starts, win.start_us)
    b = np.searchsorted(starts, win.end_us)
    n_per = np.asarray([len(block) for block in win.steps], dtype=float)
    rep = np.repeat(np.arange(len(win.steps)), n_per.astype(int))
    out = {"step": np.asarray(sum(win.steps, []), dtype=np.int64)}
    for k, c in cum.items():
        out[k] = ((c[b] - c[a]) / n_per)[rep]
    df = pd.DataFrame(out)
    df["dispatches"] = df["eager_ops"] + df["function_calls"]
    df["ops"] = df["eager_ops"] + df["graph_ops"]
    return df


# -- summaries and checks --------------------------------------------------------------------------
def check_breakdown(breakdown: pd.DataFrame, steps: pd.DataFrame, rel_tol: float = 0.05) -> None:
    """Raise ``BadTable`` unless each step's categories add up to its wall time (±rel_tol),
    every category is known and no category is negative."""
    breakdown = validate_table("breakdown", breakdown, " (check)")
    steps = validate_table("steps", steps, " (check)")
    unknown = sorted(set(breakdown["category"]) - set(CATEGORIES))
    if unknown:
        raise BadTable(f"Unknown breakdown categories: {', '.join(unknown)}.",
                       f"Valid categories: {', '.join(CATEGORIES)}.")
    neg = breakdown[breakdown["ms"] < -1e-9]
    if not neg.empty:
        r = neg.iloc[0]
        raise BadTable(f"Step {r['step']} has a negative {r['category']} ({r['ms']:.4f} ms).",
                       "The attribution exceeded the step wall time; report this as a bug.")
    wall_ms = steps.drop_duplicates("step", keep="last").set_index("step")["wall_us"] / 1e3
    sums = breakdown.groupby("step")["ms"].sum()
    absent = sorted(set(sums.index) - set(wall_ms.index))
    if absent:
        raise BadTable(f"Breakdown step(s) {absent[:5]} are not in the steps table.",
                       "Build the breakdown from the same run's steps.")
    wall = wall_ms.loc[sums.index]
    bad = (sums - wall).abs() > rel_tol * wall
    if bad.any():
        s = bad[bad].index[0]
        raise BadTable(f"The categories of step {s} add up to {sums[s]:.4f} ms, but its wall time "
                       f"is {wall[s]:.4f} ms (tolerance {rel_tol:.0%}).",
                       "The breakdown does not match the steps table.")


def summarize(breakdown: pd.DataFrame) -> dict[str, float]:
    """{category: median ms per step} over the breakdown's steps (the CLI's ``breakdown_ms``).

    Every category is present (0.0 when never seen). Medians need not add up to the
    median step.
    """
    _need(breakdown, "breakdown", ("step", "category", "ms"))
    cats = breakdown["category"].to_numpy(dtype=object)
    ms = breakdown["ms"].to_numpy(dtype=float)
    out = {}
    for c in CATEGORIES:
        vals = ms[cats == c]
        out[c] = float(np.median(vals)) if len(vals) else 0.0
    return out


def overhead_us_per_op(breakdown: pd.DataFrame, ops: pd.DataFrame) -> float:
    """Median over steps of framework_overhead µs per host dispatch (eager op or
    tf.function call): the price of one trip through the framework. NaN if none."""
    fo = breakdown[breakdown["category"] == "framework_overhead"].set_index("step")["ms"]
    d = ops.set_index("step")["dispatches"]
    both = pd.concat([fo.rename("fo_ms"), d.rename("n")], axis=1, join="inner")
    both = both[both["n"] > 0]
    if both.empty:
        return float("nan")
    return float((both["fo_ms"] * 1e3 / both["n"]).median())


def achieved_gflops(summary_ms: Mapping[str, float], flops_per_step: Mapping[str, float]) -> dict[str, float]:
    """GFLOP/s per compute category (and ``"compute"`` for them together).

    ``summary_ms`` is ``summarize(...)``; ``flops_per_step`` is the workload's
    ``flops_per_step(params)``. NaN where the category took no time.
    """
    out: dict[str, float] = {}
    tot_f = tot_ms = 0.0
    for cat, flops in flops_per_step.items():
        if cat not in _CAT:
            raise BadInput(f"FLOPs given for unknown category {cat!r}.",
                           f"Valid categories: {', '.join(CATEGORIES)}.")
        ms = float(summary_ms.get(cat, 0.0))
        out[cat] = flops / (ms * 1e-3) / 1e9 if ms > 0 else float("nan")
        tot_f += flops
        tot_ms += ms
    if flops_per_step:
        out["compute"] = tot_f / (tot_ms * 1e-3) / 1e9 if tot_ms > 0 else float("nan")
    return out


# -- the edge: run-level entry point and the GEMM probe ---------------------------------------
def breakdown_for_run(steps: pd.DataFrame, phases: pd.DataFrame, xplane_path: Path | str | None = None,
                      *, cache_dir: Path | str | None = None) -> pd.DataFrame:
    """The run's breakdown: from its capture when it has one, else from its phases."""
    if xplane_path is None:
        return breakdown_from_phases(steps, phases)
    from profilers import xprof_tools

    events = xprof_tools.trace_events(xplane_path, cache_dir=cache_dir)
    return breakdown_from_trace(steps, events, phases)


# -- the typical step: one definition of a run's shares ---------------------------------------------
#: A step longer than this many median steps is an outlier (left out of the shares).
OUTLIER_FACTOR = 5.0
OUTLIER_MIN_STEPS = 10  # fewer steps give no typical step to compare with
OUTLIER_MAX_FRACTION = 0.1  # more slow steps than this are a slow mode of the run, not outliers
#: Capture tools whose per-step split is sampled (sparse per step): their shares are pooled.
SAMPLED_PROFILERS = ("pyinstrument", "signal-delay sampler")  # pyinstrument: runs stored before 0.2


def outlier_steps(measured: pd.DataFrame) -> list[dict[str, Any]]:
    """Measured steps longer than ``OUTLIER_FACTOR`` x the median step: ``step, ms,
    x_median`` (by step order); none when more than ``OUTLIER_MAX_FRACTION`` of the steps
    are that slow (then they are part of the run's behaviour, and stay in its shares)."""
    if len(measured) < OUTLIER_MIN_STEPS:
        return []
    wall = measured["wall_us"].to_numpy(dtype=float)
    med = float(np.median(wall))
    if not med > 0:
        return []
    sel = measured[wall > OUTLIER_FACTOR * med]
    if len(sel) > max(1, OUTLIER_MAX_FRACTION * len(measured)):
        return []  # that many slow steps are the run's typical behaviour, not one-offs
    return [{"step": int(r.step), "ms": round(float(r.wall_us) / 1e3, 3),
             "x_median": round(float(r.wall_us) / med, 1)} for r in sel.itertuples()]


def typical_shares(breakdown: pd.DataFrame, measured: pd.DataFrame, *, pooled: bool = False
                   ) -> tuple[dict[str, float], list[int]]:
    """(category shares of the typical step, the outlier steps left out).

    The one definition of a run's split, read by the analysis (``breakdown_ms`` = shares x
    the median step) and by the triage rules: outlier steps (``outlier_steps``) are left
    out, so one stall never decides a share; a trace splits every step exactly, so the
    shares are the median step's split (normalised) when there are enough steps; a sampled
    split is sparse per step (a tick may cover several), so ``pooled`` sums the steps."""
    out_ids = [o["step"] for o in outlier_steps(measured)]
    kept = breakdown[~breakdown["step"].isin(out_ids)] if out_ids else breakdown
    if kept.empty:
        return {}, out_ids
    tot = kept.groupby("category")["ms"].sum()
    wall = float(tot.sum())
    if wall <= 0:
        return {}, out_ids
    shares = {c: float(tot.get(c, 0.0)) / wall for c in CATEGORIES}
    if not pooled and kept["step"].nunique() >= OUTLIER_MIN_STEPS:
        per = kept.pivot_table(index="step", columns="category", values="ms", aggfunc="sum").fillna(0.0)
        step_wall = per.sum(axis=1)
        per = per[step_wall > 0].div(step_wall[step_wall > 0], axis=0)
        med = per.median()
        norm = float(med.sum())
        if norm > 0:
            shares = {c: float(med.get(c, 0.0)) / norm for c in CATEGORIES}
    return shares, out_ids

"""xprof's converter, wrapped: xplane -> tidy pandas tables, cached in the run directory.

Every analysis of a TF profiler capture goes through ``xspace_to_tool_data`` from xprof
(``xprof.convert.raw_to_tool_data``); the xplane protobuf is never parsed here. Each tool
we read has a parser in ``TOOLS`` (xprof tool name -> parser) that turns the tool's output
(gviz DataTable JSON, or Chrome trace-event JSON) into tidy tables with units in their
column names, declared in ``TOOL_SCHEMAS``:

``overview_page``            -> ``step_time`` (one row per step marker) + the input verdict
``input_pipeline_analyzer``  -> ``step_time`` + ``input_stages`` (tf.data stages) + shares
``framework_op_stats``       -> ``ops`` (the run model's ``ops`` schema, plus extras)
``trace_viewer``             -> ``events``, the whole capture, with op long names
``trace_viewer@``            -> ``events`` for a time window, display names only (Gantt)

``convert`` caches each parsed result as one JSON file under ``<run_dir>/cache/xprof/``
(columnar, categoricals as codes; written to a temporary file and renamed), keyed by tool,
params, parser version and the xplane's mtime and size, so reopening an analysed run
imports neither xprof nor the trace.
An absent, empty or unreadable xplane raises ``TraceUnavailable``; a missing xprof raises
``DependencyMissing``.

xprof writes cache files of its own beside the xplane, so that directory must be writable.

Must not import tensorflow, streamlit or pynvml (xprof is imported lazily, on a cache miss).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from profilers.errors import BadTable, DependencyMissing, TraceUnavailable
from profilers.model import SCHEMAS, atomic_write_text
from profilers.registry import lookup

#: Bump when a parser's output changes: old cache entries are then ignored.
PARSER_VERSION = 1

#: Name of the step markers the recorder places: ``Trace("train", step_num=i, _r=1)``.
MARKER_NAME = "train"

#: Tools the analysis pipeline reads for every profiled run (``run_tables``).
#: (input_pipeline_analyzer carries the same step-time graph and input verdict as
#: overview_page, plus the tf.data stages, so overview_page is not read by default.)
PIPELINE_TOOLS: tuple[tuple[str, Mapping[str, Any]], ...] = (
    ("input_pipeline_analyzer", {}),
    ("framework_op_stats", {}),
    ("trace_viewer", {}),
)

#: Declared schemas of the derived tables (column -> dtype); units are in the names.
TOOL_SCHEMAS: dict[str, dict[str, str]] = {
    # overview_page[1] / input_pipeline_analyzer[1]: xprof's per-step time graph.
    "step_time": {
        "step": "Int64",  # from the marker name "train N"; <NA> if it has no number
        "step_name": "string",
        "step_ms": "float64",  # sum of the parts below
        "device_compute_ms": "float64",
        "device_to_device_ms": "float64",
        "device_collectives_ms": "float64",
        "host_compute_ms": "float64",
        "kernel_launch_ms": "float64",
        "infeed_ms": "float64",
        "outfeed_ms": "float64",
        "compile_ms": "float64",
        "other_ms": "float64",
    },
    # input_pipeline_analyzer[2]: tf.data iterator stages.
    "input_stages": {
        "stage": "string",
        "category": "string",
        "count": "int64",
        "total_ms": "float64",
        "total_pct": "float64",
        "self_ms": "float64",
        "self_pct": "float64",
    },
    # framework_op_stats[1] (IDLE excluded): SCHEMAS["ops"] plus extras.
    "ops": {
        **SCHEMAS["ops"],
        "rank": "int64",
        "total_us": "float64",
        "avg_us": "float64",
        "host_self_pct": "float64",
    },
    # trace_viewer / trace_viewer@: complete events ("ph": "X") only.
    "events": {
        "pid": "int64",
        "tid": "int64",
        "process": "category",
        "thread": "category",
        "name": "category",  # display name
        "long_name": "category",  # e.g. "forward/MatMul:MatMul"; NaN when the same as name
        "ts_us": "float64",  # since the start of the capture
        "dur_us": "float64",
        "step": "Int64",  # step number of the enclosing step marker, if any
        "group_id": "Int64",  # xprof's step grouping
        "marker": "bool",  # a step marker ("train N" / step_num)
        "tf_op": "bool",  # a TensorFlow op kernel event (has ``is_eager``)
        "hlo_op": "bool",  # an XLA HLO op event (has ``hlo_op``)
        "eager_op": "category",  # on EagerExecute: the op dispatched
        "is_func": "bool",  # on EagerExecute: the op is a tf.function call
        "function_call": "category",  # on a tf.function call: traced-nonXla, notTraced-xla, ...
    },
}


@dataclass
class ToolResult:
    """A parsed tool: tidy tables plus scalar facts (``info``)."""

    tool: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def table(self, name: str) -> pd.DataFrame:
        df = self.tables.get(name)
        return empty_tool_table(name) if df is None else df


# -- schemas ---------------------------------------------------------------------------
def empty_tool_table(name: str) -> pd.DataFrame:
    schema = lookup(TOOL_SCHEMAS, name, "tool table")
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in schema.items()})


def conform(name: str, df: pd.DataFrame, where: str = "") -> pd.DataFrame:
    """Return ``df`` with the declared columns/dtypes of tool table ``name`` (extras kept).

    Raises ``BadTable`` naming a missing or unconvertible column.
    """
    schema = lookup(TOOL_SCHEMAS, name, "tool table")
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise BadTable(f"Tool table {name!r}{where} is missing column(s): {', '.join(missing)}.",
                       f"Expected columns: {', '.join(schema)}.")
    out = df
    have = {str(c): str(t) for c, t in df.dtypes.items()}
    for col, dtype in schema.items():
        if have[col] == dtype:
            continue
        if out is df:
            out = df.copy()
        try:
            if dtype == "bool" and out[col].dtype == object:
                out[col] = out[col].map(lambda v: str(v).strip().lower() in ("true", "1"))
            out[col] = out[col].astype(dtype)
        except (ValueError, TypeError) as exc:
            raise BadTable(f"Column {col!r} of tool table {name!r}{where} is not {dtype}: {exc}.",
                           "Delete the run's cache/ directory to rebuild it.") from None
    order = list(schema) + [c for c in out.columns if c not in schema]
    return out if list(out.columns) == order else out[order]


# -- gviz DataTable helpers ------------------------------------------------------------
def _gviz_columns(table: Mapping[str, Any]) -> dict[str, list[Any]]:
    """A gviz DataTable (``cols``/``rows``) as {column id: values}.

    Rows may be shorter than ``cols`` (xprof omits trailing cells); those cells are None.
    """
    ids = [c.get("id") or c.get("label") or f"col{i}" for i, c in enumerate(table.get("cols", []))]
    rows = [[(cell.get("v") if isinstance(cell, dict) else None) for cell in (row.get("c") or [])]
            for row in table.get("rows") or []]
    return {col: [r[k] if k < len(r) else None for r in rows] for k, col in enumerate(ids)}


def _floats(values: Sequence[Any] | None, n: int, scale: float = 1.0, fill: float = float("nan")) -> np.ndarray:
    if values is None:
        return np.full(n, fill)
    return np.asarray([fill if v is None else float(v) * scale for v in values], dtype=np.float64)


def _strings(values: Sequence[Any] | None, n: int) -> pd.arrays.StringArray | Any:
    return pd.array([None if v is None else str(v) for v in (values if values is not None else [None] * n)],
                    dtype="string")


def _as_tables(payload: Any) -> list[Mapping[str, Any]]:
    if isinstance(payload, Mapping):
        return [payload]
    if isinstance(payload, list):
        return [t for t in payload if isinstance(t, Mapping)]
    raise BadTable("xprof returned a tool output that is not a DataTable list.",
                   "Check the xprof version (sgdscope expects 2.24).")


def _p(table: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (table.get("p") or {}).items()}


def _num(text: str | None) -> float:
    """'56.3%' / '0.1' / '' -> float (NaN when absent)."""
    if text is None:
        return float("nan")
    m = re.search(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", text)
    return float(m.group(0)) if m else float("nan")


_STEP_COLS = {
    "deviceComputeTimeMs": "device_compute_ms",
    "deviceToDeviceTimeMs": "device_to_device_ms",
    "deviceCollectivesTimeMs": "device_collectives_ms",
    "hostComputeTimeMs": "host_compute_ms",
    "kernelLaunchTimeMs": "kernel_launch_ms",
    "infeedTimeMs": "infeed_ms",
    "outfeedTimeMs": "outfeed_ms",
    "compileTimeMs": "compile_ms",
    "otherTimeMs": "other_ms",
}
_MARKER_RE = re.compile(rf"^{re.escape(MARKER_NAME)} (\d+)$")
_TRAILING_INT = re.compile(r"(\d+)\s*$")


def _step_time_table(table: Mapping[str, Any]) -> pd.DataFrame:
    raw = _gviz_columns(table)
    names = raw.get("stepnum")
    if not names:
        return empty_tool_table("step_time")
    n = len(names)
    nums = [m.group(1) if isinstance(s, str) and (m := _TRAILING_INT.search(s)) else None for s in names]
    vals, na = _int_column(nums)
    parts = {dst: _floats(raw.get(src), n, fill=0.0) for src, dst in _STEP_COLS.items()}
    out = {"step": pd.arrays.IntegerArray(vals, na), "step_name": _strings(names, n),
           # xprof declares a stepTimeMs column but leaves it out of the rows: the parts add up.
           "step_ms": np.sum(list(parts.values()), axis=0), **parts}
    return conform("step_time", pd.DataFrame(out), " (xprof step-time graph)")


# -- parsers ---------------------------------------------------------------------------
def parse_overview_page(data: str | bytes) -> ToolResult:
    tables = _as_tables(json.loads(data))
    if len(tables) < 2:
        raise BadTable(f"xprof overview_page returned {len(tables)} table(s), expected >= 2.",
                       "Check the xprof version (sgdscope expects 2.24).")
    step_p = _p(tables[1])
    info: dict[str, Any] = {
        "input_conclusion": step_p.get("input_conclusion", ""),
        "summary_nextstep": step_p.get("summary_nextstep", ""),
        "hardware_type": step_p.get("hardware_type", ""),
        "steptime_ms_average": _num(step_p.get("steptime_ms_average")),
    }
    analysis_p = _p(tables[0])
    info["host_idle_time_pct"] = _num(analysis_p.get("host_idle_time_percent"))
    info["host_tf_op_pct"] = _num(analysis_p.get("host_tf_op_percent"))
    if len(tables) > 3:
        rec = _p(tables[3])
        info["bottleneck"] = rec.get("bottleneck", "")
        info["statement"] = rec.get("statement", "")
    return ToolResult("overview_page", {"step_time": _step_time_table(tables[1])}, info)


def parse_input_pipeline(data: str | bytes) -> ToolResult:
    tables = _as_tables(json.loads(data))
    if len(tables) < 2:
        raise BadTable(f"xprof input_pipeline_analyzer returned {len(tables)} table(s), expected >= 2.",
                       "Check the xprof version (sgdscope expects 2.24).")
    step_time = _step_time_table(tables[1])
    step_p = _p(tables[1])
    total_ms = float(step_time["step_ms"].to_numpy().sum())
    info: dict[str, Any] = {
        "input_conclusion": step_p.get("input_conclusion", ""),
        "summary_nextstep": step_p.get("summary_nextstep", ""),
        # Share of step time spent waiting for input, from the exact per-step values
        # (the averages in ``p`` are rounded to 0.1 ms).
        "infeed_pct": (100.0 * float(step_time["infeed_ms"].to_numpy().sum()) / total_ms
                       if total_ms > 0 else float("nan")),
        "steps": int(len(step_time)),
    }
    stages = None
    if len(tables) > 2:
        raw = _gviz_columns(tables[2])
        info.update({f"host_{k}": _num(v) for k, v in _p(tables[2]).items() if k.endswith("_us")})
        if raw.get("opName"):
            n = len(raw["opName"])
            stages = conform("input_stages", pd.DataFrame({
                "stage": _strings(raw["opName"], n),
                "category": _strings(raw.get("category"), n),
                "count": _floats(raw.get("count"), n, fill=0.0).astype(np.int64),
                "total_ms": _floats(raw.get("timeInMs"), n),
                "total_pct": _floats(raw.get("timeInPercent"), n, 100.0),
                "self_ms": _floats(raw.get("selfTimeInMs"), n),
                "self_pct": _floats(raw.get("selfTimeInPercent"), n, 100.0),
            }), " (xprof tf.data stages)")
    return ToolResult("input_pipeline_analyzer", {"step_time": step_time,
                      "input_stages": empty_tool_table("input_stages") if stages is None else stages}, info)


def parse_framework_op_stats(data: str | bytes) -> ToolResult:
    """framework_op_stats -> ``ops``; ``category`` is the step-time category of the op's scope."""
    from profilers.breakdown import op_category  # one classification for ops and breakdown

    tables = _as_tables(json.loads(data))
    if not tables:
        return ToolResult("framework_op_stats", {"ops": empty_tool_table("ops")}, {})
    with_idle = _gviz_columns(tables[0])
    info: dict[str, Any] = {"host_idle_us": float(sum(
        float(t or 0.0) for ty, t in zip(with_idle.get("type") or [], with_idle.get("total_self_time") or [])
        if ty == "IDLE"))}
    raw = _gviz_columns(tables[1] if len(tables) > 1 else tables[0])
    keep = [k for k, ty in enumerate(raw.get("type") or []) if ty != "IDLE"]
    if not keep or not raw.get("operation"):
        return ToolResult("framework_op_stats", {"ops": empty_tool_table("ops")}, info)
    raw = {c: [v[k] for k in keep] for c, v in raw.items()}
    n = len(keep)
    op_type = [str(t) for t in raw["type"]]
    op_name = [str(o) for o in raw["operation"]]
    ops = pd.DataFrame({
        "host_or_device": _strings(raw.get("host_or_device"), n),
        "op_type": _strings(op_type, n),
        "op_name": _strings(op_name, n),
        "category": _strings([op_category(o, t) or "other" for o, t in zip(op_name, op_type)], n),
        "occurrences": _floats(raw.get("occurrences"), n, fill=0.0).astype(np.int64),
        "total_self_us": _floats(raw.get("total_self_time"), n),
        "avg_self_us": _floats(raw.get("avg_self_time"), n),
        "eager": np.asarray([str(v).lower() in ("eager", "true", "1", "yes") for v in raw.get("eager") or [None] * n]),
        "rank": _floats(raw.get("rank"), n, fill=0.0).astype(np.int64),
        "total_us": _floats(raw.get("total_time"), n),
        "avg_us": _floats(raw.get("avg_time"), n),
        "host_self_pct": _floats(raw.get("host_total_self_time_percent"), n, 100.0),
    })
    return ToolResult("framework_op_stats", {"ops": conform("ops", ops, " (xprof framework_op_stats)")}, info)


def parse_trace_events(data: str | bytes) -> ToolResult:
    """Chrome trace-event JSON -> ``events`` (complete events only), with steps assigned."""
    doc = json.loads(data)
    trace = doc.get("traceEvents", []) if isinstance(doc, Mapping) else []
    procs: dict[int, str] = {}
    threads: dict[tuple[int, int], str] = {}
    for ev in trace:
        if ev.get("ph") == "M":
            args = ev.get("args") or {}
            if ev.get("name") == "process_name":
                procs[int(ev.get("pid", 0))] = str(args.get("name", ""))
            elif ev.get("name") == "thread_name":
                threads[(int(ev.get("pid", 0)), int(ev.get("tid", 0)))] = str(args.get("name", ""))
    # Complete events; xprof always gives them pid, tid, name, ts and dur.
    xs = [ev for ev in trace if ev.get("ph") == "X"]
    args = [ev.get("args") or _NO_ARGS for ev in xs]
    pid = np.asarray([ev["pid"] for ev in xs], dtype=np.int64)
    tid = np.asarray([ev["tid"] for ev in xs], dtype=np.int64)
    names = [ev["name"] for ev in xs]
    marker_step = [a.get("step_num") for a in args]
    for k in [i for i, nm in enumerate(names) if nm.startswith(MARKER_NAME)]:
        if marker_step[k] is None and (m := _MARKER_RE.match(names[k])):
            marker_step[k] = m.group(1)
    step_arr, step_na = _int_codes(marker_step)
    group_arr, group_na = _int_codes([a.get("group_id") for a in args])
    pt = pid << 32 | tid
    lanes, lane_idx = np.unique(pt, return_inverse=True)
    lane_names = [threads.get((int(v) >> 32, int(v) & 0xFFFFFFFF), "") for v in lanes]
    thread_cats = sorted(set(lane_names))
    thread_codes = np.asarray([thread_cats.index(nm) for nm in lane_names], dtype=np.int32)[lane_idx]
    pids = sorted(set(pid.tolist()))
    proc_cats = sorted({procs.get(p, "") for p in pids})
    proc_codes = np.asarray([proc_cats.index(procs.get(p, "")) for p in pids], dtype=np.int32)[
        np.searchsorted(pids, pid)]
    events = pd.DataFrame({
        "pid": pid,
        "tid": tid,
        "process": pd.Categorical.from_codes(proc_codes, categories=proc_cats, validate=False),
        "thread": pd.Categorical.from_codes(thread_codes, categories=thread_cats, validate=False),
        "name": _categorical(names),
        "long_name": _categorical([a.get("long_name") for a in args]),
        "ts_us": np.asarray([ev["ts"] for ev in xs], dtype=np.float64),
        "dur_us": np.asarray([ev["dur"] for ev in xs], dtype=np.float64),
        "step": pd.arrays.IntegerArray(step_arr, step_na),
        "group_id": pd.arrays.IntegerArray(group_arr, group_na),
        "marker": ~step_na,
        "tf_op": np.asarray(["is_eager" in a for a in args], dtype=bool),
        "hlo_op": np.asarray(["hlo_op" in a for a in args], dtype=bool),
        "eager_op": _categorical([a.get("eager_op") for a in args]),
        "is_func": np.asarray([a.get("is_func") in ("1", 1) for a in args], dtype=bool),
        "function_call": _categorical([a.get("tf_function_call") for a in args]),
    })
    events = _assign_steps(events)
    info: dict[str, Any] = {"events": int(len(events))}
    if isinstance(doc, Mapping):
        if "fullTimespan" in doc:
            info["full_timespan_ms"] = [float(x) for x in doc["fullTimespan"]]
        if "filteredByVisibility" in doc:
            info["filtered_by_visibility"] = bool(doc["filteredByVisibility"])
    return ToolResult("trace_viewer", {"events": events}, info)


_NO_ARGS: dict[str, Any] = {}


def _int_codes(values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(int64 values, NA mask) of repeated ints/int strings/None, converting each distinct
    value once."""
    uniq = [v for v in dict.fromkeys(values) if v is not None]
    index: dict[Any, int] = {v: i for i, v in enumerate(uniq)}
    index[None] = -1
    codes = np.fromiter(map(index.__getitem__, values), dtype=np.int64, count=len(values))
    table = np.asarray([int(v) for v in uniq] + [0], dtype=np.int64)  # code -1 -> 0 (masked)
    return table[codes], codes < 0


def _categorical(values: Sequence[Any]) -> pd.Categorical:
    """Strings (None -> NaN) as a Categorical, factorized with a dict (much faster here
    than pandas' own factorization of an object list)."""
    cats = [v for v in dict.fromkeys(values) if v is not None]
    index: dict[Any, int] = {v: i for i, v in enumerate(cats)}
    index[None] = -1
    codes = np.fromiter(map(index.__getitem__, values), dtype=np.int32, count=len(values))
    return pd.Categorical.from_codes(codes, categories=[str(c) for c in cats], validate=False)


def _int_column(values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(int64 values, NA mask) from a list of ints/strings/None."""
    na = np.asarray([v is None for v in values], dtype=bool)
    vals = np.asarray([0 if v is None else int(v) for v in values], dtype=np.int64)
    return vals, na


def _assign_steps(events: pd.DataFrame) -> pd.DataFrame:
    """``step`` of every event: its marker's step, via xprof's group_id, else by time."""
    is_marker = events["marker"].to_numpy()
    if not is_marker.any():
        return events
    step_vals = events["step"].to_numpy(dtype=np.float64, na_value=np.nan)
    m_idx = np.nonzero(is_marker)[0]
    m_idx = m_idx[np.argsort(events["ts_us"].to_numpy()[m_idx], kind="stable")]
    m_step = step_vals[m_idx]
    group = events["group_id"].to_numpy(dtype=np.float64, na_value=np.nan)
    group_map: dict[float, float] = {}
    for g, s in zip(group[m_idx], m_step):
        if not np.isnan(g):
            group_map.setdefault(g, s)
    out = step_vals.copy()
    by_group = ~is_marker & ~np.isnan(group)
    if group_map and by_group.any():
        out[by_group] = [group_map.get(g, np.nan) for g in group[by_group]]
    todo = np.isnan(out)
    if todo.any():
        starts = events["ts_us"].to_numpy()[m_idx]
        ends = starts + events["dur_us"].to_numpy()[m_idx]
        mid = (events["ts_us"].to_numpy() + events["dur_us"].to_numpy() / 2.0)[todo]
        k = np.searchsorted(starts, mid, side="right") - 1
        ok = (k >= 0) & (mid < ends[np.clip(k, 0, None)])
        filled = np.full(len(mid), np.nan)
        filled[ok] = m_step[k[ok]]
        out[todo] = filled
    na = np.isnan(out)
    events = events.copy()
    events["step"] = pd.arrays.IntegerArray(np.where(na, 0, out).astype(np.int64), na)
    return events


#: The tools we read: xprof tool name -> parser of its output.
TOOLS: dict[str, Callable[[str | bytes], ToolResult]] = {
    "framework_op_stats": parse_framework_op_stats,
    "input_pipeline_analyzer": parse_input_pipeline,
    "overview_page": parse_overview_page,
    "trace_viewer": parse_trace_events,
    "trace_viewer@": parse_trace_events,
}


# -- the converter -----------------------------------------------------------------------
def _converter() -> Callable[..., tuple[Any, str]]:
    """xprof's ``xspace_to_tool_data``, imported on first use (it does not import TF)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        from xprof.convert.raw_to_tool_data import xspace_to_tool_data
    except ImportError as exc:
        raise DependencyMissing(f"xprof is not importable ({exc}).",
                                "Install it: pip install xprof==2.24.2") from None
    return xspace_to_tool_data


_XPROF_SIDECARS = ("*.SSTABLE", "*.op_stats*.pb", "ALL_HOSTS.*")


def _check_xplane(xplane: Path) -> os.stat_result:
    if not xplane.is_file():
        raise TraceUnavailable(f"No trace at {xplane}.",
                               "Re-run the variant with profiling on (TF variants only).")
    st = xplane.stat()
    if st.st_size == 0:
        raise TraceUnavailable(f"The trace {xplane} is empty (0 bytes).",
                               "The capture was cut short; re-run the variant with profiling on.")
    if not os.access(xplane.parent, os.W_OK):
        raise TraceUnavailable(f"xprof needs to write cache files beside {xplane}, and "
                               f"{xplane.parent} is not writable.",
                               "Copy the run directory somewhere writable and analyse it there.")
    return st


def raw_tool_data(xplane_path: Path | str, tool: str, params: Mapping[str, Any] | None = None) -> str | bytes:
    """Run xprof's converter on one xplane; the tool's raw output (not cached here)."""
    lookup(TOOLS, tool, "xprof tool")
    xplane = Path(xplane_path)
    st = _check_xplane(xplane)
    opts: dict[str, Any] = dict(params or {})
    # xprof keeps results of its own beside the xplane, keyed by host name only: if the
    # xplane is newer than them, they are stale and must not be reused.
    if any(p.stat().st_mtime_ns < st.st_mtime_ns for pat in _XPROF_SIDECARS for p in xplane.parent.glob(pat)):
        opts["use_saved_result"] = False
    data, _content_type = _converter()([str(xplane)], tool, opts)
    if data is None or (isinstance(data, (bytes, str)) and len(data) == 0):
        raise TraceUnavailable(
            f"xprof could not read {xplane} with tool {tool!r}: it is not a readable XSpace "
            "(truncated or corrupt capture).",
            "Re-run the variant with profiling on; the run's other tables are unaffected.")
    return data


def default_cache_dir(xplane_path: Path | str) -> Path:
    """``<run_dir>/cache`` for ``<run_dir>/trace/plugins/profile/<ts>/<host>.xplane.pb``."""
    xplane = Path(xplane_path).resolve()
    parents = xplane.parents
    if len(parents) > 4 and parents[1].name == "profile" and parents[2].name == "plugins":
        return parents[4] / "cache"
    return xplane.parent / "sgdscope-cache"


def cache_key(xplane_path: Path | str, tool: str, params: Mapping[str, Any] | None = None) -> str:
    """Key of a parsed result: tool, params, parser version, xplane name, mtime and size."""
    xplane = Path(xplane_path)
    st = _check_xplane(xplane)
    blob = json.dumps({"tool": tool, "params": params or {}, "parser": PARSER_VERSION,
                       "xplane": xplane.name, "mtime_ns": st.st_mtime_ns, "size": st.st_size},
                      sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _entry_path(cache_dir: Path, tool: str, key: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", tool).strip("_")
    return cache_dir / "xprof" / f"{slug}-{key}.json"


def _packed(arr: np.ndarray) -> dict[str, str]:
    a = np.ascontiguousarray(arr)
    return {"dtype": a.dtype.str, "b64": base64.b64encode(a.tobytes()).decode("ascii")}


def _unpacked(enc: Mapping[str, str]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(enc["b64"]), dtype=np.dtype(enc["dtype"])).copy()


def _encode_column(col: pd.Series) -> dict[str, Any]:
    """A column as JSON: numbers and category codes as base64 of their bytes (fast both
    ways), category labels and other strings as lists."""
    dtype = col.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return {"categories": [str(c) for c in dtype.categories], "codes": _packed(col.cat.codes.to_numpy())}
    if str(dtype) == "Int64":
        return {"int": _packed(col.to_numpy(dtype=np.int64, na_value=0)), "na": _packed(col.isna().to_numpy())}
    if str(dtype) in ("int64", "float64", "bool", "int32"):
        return {"array": _packed(col.to_numpy())}
    return {"values": col.to_numpy(object, na_value=None).tolist()}


def _decode_column(enc: Mapping[str, Any], dtype: str) -> Any:
    if "codes" in enc:
        return pd.Categorical.from_codes(_unpacked(enc["codes"]), categories=enc["categories"], validate=False)
    if "int" in enc:
        return pd.arrays.IntegerArray(_unpacked(enc["int"]), _unpacked(enc["na"]))
    if "array" in enc:
        return _unpacked(enc["array"])
    values = enc["values"]
    if dtype in ("string", "category", "Int64"):
        return pd.array(values, dtype=dtype)
    return np.asarray(values, dtype=dtype)


def _write_entry(path: Path, result: ToolResult) -> None:
    """One JSON file per parsed result (columnar; categoricals as codes), written atomically."""
    doc = {"parser": PARSER_VERSION, "tool": result.tool, "info": result.info,
           "tables": {name: {c: _encode_column(df[c]) for c in df.columns} for name, df in result.tables.items()},
           "columns": {name: list(df.columns) for name, df in result.tables.items()}}
    text = json.dumps(doc, separators=(",", ":"), default=str)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Temp file + rename (no fsync: a cache entry lost in a crash is simply rebuilt).
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_entry(path: Path) -> ToolResult | None:
    """The cached result, or None when absent or unreadable (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        tables: dict[str, pd.DataFrame] = {}
        for name, cols in doc["tables"].items():
            schema = TOOL_SCHEMAS[name]
            df = pd.DataFrame({c: _decode_column(cols[c], schema.get(c, "object")) for c in doc["columns"][name]})
            tables[name] = conform(name, df, f" (cache {path.name})")
    except (OSError, KeyError, TypeError, ValueError, BadTable) as exc:
        path.unlink(missing_ok=True)
        CACHE_LOG.append(f"dropped unreadable cache entry {path.name}: {exc}")
        return None
    return ToolResult(doc["tool"], tables, doc.get("info") or {})


#: Cache entries found unreadable, dropped and rebuilt (diagnostics; tests read it).
CACHE_LOG: list[str] = []


def convert(xplane_path: Path | str, tool: str, params: Mapping[str, Any] | None = None, *,
            cache_dir: Path | str | None = None, use_cache: bool = True) -> ToolResult:
    """Parsed output of xprof ``tool`` for one xplane, served from the cache when possible.

    ``params`` are passed to ``xspace_to_tool_data`` (e.g. ``{"trace_viewer_options":
    {"start_time_ms": "5", "end_time_ms": "10"}}`` for ``trace_viewer@``). The cache lives
    in ``cache_dir`` (default: ``<run_dir>/cache``).
    """
    parser = lookup(TOOLS, tool, "xprof tool")
    xplane = Path(xplane_path)
    key = cache_key(xplane, tool, params)
    entry = _entry_path(Path(cache_dir) if cache_dir else default_cache_dir(xplane), tool, key)
    if use_cache:
        cached = _read_entry(entry)
        if cached is not None:
            return cached
    result = parser(raw_tool_data(xplane, tool, params))
    result.tool = tool
    if use_cache:
        _write_entry(entry, result)
    return result


# -- conveniences ------------------------------------------------------------------------
def find_xplane(run_dir: Path | str) -> Path:
    """The newest ``trace/plugins/profile/*/*.xplane.pb`` of a run, or ``TraceUnavailable``."""
    found = sorted(Path(run_dir).glob("trace/plugins/profile/*/*.xplane.pb"))
    if not found:
        raise TraceUnavailable(f"Run {run_dir} has no TF profiler capture (no xplane under trace/).",
                               "Only profiled TF variants have one; NumPy variants use phase spans.")
    return found[-1]


def trace_events(xplane_path: Path | str, *, start_ms: float | None = None, end_ms: float | None = None,
                 cache_dir: Path | str | None = None) -> pd.DataFrame:
    """The ``events`` table: whole capture (``trace_viewer``, with op long names), or a window.

    With ``start_ms``/``end_ms`` (ms since the start of the capture) xprof's streaming
    ``trace_viewer@`` returns the events overlapping that window, display names only: what
    a per-step Gantt chart needs, without loading a large capture whole.
    """
    if start_ms is None and end_ms is None:
        return convert(xplane_path, "trace_viewer", {}, cache_dir=cache_dir).table("events")
    opts: dict[str, str] = {"resolution": "0"}
    if start_ms is not None:
        opts["start_time_ms"] = f"{float(start_ms):.6f}"
    if end_ms is not None:
        opts["end_time_ms"] = f"{float(end_ms):.6f}"
    return convert(xplane_path, "trace_viewer@", {"trace_viewer_options": opts},
                   cache_dir=cache_dir).table("events")


def step_window_ms(events: pd.DataFrame, step: int) -> tuple[float, float]:
    """(start_ms, end_ms) of step ``step``'s marker in ``events``, for ``trace_events``."""
    m = events[events["marker"] & (events["step"] == step)]
    if m.empty:
        steps = sorted(int(s) for s in events.loc[events["marker"], "step"].dropna().unique())
        raise TraceUnavailable(f"The trace has no marker for step {step}.",
                               f"Steps with markers: {', '.join(map(str, steps)) or '(none)'}.")
    start = float(m["ts_us"].min())
    end = float((m["ts_us"] + m["dur_us"]).max())
    return start / 1e3, end / 1e3


def run_tables(xplane_path: Path | str, *, cache_dir: Path | str | None = None,
               use_cache: bool = True) -> ToolResult:
    """Every table the analysis reads from a capture (``PIPELINE_TOOLS``), cached as one entry.

    Tables: ``step_time``, ``input_stages``, ``ops``, ``events``; ``info`` keys are
    prefixed with the tool name (``input_pipeline_analyzer.input_conclusion``, ...).
    """
    xplane = Path(xplane_path)
    entry = _entry_path(Path(cache_dir) if cache_dir else default_cache_dir(xplane), "pipeline",
                        cache_key(xplane, "pipeline", {"tools": [list(t) for t in PIPELINE_TOOLS]}))
    if use_cache:
        cached = _read_entry(entry)
        if cached is not None:
            return cached
    out = ToolResult("pipeline")
    for tool, params in PIPELINE_TOOLS:
        res = lookup(TOOLS, tool, "xprof tool")(raw_tool_data(xplane, tool, params))
        for name, df in res.tables.items():
            out.tables.setdefault(name, df)
        out.info.update({f"{tool}.{k}": v for k, v in res.info.items()})
    if use_cache:
        _write_entry(entry, out)
    return out


def export_trace_json(xplane_path: Path | str, dest: Path | str | None = None, *,
                      cache_dir: Path | str | None = None) -> Path:
    """Write the capture as Chrome trace-event JSON (opens in Perfetto and chrome://tracing).

    Without ``dest`` the file is kept in the cache and reused; returns its path.
    """
    xplane = Path(xplane_path)
    key = cache_key(xplane, "trace_viewer", {})
    cached = (Path(cache_dir) if cache_dir else default_cache_dir(xplane)) / "xprof" / f"trace-{key}.json"
    if not cached.is_file():
        data = raw_tool_data(xplane, "trace_viewer", {})
        atomic_write_text(cached, data.decode("utf-8") if isinstance(data, bytes) else data)
    if dest is None:
        return cached
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, dest)
    return dest


__all__: Sequence[str] = (
    "MARKER_NAME", "PIPELINE_TOOLS", "TOOLS", "TOOL_SCHEMAS", "ToolResult", "cache_key", "conform",
    "convert", "default_cache_dir", "empty_tool_table", "export_trace_json", "find_xplane",
    "raw_tool_data", "run_tables", "step_window_ms", "trace_events",
)

"""xprof's converter, wrapped: xplane -> tidy pandas tables, cached in the run directory.

Every analysis of a TF profiler capture goes through xprof's converter; the xplane protobuf
is never parsed here. Each tool we read has a parser in ``TOOLS`` (xprof tool name ->
parser) that turns the tool's output into tidy tables with units in their column names,
declared in ``TOOL_SCHEMAS``:

``overview_page``            -> ``step_time`` (one row per step marker) + the input verdict
``input_pipeline_analyzer``  -> ``step_time`` + ``input_stages`` (tf.data stages) + shares
``framework_op_stats``       -> ``ops`` (the run model's ``ops`` schema, plus extras)
``trace_viewer``             -> ``events``, the whole capture, with op long names
``trace_viewer@``            -> ``events`` for a time window, display names only (Gantt)

The gviz tools and ``trace_viewer@`` are read from ``xspace_to_tool_data``
(``xprof.convert.raw_to_tool_data``). ``trace_viewer`` is read from the converter's own
output, the serialized ``trace_events_old_pb2.Trace`` that ``xspace_to_tool_data`` would
turn into JSON event by event in Python (most of its time on a big capture): the events
go from that protobuf into NumPy columns, giving the same table as the JSON would.

``convert`` caches each parsed result once under ``<run_dir>/cache/xprof/``: an index
(``<tool>-v<parser>-<key>.json``: info and table names) and one Arrow IPC (Feather v2,
zstd) file per table, each written to a name unique to the process and thread and
renamed into place, the index last. The key covers tool, params, parser version and the
xplane's name, mtime and size, so reopening an analysed run imports neither xprof nor
the trace. ``run_tables`` is built from the per-tool entries, so no table is stored twice.
An absent, empty or unreadable xplane raises ``TraceUnavailable``; a missing xprof raises
``DependencyMissing``.

``capture_limit_warning`` tells when a capture hit the profiler's limit (events dropped
at the converter's cap, or a window shorter than asked), as a capture warning with the fix.

xprof writes cache files of its own beside the xplane, so that directory must be writable.

Must not import tensorflow, streamlit or pynvml (xprof and pyarrow are imported lazily).
"""
from __future__ import annotations

import copy
import ctypes
import functools
import gc
import hashlib
import json
import os
import re
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from itertools import compress
from operator import attrgetter
from pathlib import Path
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from profilers.errors import BadTable, DependencyMissing, TraceUnavailable
from profilers.model import SCHEMAS, atomic_write_text
from profilers.registry import lookup

#: Bump when a parser's output changes: old cache entries are then ignored.
PARSER_VERSION = 3

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
    from profilers.op_category import op_category  # one classification for ops and breakdown

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
    """Chrome trace-event JSON -> ``events`` (complete events only), with steps assigned.

    Used for ``trace_viewer@`` (a window of the capture), whose only output is JSON; the
    whole capture (``trace_viewer``) is read from the converter's protobuf instead
    (``parse_trace_proto``), into the same table.
    """
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
    cols = _EventColumns()
    cols.pid.append(np.asarray([ev["pid"] for ev in xs], dtype=np.int64))
    cols.tid.append(np.asarray([ev["tid"] for ev in xs], dtype=np.int64))
    cols.ts_us.append(np.asarray([ev["ts"] for ev in xs], dtype=np.float64))
    cols.dur_us.append(np.asarray([ev["dur"] for ev in xs], dtype=np.float64))
    cols.tf_op.append(np.asarray(["is_eager" in a for a in args], dtype=bool))
    cols.hlo_op.append(np.asarray(["hlo_op" in a for a in args], dtype=bool))
    cols.name.add([ev["name"] for ev in xs])
    for key, codes in cols.arg_codes().items():
        codes.add([a.get(key) for a in args])
    events = cols.frame(procs, threads)
    info: dict[str, Any] = {"events": int(len(events))}
    if isinstance(doc, Mapping):
        if "fullTimespan" in doc:
            info["full_timespan_ms"] = [float(x) for x in doc["fullTimespan"]]
        if "filteredByVisibility" in doc:
            info["filtered_by_visibility"] = bool(doc["filteredByVisibility"])
    return ToolResult("trace_viewer", {"events": events}, info)


class _Codes:
    """Values factorized chunk by chunk: int32 codes (-1 for None), categories in order of
    first appearance. Keeps codes, not one Python object per event."""

    def __init__(self) -> None:
        self.index: dict[Any, int] = {None: -1}
        self.cats: list[Any] = []
        self.parts: list[np.ndarray] = []

    def add(self, values: Sequence[Any]) -> None:
        self.parts.append(self._encode(values))

    def add_at(self, n: int, where: np.ndarray, values: Sequence[Any]) -> None:
        """A chunk of ``n`` values, None except at positions ``where`` (sparse columns)."""
        part = np.full(n, -1, dtype=np.int32)
        part[where] = self._encode(values)
        self.parts.append(part)

    def _encode(self, values: Sequence[Any]) -> np.ndarray:
        index = self.index
        for v in dict.fromkeys(values):
            if v not in index:
                index[v] = len(self.cats)
                self.cats.append(v)
        return np.fromiter(map(index.__getitem__, values), dtype=np.int32, count=len(values))

    def codes(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros(0, dtype=np.int32)

    def categorical(self) -> pd.Categorical:
        return pd.Categorical.from_codes(self.codes(), categories=[str(c) for c in self.cats], validate=False)

    def ints(self) -> tuple[np.ndarray, np.ndarray]:
        """(int64 values, NA mask), each distinct value converted once."""
        codes = self.codes()
        table = np.asarray([int(v) for v in self.cats] + [0], dtype=np.int64)  # code -1 -> 0 (masked)
        return table[codes], codes < 0


@dataclass
class _EventColumns:
    """The ``events`` table's columns, filled chunk by chunk from either trace format."""

    pid: list[np.ndarray] = field(default_factory=list)
    tid: list[np.ndarray] = field(default_factory=list)
    ts_us: list[np.ndarray] = field(default_factory=list)
    dur_us: list[np.ndarray] = field(default_factory=list)
    tf_op: list[np.ndarray] = field(default_factory=list)
    hlo_op: list[np.ndarray] = field(default_factory=list)
    name: _Codes = field(default_factory=_Codes)
    step_num: _Codes = field(default_factory=_Codes)
    group_id: _Codes = field(default_factory=_Codes)
    long_name: _Codes = field(default_factory=_Codes)
    eager_op: _Codes = field(default_factory=_Codes)
    is_func: _Codes = field(default_factory=_Codes)
    function_call: _Codes = field(default_factory=_Codes)

    def arg_codes(self) -> dict[str, _Codes]:
        """xprof event arg -> the column it fills."""
        return {"step_num": self.step_num, "group_id": self.group_id, "long_name": self.long_name,
                "eager_op": self.eager_op, "is_func": self.is_func, "tf_function_call": self.function_call}

    def frame(self, procs: Mapping[int, str], threads: Mapping[tuple[int, int], str]) -> pd.DataFrame:
        def cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

        pid, tid = cat(self.pid, np.int64), cat(self.tid, np.int64)
        name_cat = self.name.categorical()
        step_arr, step_na = self.step_num.ints()
        # Markers without step_num: by name ("train N"), looked for among the distinct names.
        by_name = {c: int(m.group(1)) for c, nm in enumerate(name_cat.categories)
                   if nm.startswith(MARKER_NAME) and (m := _MARKER_RE.match(nm))}
        if by_name:
            codes = name_cat.codes
            for k in np.nonzero(step_na & np.isin(codes, list(by_name)))[0].tolist():
                step_arr[k], step_na[k] = by_name[int(codes[k])], False
        group_arr, group_na = self.group_id.ints()
        func_codes = self.is_func.codes()
        is_func = np.asarray([v in ("1", 1) for v in self.is_func.cats] + [False], dtype=bool)[func_codes]
        pt = pid << 32 | tid
        lane_idx, lanes = pd.factorize(pt)  # hashing, not a sort of every event
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
            "name": name_cat,
            "long_name": self.long_name.categorical(),
            "ts_us": cat(self.ts_us, np.float64),
            "dur_us": cat(self.dur_us, np.float64),
            "step": pd.arrays.IntegerArray(step_arr, step_na),
            "group_id": pd.arrays.IntegerArray(group_arr, group_na),
            "marker": ~step_na,
            "tf_op": cat(self.tf_op, bool),
            "hlo_op": cat(self.hlo_op, bool),
            "eager_op": self.eager_op.categorical(),
            "is_func": is_func,
            "function_call": self.function_call.categorical(),
        })
        return _assign_steps(events)


def parse_trace_proto(data: bytes, *, on_parsed: Callable[[], None] | None = None) -> ToolResult:
    """xprof's ``trace_viewer`` protobuf (``trace_events_old_pb2.Trace``, the converter's own
    output before xprof turns it into JSON) -> ``events``: the same table as
    ``parse_trace_events`` gives for that JSON, column by column, without a dict per event.

    The JSON keeps an event as complete (``"ph": "X"``) when its ``duration_ps`` is not 0,
    with ``ts``/``dur`` = picoseconds / 1e6; ``process``/``thread`` are the device and
    resource names. The message is read through ``_raw_args_trace`` (each arg as its
    entry's own bytes, not a hash table per event, decoded once per distinct entry). The
    events are read in chunks, so the per-event protobuf wrappers of only one chunk are
    alive at a time, and strings are kept as category codes.

    ``on_parsed`` is called once the message is parsed and ``data`` dropped (pass the bytes
    without keeping a reference, and they are freed there): from then on this is Python
    work on the parsed message, the time to start a conversion beside it.
    """
    try:
        from xprof.protobuf.trace_events_old_pb2 import Trace
    except ImportError as exc:
        raise DependencyMissing(f"xprof is not importable ({exc}).",
                                "Install it: pip install xprof==2.24.2") from None
    from google.protobuf.message import DecodeError

    with _gc_paused():
        trace_class, entry_class = _raw_args_trace(Trace)
        trace = trace_class()
        try:
            trace.ParseFromString(data)
        except DecodeError as exc:
            raise TraceUnavailable(f"xprof's trace_viewer output is not a readable Trace protobuf ({exc}).",
                                   "Re-run the variant with profiling on; the run's other tables are "
                                   "unaffected.") from None
        del data
        _release_freed_memory()
        if on_parsed is not None:
            on_parsed()
        procs = {int(did): dev.name for did, dev in trace.devices.items()}
        threads = {(int(did), int(rid)): res.name for did, dev in trace.devices.items()
                   for rid, res in dev.resources.items()}
        cols = _EventColumns()
        rare = [(k, c) for k, c in cols.arg_codes().items() if k != "group_id"]
        entries = _ArgEntries(entry_class)
        group_of: dict[bytes | None, str | None] = {None: None}  # a lone arg -> its group_id
        evs = trace.trace_events
        n_trace_events = len(evs)  # all of them (instant ones too): what xprof's cap counts
        for lo in range(0, len(evs), _PROTO_CHUNK):
            chunk = evs[lo:lo + _PROTO_CHUNK]  # one wrapper per event, each field read in one pass
            dur_ps = np.fromiter(map(_DURATION, chunk), dtype=np.int64, count=len(chunk))
            keep = dur_ps != 0  # complete events only
            if not keep.all():
                chunk, dur_ps = list(compress(chunk, keep.tolist())), dur_ps[keep]
            n = len(chunk)
            if n == 0:
                continue
            pid_a = np.fromiter(map(_DEVICE, chunk), dtype=np.int64, count=n)
            tid_a = np.fromiter(map(_RESOURCE, chunk), dtype=np.int64, count=n)
            ts_ps = np.fromiter(map(_TIMESTAMP, chunk), dtype=np.int64, count=n)
            names, args = list(map(_NAME, chunk)), list(map(_ARGS, chunk))
            del chunk
            cols.pid.append(pid_a)
            cols.tid.append(tid_a)
            cols.ts_us.append(ts_ps / 1e6)
            cols.dur_us.append(dur_ps / 1e6)
            cols.name.add(names)
            # Most events carry one arg, group_id: their entry's bytes are looked up, decoded
            # once per distinct entry; the other keys are read only where there are more,
            # filling their columns only there.
            lens = np.fromiter(map(len, args), dtype=np.int32, count=n)
            firsts = [a[0] if one else None for a, one in zip(args, (lens == 1).tolist())]
            for raw in dict.fromkeys(firsts):
                if raw not in group_of:
                    key, value = entries[raw]
                    group_of[raw] = value if key == "group_id" else None
            group = list(map(group_of.__getitem__, firsts))
            many = np.nonzero(lens > 1)[0].tolist()
            dicts = {k: dict(map(entries.__getitem__, args[k])) for k in many}
            for k in many:
                group[k] = dicts[k].get("group_id")
            cols.group_id.add(group)
            rich = np.nonzero((lens > 1) | ((lens == 1) & (cols.group_id.parts[-1] < 0)))[0]
            rich_args = [dicts[k] if k in dicts else dict([entries[firsts[k]]]) for k in rich.tolist()]
            for key, codes in rare:
                codes.add_at(n, rich, [a.get(key) for a in rich_args])
            tf_op = np.zeros(n, dtype=bool)
            hlo_op = np.zeros(n, dtype=bool)
            tf_op[rich] = [("is_eager" in a) for a in rich_args]
            hlo_op[rich] = [("hlo_op" in a) for a in rich_args]
            cols.tf_op.append(tf_op)
            cols.hlo_op.append(hlo_op)
            del names, args, firsts, group, dicts, rich_args
        # No wrapper of the message may outlive this point: any one keeps its arena alive.
        del evs, trace
        _release_freed_memory()
        events = cols.frame(procs, threads)
        del cols
        _release_freed_memory()
    return ToolResult("trace_viewer", {"events": events},
                      {"events": int(len(events)), "trace_events": int(n_trace_events)})


_KEY_VALUE = attrgetter("key", "value")
_DEVICE, _RESOURCE, _TIMESTAMP, _DURATION, _NAME, _ARGS = map(
    attrgetter, ("device_id", "resource_id", "timestamp_ps", "duration_ps", "name", "args"))


class _ArgEntries(dict):
    """An arg entry's serialized bytes -> its (key, value), decoded by protobuf once per
    distinct entry: a capture repeats the same few thousand entries hundreds of thousands
    of times."""

    def __init__(self, entry_class: Any) -> None:
        super().__init__()
        self.entry_class = entry_class

    def __missing__(self, raw: bytes) -> tuple[str, str]:
        kv = self[raw] = _KEY_VALUE(self.entry_class.FromString(raw))
        return kv


@functools.lru_cache(maxsize=None)
def _raw_args_trace(trace: Any) -> tuple[Any, Any]:
    """xprof's ``Trace`` message class with each ``TraceEvent.args`` entry kept as its own
    serialized bytes, and the class of that entry (``ArgsEntry {key, value}``) to decode
    them: the same wire format (protobuf defines a map as a repeated entry message, and a
    message field as length-delimited bytes), built at run time from xprof's own
    descriptor. Parsed as a map, every event gets a hash table: 127 MB for a 335,000-event
    capture, against 78 MB as entry messages and 72 MB as bytes; and an entry's bytes are a
    dict key, so each distinct entry is decoded once (``_ArgEntries``), not once per event.
    The op table's conversion runs beside this parse (``trace_events``), so memory adds up.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    events = trace.DESCRIPTOR.fields_by_name.get("trace_events")
    event = events.message_type if events is not None else None
    args = event.fields_by_name.get("args") if event is not None else None
    entry = args.message_type if args is not None else None
    if entry is None or not entry.GetOptions().map_entry or set(entry.fields_by_name) != {"key", "value"}:
        raise DependencyMissing("xprof's Trace protobuf has changed shape: TraceEvent.args is not a "
                                "map<string, string>.", "Install the xprof version in requirements.txt.")
    proto = descriptor_pb2.FileDescriptorProto()
    trace.DESCRIPTOR.file.CopyToProto(proto)
    for message in proto.message_type:
        if message.name == event.name:
            for nested in message.nested_type:
                if nested.name == entry.name:
                    nested.options.map_entry = False
            for fld in message.field:
                if fld.name == args.name:
                    fld.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                    fld.ClearField("type_name")
    proto.name = f"sgdscope/{proto.name}"  # its own pool: xprof's own class is untouched
    pool = descriptor_pool.DescriptorPool()
    for dep in trace.DESCRIPTOR.file.dependencies:
        dep_proto = descriptor_pb2.FileDescriptorProto()
        dep.CopyToProto(dep_proto)
        pool.Add(dep_proto)
    pool.Add(proto)
    return (message_factory.GetMessageClass(pool.FindMessageTypeByName(trace.DESCRIPTOR.full_name)),
            message_factory.GetMessageClass(pool.FindMessageTypeByName(entry.full_name)))


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause Python's cyclic GC: building columns makes millions of acyclic objects, and
    the collections they trigger would scan them over and over (about a third of the time)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _release_freed_memory() -> None:
    """Hand freed heap back to the OS (glibc keeps it otherwise): xprof's converter and the
    parsed protobuf each leave ~100 MB of freed arena behind on a big capture, which would
    add to the next step's peak. A no-op where there is no ``malloc_trim``."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


#: Events read from the Trace protobuf per chunk (bounds the live per-event wrappers).
_PROTO_CHUNK = 16384
_NO_ARGS: dict[str, Any] = {}


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
        keys = np.asarray(sorted(group_map), dtype=np.float64)
        vals = np.asarray([group_map[g] for g in keys.tolist()], dtype=np.float64)
        g = group[by_group]
        k = np.clip(np.searchsorted(keys, g), 0, len(keys) - 1)
        out[by_group] = np.where(keys[k] == g, vals[k], np.nan)
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
    "trace_viewer": parse_trace_proto,
    "trace_viewer@": parse_trace_events,
}

#: Tools whose output is read as the converter's protobuf (``trace_events_old_pb2.Trace``)
#: rather than the JSON ``xspace_to_tool_data`` makes of it event by event in Python.
PROTO_TOOLS = frozenset({"trace_viewer"})


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


def _proto_converter() -> Callable[..., tuple[Any, bool]]:
    """xprof's converter itself (``_pywrap_profiler_plugin.xspace_to_tools_data``, the
    function ``xspace_to_tool_data`` calls): for ``trace_viewer`` it returns the serialized
    ``Trace`` protobuf, which ``xspace_to_tool_data`` would turn into JSON in Python."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        from xprof.convert import _pywrap_profiler_plugin
    except ImportError as exc:
        raise DependencyMissing(f"xprof is not importable ({exc}).",
                                "Install it: pip install xprof==2.24.2") from None
    return _pywrap_profiler_plugin.xspace_to_tools_data


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


def _unreadable(xplane: Path, tool: str) -> TraceUnavailable:
    return TraceUnavailable(
        f"xprof could not read {xplane} with tool {tool!r}: it is not a readable XSpace "
        "(truncated or corrupt capture).",
        "Re-run the variant with profiling on; the run's other tables are unaffected.")


def raw_tool_data(xplane_path: Path | str, tool: str, params: Mapping[str, Any] | None = None) -> str | bytes:
    """Run xprof's converter on one xplane; the tool's raw output (not cached here).

    For ``PROTO_TOOLS`` that is the serialized ``Trace`` protobuf (options as
    ``xspace_to_tool_data`` passes them: ``trace_viewer_options`` plus
    ``use_saved_result``); for the others, what ``xspace_to_tool_data`` returns.
    """
    lookup(TOOLS, tool, "xprof tool")
    xplane = Path(xplane_path)
    st = _check_xplane(xplane)
    opts: dict[str, Any] = dict(params or {})
    # xprof keeps results of its own beside the xplane, keyed by host name only: if the
    # xplane is newer than them, they are stale and must not be reused.
    if any(p.stat().st_mtime_ns < st.st_mtime_ns for pat in _XPROF_SIDECARS for p in xplane.parent.glob(pat)):
        opts["use_saved_result"] = False
    if tool in PROTO_TOOLS:
        options = dict(opts.get("trace_viewer_options") or {})
        options["use_saved_result"] = opts.get("use_saved_result", True)
        data, ok = _proto_converter()([str(xplane)], tool, options)
        _release_freed_memory()
        if not ok or not data:
            raise _unreadable(xplane, tool)
        return data
    data, _content_type = _converter()([str(xplane)], tool, opts)
    _release_freed_memory()
    if data is None or (isinstance(data, (bytes, str)) and len(data) == 0):
        raise _unreadable(xplane, tool)
    return data


def default_cache_dir(xplane_path: Path | str) -> Path:
    """``<run_dir>/cache`` for ``<run_dir>/trace/plugins/profile/<ts>/<host>.xplane.pb``."""
    xplane = Path(xplane_path).resolve()
    parents = xplane.parents
    if len(parents) > 4 and parents[1].name == "profile" and parents[2].name == "plugins":
        return parents[4] / "cache"
    return xplane.parent / "sgdscope-cache"


def cache_key(xplane_path: Path | str, tool: str, params: Mapping[str, Any] | None = None) -> str:
    """Key of a parsed result: tool, params, parser version, xplane name, mtime and size
    (and, for a trace, the converter's event cap set in the environment)."""
    xplane = Path(xplane_path)
    st = _check_xplane(xplane)
    doc = {"tool": tool, "params": params or {}, "parser": PARSER_VERSION,
           "xplane": xplane.name, "mtime_ns": st.st_mtime_ns, "size": st.st_size}
    if tool.startswith("trace_viewer") and trace_event_limit() is not None:
        doc["event_limit"] = trace_event_limit()
    blob = json.dumps(doc, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


# -- the cache: one index (JSON) per parsed result, one Arrow IPC file per table ---------
_ENTRY_TAG = f"-v{PARSER_VERSION}-"
_EXPORT_PREFIX = "trace-"


def _entry_path(cache_dir: Path, tool: str, key: str) -> Path:
    """The entry's index, ``<slug>-v<parser>-<key>.json``; its tables are
    ``<slug>-v<parser>-<key>.<table>.arrow`` beside it."""
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", tool).strip("_")
    return cache_dir / "xprof" / f"{slug}{_ENTRY_TAG}{key}.json"


def _table_path(entry: Path, name: str) -> Path:
    return entry.with_name(f"{entry.stem}.{name}.arrow")


def _tmp_path(path: Path) -> Path:
    """A temporary name unique to this process, thread and call (two threads of one
    Streamlit server may write the same entry at once)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{uuid.uuid4().hex}.tmp")


def _replace(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` a temporary file, then rename it over ``path`` (no fsync: a cache entry
    lost in a crash is simply rebuilt)."""
    tmp = _tmp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _drop_other_versions(xprof_dir: Path) -> None:
    """Remove entries written by another parser version (they are never read again)."""
    for p in xprof_dir.iterdir():
        name = p.name
        if name.startswith((".", _EXPORT_PREFIX)) or _ENTRY_TAG in name:
            continue
        if name.endswith((".json", ".arrow")):
            p.unlink(missing_ok=True)


def _write_entry(path: Path, result: ToolResult) -> None:
    """Each table as one Arrow IPC (Feather v2, zstd) file, then the index naming them: a
    reader that finds the index finds every table it names."""
    try:
        import pyarrow as pa
        from pyarrow import feather
    except ImportError as exc:
        raise DependencyMissing(f"pyarrow is not importable ({exc}); the trace cache is Arrow IPC.",
                                "Install it: pip install pyarrow (it comes with streamlit).") from None

    path.parent.mkdir(parents=True, exist_ok=True)
    tables: dict[str, dict[str, Any]] = {}
    for name, df in result.tables.items():
        arrow = pa.Table.from_pandas(df, preserve_index=False)
        _replace(_table_path(path, name), lambda tmp: feather.write_feather(arrow, str(tmp), compression="zstd"))
        tables[name] = {"file": _table_path(path, name).name, "rows": int(len(df))}
        del arrow
    doc = {"parser": PARSER_VERSION, "tool": result.tool, "info": result.info, "tables": tables}
    _replace(path, lambda tmp: tmp.write_text(json.dumps(doc, separators=(",", ":"), default=str), encoding="utf-8"))
    _drop_other_versions(path.parent)


def _drop_entry(path: Path, why: str) -> None:
    for p in path.parent.glob(f"{_glob_escape(path.stem)}.*"):
        p.unlink(missing_ok=True)
    CACHE_LOG.append(f"dropped unreadable cache entry {path.name}: {why}")


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _read_entry(path: Path, only: Sequence[str] | None = None) -> ToolResult | None:
    """The cached result (its tables in ``only``, default all), or None when absent or
    unreadable (then it is dropped, to be rebuilt)."""
    if not path.is_file():
        return None
    try:
        from pyarrow import ArrowException, feather
    except ImportError as exc:
        raise DependencyMissing(f"pyarrow is not importable ({exc}).", "Install it: pip install pyarrow") from None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("parser") != PARSER_VERSION:
            raise ValueError(f"parser version {doc.get('parser')!r}")
        tables: dict[str, pd.DataFrame] = {}
        for name, meta in doc["tables"].items():
            if only is not None and name not in only:
                continue
            df = feather.read_table(str(path.with_name(meta["file"])), memory_map=False).to_pandas()
            if len(df) != meta["rows"]:
                raise ValueError(f"table {name}: {len(df)} rows, the index says {meta['rows']}")
            tables[name] = conform(name, df, f" (cache {path.name})")
    except (OSError, KeyError, TypeError, ValueError, AttributeError, BadTable, ArrowException) as exc:
        _drop_entry(path, f"{type(exc).__name__}: {exc}")
        return None
    return ToolResult(doc["tool"], tables, doc.get("info") or {})


#: Cache entries found unreadable, dropped and rebuilt (diagnostics; tests read it).
CACHE_LOG: list[str] = []


def convert(xplane_path: Path | str, tool: str, params: Mapping[str, Any] | None = None, *,
            cache_dir: Path | str | None = None, use_cache: bool = True,
            on_parsed: Callable[[], None] | None = None) -> ToolResult:
    """Parsed output of xprof ``tool`` for one xplane, served from the cache when possible.

    ``params`` are passed to ``xspace_to_tool_data`` (e.g. ``{"trace_viewer_options":
    {"start_time_ms": "5", "end_time_ms": "10"}}`` for ``trace_viewer@``). The cache lives
    in ``cache_dir`` (default: ``<run_dir>/cache``); each result is stored there once.
    ``on_parsed`` (``PROTO_TOOLS`` only): see ``parse_trace_proto``; not called on a cache hit.
    """
    parser = lookup(TOOLS, tool, "xprof tool")
    xplane = Path(xplane_path)
    entry = _entry_path(Path(cache_dir) if cache_dir else default_cache_dir(xplane), tool,
                        cache_key(xplane, tool, params))
    if use_cache:
        cached = _recall(entry)
        if cached is None:
            cached = _read_entry(entry)
            if cached is not None:
                _remember(entry, cached)
        if cached is not None:
            return _shallow(cached)
    if on_parsed is not None:
        if tool not in PROTO_TOOLS:
            raise ValueError(f"on_parsed is for the protobuf tools ({', '.join(sorted(PROTO_TOOLS))}), not {tool!r}")
        result = parse_trace_proto(raw_tool_data(xplane, tool, params), on_parsed=on_parsed)
    else:
        result = parser(raw_tool_data(xplane, tool, params))
    result.tool = tool
    # The info as a reader of the cache gets it (JSON), so cold and reopened results agree.
    result.info = json.loads(json.dumps(result.info, default=str))
    if use_cache:
        _write_entry(entry, result)
        _remember(entry, result)
        return _shallow(result)
    return result


# -- the last few results of this process, so one analysis reads each table file once ---
_RECENT: OrderedDict[Path, tuple[tuple[tuple[int, int], ...], ToolResult]] = OrderedDict()
_RECENT_MAX = 4
_RECENT_LOCK = threading.Lock()


def _stamp(entry: Path, result: ToolResult) -> tuple[tuple[int, int], ...] | None:
    """(mtime_ns, size) of the entry's index and table files; None if one is gone."""
    try:
        return tuple((st.st_mtime_ns, st.st_size) for st in
                     [entry.stat(), *(_table_path(entry, name).stat() for name in result.tables)])
    except OSError:
        return None


def _remember(entry: Path, result: ToolResult) -> None:
    stamp = _stamp(entry, result)
    if stamp is None:
        return
    with _RECENT_LOCK:
        _RECENT[entry] = (stamp, result)
        _RECENT.move_to_end(entry)
        while len(_RECENT) > _RECENT_MAX:
            _RECENT.popitem(last=False)


def _recall(entry: Path) -> ToolResult | None:
    """A result remembered for ``entry`` whose files have not changed since."""
    with _RECENT_LOCK:
        hit = _RECENT.get(entry)
    if hit is None or _stamp(entry, hit[1]) != hit[0]:
        return None
    return hit[1]


def _shallow(result: ToolResult) -> ToolResult:
    """A copy safe to hand out: new frame objects over the same (copy-on-write) data."""
    return ToolResult(result.tool, {k: df.copy(deep=False) for k, df in result.tables.items()},
                      copy.deepcopy(result.info))


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

    The whole capture comes from the cache when the run was analysed; otherwise it is
    converted, with ``framework_op_stats`` (the op table the analysis reads next) converted
    beside it on another core, and both are cached. ``input_pipeline_analyzer`` is
    converted when something asks for it (the analysis does for an input-bound run).
    """
    if start_ms is None and end_ms is None:
        xplane = Path(xplane_path)
        entry = _entry_path(Path(cache_dir) if cache_dir else default_cache_dir(xplane), "trace_viewer",
                            cache_key(xplane, "trace_viewer", {}))
        if entry.is_file():
            return convert(xplane, "trace_viewer", {}, cache_dir=cache_dir).table("events")
        # The whole capture is read for its analysis, which reads the op table next. xprof's
        # converter releases the GIL, so the op table is converted on another core while the
        # trace's columns are built (about a quarter of a cold analysis). Not earlier: the
        # two converters at once would add their peaks (each loads the whole XSpace).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sgdscope-op-table") as pool:
            beside: list[Future[ToolResult]] = []
            events = convert(xplane, "trace_viewer", {}, cache_dir=cache_dir, on_parsed=lambda: beside.append(
                pool.submit(convert, xplane, "framework_op_stats", {}, cache_dir=cache_dir))).table("events")
            for done in beside:
                _wait_for_op_table(done)
        return events
    opts: dict[str, str] = {"resolution": "0"}
    if start_ms is not None:
        opts["start_time_ms"] = f"{float(start_ms):.6f}"
    if end_ms is not None:
        opts["end_time_ms"] = f"{float(end_ms):.6f}"
    return convert(xplane_path, "trace_viewer@", {"trace_viewer_options": opts},
                   cache_dir=cache_dir).table("events")


def _wait_for_op_table(done: Future[ToolResult]) -> None:
    """Wait for the op table converted beside the trace. An unreadable one is left for
    the analysis, which asks for it again and records why it has none."""
    try:
        done.result()
    except (BadTable, TraceUnavailable, DependencyMissing):
        return


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


#: Environment variable that sets how many events xprof's converter keeps in its
#: (non-streaming) trace_viewer output: past it, the latest events are dropped without a
#: word (``GetTraceViewerMaxEvents``/``CapEvents`` in ``xplane_to_trace_events.cc``; TF
#: used 1,000,000). xprof 2.24 kept all 1,087,500 events of a capture here when it is unset.
TRACE_EVENT_LIMIT_ENV = "TF_PROFILER_TRACE_VIEWER_MAX_EVENTS"


def trace_event_limit() -> int | None:
    """The converter's event cap when one is set in the environment, else None."""
    raw = os.environ.get(TRACE_EVENT_LIMIT_ENV, "").strip()
    return int(raw) if raw.isdigit() else None


def expected_markers(steps: pd.DataFrame) -> int | None:
    """How many step markers the recorder placed in the profiler window, from a run's
    ``steps`` table: one per in-window step. None when it cannot be told from the table
    (no window, or steps that ran as compiled blocks, which carry one marker per block)."""
    if steps is None or steps.empty or "in_profile_window" not in steps:
        return None
    window = steps[steps["in_profile_window"].astype(bool)]
    if window.empty or ("derived" in window and window["derived"].astype(bool).any()):
        return None
    return int(len(window))


def capture_limit_warning(xplane_or_events: Path | str | pd.DataFrame, expected_steps: int | None, *,
                          trace_events_total: int | None = None, event_limit: int | None = None,
                          cache_dir: Path | str | None = None) -> dict[str, Any] | None:
    """A capture warning when the capture hit the profiler's limit, else None.

    Signs of a cut capture (either is enough):
    - the trace holds step markers for fewer steps than the recorder marked
      (``expected_steps``: the profiler window's marked steps; None skips this check, e.g.
      for steps inferred from the trace): a window shorter than asked;
    - the trace reached the converter's event cap (``event_limit``, default
      ``trace_event_limit()``): the converter keeps that many and drops the rest, the
      latest ones (a trace of exactly that many events is taken as cut, too).

    ``xplane_or_events``: the whole-capture ``events`` table (then nothing is read; pass
    ``trace_events_total``, the converter's count with instant events, from
    ``convert(xplane, "trace_viewer").info["trace_events"]`` when you have it), or an xplane
    path (its cached ``trace_viewer`` result is read). The analysis goes on with what was
    kept; the warning says what was lost and the fix.
    Returns ``{"kind": "trace_event_cap", "message": ..., "evidence": {...}}``.
    """
    if isinstance(xplane_or_events, pd.DataFrame):
        events = xplane_or_events
    else:
        res = convert(xplane_or_events, "trace_viewer", {}, cache_dir=cache_dir)
        events = res.table("events")
        if trace_events_total is None:
            trace_events_total = res.info.get("trace_events")
    limit = trace_event_limit() if event_limit is None else int(event_limit)
    total = int(trace_events_total if trace_events_total is not None else len(events))
    is_marker = events["marker"].to_numpy(dtype=bool)
    steps_kept = sorted({int(s) for s in events.loc[is_marker, "step"].dropna()})
    per_step = events.loc[~is_marker, "step"].dropna().astype("int64").value_counts()
    counts = [int(per_step.get(s, 0)) for s in steps_kept]
    median_events = float(np.median(counts[:-1])) if len(counts) > 2 else None
    at_limit = limit is not None and total >= limit
    # The step the cut fell in, if it shows (fewer than half a median step's events).
    last_cut = bool(at_limit and median_events and counts[-1] < 0.5 * median_events)
    short = expected_steps is not None and len(steps_kept) < int(expected_steps)
    if not (short or at_limit):
        return None
    end_ms = float((events["ts_us"] + events["dur_us"]).max()) / 1e3 if len(events) else 0.0
    what = []
    if short:
        what.append(f"the trace holds {len(steps_kept)} of the {int(expected_steps)} steps profiled")
    if at_limit:
        what.append(f"it reached the {limit:,} events xprof's converter keeps ({TRACE_EVENT_LIMIT_ENV}), "
                    f"which drops the events past them: the trace ends {end_ms:.1f} ms into the capture")
    if last_cut:
        what.append(f"its last step ({steps_kept[-1]}) holds {counts[-1]} events against a median of "
                    f"{median_events:.0f}")
    complete = len(steps_kept) - (1 if last_cut else 0)
    suggest = max(1, int(complete * 0.8)) if complete > 0 else None
    fix = f"profile fewer steps (--profile-steps {suggest} or less)" if suggest else "profile fewer steps"
    message = (f"The capture hit the profiler's limit: {'; '.join(what)}. The analysis uses what was "
               f"kept ({len(steps_kept)} step{'s' if len(steps_kept) != 1 else ''}). To capture every step, "
               f"{fix}, or a smaller model (fewer ops per step).")
    evidence: dict[str, Any] = {
        "expected_steps": None if expected_steps is None else int(expected_steps),
        "steps_in_trace": len(steps_kept),
        "first_step_in_trace": steps_kept[0] if steps_kept else None,
        "last_step_in_trace": steps_kept[-1] if steps_kept else None,
        "last_step_events": counts[-1] if counts else None,
        "median_step_events": median_events,
        "trace_events": total, "event_limit": limit, "event_limit_reached": at_limit,
        "trace_ends_ms": round(end_ms, 3), "suggested_profile_steps": suggest,
    }
    return {"kind": "trace_event_cap", "message": message, "evidence": evidence}


def step_windows_ms(xplane_path: Path | str, *, cache_dir: Path | str | None = None) -> pd.DataFrame:
    """``step, start_ms, end_ms`` of every step marker in the capture (ms since its start),
    for ``trace_events(start_ms=..., end_ms=...)``: what a per-step view needs to pick its
    window. From an analysed run's cache only four columns of the events are read, so a
    big capture's trace is not loaded whole; otherwise the trace is converted (and cached).
    """
    xplane = Path(xplane_path)
    entry = _entry_path(Path(cache_dir) if cache_dir else default_cache_dir(xplane), "trace_viewer",
                        cache_key(xplane, "trace_viewer", {}))
    cols = ["marker", "step", "ts_us", "dur_us"]
    events = None
    hit = _recall(entry)
    if hit is not None:
        events = hit.table("events")[cols]
    elif entry.is_file():
        try:
            from pyarrow import ArrowException, feather

            doc = json.loads(entry.read_text(encoding="utf-8"))
            if doc.get("parser") == PARSER_VERSION:
                events = feather.read_table(str(entry.with_name(doc["tables"]["events"]["file"])), columns=cols,
                                            memory_map=False).to_pandas()
        except (OSError, KeyError, TypeError, ValueError, ArrowException):
            events = None  # rebuilt below, through convert's own checks
    if events is None:
        events = trace_events(xplane, cache_dir=cache_dir)[cols]
    m = events[events["marker"].to_numpy(dtype=bool)].dropna(subset=["step"])
    out = (m.assign(end_us=m["ts_us"] + m["dur_us"]).groupby("step", as_index=False)
           .agg(start_us=("ts_us", "min"), end_us=("end_us", "max")))
    return pd.DataFrame({"step": out["step"].astype("int64"), "start_ms": out["start_us"] / 1e3,
                         "end_ms": out["end_us"] / 1e3}).sort_values("step", ignore_index=True)


def run_tables(xplane_path: Path | str, *, cache_dir: Path | str | None = None,
               use_cache: bool = True) -> ToolResult:
    """Every table the analysis reads from a capture (``PIPELINE_TOOLS``).

    Tables: ``step_time``, ``input_stages``, ``ops``, ``events``; ``info`` keys are
    prefixed with the tool name (``input_pipeline_analyzer.input_conclusion``, ...).
    Each tool's result is its own cache entry, the one ``convert``/``trace_events`` read,
    so no table is stored twice.
    """
    out = ToolResult("pipeline")
    for tool, params in PIPELINE_TOOLS:
        res = convert(xplane_path, tool, params, cache_dir=cache_dir, use_cache=use_cache)
        for name, df in res.tables.items():
            out.tables.setdefault(name, df)
        out.info.update({f"{tool}.{k}": v for k, v in res.info.items()})
    return out


def export_trace_json(xplane_path: Path | str, dest: Path | str | None = None, *,
                      cache_dir: Path | str | None = None) -> Path:
    """Write the capture as Chrome trace-event JSON (opens in Perfetto and chrome://tracing).

    The JSON is xprof's own (``raw_to_tool_data.process_raw_trace`` of the converter's
    protobuf). Without ``dest`` the file is kept in the cache and reused; returns its path.
    """
    xplane = Path(xplane_path)
    key = cache_key(xplane, "trace_viewer", {})
    cached = (Path(cache_dir) if cache_dir else default_cache_dir(xplane)) / "xprof" / f"{_EXPORT_PREFIX}{key}.json"
    if not cached.is_file():
        _converter()  # xprof importable, else DependencyMissing
        from xprof.convert.raw_to_tool_data import process_raw_trace

        text = process_raw_trace(raw_tool_data(xplane, "trace_viewer", {}))
        atomic_write_text(cached, text)
    if dest is None:
        return cached
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, dest)
    return dest


__all__: Sequence[str] = (
    "MARKER_NAME", "PIPELINE_TOOLS", "PROTO_TOOLS", "TOOLS", "TOOL_SCHEMAS", "TRACE_EVENT_LIMIT_ENV", "ToolResult",
    "cache_key", "capture_limit_warning", "conform", "expected_markers",
    "convert", "default_cache_dir", "empty_tool_table", "export_trace_json", "find_xplane",
    "parse_trace_events", "parse_trace_proto", "raw_tool_data", "run_tables", "step_window_ms", "step_windows_ms",
    "trace_event_limit", "trace_events",
)

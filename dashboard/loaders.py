"""The dashboard's edge: the one module that reads the run store, the experiment
directories and the workload registry, and the only one that uses ``st.cache_*``.

- ``store()``: the ``RunStore`` of ``SGDSCOPE_HOME`` (a cached resource per home).
- ``runs()``: the readable runs of the index, cached until a run directory or the index
  changes; ``all_runs()`` adds the runs that cannot be read (status ``damaged``, the
  reason in ``damage``), for the Runs page, which lists and deletes them.
- ``profile(run_id)``: a stored run, cached by run id and manifest mtime.
- ``experiment_profiles(exp_id)``: the runs of one experiment in launch order.
- ``handle(exp_id)`` / ``remember(handle)``: experiment handles, kept process-wide so
  the supervisor processes this server started are reaped whichever session watches.
- ``live_samples(exp_dir, variant)``: the live utilization file (never cached).
- ``warm_pool()``: this server's warm workers (``profilers.warm.WarmPool``; None when
  ``SGDSCOPE_WARM=0``), kept process-wide; ``keep_warm()`` makes sure one is waiting.

Nothing runs at import time. Must not import tensorflow or pynvml (the workload
registry is imported lazily and imports neither).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import streamlit as st

from profilers.model import RunProfile
from profilers.session import ExperimentHandle, attach
from profilers.store import RunStore, default_home
from profilers.warm import WarmPool


def home() -> str:
    """The store location (``SGDSCOPE_HOME``, default ``./runs``), resolved."""
    return str(default_home())


@st.cache_resource(show_spinner=False)
def _store(home_dir: str) -> RunStore:
    return RunStore(home_dir)


def store() -> RunStore:
    return _store(home())


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def _store_version(home_dir: str) -> tuple[int, int, int]:
    """Changes when a run directory appears or goes (the home directory's mtime) or the
    index is rewritten (``RunStore.update``)."""
    h = Path(home_dir)
    return _mtime_ns(h), _mtime_ns(h / "index.sqlite"), _mtime_ns(h / "index.sqlite-wal")


@st.cache_resource(show_spinner=False)
def _notices() -> list[str]:
    return []


@st.cache_data(show_spinner=False, max_entries=32)
def _runs(home_dir: str, version: tuple[int, int, int]) -> pd.DataFrame:
    df = RunStore(home_dir).list()
    _notices().extend(df.attrs.get("notices") or [])
    return df


def take_notices() -> list[str]:
    """The store's warnings (an index rebuilt) not shown yet; each is returned once."""
    out = list(_notices())
    _notices().clear()
    return out


def all_runs() -> pd.DataFrame:
    """``RunStore.list()``: one row per stored run, newest first, damaged runs last
    (its warnings, e.g. an index rebuilt, go to ``take_notices``)."""
    h = home()
    return _runs(h, _store_version(h))


def runs() -> pd.DataFrame:
    """The readable runs, newest first: every page but Runs sees only these, so one
    damaged run never breaks a page."""
    df = all_runs()
    return df[df["status"] != "damaged"].reset_index(drop=True)


@st.cache_data(show_spinner=False, max_entries=64)
def _profile(home_dir: str, run_id: str, mtime_ns: int) -> RunProfile:
    return RunStore(home_dir).load(run_id)


def profile(run_id: str) -> RunProfile:
    """A stored run (raises ``RunNotFound`` with a hint when it is gone)."""
    s = store()
    manifest = s.path(run_id) / "manifest.json"
    return _profile(home(), run_id, _mtime_ns(manifest))


def experiment_profiles(experiment_id: str) -> list[RunProfile]:
    """The stored runs of one experiment, in the order their variants were chosen."""
    df = runs()
    ids = df.loc[df["experiment_id"] == experiment_id, "run_id"]
    return sorted((profile(r) for r in ids), key=lambda p: p.manifest.get("order", 0))


def latest_sampler_status(name: str) -> tuple[dict[str, Any] | None, str | None]:
    """The newest stored run's status of sampler ``name`` on this machine, and that run's
    id (``(None, None)`` when no stored run recorded it)."""
    df = runs()
    for run_id in df["run_id"]:
        info = (profile(run_id).manifest.get("samplers") or {}).get(name)
        if info is not None:
            return info, run_id
    return None, None


def delete_run(run_id: str) -> None:
    store().delete(run_id)


# -- experiments being run -------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def _handles() -> dict[str, ExperimentHandle]:
    return {}


def remember(h: ExperimentHandle) -> None:
    _handles()[h.experiment_id] = h


def handle(experiment_id: str) -> ExperimentHandle:
    """The handle ``launch`` returned in this server, else one attached to the directory
    (raises ``CaptureFailed`` when there is no such experiment)."""
    h = _handles().get(experiment_id)
    return h if h is not None else attach(store(), experiment_id)


@st.cache_resource(show_spinner=False)
def _pool(home_dir: str) -> WarmPool:
    return WarmPool(RunStore(home_dir))


def warm_pool() -> WarmPool | None:
    """The warm workers of this server (None when ``SGDSCOPE_WARM=0``)."""
    return None if os.environ.get("SGDSCOPE_WARM", "1") == "0" else _pool(home())


def keep_warm() -> str:
    """Start a warm worker if none is waiting and no experiment runs; its status line."""
    pool = warm_pool()
    if pool is None:
        return "warm workers off (SGDSCOPE_WARM=0): each launch imports TensorFlow"
    pool.ensure()
    return pool.status()


def live_samples(exp_dir: Path, variant: str) -> pd.DataFrame:
    """Rows written so far to ``<exp_dir>/live-<variant>.jsonl`` (a ``samples`` table)."""
    from profilers.samplers import read_live

    return read_live(Path(exp_dir) / f"live-{variant}.jsonl")


# -- bundles ---------------------------------------------------------------------------------
@st.cache_resource(show_spinner="Checking the bundle...", max_entries=4)
def _bundle_runs(digest: str, data: bytes) -> list[RunProfile]:
    from profilers import bundle

    return bundle.open_bundle(data)


def bundle_runs(data: bytes) -> list[RunProfile]:
    """The runs of an uploaded bundle, validated whole and opened once per content
    (in a temporary folder; nothing is written to the store)."""
    import hashlib

    return _bundle_runs(hashlib.sha256(data).hexdigest(), data)


# -- registry --------------------------------------------------------------------------------
def workloads() -> Mapping[str, Any]:
    """The workload registry (built-ins plus ``SGDSCOPE_WORKLOAD_MODULES``); a bad module
    name is a ``BadInput`` that says which."""
    from workloads import WORKLOADS

    return WORKLOADS


# -- trace (xprof; the converter caches in the run's cache/ folder) ---------------------------
@st.cache_data(show_spinner="Reading the trace with xprof...", max_entries=8)
def _step_events(home_dir: str, run_id: str, mtime_ns: int, step: int) -> pd.DataFrame:
    from profilers import xprof_tools
    from profilers.errors import TraceUnavailable

    p = _profile(home_dir, run_id, mtime_ns)
    xplane, cache = p.xplane_path(), p.run_dir / "cache"
    # The step's bounds from the cached markers only (a big trace is never loaded whole
    # here), then xprof's windowed trace_viewer@ for just that step.
    windows = xprof_tools.step_windows_ms(xplane, cache_dir=cache)
    row = windows[windows["step"] == step]
    if row.empty:
        raise TraceUnavailable(f"The trace has no marker for step {step}.",
                               f"Steps with markers: {', '.join(map(str, windows['step'])) or '(none)'}.")
    return xprof_tools.trace_events(xplane, start_ms=float(row["start_ms"].iloc[0]),
                                    end_ms=float(row["end_ms"].iloc[0]), cache_dir=cache)


def step_events(run_id: str, step: int) -> pd.DataFrame:
    """One profiled step's trace events (xprof's windowed trace_viewer@)."""
    path = store().path(run_id)
    return _step_events(home(), run_id, _mtime_ns(path / "manifest.json"), step)


@st.cache_data(show_spinner=False, max_entries=64)
def _slowest_stage(home_dir: str, run_id: str, mtime_ns: int) -> tuple[dict[str, Any] | None, str]:
    from dashboard.frames import slowest_stage
    from profilers import xprof_tools
    from profilers.errors import SgdscopeError

    p = _profile(home_dir, run_id, mtime_ns)
    xplane = p.xplane_path()
    if xplane is None:
        return None, "not profiled"
    try:
        tables = xprof_tools.run_tables(xplane, cache_dir=p.run_dir / "cache").tables
    except SgdscopeError as exc:  # absent/corrupt trace, xprof missing, unexpected table
        return None, f"trace unreadable: {exc.message}"
    found = slowest_stage(tables.get("input_stages", pd.DataFrame(columns=["self_ms"])))
    return (found, "") if found is not None else (None, "xprof found no tf.data stage in the trace")


def slowest_stage(run_id: str) -> tuple[dict[str, Any] | None, str]:
    """``(slowest tf.data stage, note)`` of a profiled run (xprof's input_stages table,
    cached beside the run), or why there is none."""
    return _slowest_stage(home(), run_id, _mtime_ns(store().path(run_id) / "manifest.json"))


def trace_json(run_id: str) -> bytes:
    """The run's capture as Chrome/Perfetto trace-event JSON (cached beside the run)."""
    from profilers import xprof_tools

    p = profile(run_id)
    return xprof_tools.export_trace_json(p.xplane_path(), cache_dir=p.run_dir / "cache").read_bytes()

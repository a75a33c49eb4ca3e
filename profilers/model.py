"""The one run model: ``RunProfile`` = a manifest (JSON) + tidy tables (CSV) + findings.

Written once by the worker (or by an import), read by the dashboard, the CLI, analysis
and bundles alike. Table schemas are declared here, with units in column names, and
checked at every boundary (after capture, after loading, after a bundle import).

Layout of a run directory::

    manifest.json          see MANIFEST_KEYS
    tables/<name>.csv      one file per table in SCHEMAS (header row, RFC 4180)
    findings.json          list of findings (triage)
    trace/plugins/profile/<ts>/<host>.xplane.pb   TF profiler capture (TF variants only)
    cache/                 derived data (xprof tool output), safe to delete
    logs/stdout.txt, logs/stderr.txt

Times: ``start_us``/``ts_us`` are microseconds since the run's own t0, taken with
``time.perf_counter_ns`` in the worker, so steps, phases and samples share one clock.

Must not import tensorflow, pynvml or streamlit.
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from profilers.errors import BadTable

SCHEMA_VERSION = 1

#: Step-time categories, in display order. Every variant reports its step in these.
CATEGORIES: tuple[str, ...] = (
    "input_wait",
    "forward",
    "backward",
    "optimizer_update",
    "framework_overhead",
    "cpu_contention",  # the step thread runnable but waiting for a core (a busy machine)
    "host_device_transfer",
    "compile_trace",
    "other",
)

#: Declared table schemas: column -> pandas dtype. Units are in the column names.
SCHEMAS: dict[str, dict[str, str]] = {
    # One row per step, warm-up included (``warmup`` True). ``derived`` marks steps whose
    # wall time is an average over a block that ran as one call (the in-graph loop).
    "steps": {
        "step": "int64",
        "epoch": "int64",
        "start_us": "float64",
        "wall_us": "float64",
        "warmup": "bool",
        "derived": "bool",
        "in_profile_window": "bool",
        "loss": "float64",
    },
    # Host-side spans inside a step, named by category (see CATEGORIES).
    "phases": {
        "step": "int64",
        "phase": "string",
        "start_us": "float64",
        "dur_us": "float64",
    },
    # Utilization samples, long format: metric names carry units (cpu_pct, rss_mib, ...).
    "samples": {
        "ts_us": "float64",
        "source": "string",
        "metric": "string",
        "value": "float64",
    },
    # Per-step breakdown, long format: ``ms`` of ``category`` in ``step``; the categories
    # of a step add up to its wall time.
    "breakdown": {
        "step": "int64",
        "category": "string",
        "ms": "float64",
    },
    # Distributed runs: one row per step per worker (process) of a tf.distribute job, each
    # worker's own host-timed steps. ``collective_us`` is the time inside collective ops
    # (all-reduce, gather, broadcast) in that step's trace; NaN when the step was not traced.
    "workers": {
        "worker": "int64",
        "step": "int64",
        "start_us": "float64",
        "wall_us": "float64",
        "warmup": "bool",
        "in_profile_window": "bool",
        "collective_us": "float64",
    },
    # Where a TF script's thread was (``script_capture.StackSampler``), sampled in the
    # profiler window: ``kind`` user | framework | harness | other (the innermost frame
    # that decides); ``where`` the innermost frame in the user's files (function, file and
    # line; "" when none) and ``code`` its source line; ``weight_us`` the wall time the
    # sample stands for.
    "py_stacks": {
        "ts_us": "float64",
        "weight_us": "float64",
        "kind": "string",
        "where": "string",
        "code": "string",
    },
    # Op statistics from the trace (xprof framework_op_stats), one row per op.
    "ops": {
        "host_or_device": "string",
        "op_type": "string",
        "op_name": "string",
        "category": "string",
        "occurrences": "int64",
        "total_self_us": "float64",
        "avg_self_us": "float64",
        "eager": "bool",
    },
}

#: Keys every manifest has (values may be null). Documented in README "Bundle format".
MANIFEST_KEYS: tuple[str, ...] = (
    "schema_version",
    "sgdscope_version",
    "run_id",
    "experiment_id",
    "workload",
    "variant",
    "params",
    "status",  # ok | failed | timeout | cancelled
    "error",  # null, or the reason a run did not finish
    "stderr_tail",
    "created_at",  # ISO-8601 UTC
    "timings",  # {"started_at", "finished_at", "wall_s", "setup_s"}
    "environment",  # versions, CPU, threads, BLAS, GPU/NVML status
    "results",  # {"steps", "step_ms", "final_loss", "baseline_loss", "loss_matches_baseline", ...}
    "capture",  # {"profiled", "xplane", "window", "overhead"} or unavailable reasons
    "samplers",  # {name: {"available": bool, "reason": str|None}}
)

STATUSES = ("ok", "failed", "timeout", "cancelled")

#: Where a run came from: a workload variant, a user's script, an attached job, an import.
SOURCES = ("workload", "script", "attach")

#: A run id: ``<UTC date>-<UTC time>-<workload>-<variant>-<6 hex>`` (``store.new_id``).
RUN_ID_RE = re.compile(r"^[0-9]{8}-[0-9]{6}-[a-z0-9_]+-[a-z0-9_]+-[0-9a-f]{6}$")

#: The keys a manifest needs to be read at all (bundles check these before anything else).
REQUIRED_MANIFEST_KEYS: tuple[str, ...] = ("schema_version", "run_id", "workload", "variant", "status")

#: Expected JSON types of the manifest's keys (None allowed for every key but the required).
_MANIFEST_TYPES: dict[str, tuple[type, ...]] = {
    "schema_version": (int,), "sgdscope_version": (str,), "run_id": (str,), "experiment_id": (str,),
    "workload": (str,), "variant": (str,), "params": (dict,), "status": (str,), "error": (str,),
    "stderr_tail": (str,), "created_at": (str,), "timings": (dict,), "environment": (dict,),
    "results": (dict,), "capture": (dict,), "samplers": (dict,), "analysis": (dict,),
    "source": (str,), "order": (int,),
}


def new_manifest(*, run_id: str, workload: str, variant: str, status: str, source: str = "workload",
                 experiment_id: str | None = None, params: dict[str, Any] | None = None,
                 error: str | None = None, stderr_tail: str = "", created_at: str | None = None,
                 timings: dict[str, Any] | None = None, environment: dict[str, Any] | None = None,
                 results: dict[str, Any] | None = None, capture: dict[str, Any] | None = None,
                 samplers: dict[str, Any] | None = None, order: int = 0,
                 **extra: Any) -> dict[str, Any]:
    """The one constructor of a run manifest: every producer (worker, supervisor, script
    worker, attach) builds its manifest here, so every key of MANIFEST_KEYS is present and
    typed, and ``validate_manifest`` holds on write."""
    from datetime import datetime, timezone

    from profilers import __version__

    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "sgdscope_version": __version__,
        "run_id": run_id, "experiment_id": experiment_id, "order": int(order),
        "workload": workload, "variant": variant, "params": dict(params or {}),
        "status": status, "error": error, "stderr_tail": stderr_tail or "",
        "created_at": created_at or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "timings": dict(timings or {}), "environment": dict(environment or {}),
        "results": dict(results or {}), "capture": dict(capture or {"profiled": False, "xplane": None}),
        "samplers": dict(samplers or {}), "source": source,
    }
    manifest.update(extra)
    validate_manifest(manifest, f" of run {run_id}")
    return manifest


def validate_manifest(manifest: Any, where: str = "") -> dict[str, Any]:
    """Return ``manifest`` or raise ``BadTable`` naming the first key that is missing or of
    the wrong type (a list, a string where an object belongs, an unknown status)."""
    if not isinstance(manifest, dict):
        raise BadTable(f"The manifest{where} is a JSON {type(manifest).__name__}, not an object.",
                       "The run is damaged: delete it, or re-import it from its bundle.")
    missing = [k for k in REQUIRED_MANIFEST_KEYS if k not in manifest]
    if missing:
        raise BadTable(f"The manifest{where} lacks {', '.join(missing)}.",
                       "The run is damaged: delete it, or re-import it from its bundle.")
    for key, types in _MANIFEST_TYPES.items():
        value = manifest.get(key)
        if value is None and key not in REQUIRED_MANIFEST_KEYS:
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            raise BadTable(f"The manifest{where} has {key} = {str(value)[:60]!r}, not a "
                           f"{'/'.join(t.__name__ for t in types)}.",
                           "The run is damaged: delete it, or re-import it from its bundle.")
    if manifest["status"] not in STATUSES:
        raise BadTable(f"The manifest{where} has an unknown status {manifest['status']!r}.",
                       f"Valid statuses: {', '.join(STATUSES)}.")
    return manifest


def empty_table(name: str) -> pd.DataFrame:
    schema = SCHEMAS[name]
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in schema.items()})


def validate_table(name: str, df: pd.DataFrame, where: str = "") -> pd.DataFrame:
    """Return ``df`` with exactly the declared columns and dtypes, or raise ``BadTable``.

    Extra columns are kept after the declared ones; missing columns are an error that
    names them.
    """
    if name not in SCHEMAS:
        raise BadTable(f"Unknown table {name!r}{where}.", f"Known tables: {', '.join(SCHEMAS)}.")
    schema = SCHEMAS[name]
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise BadTable(
            f"Table {name!r}{where} is missing column(s): {', '.join(missing)}.",
            f"Expected columns: {', '.join(schema)}.",
        )
    out = df.copy()
    for col, dtype in schema.items():
        try:
            if dtype == "bool" and out[col].dtype == object:
                out[col] = out[col].map(_parse_bool)
            out[col] = out[col].astype(dtype)
        except (ValueError, TypeError) as exc:
            raise BadTable(
                f"Column {col!r} of table {name!r}{where} is not {dtype}: {exc}.",
                "Re-export the run, or regenerate the table.",
            ) from None
    extra = [c for c in out.columns if c not in schema]
    return out[list(schema) + extra]


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def fsync_dir(path: Path) -> None:
    """fsync a directory, so that the renames and creations inside it are on disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` (and ``root``), deepest first."""
    for dirpath, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def json_safe(value: Any) -> Any:
    """NaN/inf become null (JSON has no NaN); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(obj: Any) -> str:
    return json.dumps(json_safe(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"


@dataclass
class RunProfile:
    """A stored run: manifest + tables + findings, plus where it lives on disk."""

    manifest: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    findings: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None

    @property
    def run_id(self) -> str:
        return self.manifest["run_id"]

    def table(self, name: str) -> pd.DataFrame:
        """The table, or an empty one with the declared columns."""
        df = self.tables.get(name)
        return empty_table(name) if df is None else df

    def xplane_path(self) -> Path | None:
        rel = (self.manifest.get("capture") or {}).get("xplane")
        if not rel or self.run_dir is None:
            return None
        return self.run_dir / rel

    # -- persistence ---------------------------------------------------------------
    def write(self, run_dir: Path) -> None:
        """Write every part into ``run_dir`` (each file atomically)."""
        run_dir = Path(run_dir)
        for name, df in self.tables.items():
            df = validate_table(name, df, f" of run {self.manifest.get('run_id')}")
            atomic_write_text(run_dir / "tables" / f"{name}.csv", df.to_csv(index=False))
        validate_manifest(self.manifest, f" of run {self.manifest.get('run_id')}")
        atomic_write_text(run_dir / "findings.json", dumps(self.findings))
        atomic_write_text(run_dir / "manifest.json", dumps(self.manifest))
        self.run_dir = run_dir

    @classmethod
    def read(cls, run_dir: Path) -> "RunProfile":
        from profilers.errors import RunNotFound

        run_dir = Path(run_dir)
        mpath = run_dir / "manifest.json"
        if not mpath.is_file():
            raise RunNotFound(f"No run at {run_dir} (manifest.json missing).",
                              "Run `sgdscope list` to see stored runs.")
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadTable(f"{mpath} is not valid JSON: {exc}.",
                           "Delete the run, or re-import it from its bundle.") from None
        check_manifest(manifest, mpath)
        tables: dict[str, pd.DataFrame] = {}
        for name in SCHEMAS:
            path = run_dir / "tables" / f"{name}.csv"
            if path.is_file():
                tables[name] = read_table_csv(name, path)
        findings: list[dict[str, Any]] = []
        fpath = run_dir / "findings.json"
        if fpath.is_file():
            hint = ("Delete that findings.json (then `sgdscope analyze RUN_ID` recomputes the "
                    "findings), or delete the run.")
            try:
                findings = json.loads(fpath.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise BadTable(f"{fpath} is not valid JSON: {exc}.", hint) from None
            if not isinstance(findings, list) or not all(isinstance(f, dict) for f in findings):
                raise BadTable(f"{fpath} is not a list of findings (JSON objects).", hint)
        return cls(manifest=manifest, tables=tables, findings=findings, run_dir=run_dir)


#: Manifest keys whose value, when present and not null, must be a JSON object.
_MANIFEST_OBJECTS = ("params", "timings", "environment", "results", "capture", "samplers")


def check_manifest(manifest: Any, where: Path | str) -> None:
    """Raise ``BadTable`` naming the first key of the wrong shape (a manifest that is
    valid JSON but not a run's manifest)."""
    hint = "The run is damaged: delete it, or re-import it from its bundle."
    if not isinstance(manifest, dict):
        raise BadTable(f"{where} is a JSON {type(manifest).__name__}, not a run manifest (an object).", hint)
    if not isinstance(manifest.get("run_id"), str):
        raise BadTable(f"{where} has no run_id string.", hint)
    for key in ("status", "workload", "variant", "experiment_id", "created_at", "error", "source"):
        if manifest.get(key) is not None and not isinstance(manifest[key], str):
            raise BadTable(f"{where}: {key!r} is a {type(manifest[key]).__name__}, not a string.", hint)
    for key in _MANIFEST_OBJECTS:
        if manifest.get(key) is not None and not isinstance(manifest[key], dict):
            raise BadTable(f"{where}: {key!r} is a {type(manifest[key]).__name__}, not an object.", hint)
    res = manifest.get("results") or {}
    if res.get("step_ms") is not None and not isinstance(res["step_ms"], dict):
        raise BadTable(f"{where}: 'results.step_ms' is not an object.", hint)
    numbers = {"results.steps": res.get("steps"), "results.final_loss": res.get("final_loss"),
               **{f"results.step_ms.{k}": (res.get("step_ms") or {}).get(k) for k in ("median", "p10", "p90")}}
    for key, value in numbers.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise BadTable(f"{where}: {key!r} is {value!r}, not a number.", hint)
    if manifest.get("order") is not None and not isinstance(manifest["order"], (int, float)):
        raise BadTable(f"{where}: 'order' is {manifest['order']!r}, not a number.", hint)


def read_table_csv(name: str, path: Path) -> pd.DataFrame:
    schema = SCHEMAS[name]
    string_cols = {c: "string" for c, t in schema.items() if t == "string"}
    try:
        df = pd.read_csv(path, dtype=string_cols, keep_default_na=True)
    except pd.errors.EmptyDataError:
        return empty_table(name)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise BadTable(f"Table {path} cannot be parsed: {exc}.",
                       "The run is damaged: delete it or re-import its bundle.") from None
    return validate_table(name, df, f" ({path})")

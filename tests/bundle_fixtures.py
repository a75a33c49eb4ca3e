"""Runs for the bundle/diff/report tests, made without TensorFlow.

``synthetic_run`` stores a run with seeded tables (steps, phases, breakdown, samples and,
optionally, ops) and findings; ``profiled_run`` stores one of the committed real captures
(``tests/data/<scenario>``: xplane + steps/phases) and runs ``analysis.analyse`` over it
with xprof, so it has the breakdown and ops tables a profiled TF run has. ``snapshot``
lists every file under a store with its hash, to prove a refused import wrote nothing.
"""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from profilers import analysis
from profilers.model import SCHEMA_VERSION, RunProfile, read_table_csv
from profilers.store import RunStore, new_id

DATA = Path(__file__).resolve().parent / "data"


def synthetic_run(store: RunStore, variant: str = "numpy", *, step_ms: float = 2.0, steps: int = 30,
                  seed: int = 0, findings: list[dict[str, Any]] | None = None,
                  ops: pd.DataFrame | None = None, workload: str = "linreg") -> RunProfile:
    rng = np.random.default_rng(seed)
    wall_us = rng.normal(step_ms * 1e3, step_ms * 30, steps).clip(min=1.0)
    start_us = np.concatenate([[0.0], np.cumsum(wall_us)[:-1]])
    steps_df = pd.DataFrame({
        "step": np.arange(steps), "epoch": 0, "start_us": start_us, "wall_us": wall_us,
        "warmup": np.arange(steps) < 3, "derived": False,
        "in_profile_window": (np.arange(steps) >= 10) & (np.arange(steps) < 20),
        "loss": np.linspace(10, 1, steps)})
    shares = {"input_wait": 0.1, "forward": 0.4, "backward": 0.3, "optimizer_update": 0.15, "other": 0.05}
    phases = pd.DataFrame([{"step": s, "phase": c, "start_us": st, "dur_us": w * f}
                           for s, st, w in zip(steps_df["step"], start_us, wall_us) for c, f in shares.items()])
    breakdown = pd.DataFrame([{"step": s, "category": c, "ms": w * f / 1e3}
                              for s, w in zip(steps_df["step"][3:], wall_us[3:]) for c, f in shares.items()])
    samples = pd.DataFrame({"ts_us": start_us[:5], "source": "host", "metric": "cpu_pct",
                            "value": [10.0, 20.0, 30.0, 40.0, 50.0]})
    rid = new_id(workload, variant)
    tables = {"steps": steps_df, "phases": phases, "breakdown": breakdown, "samples": samples}
    if ops is not None:
        tables["ops"] = ops
    manifest = {
        "schema_version": SCHEMA_VERSION, "sgdscope_version": "0.1.0", "run_id": rid,
        "experiment_id": "exp-test", "workload": workload, "variant": variant,
        "params": {"n": 100, "d": 3, "lr": 0.05}, "status": "ok", "error": None, "stderr_tail": "",
        "created_at": "2026-01-01T00:00:00+00:00", "timings": {"wall_s": 1.0},
        "environment": {"python": "3.11", "cpu_model": "test cpu", "cpu_logical": 2,
                        "blas": [{"internal_api": "openblas", "architecture": "Haswell", "num_threads": 2}],
                        "versions": {"numpy": "2.4.6"}},
        "results": {"steps": steps, "step_ms": analysis.step_stats(steps_df)},
        "capture": {"profiled": False, "xplane": None, "unavailable_reason": "profiling was off"},
        "samplers": {"gpu": {"available": False, "reason": "NVML library not found"},
                     "host": {"available": True, "reason": None}},
    }
    profile = RunProfile(manifest, tables, findings or [])
    store.save(profile)
    return store.load(rid)


def profiled_run(store: RunStore, scenario: str = "tf_eager", findings: list[dict[str, Any]] | None = None) -> RunProfile:
    """A stored run made of a committed real capture, finalized (breakdown, ops) with xprof."""
    src = DATA / scenario
    manifest = json.loads((src / "manifest.json").read_text())
    rid = new_id(manifest["workload"], manifest["variant"])
    manifest["run_id"] = rid
    tables = {p.stem: read_table_csv(p.stem, p) for p in sorted((src / "tables").glob("*.csv"))}
    manifest.setdefault("results", {})["step_ms"] = analysis.step_stats(tables["steps"])
    profile = RunProfile(manifest, tables, findings or [])
    staged = store.staging_dir(rid)
    shutil.copytree(src / "trace", staged / "trace")
    profile.run_dir = staged
    analysis.analyse(profile)
    if findings is not None:  # a test that brings its own findings keeps them
        profile.findings = findings
    store.commit(profile, staged)
    return store.load(rid)


def snapshot(home: Path) -> list[tuple[str, str]]:
    """Every file and folder under ``home`` with a hash of its bytes (folders: "dir")."""
    if not home.exists():
        return []
    out = []
    for p in sorted(home.rglob("*")):
        rel = str(p.relative_to(home))
        out.append((rel, "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()))
    return out


def zip_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def rezip(members: dict[str, bytes], *, fix_checksums: bool = True,
          extra: Callable[[zipfile.ZipFile], None] | None = None) -> bytes:
    """A zip of ``members`` (bundle.json's checksums recomputed unless told not to)."""
    members = dict(members)
    if fix_checksums and "bundle.json" in members:
        doc = json.loads(members["bundle.json"])
        if "files" in doc:
            doc["files"] = {n: {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                            for n, b in members.items() if n != "bundle.json"}
        members["bundle.json"] = json.dumps(doc).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if extra is not None:
            extra(zf)
    return buf.getvalue()

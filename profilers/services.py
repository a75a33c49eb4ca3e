"""The one way to act, for the CLI and the dashboard alike: launch an experiment (on a
warm worker when one is waiting), cancel it, read its progress, and run a sweep (every
size in one worker, so TensorFlow is imported once) behind a handle.

Faces (``profilers.cli*``, ``dashboard/pages``) call these; they never spawn a process
themselves. Must not import tensorflow, pynvml or streamlit.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from profilers import session
from profilers.errors import BadInput
from profilers.model import atomic_write_text, dumps
from profilers.session import ExperimentHandle
from profilers.spec import ExperimentSpec
from profilers.store import RunStore, new_id
from profilers.warm import WarmPool, WarmSlot, start_slot


def _prepare(spec: ExperimentSpec, store: RunStore) -> Path:
    """Validate the spec and write its experiment directory (as ``session.launch`` does)."""
    spec.validate()
    spec.experiment_id = spec.experiment_id or new_id("exp", spec.workload)
    exp_dir = store.experiments / spec.experiment_id
    exp_dir.mkdir(parents=True)
    atomic_write_text(exp_dir / "spec.json", spec.to_json())
    return exp_dir


def launch(spec: ExperimentSpec, store: RunStore, kind: str = "workload",
           pool: WarmPool | None = None) -> ExperimentHandle:
    """Start an experiment and return at once. With a ``pool`` that has an idle warm slot,
    the experiment goes to that worker (TensorFlow already imported); otherwise a
    supervisor and a worker are started for it (``session.launch``)."""
    slot = pool.take() if pool is not None and kind == "workload" else None
    if slot is None:
        return session.launch(spec, store, kind)
    exp_dir = _prepare(spec, store)
    slot.claim([exp_dir])
    return ExperimentHandle(store, spec.experiment_id, slot.process)


def profile_script(store: RunStore, script: Path, *, function: str | None = None, max_steps: int = 50,
                   skip_steps: int = 3, window_s: float = 8.0, timeout_s: float = 600.0) -> ExperimentHandle:
    """Profile a user's script, unchanged, as a ``script`` experiment (checked first)."""
    from profilers.cli_triage import make_spec

    spec = make_spec(Path(script), function=function, argv=[], max_steps=max_steps, skip_steps=skip_steps,
                     window_s=window_s, timeout_s=timeout_s)
    return session.launch(spec, store, kind="script")


def attach_job(store: RunStore, addresses: str, duration_ms: int, timeout_s: float = 120.0,
               name: str = "job") -> ExperimentHandle:
    """Trace a running job's profiler servers as an ``attach`` experiment: the gRPC trace
    runs in a supervised worker (``profilers.attach_worker``), with a timeout and cancel."""
    from profilers.remote_capture import check_reachable, parse_addresses

    check_reachable(parse_addresses(addresses))  # a bad or dead address fails now, within a second
    if not 100 <= int(duration_ms) <= 60_000:
        raise BadInput(f"Duration {duration_ms} ms is outside 100-60000 ms.", "Trace for a few seconds.")
    spec = ExperimentSpec(workload="attach", variants=[name], timeout_s=timeout_s, samplers=[],
                          params={"addresses": addresses, "duration_ms": int(duration_ms)})
    return session.launch(spec, store, kind="attach")


def handle(store: RunStore, experiment_id: str) -> ExperimentHandle:
    """A handle on an experiment started elsewhere (raises ``CaptureFailed`` if none)."""
    return session.attach(store, experiment_id)


def cancel(store: RunStore, experiment_id: str) -> None:
    handle(store, experiment_id).cancel()


def progress(store: RunStore, experiment_id: str) -> dict[str, Any]:
    return handle(store, experiment_id).progress()


# -- sweeps -------------------------------------------------------------------------------
class SweepHandle:
    """One sweep: its record (``_sweeps/<id>.json``), its log, and a handle per size."""

    def __init__(self, store: RunStore, record: dict[str, Any], slot: WarmSlot | None = None) -> None:
        self.store, self.record, self.slot = store, record, slot
        self.handles = [ExperimentHandle(store, e["experiment_id"], slot.process if slot else None)
                        for e in record["experiments"]]

    @property
    def sweep_id(self) -> str:
        return str(self.record["sweep_id"])

    @property
    def log_path(self) -> Path:
        return sweep_log_path(self.store, self.sweep_id)

    def progress(self) -> dict[str, Any]:
        """``{"status": running|ok|failed|cancelled, "points": [{label, experiment_id,
        status, done, total}], "done": n}``."""
        points = []
        for exp, h in zip(self.record["experiments"], self.handles):
            state = h.progress()
            steps = [(v.get("done") or 0, v.get("total") or 0) for v in state["variants"].values()]
            points.append({"label": exp["label"], "experiment_id": exp["experiment_id"],
                           "status": state["status"], "phase": state.get("phase"),
                           "done": sum(d for d, _ in steps), "total": sum(t for _, t in steps)})
        statuses = [p["status"] for p in points]
        if "running" in statuses:
            status = "running"
        elif all(s == "ok" for s in statuses):
            status = "ok"
        else:
            status = "cancelled" if "cancelled" in statuses else "failed"
        return {"sweep_id": self.sweep_id, "status": status, "points": points,
                "done": sum(s != "running" for s in statuses)}

    def cancel(self) -> None:
        for h in self.handles:
            h.cancel()

    def wait(self, poll_s: float = 0.2,
             on_point: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
        reported = 0
        while True:
            state = self.progress()
            while on_point is not None and reported < len(state["points"]) \
                    and state["points"][reported]["status"] != "running":
                on_point(reported, state["points"][reported])
                reported += 1
            if state["status"] != "running":
                self._record_statuses(state)
                return state
            time.sleep(poll_s)

    def _record_statuses(self, state: dict[str, Any]) -> None:
        for exp, point in zip(self.record["experiments"], state["points"]):
            exp["status"] = point["status"]
        atomic_write_text(sweep_path(self.store, self.sweep_id), dumps(self.record))


def sweep_path(store: RunStore, sweep_id: str) -> Path:
    return store.home / "_sweeps" / f"{sweep_id}.json"


def sweep_log_path(store: RunStore, sweep_id: str) -> Path:
    return store.home / "_sweeps" / f"{sweep_id}.log"


def start_sweep(store: RunStore, workload: str, variants: list[str], grid: list[dict[str, str]],
                base_params: dict[str, str], timeout_s: float, pool: WarmPool | None = None,
                samplers: list[str] | None = None) -> SweepHandle:
    """Every size is checked first, then all run one after another in ONE worker
    (a waiting warm one when ``pool`` has it), so TensorFlow is imported once; the
    sweep's log (``_sweeps/<id>.log``) says so. ``timeout_s`` is per size."""
    from profilers.sweep import size_label

    if not grid:
        raise BadInput("A sweep needs at least one size.", "Example: --grid m=100,1000 --grid n=10,100")
    specs = [ExperimentSpec(workload=workload, variants=list(variants), params={**base_params, **point},
                            timeout_s=timeout_s, samplers=samplers or ["host"]) for point in grid]
    for spec in specs:  # every point is checked before the first one runs
        spec.validate()
    sweep_id = new_id("sweep", workload)
    exp_dirs = [_prepare(spec, store) for spec in specs]
    record: dict[str, Any] = {
        "sweep_id": sweep_id, "workload": workload, "variants": list(variants), "grid": grid,
        "base_params": base_params, "timeout_s": timeout_s,
        "experiments": [{"point": point, "label": size_label(point), "experiment_id": spec.experiment_id,
                         "status": "running"} for spec, point in zip(specs, grid)]}
    path = sweep_path(store, sweep_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, dumps(record))
    from workloads import WORKLOADS

    needs_tf = any(WORKLOADS[workload].variant(v).needs_tf for v in variants)
    slot = pool.take() if pool is not None and needs_tf else None
    if slot is None:
        slot = start_slot(store, import_tf=needs_tf)
    log = sweep_log_path(store, sweep_id)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"sweep {sweep_id}: {len(grid)} sizes × {len(variants)} variants in one worker "
                 f"(slot {slot.slot_dir.name})\n")
    slot.claim(exp_dirs, log=log)
    return SweepHandle(store, record, slot)


def run_sweep(store: RunStore, workload: str, variants: list[str], grid: list[dict[str, str]],
              base_params: dict[str, str], timeout_s: float,
              on_point: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """``start_sweep`` and wait for its last size (the CLI's ``sweep``); the record."""
    handle = start_sweep(store, workload, variants, grid, base_params, timeout_s)
    handle.wait(on_point=on_point)
    return handle.record


def sweep_handle(store: RunStore, sweep_id: str) -> SweepHandle:
    """A handle on a stored sweep (one this process did not start)."""
    path = sweep_path(store, sweep_id)
    if not path.exists():
        raise BadInput(f"No sweep {sweep_id}.", "Start one on the Sweep page or with `sgdscope sweep`.")
    return SweepHandle(store, json.loads(path.read_text(encoding="utf-8")))


def start_whatif(store: RunStore, run_id: str, repeat: int = 3) -> Path:
    """``sgdscope whatif`` on the script a stored profile ran, starting from that run, in a
    background process (its own session; it launches a supervised worker per run). The
    result lands on the run (``manifest["whatif"]["result"]``); returns the log's path."""
    import subprocess
    import sys

    from profilers.cli_whatif import original_run

    profile = store.load(run_id)
    script = Path((profile.manifest.get("script") or {}).get("path") or "")
    original_run(store, run_id, script)  # checked here, so the page shows a bad choice at once
    log = store.home / "_whatif" / f"{run_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        subprocess.Popen([sys.executable, "-m", "profilers.cli", "whatif", str(script), "--original", run_id,
                          "--repeat", str(int(repeat)), "--home", str(store.home)],
                         cwd=session.PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=fh, stderr=fh,
                         start_new_session=True)
    return log

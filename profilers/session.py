"""Launching experiments: a supervisor process per experiment, and a handle to watch it.

``launch(spec, store)`` validates the spec, writes it to ``_experiments/<id>/spec.json``
and starts ``python -m profilers.session <exp_dir>`` (the supervisor) in its own
session, then returns at once: the caller (CLI or dashboard) never blocks on a run.

The supervisor starts the worker (``python -m profilers.worker``), enforces the timeout,
honours a cancel request (a ``cancel`` file), and when the worker dies abnormally
(crash, OOM kill, timeout, cancel) stores every variant that has no run yet as a run
with status ``failed``/``timeout``/``cancelled``, its reason and the stderr tail.

Files in the experiment directory::

    spec.json        the ExperimentSpec
    progress.jsonl   events appended by worker and supervisor (see ``read_progress``)
    status.json      written last by the supervisor: the experiment is over
    cancel           present when a cancel was requested
    worker.stdout, worker.stderr, supervisor.log

Must not import tensorflow, pynvml or streamlit.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from profilers.errors import CaptureFailed
from profilers.model import SCHEMA_VERSION, RunProfile, atomic_write_text, dumps
from profilers.spec import ExperimentSpec
from profilers.store import RunStore, new_id

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STDERR_TAIL_CHARS = 4000

#: Experiment kind -> the worker module the supervisor starts. A "script" experiment
#: profiles a user's own script (profilers.script_worker); its spec is checked by its
#: launcher (profilers.cli_triage), not against the workload registry.
WORKERS: dict[str, str] = {"workload": "profilers.worker", "script": "profilers.script_worker"}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- progress events -------------------------------------------------------------------
def emit(exp_dir: Path, event: str, **fields: Any) -> None:
    """Append one event line; a single short write, so readers never see half a line
    except at the very end of the file (which ``read_progress`` tolerates)."""
    line = json.dumps({"event": event, "t": time.time(), **fields}) + "\n"
    with open(Path(exp_dir) / "progress.jsonl", "a", encoding="utf-8") as fh:
        fh.write(line)


def read_progress(exp_dir: Path) -> dict[str, Any]:
    """Fold the event log into ``{"status", "variants": {v: {...}}, "run_ids", "error"}``."""
    exp_dir = Path(exp_dir)
    spec = ExperimentSpec.load(exp_dir / "spec.json")
    variants = {v: {"status": "pending", "done": 0, "total": None, "run_id": None}
                for v in spec.variants}
    state: dict[str, Any] = {"experiment_id": spec.experiment_id, "status": "running",
                             "phase": "starting", "variants": variants, "error": None,
                             "samplers": None}
    path = exp_dir / "progress.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    for line in lines:
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line: the writer is mid-append
        v = variants.get(ev.get("variant", ""))
        kind = ev["event"]
        if kind == "phase":
            state["phase"] = ev.get("text", "")
        elif kind == "variant_start" and v is not None:
            v.update(status="running", total=ev.get("total_steps"), run_id=ev.get("run_id"))
        elif kind == "step" and v is not None:
            v["done"] = ev.get("done", v["done"])
        elif kind == "variant_end" and v is not None:
            v.update(status=ev.get("status"), run_id=ev.get("run_id"), done=ev.get("done", v["done"]))
        elif kind == "samplers":
            state["samplers"] = ev.get("status")
    status_path = exp_dir / "status.json"
    if status_path.exists():
        final = json.loads(status_path.read_text(encoding="utf-8"))
        state.update(status=final["status"], error=final.get("error"), phase="done")
    state["run_ids"] = [v["run_id"] for v in variants.values() if v["run_id"]
                        and v["status"] not in ("pending", "running")]
    return state


# -- handle ----------------------------------------------------------------------------
class ExperimentHandle:
    def __init__(self, store: RunStore, experiment_id: str,
                 process: subprocess.Popen | None = None) -> None:
        self.store = store
        self.experiment_id = experiment_id
        self.exp_dir = store.experiments / experiment_id
        self._process = process

    def progress(self) -> dict[str, Any]:
        if self._process is not None:
            self._process.poll()  # reap the supervisor when it is done
        state = read_progress(self.exp_dir)
        if state["status"] == "running" and self._supervisor_gone():
            state.update(status="failed", error="The supervisor process ended without a "
                         "status; see supervisor.log in the experiment directory.")
        return state

    def _supervisor_gone(self) -> bool:
        if self._process is not None:
            return self._process.poll() is not None and not (self.exp_dir / "status.json").exists()
        pid_path = self.exp_dir / "supervisor.pid"
        if not pid_path.exists():
            return False
        try:
            os.kill(int(pid_path.read_text()), 0)
        except ProcessLookupError:
            return not (self.exp_dir / "status.json").exists()
        except PermissionError:
            return False  # alive, owned by someone else
        return False

    @property
    def done(self) -> bool:
        return self.progress()["status"] != "running"

    def cancel(self) -> None:
        (self.exp_dir / "cancel").touch()

    def wait(self, poll_s: float = 0.2,
             on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        while True:
            state = self.progress()
            if on_progress is not None:
                on_progress(state)
            if state["status"] != "running":
                return state
            time.sleep(poll_s)


def launch(spec: ExperimentSpec, store: RunStore, kind: str = "workload") -> ExperimentHandle:
    from profilers.registry import lookup

    lookup(WORKERS, kind, "experiment kind")
    if kind == "workload":
        spec.validate()
    spec.experiment_id = spec.experiment_id or new_id("exp", spec.workload)
    exp_dir = store.experiments / spec.experiment_id
    exp_dir.mkdir(parents=True)
    atomic_write_text(exp_dir / "spec.json", spec.to_json())
    env = dict(os.environ, SGDSCOPE_HOME=str(store.home), TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])))
    with open(exp_dir / "supervisor.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "profilers.session", str(exp_dir), kind],
            cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True)
    atomic_write_text(exp_dir / "supervisor.pid", str(proc.pid))
    return ExperimentHandle(store, spec.experiment_id, proc)


def attach(store: RunStore, experiment_id: str) -> ExperimentHandle:
    exp_dir = store.experiments / experiment_id
    if not (exp_dir / "spec.json").exists():
        raise CaptureFailed(f"No experiment {experiment_id}.", "Launch one with `sgdscope run`.")
    return ExperimentHandle(store, experiment_id)


# -- supervisor ------------------------------------------------------------------------
def _tail(path: Path, chars: int = STDERR_TAIL_CHARS) -> str:
    if not path.exists():
        return ""
    data = path.read_bytes()[-chars:]
    return data.decode("utf-8", errors="replace")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=3)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _describe_exit(code: int) -> str:
    if code < 0:
        name = signal.Signals(-code).name
        hint = " (the kernel's OOM killer sends SIGKILL: the run may have run out of memory)" \
            if -code == signal.SIGKILL else ""
        return f"the worker was killed by {name}{hint}"
    return f"the worker exited with code {code}"


def failed_run(spec: ExperimentSpec, variant: str, status: str, error: str,
               stderr_tail: str, order: int, run_id: str | None = None,
               source: str = "workload") -> RunProfile:
    """A run that never finished: manifest only, with its reason."""
    from profilers import __version__

    return RunProfile(manifest={
        "schema_version": SCHEMA_VERSION, "sgdscope_version": __version__,
        "run_id": run_id or new_id(spec.workload, variant), "experiment_id": spec.experiment_id,
        "workload": spec.workload, "variant": variant, "params": spec.params,
        "status": status, "error": error, "stderr_tail": stderr_tail, "created_at": now_iso(),
        "timings": {}, "environment": {}, "results": {}, "order": order,
        "capture": {"profiled": False, "xplane": None}, "samplers": {}, "source": source,
    })


def supervise(exp_dir: Path, kind: str = "workload") -> int:
    exp_dir = Path(exp_dir)
    spec = ExperimentSpec.load(exp_dir / "spec.json")
    store = RunStore(os.environ.get("SGDSCOPE_HOME"))
    with open(exp_dir / "worker.stdout", "wb") as out, open(exp_dir / "worker.stderr", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", WORKERS[kind], str(exp_dir)],
                                cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)
    deadline = time.monotonic() + spec.timeout_s
    status, error = "ok", None
    while proc.poll() is None:
        if (exp_dir / "cancel").exists():
            _kill_group(proc)
            status, error = "cancelled", "cancelled by the user"
            break
        if time.monotonic() > deadline:
            _kill_group(proc)
            status, error = "timeout", (f"the experiment passed its timeout of {spec.timeout_s:g} s; "
                                        "raise --timeout or shrink the params")
            break
        time.sleep(0.1)
    code = proc.wait()
    if status == "ok" and code != 0:
        status, error = "failed", _describe_exit(code)

    state = read_progress(exp_dir)
    if status != "ok":
        tail = _tail(exp_dir / "worker.stderr")
        for order, (name, v) in enumerate(state["variants"].items()):
            if v["status"] not in ("pending", "running"):
                continue
            reason = error if v["status"] == "running" else f"not started: {error}"
            profile = failed_run(spec, name, status if status != "ok" else "failed", reason, tail,
                                 order, run_id=v["run_id"], source=kind)
            store.save(profile)
            emit(exp_dir, "variant_end", variant=name, run_id=profile.run_id, status=profile.manifest["status"])
    elif any(v["status"] in ("pending", "running") for v in state["variants"].values()):
        status, error = "failed", "the worker exited without finishing every variant"
    run_statuses = [v["status"] for v in read_progress(exp_dir)["variants"].values()]
    if status == "ok" and any(s != "ok" for s in run_statuses):
        status = "failed"
        error = "some variants failed: see their runs"
    atomic_write_text(exp_dir / "status.json", dumps({"status": status, "error": error,
                                                      "finished_at": now_iso()}))
    return 0


if __name__ == "__main__":
    sys.exit(supervise(Path(sys.argv[1]), *sys.argv[2:3]))

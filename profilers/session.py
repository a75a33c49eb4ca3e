"""Launching experiments: a supervisor process per experiment, and a handle to watch it.

``launch(spec, store)`` validates the spec, writes it to ``_experiments/<id>/spec.json``
and starts ``python -m profilers.session <exp_dir>`` (the supervisor) in its own
session, then returns at once: the caller (CLI or dashboard) never blocks on a run.

The supervisor starts the worker (``python -m profilers.worker``), enforces the timeout,
honours a cancel request (a ``cancel`` file), and when the worker dies abnormally
(crash, OOM kill, timeout, cancel) stores every variant that has no run yet as a run
with status ``failed``/``timeout``/``cancelled``, its reason, the stderr tail and the
worker's output in ``logs/``. That ending (``finish_experiment``) runs in a ``finally``,
so ``status.json`` is written whatever went wrong. The worker dies with its supervisor
(``PR_SET_PDEATHSIG``), and what is left of its process group is killed when it ends;
if the supervisor itself is killed, the first handle that notices ends the experiment
the same way. The worker's output files are capped (the newest ``OUTPUT_KEEP_BYTES``
kept), and finished experiment folders older than ``EXPERIMENT_RETENTION_S`` are pruned
at the next launch.

Files in the experiment directory::

    spec.json        the ExperimentSpec
    progress.jsonl   events appended by worker and supervisor (see ``read_progress``)
    status.json      written last by the supervisor: the experiment is over
    cancel           present when a cancel was requested
    worker.stdout, worker.stderr, supervisor.log, supervisor.pid, worker.pid

Must not import tensorflow, pynvml or streamlit.
"""
from __future__ import annotations

import ctypes
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from profilers.errors import CaptureFailed, SgdscopeError
from profilers.model import RunProfile, atomic_write_text, dumps
from profilers.spec import ExperimentSpec
from profilers.store import RunStore, leave_if_forked, new_id

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STDERR_TAIL_CHARS = 4000
#: A worker output file (worker.stdout/.stderr) longer than this is cut to its newest
#: OUTPUT_KEEP_BYTES; a run's own logs/ keep at most that much too.
OUTPUT_CAP_BYTES = 8 * 2**20
OUTPUT_KEEP_BYTES = 4 * 2**20
#: Finished experiment folders (spec, progress, worker output) are removed after this.
EXPERIMENT_RETENTION_S = 14 * 24 * 3600
EXPERIMENT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
PR_SET_PDEATHSIG = 1
log = logging.getLogger(__name__)

#: Experiment kind -> the worker module the supervisor starts. A "script" experiment
#: profiles a user's own script (profilers.script_worker); its spec is checked by its
#: launcher (profilers.cli_triage), not against the workload registry.
WORKERS: dict[str, str] = {"workload": "profilers.worker", "script": "profilers.script_worker",
                           "attach": "profilers.attach_worker"}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- progress events -------------------------------------------------------------------
def emit(exp_dir: Path, event: str, **fields: Any) -> None:
    """Append one event line; a single short write, so readers never see half a line
    except at the very end of the file (which ``read_progress`` tolerates). A process
    forked by a profiled script ends here instead (``store.leave_if_forked``)."""
    leave_if_forked()
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
        try:
            final = json.loads(status_path.read_text(encoding="utf-8"))
            state.update(status=str(final["status"]), error=final.get("error"), phase="done")
        except (ValueError, KeyError, TypeError) as exc:
            state.update(status="failed", phase="done",
                         error=f"{status_path} cannot be read ({type(exc).__name__}: {exc})")
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
            # The supervisor was killed (kill -9, OOM): its worker died with it
            # (PR_SET_PDEATHSIG). End the experiment here, once, as the supervisor would.
            error = (f"the supervisor process ended without a status (killed?); see "
                     f"{self.exp_dir / 'supervisor.log'}")
            finish_orphan(self.store, self.exp_dir, error)
            state = read_progress(self.exp_dir)
            if state["status"] == "running":  # another process is ending it right now
                state.update(status="failed", error=error)
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
        """Ask the supervisor to stop the worker (the dashboard's Cancel and
        ``sgdscope cancel`` both come here); ends an orphaned experiment at once."""
        (self.exp_dir / "cancel").touch()
        self.progress()

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
    spec.validate_options()
    store.check_index()
    prune_experiments(store)
    spec.experiment_id = spec.experiment_id or new_id("exp", spec.workload)
    exp_dir = store.experiments / spec.experiment_id
    exp_dir.mkdir(parents=True)
    atomic_write_text(exp_dir / "spec.json", spec.to_json())
    atomic_write_text(exp_dir / "kind", kind)
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
    if not EXPERIMENT_ID_RE.match(experiment_id or "") or not (exp_dir / "spec.json").exists():
        raise CaptureFailed(f"No experiment {experiment_id} in {store.experiments}.",
                            "Launch one with `sgdscope run`; `sgdscope run` prints the id of the "
                            "experiment it starts.")
    return ExperimentHandle(store, experiment_id)


def cancel_experiment(store: RunStore, experiment_id: str, wait_s: float = 30.0) -> dict[str, Any]:
    """Cancel a running experiment and wait (up to ``wait_s``) until it is over; the
    final state. An experiment that is already over is left as it is."""
    handle = attach(store, experiment_id)
    state = handle.progress()
    if state["status"] != "running":
        return state
    handle.cancel()
    deadline = time.monotonic() + wait_s
    while (state := handle.progress())["status"] == "running":
        if time.monotonic() > deadline:
            raise CaptureFailed(f"Experiment {experiment_id} did not stop within {wait_s:g} s of the "
                                "cancel request.", f"See {handle.exp_dir / 'supervisor.log'}; the "
                                "supervisor's pid is in supervisor.pid.")
        time.sleep(0.1)
    return state


def prune_experiments(store: RunStore, retention_s: float = EXPERIMENT_RETENTION_S) -> list[str]:
    """Remove finished experiment folders whose ``status.json`` is older than
    ``retention_s`` (their runs are stored on their own); the ids removed."""
    if not store.experiments.is_dir():
        return []
    cutoff = time.time() - retention_s
    gone = []
    for exp_dir in store.experiments.iterdir():
        try:
            old = (exp_dir / "status.json").stat().st_mtime < cutoff
        except (FileNotFoundError, NotADirectoryError):
            continue  # running, or not an experiment
        if old:
            shutil.rmtree(exp_dir, onerror=lambda f, p, e: log.warning("cannot remove %s: %s", p, e[1]))
            gone.append(exp_dir.name)
    return gone


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


#: Set in every worker's environment to its experiment id: what its processes inherit, so
#: the ones that left its process group (``setsid``, a daemonising child) are still found.
EXPERIMENT_ENV = "SGDSCOPE_EXPERIMENT"


def _kill_leftovers(pgid: int, experiment_id: str | None = None) -> None:
    """SIGKILL whatever is left of a worker: its process group (a script's children) and,
    given the experiment id, every other process of this user whose environment carries
    ``EXPERIMENT_ENV=<id>`` (a child that called ``setsid`` or double-forked; the way
    Jenkins' process tree killer finds a build's strays). A process that cleared its own
    environment escapes both."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # nothing left in the group
    except PermissionError as exc:
        log.warning("cannot kill process group %s: %s", pgid, exc)
    if experiment_id:
        _kill_experiment_processes(experiment_id)


def _kill_experiment_processes(experiment_id: str) -> None:
    for pid in processes_of_experiment(experiment_id):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue  # gone meanwhile, or not ours


def processes_of_experiment(experiment_id: str) -> list[int]:
    """Pids (other than this process) whose environment says they belong to the
    experiment; empty where there is no ``/proc``."""
    cookie = f"\0{EXPERIMENT_ENV}={experiment_id}\0".encode()
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:  # gone, a kernel thread, or another user's
            continue
        if cookie in b"\0" + environ + b"\0":
            found.append(int(entry))
    return found


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when this process dies
    (Linux ``prctl(PR_SET_PDEATHSIG)``), or None where prctl does not exist."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


#: How long ``cap_output`` waits for a paused worker group to be stopped.
PAUSE_WAIT_S = 0.5


def _group_stopped(pgid: int) -> bool:
    """Every process of group ``pgid`` (the leader and its descendants still in the group)
    is stopped, or gone."""
    import psutil

    try:
        leader = psutil.Process(pgid)
        procs = [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        return True
    for p in procs:
        try:
            if os.getpgid(p.pid) == pgid and p.status() not in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE,
                                                                  psutil.STATUS_DEAD):
                return False
        except (psutil.NoSuchProcess, ProcessLookupError):
            continue
    return True


def live_group(proc: subprocess.Popen) -> int | None:
    """The process group of a worker started with ``start_new_session`` while it has not
    been reaped (its pid, and so the group id, cannot have been reused), else None."""
    return proc.pid if proc.poll() is None else None


def cap_output(path: Path, cap_bytes: int = OUTPUT_CAP_BYTES, keep_bytes: int = OUTPUT_KEEP_BYTES,
               pause: int | None = None) -> None:
    """Cut a worker output file longer than ``cap_bytes`` to its newest ``keep_bytes``,
    behind a line that says so. The worker writes with O_APPEND, so it keeps appending
    at the new end. ``pause``: the worker's process group, stopped (SIGSTOP, confirmed
    stopped) from the read to the rewrite and continued after: an append between this
    read and the truncate was lost, and one between the truncate and the rewrite landed
    before the kept tail (a chatty worker's last line went missing under load). Only when
    the file is over the cap: a worker that prints little is never paused."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size <= cap_bytes:
        return
    paused = False
    if pause is not None:
        try:
            os.killpg(pause, signal.SIGSTOP)
            paused = True
        except (ProcessLookupError, PermissionError):
            pass  # the group is gone: nobody appends any more
    try:
        deadline = time.monotonic() + PAUSE_WAIT_S
        while paused and not _group_stopped(pause) and time.monotonic() < deadline:
            time.sleep(0.001)
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(size - keep_bytes, 0))
            tail = fh.read()
            size = fh.tell()
        os.truncate(path, 0)
        tail = tail[-keep_bytes:]
        with open(path, "ab") as fh:
            fh.write(f"[sgdscope: the first {size - len(tail)} bytes of this output were dropped; "
                     f"the newest {len(tail)} are kept]\n".encode() + tail)
    finally:
        if paused:
            try:
                os.killpg(pause, signal.SIGCONT)
            except ProcessLookupError:
                pass


def _copy_logs(exp_dir: Path, staged: Path) -> None:
    """The worker's output (its newest OUTPUT_KEEP_BYTES) into a run's ``logs/``."""
    logs = staged / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for src, name in (("worker.stdout", "stdout.txt"), ("worker.stderr", "stderr.txt")):
        path = exp_dir / src
        data = b""
        if path.is_file():
            with open(path, "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(0, size - OUTPUT_KEEP_BYTES))
                data = fh.read()
        (logs / name).write_bytes(data)


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
    from profilers.model import new_manifest

    return RunProfile(manifest=new_manifest(
        run_id=run_id or new_id(spec.workload, variant), experiment_id=spec.experiment_id,
        workload=spec.workload, variant=variant, params=spec.params, status=status, error=error,
        stderr_tail=stderr_tail, created_at=now_iso(), order=order, source=source))


def watch_worker(proc: subprocess.Popen, exp_dir: Path, timeout_s: float, *, done: Path | None = None,
                 outputs: tuple[Path, ...] = (), timeout_hint: str = "raise the timeout or shrink the params"
                 ) -> tuple[str, str | None]:
    """Wait for a worker to end (or to write ``done``), enforcing the experiment's cancel
    file and timeout by killing its process group; its output files are capped meanwhile.
    Returns ``("ok", None)``, ``("cancelled", why)`` or ``("timeout", why)``. One loop for
    the supervisor and the dashboard's warm slot."""
    deadline = time.monotonic() + timeout_s
    try:
        while proc.poll() is None and not (done is not None and done.exists()):
            if (exp_dir / "cancel").exists():
                _kill_group(proc)
                return "cancelled", "cancelled by the user"
            if time.monotonic() > deadline:
                _kill_group(proc)
                return "timeout", f"the experiment passed its timeout of {timeout_s:g} s; {timeout_hint}"
            for path in outputs:
                cap_output(path, pause=live_group(proc))
            time.sleep(0.1)
        return "ok", None
    finally:
        for path in outputs:  # what was written since the last look
            cap_output(path, pause=live_group(proc))


def finish_experiment(exp_dir: Path, spec: ExperimentSpec, store: RunStore, status: str,
                      error: str | None, kind: str = "workload") -> str:
    """End an experiment: a stored run (reason, stderr tail, the worker's output in
    ``logs/``) for every variant that has none, then ``status.json``, which is written in
    a ``finally`` whatever fails before it. Returns the final status."""
    problems: list[str] = []
    try:
        state = read_progress(exp_dir)
        if status != "ok":
            tail = _tail(exp_dir / "worker.stderr")
            for order, (name, v) in enumerate(state["variants"].items()):
                if v["status"] not in ("pending", "running"):
                    continue
                try:
                    _store_unfinished(exp_dir, spec, store, name, v, status, error or "", tail, order, kind)
                except (SgdscopeError, OSError) as exc:
                    problems.append(f"the {name} run could not be stored: {exc}")
        elif any(v["status"] in ("pending", "running") for v in state["variants"].values()):
            status, error = "failed", "the worker exited without finishing every variant"
        run_statuses = [v["status"] for v in read_progress(exp_dir)["variants"].values()]
        if status == "ok" and any(s != "ok" for s in run_statuses):
            status, error = "failed", "some variants failed: see their runs"
    except BaseException as exc:
        status = "failed" if status == "ok" else status
        problems.append(f"ending the experiment failed: {type(exc).__name__}: {exc}")
        raise
    finally:
        if problems:
            error = "; ".join(filter(None, [error, *problems]))
            status = "failed" if status == "ok" else status
        atomic_write_text(exp_dir / "status.json", dumps({"status": status, "error": error,
                                                          "finished_at": now_iso()}))
    return status


def _store_unfinished(exp_dir: Path, spec: ExperimentSpec, store: RunStore, name: str,
                      v: dict[str, Any], status: str, error: str, tail: str, order: int, kind: str) -> None:
    if v["run_id"] and (store.home / v["run_id"] / "manifest.json").is_file():
        # The worker committed this run but died before saying so.
        stored = store.load(v["run_id"]).manifest.get("status")
        emit(exp_dir, "variant_end", variant=name, run_id=v["run_id"], status=stored)
        return
    reason = error if v["status"] == "running" else f"not started: {error}"
    profile = failed_run(spec, name, status, reason, tail, order, run_id=v["run_id"], source=kind)
    staged = store.staging_dir(profile.run_id)
    _copy_logs(exp_dir, staged)
    store.commit(profile, staged)
    emit(exp_dir, "variant_end", variant=name, run_id=profile.run_id, status=profile.manifest["status"])


def finish_orphan(store: RunStore, exp_dir: Path, error: str) -> None:
    """End an experiment whose supervisor died without a status: kill what is left of
    its worker, then ``finish_experiment`` as ``failed``. Done once (an exclusive
    ``finishing`` file), whichever process notices first."""
    try:
        fd = os.open(exp_dir / "finishing", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    try:
        pid = int((exp_dir / "worker.pid").read_text())
        if str(exp_dir) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
            _kill_leftovers(pid)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        log.debug("no worker left for %s", exp_dir)
    _kill_experiment_processes(exp_dir.name)  # what left the worker's group
    spec = ExperimentSpec.load(exp_dir / "spec.json")
    kind_path = exp_dir / "kind"
    kind = kind_path.read_text(encoding="utf-8").strip() if kind_path.is_file() else "workload"
    status = "cancelled" if (exp_dir / "cancel").exists() else "failed"
    finish_experiment(exp_dir, spec, store, status, error, kind)


def _raise_exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def supervise(exp_dir: Path, kind: str = "workload") -> int:
    exp_dir = Path(exp_dir)
    signal.signal(signal.SIGTERM, _raise_exit)  # a plain kill still ends the experiment
    signal.signal(signal.SIGHUP, _raise_exit)
    spec = ExperimentSpec.load(exp_dir / "spec.json")
    store = RunStore(os.environ.get("SGDSCOPE_HOME"))
    status, error = "failed", "the supervisor stopped before the worker ended"
    proc: subprocess.Popen | None = None
    outputs = (exp_dir / "worker.stdout", exp_dir / "worker.stderr")
    try:
        with open(outputs[0], "ab") as out, open(outputs[1], "ab") as err:  # O_APPEND: see cap_output
            proc = subprocess.Popen([sys.executable, "-m", WORKERS[kind], str(exp_dir)],
                                    cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    env=dict(os.environ, **{EXPERIMENT_ENV: exp_dir.name}),
                                    start_new_session=True, preexec_fn=_die_with_parent())
        atomic_write_text(exp_dir / "worker.pid", str(proc.pid))
        logs = "the script's output is in the run's logs/" if kind == "script" else \
            f"the worker's output is in {exp_dir}"
        status, error = watch_worker(proc, exp_dir, spec.timeout_s, outputs=outputs,
                                     timeout_hint=f"raise --timeout or shrink the params ({logs})")
        code = proc.wait()
        if status == "ok" and code != 0:
            status, error = "failed", _describe_exit(code)
    except BaseException as exc:
        if status == "ok" or proc is None:
            status = "failed"
        error = f"{error + '; ' if error else ''}the supervisor stopped: {type(exc).__name__}: {exc}"
        raise
    finally:
        if proc is not None:
            if proc.poll() is None:
                _kill_group(proc)
            _kill_leftovers(proc.pid, exp_dir.name)  # the script's children that outlived it
        for path in outputs:
            cap_output(path, pause=live_group(proc))
        finish_experiment(exp_dir, spec, store, status, error, kind)
    return 0


if __name__ == "__main__":
    sys.exit(supervise(Path(sys.argv[1]), *sys.argv[2:3]))

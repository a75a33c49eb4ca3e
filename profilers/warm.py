"""Warm workers: a supervisor and its worker started ahead of time, TensorFlow already
imported, waiting for a job.

A *slot* is ``$SGDSCOPE_HOME/_warm/<slot_id>/``. ``start_slot`` spawns
``python -m profilers.warm supervise SLOT_DIR PARENT_PID`` in its own session; that
supervisor spawns the worker ``python -m profilers.warm work SLOT_DIR`` (its own process
group), which imports NumPy, the workload registry and TensorFlow, writes ``ready``, and
waits for ``job.json``. ``WarmSlot.claim(exp_dirs)`` writes the job: a list of experiment
directories (one for a launch, one per size for a sweep), each with its ``spec.json``.

From the claim on, the supervisor does what ``profilers.session.supervise`` does, per
experiment: the experiment's timeout, its ``cancel`` file, and on a crash, kill or
timeout a stored run with the reason and stderr tail for every variant that has none,
then ``status.json``. The worker runs ``profilers.worker.main`` for each experiment in
turn. So isolation is unchanged: a crash costs only the experiment that was running
(and, in a sweep, the sizes not yet started, stored as not started with the reason).

An idle slot ends when its parent (the process that started it) is gone, so a stopped
dashboard leaves no warm worker behind; a claimed slot runs its job to the end, like a
cold supervisor. Must not import tensorflow, pynvml or streamlit (the worker
subcommand imports TensorFlow, inside a function).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Sequence

from profilers.model import atomic_write_text, dumps
from profilers.session import (PROJECT_ROOT, _describe_exit, _die_with_parent, _kill_group, _raise_exit, emit,
                               cap_output, finish_experiment, live_group, now_iso, watch_worker)
from profilers.spec import ExperimentSpec
from profilers.store import RunStore, new_id

WARM_DIR = "_warm"
IDLE_POLL_S = 0.05
#: Seconds after an experiment ends before the next warm worker starts importing TensorFlow.
SETTLE_S = 3.0
#: Seconds the worker gets to leave on its own after its job, before its group is killed.
EXIT_GRACE_S = 5.0


def worker_env(store: RunStore) -> dict[str, str]:
    """The environment every worker runs in (the same as ``session.launch``'s)."""
    return dict(os.environ, SGDSCOPE_HOME=str(store.home), TF_CPP_MIN_LOG_LEVEL="3",
                PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])))


class WarmSlot:
    """A started slot, seen from the process that started it (it owns the Popen)."""

    def __init__(self, slot_dir: Path, process: subprocess.Popen) -> None:
        self.slot_dir, self.process = Path(slot_dir), process
        self.claimed = False
        self.exp_dirs: list[Path] = []

    @property
    def ready(self) -> bool:
        return (self.slot_dir / "ready").exists()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def info(self) -> dict[str, Any]:
        """What the worker wrote when it became ready (pid, TF import seconds)."""
        path = self.slot_dir / "ready"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def claim(self, exp_dirs: Sequence[Path], log: Path | None = None) -> None:
        """Hand the slot its job: run these experiments, in order, in this one worker."""
        for exp_dir in exp_dirs:
            atomic_write_text(Path(exp_dir) / "supervisor.pid", str(self.process.pid))
        job = {"exp_dirs": [str(p) for p in exp_dirs], "log": str(log) if log else None}
        atomic_write_text(self.slot_dir / "job.json", dumps(job))
        self.claimed, self.exp_dirs = True, [Path(p) for p in exp_dirs]

    @property
    def running(self) -> bool:
        """Claimed, and one of its experiments has not ended yet."""
        return self.claimed and self.alive and any(not (p / "status.json").exists() for p in self.exp_dirs)


def start_slot(store: RunStore, import_tf: bool = True) -> WarmSlot:
    """Start a slot; ``import_tf=False`` for a job known to need no TensorFlow."""
    slot_dir = store.home / WARM_DIR / new_id("warm", "slot")
    slot_dir.mkdir(parents=True)
    if not import_tf:
        (slot_dir / "no_tf").touch()
    with open(slot_dir / "supervisor.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "profilers.warm", "supervise", str(slot_dir), str(os.getpid())],
            cwd=PROJECT_ROOT, env=worker_env(store), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True)
    return WarmSlot(slot_dir, proc)


class WarmPool:
    """At most one idle warm slot, kept by a long-lived process (the dashboard server).

    ``ensure()`` starts a slot when there is no idle one, no claimed one is still running,
    and the last experiment ended at least ``SETTLE_S`` ago (else a timer calls it then):
    the next worker's TensorFlow import (seconds of CPU) competes neither with an
    experiment being measured nor with drawing its result. ``take()`` returns the idle
    slot (ready or still importing) or None."""

    def __init__(self, store: RunStore, import_tf: bool = True) -> None:
        self.store, self.import_tf = store, import_tf
        self.slots: list[WarmSlot] = []
        self.claimed: list[WarmSlot] = []  # the last few claimed slots, alive or not
        self._lock = threading.RLock()  # the Streamlit script and the timer both call ensure()
        self._timer: threading.Timer | None = None

    def _prune(self) -> None:
        self.slots = [s for s in self.slots if s.alive]

    def idle(self) -> WarmSlot | None:
        self._prune()
        return next((s for s in self.slots if not s.claimed), None)

    def busy(self) -> bool:
        self._prune()
        return any(s.running for s in self.slots)

    def _last_end(self) -> float:
        ends = [(p / "status.json").stat().st_mtime for s in self.claimed for p in s.exp_dirs
                if (p / "status.json").exists()]
        return max(ends, default=0.0)

    def ensure(self) -> WarmSlot | None:
        with self._lock:
            slot = self.idle()
            if slot is not None or self.busy():
                return slot
            wait_s = self._last_end() + SETTLE_S - time.time()
            if wait_s > 0:
                if self._timer is None or not self._timer.is_alive():
                    self._timer = threading.Timer(wait_s, self.ensure)
                    self._timer.daemon = True
                    self._timer.start()
                return None
            slot = start_slot(self.store, import_tf=self.import_tf)
            self.slots.append(slot)
            return slot

    def take(self) -> WarmSlot | None:
        """The idle slot, now counted as claimed (the caller claims it), or None."""
        with self._lock:
            slot = self.idle()
            if slot is not None:
                self.claimed = [*self.claimed[-4:], slot]
            return slot

    def status(self) -> str:
        slot = self.idle()
        if slot is None:
            return ("a warm worker starts once the running experiment has ended" if self.busy() or self.claimed
                    else "no warm worker")
        if slot.ready:
            info = slot.info()
            tf_s = info.get("tf_import_s")
            return ("warm worker ready (TensorFlow imported"
                    + (f" in {tf_s:.1f} s)" if isinstance(tf_s, (int, float)) else ")"))
        return "warm worker starting (importing TensorFlow)"


# -- supervisor -------------------------------------------------------------------------
def _log(path: str | None, text: str) -> None:
    line = f"{now_iso()} {text}\n"
    sys.stderr.write(line)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line)


def settle(exp_dir: Path, spec: ExperimentSpec, store: RunStore, status: str, error: str | None) -> str:
    """End one experiment exactly as ``session.supervise`` does (``finish_experiment``)."""
    return finish_experiment(exp_dir, spec, store, status, error)


def _outputs(slot_dir: Path) -> tuple[Path, Path]:
    """The warm worker's stdout and stderr files (capped as the supervisor caps its own)."""
    return slot_dir / "worker.stdout", slot_dir / "worker.stderr"


def _link_logs(slot_dir: Path, exp_dir: Path) -> None:
    """The worker's stdout/stderr, seen from the experiment (a hard link: same file)."""
    for source in _outputs(slot_dir):
        target = exp_dir / source.name
        if not target.exists():
            try:
                os.link(source, target)
            except OSError:  # another filesystem: a symlink reads the same
                target.symlink_to(source)


def _parent_gone(parent_pid: int) -> bool:
    return os.getppid() != parent_pid


def supervise_slot(slot_dir: Path, parent_pid: int) -> int:
    slot_dir = Path(slot_dir)
    signal.signal(signal.SIGTERM, _raise_exit)  # a plain kill still runs the cleanup below
    signal.signal(signal.SIGHUP, _raise_exit)
    store = RunStore(os.environ.get("SGDSCOPE_HOME"))
    stdout, stderr = _outputs(slot_dir)
    with open(stdout, "ab") as out, open(stderr, "ab") as err:
        proc = subprocess.Popen([sys.executable, "-m", "profilers.warm", "work", str(slot_dir)],
                                cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True, preexec_fn=_die_with_parent())
    try:
        while not (slot_dir / "job.json").exists():
            for path in _outputs(slot_dir):  # an idle worker's output is capped too
                cap_output(path, pause=live_group(proc))
            if proc.poll() is not None:
                _log(None, f"warm worker {proc.pid} ended while idle: {_describe_exit(proc.returncode)}")
                return 1
            if _parent_gone(parent_pid):
                _log(None, "the process that started this warm slot is gone: leaving")
                return 0
            time.sleep(IDLE_POLL_S)
        job = json.loads((slot_dir / "job.json").read_text(encoding="utf-8"))
        run_job(slot_dir, proc, [Path(p) for p in job["exp_dirs"]], store, job.get("log"))
    finally:
        (slot_dir / "exit").touch()
        try:
            proc.wait(timeout=EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
        shutil.rmtree(slot_dir, ignore_errors=True)
    return 0


def run_job(slot_dir: Path, proc: subprocess.Popen, exp_dirs: list[Path], store: RunStore,
            log: str | None) -> None:
    ended: str | None = None  # why the worker is gone, once it is
    for i, exp_dir in enumerate(exp_dirs):
        spec = ExperimentSpec.load(exp_dir / "spec.json")
        _link_logs(slot_dir, exp_dir)
        atomic_write_text(exp_dir / "worker.pid", str(proc.pid))
        if ended is not None:
            settle(exp_dir, spec, store, "cancelled" if "cancel" in ended else "failed", ended)
            continue
        done = exp_dir / "worker_done"
        status, error = watch_worker(proc, exp_dir, spec.timeout_s, done=done, outputs=_outputs(slot_dir))
        if status == "ok":
            if done.exists():
                result = json.loads(done.read_text(encoding="utf-8"))
                if result.get("code"):
                    status, error = "failed", result.get("error") or "the worker reported a failure"
            else:
                status, error = "failed", _describe_exit(proc.wait())
        final = settle(exp_dir, spec, store, status, error)
        _log(log, f"experiment {i + 1}/{len(exp_dirs)} {spec.experiment_id}: {final}")
        if proc.poll() is not None or status in ("cancelled", "timeout"):
            ended = f"an earlier experiment of this job ended {status} ({error}), which stopped its worker" \
                if status != "cancelled" else "cancelled by the user"


# -- worker -----------------------------------------------------------------------------
def work(slot_dir: Path) -> int:
    """Import everything a run needs, say so in ``ready``, wait for the job, run it."""
    import importlib.util

    slot_dir = Path(slot_dir)
    supervisor = os.getppid()
    t0 = time.perf_counter()
    import numpy  # noqa: F401

    from profilers import worker
    from workloads import WORKLOADS  # noqa: F401  (the registry, plugins included)

    info: dict[str, Any] = {"pid": os.getpid(), "tf": None, "tf_import_s": None}
    if importlib.util.find_spec("tensorflow") is not None and not (slot_dir / "no_tf").exists():
        t = time.perf_counter()
        import tensorflow as tf

        info.update(tf=tf.__version__, tf_import_s=time.perf_counter() - t)
    # The machine's GEMM peak is measured once per store and cached: measure it now, while
    # idle, rather than in the first experiment's wait.
    from profilers import environment

    environment.gemm_peak(Path(os.environ.get("SGDSCOPE_HOME") or ".") / "_machine")
    info["ready_s"] = time.perf_counter() - t0
    info["ready_at"] = time.time()
    atomic_write_text(slot_dir / "ready", dumps(info))
    print(f"warm worker {info['pid']}: imported TensorFlow {info['tf']} in "
          f"{info['tf_import_s'] or 0:.2f} s (once for every experiment of its job)", file=sys.stderr, flush=True)
    job_path = slot_dir / "job.json"
    while not job_path.exists():
        if (slot_dir / "exit").exists() or os.getppid() != supervisor:
            return 0
        time.sleep(IDLE_POLL_S)
    job = json.loads(job_path.read_text(encoding="utf-8"))
    exp_dirs = [Path(p) for p in job["exp_dirs"]]
    _log(job.get("log"), (f"worker pid {info['pid']}: imported TensorFlow {info['tf']} once, in "
                          f"{info['tf_import_s'] or 0:.1f} s" if info["tf"] else
                          f"worker pid {info['pid']}: TensorFlow not imported (no variant needs it)")
         + f"; it runs all {len(exp_dirs)} experiment(s) of this job")
    for i, exp_dir in enumerate(exp_dirs):
        text = (f"{exp_dir.name} in worker pid {info['pid']}: TensorFlow already imported, not again"
                if info["tf"] else f"{exp_dir.name} in worker pid {info['pid']}: without TensorFlow")
        emit(exp_dir, "phase", text="TensorFlow already imported (warm worker)")
        emit(exp_dir, "warm", pid=info["pid"], tf_import_s=info["tf_import_s"], index=i, of=len(exp_dirs))
        _log(job.get("log"), f"size {i + 1}/{len(exp_dirs)}: {text}")
        code, error = 0, None
        try:
            code = worker.main(exp_dir)
        except Exception as exc:  # this experiment failed before its variants ran; the next still runs
            traceback.print_exc()
            code, error = 1, f"{type(exc).__name__}: {exc}"
        atomic_write_text(exp_dir / "worker_done", dumps({"code": code, "error": error}))
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["supervise"]:
        return supervise_slot(Path(argv[1]), int(argv[2]))
    if argv[:1] == ["work"]:
        return work(Path(argv[1]))
    print("usage: python -m profilers.warm supervise SLOT_DIR PARENT_PID | work SLOT_DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

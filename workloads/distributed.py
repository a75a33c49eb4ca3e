"""Distributed variants of ``mlp``: ``mirrored`` and ``multi_worker`` (``tf.distribute``).

Both train the mlp's maths (same data, initial weights, batches and Keras optimizer) with
each global batch of ``batch_size`` split evenly over ``workers`` replicas; each replica's
loss is its part of the global-batch mean, and the optimizer all-reduces (sums) the
gradients, so the final loss is checked against the NumPy baseline like any variant.

- ``mirrored``: ``MirroredStrategy`` over ``workers`` logical CPU devices in one process.
  The CPU is split with ``tf.config.set_logical_device_configuration``, which must run
  before TensorFlow initialises its devices, and the experiment's worker has usually done
  that already (it imported TF, other variants ran): so this variant trains in a child
  process of its own, like ``multi_worker``.
- ``multi_worker``: ``MultiWorkerMirroredStrategy`` with ``workers`` child processes on
  loopback, cluster and profiler ports chosen free at run time, each with its
  ``TF_CONFIG``. ``straggler`` is the index of a worker that sleeps ``straggler_ms`` in
  every step (-1: none), so straggler detection has a known answer.

Each child (``workloads.distributed_worker``) runs a TF profiler server and times its own
steps. When the experiment is profiled, the children wait after warm-up until their
profiler session is live; this process traces every server in one call
(``profilers.remote_capture.trace``) into the run's ``trace/`` directory (worker k>0's
capture then moves to ``workers/<k>/trace/``). The run's ``steps`` and ``phases`` are
worker 0's, with the global-batch loss; the ``workers`` table has every worker's steps
and per-step collective time; ``results.per_worker`` summarises them
(``profilers.scaleout``).

Children are in this process's process group (the supervisor's kill reaches them), watch
this process and exit when it is gone, and are terminated here on any error.

The mlp declares ``PARAMS`` and ``VARIANTS`` among its own and calls ``run_mirrored`` /
``run_multi_worker`` with its whole-data loss function, so this module never imports the
mlp's (no import cycle). TensorFlow is imported only in the children.
Must not import tensorflow, keras, pynvml or streamlit.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import pandas as pd

from profilers.errors import BadInput, CaptureFailed, SgdscopeError
from workloads.base import Param, Variant, VariantResult
from workloads.tfcommon import tf_availability

if TYPE_CHECKING:
    from profilers.recorder import StepRecorder

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Seconds for every child to import TF, join the cluster and finish warm-up.
READY_TIMEOUT_S = 300.0
#: Seconds a child may take to exit once released.
EXIT_TIMEOUT_S = 30.0
STDERR_TAIL_CHARS = 3000

PARAMS: dict[str, Param] = {
    "workers": Param("workers", int, 2, "mirrored: replicas (logical CPU devices) in one process; "
                                        "multi_worker: worker processes on loopback. batch_size "
                                        "must divide evenly among them", minimum=1,
                     variants=("mirrored", "multi_worker")),
    "straggler": Param("straggler", int, -1, "multi_worker: index of the worker slowed by "
                                             "straggler_ms per step (-1: none)", minimum=-1,
                       variants=("multi_worker",)),
    "straggler_ms": Param("straggler_ms", float, 50.0, "multi_worker: the planted straggler's "
                                                       "sleep per step, ms", minimum=0,
                          variants=("multi_worker",)),
}

VARIANTS: dict[str, Variant] = {
    "mirrored": Variant("mirrored", "tf.distribute.MirroredStrategy over `workers` logical CPU "
                                    "devices, in a process of its own; custom loop in tf.function",
                        needs_tf=True, availability=tf_availability),
    "multi_worker": Variant("multi_worker", "tf.distribute.MultiWorkerMirroredStrategy with "
                                            "`workers` processes on loopback, each with a profiler "
                                            "server; optional planted straggler",
                            needs_tf=True, availability=tf_availability),
}


# -- the parent side -----------------------------------------------------------------------
class _Job:
    """The child processes of one distributed run and the files they share."""

    def __init__(self, job_dir: Path, mode: str, processes: int, replicas: int) -> None:
        self.dir, self.mode, self.n, self.replicas = job_dir, mode, processes, replicas
        self.procs: list[subprocess.Popen] = []
        self.cluster_ports: list[int] = []
        self.profiler_ports: list[int] = []

    def write(self, params: Mapping[str, Any], data: Any, rec: "StepRecorder", straggler: int,
              gate: bool) -> None:
        from profilers.remote_capture import free_ports

        for name, arr in (("x", data.x), ("y", data.y), ("order", data.order), ("lr", data.lr_per_epoch),
                          *((f"init{k}", a) for k, a in enumerate(data.init))):
            np.save(self.dir / f"{name}.npy", np.ascontiguousarray(arr))
        ports = free_ports(2 * self.n)
        self.profiler_ports = ports[:self.n]
        self.cluster_ports = ports[self.n:] if self.mode == "multi_worker" else []
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        job = {
            "mode": self.mode, "processes": self.n, "replicas_per_process": self.replicas,
            "cluster_ports": self.cluster_ports, "profiler_ports": self.profiler_ports,
            "straggler": straggler, "straggler_ms": float(params["straggler_ms"]),
            "t0_ns": rec.t0_ns, "warmup_steps": rec.warmup_steps, "gate": gate,
            # Worker processes share the cores: one intra-op pool each, sized to its share.
            "intra_op_threads": max(1, cores // self.n) if self.n > 1 else 0,
            "parent_pid": os.getpid(),
            "params": {k: params[k] for k in ("optimizer", "lr", "momentum")},
        }
        (self.dir / "job.json").write_text(json.dumps(job), encoding="utf-8")

    def start(self) -> None:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])))
        env.pop("TF_CONFIG", None)
        for k in range(self.n):
            with open(self.dir / f"stdout-{k}.txt", "wb") as out, open(self.dir / f"stderr-{k}.txt", "wb") as err:
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "workloads.distributed_worker", str(self.dir), str(k)],
                    cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err))

    def _tail(self, k: int) -> str:
        path = self.dir / f"stderr-{k}.txt"
        return path.read_bytes()[-STDERR_TAIL_CHARS:].decode("utf-8", "replace") if path.exists() else ""

    def check_alive(self) -> None:
        """``CaptureFailed`` with the child's stderr tail if one exited early or failed."""
        for k, p in enumerate(self.procs):
            code = p.poll()
            if code is not None and (code != 0 or not (self.dir / f"done-{k}.json").exists()):
                raise CaptureFailed(f"{self.mode} worker {k} exited with code {code} before the end "
                                    f"of training. Its stderr ends with:\n{self._tail(k)}",
                                    "See the traceback above; the other workers were stopped.")

    def wait_for(self, pattern: str, timeout_s: float, what: str) -> list[Path]:
        deadline = time.monotonic() + timeout_s
        while True:
            found = [self.dir / pattern.format(k) for k in range(self.n)]
            if all(p.exists() for p in found):
                return found
            self.check_alive()
            if time.monotonic() > deadline:
                raise CaptureFailed(f"The {self.mode} workers did not {what} within {timeout_s:g} s.",
                                    "The machine may be overloaded: lower workers or samples.")
            time.sleep(0.05)

    def signal(self, name: str) -> None:
        (self.dir / name).touch()

    def wait_exit(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                break
        self.check_alive()

    def stop(self) -> None:
        """Terminate every child still running (TERM, then KILL), and reap them all."""
        alive = [p for p in self.procs if p.poll() is None]
        for p in alive:
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for p in alive:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _duration_ms(ready: list[Path], profile_steps: int) -> int:
    """Trace long enough for ``profile_steps`` steps at the slowest warm-up pace, plus slack."""
    paces = [json.loads(p.read_text(encoding="utf-8")).get("step_ms") for p in ready]
    pace = max((v for v in paces if v), default=50.0)
    return int(min(20_000, max(500, 1.5 * profile_steps * pace + 300)))


def _read_tables(job_dir: Path, k: int) -> dict[str, pd.DataFrame]:
    from profilers.model import read_table_csv

    return {name: read_table_csv(name, job_dir / f"{name}-{k}.csv") for name in ("steps", "phases")}


def _run(params: Mapping[str, Any], data: Any, rec: "StepRecorder", mode: str,
         full_loss: Callable[[Any, list[np.ndarray]], float]) -> VariantResult:
    from profilers import scaleout

    workers, batch = int(params["workers"]), int(params["batch_size"])
    if batch % workers:
        raise BadInput(f"batch_size={batch} does not split evenly over workers={workers}.",
                       "Choose a batch_size that is a multiple of workers.")
    if params["clip_norm"] is not None:
        raise BadInput("clip_norm is not supported by the distributed variants: Keras clips "
                       "each replica's partial gradient before the all-reduce.",
                       "Leave clip_norm unset (none) for mirrored and multi_worker.")
    straggler = int(params["straggler"]) if mode == "multi_worker" else -1
    if straggler >= workers:
        raise BadInput(f"straggler={straggler} is not a worker index (workers={workers}).",
                       f"Give 0..{workers - 1}, or -1 for none.")
    processes, replicas = (1, workers) if mode == "mirrored" else (workers, 1)
    profiling = rec.profile_logdir is not None
    xplanes: list[Path] = []
    with tempfile.TemporaryDirectory(prefix=f"sgdscope-{mode}-") as tmp:
        job = _Job(Path(tmp), mode, processes, replicas)
        job.write(params, data, rec, straggler, gate=profiling)
        job.start()
        try:
            ready = job.wait_for("ready-{}.json", READY_TIMEOUT_S, "start and warm up")
            if profiling:
                xplanes = _capture(job, rec, ready)
            job.wait_for("done-{}.json", float("inf"), "finish training")
            job.signal("release")
            job.wait_exit(EXIT_TIMEOUT_S)
            outputs = [_read_tables(job.dir, k) for k in range(processes)]
            with np.load(job.dir / "weights.npz") as npz:
                weights = [npz[f"arr_{k}"] for k in range(len(npz.files))]
        finally:
            job.stop()
    # Per-worker analysis of the captures (each xplane in its own directory, with its cache).
    traced: dict[int, pd.DataFrame] = {}
    capture_errors: list[str] = []
    rel: list[str] = []
    if xplanes:
        from profilers import remote_capture, xprof_tools

        run_dir = Path(rec.profile_logdir).parent
        rel = remote_capture.place_worker_xplanes(run_dir, xplanes)
        for k, path in enumerate(rel):
            try:
                traced[k] = scaleout.step_collectives(xprof_tools.trace_events(run_dir / path))
            except SgdscopeError as exc:
                capture_errors.append(f"worker {k}: {exc.message}")
    host = {k: out["steps"] for k, out in enumerate(outputs)}
    table = scaleout.workers_table(host, traced)
    rows = scaleout.per_worker(table)
    for row in rows:
        row["replicas"] = replicas
        if rel:
            row["xplane"] = rel[row["worker"]]
    steps = outputs[0]["steps"].copy()
    # The global-batch loss: the sum of every worker's part (each is its replicas' part).
    losses = pd.concat([o["steps"].set_index("step")["loss"] for o in outputs], axis=1).sum(axis=1, min_count=1)
    steps["loss"] = steps["step"].map(losses).astype("float64")
    window = table[(table["worker"] == 0) & table["in_profile_window"]]["step"]
    steps["in_profile_window"] = steps["step"].isin(set(window))
    extra: dict[str, Any] = {
        "per_worker": rows,
        "worker_spread": scaleout.spread(rows),
        "collective_share": scaleout.collective_share(rows),
        "strategy": "MirroredStrategy" if mode == "mirrored" else "MultiWorkerMirroredStrategy",
        "workers": workers, "processes": processes, "replicas_per_process": replicas,
        "straggler": straggler if straggler >= 0 else None,
        "straggler_ms": float(params["straggler_ms"]) if straggler >= 0 else None,
        "last_step_loss": float(steps["loss"].iloc[-1]) if len(steps) else None,
        "ignored": "steps_per_execution (keras_fit only)" + (
            "; straggler (multi_worker only)" if mode == "mirrored" and int(params["straggler"]) >= 0 else ""),
    }
    if capture_errors:
        extra["worker_capture_errors"] = capture_errors
    from profilers.model import validate_table

    return VariantResult(
        final_loss=full_loss(data, weights), extra=extra,
        tables={"steps": validate_table("steps", steps), "phases": outputs[0]["phases"], "workers": table})


def _capture(job: _Job, rec: "StepRecorder", ready: list[Path]) -> list[Path]:
    """Trace every worker's profiler server in one call; open the gate however it ends.

    A failed capture does not fail the run: it is recorded as the recorder's profiler
    error, which the manifest shows as the capture's unavailable reason.
    """
    from profilers.remote_capture import Address, trace

    addresses = [Address("localhost", p) for p in job.profiler_ports]
    try:
        found = trace(addresses, rec.profile_logdir, _duration_ms(ready, rec.profile_steps))
        return [found[a] for a in addresses]
    except SgdscopeError as exc:
        rec.profiler_error = f"remote capture of the {job.mode} workers failed: {exc}"
        return []
    finally:
        job.signal("gate")


def run_mirrored(params: Mapping[str, Any], data: Any, rec: "StepRecorder",
                 full_loss: Callable[[Any, list[np.ndarray]], float]) -> VariantResult:
    return _run(params, data, rec, "mirrored", full_loss)


def run_multi_worker(params: Mapping[str, Any], data: Any, rec: "StepRecorder",
                     full_loss: Callable[[Any, list[np.ndarray]], float]) -> VariantResult:
    return _run(params, data, rec, "multi_worker", full_loss)

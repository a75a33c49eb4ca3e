"""One process of a distributed mlp job: ``python -m workloads.distributed_worker JOB_DIR INDEX``.

Started only by ``workloads.distributed`` (the experiment's worker), which writes
``JOB_DIR/job.json`` and the shared NumPy data (``*.npy``, read memory-mapped). This
process:

1. watches its parent and exits if it goes away (no orphan keeps a port or a core);
2. sets ``TF_CONFIG`` (multi_worker) or splits the CPU into logical devices (mirrored),
   before TensorFlow initialises its devices, then builds the strategy;
3. starts a TF profiler server on its port;
4. trains the mlp's maths on its share of every global batch, each step wrapped in a
   ``Trace("train", step_num=i, _r=1)`` marker and timed by its own ``StepRecorder`` (on
   the experiment's clock: ``perf_counter_ns`` is one monotonic clock per host);
5. after warm-up writes ``ready-<i>.json`` and, when the run is profiled, waits until
   its profiler session is live (``traceme_enabled``) or the parent opens the gate;
6. writes its steps/phases (``steps-<i>.csv``, ``phases-<i>.csv``; the loss column is the
   worker's part of the global batch loss), worker 0 the final weights, then waits for
   the parent's ``release`` file, so that its profiler server outlives the trace.

The planted straggler (``straggler`` = this index) sleeps ``straggler_ms`` inside every
step, as a host phase named ``other``.

Imports TensorFlow inside ``main`` only. Must not import streamlit or pynvml.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Seconds to wait for the gate (a live profiler session) or for the release.
GATE_TIMEOUT_S = 120.0
RELEASE_TIMEOUT_S = 300.0


def _watch_parent(parent_pid: int) -> None:
    """Exit this process as soon as the parent is gone (re-parented to init)."""
    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(3)
            time.sleep(0.5)

    threading.Thread(target=watch, name="sgdscope-parent-watch", daemon=True).start()


def _wait_file(path: Path, timeout_s: float, also: Any = None) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() or (also is not None and also()):
            return True
        time.sleep(0.002)
    return False


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj), encoding="utf-8")
    os.replace(tmp, path)


def main(job_dir: Path, index: int) -> int:
    job = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
    _watch_parent(int(job["parent_pid"]))
    mode, replicas = job["mode"], int(job["replicas_per_process"])
    if mode == "multi_worker":
        os.environ["TF_CONFIG"] = json.dumps({
            "cluster": {"worker": [f"localhost:{p}" for p in job["cluster_ports"]]},
            "task": {"type": "worker", "index": index}})
    from workloads.tfcommon import batch_dataset, import_tf, keras_optimizer

    tf = import_tf()
    if job.get("intra_op_threads"):
        tf.config.threading.set_intra_op_parallelism_threads(int(job["intra_op_threads"]))
    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)])
        strategy = tf.distribute.MirroredStrategy([f"/cpu:{k}" for k in range(replicas)])
    else:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    if job.get("profiler_ports"):
        tf.profiler.experimental.server.start(int(job["profiler_ports"][index]))
    from tensorflow.python.profiler.internal import _pywrap_traceme

    from profilers.recorder import StepRecorder
    from workloads.mlp import MlpData, _keras_model

    params = job["params"]
    load = lambda name: np.load(job_dir / f"{name}.npy", mmap_mode="r")  # noqa: E731
    order = np.asarray(load("order"))
    epochs, nb, batch = order.shape
    per_process = batch // int(job["processes"])
    cols = slice(index * per_process, (index + 1) * per_process)
    data = MlpData(x=load("x"), y=load("y"), order=order, lr_per_epoch=np.asarray(load("lr")),
                   init=tuple(np.asarray(load(f"init{k}")) for k in range(4)))
    with strategy.scope():
        model = _keras_model(tf, data)
        opt = keras_optimizer(tf, params["optimizer"], params["lr"], params["momentum"])
        opt.build(model.trainable_variables)
    variables = model.trainable_variables
    global_batch = float(batch)

    def replica_step(x: Any, y: Any) -> Any:
        with tf.name_scope("forward"):
            with tf.GradientTape() as tape:
                pred = model(x, training=True)
                # The replica's part of the global-batch mean: summed over replicas by the
                # all-reduce of the gradients, it is the single-process mean exactly.
                loss = tf.reduce_sum(tf.keras.losses.categorical_crossentropy(y, pred)) / global_batch
        with tf.name_scope("backward"):
            grads = tape.gradient(loss, variables)
        with tf.name_scope("optimizer_update"):
            opt.apply_gradients(zip(grads, variables))
        return loss

    @tf.function
    def train_step(dx: Any, dy: Any) -> Any:
        return strategy.run(replica_step, args=(dx, dy))

    def distribute(xb: Any, yb: Any) -> tuple[Any, Any]:
        xs = tf.split(xb, replicas) if replicas > 1 else [xb]
        ys = tf.split(yb, replicas) if replicas > 1 else [yb]
        pick = lambda parts: strategy.experimental_distribute_values_from_function(  # noqa: E731
            lambda ctx: parts[ctx.replica_id_in_sync_group % replicas])
        return pick(xs), pick(ys)

    rec = StepRecorder(t0_ns=int(job["t0_ns"]), warmup_steps=int(job["warmup_steps"]))
    ds = batch_dataset(tf, np.asarray(data.x), np.asarray(data.y), order[:, :, cols].reshape(epochs * nb, -1))
    it = iter(ds)
    straggle_s = float(job["straggler_ms"]) / 1e3 if int(job["straggler"]) == index else 0.0
    gate_open = lambda: (job_dir / "gate").exists() or _pywrap_traceme.traceme_enabled()  # noqa: E731
    warmup = min(int(job["warmup_steps"]), epochs * nb)
    warm_ms: list[float] = []

    def signal_ready() -> None:
        # The median warm-up step, the first (tracing) step left out: the parent sizes the
        # trace from it.
        _write_json(job_dir / f"ready-{index}.json",
                    {"step_ms": float(np.median(warm_ms[1:])) if len(warm_ms) > 1 else None})

    for epoch in range(epochs):
        opt.learning_rate = float(data.lr_per_epoch[epoch])
        for b in range(nb):
            i = epoch * nb + b
            if i == warmup:
                signal_ready()
                if job["gate"] and not _wait_file(job_dir / "gate", GATE_TIMEOUT_S, gate_open):
                    raise SystemExit(f"worker {index}: no profiler session started within "
                                     f"{GATE_TIMEOUT_S:g} s")
            t_step = time.perf_counter()
            with tf.profiler.experimental.Trace("train", step_num=i, _r=1):
                with rec.step(i, epoch):
                    with rec.phase("input_wait"):
                        xb, yb = next(it)
                    if straggle_s:
                        with rec.phase("other"):
                            time.sleep(straggle_s)
                    dx, dy = distribute(xb, yb)
                    loss = train_step(dx, dy)
                    local = sum(float(v.numpy()) for v in strategy.experimental_local_results(loss))
            rec.record_loss(i, local)
            if i < warmup:
                warm_ms.append((time.perf_counter() - t_step) * 1e3)
    if warmup >= epochs * nb:  # every step was warm-up: nothing left to trace
        signal_ready()
    tables = rec.finish()
    tables["steps"].to_csv(job_dir / f"steps-{index}.csv", index=False)
    tables["phases"].to_csv(job_dir / f"phases-{index}.csv", index=False)
    if index == 0:
        np.savez(job_dir / "weights.npz", *[np.asarray(w) for w in model.get_weights()])
    _write_json(job_dir / f"done-{index}.json", {"steps": int(len(tables["steps"]))})
    _wait_file(job_dir / "release", RELEASE_TIMEOUT_S)
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: a MultiWorkerMirroredStrategy's gRPC server can block it.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2])))

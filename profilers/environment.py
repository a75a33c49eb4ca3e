"""The environment that decides a run's numbers, recorded in every manifest.

Library versions, CPU model and cores, NumPy's BLAS and its kernel architecture
(threadpoolctl: forcing another OpenBLAS core type made NumPy 1.7-3.4x slower here),
TF intra/inter-op threads and whether oneDNN is on. ``collect()`` never imports
TensorFlow; ``collect_tf(tf)`` takes an already imported module (the worker's).
Must not import tensorflow, pynvml or streamlit.
"""
from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

import psutil

PACKAGES = ("numpy", "scipy", "tensorflow-cpu", "tensorflow", "keras", "xprof",
            "streamlit", "altair", "pandas", "psutil", "nvidia-ml-py", "threadpoolctl")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            lines = fh.readlines()
    except OSError:  # not Linux: platform's answer is the best there is
        lines = []
    for line in lines:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def blas_info() -> list[dict[str, Any]]:
    """threadpoolctl's view of NumPy's BLAS (internal_api, version, threads, architecture)."""
    import numpy  # noqa: F401  (loads the BLAS so threadpoolctl can see it)
    from threadpoolctl import threadpool_info

    keep = ("user_api", "internal_api", "version", "num_threads", "architecture", "prefix")
    return [{k: pool.get(k) for k in keep} for pool in threadpool_info()]


def collect() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu_model": cpu_model(),
        "cpu_logical": os.cpu_count(),
        "cpu_physical": psutil.cpu_count(logical=False),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "versions": {p: v for p in PACKAGES if (v := _version(p))},
        "blas": blas_info(),
        "env": {k: os.environ.get(k) for k in (
            "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
            "TF_ENABLE_ONEDNN_OPTS", "TF_XLA_FLAGS", "CUDA_VISIBLE_DEVICES") if os.environ.get(k)},
    }


def collect_tf(tf: Any) -> dict[str, Any]:
    """TensorFlow's threading, oneDNN and device facts, from an imported ``tf`` module."""
    onednn_env = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    try:
        onednn = bool(tf.sysconfig.get_build_info().get("is_mkl_enabled", False)) if onednn_env is None \
            else onednn_env.strip() == "1"
    except AttributeError:
        onednn = None
    return {
        "tf_version": tf.__version__,
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "threads_note": "0 means TensorFlow's default (one per logical core)",
        "onednn_enabled": onednn,
        "onednn_env": onednn_env,
        "devices": [d.name for d in tf.config.list_logical_devices()],
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "built_with_cuda": tf.test.is_built_with_cuda(),
    }


# -- the GEMM peak: what the machine's BLAS reaches, for the achieved-GFLOP/s comparison --------
def machine_key() -> str:
    """Host, CPU model, cores and NumPy version: what a cached machine measurement is for."""
    import numpy as np

    return "|".join([platform.node(), platform.machine(), cpu_model(), str(os.cpu_count()),
                     f"numpy {np.__version__}"])


def _peak_key(dtype: str, threads: int | None) -> str:
    return f"{machine_key()}|{dtype}|threads={threads}"


def blas_threads() -> int | None:
    """The threads NumPy's BLAS uses now (threadpoolctl), or None when it cannot tell."""
    pools = [p for p in blas_info() if p.get("user_api") == "blas"]
    return int(pools[0]["num_threads"]) if pools and pools[0].get("num_threads") else None


def gemm_peak(cache_dir: Any, *, dtype: str = "float32", n: int = 1024, min_time_s: float = 0.3,
              refresh: bool = False) -> dict[str, Any]:
    """The best ``n×n @ n×n`` GFLOP/s NumPy reaches here, in ``dtype`` with the BLAS threads
    this process uses: the peak an achieved GFLOP/s figure is compared with.

    Measured in the worker, never in analysis. The cache ``<cache_dir>/gemm_peak.json`` is
    keyed by host, CPU, NumPy version, dtype and thread count, and keeps the *highest*
    figure ever measured for a key: a peak is a capability, so a measurement taken while
    the machine was busy never lowers it (a low peak once made an achieved figure look
    11x above it). ``n`` = 1024 is large enough for OpenBLAS to reach its plateau.
    """
    import json
    import time
    from datetime import datetime, timezone
    from pathlib import Path

    import numpy as np

    from profilers.model import atomic_write_text, dumps

    threads = blas_threads()
    path = Path(cache_dir) / "gemm_peak.json"
    key = _peak_key(dtype, threads)
    known: dict[str, Any] = {}
    if path.is_file():
        try:
            known = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            known = {}  # a damaged cache is measured again and rewritten
        if not isinstance(known, dict):
            known = {}
    hit = known.get(key)
    if isinstance(hit, dict) and not refresh and hit.get("n") == n and isinstance(hit.get("gflops"), (int, float)):
        return {**hit, "cached": True}
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    a @ b  # warm-up: BLAS threads, page faults
    best, spent = float("inf"), 0.0
    while spent < min_time_s:
        t0 = time.perf_counter()
        a @ b
        dt = time.perf_counter() - t0
        best = min(best, dt)
        spent += dt
    gflops = 2.0 * n ** 3 / best / 1e9
    if isinstance(hit, dict) and hit.get("n") == n and isinstance(hit.get("gflops"), (int, float)):
        gflops = max(gflops, float(hit["gflops"]))
    entry = {"gflops": gflops, "n": n, "dtype": dtype, "threads": threads,
             "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "source": f"best {dtype} {n}x{n} NumPy matmul with {threads} BLAS thread(s); "
                       "highest ever measured on this machine"}
    known[key] = entry
    atomic_write_text(path, dumps(known))
    return {**entry, "cached": False}

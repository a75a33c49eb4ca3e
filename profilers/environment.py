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

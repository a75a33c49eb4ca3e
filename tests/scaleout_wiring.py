"""Test helper: wires the distributed variants into the mlp workload, for worker processes
started with ``SGDSCOPE_WORKLOAD_MODULES=tests.scaleout_wiring``.

``workloads.distributed.install`` is idempotent, so this stays harmless once
``workloads/mlp.py`` calls it itself.
"""
from __future__ import annotations

from workloads import WORKLOADS, mlp
from workloads.distributed import install

install(type(WORKLOADS["mlp"]), mlp._RUNNERS)

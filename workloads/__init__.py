"""Workload registry: name -> Workload instance. Imports no TensorFlow.

Built-in workloads register themselves on import. Extra workload modules (a team's own
models) are named in ``SGDSCOPE_WORKLOAD_MODULES`` (comma-separated importable module
names); each calls ``workloads.register(...)`` at import.
"""
from __future__ import annotations

import os
from importlib import import_module

from profilers.errors import BadInput
from workloads.base import Param, Variant, VariantResult, Workload

WORKLOADS: dict[str, Workload] = {}

BUILTIN_MODULES = ("workloads.linreg", "workloads.mlp", "workloads.input_pipeline")


def register(workload: Workload) -> Workload:
    WORKLOADS[workload.name] = workload
    return workload


def _load() -> None:
    for mod in BUILTIN_MODULES:
        import_module(mod)
    for mod in filter(None, (m.strip() for m in os.environ.get("SGDSCOPE_WORKLOAD_MODULES", "").split(","))):
        try:
            import_module(mod)
        except ImportError as exc:
            raise BadInput(f"SGDSCOPE_WORKLOAD_MODULES names {mod!r}, which cannot be imported: {exc}.",
                           "Fix the module name or add its folder to PYTHONPATH.") from None


_load()

__all__ = ["WORKLOADS", "Param", "Variant", "VariantResult", "Workload", "register"]

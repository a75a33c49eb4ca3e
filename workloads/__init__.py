"""Workload registry: name -> Workload instance. Imports no TensorFlow."""
from __future__ import annotations

from workloads.base import Param, Variant, VariantResult, Workload

WORKLOADS: dict[str, Workload] = {}


def register(workload: Workload) -> Workload:
    WORKLOADS[workload.name] = workload
    return workload


def _load() -> None:
    # Each module registers itself; a module that is not written yet is simply absent.
    from importlib import import_module

    for mod in ("workloads.linreg", "workloads.mlp", "workloads.input_pipeline"):
        try:
            import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


_load()

__all__ = ["WORKLOADS", "Param", "Variant", "VariantResult", "Workload", "register"]

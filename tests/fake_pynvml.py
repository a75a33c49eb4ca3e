"""A fake ``pynvml`` module for tests: the NVML functions the GPU sampler calls.

``make_fake_pynvml(gpus)`` builds a fresh module object to put in ``sys.modules`` with
``monkeypatch.setitem(sys.modules, "pynvml", fake)``. It mirrors nvidia-ml-py's surface
and units: memory in bytes, power in milliwatts, clocks in MHz, errors as subclasses of
``NVMLError`` whose ``str`` is NVML's message. It counts nvmlInit/nvmlShutdown calls so
tests can check they balance. Must not import the real pynvml, tensorflow or streamlit.
"""
from __future__ import annotations

import types
from dataclasses import dataclass, field


class NVMLError(Exception):
    value = 999
    message = "Unknown Error"

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self.message


class NVMLError_NotSupported(NVMLError):  # noqa: N801 - pynvml's own naming
    value = 3
    message = "Not Supported"


class NVMLError_NoPermission(NVMLError):  # noqa: N801
    value = 4
    message = "Insufficient Permissions"


class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801
    value = 12
    message = "NVML Shared Library Not Found"


class NVMLError_GpuIsLost(NVMLError):  # noqa: N801
    value = 15
    message = "GPU is lost"


NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_CLOCK_VIDEO = 3


@dataclass
class FakeProc:
    pid: int
    usedGpuMemory: int | None  # noqa: N815 - pynvml's field name; bytes, None = n/a


@dataclass
class FakeGpu:
    util_pct: int = 0
    mem_used_bytes: int = 0
    mem_total_bytes: int = 0
    power_mw: int = 0
    #: clock type -> MHz; only NVML_CLOCK_SM is the right one to ask for.
    clocks_mhz: dict[int, int] = field(default_factory=dict)
    procs: list[FakeProc] = field(default_factory=list)
    #: function name (e.g. "nvmlDeviceGetPowerUsage") -> error class it raises.
    raises: dict[str, type[NVMLError]] = field(default_factory=dict)


def make_fake_pynvml(gpus: list[FakeGpu],
                     init_error: type[NVMLError] | None = None) -> types.ModuleType:
    mod = types.ModuleType("pynvml")
    mod.__file__ = __file__
    calls: dict[str, int] = {}
    state = {"initialised": 0}
    mod.calls = calls  # type: ignore[attr-defined]
    mod.state = state  # type: ignore[attr-defined]

    for cls in (NVMLError, NVMLError_NotSupported, NVMLError_NoPermission,
                NVMLError_LibraryNotFound, NVMLError_GpuIsLost):
        setattr(mod, cls.__name__, cls)
    for const in ("NVML_CLOCK_GRAPHICS", "NVML_CLOCK_SM", "NVML_CLOCK_MEM",
                  "NVML_CLOCK_VIDEO"):
        setattr(mod, const, globals()[const])

    def count(name: str) -> None:
        calls[name] = calls.get(name, 0) + 1

    def need_init() -> None:
        if state["initialised"] <= 0:
            raise NVMLError("Uninitialized")

    def device(handle: int, fn: str) -> FakeGpu:
        count(fn)
        need_init()
        gpu = gpus[handle]
        if fn in gpu.raises:
            raise gpu.raises[fn]()
        return gpu

    def nvmlInit() -> None:
        count("nvmlInit")
        if init_error is not None:
            raise init_error()
        state["initialised"] += 1

    def nvmlShutdown() -> None:
        count("nvmlShutdown")
        need_init()
        state["initialised"] -= 1

    def nvmlDeviceGetCount() -> int:
        count("nvmlDeviceGetCount")
        need_init()
        return len(gpus)

    def nvmlDeviceGetHandleByIndex(index: int) -> int:
        count("nvmlDeviceGetHandleByIndex")
        need_init()
        if not 0 <= index < len(gpus):
            raise NVMLError("Invalid Argument")
        return index

    def nvmlDeviceGetUtilizationRates(handle: int) -> types.SimpleNamespace:
        gpu = device(handle, "nvmlDeviceGetUtilizationRates")
        return types.SimpleNamespace(gpu=gpu.util_pct, memory=gpu.util_pct // 2)

    def nvmlDeviceGetMemoryInfo(handle: int) -> types.SimpleNamespace:
        gpu = device(handle, "nvmlDeviceGetMemoryInfo")
        return types.SimpleNamespace(total=gpu.mem_total_bytes, used=gpu.mem_used_bytes,
                                     free=gpu.mem_total_bytes - gpu.mem_used_bytes)

    def nvmlDeviceGetPowerUsage(handle: int) -> int:
        return device(handle, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetClockInfo(handle: int, clock_type: int) -> int:
        gpu = device(handle, "nvmlDeviceGetClockInfo")
        if clock_type not in gpu.clocks_mhz:
            raise NVMLError_NotSupported()
        return gpu.clocks_mhz[clock_type]

    def nvmlDeviceGetComputeRunningProcesses(handle: int) -> list[FakeProc]:
        return list(device(handle, "nvmlDeviceGetComputeRunningProcesses").procs)

    for fn in (nvmlInit, nvmlShutdown, nvmlDeviceGetCount, nvmlDeviceGetHandleByIndex,
               nvmlDeviceGetUtilizationRates, nvmlDeviceGetMemoryInfo,
               nvmlDeviceGetPowerUsage, nvmlDeviceGetClockInfo,
               nvmlDeviceGetComputeRunningProcesses):
        setattr(mod, fn.__name__, fn)
    return mod

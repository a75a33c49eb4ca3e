"""A tiny NumPy-free workload that can succeed, crash, die or hang: for runner tests.

Registered through SGDSCOPE_WORKLOAD_MODULES=tests.toy_workload. Imports no TensorFlow.
"""
from __future__ import annotations

import os
import signal
import sys
import time

from workloads import Param, Variant, VariantResult, Workload, register


#: What the ``chatty`` variant writes: more than the supervisor keeps of a worker's output.
CHATTY_MB = 10


class Toy(Workload):
    name = "toy"
    help = "A counter that takes `steps` steps of `sleep_ms` each."
    params = {
        "steps": Param("steps", int, 20, "steps to run", minimum=1),
        "sleep_ms": Param("sleep_ms", float, 1.0, "sleep per step", minimum=0),
        "warmup_steps": Param("warmup_steps", int, 2, "steps left out of statistics", minimum=0),
    }
    variants = {
        "ok": Variant("ok", "finishes"),
        "ok2": Variant("ok2", "finishes too (same maths)"),
        "crash": Variant("crash", "raises ValueError at step 3"),
        "die": Variant("die", "kills its own process with SIGKILL at step 3 (like the OOM killer)"),
        "hang": Variant("hang", "sleeps forever at step 3"),
        "chatty": Variant("chatty", "writes CHATTY_MB MiB to stdout at step 3, then a last line"),
    }
    baseline = "ok"

    def total_steps(self, params):
        return params["steps"]

    def prepare(self, params):
        return None

    def run(self, variant, params, data, rec):
        loss = 100.0
        for i in range(params["steps"]):
            with rec.step(i):
                with rec.phase("input_wait"):
                    time.sleep(params["sleep_ms"] / 4e3)
                with rec.phase("forward"):
                    time.sleep(params["sleep_ms"] / 2e3)
                loss *= 0.9
                if i == 3 and variant == "crash":
                    raise ValueError("toy crash at step 3")
                if i == 3 and variant == "die":
                    os.kill(os.getpid(), signal.SIGKILL)
                if i == 3 and variant == "hang":
                    time.sleep(3600)
                if i == 3 and variant == "chatty":
                    line = "x" * 1023 + "\n"
                    for _ in range(CHATTY_MB * 1024):
                        sys.stdout.write(line)
                    print("the last line", flush=True)
            rec.record_loss(i, loss)
        return VariantResult(final_loss=loss)


register(Toy())

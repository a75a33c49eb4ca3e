"""The tf.data fix ladder, measured: seed 002's advice rung by rung, in one experiment.

Runs ``input_pipeline`` naive → prefetch → parallel_map → cache → vectorized → interleave
→ all through sgdscope (one worker, the same model and data for every rung) and prints,
per rung, the median step, its speed-up over naive and the share of the step spent
waiting for input. Usage:

    .venv/bin/python bench/record.py pipeline_ladder "tf.data fix ladder" -- bench/pipeline_ladder.py
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from profilers.session import launch  # noqa: E402
from profilers.spec import ExperimentSpec  # noqa: E402
from profilers.store import RunStore  # noqa: E402

LADDER = ["naive", "prefetch", "parallel_map", "cache", "vectorized", "interleave", "all"]


def main() -> int:
    store = RunStore(tempfile.mkdtemp(prefix="sgdscope-ladder-"))
    handle = launch(ExperimentSpec(workload="input_pipeline", variants=LADDER, samplers=["host"],
                                   timeout_s=1800), store)
    state = handle.wait()
    runs = {p.manifest["variant"]: p.manifest for p in store.experiment_runs(handle.experiment_id)}
    naive = ((runs.get("naive") or {}).get("results") or {}).get("step_ms", {}).get("median")
    print("| rung | status | median step ms | vs naive | input-wait share |\n|---|---|---|---|---|")
    for rung in LADDER:
        m = runs.get(rung) or {}
        res = m.get("results") or {}
        med = (res.get("step_ms") or {}).get("median")
        share = res.get("input_wait_share")
        speed = f"{naive / med:.2f}×" if med and naive else "n/a"
        print(f"| {rung} | {m.get('status', 'missing')} | {med:.1f} | {speed} | "
              f"{share:.2f} |" if med is not None and share is not None else
              f"| {rung} | {m.get('status', 'missing')} | n/a | n/a | n/a |")
    print(f"\nDefault params (`sgdscope run input_pipeline --help`); experiment status: {state['status']}.")
    return 0 if state["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())

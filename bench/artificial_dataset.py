"""The tf.data guide's ArtificialDataset: naive vs prefetch, side by side, and where the time goes.

Runs the ``input_pipeline`` workload's ``artificial_dataset`` preset (the guide's code as it
stands: a ``from_generator`` dataset sleeping 30 ms to open and 15 ms per sample, 3 samples,
2 epochs, ``time.sleep(0.01)`` as the train step) ``--rounds`` times per variant in one
process, alternating the order (ABBA...), after one discarded warm-up round. It prints the
totals, the naive/prefetch ratio against the guide's (≈1.25×), and the comparison with the
guide's arithmetic floor (0.21 s naive, 0.17 s prefetch), split into where the surplus goes:

- the measured parts (time in ``next(iterator)``, the step's sleep, the epoch-ending
  ``next()``, ``iter(dataset)``, the rest of the loop) against their floor values;
- ``time.sleep`` overshoot, measured here for 10, 15 and 30 ms;
- the generator and ``py_function`` machinery alone: the same pipelines with every sleep at 0.

Prints a markdown table and the command; does not write bench/RESULTS.md. Usage:

    TF_CPP_MIN_LOG_LEVEL=3 python bench/artificial_dataset.py [--rounds 8]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results_file import command_line  # noqa: E402
from profilers.recorder import StepRecorder  # noqa: E402
from workloads import WORKLOADS  # noqa: E402

VARIANTS = ("naive", "prefetch")
GUIDE_RATIO = 1.25  # the guide's naive/prefetch total-time ratio
# The guide's arithmetic per variant (ms): total, time in next(), step sleeps.
# naive: 2 × (30 open + 3 × 15 read + 3 × 10 step) = 210, of which next() 150, steps 60.
# prefetch: 2 × (30 + 15 + 10 + 2 × (15 − 10) + 2 × 10) = 170, of which next() 110, steps 60.
FLOOR = {"naive": (210.0, 150.0, 60.0), "prefetch": (170.0, 110.0, 60.0)}


def one_run(variant: str, params: dict[str, Any]) -> dict[str, float]:
    """One variant once: total, Σ next(), Σ step remainder, epoch-end calls, loop rest (ms)."""
    workload = WORKLOADS["input_pipeline"]
    rec = StepRecorder(t0_ns=time.perf_counter_ns(), warmup_steps=0)
    result = workload.run(variant, params, None, rec)
    tables = rec.finish()
    steps, phases = tables["steps"], tables["phases"]
    wait = phases.loc[phases["phase"] == "input_wait", "dur_us"].sum() / 1e3
    walls = steps["wall_us"].sum() / 1e3
    ends = sum(result.extra["epoch_end_ms"])
    create = sum(result.extra["iterator_create_ms"])
    total = result.extra["total_ms"]
    first = phases[phases["phase"] == "input_wait"].groupby(steps.set_index("step")["epoch"]).head(1)
    return {"total": total, "wait": wait, "step_rest": walls - wait, "epoch_end": ends,
            "iter_create": create, "loop_rest": total - walls - ends - create, "first_next": first["dur_us"].median() / 1e3,
            "other_next": phases.loc[(phases["phase"] == "input_wait") & ~phases.index.isin(first.index),
                                     "dur_us"].median() / 1e3}


def sleep_overshoot_ms(seconds: float, n: int = 15) -> float:
    """Median of (actual − asked) for ``time.sleep(seconds)``, in ms."""
    over = []
    for _ in range(n):
        t = time.perf_counter()
        time.sleep(seconds)
        over.append((time.perf_counter() - t - seconds) * 1e3)
    return statistics.median(over)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8, help="runs per variant (default 8)")
    args = ap.parse_args()
    import tensorflow as tf  # noqa: F401  (imported once, before any timing)

    workload = WORKLOADS["input_pipeline"]
    params = workload.resolve_params({"preset": "artificial_dataset"})
    zero = workload.resolve_params({"preset": "artificial_dataset", "open_latency_ms": 0,
                                    "io_latency_ms": 0, "train_step_ms": 0})
    for v in VARIANTS:  # warm-up round: first from_generator use, first tf.data threads
        one_run(v, params)
        one_run(v, zero)
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    bare: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for r in range(args.rounds):
        order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
        for v in order:
            runs[v].append(one_run(v, params))
        for v in order:
            bare[v].append(one_run(v, zero))
    over = {ms: sleep_overshoot_ms(ms / 1e3) for ms in (10, 15, 30)}

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(row[key] for row in rows)

    paired = [a["total"] / b["total"] for a, b in zip(runs["naive"], runs["prefetch"])]
    ratio = med(runs["naive"], "total") / med(runs["prefetch"], "total")
    lines = [
        f"Command: `{command_line()}`  ",
        f"{args.rounds} runs per variant, alternating order, after one discarded warm-up round; "
        "medians (ms) unless noted.\n",
        "| variant | total (min–max) | floor | above floor | Σ next() (floor) | Σ step sleep (floor 60) "
        "| epoch-end next() ×2 | iter(ds) ×2 | rest of loop | zero-sleep total |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in VARIANTS:
        floor, floor_wait, _ = FLOOR[v]
        totals = [row["total"] for row in runs[v]]
        lines.append(
            f"| {v} | {med(runs[v], 'total'):.1f} ({min(totals):.1f}–{max(totals):.1f}) | {floor:.0f} "
            f"| {med(runs[v], 'total') - floor:+.1f} | {med(runs[v], 'wait'):.1f} ({floor_wait:.0f}) "
            f"| {med(runs[v], 'step_rest'):.1f} | {med(runs[v], 'epoch_end'):.1f} "
            f"| {med(runs[v], 'iter_create'):.1f} | {med(runs[v], 'loop_rest'):.1f} "
            f"| {med(bare[v], 'total'):.1f} |")
    predicted = 210.0 + 2 * over[30] + 6 * over[15] + 6 * over[10] + med(bare["naive"], "total")
    lines += [
        "",
        f"**naive/prefetch total-time ratio: {ratio:.3f}×** (median of paired per-round ratios "
        f"{statistics.median(paired):.3f}×); the guide's ≈{GUIDE_RATIO}× "
        f"({(ratio / GUIDE_RATIO - 1) * 100:+.1f} %, within 10 %: {'yes' if abs(ratio / GUIDE_RATIO - 1) <= 0.10 else 'NO'}); "
        f"the floors' ratio 210/170 = {210 / 170:.3f}×.",
        "",
        "| where naive's surplus goes | ms |",
        "|---|---|",
        f"| time.sleep overshoot per call: 10 ms / 15 ms / 30 ms | {over[10]:.3f} / {over[15]:.3f} / {over[30]:.3f} |",
        f"| of which in one naive run (2 opens, 6 reads, 6 steps) | {2 * over[30] + 6 * over[15] + 6 * over[10]:.2f} |",
        f"| generator + py_function machinery alone (all sleeps 0): 2 epochs × 3 samples | {med(bare['naive'], 'total'):.1f} |",
        f"| … first next() of an epoch (starts the generator) | {med(bare['naive'], 'first_next'):.2f} |",
        f"| … any other next() | {med(bare['naive'], 'other_next'):.2f} |",
        f"| … epoch-ending next() ×2 | {med(bare['naive'], 'epoch_end'):.2f} |",
        f"| … iter(ds) ×2 (builds the generator dataset's iterator) | {med(bare['naive'], 'iter_create'):.2f} |",
        f"| floor + overshoot + machinery (predicted naive) | {predicted:.1f} |",
        f"| measured naive | {med(runs['naive'], 'total'):.1f} |",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Crossover sweep: linreg from 3x2 to 100000x100 over every variant; where does TF win?

Runs the sweep through sgdscope itself (one experiment per size, every variant side by
side in one worker), prints per-step medians and TF/NumPy ratios, and writes them to
bench/RESULTS.md (section "crossover"). Usage:

    .venv/bin/python bench/crossover.py [--quick]

Reference for the curve's shape (tensorflow issue #34144): eager TF at 66.6x NumPy's time
at 100x100, falling to 1.02x at 100000x1000.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results_file import write_section  # noqa: E402
from profilers.store import RunStore  # noqa: E402
from profilers.services import run_sweep  # noqa: E402
from profilers.sweep import crossover_table, describe_crossover, sweep_points  # noqa: E402

TF_VARIANTS = ["numpy", "numpy_blas", "tf_eager", "tf_function", "tf_xla", "tf_graph_loop", "tf_graph_loop_xla"]
# (m, n, steps): fewer steps where a step is long; pure Python only where it finishes.
SMALL = [(3, 2, 300), (100, 10, 300), (100, 100, 200), (1000, 100, 100)]
LARGE = [(10000, 100, 60), (30000, 100, 40), (100000, 100, 30)]
QUICK_SMALL, QUICK_LARGE = [(3, 2, 100), (100, 10, 100)], [(10000, 100, 20)]


def grid(points: list[tuple[int, int, int]]) -> list[dict[str, str]]:
    return [{"m": str(m), "n": str(n), "steps": str(s)} for m, n, s in points]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="three sizes only (a smoke run)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = ap.parse_args()
    small, large = (QUICK_SMALL, QUICK_LARGE) if args.quick else (SMALL, LARGE)
    store = RunStore(tempfile.mkdtemp(prefix="sgdscope-crossover-"))
    frames = []
    for variants, points in ((["python"] + TF_VARIANTS, small), (TF_VARIANTS, large)):
        record = run_sweep(store, "linreg", variants, grid(points), {"warmup_steps": "5"}, 1800,
                           lambda i, st: print(f"  size done: {st['status']}", file=sys.stderr))
        frames.append(sweep_points(store, record).assign(order=lambda d, k=len(frames): d["order"] + 100 * k))
    points = pd.concat(frames, ignore_index=True)
    failed = points[points["status"] != "ok"]
    table, crossover = crossover_table(points)
    variants = [v for v in ["python"] + TF_VARIANTS if v in table.columns]
    lines = ["| m×n×steps | " + " | ".join(f"{v} ms" for v in variants) +
             " | tf_eager/numpy | tf_function/numpy | tf_xla/numpy | tf_graph_loop/numpy | tf_graph_loop_xla/numpy |",
             "|---" * (len(variants) + 6) + "|"]
    for _, r in table.iterrows():
        cells = [f"{r[v]:.4g}" if pd.notna(r.get(v)) else "n/a" for v in variants]
        ratios = [f"{r[f'{v}_over_numpy']:.3g}×" if f"{v}_over_numpy" in r and pd.notna(r[f"{v}_over_numpy"])
                  else "n/a" for v in ("tf_eager", "tf_function", "tf_xla", "tf_graph_loop", "tf_graph_loop_xla")]
        lines.append(f"| {r['label']} | " + " | ".join(cells + ratios) + " |")
    body = "\n".join(lines) + (
        f"\n\nMedian step time per variant (ms; warm-up excluded). Ratios are TF time over NumPy time "
        f"(> 1: NumPy is faster). {describe_crossover(crossover)}\n")
    if not failed.empty:
        body += "\nNot ok: " + ", ".join(f"{r.label} {r.variant} ({r.status})" for r in failed.itertuples()) + "\n"
    print(body)
    if not args.no_write:
        write_section("crossover", "Crossover: linreg step time, TF variants vs NumPy", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Sampler overhead: a CPU-bound NumPy SGD step loop with and without SamplerSet(["host", "gpu"]).

Blocks of ``--steps`` steps run alternately without (A) and with (B) a SamplerSet at
``--hz``, ``--rounds`` times in one process (order ABBA..., after one discarded warm-up
block), and the script prints per-step medians and means and the overhead ratios as a
markdown table. The goal is an overhead of at most 1 % of step time. Prints only; it
does not write bench/RESULTS.md. Usage:

    python bench/sampler_overhead.py [--rounds 16] [--steps 250] [--blas-threads N]

Four views of the cost, because on a shared 2-core machine block-to-block noise is
several percent (other tenants): the median step (hides a tick that lands on a few steps
out of hundreds); the mean step (block wall / steps: carries the amortised cost) with
the median of the paired per-round B/A ratios; the direct excess of the steps a tick
overlaps in B, minus the same time windows laid over the paired A block; and the sampler
thread's own CPU time per second of run (``thread_time``), which is what it can take
from a saturated machine. The last two are far less noisy than the A/B ratios.
On a machine without a GPU the gpu sampler is unavailable and costs nothing per tick:
the figures are the host sampler's cost. Must not import tensorflow or streamlit.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results_file import command_line  # noqa: E402
from profilers.samplers import SamplerSet  # noqa: E402


def make_problem(m: int, n: int, k: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, n))
    w_true = rng.standard_normal((n, k))
    y = x @ w_true + 0.01 * rng.standard_normal((m, k))
    return x, y, np.zeros((n, k))


class Block:
    """One block's timings: per-step start (ns since block start) and wall (ns)."""

    def __init__(self, steps: int) -> None:
        self.starts = np.empty(steps, dtype=np.int64)
        self.walls = np.empty(steps, dtype=np.int64)
        self.begin_ns = 0
        self.total_ns = 0


def run_block(x: np.ndarray, y: np.ndarray, w: np.ndarray, steps: int,
              lr: float = 0.05) -> Block:
    """``steps`` full-batch SGD steps on multi-output linear regression."""
    b = Block(steps)
    m = x.shape[0]
    b.begin_ns = time.perf_counter_ns()
    for i in range(steps):
        t = time.perf_counter_ns()
        err = x @ w - y                # forward
        grad = (x.T @ err) * (2.0 / m)  # backward
        w -= lr * grad                 # optimizer update
        b.walls[i] = time.perf_counter_ns() - t
        b.starts[i] = t - b.begin_ns
    b.total_ns = time.perf_counter_ns() - b.begin_ns
    return b


def excess_at(b: Block, offsets_ns: np.ndarray, span_ns: float) -> float:
    """Wall time above the block's median, summed over steps that overlap a window
    [offset, offset + span) (ns since block start), as a fraction of the block's wall."""
    med = float(np.median(b.walls))
    ends = b.starts + b.walls
    hit = np.zeros(len(b.walls), dtype=bool)
    for off in offsets_ns:
        hit |= (b.starts < off + span_ns) & (ends > off)
    return float(np.sum(b.walls[hit] - med)) / float(np.sum(b.walls))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=16, help="A/B pairs (default 16)")
    ap.add_argument("--steps", type=int, default=250, help="steps per block (default 250)")
    ap.add_argument("--m", type=int, default=2000, help="rows of X")
    ap.add_argument("--n", type=int, default=200, help="features")
    ap.add_argument("--k", type=int, default=50, help="outputs")
    ap.add_argument("--hz", type=float, default=10.0, help="sampling rate (default 10)")
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="limit BLAS threads (threadpoolctl); default: leave as is")
    args = ap.parse_args()
    if args.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.blas_threads)

    x, y, w0 = make_problem(args.m, args.n, args.k)
    run_block(x, y, w0.copy(), args.steps)  # warm-up: caches, BLAS threads, page faults
    blocks: dict[str, list[Block]] = {"A": [], "B": []}
    tick_offsets: list[np.ndarray] = []  # per round: tick starts, ns since B's block start
    ticks, tick_cpu_s, tick_us, status = 0, 0.0, [], {}
    for r in range(args.rounds):
        for arm in ("AB" if r % 2 == 0 else "BA"):
            w = w0.copy()
            if arm == "A":
                blocks["A"].append(run_block(x, y, w, args.steps))
                continue
            t0 = time.perf_counter_ns()
            ss = SamplerSet(["host", "gpu"], interval_s=1.0 / args.hz, t0_ns=t0)
            with ss:
                b = run_block(x, y, w, args.steps)
            blocks["B"].append(b)
            assert ss.table is not None
            tick_ts_ns = np.unique(ss.table["ts_us"].to_numpy()) * 1e3 + t0
            tick_offsets.append(tick_ts_ns - b.begin_ns)
            st = ss.stats()
            ticks += st["ticks"]
            tick_cpu_s += st["tick_cpu_s_total"]
            if st["tick_wall_us_median"] is not None:
                tick_us.append(st["tick_wall_us_median"])
            status = ss.status()

    med = {a: float(np.median(np.concatenate([b.walls for b in v]))) / 1e6
           for a, v in blocks.items()}
    mean = {a: sum(b.total_ns for b in v) / (args.rounds * args.steps) / 1e6
            for a, v in blocks.items()}
    paired = [b.total_ns / a.total_ns for a, b in zip(blocks["A"], blocks["B"])]
    b_wall_s = sum(b.total_ns for b in blocks["B"]) / 1e9
    # Direct attribution: excess of the steps a tick overlaps, in B, against the same
    # windows laid over the paired A block (which had no tick there).
    span_ns = 1e3 * (statistics.median(tick_us) if tick_us else 0.0)
    at_ticks = [excess_at(b, off, span_ns) - excess_at(a, off, span_ns)
                for a, b, off in zip(blocks["A"], blocks["B"], tick_offsets)]

    print(f"Command: `{command_line()}`\n")
    from threadpoolctl import threadpool_info

    blas = ", ".join(f"{b.get('internal_api')} {b.get('num_threads')} threads"
                     for b in threadpool_info())
    print(f"X {args.m}×{args.n}, {args.k} outputs; {args.rounds} rounds × {args.steps} steps "
          f"per arm, ABBA order; sampler at {args.hz:g} Hz; BLAS: {blas}.\n")
    pct = lambda r: f"{100 * r:+.2f} %"  # noqa: E731
    cpu_frac = tick_cpu_s / b_wall_s
    print('| measure | A: no sampler | B: SamplerSet(["host", "gpu"]) | overhead |')
    print("|---|---|---|---|")
    print(f"| median step | {med['A']:.4f} ms | {med['B']:.4f} ms | {pct(med['B'] / med['A'] - 1)} |")
    print(f"| mean step (block wall / steps) | {mean['A']:.4f} ms | {mean['B']:.4f} ms | "
          f"{pct(mean['B'] / mean['A'] - 1)} |")
    print(f"| paired block B/A − 1, median of {len(paired)} | | | "
          f"{pct(statistics.median(paired) - 1)} (range {pct(min(paired) - 1)} … "
          f"{pct(max(paired) - 1)}) |")
    print(f"| direct: excess of the steps a tick overlaps (B minus same windows in A) | | | "
          f"{pct(statistics.fmean(at_ticks))} |")
    if ticks:
        print(f"| sampler thread CPU ({ticks} ticks, {1e6 * tick_cpu_s / ticks:.0f} µs CPU, "
              f"{statistics.median(tick_us):.0f} µs wall per tick) | | "
              f"{1e3 * cpu_frac:.2f} ms per s | {pct(cpu_frac)} of one core |")
    print()
    for name, st in status.items():
        print(f"Sampler {name}: available={st['available']}"
              + (f", reason: {st['reason']}" if st["reason"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

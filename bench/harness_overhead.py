"""What sgdscope's own harness adds to a step, beyond the TF profiler alone.

Runs ``tests/scripts/bookkeeping_loop.py`` (a compiled step followed by per-step Python
bookkeeping: the case where a harness that steals the GIL shows) unchanged through
``profilers.script_capture.run_user_code``, in blocks, one process, TensorFlow imported
once, under three setups in rotating order:

* ``plain``: no profiler;
* ``tf_profiler``: ``tf.profiler.experimental.start``/``stop`` around the script, nothing else;
* ``sgdscope``: what ``sgdscope profile`` puts around a TF script: ``TfCapture`` (the TF
  profiler window, its timer thread, the retracing-warning tap, the Keras ``fit``
  wrapper, the SIGALRM stack sampler every ~3 ms), ``SamplerSet(["host", "gpu"])`` at the
  default 10 Hz and ``ContentionMeter``.

Each block gives two figures from the script's own per-step clocks (after 5 warm-up
steps): the lower quartile of the step wall times (``STEP_MS``; on a shared machine the
other tenants stretch the upper steps, the quartile keeps what the step itself costs)
and the median of the step thread's CPU time (``STEP_CPU_MS``: work the harness adds on
the step's own thread). The inflation is the median over rounds of the paired ratio
sgdscope / tf_profiler - 1, for both. The goal is at most 5 %. Usage:

    python bench/harness_overhead.py [--rounds 6] [--steps 120]

Prints a markdown section (record it with bench/record.py). Must not import streamlit.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCRIPT = ROOT / "tests" / "scripts" / "bookkeeping_loop.py"
WARMUP = 5


@contextmanager
def plain(_: Path) -> Iterator[None]:
    yield


@contextmanager
def tf_profiler(logdir: Path) -> Iterator[None]:
    import tensorflow as tf

    tf.profiler.experimental.start(str(logdir))
    try:
        yield
    finally:
        tf.profiler.experimental.stop()


@contextmanager
def sgdscope(logdir: Path) -> Iterator[None]:
    from profilers.contention import ContentionMeter
    from profilers.samplers import SamplerSet
    from profilers.script_capture import TfCapture

    t0 = time.perf_counter_ns()
    cap = TfCapture(logdir=logdir, t0_ns=t0, window_s=600.0, keras_mode=False)
    samplers = SamplerSet(["host", "gpu"], interval_s=0.1, t0_ns=t0)
    meter = ContentionMeter()
    samplers.start()
    meter.start()
    try:
        with cap.around_script():
            yield
    finally:
        meter.stop()
        samplers.stop()
        if cap.stacks is not None:
            HANDLER_NS.append(cap.stacks.cost_ns)


#: The stack sampler's own handler time per sgdscope block (it runs on the step's thread).
HANDLER_NS: list[int] = []


SETUPS = {"plain": plain, "tf_profiler": tf_profiler, "sgdscope": sgdscope}


def block(setup: str, steps: int, tmp: Path, k: int) -> tuple[float, float]:
    from profilers.script_capture import run_user_code

    os.environ["BOOKKEEPING_STEPS"] = str(steps)
    with SETUPS[setup](tmp / f"{setup}-{k}"):
        out = run_user_code(SCRIPT)
    if out.exit_code != 0:
        raise SystemExit(f"{SCRIPT.name} failed under {setup}: {out.exception}")
    wall = sorted(out.namespace["STEP_MS"][WARMUP:])
    cpu = out.namespace["STEP_CPU_MS"][WARMUP:]
    return wall[len(wall) // 4], statistics.median(cpu)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=120)
    args = ap.parse_args()
    import tensorflow as tf  # noqa: F401  (imported once, before any block)

    from bench.results_file import command_line

    names = list(SETUPS)
    got: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as null:
        real_stdout = sys.stdout
        sys.stdout = null  # the script's prints
        try:
            block("plain", args.steps, Path(tmp), -1)  # warm-up: traces, caches
            for r in range(args.rounds):
                order = names[r % 3:] + names[:r % 3]
                for n in (order if r % 2 == 0 else order[::-1]):
                    got[n].append(block(n, args.steps, Path(tmp), r))
        finally:
            sys.stdout = real_stdout
    def ratios(a: str, b: str, k: int) -> list[float]:
        return [x[k] / y[k] for x, y in zip(got[a], got[b])]

    wall_sg, cpu_sg = ratios("sgdscope", "tf_profiler", 0), ratios("sgdscope", "tf_profiler", 1)
    wall_tf = ratios("tf_profiler", "plain", 0)
    print(f"Script `{SCRIPT.relative_to(ROOT)}` (`{command_line()}`), {args.steps} steps per block "
          f"({WARMUP} warm-up), {args.rounds} rounds in rotating order, one process.\n")
    print("| setup | step wall, lower quartile (ms): median over rounds | min | max | step thread CPU (ms): median |")
    print("|---|---|---|---|---|")
    for n in names:
        w = [x[0] for x in got[n]]
        c = [x[1] for x in got[n]]
        print(f"| {n} | {statistics.median(w):.3f} | {min(w):.3f} | {max(w):.3f} | {statistics.median(c):.3f} |")
    print()
    print(f"- TF profiler alone over plain (wall): {statistics.median(wall_tf) - 1:+.1%} (median of paired ratios)")
    print(f"- **sgdscope harness over the TF profiler alone, step wall: {statistics.median(wall_sg) - 1:+.1%}**; "
          f"paired ratios: {', '.join(f'{x - 1:+.1%}' for x in wall_sg)}")
    print(f"- **sgdscope harness over the TF profiler alone, step thread CPU: "
          f"{statistics.median(cpu_sg) - 1:+.1%}**; goal <= +5% for both")
    per_step = [ns / 1e6 / args.steps for ns in HANDLER_NS[-args.rounds:]]
    walls = [x[0] for x in got["sgdscope"]]
    print(f"- the stack sampler's handler, timed inside it: {statistics.median(per_step):.3f} ms per step, "
          f"{statistics.median(p / w for p, w in zip(per_step, walls)):.1%} of the step (median over rounds): "
          "the part of the above that is exact, not a difference of noisy timings")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What analysing a capture costs: xprof's conversions vs our xplane->tables pipeline.

Side by side, in one process, on fresh copies of the committed fixtures
(tests/data/<scenario>/), repeated and interleaved (a b, b a, ...), medians reported:

(a) xprof alone: ``xspace_to_tool_data`` for each tool in ``PIPELINE_TOOLS``, output unparsed;
(b) our pipeline: ``run_tables`` (the same conversions + parsing + caching) then
    ``breakdown_from_trace``, ``ops_per_step`` and ``summarize``: goal (b)/(a) <= 1.5;
(c) reopening the analysed run: the same calls served from ``<run_dir>/cache``: goal < 0.2 s.

Both (a) and (b) start from a copy with no xprof side files and no cache, so xprof does
its full work each time. Imports happen before timing. Prints the figures and the command.

    python bench/analysis_cost.py [--repeat 5] [scenario | run_dir ...]

Must not import tensorflow, streamlit or pynvml.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import pandas as pd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from profilers import breakdown as bd  # noqa: E402
from profilers import xprof_tools as xt  # noqa: E402
from profilers.model import read_table_csv  # noqa: E402

DATA = ROOT / "tests" / "data"


def _source(scenario: str) -> Path:
    """A fixture name, or the path of any run directory (tables/ + trace/)."""
    path = Path(scenario)
    return path if path.is_dir() else DATA / scenario


def _fresh_copy(scenario: str, into: Path) -> Path:
    """A copy with the run's tables and xplane only (no xprof side files, no cache)."""
    src = _source(scenario)
    run_dir = into / src.name
    shutil.copytree(src / "tables", run_dir / "tables")
    xplane = xt.find_xplane(src)
    rel = xplane.relative_to(src)
    (run_dir / rel).parent.mkdir(parents=True)
    shutil.copy2(xplane, run_dir / rel)
    return run_dir


def _xprof_alone(xplane: Path) -> None:
    convert = xt._converter()
    for tool, params in xt.PIPELINE_TOOLS:
        data, _ = convert([str(xplane)], tool, dict(params))
        if data is None:
            raise SystemExit(f"xprof could not convert {xplane} with {tool}")


def _run_inputs(run_dir: Path) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """What an opened run already has: its xplane path, steps and phases (not timed)."""
    return (xt.find_xplane(run_dir), read_table_csv("steps", run_dir / "tables" / "steps.csv"),
            read_table_csv("phases", run_dir / "tables" / "phases.csv"))


def _pipeline(xplane: Path, steps: pd.DataFrame, phases: pd.DataFrame) -> dict[str, float]:
    res = xt.run_tables(xplane)
    events = res.tables["events"]
    b = bd.breakdown_from_trace(steps, events, phases)
    bd.ops_per_step(steps, events)
    return bd.summarize(b)


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench(scenario: str, repeat: int) -> dict[str, float]:
    a_s: list[float] = []
    b_s: list[float] = []
    c_s: list[float] = []
    for r in range(repeat):
        with tempfile.TemporaryDirectory(prefix="sgdscope-bench-") as tmp:
            run_a = _fresh_copy(scenario, Path(tmp) / "a")
            run_b = _fresh_copy(scenario, Path(tmp) / "b")
            xplane_a = xt.find_xplane(run_a)
            inputs_b = _run_inputs(run_b)
            order = ("a", "b") if r % 2 == 0 else ("b", "a")
            for which in order:
                if which == "a":
                    a_s.append(_timed(lambda: _xprof_alone(xplane_a)))
                else:
                    b_s.append(_timed(lambda: _pipeline(*inputs_b)))
            c_s.append(_timed(lambda: _pipeline(*inputs_b)))
    a, b, c = statistics.median(a_s), statistics.median(b_s), statistics.median(c_s)
    return {"a_ms": 1e3 * a, "b_ms": 1e3 * b, "c_ms": 1e3 * c, "ratio": b / a}


def main(argv: list[str] | None = None) -> int:
    with_trace = sorted(p.name for p in DATA.iterdir() if any(p.glob("trace/plugins/profile/*/*.xplane.pb")))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenarios", nargs="*",
                    help=f"fixture names or run directories; default: {', '.join(with_trace)}")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    names = args.scenarios or with_trace
    bad = [n for n in names if n not in with_trace and not Path(n, "tables").is_dir()]
    if bad:
        ap.error(f"unknown scenario(s) {', '.join(bad)}; valid: {', '.join(with_trace)}")
    t0 = time.perf_counter()
    xt._converter()  # import xprof before timing anything
    import_ms = 1e3 * (time.perf_counter() - t0)
    with tempfile.TemporaryDirectory(prefix="sgdscope-bench-warm-") as tmp:
        _pipeline(*_run_inputs(_fresh_copy(names[0], Path(tmp))))  # warm imports and caches of the libraries
    print(f"command: python bench/analysis_cost.py --repeat {args.repeat} {' '.join(names)}")
    print(f"xprof import (not in the figures): {import_ms:.0f} ms; medians of {args.repeat} interleaved runs")
    print(f"{'scenario':18s} {'events':>7s} {'(a) xprof ms':>13s} {'(b) ours ms':>12s} {'b/a':>6s} {'(c) reopen ms':>14s}")
    worst_ratio = worst_c = 0.0
    for name in names:
        r = bench(name, args.repeat)
        worst_ratio, worst_c = max(worst_ratio, r["ratio"]), max(worst_c, r["c_ms"])
        n_events = len(xt.run_tables(xt.find_xplane(_fresh_copy(name, Path(tempfile.mkdtemp()))),
                                     use_cache=False).tables["events"])
        print(f"{Path(name).name[:18]:18s} {n_events:7d} {r['a_ms']:13.1f} {r['b_ms']:12.1f} {r['ratio']:6.2f} {r['c_ms']:14.1f}")
    print(f"worst b/a = {worst_ratio:.2f} (goal <= 1.5: {'met' if worst_ratio <= 1.5 else 'NOT met'}); "
          f"worst reopen = {worst_c:.0f} ms (goal < 200 ms: {'met' if worst_c < 200 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``sgdscope export``, ``import`` and ``diff``: bundles in and out, and two runs compared.

``export RUN_ID [RUN_ID ...] --out X.zip`` writes one bundle (see ``profilers.bundle``);
``import X.zip`` validates a bundle whole and adds its runs to the store (a run already
there is reported as already present); ``diff A B`` compares two runs, each a run id or a
bundle (``X.zip``, or ``X.zip#RUN_ID`` for one run of a multi-run bundle). None of them
needs TensorFlow.

Registered in ``profilers.cli.COMMAND_MODULES``. Must not import tensorflow, pynvml or
streamlit.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from profilers import bundle
from profilers.cli import command, emit_json, fmt_ms, print_table
from profilers.diff import diff_runs, ops_summary
from profilers.store import RunStore


# -- export --------------------------------------------------------------------------------
def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="stored runs to put in the bundle")
    p.add_argument("--out", required=True, help="path of the .zip to write")
    p.add_argument("--no-trace-json", action="store_true",
                   help="leave out trace.json.gz (Chrome trace events), which can be large")
    p.add_argument("--no-report", action="store_true", help="leave out report.html")
    p.add_argument("--no-baseline", action="store_true",
                   help="leave out each run's experiment baseline (added by default: the findings compare with it)")


@command("export", "write runs to one bundle (.zip) that opens in sgdscope, XProf, Perfetto and a browser",
         _export_args)
def cmd_export(args: argparse.Namespace, store: RunStore) -> int:
    doc = bundle.export_store_runs(store, args.run_ids, Path(args.out), trace_json=not args.no_trace_json,
                                   report=not args.no_report, baselines=not args.no_baseline)
    if args.json:
        emit_json({k: v for k, v in doc.items() if k != "files"} | {"members": sorted(doc["files"])})
        return 0
    print(f"wrote {doc['path']} ({doc['bytes']} bytes, {len(doc['runs'])} run(s))")
    for r in doc["runs"]:
        tj = r["trace_json"]
        trace = "trace.json.gz" if tj.get("available") else f"no trace.json.gz ({tj.get('reason')})"
        xp = f"{len(r['xplanes'])} xplane(s)" if r["xplanes"] else "no xplane"
        print(f"  {r['run_id']}  {r['variant']}: {len(r['tables'])} tables, {xp}, {trace}")
        for note in r["notes"]:
            print(f"    note: {note}")
    rep = doc["report"]
    print("  report.html" if rep.get("available") else f"  no report.html ({rep.get('reason')})")
    return 0


# -- import --------------------------------------------------------------------------------
def _import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="a .zip written by `sgdscope export`")


@command("import", "validate a bundle and add its runs to the store (nothing is written if it is bad)",
         _import_args)
def cmd_import(args: argparse.Namespace, store: RunStore) -> int:
    result = bundle.import_bundle(Path(args.bundle), store)
    if args.json:
        emit_json({"home": str(store.home), **result})
        return 0
    if result.get("migrated_from") is not None:
        print(f"migrated from bundle schema version {result['migrated_from']}")
    for r in result["runs"]:
        print(f"{r['result']:>16}: {r['run_id']}  ({r['workload']} {r['variant']}, {r['status']})")
    return 0


# -- diff ----------------------------------------------------------------------------------
def _diff_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", help="run A (control): a run id, X.zip or X.zip#RUN_ID")
    p.add_argument("b", help="run B (test): a run id, X.zip or X.zip#RUN_ID")
    p.add_argument("--top", type=int, default=10, help="ops shown per status in text output (default 10)")


def _num(v: float | None, fmt: str = "{:+.3f}") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


@command("diff", "compare two runs or bundles: step-time categories, ops, distributions, findings", _diff_args)
def cmd_diff(args: argparse.Namespace, store: RunStore) -> int:
    a = bundle.resolve_target(store, args.a)
    b = bundle.resolve_target(store, args.b)
    d = diff_runs(a, b)
    if args.json:
        emit_json(d.to_json())
        return 0
    print(f"A {d.a['run_id']} ({d.a['variant']}): median {fmt_ms(d.a['median_ms'])} ms over {d.a['steps']} steps")
    print(f"B {d.b['run_id']} ({d.b['variant']}): median {fmt_ms(d.b['median_ms'])} ms over {d.b['steps']} steps")
    if d.speedup:
        print(f"B is {d.speedup:.2f}x faster than A" if d.speedup >= 1 else f"B is {1 / d.speedup:.2f}x slower than A")
    print(f"\nstep time per category (ms per median step, from {d.category_source}):")
    print_table([{"category": r["category"], "A_ms": _num(r["a_ms"], "{:.4f}"), "B_ms": _num(r["b_ms"], "{:.4f}"),
                  "delta_ms": _num(r["delta_ms"], "{:+.4f}"), "delta": _num(r["delta_pct"], "{:+.1f}%")}
                 for r in d.categories.to_dict(orient="records")],
                ["category", "A_ms", "B_ms", "delta_ms", "delta"])
    summary = ops_summary(d.ops)
    print(f"\nops ({d.ops_unit.replace('_', ' ')}): " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    for status in ("added", "removed", "increased", "decreased"):
        rows = d.ops[d.ops["status"] == status].head(args.top)
        for r in rows.to_dict(orient="records"):
            print(f"  {status:>9}  {r['op_name']} [{r['op_type']}]  count {r['a_count_per_step']:.3g} -> "
                  f"{r['b_count_per_step']:.3g}, self {r['a_self_us_per_step']:.1f} -> "
                  f"{r['b_self_us_per_step']:.1f} us")
    print("\nfindings:")
    if d.findings.empty:
        print("  none in either run (run `sgdscope analyze` on each to compute them)")
    for r in d.findings.to_dict(orient="records"):
        sev = f"{r['a_severity'] or '-'} -> {r['b_severity'] or '-'}"
        print(f"  {r['status']:>11}  {r['rule']}  ({sev})")
    for note in d.notes:
        print(f"note: {note}")
    return 0

"""``sgdscope whatif SCRIPT.py``: each fix for the user's script measured, not advised.

Profiles the script as is, then reruns it with each fix (``profilers.fixes``) applied from
outside, ``--repeat`` times interleaved with the baseline (``profilers.whatif``), and
prints the table: fix, the code edit as a diff, median step before and after, the gain
with its interval (or "no measurable gain"), the loss check; then the combination of the
winners. ``sgdscope profile SCRIPT.py --whatif`` does the same after its profile (registered in
``cli_triage.PROFILE_EXTENSIONS``, so ``cli_triage`` never imports this module).

Registered in ``profilers.cli.COMMAND_MODULES``. Must not import tensorflow, pynvml or
streamlit.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from profilers.cli import command, emit_json, fmt_ms, print_table, wait_for
from profilers.cli_triage import PROFILE_EXTENSIONS, _profile_args, make_spec
from profilers.errors import BadInput
from profilers.store import RunStore


def add_whatif_args(p: argparse.ArgumentParser) -> None:
    """The what-if flags, shared by ``whatif`` and ``profile --whatif``."""
    from profilers.fixes import FIXES

    p.add_argument("--fix", action="append", default=[], metavar="NAME",
                   help=f"measure this fix (repeatable; default: the fixes the findings name). "
                        f"One of: {', '.join(FIXES)}")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs of the baseline and of each fix, interleaved (default 3, at least 2)")


def _whatif_args(p: argparse.ArgumentParser) -> None:
    _profile_args(p)
    add_whatif_args(p)
    p.add_argument("--original", metavar="RUN_ID",
                   help="a stored profile of this script to start from (its step window, skip and "
                        "arguments are used; it becomes the baseline's first run)")


def original_run(store: RunStore, run_id: str, script: Path) -> Any:
    """A stored, successful profile of ``script`` (``BadInput`` otherwise)."""
    profile = store.load(run_id)
    m = profile.manifest
    path = (m.get("script") or {}).get("path")
    if m.get("source") != "script" or not path:
        raise BadInput(f"Run {run_id} is not a profile of a script.", "Pick a run made by `sgdscope profile`.")
    if Path(path).resolve() != Path(script).expanduser().resolve():
        raise BadInput(f"Run {run_id} profiled {path}, not {script}.", "Give the script that run profiled.")
    if m.get("status") != "ok":
        raise BadInput(f"Run {run_id} did not succeed ({m.get('error')}).", "Fix the script and profile it again.")
    return profile


def run_from_args(args: argparse.Namespace, store: RunStore, original: Any = None) -> dict[str, Any]:
    from profilers.whatif import run_whatif

    if original is None and getattr(args, "original", None):
        original = original_run(store, args.original, Path(args.script))
        prm = original.manifest.get("params") or {}
        args.function, args.arg = prm.get("function"), list(prm.get("argv") or [])
        args.max_steps, args.skip_steps = int(prm.get("max_steps", 50)), int(prm.get("skip_steps", 3))
        args.window = float(prm.get("window_s", args.window))
    spec = make_spec(Path(args.script), function=args.function, argv=args.arg, max_steps=args.max_steps,
                     skip_steps=args.skip_steps, window_s=args.window, timeout_s=args.timeout)

    def progress(text: str) -> None:
        if not args.json:
            print(f"whatif: {text}", file=sys.stderr, flush=True)

    return run_whatif(store, spec, fixes=args.fix or None, repeat=args.repeat, original=original,
                      progress=progress, wait=lambda h: wait_for(h, quiet=True))


def _gain(row: dict[str, Any]) -> str:
    if row.get("gain") is None:
        return "not applied"
    lo, hi = row["interval"]
    text = f"{row['gain']:.2f}x [{lo:.2f}-{hi:.2f}]"
    return text if row["verdict"] == "faster" else f"{text} {row['verdict']}"


def print_whatif(doc: dict[str, Any]) -> None:
    base = doc["baseline"]
    print(f"\nwhat-if {doc['whatif_id']}: {doc['script']}")
    print(f"fixes chosen from: {doc['chosen_from']}; {doc['repeat']} runs each, interleaved; "
          f"baseline median {fmt_ms(base['median_ms'])} ms per step")
    rows = []
    for r in doc["fixes"] + ([doc["combination"]] if doc.get("combination") else []):
        label = r["fix"] if r["fix"] != "combination" else "+".join(r["fixes"])
        rows.append({"rank": r.get("rank", "-"), "fix": label + (" (changes the maths)" if r.get("maths_changed")
                                                                  or r.get("changes_maths") else ""),
                     "before_ms": fmt_ms(base["median_ms"]) if r.get("gain") is not None else "",
                     "after_ms": fmt_ms(r.get("median_ms")) if r.get("gain") is not None else "",
                     "gain [interval]": _gain(r),
                     "loss check": (r.get("loss_check") or {}).get("status", "")})
    print_table(rows, ["rank", "fix", "before_ms", "after_ms", "gain [interval]", "loss check"])
    for r in doc["fixes"] + ([doc["combination"]] if doc.get("combination") else []):
        print(f"\n{r['fix']}: {r['changes']}")
        if r.get("reason"):
            print(f"  not applied: {r['reason']}")
            continue
        if r.get("verdict_text"):
            print(f"  {r['verdict_text']}")
        if r.get("step_unit"):
            print(f"  step time per baseline step ({r['step_unit']})")
        if r.get("loss_check"):
            print(f"  loss check: {r['loss_check']['status']}: {r['loss_check']['detail']}")
        if r.get("diff"):
            print("  the same edit by hand:")
            print("    " + r["diff"].rstrip("\n").replace("\n", "\n    "))
    print(f"\n{doc['summary']}")
    print(f"runs stored as experiment {doc['experiment_id']}; the original run {doc['original_run_id']} "
          "has the measured gains on its findings")


def _profile_extension_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--whatif", action="store_true",
                   help="then measure each fix the findings name (as `sgdscope whatif`; --fix, --repeat)")
    add_whatif_args(p)


def _after_profile(args: argparse.Namespace, store: RunStore, profile: Any, doc: dict[str, Any]) -> None:
    if args.whatif:
        doc["whatif"] = run_from_args(args, store, original=profile)
        doc["findings"] = doc["whatif"]["findings"]  # with the measured gains


def _show_after_profile(doc: dict[str, Any]) -> None:
    if doc.get("whatif"):
        print_whatif(doc["whatif"])


PROFILE_EXTENSIONS["whatif"] = (_profile_extension_args, _after_profile, _show_after_profile)


@command("whatif", "measure each fix for your script (applied from outside it): gain with its interval",
         _whatif_args)
def cmd_whatif(args: argparse.Namespace, store: RunStore) -> int:
    doc = run_from_args(args, store)
    if args.json:
        emit_json(doc)
    else:
        print_whatif(doc)
    return 0

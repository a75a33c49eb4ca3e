"""``sgdscope profile`` and ``sgdscope analyze``: triage of a user's own training script.

``profile SCRIPT.py`` runs the script unchanged in a supervised worker (timeout, Ctrl-C
to cancel, a crash stored as a failed run with its traceback), under the TF profiler
(or a signal-delay sampler when it has no TensorFlow), stores the run and prints its findings.
``analyze RUN_ID`` prints a stored run's analysis (findings with evidence, steps,
``breakdown_ms``): the one stored when the run was, derived again only when the analysis
version changed (or with ``--recompute``); it never imports TensorFlow.

Registered in ``profilers.cli.COMMAND_MODULES``. Must not import tensorflow, pynvml or
streamlit.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, Callable

from profilers import triage
from profilers.cli import command, emit_json, fmt_ms, run_summary, wait_for
from profilers.errors import BadInput, CaptureFailed, DependencyMissing
from profilers.model import RunProfile
from profilers.store import RunStore

def analyze_profile(store: RunStore | None, profile: RunProfile, *, save: bool,
                    recompute: bool = False) -> dict[str, Any]:
    """Findings + steps + breakdown_ms of one run, as its stored analysis has them (derived
    again only for another analysis version, or ``recompute``; stored back when ``save``)."""
    from profilers import stored_analysis

    profile = stored_analysis.current_analysis(store if save else None, profile, recompute=recompute)
    analysis_doc = profile.manifest.get("analysis") or {}
    return {"run_id": profile.run_id, "status": profile.manifest.get("status"),
            "findings": profile.findings, **triage.summary(profile),
            "analysis": {"version": analysis_doc.get("version"), "warnings": analysis_doc.get("warnings") or []}}


# -- printing -----------------------------------------------------------------------------------
def print_report(doc: dict[str, Any]) -> None:
    steps = doc["steps"]
    print(f"run {doc['run_id']}  status {doc['status']}  steps {steps['count']}  "
          f"median {fmt_ms(steps['median_ms'])} ms")
    if doc.get("breakdown_ms"):
        parts = [f"{k} {fmt_ms(v)}" for k, v in doc["breakdown_ms"].items() if v]
        print("breakdown (ms per median step): " + (", ".join(parts) or "(all zero)"))
    else:
        why = (doc.get("unavailable") or {}).get("breakdown_ms") or "the run has no breakdown"
        print(f"breakdown: unavailable ({why})")
    for w in (doc.get("analysis") or {}).get("warnings") or []:
        print(f"analysis warning [{w['invariant']}]: {w['message']}")
    if not doc["findings"]:
        print("No findings: no rule found a bottleneck in the data this run has.")
    for f in doc["findings"]:
        share = "" if f["share"] is None else f" ({f['share']:.0%})"
        print(f"\n[{f['severity'].upper()}] {f['rule']}{share}")
        for k, v in f["evidence"].items():
            if isinstance(v, (dict, list)):
                continue
            print(f"    {k}: {v}")
        if f.get("counterfactual"):
            print(f"    -> {f['counterfactual']['text']}")
        print("  " + f["recommendation"].replace("\n", "\n  "))


# -- profile ------------------------------------------------------------------------------------
def _profile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("script", help="path of the training script (run unchanged)")
    p.add_argument("--function", help="call NAME() from the script instead of running it as __main__")
    p.add_argument("--arg", action="append", default=[], metavar="ARG",
                   help="an argument for the script's sys.argv; repeatable")
    p.add_argument("--out", help="also export the run as a bundle (zip) to this path")
    p.add_argument("--max-steps", type=int, default=50, help="steps kept in the capture window (default 50)")
    p.add_argument("--skip-steps", type=int, default=3, help="first steps left out as warm-up (default 3)")
    p.add_argument("--window", type=float, default=8.0,
                   help="seconds the profiler window stays open for a custom loop (default 8)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds before the script is stopped")


def _variant_name(script: Path) -> str:
    return re.sub(r"[^a-z0-9_]", "_", script.stem.lower()) or "script"


def make_spec(script: Path, *, function: str | None, argv: list[str], max_steps: int,
              skip_steps: int, window_s: float, timeout_s: float) -> Any:
    """A validated experiment spec for a script (``BadInput`` says what is wrong)."""
    from profilers.script_capture import scan_script
    from profilers.spec import ExperimentSpec

    script = Path(script).expanduser().resolve()
    if not script.is_file():
        raise BadInput(f"No script at {script}.", "Give the path of a Python file.")
    if script.suffix != ".py":
        raise BadInput(f"{script.name} is not a .py file.", "sgdscope profiles Python scripts.")
    scan_script(script)  # a syntax error is reported now, before anything is spawned
    if max_steps < 1 or skip_steps < 0:
        raise BadInput(f"--max-steps must be >= 1 and --skip-steps >= 0 (got {max_steps}, {skip_steps}).", "")
    if timeout_s <= 0 or window_s <= 0:
        raise BadInput("--timeout and --window must be positive.", "")
    if function is not None and not function.isidentifier():
        raise BadInput(f"--function {function!r} is not a Python name.", "Example: --function main")
    return ExperimentSpec(workload="script", variants=[_variant_name(script)],
                          params={"script": str(script), "function": function, "argv": argv,
                                  "max_steps": max_steps, "skip_steps": skip_steps, "window_s": window_s},
                          timeout_s=timeout_s, profile=True)


def launch_script(store: RunStore, spec: Any) -> Any:
    from profilers.session import launch

    return launch(spec, store, kind="script")


#: Extensions of ``profile``, registered by the modules that provide them (without an import
#: back to them): name -> (add_arguments, after(args, store, profile, doc), show(doc)).
#: ``profilers.cli_whatif`` adds ``--whatif``.
PROFILE_EXTENSIONS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[..., None],
                                    Callable[[dict[str, Any]], None]]] = {}


def _profile_cmd_args(p: argparse.ArgumentParser) -> None:
    _profile_args(p)
    for add_arguments, _, _ in PROFILE_EXTENSIONS.values():
        add_arguments(p)


@command("profile", "profile your own training script unchanged and name its bottlenecks", _profile_cmd_args)
def cmd_profile(args: argparse.Namespace, store: RunStore) -> int:
    spec = make_spec(Path(args.script), function=args.function, argv=args.arg, max_steps=args.max_steps,
                     skip_steps=args.skip_steps, window_s=args.window, timeout_s=args.timeout)
    handle = launch_script(store, spec)
    state = wait_for(handle, quiet=args.json)
    runs = store.experiment_runs(handle.experiment_id)
    if not runs:
        raise CaptureFailed(f"The experiment {handle.experiment_id} stored no run: {state.get('error')}.",
                            f"See {handle.exp_dir}/supervisor.log.")
    profile = runs[0]
    doc = analyze_profile(store, profile, save=False)
    m = profile.manifest
    script = m.get("script") or {}
    doc.update({"experiment_id": handle.experiment_id, "run": run_summary(profile),
                "script": {k: script.get(k) for k in ("path", "function", "exit_code", "exception")},
                "capture": {k: (m.get("capture") or {}).get(k) for k in
                            ("steps_from", "xplane", "unavailable_reason", "analysis_error")},
                "run_dir": str(profile.run_dir)})
    if args.out:
        doc["bundle"] = export_bundle(profile, Path(args.out))
    if m.get("status") == "ok":
        for _, after, _ in PROFILE_EXTENSIONS.values():
            after(args, store, profile, doc)
    if args.json:
        emit_json(doc)
    else:
        print_report(doc)
        for _, _, show in PROFILE_EXTENSIONS.values():
            show(doc)
        if script.get("exit_code"):
            print(f"\nThe script failed (exit code {script['exit_code']}): {script.get('exception')}", file=sys.stderr)
            if script.get("traceback"):
                print(script["traceback"], file=sys.stderr)
        elif m.get("error"):
            print(f"\n{m['error']}", file=sys.stderr)
        print(f"\nstored as {profile.run_id}; script output in {profile.run_dir}/logs/")
    return 0 if m.get("status") == "ok" else CaptureFailed.exit_code


def export_bundle(profile: RunProfile, dest: Path) -> str:
    from profilers import bundle

    return str(bundle.export_bundle(profile, dest))


# -- analyze ------------------------------------------------------------------------------------
def _analyze_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="a run id (see `sgdscope list`) or a bundle .zip")
    p.add_argument("--recompute", action="store_true",
                   help="derive the analysis again even when the stored one is current")


def load_target(store: RunStore, target: str) -> tuple[RunProfile, bool]:
    """(profile, stored): a run from the store, or from a bundle (``X.zip`` or
    ``X.zip#RUN_ID``, opened without importing it)."""
    from profilers import bundle

    if bundle.is_bundle_target(target):
        return bundle.load_bundle(target), False
    return store.load(target), True


@command("analyze", "name a stored run's bottlenecks (findings with evidence); no TensorFlow needed",
         _analyze_args)
def cmd_analyze(args: argparse.Namespace, store: RunStore) -> int:
    profile, stored = load_target(store, args.target)
    doc = analyze_profile(store if stored else None, profile, save=stored, recompute=args.recompute)
    if args.json:
        emit_json(doc)
    else:
        print_report(doc)
    return 0

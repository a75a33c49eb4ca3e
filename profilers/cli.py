"""``sgdscope``: the command line, mirroring the pipeline (run, list, show, delete, ...).

Subcommands live in the ``COMMANDS`` registry (name -> (help, add_arguments, handler)).
Every subcommand takes ``--json`` and ``--home``. ``main`` is the one error funnel:
errors from ``profilers.errors``, and every ``OSError``, ``UnicodeError`` and unreadable
file, are printed as a message with a hint (and as JSON with ``--json``) and mapped to
their exit code, never a traceback; a closed pipe (``| head``) ends quietly. Must not import tensorflow,
pynvml or streamlit.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sqlite3
import sys
from typing import Any, Callable

from profilers.errors import BadInput, BadTable, CaptureFailed, SgdscopeError
from profilers.model import json_safe
from profilers.store import RunStore

Handler = Callable[[argparse.Namespace, RunStore], Any]
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {}


def command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    def deco(fn: Handler) -> Handler:
        COMMANDS[name] = (help, add_arguments, fn)
        return fn
    return deco


def emit_json(obj: Any) -> None:
    print(json.dumps(json_safe(obj), indent=2, allow_nan=False))


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def run_summary(profile: Any) -> dict[str, Any]:
    """The per-run object of the JSON contract (``sgdscope run --json``)."""
    m = profile.manifest
    res = m.get("results") or {}
    step_ms = res.get("step_ms") or {}
    out = {
        "run_id": m["run_id"], "workload": m.get("workload"), "variant": m.get("variant"),
        "status": m.get("status"), "steps": res.get("steps", 0),
        "step_ms": {k: step_ms.get(k) for k in ("median", "p10", "p90")},
        "final_loss": res.get("final_loss"),
        "loss_matches_baseline": res.get("loss_matches_baseline"),
        "error": m.get("error"),
    }
    for key in ("breakdown_ms", "breakdown_window_ms", "input_wait_share", "cpu_contention_share",
                "ops_per_step", "dispatches_per_step", "overhead_us_per_dispatch", "eager_share",
                "gflops", "gemm_peak_gflops", "unavailable", "per_worker"):
        if key in res:
            out[key] = res[key]
    # The stored analysis: its findings and any invariant it found broken (never silent).
    out["findings"] = list(profile.findings or [])
    out["analysis_warnings"] = list((m.get("analysis") or {}).get("warnings") or [])
    if (m.get("capture") or {}).get("profiled"):
        xplane = profile.xplane_path()
        out["xplane"] = str(xplane) if xplane else None
    return out


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


# -- run ---------------------------------------------------------------------------------
def workload_help(name: str | None) -> str:
    """``run WORKLOAD --help``: the workload's variants, and its params with their defaults
    (and the variants that read them); without a name, the workloads."""
    from workloads import WORKLOADS

    if name not in WORKLOADS:
        return "workloads: " + ", ".join(sorted(WORKLOADS)) + "  (then: sgdscope run WORKLOAD --help)"
    w = WORKLOADS[name]
    lines = [f"\n{name}: {w.help}".rstrip(), "\nvariants:"]
    lines += [f"  {v:<19} {var.help}" + (" [baseline]" if v == w.baseline else "")
              for v, var in w.variants.items()]
    lines.append("\nparams (--param KEY=VALUE):")
    for p in w.params.values():
        only = f" (only {', '.join(p.variants)})" if p.variants else ""
        choices = f" {{{','.join(map(str, p.choices))}}}" if p.choices else ""
        default = "none" if p.default is None else p.default
        lines.append(f"  {p.name:<19} default {default}{choices}: {p.help}{only}")
    if w.presets:
        lines.append("\npresets (--param preset=NAME): " + ", ".join(w.presets))
    return "\n".join(lines)


class _WorkloadHelp(argparse.Action):
    """``-h/--help`` that adds the chosen workload's variants and params."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, nargs=0,
                         help="show this help, with WORKLOAD's variants and params")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        parser.print_help()
        print(workload_help(getattr(namespace, "workload", None)))
        parser.exit()


def _run_args(p: argparse.ArgumentParser) -> None:
    p.conflict_handler = p._optionals.conflict_handler = "resolve"  # replace the plain -h/--help
    p.add_argument("-h", "--help", action=_WorkloadHelp)
    p.add_argument("workload", help="workload name (`sgdscope run WORKLOAD --help` lists its variants and params)")
    p.add_argument("--variants", required=True, help="comma-separated variant names")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="workload parameter; repeatable")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds for the whole experiment")
    p.add_argument("--profile", action="store_true", help="capture a TF profiler window")
    p.add_argument("--profile-steps", type=int, default=10, help="steps in the profiler window")
    p.add_argument("--sample-hz", type=float, default=10.0, help="utilization sampling rate")


class _Bars:
    """One text progress bar per variant, redrawn on stderr."""

    def __init__(self) -> None:
        self.drawn = 0

    def __call__(self, state: dict[str, Any]) -> None:
        lines = [f"[{state.get('phase', '')}]"]
        for name, v in state["variants"].items():
            total, done = v.get("total") or 0, v.get("done") or 0
            frac = min(1.0, done / total) if total else (1.0 if v["status"] not in ("pending", "running") else 0.0)
            bar = "#" * int(frac * 30)
            lines.append(f"{name:>16} [{bar:<30}] {done}/{total or '?'} {v['status']}")
        if self.drawn:
            sys.stderr.write(f"\x1b[{self.drawn}F")
        sys.stderr.write("".join(f"\x1b[2K{line}\n" for line in lines))
        sys.stderr.flush()
        self.drawn = len(lines)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def wait_for(handle: Any, quiet: bool) -> dict[str, Any]:
    """Wait for an experiment; Ctrl-C, SIGTERM or a closed terminal (SIGHUP) cancel it.
    Its id is printed first, for ``sgdscope cancel`` from another terminal."""
    bars = None if quiet or not sys.stderr.isatty() else _Bars()
    if not quiet:
        print(f"experiment {handle.experiment_id} (stop it with Ctrl-C or "
              f"`sgdscope cancel {handle.experiment_id}`)", file=sys.stderr)
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            previous[sig] = signal.signal(sig, _interrupt)
        except ValueError:  # not the main thread: leave the handlers alone
            break
    try:
        return handle.wait(on_progress=bars)
    except KeyboardInterrupt:
        print("Cancelling...", file=sys.stderr)
        handle.cancel()
        return handle.wait()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def print_experiment_error(experiment_id: str, state: dict[str, Any]) -> None:
    """The experiment-level reason (the supervisor's), when it did not end ``ok``."""
    if state.get("status") != "ok" and state.get("error"):
        print(f"error: experiment {experiment_id} {state['status']}: {state['error']}", file=sys.stderr)


@command("run", "run a workload's variants in an isolated worker and store the runs", _run_args)
def cmd_run(args: argparse.Namespace, store: RunStore) -> int:
    from profilers.services import launch
    from profilers.spec import ExperimentSpec, parse_param_args

    spec = ExperimentSpec(
        workload=args.workload,
        variants=[v.strip() for v in args.variants.split(",") if v.strip()],
        params=parse_param_args(args.param), timeout_s=args.timeout, profile=args.profile,
        profile_steps=args.profile_steps, sample_interval_s=1.0 / args.sample_hz if args.sample_hz > 0 else 0)
    handle = launch(spec, store)
    state = wait_for(handle, quiet=args.json)
    profiles = store.experiment_runs(handle.experiment_id)
    runs = [run_summary(p) for p in profiles]
    from profilers.explain import explain_experiment
    from workloads import WORKLOADS

    explanations = explain_experiment([(p.manifest["variant"], p.manifest.get("results") or {})
                                       for p in profiles], WORKLOADS[spec.workload].baseline)
    from profilers.verdict import for_profiles

    usable = [n for n, v in WORKLOADS[spec.workload].variants.items()
              if v.availability is None or v.availability()[0]]
    verdict = for_profiles(profiles, usable_variants=usable).text
    if args.json:
        emit_json({"experiment_id": handle.experiment_id, "status": state["status"],
                   "error": state.get("error"), "runs": runs,
                   "verdict": verdict, "explanations": explanations})
    else:
        print(f"Verdict: {verdict}\n")
        print_table([{"variant": r["variant"], "status": r["status"], "steps": r["steps"],
                      "median_ms": fmt_ms(r["step_ms"]["median"]),
                      "p10-p90_ms": f"{fmt_ms(r['step_ms']['p10'])}-{fmt_ms(r['step_ms']['p90'])}",
                      "final_loss": "n/a" if r["final_loss"] is None else f"{r['final_loss']:.6g}",
                      "matches_numpy": r["loss_matches_baseline"], "run_id": r["run_id"]}
                     for r in runs],
                    ["variant", "status", "steps", "median_ms", "p10-p90_ms", "final_loss",
                     "matches_numpy", "run_id"])
        for r in runs:
            if r["error"]:
                print(f"{r['variant']}: {r['error']}", file=sys.stderr)
        if explanations:
            print("\nWhere the time goes:")
            for line in explanations:
                print(f"  {line}")
    print_experiment_error(handle.experiment_id, state)
    return 0 if state["status"] == "ok" else CaptureFailed.exit_code


# -- sweep -------------------------------------------------------------------------------
def _sweep_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("workload")
    p.add_argument("--variants", required=True, help="comma-separated variant names")
    p.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2,...",
                   help="sizes to sweep; several --grid keys are zipped (e.g. --grid m=3,100 --grid n=2,10)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="fixed workload parameter; repeatable")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per size")


@command("sweep", "run a workload over several sizes and find where TensorFlow overtakes NumPy", _sweep_args)
def cmd_sweep(args: argparse.Namespace, store: RunStore) -> int:
    from profilers.spec import parse_param_args
    from profilers.services import run_sweep
    from profilers.sweep import crossover_table, describe_crossover, parse_grid, sweep_points

    grid = parse_grid(args.grid)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]

    def on_point(i: int, state: dict[str, Any]) -> None:
        if not args.json:
            print(f"size {i + 1}/{len(grid)} done: {state['status']}", file=sys.stderr)

    record = run_sweep(store, args.workload, variants, grid, parse_param_args(args.param),
                       args.timeout, on_point)
    table, crossover = crossover_table(sweep_points(store, record))
    if args.json:
        emit_json({"sweep_id": record["sweep_id"], "crossover": crossover,
                   "summary": describe_crossover(crossover),
                   "table": table.to_dict(orient="records"), "experiments": record["experiments"]})
    else:
        rows = [{k: (fmt_ms(v) if isinstance(v, float) and k in variants else
                     f"{v:.2f}x" if isinstance(v, float) and k.endswith("_over_numpy") else v)
                 for k, v in r.items() if k not in ("order", "size")} for r in table.to_dict(orient="records")]
        print_table(rows, [c for c in table.columns if c not in ("order", "size")])
        print(describe_crossover(crossover))
    return 0


# -- list / show / delete ------------------------------------------------------------------
def _no_args(p: argparse.ArgumentParser) -> None:
    return None


@command("list", "list stored runs, newest first", _no_args)
def cmd_list(args: argparse.Namespace, store: RunStore) -> int:
    df = store.list()
    rows = json_safe(df.to_dict(orient="records"))
    damaged = [r for r in rows if r["status"] == "damaged"]
    if args.json:
        emit_json({"home": str(store.home), "runs": rows})
    elif not rows:
        print(f"No runs in {store.home}. Start one with `sgdscope run linreg --variants numpy,tf_eager`.")
    else:
        for r in rows:
            r["median_ms"] = fmt_ms(r["median_ms"])
            r["steps"] = "" if r["steps"] is None else r["steps"]
        print_table(rows, ["run_id", "workload", "variant", "status", "steps", "median_ms",
                           "loss_matches_baseline"])
    for r in damaged if not args.json else []:
        print(f"damaged: {r['run_id']}: {r['damage']} Delete it with `sgdscope delete {r['run_id']}`.",
              file=sys.stderr)
    return 0


def _run_id_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_id")


@command("show", "show one run's manifest and summary", _run_id_arg)
def cmd_show(args: argparse.Namespace, store: RunStore) -> int:
    profile = store.load(args.run_id)
    if args.json:
        emit_json({"summary": run_summary(profile), "manifest": profile.manifest,
                   "findings": profile.findings})
    else:
        s = run_summary(profile)
        for key, value in s.items():
            print(f"{key:>22}: {value}")
        print(f"{'run_dir':>22}: {profile.run_dir}")
    return 0


@command("delete", "delete a stored run", _run_id_arg)
def cmd_delete(args: argparse.Namespace, store: RunStore) -> int:
    store.delete(args.run_id)
    if args.json:
        emit_json({"deleted": args.run_id})
    else:
        print(f"Deleted {args.run_id}.")
    return 0


def _cancel_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment_id", help="the id `sgdscope run` printed (also the Launch page's)")
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for it to stop (default 30)")


@command("cancel", "cancel a running experiment (what the dashboard's Cancel does)", _cancel_args)
def cmd_cancel(args: argparse.Namespace, store: RunStore) -> int:
    from profilers.session import cancel_experiment
    from profilers.spec import check_number

    check_number("--wait", args.wait, minimum=0, maximum=3600)
    state = cancel_experiment(store, args.experiment_id, wait_s=args.wait)
    if args.json:
        emit_json({"experiment_id": args.experiment_id, "status": state["status"], "error": state.get("error"),
                   "run_ids": state.get("run_ids", [])})
    else:
        print(f"Experiment {args.experiment_id}: {state['status']}"
              + (f" ({state['error']})" if state.get("error") else "") + ".")
    return 0


# -- entry point ---------------------------------------------------------------------------
#: Modules that add subcommands to COMMANDS with @command when imported.
COMMAND_MODULES: tuple[str, ...] = ("profilers.cli_triage", "profilers.cli_bundle", "profilers.cli_scaleout",
                                     "profilers.cli_whatif")


def build_parser() -> argparse.ArgumentParser:
    from importlib import import_module

    for mod in COMMAND_MODULES:
        import_module(mod)
    parser = argparse.ArgumentParser(
        prog="sgdscope", description="Where does the time of a training step go? "
        "Run, measure and compare gradient-descent implementations.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--home", help="run store folder (default: $SGDSCOPE_HOME or ./runs)")
    for name, (help_text, add_arguments, _) in sorted(COMMANDS.items()):
        add_arguments(sub.add_parser(name, help=help_text, parents=[common], description=help_text))
    return parser


_OS_HINTS = {
    errno.ENOENT: "Check that the path exists.",
    errno.ENOTDIR: "A part of that path is a file, not a folder: choose another place.",
    errno.EISDIR: "That path is a folder: give a file name.",
    errno.EEXIST: "Something is already there: choose another name.",
    errno.EACCES: "You may not write or read there: choose another place or fix its permissions.",
    errno.EPERM: "You may not write or read there: choose another place or fix its permissions.",
    errno.EROFS: "That file system is read-only: choose another place.",
    errno.ENOSPC: "The disk is full: free some space (delete old runs with `sgdscope delete`).",
    errno.ENAMETOOLONG: "The path is too long: choose a shorter one.",
}


def as_sgdscope_error(exc: BaseException) -> SgdscopeError | None:
    """The user-facing error for an exception that is not a ``SgdscopeError`` but says
    something about the user's files or system (None: a bug)."""
    if isinstance(exc, OSError):
        where = " ".join(f"'{f}'" for f in (exc.filename, exc.filename2) if f is not None)
        what = exc.strerror or str(exc) or type(exc).__name__
        return BadInput(f"{what}{': ' + where if where else ''}.",
                        _OS_HINTS.get(exc.errno or 0, "Check the path and the disk, then try again."))
    if isinstance(exc, UnicodeError):
        return BadInput(f"A file is not readable text ({exc}).",
                        "Save it as UTF-8 (or give a Python file with a correct coding line).")
    if isinstance(exc, json.JSONDecodeError):
        return BadTable(f"A JSON file cannot be read: {exc}.", "The file is damaged: delete or regenerate it.")
    if isinstance(exc, sqlite3.Error):
        return BadTable(f"The run index cannot be used: {exc}.", "Move index.sqlite aside; it is rebuilt "
                        "from the run folders.")
    return None


def _report(exc: SgdscopeError, as_json: bool) -> int:
    if as_json:
        emit_json({"error": exc.message, "hint": exc.hint, "kind": type(exc).__name__})
    print(f"error: {exc.message}", file=sys.stderr)
    if exc.hint:
        print(f"hint: {exc.hint}", file=sys.stderr)
    return exc.exit_code


def _stdout_gone() -> int:
    """The reader of our output went away (``| head``): stop quietly, as a pipeline
    expects. Point stdout at /dev/null so the interpreter's final flush fails no more."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    as_json = bool(getattr(args, "json", False))
    try:
        try:
            code = int(COMMANDS[args.command][2](args, RunStore(args.home)) or 0)
            sys.stdout.flush()  # a closed pipe shows here, not at exit
            return code
        except SgdscopeError as exc:
            return _report(exc, as_json)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 128 + signal.SIGINT
        except BrokenPipeError:
            raise
        except Exception as exc:  # the funnel: files and system errors become messages
            err = as_sgdscope_error(exc)
            if err is None:
                if os.environ.get("SGDSCOPE_DEBUG"):
                    raise
                err = SgdscopeError(f"internal error: {type(exc).__name__}: {exc}",
                                    "This is a bug in sgdscope. Rerun with SGDSCOPE_DEBUG=1 for the "
                                    "traceback, and report it.")
            return _report(err, as_json)
    except BrokenPipeError:
        return _stdout_gone()


if __name__ == "__main__":
    # Run the importable module's main: subcommand modules register into
    # ``profilers.cli.COMMANDS``, not into this ``__main__`` copy's.
    from profilers import cli as _cli

    sys.exit(_cli.main())

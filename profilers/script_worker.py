"""The script worker: ``python -m profilers.script_worker <exp_dir>``.

Profiles one user script (``sgdscope profile``) and stores it as a run like any other
(``source = "script"``, workload ``script``, variant = the script's name). Started only by
the supervisor (``profilers.session``, experiment kind ``script``), which enforces the
timeout and the cancel, and stores a failed run if this process dies.

1. Scan the script's imports (``script_capture.scan_script``). With TensorFlow, import it
   here (once), wrap Keras ``fit`` with a step-marker callback, open the TF profiler
   window; without it, sample with the signal-delay sampler and mark the script's loops
   (``script_capture.PyCapture``: steps are the training loop's iterations).
2. Run the script unchanged (as ``__main__``, or call ``--function``), with the samplers.
   Its stdout/stderr go to the experiment's worker files and are kept in the run's
   ``logs/``; its exit code and traceback go in ``manifest["script"]``.
3. Cut the capture into steps (Keras markers, or ``step_inference`` on the trace); the
   breakdown, facts and findings then come from ``profilers.analysis`` like every run's
   (``stored_analysis.analyse_before_commit``), and the run is committed.

Imports TensorFlow only when the script uses it. Must not import streamlit.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from profilers import analysis, environment, stored_analysis
from profilers.errors import SgdscopeError
from profilers.model import CATEGORIES, RunProfile, empty_table, new_manifest, validate_table
from profilers.session import emit, now_iso
from profilers.spec import ExperimentSpec
from profilers.store import RunStore, new_id

LOG_KEEP_BYTES = 1_000_000
STDERR_TAIL_CHARS = 4000


def _copy_log(src: Path, dest: Path) -> int:
    """Copy the last ``LOG_KEEP_BYTES`` of a worker output file; returns its full size."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not src.is_file():
        dest.write_text("", encoding="utf-8")
        return 0
    size = src.stat().st_size
    with open(src, "rb") as fh:
        if size > LOG_KEEP_BYTES:
            fh.seek(size - LOG_KEEP_BYTES)
        dest.write_bytes(fh.read())
    return size


def _steps_frame(start_us: np.ndarray, wall_us: np.ndarray, skip: int, *, in_window: bool = True) -> pd.DataFrame:
    n = len(start_us)
    return validate_table("steps", pd.DataFrame({
        "step": np.arange(n, dtype=np.int64), "epoch": np.zeros(n, dtype=np.int64),
        "start_us": start_us.astype(float), "wall_us": wall_us.astype(float),
        "warmup": np.arange(n) < skip, "derived": np.zeros(n, dtype=bool),
        "in_profile_window": np.full(n, in_window), "loss": np.full(n, np.nan)}))


# -- TensorFlow runs ------------------------------------------------------------------------------
def analyse_tf_capture(xplane: Path, recorder_steps: pd.DataFrame | None,
                       capture_start_us: float, skip: int, max_steps: int,
                       cache_dir: Path | None = None) -> dict[str, Any]:
    """The steps of a TF capture: the recorder's (Keras step markers in the trace) or,
    for a custom loop, inferred from the trace (``profilers.step_inference``). Returns
    ``{"tables": {"steps"?}, "results", "capture"}``; everything else about the capture
    (breakdown, op counts, eager share, tf.function facts) is derived by
    ``profilers.analysis`` like any run's. Raises ``TraceUnavailable``/``BadTable`` when the
    capture cannot be read."""
    from profilers import step_inference as si
    from profilers import xprof_tools as xt

    events_all = xt.trace_events(xplane, cache_dir=cache_dir)
    m_steps, _, _ = si.marker_windows(events_all)
    capture: dict[str, Any] = {}
    if len(m_steps) and recorder_steps is not None and not recorder_steps.empty:
        steps = recorder_steps.copy()
        steps["in_profile_window"] = steps["step"].isin(set(m_steps.tolist()))
        capture["steps_from"] = "markers"
        return {"tables": {"steps": validate_table("steps", steps)}, "results": {}, "capture": capture}
    cut = si.infer_steps(events_all)
    capture["steps_from"] = "inferred" if cut.count else "none"
    capture["step_inference"] = {**cut.details, "reason": cut.reason, "method": cut.method}
    if not cut.count:
        return {"tables": {}, "results": {}, "capture": capture}
    keep = min(cut.count, skip + max_steps)
    start_us, end_us = cut.start_us[:keep], cut.end_us[:keep]
    steps = _steps_frame(start_us + capture_start_us, end_us - start_us, min(skip, max(keep - 1, 0)))
    # Where the inferred steps sit on the trace clock, so the analysis can mark them again.
    capture.update(trace_offset_us=float(capture_start_us),
                   inferred_lane=list(cut.lane) if cut.lane else None)
    return {"tables": {"steps": steps}, "results": {}, "capture": capture}


def _loop_mark_steps(marks: Any, t0_ns: int, window: dict[str, Any], skip: int, max_steps: int,
                     cap_info: dict[str, Any]) -> pd.DataFrame | None:
    """Steps of a custom TF loop the trace could not cut (``step_inference`` found no
    pattern, fetch or repeated call): the iterations of the marked training loop inside the
    profiler window. Updates ``cap_info`` the way inferred steps do (the analysis marks them
    on the trace), keeping why the trace alone gave none."""
    loop, why = marks.choose()
    before = dict(cap_info.get("step_inference") or {})
    if loop is None:
        cap_info["step_inference"] = {**before, "loop_marks": why}
        return None
    s_ns, e_ns = marks.iterations(loop.id)
    start_us, end_us = (s_ns - t0_ns) / 1e3, (e_ns - t0_ns) / 1e3
    w0, w1 = window.get("start_us"), window.get("stop_us")
    inside = np.ones(len(start_us), dtype=bool)
    if w0 is not None:
        inside &= start_us >= w0
    if w1 is not None:
        inside &= end_us <= w1
    start_us, end_us = start_us[inside][:skip + max_steps], end_us[inside][:skip + max_steps]
    if len(start_us) < 2:
        cap_info["step_inference"] = {**before, "loop_marks": f"{why}, but fewer than two of its iterations "
                                                              f"fell inside the profiler window"}
        return None
    lane = before.get("dispatch_thread")
    cap_info.update(steps_from="inferred", trace_offset_us=float(w0 or 0.0),
                    inferred_lane=[lane["pid"], lane["tid"]] if lane else None)
    cap_info["step_inference"] = {**before, "method": "loop_marks", "reason": None,
                                  "trace_reason": before.get("reason"), "loop": vars(loop), "why": why}
    return _steps_frame(start_us, end_us - start_us, min(skip, len(start_us) - 1))


# -- runs without TensorFlow ------------------------------------------------------------------------
#: Steps kept from a NumPy script's training loop (its first iterations after warm-up).
MAX_PY_STEPS = 5000


def _py_breakdown(steps: pd.DataFrame, per_ns: np.ndarray) -> pd.DataFrame:
    """Per step: the interpreter's share of the step thread's CPU time as
    ``framework_overhead``, the rest (native code, NumPy's own Python, imports) as
    ``other``, scaled to the step's wall time (time off the CPU is shared out in the same
    proportion). Steps whose ticks measured no CPU time are left out (no split for them)."""
    wall_ms = steps["wall_us"].to_numpy(dtype=float) / 1e3
    cpu = per_ns[:, :4]  # TICK_CLASSES without off_cpu
    covered = cpu.sum(axis=1)
    rows = []
    for k in np.nonzero(covered > 0)[0].tolist():
        interp = wall_ms[k] * cpu[k, 2] / covered[k]
        for c in CATEGORIES:
            ms = interp if c == "framework_overhead" else wall_ms[k] - interp if c == "other" else 0.0
            rows.append((int(steps["step"].iloc[k]), c, ms))
    return validate_table("breakdown", pd.DataFrame({
        "step": np.asarray([r[0] for r in rows], dtype=np.int64),
        "category": pd.array([r[1] for r in rows], dtype="string"),
        "ms": np.asarray([r[2] for r in rows], dtype=float)}))


def analyse_py_capture(capture: Any, script_files: set[str], skip: int = 3) -> dict[str, Any]:
    """Steps and breakdown of a sampled script (no TensorFlow).

    Steps are the iterations of the training loop ``LoopMarks.choose`` picks; each step's
    split into interpreter (``framework_overhead``) and native/NumPy (``other``) time comes
    from the ``DelaySampler`` ticks inside it. Without a training loop the breakdown covers
    the whole run as one pseudo-step, ``-1``, and the capture says why there are no steps.
    """
    from profilers.script_capture import lines_in, split_ticks, ticks_per_step

    interval_ns = capture.interval_s * 1e9
    latency_ns = capture.sampler.latency_ns if capture.sampler is not None else None
    split = split_ticks(capture.records, script_files, interval_ns, latency_ns)
    sec = split["seconds"]
    marks = capture.loop_marks
    loop, why = marks.choose()
    sampler_cost_ms = capture.sampler.cost_cpu_ns / 1e6 if capture.sampler is not None else 0.0
    sampler_wall_ms = capture.sampler.cost_ns / 1e6 if capture.sampler is not None else 0.0
    marks_ms = marks.mark_count * (marks.mark_cost_ns or 0.0) / 1e6
    wall_ms = capture.wall_ns / 1e6
    harness = {
        "components": {
            "signal_delay_sampler": {"ticks": len(capture.records), "interval_s": capture.interval_s,
                                     "timer_latency_us": round(latency_ns / 1e3, 1) if latency_ns else None,
                                     "handler_cpu_ms_total": round(sampler_cost_ms, 3),
                                     "handler_wall_ms_total": round(sampler_wall_ms, 3),
                                     "measured_as": "thread_time (and perf_counter) around each SIGALRM "
                                                    "handler"},
            "loop_marks": {"loops_marked": len(marks.loops), "marks": marks.mark_count,
                           "ns_per_mark": round(marks.mark_cost_ns or 0.0, 1),
                           "ms_total": round(marks_ms, 3),
                           "measured_as": "marks done x the cost of one mark, timed at start"}},
        "added_ms": round(sampler_cost_ms + marks_ms, 3),
        "inflation": round((sampler_cost_ms + marks_ms) / max(wall_ms - sampler_cost_ms - marks_ms, 1e-9), 4)
        if wall_ms > 0 else None,
        "note": "time sgdscope's own capture added to the script's run; the breakdown leaves the "
                "sampler's handler time out of every class",
    }
    results: dict[str, Any] = {
        "profiler": "signal-delay sampler",
        "sampled_s": {k: round(v, 4) for k, v in sec.items()},
        "top_lines": split["top_lines"], "top_functions": split["top_functions"],
        "breakdown_source": ("SIGALRM ticks on the script's thread: time beyond each tick's interval is "
                             "native (NumPy/BLAS or other C code: the handler waited for the call to "
                             "return), the rest is the interpreter (as `framework_overhead`); NumPy's own "
                             "Python and imports count with native work (as `other`). Measured on the "
                             "thread's CPU clock; its time off the CPU is shared out in proportion"),
    }
    cap: dict[str, Any] = {"profiler": "signal-delay sampler + loop marks", "samples": len(capture.records),
                           "interval_s": capture.interval_s, "harness": harness,
                           "loops": [vars(lp) for lp in marks.loops][:20]}
    if capture.sampler_error:
        cap["sampler_error"] = capture.sampler_error
    tables: dict[str, pd.DataFrame] = {}
    if loop is not None:
        s_ns, e_ns = marks.iterations(loop.id)
        s_ns, e_ns = s_ns[:MAX_PY_STEPS], e_ns[:MAX_PY_STEPS]
        t0 = capture.t0_ns
        n = len(s_ns)
        steps = _steps_frame((s_ns - t0) / 1e3, (e_ns - s_ns) / 1e3, min(skip, max(n - 1, 0)))
        per = ticks_per_step(split["ticks"], s_ns - t0, e_ns - t0)
        bd = _py_breakdown(steps, per)
        tables = {"steps": steps}
        if not bd.empty:
            tables["breakdown"] = bd
        cap["steps_from"] = "loop_marks"
        cap["step_inference"] = {"method": "loop_marks", "reason": None, "loop": vars(loop), "why": why,
                                 "iterations": int(len(marks.starts.get(loop.id, []))),
                                 "steps_kept": n, "steps_with_ticks": int((per.sum(axis=1) > 0).sum())}
        results["steps_note"] = f"steps are the iterations of {why}"
        wall = e_ns - s_ns
        med = float(np.median(wall[skip:] if n > skip else wall))
        results["outlier_steps"] = [
            {"step": int(k), "ms": round(float(wall[k]) / 1e6, 3),
             "top_lines": lines_in(split["ticks"], float(s_ns[k] - t0), float(e_ns[k] - t0))}
            for k in np.nonzero(wall > 5.0 * med)[0][:10].tolist()] if med > 0 else []
        if bd.empty:
            cap["step_inference"]["breakdown_reason"] = ("no sampler tick measured CPU time inside the loop's "
                                                         "iterations")
    if "breakdown" not in tables:
        total = sum(sec.values())
        cpu = total - sec["off_cpu"]
        interp = total * sec["interpreter"] / cpu if cpu > 0 else 0.0
        bd = pd.DataFrame({"step": np.full(len(CATEGORIES), -1, dtype=np.int64),
                           "category": pd.array(list(CATEGORIES), dtype="string"),
                           "ms": [1e3 * ((total - interp) if c == "other" else interp
                                         if c == "framework_overhead" else 0.0) for c in CATEGORIES]})
        tables["breakdown"] = validate_table("breakdown", bd)
        if loop is None:
            cap["steps_from"] = "none"
            cap["step_inference"] = {"method": "none", "reason": why}
            results["steps_note"] = f"no steps: {why}; the breakdown covers the whole run (step -1)"
    return {"tables": tables, "results": results, "capture": cap}


# -- the run -------------------------------------------------------------------------------------
def profile_script(spec: ExperimentSpec, exp_dir: Path, store: RunStore) -> RunProfile:
    from profilers.samplers import SamplerSet
    from profilers.script_capture import PyCapture, TfCapture, run_user_code, scan_script, tf_function_report

    p = spec.params
    script = Path(p["script"]).resolve()
    variant = spec.variants[0]
    run_id = new_id("script", variant)
    emit(exp_dir, "variant_start", variant=variant, run_id=run_id, total_steps=None)
    staged = store.staging_dir(run_id)
    skip, max_steps, window_s = int(p.get("skip_steps", 3)), int(p.get("max_steps", 50)), float(p.get("window_s", 8.0))
    scan = scan_script(script)
    env = environment.collect()
    tf = None
    if scan.uses_tf:
        emit(exp_dir, "phase", text="importing TensorFlow")
        t = time.perf_counter()
        import tensorflow as tf  # the script imports it anyway: paid once, here

        import_s = time.perf_counter() - t
    t0 = time.perf_counter_ns()
    capture: Any
    if tf is not None:
        capture = TfCapture(logdir=staged / "trace", t0_ns=t0, skip_steps=skip, max_steps=max_steps,
                            window_s=window_s, keras_mode=scan.uses_keras_fit,
                            script_files=frozenset(scan.files))
    else:
        capture = PyCapture(t0_ns=t0)
    from profilers.script_capture import LoopMarks

    # A custom TF loop's iterations are marked too: the steps when the trace shows none.
    marks = capture.loop_marks if tf is None else None if scan.uses_keras_fit else LoopMarks()
    samplers = SamplerSet(spec.samplers, interval_s=spec.sample_interval_s, t0_ns=t0,
                          live_path=exp_dir / f"live-{variant}.jsonl")
    emit(exp_dir, "phase", text="running the script")
    started = now_iso()
    samplers.start()
    harness_error = None
    from profilers.contention import ContentionMeter

    meter = ContentionMeter()  # the script's thread waiting for a core (a busy machine)
    try:
        meter.start()
        from profilers.fixes import apply as apply_fixes  # sgdscope whatif: fixes from outside the script

        with apply_fixes(list(p.get("fixes") or []), [str(script), *scan.files]) as applied_fixes, \
                capture.around_script():
            try:
                outcome = run_user_code(script, p.get("function"), list(p.get("argv") or []),
                                        loop_marks=marks)
            except SgdscopeError as exc:  # e.g. --function names no function: the run fails with it
                from profilers.script_capture import ScriptOutcome

                harness_error = f"{exc.message} {exc.hint}".strip()
                print(harness_error, file=sys.stderr)
                outcome = ScriptOutcome(exit_code=2, exception=harness_error)
    finally:
        meter.stop()
        samples = samplers.stop()
    wall_s = (time.perf_counter_ns() - t0) / 1e9
    emit(exp_dir, "phase", text="analysing the capture")
    script_info: dict[str, Any] = {
        "path": str(script), "function": p.get("function"), "argv": list(p.get("argv") or []),
        "exit_code": outcome.exit_code, "exception": outcome.exception, "traceback": outcome.traceback,
        "wall_s": outcome.wall_s, "scan": {"uses_tf": scan.uses_tf, "uses_keras_fit": scan.uses_keras_fit,
                                           "imports": scan.imports, "files": scan.files},
        "stdout": "logs/stdout.txt", "stderr": "logs/stderr.txt", "fixes": applied_fixes.report(),
    }
    tables: dict[str, pd.DataFrame] = {"samples": samples}
    results: dict[str, Any] = {}
    cap_info: dict[str, Any] = {"profiled": True, "xplane": None, "source": "script"}
    recorder = getattr(capture, "recorder", None)
    window_meter = getattr(capture, "meter", None)
    if recorder is not None and recorder.steps_done:  # Keras fit: over the marked steps
        cap_info["cpu_contention"] = {**recorder.contention, "span": "the profiled Keras steps"}
    elif window_meter is not None and window_meter.result is not None:  # a custom loop's time window
        cap_info["cpu_contention"] = {**window_meter.result, "span": "the profiler's time window"}
    else:
        cap_info["cpu_contention"] = {**(meter.result or {}), "span": "the whole script run"}
    if tf is not None:
        env["tensorflow"] = environment.collect_tf(tf)  # after the run: the script's thread settings
        env["tensorflow"]["import_s"] = import_s
        script_info["tf_functions"] = tf_function_report()
        script_info["tf_warnings"] = capture.tf_warnings()
        cap_info["harness"] = capture.harness(samplers.stats(), wall_s)
        if capture.stacks is not None:
            tables["py_stacks"] = capture.stacks.table()
        cap_info["window"] = capture.window()
        found = sorted((staged / "trace").glob("plugins/profile/*/*.xplane.pb"))
        rec_steps = capture.recorder.finish()["steps"] if capture.recorder is not None else None
        if rec_steps is not None and not rec_steps.empty:
            tables["steps"] = rec_steps
        if found:
            xplane = found[-1]
            cap_info["xplane"] = str(xplane.relative_to(staged))
            start_us = cap_info["window"]["start_us"] or 0.0
            try:
                got = analyse_tf_capture(xplane, rec_steps, start_us, skip, max_steps, cache_dir=staged / "cache")
                tables.update(got["tables"])
                results.update(got["results"])
                cap_info.update(got["capture"])
            except SgdscopeError as exc:  # the run is kept; the reason is shown with it
                cap_info["analysis_error"] = f"{type(exc).__name__}: {exc.message} {exc.hint}".strip()
            if cap_info.get("steps_from") == "none" and marks is not None:
                found_steps = _loop_mark_steps(marks, t0, capture.window(), skip, max_steps, cap_info)
                if found_steps is not None:
                    tables["steps"] = found_steps
        else:
            cap_info["unavailable_reason"] = capture.window().get("error") or (
                "the profiler window never opened (Keras fit was expected but no training step ran)"
                if scan.uses_keras_fit else "the profiler wrote no xplane")
    else:
        cap_info["unavailable_reason"] = ("no TensorFlow in the script: no TF trace; sampled with the "
                                          "signal-delay sampler instead")
        got = analyse_py_capture(capture, set(scan.files), skip)
        tables.update(got["tables"])
        results.update(got["results"])
        cap_info.update(got["capture"])
    steps = tables.get("steps", empty_table("steps"))
    results.update({"steps": int(len(steps)), "step_ms": analysis.step_stats(steps),
                    "final_loss": float(steps["loss"].dropna().iloc[-1]) if steps["loss"].notna().any() else None,
                    "baseline_loss": None, "loss_matches_baseline": None})
    out_size = _copy_log(exp_dir / "worker.stdout", staged / "logs" / "stdout.txt")
    err_size = _copy_log(exp_dir / "worker.stderr", staged / "logs" / "stderr.txt")
    script_info.update(stdout_bytes=out_size, stderr_bytes=err_size)
    status = "ok" if outcome.exit_code == 0 else "failed"
    error = None
    if status == "failed":
        error = harness_error or (f"the script raised {outcome.exception}" if outcome.traceback
                                  else f"the script exited with code {outcome.exit_code}")
    stderr_tail = outcome.traceback or (staged / "logs" / "stderr.txt").read_text(
        encoding="utf-8", errors="replace")[-STDERR_TAIL_CHARS:]
    manifest = new_manifest(
        run_id=run_id, experiment_id=spec.experiment_id, order=0,
        workload="script", variant=variant, params=p,
        status=status, error=error, stderr_tail=stderr_tail[-STDERR_TAIL_CHARS:], created_at=started,
        timings={"started_at": started, "finished_at": now_iso(), "wall_s": wall_s},
        environment=env, results=results, capture=cap_info,
        samplers=samplers.status(), source="script", script=script_info)
    profile = RunProfile(manifest=manifest, tables=tables)
    profile.run_dir = staged
    stored_analysis.analyse_before_commit(profile, store)
    store.commit(profile, staged)
    emit(exp_dir, "variant_end", variant=variant, run_id=run_id, status=status)
    return profile


def main(exp_dir: Path) -> int:
    from profilers.store import claim_process

    claim_process()  # a child the script forks never runs sgdscope's code as this worker
    spec = ExperimentSpec.load(exp_dir / "spec.json")
    store = RunStore(os.environ.get("SGDSCOPE_HOME"))
    profile_script(spec, exp_dir, store)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))

"""Sweep page: run one workload over several problem sizes and see where TF overtakes NumPy.

A sweep runs as ``python -m profilers.cli sweep ... --json`` in a background process of
its own session (the page never blocks on it): its job folder
``$SGDSCOPE_HOME/_sweep_jobs/<job>/`` holds ``job.json`` (the command, pid, grid),
``stdout.json`` (the CLI's JSON answer) and ``stderr.log``. A fragment polls it every
second: sizes done out of the grid (from the sweep's experiments, found by their specs),
the current size's variants, and Stop (kill the sweep's process group, then touch
``cancel`` in the unfinished experiment, whose supervisor stops its own worker).

Results of any stored sweep (``profilers.sweep``): median step per variant against
problem size (log-log) with the sizes where the best TF variant beats NumPy marked, the
summary sentence and the ratio table. Must not import tensorflow or pynvml; the workload
registry is imported only inside the page's functions.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import streamlit as st

from dashboard import charts, loaders, nav, ui
from profilers.errors import BadInput, CaptureFailed, SgdscopeError
from profilers.model import atomic_write_text, dumps
from profilers.session import PROJECT_ROOT
from profilers.spec import DEFAULT_TIMEOUT_S, ExperimentSpec, parse_param_args
from profilers.store import RunStore, new_id
from profilers.sweep import crossover_table, describe_crossover, list_sweeps, parse_grid, size_label, sweep_points

POLL_S = 1.0
JOB_KEY = "sweep_job"
JOBS_DIR = "_sweep_jobs"
BASELINE = "numpy"
TF_PREFIXES = ("tf_", "keras")
#: Sizes offered first for a workload (``key=v1,v2`` lines, zipped); others get their first int param x1, x10.
DEFAULT_SIZES = {"linreg": "m=3,100,1000,10000\nn=2,10,100,100"}
DEFAULT_FIXED = {"linreg": "steps=200"}


# -- the background job -------------------------------------------------------------------------
def jobs_dir(store: RunStore) -> Path:
    return store.home / JOBS_DIR


def read_job(store: RunStore, job_id: str) -> dict[str, Any]:
    path = jobs_dir(store) / job_id / "job.json"
    if not path.is_file():
        raise CaptureFailed(f"No sweep job {job_id} in {store.home}.", "Start a sweep with the form above.")
    return json.loads(path.read_text(encoding="utf-8"))


def start_job(store: RunStore, workload: str, variants: list[str], grid: list[dict[str, str]],
              base_params: dict[str, str], timeout_s: float) -> str:
    """Start ``sgdscope sweep`` in the background (own session, output to the job folder)
    and return the job id at once."""
    job_id = new_id("sweep", workload)
    folder = jobs_dir(store) / job_id
    folder.mkdir(parents=True)
    cmd = [sys.executable, "-m", "profilers.cli", "sweep", workload, "--variants", ",".join(variants)]
    for key in grid[0]:
        cmd += ["--grid", f"{key}={','.join(str(p[key]) for p in grid)}"]
    for key, value in base_params.items():
        cmd += ["--param", f"{key}={value}"]
    cmd += ["--timeout", f"{timeout_s:g}", "--json", "--home", str(store.home)]
    env = dict(os.environ, SGDSCOPE_HOME=str(store.home),
               PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])))
    started = time.time()
    with open(folder / "stdout.json", "wb") as out, open(folder / "stderr.log", "wb") as err:
        proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=err, start_new_session=True)
    atomic_write_text(folder / "job.json", dumps({
        "job_id": job_id, "pid": proc.pid, "started_at": started, "cmd": cmd, "workload": workload,
        "variants": variants, "grid": grid, "base_params": base_params, "timeout_s": timeout_s}))
    return job_id


def _alive(store: RunStore, job: Mapping[str, Any]) -> bool:
    """Whether the sweep process still runs; reaps it when this server started it."""
    pid = int(job["pid"])
    try:
        waited, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # started by another server process, or reaped already
        pass
    else:
        if waited == pid:
            atomic_write_text(jobs_dir(store) / job["job_id"] / "exit.json",
                              dumps({"code": os.waitstatus_to_exitcode(status)}))
            return False
        return True
    if (jobs_dir(store) / job["job_id"] / "exit.json").exists():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    """A process that ended but was not reaped yet (its parent is another server) is over."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def job_experiments(store: RunStore, job: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """``(experiment_id, finished)`` of the experiments this sweep launched, oldest first:
    the ones created since the job started whose spec is one of its points."""
    wanted = [{**job["base_params"], **point} for point in job["grid"]]
    out = []
    folder = store.experiments
    if not folder.is_dir():
        return out
    for exp_dir in sorted(folder.iterdir()):
        spec_path = exp_dir / "spec.json"
        if not spec_path.is_file() or spec_path.stat().st_mtime < job["started_at"] - 1:
            continue
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        if spec.get("workload") == job["workload"] and spec.get("variants") == job["variants"] \
                and spec.get("params") in wanted:
            out.append((exp_dir.name, (exp_dir / "status.json").exists()))
    return out


def job_state(store: RunStore, job: Mapping[str, Any]) -> dict[str, Any]:
    """``status`` (running / finished / stopped / failed), sizes ``done`` of ``total``,
    the ``current`` experiment, the ``sweep_id`` when the CLI answered, and an ``error``."""
    folder = jobs_dir(store) / job["job_id"]
    alive = _alive(store, job)
    exps = job_experiments(store, job)
    state: dict[str, Any] = {"status": "running", "done": sum(1 for _, f in exps if f),
                             "total": len(job["grid"]), "current": next((e for e, f in exps if not f), None),
                             "experiments": [e for e, _ in exps], "sweep_id": None, "error": None}
    if alive:
        return state
    state["current"] = None
    answer: dict[str, Any] = {}
    text = (folder / "stdout.json").read_text(encoding="utf-8", errors="replace").strip()
    if text:
        try:
            answer = json.loads(text)
        except json.JSONDecodeError:
            answer = {}
    if (folder / "stopped").exists():
        state["status"] = "stopped"
    elif answer.get("sweep_id"):
        state["status"] = "finished"
    else:
        state["status"] = "failed"
        tail = (folder / "stderr.log").read_text(encoding="utf-8", errors="replace")[-2000:].strip()
        state["error"] = " ".join(filter(None, [answer.get("error"), answer.get("hint")])) or tail \
            or "the sweep process ended without an answer"
    state["sweep_id"] = answer.get("sweep_id") or _record_of(store, state["experiments"])
    return state


def _record_of(store: RunStore, experiment_ids: list[str]) -> str | None:
    """The stored sweep whose experiments are this job's (a stopped sweep keeps the sizes it finished)."""
    ids = set(experiment_ids)
    for record in list_sweeps(store):
        if record["experiments"] and {e["experiment_id"] for e in record["experiments"]} <= ids:
            return record["sweep_id"]
    return None


def stop_job(store: RunStore, job: Mapping[str, Any]) -> None:
    """Kill the sweep's process group (no further size starts), then cancel the size that
    was running: its supervisor stops its worker and stores the runs as cancelled."""
    folder = jobs_dir(store) / job["job_id"]
    (folder / "stopped").touch()
    try:
        os.killpg(int(job["pid"]), signal.SIGTERM)
    except ProcessLookupError:
        pass  # already over
    deadline = time.monotonic() + 3.0
    while _alive(store, job) and time.monotonic() < deadline:
        time.sleep(0.05)
    for exp_id, finished in job_experiments(store, job):
        if not finished:
            (store.experiments / exp_id / "cancel").touch()


# -- form ---------------------------------------------------------------------------------------
def parse_lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace(";", "\n").splitlines() if line.strip()]


def default_sizes(workload: Any) -> str:
    if workload.name in DEFAULT_SIZES:
        return DEFAULT_SIZES[workload.name]
    p = next((p for p in workload.params.values() if p.kind is int and p.default), None)
    return "" if p is None else f"{p.name}={p.default},{p.default * 10}"


def default_variants(workload: Any, usable: list[str]) -> list[str]:
    tf = [v for v in usable if v.startswith(TF_PREFIXES)][:2]
    first = [workload.baseline] if workload.baseline in usable else []
    return list(dict.fromkeys(first + tf)) or usable[:2]


def sweep_form(registry: Mapping[str, Any], store: RunStore) -> None:
    names = sorted(registry)
    wname = st.selectbox("Workload", names, index=names.index("linreg") if "linreg" in names else 0,
                         key="sweep_workload")
    w = registry[wname]
    usable, missing = ui.variant_options(w)
    with st.form(f"sweep_{wname}"):
        variants = st.multiselect("Variants", usable, default=default_variants(w, usable),
                                  help="The crossover needs numpy and at least one TF variant.")
        c1, c2 = st.columns(2)
        sizes = c1.text_area("Sizes (one swept param per line: key=v1,v2,...; the lines are zipped)",
                             value=default_sizes(w), height=110,
                             help="e.g. m=3,100,1000 and n=2,10,100 give the sizes 3×2, 100×10, 1000×100. "
                                  f"Params of {wname}: {', '.join(w.params)}.")
        fixed = c2.text_area("Fixed params (key=value per line)", value=DEFAULT_FIXED.get(wname, ""),
                             height=110, help="The same at every size, e.g. steps=200.")
        timeout_s = st.number_input("Timeout per size (s)", min_value=1.0, value=float(DEFAULT_TIMEOUT_S),
                                    step=30.0, format="%g")
        go = st.form_submit_button("Start sweep", type="primary")
    if missing:
        st.caption("Not available here: " + "; ".join(f"**{n}**: {r}" for n, r in missing.items()))
    if not go:
        return
    try:
        grid = parse_grid(parse_lines(sizes))
        base = parse_param_args(parse_lines(fixed))
        both = sorted(set(grid[0]) & set(base)) if grid else []
        if not grid:
            raise BadInput("No sizes given.", "Add a line such as m=3,100,1000.")
        if both:
            raise BadInput(f"{', '.join(both)} is both swept and fixed.", "Keep it in one of the two boxes.")
        for point in grid:  # every size is checked here, before anything starts
            ExperimentSpec(workload=wname, variants=list(variants), params={**base, **point},
                           timeout_s=float(timeout_s), samplers=["host"]).validate()
    except SgdscopeError as exc:
        ui.show_error(exc)
        return
    st.session_state[JOB_KEY] = start_job(store, wname, list(variants), grid, base, float(timeout_s))


# -- watching -----------------------------------------------------------------------------------
@st.fragment(run_every=POLL_S)
def running_panel(job_id: str) -> None:
    """Re-run every second while the sweep runs; a full rerun when it is over."""
    try:
        store = loaders.store()
        job = read_job(store, job_id)
        state = job_state(store, job)
        if state["status"] != "running":
            st.rerun()
        st.subheader("Sweep running")
        st.caption(f"Job {job_id}: {job['workload']} · {', '.join(job['variants'])} · "
                   f"sizes {', '.join(size_label(p) for p in job['grid'])}")
        st.progress(min(1.0, state["done"] / state["total"]),
                    text=f"**{state['done']}/{state['total']} sizes done**")
        if state["current"]:
            current = loaders.handle(state["current"]).progress()
            point = json.loads((store.experiments / state["current"] / "spec.json").read_text())["params"]
            label = size_label({k: point[k] for k in job["grid"][0]})
            st.markdown(f"Size **{label}** (experiment {state['current']}), phase: "
                        f"{current.get('phase') or 'starting'}")
            ui.progress_bars(current)
        if (jobs_dir(store) / job_id / "stopped").exists():
            st.warning("Stop requested: the sweep is being stopped.")
        elif st.button("Stop sweep", key=f"stop_{job_id}"):
            stop_job(store, job)
            st.rerun()
    except SgdscopeError as exc:
        ui.show_error(exc)


def finished_panel(job_id: str, state: Mapping[str, Any]) -> None:
    text = f"Sweep job {job_id}: {state['done']}/{state['total']} sizes done"
    if state["status"] == "finished":
        st.success(f"{text}; stored as sweep {state['sweep_id']}.")
    elif state["status"] == "stopped":
        kept = f"the finished sizes are stored as sweep {state['sweep_id']}." if state["sweep_id"] \
            else "no size had finished, so no sweep was stored."
        st.warning(f"{text}, then stopped; {kept}")
    else:
        st.error(f"{text}; the sweep failed: {state['error']}")
    if st.button("Dismiss", key=f"dismiss_{job_id}"):
        st.session_state.pop(JOB_KEY, None)
        st.rerun()


# -- results ------------------------------------------------------------------------------------
def marks_frame(table: pd.DataFrame, summary: Mapping[str, Any]) -> pd.DataFrame:
    """Sizes where the best TF variant beat the baseline, with the size it overtakes at named."""
    faster = set(summary["tf_faster_at"])
    rows = [{"size": float(r["size"]), "label": r["label"],
             "text": f"TF overtakes {BASELINE} ({r['label']})" if r["label"] == summary["overtakes_at"]
             else f"TF faster ({r['label']})"}
            for r in table.to_dict("records") if r["label"] in faster]
    return pd.DataFrame(rows, columns=["size", "label", "text"])


def ratio_table(table: pd.DataFrame, variants: list[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    ms_cols = [v for v in variants if v in table.columns]
    ratio_cols = [c for c in table.columns if c.endswith("_over_numpy")]
    cols = ["label", *ms_cols, *(["best_tf"] if "best_tf" in table.columns else []), *ratio_cols]
    config: dict[str, Any] = {"label": st.column_config.TextColumn("size")}
    config.update({c: st.column_config.NumberColumn(f"{c} ms", format="%.4g") for c in ms_cols})
    config.update({c: st.column_config.NumberColumn(c.replace("_over_numpy", f" / {BASELINE}"), format="%.3g×")
                   for c in ratio_cols})
    return table[cols], config


def results(store: RunStore, focus: str | None) -> None:
    st.subheader("Stored sweeps")
    records = {r["sweep_id"]: r for r in list_sweeps(store)}
    if not records:
        st.info("No stored sweep yet. Start one above, or from a terminal: "
                "`sgdscope sweep linreg --variants numpy,tf_function --grid m=3,100,1000 --grid n=2,10,100`.")
        return
    if focus in records and st.session_state.get("_sweep_focused") != focus:
        st.session_state["_sweep_focused"] = focus
        st.query_params["sweep"] = focus

    def label(sid: str) -> str:
        r = records[sid]
        return (f"{sid} · {r['workload']}: {', '.join(r['variants'])} · "
                f"{len(r['experiments'])}/{len(r['grid'])} sizes")

    sid = ui.synced_select("Sweep", list(records), key="sweep_pick", param="sweep", format_func=label,
                           help="Newest first.")
    record = records[sid]
    points = sweep_points(store, record)
    drawn = points[(points["status"] == "ok") & points["median_ms"].notna()]
    if drawn.empty:
        st.info("No size of this sweep has a measured step time yet (every run failed, or none finished).")
    failed = points[points["status"] != "ok"]
    table, summary = crossover_table(points, baseline=BASELINE, tf_prefixes=TF_PREFIXES)
    has_crossover = "best_tf" in table.columns
    if not drawn.empty:
        if has_crossover:
            st.markdown(f"**{describe_crossover(summary, baseline=BASELINE)}**")
        else:
            st.info(f"No crossover to find: it needs {BASELINE} and at least one TF variant that finished "
                    "at the same size.")
        marks = marks_frame(table, summary) if has_crossover else None
        st.altair_chart(charts.crossover_chart(drawn, "size", "median_ms", "variant", "label", marks),
                        width="stretch")
        st.caption("Dashed lines: the sizes where the best TF variant's median step beats "
                   f"{BASELINE}'s." if has_crossover else "One line per variant.")
        shown, config = ratio_table(table, record["variants"])
        st.dataframe(shown, column_config=config, hide_index=True, width="stretch")
    if not failed.empty:
        st.warning("Runs that did not finish: " + "; ".join(
            f"{r['label']} / {r['variant']}: {r['status']}" for r in failed.to_dict("records")))
    with st.expander("Experiments of this sweep", expanded=False):
        for exp in record["experiments"]:
            st.page_link(nav.path("compare"), label=f"{exp['label']}: {exp['status']} ({exp['experiment_id']})",
                         icon=":material/compare_arrows:", query_params={"exp": exp["experiment_id"]})
    missing = len(record["grid"]) - len(record["experiments"])
    if missing:
        st.caption(f"{missing} size(s) of the grid did not run (the sweep was stopped or is still running).")


def main() -> None:
    st.title("Sweep")
    st.caption("One workload over several problem sizes and variants, one experiment per size: where does "
               "the best TF variant overtake NumPy? The sweep runs in the background; this page polls it.")
    store = loaders.store()
    registry = loaders.workloads()
    if registry:
        with st.expander("New sweep", expanded=JOB_KEY not in st.session_state):
            sweep_form(registry, store)
    job_id = st.session_state.get(JOB_KEY)
    focus = None
    if job_id:
        state = job_state(store, read_job(store, job_id))
        if state["status"] == "running":
            running_panel(job_id)
        else:
            finished_panel(job_id, state)
            focus = state["sweep_id"]
    results(store, focus)


ui.run_page(main)

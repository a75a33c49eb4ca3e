"""Input pipeline page: the tf.data fix ladder (workload ``input_pipeline``), run in order
and read rung by rung.

"Run the ladder" launches one experiment (``profilers.session.launch``: returns at once;
a fragment polls its progress, with Cancel) over the rungs naive → prefetch → parallel
map → cache → vectorized → all, with params from the workload's ``Param`` declarations
(the Launch page's widgets) or its ArtificialDataset preset. For a stored ladder: each
rung's median step and stall share (the ``input_wait`` share of the step), its speed-up
vs naive, and, when the ladder was profiled, the slowest stage of xprof's tf.data stage
table (``profilers.xprof_tools.run_tables``, cached in the run directory). A value that
was not measured is left blank, never 0.

Must not import tensorflow or pynvml; the workload registry and xprof_tools are imported
only inside the page's functions.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import pandas as pd
import streamlit as st

from dashboard import charts, frames, loaders, ui
from profilers.errors import BadInput, SgdscopeError
from profilers.model import RunProfile
from profilers.session import launch
from profilers.spec import DEFAULT_TIMEOUT_S, ExperimentSpec

WORKLOAD = "input_pipeline"
BASELINE = "naive"
#: Rungs in ladder order; each adds one tf.data fix to naive (``all`` has every fix).
LADDER: tuple[str, ...] = ("naive", "prefetch", "parallel_map", "cache", "vectorized", "interleave", "all")
DEFAULT_RUNGS: tuple[str, ...] = ("naive", "prefetch", "parallel_map", "cache", "vectorized", "all")
NO_PRESET = "(none)"
POLL_S = 1.0
EXP_KEY = "pipeline_experiment"
PROFILE_HINT = "profile the ladder to see the slow tf.data stage"


# -- the ladder of one experiment (pure) ----------------------------------------------------------
def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def ladder_order(variants: Sequence[str]) -> list[str]:
    """Ladder rungs first, in ladder order; any other variant after them, as given."""
    return [v for v in LADDER if v in variants] + [v for v in variants if v not in LADDER]


def vs_naive(median_ms: float | None, naive_ms: float | None, rung: str) -> tuple[float | None, str]:
    """``(naive median / rung median, text)``: > 1 is faster than naive."""
    if rung == BASELINE:
        return (1.0, "baseline") if median_ms is not None else (None, "not measured")
    if median_ms is None or naive_ms is None or median_ms <= 0:
        return None, "no naive run" if naive_ms is None else "not measured"
    ratio = naive_ms / median_ms
    return ratio, f"{frames.format_ratio(ratio)} faster" if ratio >= 1 else f"{frames.format_ratio(1 / ratio)} slower"


def ladder_frame(profiles: Sequence[RunProfile]) -> pd.DataFrame:
    """One row per rung in ladder order: status, median step, stall share, input wait, speed-up."""
    by_variant = {p.manifest.get("variant"): p for p in profiles}
    naive = by_variant.get(BASELINE)
    naive_res = (naive.manifest.get("results") or {}) if naive is not None and naive.manifest.get("status") == "ok" else {}
    naive_ms = _number((naive_res.get("step_ms") or {}).get("median"))
    rows = []
    for rung in ladder_order(list(by_variant)):
        p = by_variant[rung]
        m = p.manifest
        res = (m.get("results") or {}) if m.get("status") == "ok" else {}
        median = _number((res.get("step_ms") or {}).get("median"))
        ratio, text = vs_naive(median, naive_ms, rung)
        rows.append({"rung": rung, "status": m.get("status"), "median_ms": median,
                     "stall_share": _number(res.get("input_wait_share")),
                     "input_wait_ms": _number(res.get("input_wait_ms_median")),
                     "speedup": ratio, "vs_naive": text, "run_id": p.run_id, "error": m.get("error")})
    return pd.DataFrame(rows, columns=["rung", "status", "median_ms", "stall_share", "input_wait_ms", "speedup",
                                       "vs_naive", "run_id", "error"])


def slowest_stage(stages: pd.DataFrame) -> dict[str, Any] | None:
    """The tf.data stage with the most self time (xprof's ``input_stages`` table)."""
    if stages.empty or stages["self_ms"].isna().all():
        return None
    row = stages.loc[stages["self_ms"].idxmax()]
    return {"stage": str(row["stage"]), "self_ms": float(row["self_ms"]),
            "self_pct": _number(float(row["self_pct"])), "count": int(row["count"])}


def stage_of(p: RunProfile) -> tuple[dict[str, Any] | None, str]:
    """``(slowest stage, note)`` of one run: the stage, or why there is none."""
    xplane = p.xplane_path()
    if xplane is None:
        return None, "not profiled"
    from profilers import xprof_tools

    try:
        tables = xprof_tools.run_tables(xplane, cache_dir=p.run_dir / "cache").tables
    except SgdscopeError as exc:  # absent/corrupt trace, xprof missing, unexpected table
        return None, f"trace unreadable: {exc.message}"
    found = slowest_stage(tables.get("input_stages", pd.DataFrame(columns=["self_ms"])))
    return (found, "") if found is not None else (None, "xprof found no tf.data stage in the trace")


# -- launching ----------------------------------------------------------------------------------
def ladder_form(w: Any) -> None:
    from workloads.input_pipeline import ARTIFICIAL_VARIANTS

    preset = NO_PRESET
    if w.presets:
        preset = st.selectbox("Preset", [NO_PRESET, *w.presets], key="pipeline_preset",
                              help="artificial_dataset: the tf.data guide's ArtificialDataset (open 30 ms, "
                                   "read 15 ms per sample, train step 10 ms); its rungs are naive, prefetch "
                                   "and interleave.")
    base = {n: p.default for n, p in w.params.items()}
    if preset != NO_PRESET:
        base.update(w.presets[preset])
    usable, missing = ui.variant_options(w)
    artificial = base.get("source") == "artificial"
    offered = [v for v in ladder_order(usable) if not artificial or v in ARTIFICIAL_VARIANTS]
    default = [v for v in (ARTIFICIAL_VARIANTS if artificial else DEFAULT_RUNGS) if v in offered]
    with st.form(f"ladder_{preset}"):
        rungs = st.multiselect("Rungs", offered, default=default,
                               help="\n".join(f"- **{n}**: {w.variants[n].help}" for n in offered)
                                    + "\n\nThey run in ladder order whatever the order chosen here.")
        cols = st.columns(3)
        values = {}
        for i, p in enumerate(w.params.values()):
            with cols[i % 3]:
                values[p.name] = ui.param_widget(p, base[p.name], key=f"pipeline_{preset}_{p.name}")
        c1, c2 = st.columns(2)
        timeout_s = c1.number_input("Timeout (s)", min_value=1.0, value=float(DEFAULT_TIMEOUT_S), step=30.0,
                                    format="%g", key="pipeline_timeout")
        profile = c2.toggle("profile (TF trace)", value=False, key="pipeline_profile",
                            help="Capture a TF profiler window per rung: xprof's tf.data stage table then "
                                 "names the slow stage.")
        go = st.form_submit_button("Run the ladder", type="primary")
    if missing:
        st.caption("Not available here: " + "; ".join(f"**{n}**: {r}" for n, r in missing.items()))
    if not go:
        return
    try:
        if values.get("source") == "artificial":
            extra = [r for r in rungs if r not in ARTIFICIAL_VARIANTS]
            if extra:
                raise BadInput(f"{', '.join(extra)} has no ArtificialDataset pipeline.",
                               f"With source=artificial choose among {', '.join(ARTIFICIAL_VARIANTS)}.")
        params: dict[str, Any] = {k: v for k, v in values.items() if v != base[k]}
        if preset != NO_PRESET:
            params["preset"] = preset
        spec = ExperimentSpec(workload=WORKLOAD, variants=ladder_order(list(rungs)), params=params,
                              timeout_s=float(timeout_s), profile=bool(profile))
        handle = launch(spec, loaders.store())
    except SgdscopeError as exc:
        ui.show_error(exc)
        return
    loaders.remember(handle)
    st.session_state[EXP_KEY] = handle.experiment_id


@st.fragment(run_every=POLL_S)
def running_panel(experiment_id: str) -> None:
    """Re-run every second while the ladder runs; a full rerun when it is over."""
    try:
        ui.running_experiment(loaders.handle(experiment_id), "Ladder running", f"pipeline_cancel_{experiment_id}")
    except SgdscopeError as exc:
        ui.show_error(exc)


# -- results ------------------------------------------------------------------------------------
def ladder_results(experiment_id: str) -> None:
    profiles = loaders.experiment_profiles(experiment_id)
    df = ladder_frame(profiles)
    measured = df[df["median_ms"].notna()]
    if measured.empty:
        st.info("No rung of this ladder has a measured step time (every run failed).")
    else:
        best = measured.loc[measured["median_ms"].idxmin()]
        naive = df[df["rung"] == BASELINE]
        if best["rung"] != BASELINE and best["speedup"] is not None and not pd.isna(best["speedup"]):
            st.markdown(f"**{best['rung']}** has the fastest step: {best['median_ms']:.3g} ms, "
                        f"{frames.format_ratio(float(best['speedup']))} faster than naive.")
        elif naive.empty or naive["median_ms"].isna().all():
            st.markdown(f"Fastest step: **{best['rung']}**, {best['median_ms']:.3g} ms (no measured naive rung "
                        "to compare with).")
        else:
            st.markdown("No fix beat **naive** here.")
        st.altair_chart(charts.ladder_chart(measured, "rung", "median_ms", "stall_share", "vs_naive"),
                        width="stretch")
        st.caption("Bars: median ms per step (labelled with the speed-up vs naive). Red line: the stall share, "
                   "the part of the step spent waiting in next(iterator). A rung without a measured stall "
                   "share has no point.")
    by_id = {p.run_id: p for p in profiles}
    stages = {r: stage_of(by_id[r]) for r in df["run_id"]}
    table = df.assign(
        stage=[(stages[r][0] or {}).get("stage") for r in df["run_id"]],
        stage_self_ms=[(stages[r][0] or {}).get("self_ms") for r in df["run_id"]],
        stage_note=[stages[r][1] for r in df["run_id"]])
    st.dataframe(table[["rung", "status", "median_ms", "stall_share", "input_wait_ms", "vs_naive", "stage",
                        "stage_self_ms", "stage_note"]], hide_index=True, width="stretch", column_config={
        "median_ms": st.column_config.NumberColumn("median ms / step", format="%.4g"),
        "stall_share": st.column_config.NumberColumn("stall share", format="percent"),
        "input_wait_ms": st.column_config.NumberColumn("input wait ms / step (median)", format="%.3g"),
        "vs_naive": st.column_config.TextColumn("vs naive"),
        "stage": st.column_config.TextColumn("slowest tf.data stage (by self time)"),
        "stage_self_ms": st.column_config.NumberColumn("stage self ms", format="%.3g"),
        "stage_note": st.column_config.TextColumn("stage note")})
    st.caption("An empty cell (None) was not measured: never read it as 0.")
    if all(n == "not profiled" for _, n in stages.values()):
        st.info(f"Not profiled: {PROFILE_HINT} (switch on **profile (TF trace)** above and run it again).")
    failed = df[df["status"] != "ok"]
    for r in failed.itertuples():
        st.error(f"{r.rung} {r.status}: {r.error or 'no reason recorded'}")


def pick_experiment(focus: str | None) -> str | None:
    exps = frames.experiments_frame(loaders.runs())
    exps = exps[exps["workload"] == WORKLOAD]
    if exps.empty:
        st.info(f"No {WORKLOAD} experiment stored yet. Run the ladder above, or from a terminal: "
                f"`sgdscope run {WORKLOAD} --variants {','.join(DEFAULT_RUNGS)} --json`.")
        return None
    labels = {r["experiment_id"]: frames.experiment_label(r) for r in exps.to_dict("records")}
    if focus in labels and st.session_state.get("_pipeline_focused") != focus:
        st.session_state["_pipeline_focused"] = focus
        st.query_params["exp"] = focus
    return ui.synced_select("Ladder", list(labels), key="pipeline_pick", param="exp",
                            format_func=lambda e: labels[e], help="input_pipeline experiments, newest first.")


def main() -> None:
    st.title("Input pipeline")
    st.caption("The tf.data fix ladder: naive → +prefetch → +parallel map → +cache → +vectorized → all. Each "
               "rung trains the same model on the same batches; only the pipeline changes.")
    registry = loaders.workloads()
    focus = None
    if WORKLOAD in registry:
        with st.expander("Run the ladder", expanded=False):
            ladder_form(registry[WORKLOAD])
    else:
        st.caption(f"The {WORKLOAD} workload is not registered here, so the ladder cannot be run; stored "
                   "ladders are shown below.")
    experiment_id = st.session_state.get(EXP_KEY)
    if experiment_id:
        state = loaders.handle(experiment_id).progress()
        if state["status"] == "running":
            running_panel(experiment_id)
        else:
            if state["status"] == "ok":
                st.success(f"Ladder {experiment_id} finished: {len(state['run_ids'])} rung(s) stored.")
            else:
                st.error(f"Ladder {experiment_id} ended {state['status']}: {state.get('error') or 'no reason given'}")
            focus = experiment_id
    st.subheader("Results")
    exp = pick_experiment(focus)
    if exp:
        ladder_results(exp)


ui.run_page(main)

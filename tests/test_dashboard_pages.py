"""The Compare, Run and Runs pages, run in-process (Streamlit's AppTest through app.py's
navigation) over the synthetic store of ``tests.fixtures``, and over an empty store.

Each test asserts content a user reads (names, ratios, reasons), not just "no exception".
"""
from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.fixtures import (FAILED_ERROR, FAILED_VARIANT, LINREG_EXP, MEDIANS_MS, TOY_EXP,
                            populate)


def texts(at, *kinds: str) -> str:
    """Everything of the given element kinds, as one string."""
    out = []
    for kind in kinds:
        out += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(out)


def page_text(at) -> str:
    return texts(at, "markdown", "caption", "info", "error", "warning", "success", "title", "subheader")


def charts(at) -> list[tuple[dict, list[pd.DataFrame]]]:
    """(Vega-Lite spec, its datasets as frames) of every Altair chart on the page."""
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    out = []
    for el in at.get("vega_lite_chart"):
        spec = json.loads(el.proto.spec)
        frames = [convert_arrow_bytes_to_pandas_df(ds.data.data) for ds in el.proto.datasets]
        if el.proto.data.data:
            frames.append(convert_arrow_bytes_to_pandas_df(el.proto.data.data))
        out.append((spec, frames))
    return out


def chart_columns(at) -> list[set[str]]:
    return [set().union(*(set(f.columns) for f in frames)) if frames else set() for _, frames in charts(at)]


def x_domains(spec: dict) -> list[list[float]]:
    """The x scale domains set anywhere in a (layered) Vega-Lite spec."""
    found = []
    if isinstance(spec, dict):
        x = (spec.get("encoding") or {}).get("x") or {}
        if isinstance(x, dict) and "domain" in (x.get("scale") or {}):
            found.append(x["scale"]["domain"])
        for v in spec.values():
            found += x_domains(v)
    elif isinstance(spec, list):
        for v in spec:
            found += x_domains(v)
    return found


def ratio_text(variant: str, baseline: str, workload: str = "linreg") -> str:
    """The speed-up line the page must show, computed from the fixture's medians."""
    ratio = MEDIANS_MS[workload][variant] / MEDIANS_MS[workload][baseline]
    shown = f"{ratio:,.0f}×" if ratio >= 100 else (f"{ratio:.1f}×" if ratio >= 10 else f"{ratio:.2f}×")
    return f"{variant}: {shown} slower than {baseline}"


# -- Compare -----------------------------------------------------------------------------------
def test_compare_defaults_to_the_latest_experiment_and_shows_ratios(filled_store, open_page):
    at = open_page("compare")
    assert at.selectbox[0].value == LINREG_EXP
    text = page_text(at)
    assert "numpy: the baseline" in text
    assert ratio_text("tf_eager", "numpy") in text          # 24 / 0.05 = 480×
    assert ratio_text("tf_function", "numpy") in text       # 2 / 0.05 = 40.0×
    # one speed-up line per finished variant, each with its correctness badge
    lines = {ln for ln in texts(at, "markdown").splitlines() if "numpy" in ln and "badge" in ln}
    eager = next(ln for ln in lines if "tf_eager:" in ln)
    function = next(ln for ln in lines if "tf_function:" in ln)
    assert "loss matches numpy" in eager and "loss differs from numpy" in function


def test_compare_charts_carry_every_finished_variant(filled_store, open_page):
    at = open_page("compare")
    found = charts(at)
    ranges = [frames[0] for spec, frames in found if frames and "p90_ms" in frames[0].columns]
    assert len(ranges) == 1
    medians = dict(zip(ranges[0]["variant"], ranges[0]["median_ms"]))
    assert medians == pytest.approx(MEDIANS_MS["linreg"])
    losses = [frames[0] for _, frames in found if frames and "loss" in frames[0].columns]
    assert set(losses[0]["variant"]) == {"numpy", "tf_eager", "tf_function"}
    spec_log = [spec for spec, frames in found if frames and "p90_ms" in frames[0].columns][0]
    assert '"type": "log"' in json.dumps(spec_log)


def test_compare_stacks_the_breakdown_of_the_runs_that_have_one(filled_store, open_page):
    at = open_page("compare")
    bd = [frames[0] for _, frames in charts(at) if frames and {"category", "ms"} <= set(frames[0].columns)]
    assert len(bd) == 1
    assert set(bd[0]["variant"]) == {"numpy", "tf_eager"}  # tf_function has no breakdown table
    eager = bd[0][bd[0]["variant"] == "tf_eager"].set_index("category")["ms"]
    assert eager["framework_overhead"] == pytest.approx(0.75 * MEDIANS_MS["linreg"]["tf_eager"])
    assert "No breakdown stored for: tf_function" in page_text(at)
    at.radio[0].set_value("share of the step").run()
    assert not at.exception
    assert any('"normalize"' in json.dumps(spec) for spec, _ in charts(at))


def test_compare_shows_failed_runs_and_the_environment(filled_store, open_page):
    at = open_page("compare")
    errors = texts(at, "error")
    assert FAILED_VARIANT in errors and FAILED_ERROR in errors
    assert any("MemoryError: fixture stderr tail" in c.value for c in at.code)
    md = texts(at, "markdown")
    assert "Fixture CPU 9000" in md
    assert "architecture Haswell" in md and "2 threads" in md
    assert "intra-op 0, inter-op 0" in md and "**oneDNN**: off" in md
    assert "unavailable: NVML library not found" in md       # the GPU reason, not a zero


def test_compare_switches_experiment_and_follows_the_exp_link(filled_store, open_page):
    at = open_page("compare")
    at.selectbox[0].set_value(TOY_EXP).run()
    assert not at.exception
    assert ratio_text("ok2", "ok", "toy") in page_text(at)
    assert at.query_params["exp"] == TOY_EXP  # the URL follows the choice (a shareable link)
    linked = open_page("compare", exp=TOY_EXP)
    assert linked.selectbox[0].value == TOY_EXP


# -- Run ---------------------------------------------------------------------------------------
def test_run_shows_steps_by_category_with_utilization_on_one_axis(filled_store, open_page):
    run_id = filled_store.run_id(LINREG_EXP, "tf_eager")
    at = open_page("run", run=run_id)
    assert at.selectbox[0].value == run_id
    assert [m.value for m in at.metric][0] == "24 ms"
    found = charts(at)
    steps = [frames[0] for _, frames in found if frames and "ms_hi" in frames[0].columns]
    assert len(steps) == 1
    cats = set(steps[0]["category"])
    assert {"warm-up", "framework_overhead", "forward"} <= cats
    measured = steps[0][steps[0]["category"] != "warm-up"]
    per_step = measured.groupby("step")["ms"].sum()
    assert per_step.median() == pytest.approx(MEDIANS_MS["linreg"]["tf_eager"])  # categories add up
    util = [(spec, frames[0]) for spec, frames in found if frames and "t_s" in frames[0].columns]
    metrics = {m for _, df in util for m in df["metric"]}
    assert {"proc_cpu_pct", "rss_mib"} <= metrics
    # every panel on one time axis: the same x domain, the run's span
    panels = [spec for spec, frames in found if frames and ({"t_s", "ms_hi"} & set(frames[0].columns))]
    domains = [d for spec in panels for d in x_domains(spec)]
    assert len(panels) == 3 and len(domains) >= 3
    assert all(d == pytest.approx([0.0, steps[0]["end_s"].max()]) for d in domains)
    info = texts(at, "info")
    assert "GPU: unavailable: NVML library not found (no NVIDIA driver)" in info


def test_run_of_a_failed_variant_shows_error_and_stderr(filled_store, open_page):
    at = open_page("run", run=filled_store.run_id(LINREG_EXP, FAILED_VARIANT))
    assert FAILED_ERROR in texts(at, "error")
    assert any("MemoryError: fixture stderr tail" in c.value for c in at.code)
    assert "recorded no steps" in texts(at, "info")
    assert not charts(at)


def test_run_without_breakdown_or_samples_says_why(filled_store, open_page):
    at = open_page("run", run=filled_store.run_id(LINREG_EXP, "tf_function"))
    assert "No breakdown stored for this run" in texts(at, "caption")
    toy = open_page("run", run=filled_store.run_id(TOY_EXP, "ok"))
    captions = texts(toy, "caption")
    assert "CPU/RSS: none recorded" in captions
    assert "GPU: not recorded for this run" in texts(toy, "info")


# -- Runs --------------------------------------------------------------------------------------
def test_runs_lists_the_history(filled_store, open_page):
    at = open_page("runs")
    table = at.dataframe[0].value
    assert len(table) == 6
    assert set(table["variant"]) == {"numpy", "tf_eager", "tf_function", FAILED_VARIANT, "ok", "ok2"}


def test_runs_delete_needs_a_confirm_and_removes_the_run(filled_store, open_page):
    store = filled_store.store
    victim = filled_store.run_id(LINREG_EXP, "tf_function")
    at = open_page("runs")
    at.multiselect[0].set_value([victim]).run()
    delete = next(b for b in at.button if b.label.startswith("Delete selected"))
    delete.click().run()
    assert "Delete 1 run(s) for good?" in texts(at, "warning")
    assert victim in set(store.list()["run_id"])  # nothing deleted before the confirm
    next(b for b in at.button if b.label == "Cancel").click().run()
    assert victim in set(store.list()["run_id"])
    assert not texts(at, "warning")

    at.multiselect[0].set_value([victim]).run()
    next(b for b in at.button if b.label.startswith("Delete selected")).click().run()
    next(b for b in at.button if b.label == "Yes, delete").click().run()
    assert not at.exception
    assert victim not in set(store.list()["run_id"])
    assert f"Deleted 1 run(s): {victim}" in texts(at, "success")
    assert victim not in set(at.dataframe[0].value["run_id"])
    assert len(at.dataframe[0].value) == 5


# -- empty store -------------------------------------------------------------------------------
@pytest.mark.parametrize("page, words", [
    ("compare", "No stored experiment yet"),
    ("run", "No stored runs yet"),
    ("runs", "No stored runs in"),
])
def test_an_empty_store_explains_itself(dash_home, open_page, page, words):
    at = open_page(page)
    assert words in texts(at, "info")
    assert not charts(at)


def test_a_run_deleted_elsewhere_is_a_message_not_a_traceback(filled_store, open_page):
    at = open_page("run", run=filled_store.run_id(LINREG_EXP, "numpy"))
    filled_store.store.delete(filled_store.run_id(LINREG_EXP, "numpy"))
    at.run()
    assert not at.exception
    # the run list no longer offers it; the page falls back to the newest run
    assert at.selectbox[0].value != filled_store.run_id(LINREG_EXP, "numpy")


def test_populate_is_schema_valid_and_idempotent_per_store(dash_home):
    from profilers.store import RunStore

    store = RunStore(dash_home)
    filled = populate(store)
    for run_id in filled.run_ids.values():
        p = store.load(run_id)  # validates every table against SCHEMAS
        assert p.manifest["run_id"] == run_id

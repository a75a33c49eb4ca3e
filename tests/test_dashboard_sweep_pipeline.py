"""The Sweep and Input pipeline pages, in-process (AppTest through app.py).

Sweep: a stored sweep record (as ``services.start_sweep`` writes it) over schema-valid
runs with chosen medians, drawn log-log with the sizes where TF is faster marked; and a
real sweep of the toy workload, every size in one worker, watched to the end, and one
stopped while a size hangs.
Input pipeline: a stored ladder in ladder order with speed-ups vs naive and stall shares,
the hint when nothing was profiled, and the slow tf.data stage from a real xplane.
No TensorFlow is imported; no timing is asserted.
"""
from __future__ import annotations

import importlib
import json
import shutil
import time
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest

from tests import fixtures
from tests.test_dashboard_launch import run_until, widget
from tests.test_dashboard_pages import charts, texts

CREATED = "2026-01-03T10:00:00+00:00"
DATA = Path(__file__).resolve().parent / "data"

# -- fixtures: a stored sweep ------------------------------------------------------------------
#: Median ms per size label and variant. The best TF variant (min of tf_*) beats numpy at
#: 100×10 and 10000×100 only, so TF overtakes numpy at 100×10 (and falls behind again).
SWEEP_MEDIANS: dict[str, dict[str, float]] = {
    "3×2": {"numpy": 0.01, "tf_eager": 5.0, "tf_function": 0.5},
    "100×10": {"numpy": 0.05, "tf_eager": 5.0, "tf_function": 0.04},
    "1000×100": {"numpy": 1.0, "tf_eager": 6.0, "tf_function": 2.0},
    "10000×100": {"numpy": 10.0, "tf_eager": 12.0, "tf_function": 8.0},
}
SWEEP_GRID = ["m=3,100,1000,10000", "n=2,10,100,100"]


def tf_faster_labels() -> list[str]:
    return [lab for lab, m in SWEEP_MEDIANS.items() if min(m["tf_eager"], m["tf_function"]) < m["numpy"]]


def stored_run(workload: str, variant: str, exp_id: str, median_ms: float, order: int, params: dict,
               baseline: str, results: dict | None = None, status: str = "ok"):
    with mock.patch.dict(fixtures.MEDIANS_MS, {workload: {variant: median_ms}}):
        p = fixtures.make_run(workload, variant, exp_id, CREATED, order, baseline=baseline, baseline_loss=None,
                              loss_matches=None, samples=False, params=params)
    p.manifest["results"].update(results or {})
    p.manifest["status"] = status
    return p


def store_sweep(store) -> dict:
    """A stored sweep record (as ``services.start_sweep`` writes it) over runs stored with
    SWEEP_MEDIANS, one experiment per size."""
    from profilers.model import atomic_write_text, dumps
    from profilers.store import new_id
    from profilers.sweep import parse_grid, size_label

    grid = parse_grid(SWEEP_GRID)
    record = {"sweep_id": new_id("sweep", "linreg"), "workload": "linreg",
              "variants": ["numpy", "tf_eager", "tf_function"], "grid": grid, "base_params": {"steps": "30"},
              "experiments": []}
    for point in grid:
        exp_id = new_id("exp", "linreg")
        medians = SWEEP_MEDIANS[size_label(point)]
        for order, v in enumerate(record["variants"]):
            store.save(stored_run("linreg", v, exp_id, medians[v], order, {**point, "steps": 30}, baseline="numpy"))
        record["experiments"].append({"point": point, "label": size_label(point), "experiment_id": exp_id,
                                      "status": "ok"})
    (store.home / "_sweeps").mkdir(parents=True, exist_ok=True)
    atomic_write_text(store.home / "_sweeps" / f"{record['sweep_id']}.json", dumps(record))
    return record


def test_sweep_page_draws_the_crossover_and_marks_where_tf_is_faster(dash_home, open_page):
    from profilers.store import RunStore

    record = store_sweep(RunStore(dash_home))
    at = open_page("sweep")
    assert at.selectbox(key="sweep_pick").value == record["sweep_id"]
    sentence = ("The best TF variant beat numpy at 100×10, 10000×100; numpy was faster at 3×2, 1000×100; "
                "TF overtakes numpy at 100×10.")
    assert sentence in texts(at, "markdown")
    (spec, frames), = charts(at)
    assert spec["layer"][0]["encoding"]["x"]["scale"]["type"] == "log"
    assert spec["layer"][0]["encoding"]["y"]["scale"]["type"] == "log"
    lines = next(f for f in frames if "variant" in f.columns)
    assert len(lines) == 12 and set(lines["variant"]) == {"numpy", "tf_eager", "tf_function"}
    got = lines.set_index(["label", "variant"])["median_ms"]
    assert got[("1000×100", "tf_function")] == pytest.approx(2.0)
    assert lines.set_index("label")["size"].to_dict()["10000×100"] == 1e6  # product of the grid values
    marks = next(f for f in frames if "text" in f.columns)
    assert list(marks["label"]) == tf_faster_labels() == ["100×10", "10000×100"]
    assert "TF overtakes numpy (100×10)" in set(marks["text"])
    table = at.dataframe[0].value
    assert list(table["size"]) == list(SWEEP_MEDIANS)
    expected = [f"{min(m['tf_eager'], m['tf_function']) / m['numpy']:.3g}×" for m in SWEEP_MEDIANS.values()]
    assert list(table["best_tf / numpy"]) == expected
    assert "Dashed green lines" in texts(at, "caption")


def test_sweep_page_with_no_sweep_says_how_to_start_one(dash_home, open_page):
    at = open_page("sweep")
    assert "No stored sweep yet" in texts(at, "info")
    assert not charts(at)


# -- a real sweep of the toy workload, every size in one worker --------------------------------
@pytest.fixture()
def toy_sweep(dash_home, monkeypatch):
    """The toy workload here and in the sweep's worker; afterwards every size has ended."""
    monkeypatch.setenv("SGDSCOPE_WORKLOAD_MODULES", "tests.toy_workload")
    importlib.import_module("tests.toy_workload")
    yield dash_home
    for exp in (dash_home / "_experiments").glob("*"):
        (exp / "cancel").touch()
    deadline = time.monotonic() + 30
    for exp in (dash_home / "_experiments").glob("*"):
        while not (exp / "status.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)


def start_toy_sweep(at, variants: list[str], sizes: str, fixed: str) -> str:
    at.selectbox(key="sweep_workload").set_value("toy").run()
    assert not at.exception, at.exception
    widget(at, "multiselect", "Variants").set_value(variants)
    next(t for t in at.text_area if t.label.startswith("Sizes")).set_value(sizes)
    next(t for t in at.text_area if t.label.startswith("Fixed")).set_value(fixed)
    next(b for b in at.button if b.label == "Start sweep").click().run()
    assert not at.exception, at.exception
    return at.session_state["sweep_running"]


def worker_pids(home: Path) -> set[int]:
    """The pids of the workers that ran each size (from the ``warm`` progress events)."""
    pids = set()
    for log in home.glob("_experiments/*/progress.jsonl"):
        pids |= {json.loads(line)["pid"] for line in log.read_text().splitlines() if '"warm"' in line}
    return pids


def test_sweep_runs_every_size_in_one_worker_and_is_polled_to_the_end(toy_sweep, open_page):
    from profilers.store import RunStore
    from profilers.sweep import list_sweeps

    at = open_page("sweep")
    sweep_id = start_toy_sweep(at, ["ok", "ok2"], "steps=3,4", "warmup_steps=1")
    run_until(at, lambda a: "Sweep running" not in texts(a, "subheader")
              and len(list(toy_sweep.glob("_experiments/*/status.json"))) == 2)
    records = list_sweeps(RunStore(toy_sweep))
    assert len(records) == 1 and records[0]["sweep_id"] == sweep_id
    assert [e["label"] for e in records[0]["experiments"]] == ["3", "4"]
    assert len(worker_pids(toy_sweep)) == 1, "every size ran in the same worker process"
    log = (toy_sweep / "_sweeps" / f"{sweep_id}.log").read_text()
    assert "runs all 2 experiment(s) of this job" in log and log.count("worker pid") == 3
    assert at.selectbox(key="sweep_pick").value == sweep_id
    # toy has no numpy/TF variants: the page says there is no crossover rather than inventing one
    assert "No crossover to find" in texts(at, "info")
    (spec, frames), = charts(at)
    assert set(next(f for f in frames if "variant" in f.columns)["label"]) == {"3", "4"}


def test_stop_cancels_the_size_that_runs_and_the_ones_not_started(toy_sweep, open_page):
    from profilers.store import RunStore

    at = open_page("sweep")
    start_toy_sweep(at, ["ok", "hang"], "steps=5,6", "")
    # the page returned while the sweep's first size hangs (the toy "hang" variant sleeps an hour)
    assert "Sweep running" in texts(at, "subheader")
    run_until(at, lambda a: "running" in str([p.proto.text for p in a.get("progress")]))
    next(b for b in at.button if b.label == "Stop sweep").click().run()
    assert not at.exception, at.exception
    run_until(at, lambda a: len(list(toy_sweep.glob("_experiments/*/status.json"))) == 2)
    statuses = [json.loads(p.read_text())["status"] for p in sorted(toy_sweep.glob("_experiments/*/status.json"))]
    assert statuses == ["cancelled", "cancelled"]
    runs = RunStore(toy_sweep).list()
    assert set(runs["status"]) <= {"ok", "cancelled"} and "cancelled" in set(runs["status"])
    assert len(runs) == 4  # every variant of both sizes is stored, with its reason


# -- the input pipeline ladder -----------------------------------------------------------------
LADDER_EXP = "20260103-100000-exp-input_pipeline-cccccc"
#: Median ms per step and stall share per rung; vectorized's share was not measured.
LADDER_MEDIANS = {"naive": 40.0, "prefetch": 25.0, "parallel_map": 20.0, "cache": 16.0, "vectorized": 12.5,
                  "all": 8.0}
LADDER_SHARES = {"naive": 0.8, "prefetch": 0.5, "parallel_map": 0.3, "cache": 0.2, "vectorized": None,
                 "all": 0.05}
#: Stored (and launched) in a scrambled order: the page orders rungs by the ladder.
STORE_ORDER = ["all", "cache", "naive", "vectorized", "prefetch", "parallel_map"]


def store_ladder(store, profiled: str | None = None) -> dict[str, str]:
    """The ladder experiment; ``profiled`` names a rung given tests/data/keras_fit's real xplane."""
    ids = {}
    for order, rung in enumerate(STORE_ORDER):
        share = LADDER_SHARES[rung]
        res = {"input_wait_ms_median": None if share is None else LADDER_MEDIANS[rung] * share}
        if share is not None:
            res["input_wait_share"] = share
        p = stored_run("input_pipeline", rung, LADDER_EXP, LADDER_MEDIANS[rung], order, {"batch_size": 32},
                       baseline="naive", results=res)
        trace = next((DATA / "keras_fit" / "trace" / "plugins" / "profile").glob("*/*.xplane.pb"))
        if rung == profiled:
            p.manifest["capture"] = {"profiled": True, "xplane": str(trace.relative_to(DATA / "keras_fit")),
                                     "window_steps": 10, "overhead": None}
        run_dir = store.save(p)
        if rung == profiled:
            shutil.copytree(DATA / "keras_fit" / "trace", run_dir / "trace")
        ids[rung] = p.run_id
    return ids


def ladder_table(at) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if "rung" in d.value.columns)


def test_ladder_shows_rungs_in_order_with_speedups_stall_shares_and_the_profile_hint(dash_home, open_page):
    from profilers.store import RunStore

    store_ladder(RunStore(dash_home))
    at = open_page("pipeline")
    table = ladder_table(at)
    assert list(table["rung"]) == ["naive", "prefetch", "parallel_map", "cache", "vectorized", "all"]
    naive = LADDER_MEDIANS["naive"]
    expected = ["baseline"] + [f"{naive / LADDER_MEDIANS[r]:.2f}× faster" for r in list(table["rung"])[1:]]
    assert list(table["vs_naive"]) == expected == ["baseline", "1.60× faster", "2.00× faster", "2.50× faster",
                                                   "3.20× faster", "5.00× faster"]
    shares = dict(zip(table["rung"], table["stall_share"]))
    for rung, share in LADDER_SHARES.items():
        assert shares[rung] == ("not measured" if share is None else f"{share:.0%}")  # never None, nan or 0
    assert [float(v) for v in table["median_ms"]] == pytest.approx([LADDER_MEDIANS[r] for r in table["rung"]])
    assert "**all** has the fastest step: 8 ms, 5.00× faster than naive." in texts(at, "markdown")
    (spec, frames), = charts(at)
    data = next(f for f in frames if "rung" in f.columns)
    assert list(data["rung"]) == list(table["rung"])
    # the unmeasured stall share is left out of the line, never drawn as 0
    assert not (data["stall_share"].fillna(-1) == 0).any() and data["stall_share"].isna().sum() == 1
    assert "profile the ladder to see the slow tf.data stage" in texts(at, "info")
    assert set(table["stage_note"]) == {"not profiled"} and (table["stage"] == "").all()


def test_ladder_names_the_slowest_tf_data_stage_of_a_profiled_rung(dash_home, open_page):
    from profilers.store import RunStore

    store_ladder(RunStore(dash_home), profiled="all")
    golden = pd.read_csv(DATA / "keras_fit" / "golden" / "input_stages.csv")
    slowest = golden.loc[golden["self_ms"].idxmax()]
    at = open_page("pipeline")
    table = ladder_table(at).set_index("rung")
    assert table.loc["all", "stage"] == slowest["stage"]
    assert float(table.loc["all", "stage_self_ms"]) == pytest.approx(slowest["self_ms"], rel=1e-3)
    assert table.loc["naive", "stage_note"] == "not profiled" and table.loc["naive", "stage"] == ""
    assert "profile the ladder" not in texts(at, "info")


def test_ladder_with_no_experiment_says_how_to_run_one(dash_home, filled_store, open_page):
    at = open_page("pipeline")
    assert "No input_pipeline experiment stored yet" in texts(at, "info")
    assert not charts(at)


def test_run_the_ladder_launches_the_rungs_in_ladder_order(dash_home, open_page, monkeypatch):
    """The button launches one experiment through session.launch (replaced here: the real
    rungs need TensorFlow), with the rungs in ladder order, the preset and the profile toggle."""
    from profilers import session
    from profilers.model import atomic_write_text

    launched = []

    def fake_launch(spec, store, kind="workload"):
        spec.validate()
        spec.experiment_id = f"20260103-11000{len(launched)}-exp-input_pipeline-dddddd"
        exp_dir = store.experiments / spec.experiment_id
        exp_dir.mkdir(parents=True)
        atomic_write_text(exp_dir / "spec.json", spec.to_json())
        atomic_write_text(exp_dir / "status.json", json.dumps({"status": "ok", "error": None}))
        launched.append(spec)
        return session.ExperimentHandle(store, spec.experiment_id)

    monkeypatch.setattr(session, "launch", fake_launch)
    at = open_page("pipeline")
    rungs = widget(at, "multiselect", "Rungs")
    if set(rungs.value) != {"naive", "prefetch", "parallel_map", "cache", "vectorized", "all"}:
        pytest.skip("the ladder's variants are not available here (no TensorFlow)")
    rungs.set_value(["all", "naive", "prefetch"])
    widget(at, "toggle", "profile (TF trace)").set_value(True)
    next(b for b in at.button if b.label == "Run the ladder").click().run()
    assert not at.exception, at.exception
    assert launched[-1].variants == ["naive", "prefetch", "all"] and launched[-1].profile is True
    assert "Ladder 20260103-110000-exp-input_pipeline-dddddd finished: 0 rung(s) stored." in texts(at, "success")
    widget(at, "selectbox", "Preset").set_value("artificial_dataset").run()
    assert widget(at, "multiselect", "Rungs").value == ["naive", "prefetch", "interleave"]
    next(b for b in at.button if b.label == "Run the ladder").click().run()
    assert not at.exception, at.exception
    assert launched[-1].variants == ["naive", "prefetch", "interleave"]
    assert launched[-1].params["preset"] == "artificial_dataset"

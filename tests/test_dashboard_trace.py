"""Run and Compare pages over real profiled runs (the committed captures, analysed with
xprof): the trace panel, one step's timeline, the downloads, the plain-words explanation,
and a corrupt capture that still leaves the run readable."""
from __future__ import annotations

import pytest

from profilers.store import RunStore
from tests.bundle_fixtures import profiled_run, synthetic_run
from tests.test_dashboard_pages import charts, page_text


@pytest.fixture()
def traced(dash_home):
    store = RunStore(dash_home)
    runs = {}
    for scenario in ("numpy", "tf_eager"):
        p = synthetic_run(store, "numpy", step_ms=0.02) if scenario == "numpy" else profiled_run(store, scenario)
        p.manifest["experiment_id"] = "exp-trace"
        p.manifest["results"]["baseline_variant"] = "numpy"
        store.update(p)
        runs[scenario] = store.load(p.run_id)
    return store, runs


def test_run_page_shows_the_trace_of_a_profiled_run(traced, open_page):
    store, runs = traced
    eager = runs["tf_eager"]
    at = open_page("run", run=eager.run_id)
    text = page_text(at)
    assert "breakdown from" in text or any("breakdown from" in str(t.value) for t in at.markdown)
    top_op = eager.table("ops").sort_values("total_self_us", ascending=False)["op_name"].iloc[0]
    shown = at.dataframe[0].value
    assert top_op in shown["op_name"].tolist()
    profiled = eager.table("steps").query("in_profile_window")["step"].astype(int).tolist()
    step_box = next(s for s in at.selectbox if s.label == "Timeline of profiled step")
    assert list(step_box.options) == [str(s) for s in profiled]
    def marks(spec):  # every mark of a (layered) spec
        if isinstance(spec, dict):
            if isinstance(spec.get("mark"), dict):
                yield spec["mark"]
            for layer in spec.get("layer") or []:
                yield from marks(layer)

    found = [m for spec, _ in charts(at) for m in marks(spec)]
    assert any(m.get("type") == "bar" and "height" in m for m in found)  # the Gantt's bars
    labels = [b.label for b in at.get("download_button")]
    assert "Download trace (Chrome/Perfetto JSON)" in labels and "Download bundle (.zip)" in labels


def test_run_page_of_a_numpy_run_says_there_is_no_trace(traced, open_page):
    _, runs = traced
    at = open_page("run", run=runs["numpy"].run_id)
    assert "No TF trace" in page_text(at)


def test_corrupt_capture_still_shows_the_run(traced, open_page):
    _, runs = traced
    eager = runs["tf_eager"]
    eager.xplane_path().write_bytes(b"\x00garbage" * 8)
    for cached in (eager.run_dir / "cache").rglob("*"):
        if cached.is_file():
            cached.unlink()
    at = open_page("run", run=eager.run_id)
    assert [m.label for m in at.metric][0] == "Median step"  # the run itself still shows
    assert any("xplane" in str(w.value).lower() for w in at.warning), [w.value for w in at.warning]


def test_compare_explains_where_the_time_goes(traced, open_page):
    at = open_page("compare", exp="exp-trace")
    text = page_text(at)
    assert "In plain words" in text
    assert "tf_eager:" in text and "is framework overhead over" in text
    assert "numpy does the whole step in" in text
    assert "Download (.zip)" in [b.label for b in at.get("download_button")]  # the experiment's bundle

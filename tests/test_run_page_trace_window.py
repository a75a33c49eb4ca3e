"""The Run page's Gantt on an analysed run reads a bounded window of the trace: the step's
bounds come from the cached step markers, the events from xprof's windowed trace_viewer@,
and the whole capture is never converted or loaded for it (issue 14)."""
from __future__ import annotations

import pytest

from profilers import xprof_tools as xt
from profilers.store import RunStore
from tests.bundle_fixtures import profiled_run
from tests.test_dashboard_pages import charts


def test_gantt_of_an_analysed_run_reads_one_step_window(dash_home, open_page, monkeypatch: pytest.MonkeyPatch) -> None:
    run = profiled_run(RunStore(dash_home), "tf_eager")
    assert list((run.run_dir / "cache" / "xprof").glob("trace_viewer-*.events.arrow")), "analysed: cached"
    xt._RECENT.clear()  # as in a fresh dashboard process
    windows: list[tuple[float | None, float | None]] = []
    real_trace_events = xt.trace_events

    def bounded_only(xplane, *, start_ms=None, end_ms=None, cache_dir=None):  # type: ignore[no-untyped-def]
        if start_ms is None and end_ms is None:
            raise AssertionError("the Run page loaded the whole trace")
        windows.append((start_ms, end_ms))
        return real_trace_events(xplane, start_ms=start_ms, end_ms=end_ms, cache_dir=cache_dir)

    def no_whole_conversion(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the Run page converted the whole trace")

    monkeypatch.setattr(xt, "trace_events", bounded_only)
    monkeypatch.setattr(xt, "_proto_converter", no_whole_conversion)
    at = open_page("run", run=run.run_id)
    assert len(windows) == 1
    start_ms, end_ms = windows[0]
    first = int(run.table("steps").query("in_profile_window")["step"].iloc[0])
    want = xt.step_windows_ms(run.xplane_path(), cache_dir=run.run_dir / "cache").set_index("step").loc[first]
    assert (start_ms, end_ms) == pytest.approx((want["start_ms"], want["end_ms"]))
    # The Gantt: the chart whose data are trace events.
    gantt = [f for _, frames in charts(at) for f in frames if {"ts_us", "dur_us", "thread"} <= set(f.columns)]
    assert gantt, "no Gantt drawn"
    drawn = gantt[0]
    whole = real_trace_events(run.xplane_path(), cache_dir=run.run_dir / "cache")
    assert 0 < len(drawn) < len(whole)
    assert (drawn["ts_us"] <= end_ms * 1e3).all() and (drawn["ts_us"] + drawn["dur_us"] >= start_ms * 1e3).all()

"""xprof_tools on the committed captures (tests/data/<scenario>/): parsers against golden
tables, the cache, and absent/corrupt traces. Needs xprof, not TensorFlow.

Every test works on a copy of a fixture: xprof writes files beside the xplane.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from profilers import xprof_tools as xt
from profilers.errors import TraceUnavailable, UnknownName
from profilers.model import SCHEMAS, RunProfile

DATA = Path(__file__).resolve().parent / "data"
ROOT = DATA.parents[1]
TRACE_SCENARIOS = sorted(p.name for p in DATA.iterdir() if any(p.glob("trace/plugins/profile/*/*.xplane.pb")))


def copy_run(scenario: str, into: Path) -> Path:
    """A copy of a fixture run directory without its goldens."""
    dst = into / scenario
    shutil.copytree(DATA / scenario, dst, ignore=shutil.ignore_patterns("golden"))
    return dst


@pytest.fixture
def eager_run(tmp_path: Path) -> Path:
    return copy_run("tf_eager", tmp_path)


def _golden(scenario: str, name: str) -> pd.DataFrame:
    return pd.read_csv(DATA / scenario / "golden" / name)


def _assert_frame_close(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want)
    for col in want.columns:
        g, w = got[col], want[col]
        if pd.api.types.is_float_dtype(w) and not pd.api.types.is_bool_dtype(g):
            np.testing.assert_allclose(g.to_numpy(dtype=float), w.to_numpy(dtype=float), rtol=1e-9, atol=1e-9,
                                       err_msg=col)
        else:
            assert g.astype(str).tolist() == w.astype(str).tolist(), col


def test_fixtures_exist_and_are_small() -> None:
    assert {"tf_eager", "tf_function", "tf_xla", "tf_graph_loop", "keras_fit"} <= set(TRACE_SCENARIOS)
    for scenario in TRACE_SCENARIOS:
        (xplane,) = (DATA / scenario).glob("trace/plugins/profile/*/*.xplane.pb")
        assert 0 < xplane.stat().st_size < 1_000_000
        assert not list(xplane.parent.glob("*.SSTABLE")), "xprof side files were committed"


@pytest.mark.parametrize("scenario", TRACE_SCENARIOS)
def test_pipeline_tables_match_golden(scenario: str, tmp_path: Path) -> None:
    run = RunProfile.read(copy_run(scenario, tmp_path))
    res = xt.run_tables(run.xplane_path())
    _assert_frame_close(res.tables["step_time"], _golden(scenario, "step_time.csv"))
    _assert_frame_close(res.tables["input_stages"], _golden(scenario, "input_stages.csv"))
    _assert_frame_close(res.tables["ops"], _golden(scenario, "ops.csv"))
    events = res.tables["events"]
    counts = (events.groupby(["thread", "name"], observed=True)
              .agg(count=("ts_us", "size"), total_dur_us=("dur_us", "sum")).reset_index())
    counts["thread"] = counts["thread"].astype(str).str.replace(r"/-?\d+$", "", regex=True)
    counts["name"] = counts["name"].astype(str)
    counts = counts.groupby(["thread", "name"], as_index=False).sum()
    counts = counts.sort_values(["thread", "name"]).reset_index(drop=True)
    _assert_frame_close(counts, _golden(scenario, "event_counts.csv"))
    summary = json.loads((DATA / scenario / "golden" / "summary.json").read_text())
    assert sorted(int(s) for s in events.loc[events["marker"], "step"]) == summary["markers"]


@pytest.mark.parametrize("scenario", TRACE_SCENARIOS)
def test_tables_follow_their_schemas(scenario: str, tmp_path: Path) -> None:
    res = xt.run_tables(xt.find_xplane(copy_run(scenario, tmp_path)))
    for name in ("step_time", "input_stages", "ops", "events"):
        df = res.tables[name]
        assert list(df.columns[: len(xt.TOOL_SCHEMAS[name])]) == list(xt.TOOL_SCHEMAS[name])
        assert {c: str(t) for c, t in df.dtypes.items() if c in xt.TOOL_SCHEMAS[name]} == xt.TOOL_SCHEMAS[name]
    ops = res.tables["ops"]
    assert set(SCHEMAS["ops"]) <= set(ops.columns)
    assert (ops["total_self_us"] >= 0).all() and (ops["occurrences"] >= 0).all()
    events = res.tables["events"]
    assert (events["dur_us"] >= 0).all()
    # Every event inside a step marker carries that marker's step.
    markers = events[events["marker"]]
    for _, m in markers.iterrows():
        inside = events[(events["ts_us"] >= m["ts_us"]) & (events["ts_us"] + events["dur_us"] <= m["ts_us"] + m["dur_us"])
                        & (events["tid"] == m["tid"])]
        assert (inside["step"] == m["step"]).all()


def test_step_time_is_per_marker_and_adds_up(eager_run: Path) -> None:
    st = xt.convert(xt.find_xplane(eager_run), "overview_page").table("step_time")
    steps = RunProfile.read(eager_run).table("steps")
    assert st["step"].tolist() == steps.loc[steps["in_profile_window"], "step"].tolist()
    parts = st[[c for c in st.columns if c.endswith("_ms") and c != "step_ms"]].sum(axis=1)
    np.testing.assert_allclose(st["step_ms"], parts)
    # xprof's step is the marker's span, which holds the recorder's wall time.
    wall_ms = steps.loc[steps["in_profile_window"], "wall_us"].to_numpy() / 1e3
    assert (st["step_ms"].to_numpy() >= 0.9 * wall_ms).all()


def test_input_pipeline_summary(eager_run: Path) -> None:
    res = xt.convert(xt.find_xplane(eager_run), "input_pipeline_analyzer")
    assert 0.0 < res.info["infeed_pct"] < 100.0
    assert res.info["input_conclusion"]
    assert len(res.table("input_stages")) > 0
    assert res.table("input_stages")["stage"].str.startswith("Iterator::").all()


def test_second_convert_is_served_from_cache(eager_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xplane = xt.find_xplane(eager_run)
    calls: list[str] = []
    real = xt._converter

    def counting() -> object:
        calls.append("x")
        return real()

    monkeypatch.setattr(xt, "_converter", counting)
    first = xt.convert(xplane, "framework_op_stats")
    first_all = xt.run_tables(xplane)
    assert calls
    assert list((eager_run / "cache" / "xprof").glob("*.json")), "cache lives in <run_dir>/cache"

    def refuse() -> object:
        raise AssertionError("the converter was called although the result is cached")

    monkeypatch.setattr(xt, "_converter", refuse)
    monkeypatch.setattr(xt, "_proto_converter", refuse)
    again = xt.convert(xplane, "framework_op_stats")
    again_all = xt.run_tables(xplane)
    pd.testing.assert_frame_equal(first.table("ops"), again.table("ops"))
    for name, df in first_all.tables.items():
        pd.testing.assert_frame_equal(df, again_all.tables[name])
    assert again_all.info == json.loads(json.dumps(first_all.info))


def test_cache_is_keyed_by_xplane_mtime_and_params(eager_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xplane = xt.find_xplane(eager_run)
    xt.convert(xplane, "framework_op_stats")
    calls: list[str] = []
    real = xt._converter
    monkeypatch.setattr(xt, "_converter", lambda: (calls.append("x"), real())[1])
    st = xplane.stat()
    os.utime(xplane, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    xt.convert(xplane, "framework_op_stats")
    assert len(calls) == 1
    xt.trace_events(xplane, start_ms=1.0, end_ms=2.0)
    xt.trace_events(xplane, start_ms=1.0, end_ms=3.0)
    assert len(calls) == 3


def test_unreadable_cache_entry_is_rebuilt(eager_run: Path) -> None:
    xplane = xt.find_xplane(eager_run)
    want = xt.convert(xplane, "framework_op_stats").table("ops")
    (entry,) = (eager_run / "cache" / "xprof").glob("framework_op_stats-*.json")
    entry.write_text("{not json", encoding="utf-8")
    n_log = len(xt.CACHE_LOG)
    got = xt.convert(xplane, "framework_op_stats").table("ops")
    pd.testing.assert_frame_equal(want, got)
    assert len(xt.CACHE_LOG) == n_log + 1
    json.loads(entry.read_text(encoding="utf-8"))  # rewritten whole


def test_absent_xplane_raises_trace_unavailable(tmp_path: Path) -> None:
    with pytest.raises(TraceUnavailable, match="No trace at"):
        xt.convert(tmp_path / "trace" / "nope.xplane.pb", "overview_page")
    with pytest.raises(TraceUnavailable, match="no TF profiler capture"):
        xt.find_xplane(tmp_path)


@pytest.mark.parametrize("content", [b"", b"this is not a protobuf\n", "truncated"])
def test_corrupt_xplane_raises_trace_unavailable(eager_run: Path, content: bytes | str) -> None:
    xplane = xt.find_xplane(eager_run)
    good = xplane.read_bytes()
    xplane.write_bytes(good[: len(good) // 3] if content == "truncated" else content)
    with pytest.raises(TraceUnavailable) as err:
        xt.run_tables(xplane)
    assert str(xplane) in err.value.message
    assert ("empty" in err.value.message) if content == b"" else ("not a readable XSpace" in err.value.message)
    assert err.value.hint


def test_unknown_tool_lists_the_valid_ones(eager_run: Path) -> None:
    with pytest.raises(UnknownName) as err:
        xt.convert(xt.find_xplane(eager_run), "memory_viewer")
    assert "trace_viewer" in err.value.hint and "framework_op_stats" in err.value.hint


def test_windowed_trace_events_for_one_step(eager_run: Path) -> None:
    xplane = xt.find_xplane(eager_run)
    full = xt.trace_events(xplane)
    start_ms, end_ms = xt.step_window_ms(full, 5)
    win = xt.trace_events(xplane, start_ms=start_ms, end_ms=end_ms)
    assert 0 < len(win) < len(full)
    assert (win["ts_us"] <= end_ms * 1e3).all()
    assert (win["ts_us"] + win["dur_us"] >= start_ms * 1e3).all()
    assert 5 in set(win.loc[win["marker"], "step"])
    assert set(win.loc[win["name"] == "EagerExecute", "step"].dropna()) >= {5}
    with pytest.raises(TraceUnavailable, match="no marker for step 99"):
        xt.step_window_ms(full, 99)


def test_export_trace_json(eager_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xplane = xt.find_xplane(eager_run)
    out = xt.export_trace_json(xplane, tmp_path / "out" / "trace.json")
    doc = json.loads(out.read_text())
    names = {e.get("name") for e in doc["traceEvents"]}
    assert {"train 3", "EagerExecute"} <= names
    monkeypatch.setattr(xt, "_converter", lambda: (_ for _ in ()).throw(AssertionError("not cached")))
    assert xt.export_trace_json(xplane).read_bytes() == out.read_bytes()


def test_default_cache_dir_is_in_the_run_dir(eager_run: Path, tmp_path: Path) -> None:
    assert xt.default_cache_dir(xt.find_xplane(eager_run)) == eager_run.resolve() / "cache"
    loose = tmp_path / "loose.xplane.pb"
    assert xt.default_cache_dir(loose) == tmp_path.resolve() / "sgdscope-cache"


def test_gviz_rows_shorter_than_cols_give_none() -> None:
    cols = xt._gviz_columns({"cols": [{"id": "a"}, {"id": "b"}, {"id": "c"}],
                             "rows": [{"c": [{"v": 1}, {"v": 2}]}, {"c": [{"v": 3}, None, {"v": 5}]}]})
    assert cols == {"a": [1, 3], "b": [2, None], "c": [None, 5]}


def test_runs_without_tensorflow(tmp_path: Path) -> None:
    run_dir = copy_run("tf_function", tmp_path)
    script = textwrap.dedent(f"""
        import sys
        class NoTF:
            def find_spec(self, name, path=None, target=None):
                if name == "tensorflow" or name.startswith("tensorflow."):
                    raise ImportError("tensorflow is blocked in this test")
        sys.meta_path.insert(0, NoTF())
        sys.path.insert(0, {str(ROOT)!r})
        from profilers import breakdown, xprof_tools
        from profilers.model import RunProfile
        run = RunProfile.read({str(run_dir)!r})
        b = breakdown.breakdown_for_run(run.table("steps"), run.table("phases"), run.xplane_path())
        breakdown.check_breakdown(b, run.table("steps"))
        assert not any(m == "tensorflow" or m.startswith("tensorflow.") for m in sys.modules)
        print("ok", len(b))
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("ok")


# -- the fast trace path and the columnar cache ------------------------------------------------
def _refuse_converters(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> object:
        raise AssertionError("xprof's converter was called although the result is cached")

    monkeypatch.setattr(xt, "_converter", refuse)
    monkeypatch.setattr(xt, "_proto_converter", refuse)


@pytest.mark.parametrize("scenario", TRACE_SCENARIOS)
def test_trace_protobuf_gives_the_table_xprofs_json_gives(scenario: str, tmp_path: Path) -> None:
    """The events read from the converter's Trace protobuf equal, exactly, those read from
    the JSON xprof's own ``process_raw_trace`` makes of the same protobuf."""
    from xprof.convert.raw_to_tool_data import process_raw_trace

    raw = xt.raw_tool_data(xt.find_xplane(copy_run(scenario, tmp_path)), "trace_viewer", {})
    assert isinstance(raw, bytes)
    import gc

    got = xt.parse_trace_proto(raw)
    assert gc.isenabled(), "the parser paused the garbage collector and left it paused"
    want = xt.parse_trace_events(process_raw_trace(raw))
    assert len(got.tables["events"]) > 0
    pd.testing.assert_frame_equal(got.tables["events"], want.tables["events"], check_exact=True)
    assert got.info["events"] == want.info["events"] == len(want.tables["events"])
    assert got.info["trace_events"] >= got.info["events"]  # instant events are counted too


@pytest.mark.parametrize("scenario", TRACE_SCENARIOS)
def test_reopen_from_cache_equals_the_cold_analysis(scenario: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    xplane = xt.find_xplane(copy_run(scenario, tmp_path))
    cold = xt.run_tables(xplane)
    cold_events = xt.trace_events(xplane)
    _refuse_converters(monkeypatch)
    reopened = xt.run_tables(xplane)
    assert set(reopened.tables) == set(cold.tables) == {"step_time", "input_stages", "ops", "events"}
    for name, df in cold.tables.items():
        pd.testing.assert_frame_equal(reopened.tables[name], df, check_exact=True)
    pd.testing.assert_frame_equal(xt.trace_events(xplane), cold_events, check_exact=True)
    assert reopened.info == json.loads(json.dumps(cold.info))


def test_op_table_is_converted_beside_the_trace_after_its_conversion(eager_run: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A cold ``trace_events`` converts the op table on another thread, started once the
    trace's own conversion is over (two converters at once would add their peak memory),
    and waits for it: both are cached when it returns."""
    import threading

    log: list[tuple[str, str, str]] = []
    lock = threading.Lock()
    real = xt.raw_tool_data

    def recording(xplane: Path, tool: str, params: object = None) -> object:
        with lock:
            log.append(("start", tool, threading.current_thread().name))
        out = real(xplane, tool, params)
        with lock:
            log.append(("end", tool, threading.current_thread().name))
        return out

    monkeypatch.setattr(xt, "raw_tool_data", recording)
    xplane = xt.find_xplane(eager_run)
    events = xt.trace_events(xplane)
    assert len(events) > 0
    assert [(what, tool) for what, tool, _ in log] == [
        ("start", "trace_viewer"), ("end", "trace_viewer"),
        ("start", "framework_op_stats"), ("end", "framework_op_stats")], log
    threads = {tool: name for _, tool, name in log}
    assert threads["trace_viewer"] == threading.main_thread().name
    assert threads["framework_op_stats"] != threads["trace_viewer"], "the op table was not converted beside"
    assert not [t for t in threading.enumerate() if t.name.startswith("sgdscope-op-table")], "thread left running"
    monkeypatch.setattr(xt, "raw_tool_data", real)
    _refuse_converters(monkeypatch)
    assert len(xt.convert(xplane, "framework_op_stats").table("ops")) > 0  # cached by the thread


def test_raw_args_trace_refuses_a_trace_whose_args_are_not_a_map() -> None:
    """The raw-args view is derived from xprof's descriptor; a Trace of another shape is
    refused with a message, not misread."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    from profilers.errors import DependencyMissing

    proto = descriptor_pb2.FileDescriptorProto(name="other_trace.proto", package="other")
    event = proto.message_type.add(name="TraceEvent")
    event.field.add(name="name", number=3, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                    label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    event.field.add(name="args", number=11, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                    label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED)
    trace = proto.message_type.add(name="Trace")
    trace.field.add(name="trace_events", number=4, type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                    type_name=".other.TraceEvent", label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    other = message_factory.GetMessageClass(pool.FindMessageTypeByName("other.Trace"))
    with pytest.raises(DependencyMissing, match="changed shape"):
        xt._raw_args_trace(other)


def test_raw_args_trace_reads_every_arg_xprofs_class_reads(eager_run: Path) -> None:
    from xprof.protobuf.trace_events_old_pb2 import Trace

    raw = xt.raw_tool_data(xt.find_xplane(eager_run), "trace_viewer", {})
    trace_class, entry_class = xt._raw_args_trace(Trace)
    mapped, free = Trace.FromString(raw), trace_class.FromString(raw)
    entries = xt._ArgEntries(entry_class)
    assert len(free.trace_events) == len(mapped.trace_events) > 0
    assert any(len(e.args) > 1 for e in mapped.trace_events)
    for a, b in zip(mapped.trace_events, free.trace_events):
        assert all(isinstance(e, bytes) for e in b.args)
        assert dict(a.args) == dict(map(entries.__getitem__, b.args))
        assert (a.name, a.timestamp_ps, a.duration_ps) == (b.name, b.timestamp_ps, b.duration_ps)
    assert len(entries) < sum(len(e.args) for e in free.trace_events)  # decoded once per distinct entry


def test_each_table_is_cached_once_in_arrow(eager_run: Path) -> None:
    xplane = xt.find_xplane(eager_run)
    xt.trace_events(xplane)
    xt.run_tables(xplane)
    xt.convert(xplane, "framework_op_stats")
    files = sorted(p.name for p in (eager_run / "cache" / "xprof").iterdir())
    tables = [f.split(".")[-2] for f in files if f.endswith(".arrow")]
    assert sorted(tables) == ["events", "input_stages", "ops", "step_time"], files
    assert len([f for f in files if f.endswith(".json")]) == 3, files  # one index per tool
    assert not [f for f in files if f.startswith(".")], "temporary files left behind"
    for f in files:
        if f.endswith(".arrow"):
            assert (eager_run / "cache" / "xprof" / f).read_bytes()[:6] == b"ARROW1"
    size = sum(p.stat().st_size for p in (eager_run / "cache").rglob("*") if p.is_file())
    assert size <= 1.5 * xplane.stat().st_size


def test_corrupt_arrow_table_is_rebuilt(eager_run: Path) -> None:
    xplane = xt.find_xplane(eager_run)
    want = xt.trace_events(xplane)
    (table,) = (eager_run / "cache" / "xprof").glob("trace_viewer-*.events.arrow")
    table.write_bytes(table.read_bytes()[:100])
    n_log = len(xt.CACHE_LOG)
    pd.testing.assert_frame_equal(xt.trace_events(xplane), want, check_exact=True)
    assert len(xt.CACHE_LOG) == n_log + 1 and "trace_viewer" in xt.CACHE_LOG[-1]
    assert table.read_bytes()[:6] == b"ARROW1"


def test_entries_of_an_older_parser_are_removed(eager_run: Path) -> None:
    old = eager_run / "cache" / "xprof" / "trace_viewer-0123456789abcdef.json"
    old.parent.mkdir(parents=True)
    old.write_text("{}", encoding="utf-8")
    xt.trace_events(xt.find_xplane(eager_run))
    assert not old.exists()
    assert list(old.parent.glob("trace_viewer-v*.json"))


def test_threads_writing_one_entry_do_not_collide(eager_run: Path) -> None:
    """Two threads of one process (a Streamlit server) writing the same entry at once:
    every write succeeds, the entry reads back whole, no temporary file is left."""
    import threading

    xplane = xt.find_xplane(eager_run)
    result = xt.convert(xplane, "input_pipeline_analyzer")
    entry = xt._entry_path(eager_run / "cache", "input_pipeline_analyzer", xt.cache_key(xplane, "x", {}))
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def write() -> None:
        try:
            for _ in range(15):
                barrier.wait(timeout=60)
                xt._write_entry(entry, result)
        except threading.BrokenBarrierError:
            pass
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    back = xt._read_entry(entry)
    assert back is not None
    for name, df in result.tables.items():
        pd.testing.assert_frame_equal(back.tables[name], df, check_exact=True)
    assert not [p for p in entry.parent.iterdir() if p.name.startswith(".")]


# -- TF's event cap ------------------------------------------------------------------------------
def test_capture_limit_warning_is_none_for_a_whole_capture(eager_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(xt.TRACE_EVENT_LIMIT_ENV, raising=False)
    xplane = xt.find_xplane(eager_run)
    events = xt.trace_events(xplane)
    n_markers = int(events["marker"].sum())
    assert n_markers == 5
    assert xt.capture_limit_warning(events, n_markers) is None
    assert xt.capture_limit_warning(events, None) is None
    assert xt.capture_limit_warning(xplane, n_markers) is None  # from the cached result
    # Below the converter's cap: no warning; at it, one (the converter keeps that many).
    assert xt.capture_limit_warning(events, n_markers, trace_events_total=1699, event_limit=1700) is None
    at_cap = xt.capture_limit_warning(events, n_markers, trace_events_total=1700, event_limit=1700)
    assert at_cap is not None and at_cap["evidence"]["event_limit_reached"] is True


def test_capture_limit_warning_when_steps_are_missing(eager_run: Path) -> None:
    """A window shorter than asked: the trace cut after the third marker."""
    events = xt.trace_events(xt.find_xplane(eager_run))
    markers = events[events["marker"]].sort_values("ts_us")
    kept = events[events["ts_us"] < float(markers["ts_us"].iloc[3])].reset_index(drop=True)
    w = xt.capture_limit_warning(kept, 5, event_limit=None)
    assert w is not None and w["kind"] == "trace_event_cap"
    assert w["evidence"]["steps_in_trace"] == 3 and w["evidence"]["expected_steps"] == 5
    assert w["evidence"]["event_limit_reached"] is False
    assert "3 of the 5 steps" in w["message"] and "--profile-steps 2" in w["message"]
    assert "smaller model" in w["message"]
    json.dumps(w)  # stored in the manifest as it is


def test_capture_cut_by_xprofs_event_cap_is_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """xprof's converter really dropping events: its cap (TF_PROFILER_TRACE_VIEWER_MAX_EVENTS)
    set below the capture's 1700 events keeps the earliest ones only."""
    monkeypatch.setenv(xt.TRACE_EVENT_LIMIT_ENV, "1000")
    xplane = xt.find_xplane(copy_run("tf_eager", tmp_path))
    res = xt.convert(xplane, "trace_viewer")
    assert res.info["trace_events"] == 1000
    events = res.table("events")
    kept = sorted(int(s) for s in events.loc[events["marker"], "step"])
    assert 0 < len(kept) < 5
    w = xt.capture_limit_warning(xplane, 5)
    assert w is not None
    ev = w["evidence"]
    assert ev["event_limit"] == 1000 and ev["event_limit_reached"] is True
    assert ev["steps_in_trace"] == len(kept) and ev["last_step_in_trace"] == kept[-1]
    assert "1,000 events" in w["message"] and f"{len(kept)} of the 5 steps" in w["message"]
    # Without knowing how many steps were profiled (steps inferred), the cap still tells.
    assert xt.capture_limit_warning(xplane, None) is not None
    monkeypatch.delenv(xt.TRACE_EVENT_LIMIT_ENV)
    whole = xt.convert(xplane, "trace_viewer")  # the cap is part of the cache key
    assert whole.info["trace_events"] > 1000
    assert xt.capture_limit_warning(xplane, 5) is None


def test_step_windows_from_the_cache_match_the_markers(eager_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xplane = xt.find_xplane(eager_run)
    events = xt.trace_events(xplane)
    want = {s: xt.step_window_ms(events, s) for s in (3, 4, 5, 6, 7)}
    xt._RECENT.clear()  # read the Arrow file, not this process's last results
    _refuse_converters(monkeypatch)
    got = xt.step_windows_ms(xplane)
    assert got["step"].tolist() == [3, 4, 5, 6, 7]
    for row in got.itertuples():
        assert (row.start_ms, row.end_ms) == pytest.approx(want[row.step], abs=1e-9)


@pytest.mark.parametrize("scenario", TRACE_SCENARIOS)
def test_no_capture_limit_warning_on_any_fixture(scenario: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fixture holds its whole window: no warning, whatever kind of steps it has
    (tf_graph_loop's five steps ran as one compiled block with one marker)."""
    monkeypatch.delenv(xt.TRACE_EVENT_LIMIT_ENV, raising=False)
    run = RunProfile.read(copy_run(scenario, tmp_path))
    steps = run.table("steps")
    expected = xt.expected_markers(steps)
    window = steps[steps["in_profile_window"].astype(bool)]
    assert expected == (None if window["derived"].any() else len(window))
    assert xt.capture_limit_warning(run.xplane_path(), expected) is None


def test_expected_markers_counts_the_window() -> None:
    steps = pd.DataFrame({"step": [0, 1, 2, 3], "in_profile_window": [False, True, True, True],
                          "derived": [False, False, False, False]})
    assert xt.expected_markers(steps) == 3
    assert xt.expected_markers(steps.assign(derived=[False, True, True, False])) is None
    assert xt.expected_markers(steps.assign(in_profile_window=False)) is None

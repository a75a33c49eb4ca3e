"""Reliability (issue 13): a damaged store, hostile input and dying processes end in a
message, with nothing lost. Each test names the defect it guards against."""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from profilers.errors import BadTable
from profilers.model import RunProfile
from profilers.store import RunStore
from tests.test_store import make_profile


def _store_with_runs(home: Path, n: int = 3) -> tuple[RunStore, list[str]]:
    store = RunStore(home)
    ids = []
    for i in range(n):
        p = make_profile(["numpy", "tf_eager", "tf_function"][i % 3], median=1.0 + i)
        store.save(p)
        ids.append(p.run_id)
    return store, ids


# -- 1. the index really is derived ------------------------------------------------------------
@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_columns"])
def test_damaged_index_is_set_aside_and_rebuilt(tmp_path, damage):
    store, ids = _store_with_runs(tmp_path)
    index = store.index_path
    for extra in ("-wal", "-shm"):
        Path(f"{index}{extra}").unlink(missing_ok=True)
    if damage == "garbage":
        index.write_bytes(b"this is not a database\n" * 200)
    elif damage == "truncated":
        with sqlite3.connect(index) as conn:  # make it several pages long, then cut it in half
            conn.execute("PRAGMA journal_mode=DELETE")
            conn.execute("CREATE TABLE pad (x TEXT)")
            conn.executemany("INSERT INTO pad VALUES (?)", [("x" * 500,)] * 200)
        conn.close()
        data = index.read_bytes()
        index.write_bytes(data[: len(data) // 2])
    else:
        index.unlink()
        with sqlite3.connect(index) as conn:
            conn.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, other TEXT)")
        conn.close()
    fresh = RunStore(tmp_path)
    df = fresh.list()
    assert set(df["run_id"]) == set(ids)
    assert list(tmp_path.glob("index.sqlite.corrupt-*")), "the damaged index is kept aside"
    assert len(fresh.notices) == 1 and "rebuilt" in fresh.notices[0]
    again = RunStore(tmp_path)
    again.list()
    assert again.notices == []  # the warning is given once
    assert again.load(ids[0]).run_id == ids[0]


def test_commit_is_not_undone_by_an_index_failure(tmp_path, monkeypatch):
    store = RunStore(tmp_path)

    def broken(*args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(sqlite3, "connect", broken)
    p = make_profile()
    store.save(p)  # committed: the index is derived and catches up at the next listing
    assert (tmp_path / p.run_id / "manifest.json").is_file()
    assert store.notices and "next listing" in store.notices[0]
    monkeypatch.undo()
    assert RunStore(tmp_path).list()["run_id"].tolist() == [p.run_id]


# -- 2. damage is quarantined per run ------------------------------------------------------
DAMAGES = {
    "manifest_not_json": ("manifest.json", "{not json", "not valid JSON"),
    "manifest_a_list": ("manifest.json", "[1, 2, 3]", "not a run manifest"),
    "manifest_wrong_types": ("manifest.json", None, "'results' is a list"),
    "table_bad_column": ("tables/steps.csv", "step,epoch\n1,2\n", "missing column"),
    "table_binary": ("tables/steps.csv", "\udcff", "cannot be parsed"),
    "findings_not_json": ("findings.json", "[{", "not valid JSON"),
    "findings_wrong_shape": ("findings.json", '{"a": 1}', "not a list of findings"),
}


def _damage(run_dir: Path, kind: str) -> str:
    rel, text, needle = DAMAGES[kind]
    path = run_dir / rel
    if kind == "manifest_wrong_types":
        m = json.loads(path.read_text())
        m["results"] = [1, 2]
        path.write_text(json.dumps(m))
    elif kind == "table_binary":
        path.write_bytes(b"\xff\xfe\x00garbage\x00\xff" * 10)
    else:
        path.write_text(text)
    return needle


@pytest.mark.parametrize("kind", sorted(DAMAGES))
def test_a_damaged_run_is_listed_as_damaged_and_can_be_deleted(tmp_path, kind):
    store, ids = _store_with_runs(tmp_path)
    store.index_path.unlink()  # the index is rebuilt from disk: the damaged run is read
    needle = _damage(tmp_path / ids[1], kind)
    df = RunStore(tmp_path).list()
    assert set(df["run_id"]) == set(ids)
    bad = df.set_index("run_id").loc[ids[1]]
    assert bad["status"] == "damaged" and needle in bad["damage"], bad["damage"]
    ok = df[df["run_id"] != ids[1]]
    assert (ok["status"] == "ok").all() and ok["damage"].isna().all()
    RunStore(tmp_path).delete(ids[1])
    assert set(RunStore(tmp_path).list()["run_id"]) == {ids[0], ids[2]}


@pytest.mark.parametrize("doc, needle", [
    ([1, 2], "not a run manifest"),
    ({"run_id": 5}, "no run_id string"),
    ({"run_id": "x", "results": {"step_ms": [1]}}, "step_ms"),
    ({"run_id": "x", "results": {"steps": "many"}}, "not a number"),
    ({"run_id": "x", "capture": "yes"}, "'capture' is a str"),
])
def test_a_manifest_of_the_wrong_shape_is_a_bad_table(tmp_path, doc, needle):
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BadTable, match=needle):
        RunProfile.read(tmp_path)


def test_corrupt_findings_hint_does_not_send_the_user_to_a_command_that_fails(tmp_path):
    store, ids = _store_with_runs(tmp_path, 1)
    (tmp_path / ids[0] / "findings.json").write_text("[{")
    with pytest.raises(BadTable) as err:
        store.load(ids[0])
    assert "Delete that findings.json" in err.value.hint


def test_leftover_trash_does_not_block_deleting_the_run_and_is_cleaned(tmp_path):
    store, ids = _store_with_runs(tmp_path, 2)
    trash = store.staging / f"deleting-{ids[0]}"
    (trash / "tables").mkdir(parents=True)
    (trash / "tables" / "steps.csv").write_text("left by a crash")
    store.delete(ids[0])
    assert store.list()["run_id"].tolist() == [ids[1]]
    assert not any(store.staging.iterdir())


def test_list_gives_integer_step_counts(tmp_path):
    store, ids = _store_with_runs(tmp_path, 1)
    failed = make_profile("tf_eager")
    failed.manifest["results"] = {}
    store.save(failed)
    steps = dict(zip(store.list()["run_id"], store.list()["steps"]))
    assert steps[ids[0]] == 5 and type(steps[ids[0]]) is int
    assert steps[failed.run_id] is None


# -- 8. durability: a crash at any point of commit ------------------------------------------
def _writer(home: Path, ready_fd: int) -> None:
    """Commit (and sometimes delete) runs until killed; one byte on ``ready_fd`` when it
    starts and one after each commit."""
    store = RunStore(home)
    os.write(ready_fd, b"r")
    n = 0
    while True:
        p = make_profile(["numpy", "tf_eager"][n % 2], median=1.0)
        store.save(p)
        os.write(ready_fd, b"c")
        n += 1
        if n % 3 == 0:
            store.delete(p.run_id)


def test_crash_in_commit_loop_always_leaves_a_store_that_lists_whole(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    # Kill points spread over a few commits, whatever this machine's speed (no timing is
    # asserted: the delay only decides where the writer dies).
    probe = RunStore(tmp_path / "probe")
    probe.save(make_profile())
    t = time.perf_counter()
    probe.save(make_profile())
    span_s = time.perf_counter() - t  # about one commit
    rng = random.Random(13)
    checked: set[str] = set()
    kills = 0
    for _ in range(54):
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the writer: no pytest code runs here after the fork
            try:
                os.close(ready_r)
                _writer(home, ready_w)
            finally:
                os._exit(0)
        os.close(ready_w)
        os.read(ready_r, 1)  # the writer is about to commit
        if rng.random() < 0.3:
            os.read(ready_r, 1)  # ... or let it finish one commit first (whatever the load)
        time.sleep(rng.uniform(0.0, span_s))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(ready_r)
        kills += os.WIFSIGNALED(status)
        store = RunStore(home)
        df = store.list()
        assert not (df["status"] == "damaged").any(), df[df["status"] == "damaged"].to_dict("records")
        on_disk = {p.name for p in store.run_dirs()}
        assert set(df["run_id"]) == on_disk
        for rid in on_disk - checked:
            assert store.load(rid).run_id == rid
        checked |= on_disk
    assert kills >= 50
    assert checked, "the writer committed runs between the kills"


# -- CLI: one error funnel ---------------------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, home: Path, **kw) -> "subprocess.CompletedProcess[str]":
    import subprocess
    import sys

    env = dict(os.environ, SGDSCOPE_HOME=str(home), SGDSCOPE_WORKLOAD_MODULES="tests.toy_workload",
               PYTHONPATH=str(ROOT))
    env.pop("SGDSCOPE_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "profilers.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180, **kw)


def _no_traceback(out) -> None:
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout, out.stderr


@pytest.mark.parametrize("as_json", [False, True])
def test_home_that_is_a_file_is_a_message(tmp_path, as_json):
    home = tmp_path / "afile"
    home.write_text("not a folder")
    for command in (["list"], ["show", "20260101-000000-toy-ok-abcdef"]):
        out = cli(*command, *(["--json"] if as_json else []), "--home", str(home), home=tmp_path / "x")
        _no_traceback(out)
        assert out.returncode == 2
        assert "is a file, not a folder" in out.stderr and "hint:" in out.stderr
        if as_json:
            assert "is a file" in json.loads(out.stdout)["error"]


@pytest.mark.parametrize("where", ["under_a_file", "unwritable", "invalid"])
def test_export_to_a_bad_place_is_a_message(tmp_path, where):
    store, ids = _store_with_runs(tmp_path / "home", 1)
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    if where == "under_a_file":
        dest = blocker / "out.zip"
    elif where == "unwritable":
        dest = Path("/proc/sgdscope-test/out.zip")
    else:
        dest = tmp_path / ("x" * 300) / "out.zip"
    out = cli("export", ids[0], "--out", str(dest), "--no-report", "--no-trace-json", "--json", home=store.home)
    _no_traceback(out)
    assert out.returncode == 2, out.stderr
    doc = json.loads(out.stdout)
    assert doc["error"] and doc["hint"]


@pytest.mark.parametrize("kind", ["manifest_a_list", "manifest_wrong_types"])
def test_show_of_a_wrong_shape_manifest_is_a_message(tmp_path, capsys, kind):
    from profilers.cli import main

    store, ids = _store_with_runs(tmp_path, 1)
    _damage(tmp_path / ids[0], kind)
    for args, expected in ((["show", ids[0]], 4), (["show", ids[0], "--json"], 4), (["list"], 0)):
        code = main([*args, "--home", str(tmp_path)])
        err = capsys.readouterr().err
        assert code == expected, err
        assert "AttributeError" not in err and "internal error" not in err
        if expected:
            assert "error:" in err and "hint:" in err


def test_list_shows_a_damaged_run_and_delete_removes_it(tmp_path):
    store, ids = _store_with_runs(tmp_path, 2)
    _damage(tmp_path / ids[0], "manifest_not_json")
    store.index_path.unlink()
    out = cli("list", home=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "damaged" in out.stdout and f"sgdscope delete {ids[0]}" in out.stderr
    rows = json.loads(cli("list", "--json", home=tmp_path).stdout)["runs"]
    assert {r["run_id"]: r["status"] for r in rows} == {ids[0]: "damaged", ids[1]: "ok"}
    assert all(type(r["steps"]) is int for r in rows if r["status"] == "ok")
    assert cli("delete", ids[0], home=tmp_path).returncode == 0
    assert [r["run_id"] for r in json.loads(cli("list", "--json", home=tmp_path).stdout)["runs"]] == [ids[1]]


def test_show_json_into_a_closed_pipe_ends_quietly(tmp_path):
    import subprocess
    import sys

    store = RunStore(tmp_path)
    p = make_profile()
    p.manifest["params"] = {f"k{i}": "v" * 100 for i in range(3000)}  # far more than a pipe holds
    store.save(p)
    env = dict(os.environ, SGDSCOPE_HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "profilers.cli", "show", p.run_id, "--json"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()  # like `| head -c 10`
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert proc.returncode == 128 + signal.SIGPIPE


# -- numbers are numbers ---------------------------------------------------------------------
@pytest.mark.parametrize("args, needle", [
    (["--timeout", "nan"], "timeout=nan is not a finite number"),
    (["--timeout", "inf"], "timeout=inf is not a finite number"),
    (["--param", "sleep_ms=nan"], "sleep_ms=nan is not a finite number"),
    (["--param", "sleep_ms=inf"], "sleep_ms=inf is not a finite number"),
    (["--param", "sleep_ms=-inf"], "sleep_ms=-inf is not a finite number"),
    (["--param", "steps=inf"], "not a valid int"),
    (["--profile-steps", "0"], "below its minimum"),
    (["--sample-hz", "nan"], "sample interval"),
])
def test_nan_and_infinity_do_not_pass_validation(tmp_path, monkeypatch, capsys, args, needle):
    import workloads
    from profilers.cli import main

    monkeypatch.setenv("SGDSCOPE_WORKLOAD_MODULES", "tests.toy_workload")
    workloads._load()
    code = main(["run", "toy", "--variants", "ok", *args, "--home", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "_experiments").exists() or not any((tmp_path / "_experiments").iterdir())


@pytest.mark.parametrize("args, needle", [
    (["--timeout", "nan"], "timeout=nan is not a finite number"),
    (["--window", "nan"], "window=nan is not a finite number"),
    (["--window", "inf"], "window=inf is not a finite number"),
])
def test_script_options_nan_are_refused(tmp_path, capsys, args, needle):
    from profilers.cli import main

    script = tmp_path / "s.py"
    script.write_text("print('hi')\n")
    code = main(["profile", str(script), *args, "--home", str(tmp_path / "home")])
    err = capsys.readouterr().err
    assert code == 2 and needle in err, err
    assert not (tmp_path / "home" / "_experiments").exists() or not any((tmp_path / "home" / "_experiments").iterdir())


def test_check_number_is_the_one_range_check():
    from profilers.spec import check_number
    from workloads.base import Param

    for bad in (float("nan"), float("inf"), -float("inf"), True, "3"):
        with pytest.raises(Exception, match="not a finite"):
            check_number("x", bad)
    assert check_number("x", 3, minimum=0, maximum=3, integer=True) == 3
    with pytest.raises(Exception, match="above its maximum"):
        Param("lr", float, 0.1, "learning rate", minimum=0, maximum=10).parse("11")
    with pytest.raises(Exception, match="lr=nan is not a finite number"):
        Param("lr", float, 0.1, "learning rate").parse(float("nan"))


# -- supervision that cannot be lost -----------------------------------------------------------
def _wait_until(predicate, what: str, limit_s: float = 90.0):
    deadline = time.monotonic() + limit_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def _running_experiment(home: Path) -> Path:
    """The experiment folder whose hang variant is running (after `run toy --variants hang,...`)."""
    from profilers.session import read_progress

    def find():
        for exp in (home / "_experiments").glob("*"):
            if (exp / "worker.pid").exists() and (exp / "spec.json").exists() \
                    and read_progress(exp)["variants"]["hang"]["status"] == "running":
                return exp
        return None

    return _wait_until(find, "the hang variant to start")


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def _run_in_background(home: Path, *args: str):
    import subprocess
    import sys

    env = dict(os.environ, SGDSCOPE_HOME=str(home), SGDSCOPE_WORKLOAD_MODULES="tests.toy_workload",
               PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "profilers.cli", "run", "toy", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_killed_supervisor_takes_its_worker_and_the_cli_says_why(tmp_path):
    home = tmp_path / "home"
    proc = _run_in_background(home, "--variants", "hang,ok", "--timeout", "120")
    exp = _running_experiment(home)
    worker = int((exp / "worker.pid").read_text())
    os.kill(int((exp / "supervisor.pid").read_text()), signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 5
    assert "supervisor process ended without a status" in err, err
    _wait_until(lambda: _gone(worker), "the worker to die with its supervisor")
    final = json.loads((exp / "status.json").read_text())
    assert final["status"] == "failed" and "supervisor" in final["error"]
    statuses = {p.manifest["variant"]: p.manifest["status"] for p in RunStore(home).experiment_runs(exp.name)}
    assert statuses == {"hang": "failed", "ok": "ok"}  # the baseline ran first; nothing left without a run


def test_cancel_command_stops_a_detached_experiment(tmp_path):
    home = tmp_path / "home"
    proc = _run_in_background(home, "--variants", "hang,ok2", "--timeout", "120")
    exp = _running_experiment(home)
    out = cli("cancel", exp.name, "--json", home=home)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "cancelled"
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 5 and f"experiment {exp.name} cancelled" in err
    again = cli("cancel", exp.name, home=home)  # over already: says so
    assert again.returncode == 0 and "cancelled" in again.stdout
    unknown = cli("cancel", "../../etc", home=home)
    _no_traceback(unknown)
    assert unknown.returncode == 5 and "No experiment" in unknown.stderr


def test_status_is_written_even_when_storing_the_failed_runs_fails(tmp_path, monkeypatch):
    from profilers import session
    from profilers.spec import ExperimentSpec

    monkeypatch.setenv("SGDSCOPE_WORKLOAD_MODULES", "tests.toy_workload")
    monkeypatch.setenv("SGDSCOPE_HOME", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    exp = tmp_path / "_experiments" / "e1"
    exp.mkdir(parents=True)
    (exp / "spec.json").write_text(ExperimentSpec(workload="toy", variants=["die", "ok"],
                                                  experiment_id="e1", timeout_s=120).to_json())

    def refuse(self, profile, staged):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(RunStore, "commit", refuse)
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        session.supervise(exp)
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
    final = json.loads((exp / "status.json").read_text())
    assert final["status"] == "failed"
    assert "SIGKILL" in final["error"] and "No space left on device" in final["error"]


def test_capping_a_writing_workers_output_loses_no_line_of_the_kept_tail(tmp_path):
    """A worker printing numbered lines as fast as it can, capped again and again while it
    writes: the kept output is the header, then consecutive lines up to the last one. An
    append between the cap's read and its truncate used to be lost, and one between the
    truncate and the rewrite landed before the header."""
    from profilers.session import cap_output, live_group

    path = tmp_path / "worker.stdout"
    with open(path, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-c", "import sys\nfor i in range(300000):\n"
                                 "    sys.stdout.write(f'{i}\\n'); sys.stdout.flush()\nprint('the last line')"],
                                stdout=out, start_new_session=True)
    caps = 0
    while proc.poll() is None:
        if path.stat().st_size > 32_768:
            caps += 1
        cap_output(path, cap_bytes=32_768, keep_bytes=8_192, pause=live_group(proc))
    cap_output(path, cap_bytes=32_768, keep_bytes=8_192, pause=live_group(proc))
    assert caps >= 5  # it was capped while writing
    lines = path.read_bytes().decode().splitlines()
    assert lines[0].startswith("[sgdscope: the first") and lines[-1] == "the last line"
    numbers = [int(x) for x in lines[2:-1]]  # lines[1] may be cut mid-line by the cap
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))) and numbers[-1] == 299_999


def test_worker_output_is_capped_keeping_the_newest(tmp_path):
    from profilers.session import cap_output

    path = tmp_path / "worker.stdout"
    path.write_bytes(b"old\n" * 5000 + b"the last line\n")
    cap_output(path, cap_bytes=4096, keep_bytes=1024)
    data = path.read_bytes()
    assert len(data) < 1024 + 200
    assert data.endswith(b"the last line\n") and b"were dropped" in data
    with open(path, "ab") as fh:  # a writer with O_APPEND keeps appending at the end
        fh.write(b"more\n")
    assert path.read_bytes().endswith(b"the last line\nmore\n")


def test_old_finished_experiments_are_pruned(tmp_path):
    from profilers.session import prune_experiments

    store = RunStore(tmp_path)
    old, recent, running = (store.experiments / n for n in ("old", "recent", "running"))
    for d in (old, recent, running):
        d.mkdir(parents=True)
        (d / "spec.json").write_text("{}")
    (old / "status.json").write_text("{}")
    (recent / "status.json").write_text("{}")
    long_ago = time.time() - 30 * 24 * 3600
    os.utime(old / "status.json", (long_ago, long_ago))
    os.utime(running / "spec.json", (long_ago, long_ago))
    assert prune_experiments(store) == ["old"]
    assert sorted(p.name for p in store.experiments.iterdir()) == ["recent", "running"]


def test_timed_out_script_run_has_the_logs_its_message_points_to(tmp_path):
    script = tmp_path / "slow.py"
    script.write_text("import time\nprint('started', flush=True)\ntime.sleep(600)\n")
    out = cli("profile", str(script), "--timeout", "3", "--json", home=tmp_path / "home")
    assert out.returncode == 5, out.stderr
    run_dir = Path(json.loads(out.stdout)["run_dir"])
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "timeout"
    assert "started" in (run_dir / "logs" / "stdout.txt").read_text()


# -- the dashboard survives damage ---------------------------------------------------------
def _damage_store(home: Path) -> str:
    """Damage the newest run's manifest and the whole index; the damaged run's id."""
    store = RunStore(home)
    victim = store.list()["run_id"].iloc[0]
    (home / victim / "manifest.json").write_text("[1, 2]")
    for extra in ("-wal", "-shm"):
        Path(f"{store.index_path}{extra}").unlink(missing_ok=True)
    store.index_path.write_bytes(b"garbage" * 100)
    return victim


PAGES_TO_CHECK = ["home", "launch", "compare", "run", "runs", "triage", "diff", "workers", "sweep", "pipeline"]


@pytest.mark.parametrize("page", PAGES_TO_CHECK)
def test_every_page_survives_a_damaged_index_and_a_damaged_run(filled_store, open_page, dash_home, page):
    from dashboard import nav

    if not nav.available(page):
        pytest.skip(f"no {page} page")
    victim = _damage_store(dash_home)
    at = open_page(page)  # asserts no exception
    assert not [e.value for e in at.error if "not a run manifest" in str(e.value)], \
        f"{page} shows the damaged run {victim} instead of the readable ones"


def test_runs_page_lists_a_damaged_run_with_its_reason_and_deletes_it(filled_store, open_page, dash_home):
    victim = _damage_store(dash_home)
    at = open_page("runs")
    warnings = " ".join(str(w.value) for w in at.warning)
    assert "rebuilt from the run folders" in warnings
    assert victim in warnings and "not a run manifest" in warnings
    table = at.dataframe[0].value
    assert table.set_index("run_id").loc[victim, "status"] == "damaged"
    at.multiselect[0].set_value([victim]).run()
    next(b for b in at.button if b.label.startswith("Delete selected")).click().run()
    next(b for b in at.button if b.label == "Yes, delete").click().run()
    assert not at.exception
    assert victim not in set(RunStore(dash_home).list()["run_id"])
    assert victim not in set(at.dataframe[0].value["run_id"])


# -- attach: a port that is no profiler server is named at once ----------------------------------
def test_attach_names_a_port_that_accepts_but_never_answers(tmp_path):
    import socket
    import threading

    from profilers.errors import CaptureFailed
    from profilers.remote_capture import Address, check_profiler_servers

    with socket.socket() as silent, socket.socket() as http:
        silent.bind(("localhost", 0))
        silent.listen()  # the kernel accepts; nobody ever answers
        http.bind(("localhost", 0))
        http.listen()

        def answer_http1() -> None:
            conn, _ = http.accept()
            with conn:
                conn.recv(100)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        threading.Thread(target=answer_http1, daemon=True).start()
        addrs = [Address("localhost", silent.getsockname()[1]), Address("localhost", http.getsockname()[1])]
        with pytest.raises(CaptureFailed) as err:
            check_profiler_servers(addrs, timeout_s=1.0)
    assert "accepts connections but sent nothing" in err.value.message
    assert "not as a gRPC (HTTP/2) server" in err.value.message
    assert "No TF profiler server listens on that port" in err.value.hint
    assert "ran no TensorFlow work" not in err.value.hint


def test_a_grpc_server_passes_the_handshake():
    from concurrent import futures

    grpc = pytest.importorskip("grpc")  # a gRPC server stands in for the TF profiler server

    from profilers.remote_capture import Address, check_profiler_servers

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("localhost:0")
    server.start()
    try:
        check_profiler_servers([Address("localhost", port)])
    finally:
        server.stop(None)


# -- bundles: a total expansion cap ----------------------------------------------------------------
def test_bundle_of_many_members_just_under_the_member_floor_is_refused(tmp_path):
    import io
    import zipfile

    from profilers import bundle
    from profilers.errors import BadBundle

    buf = io.BytesIO()
    one_mib = b"\0" * (1 << 20)  # exactly the per-member floor: each member alone passes
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(200):
            zf.writestr(f"runs/x/tables/part{i}.csv", one_mib)
    buf.seek(0)
    with zipfile.ZipFile(buf) as zf:
        with pytest.raises(BadBundle, match="cap for a whole bundle"):
            bundle.check_entries(zf, "bomb.zip", bundle.DEFAULT_LIMITS)


# -- a profiled script's process tree ends with its run -------------------------------------------
FORKING_SCRIPT = '''
import os, sys, time
out = sys.argv[1]
pid = os.fork()
if pid == 0:
    # a child that returns from the script at once (back into whoever ran it)
    with open(out + ".quick", "w") as fh:
        fh.write(str(os.getpid()))
    sys.exit(0)
pid2 = os.fork()
if pid2 == 0:
    # a child that never ends on its own
    with open(out + ".sleeper", "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(3600)
    os._exit(0)
os.waitpid(pid, 0)
while not os.path.exists(out + ".sleeper"):
    time.sleep(0.01)
total = 0
for i in range(200000):
    total += i
print("parent done", total)
'''


def test_a_forked_child_never_runs_sgdscope_code_and_leftovers_are_killed(tmp_path):
    script = tmp_path / "forker.py"
    script.write_text(FORKING_SCRIPT)
    marker = tmp_path / "child"
    home = tmp_path / "home"
    out = cli("profile", str(script), "--arg", str(marker), "--json", home=home)
    assert out.returncode == 0, out.stderr
    runs = RunStore(home).list()
    assert len(runs) == 1 and runs["status"].tolist() == ["ok"]
    exp = next((home / "_experiments").iterdir())
    events = [json.loads(line)["event"] for line in (exp / "progress.jsonl").read_text().splitlines()]
    assert events.count("variant_end") == 1 and events[-1] == "variant_end", events
    assert "already exists" not in (exp / "worker.stderr").read_text()
    sleeper = int(Path(f"{marker}.sleeper").read_text())
    _wait_until(lambda: _gone(sleeper), "the script's leftover child to be killed")


SETSID_SCRIPT = '''
import os, sys, time
out = sys.argv[1]
pid = os.fork()
if pid == 0:
    os.setsid()  # leaves the worker's process group: a group kill no longer reaches it
    if os.fork() == 0:  # and double-forks, so its parent is no longer the script either
        with open(out + ".escaper", "w") as fh:
            fh.write(str(os.getpid()))
        time.sleep(3600)
    os._exit(0)
os.waitpid(pid, 0)
while not os.path.exists(out + ".escaper"):
    time.sleep(0.01)
print("parent done")
'''


def test_a_child_that_left_the_process_group_is_killed_too(tmp_path):
    script = tmp_path / "escaper.py"
    script.write_text(SETSID_SCRIPT)
    marker = tmp_path / "child"
    home = tmp_path / "home"
    out = cli("profile", str(script), "--arg", str(marker), "--json", home=home)
    assert out.returncode == 0, out.stderr
    escaper = int(Path(f"{marker}.escaper").read_text())
    try:
        _wait_until(lambda: _gone(escaper), "the setsid child to be killed")
    finally:
        if not _gone(escaper):
            os.kill(escaper, signal.SIGKILL)


def test_processes_of_an_experiment_are_found_by_their_environment(tmp_path):
    import subprocess
    import sys

    from profilers.session import EXPERIMENT_ENV, processes_of_experiment

    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    ours = subprocess.Popen(sleep, env=dict(os.environ, **{EXPERIMENT_ENV: "exp-a"}))
    other = subprocess.Popen(sleep, env=dict(os.environ, **{EXPERIMENT_ENV: "exp-ab"}))
    try:
        _wait_until(lambda: ours.pid in processes_of_experiment("exp-a"), "the process to be found")
        assert other.pid not in processes_of_experiment("exp-a")  # the whole value, not a prefix
        assert other.pid in processes_of_experiment("exp-ab")
        assert os.getpid() not in processes_of_experiment("exp-a")
    finally:
        ours.kill()
        other.kill()
        ours.wait()
        other.wait()


# -- scripts are read the way Python reads them --------------------------------------------------
def test_a_latin1_script_with_its_coding_line_is_profiled(tmp_path):
    script = tmp_path / "latin.py"
    script.write_bytes("# -*- coding: latin-1 -*-\nname = 'café'\nprint(name.upper())\n".encode("latin-1"))
    out = cli("profile", str(script), "--json", home=tmp_path / "home")
    _no_traceback(out)
    assert out.returncode == 0, out.stderr
    run_dir = Path(json.loads(out.stdout)["run_dir"])
    assert "CAFÉ" in (run_dir / "logs" / "stdout.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize("content", [b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4, b"\xff\xfe\x00\x00garbage"])
def test_a_binary_file_named_py_is_a_message(tmp_path, content):
    script = tmp_path / "binary.py"
    script.write_bytes(content)
    out = cli("profile", str(script), home=tmp_path / "home")
    _no_traceback(out)
    assert out.returncode == 2
    assert "not Python source" in out.stderr and "hint:" in out.stderr


def test_a_run_with_a_damaged_index_stores_every_variant_and_a_final_status(tmp_path):
    store, ids = _store_with_runs(tmp_path, 1)
    for extra in ("-wal", "-shm"):
        Path(f"{store.index_path}{extra}").unlink(missing_ok=True)
    store.index_path.write_bytes(b"\x00garbage" * 300)
    out = cli("run", "toy", "--variants", "ok,ok2", "--param", "steps=6", "--json", home=tmp_path)
    _no_traceback(out)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["status"] == "ok" and [r["status"] for r in doc["runs"]] == ["ok", "ok"]
    assert "rebuilt from the run folders" in out.stderr
    listed = json.loads(cli("list", "--json", home=tmp_path).stdout)["runs"]
    assert {r["run_id"] for r in listed} == {ids[0], *(r["run_id"] for r in doc["runs"])}


def test_killing_the_cli_cancels_its_experiment(tmp_path):
    home = tmp_path / "home"
    proc = _run_in_background(home, "--variants", "hang,ok2", "--timeout", "120")
    exp = _running_experiment(home)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 5, err
    assert json.loads((exp / "status.json").read_text())["status"] == "cancelled"


def test_commit_fsyncs_the_run_before_and_the_store_folder_after_the_rename(tmp_path, monkeypatch):
    import stat

    store = RunStore(tmp_path)
    store.ensure_home()
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        events.append(("fsync-" + kind, os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    p = make_profile()
    final = str(store.save(p))
    commit_at = events.index(("replace", final))
    before, after = events[:commit_at], events[commit_at + 1:]
    staged = str(store.staging / p.run_id)
    assert ("fsync-dir", staged) in before and ("fsync-dir", f"{staged}/tables") in before
    assert ("fsync-file", f"{staged}/manifest.json") in before
    assert ("fsync-dir", str(tmp_path)) in after


def test_a_chatty_script_output_is_capped_under_experiments(tmp_path):
    from profilers.session import OUTPUT_CAP_BYTES

    script = tmp_path / "chatty.py"
    script.write_text("import sys\nline = 'x' * 1023 + '\\n'\n"
                      f"for i in range({OUTPUT_CAP_BYTES // 1024 + 2048}):\n    sys.stdout.write(line)\n"
                      "print('the last line')\n")
    home = tmp_path / "home"
    out = cli("profile", str(script), "--json", home=home)
    assert out.returncode == 0, out.stderr
    exp = next((home / "_experiments").iterdir())
    kept = exp / "worker.stdout"
    assert kept.stat().st_size <= OUTPUT_CAP_BYTES
    assert kept.read_bytes().rstrip().endswith(b"the last line")
    run_dir = Path(json.loads(out.stdout)["run_dir"])
    assert (run_dir / "logs" / "stdout.txt").read_text().rstrip().endswith("the last line")

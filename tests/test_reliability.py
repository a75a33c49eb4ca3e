"""Reliability (issue 13): a damaged store, hostile input and dying processes end in a
message, with nothing lost. Each test names the defect it guards against."""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
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
def _writer(home: Path) -> None:
    """Commit (and sometimes delete) runs until killed."""
    store = RunStore(home)
    n = 0
    while True:
        p = make_profile(["numpy", "tf_eager"][n % 2], median=1.0)
        store.save(p)
        n += 1
        if n % 3 == 0:
            store.delete(p.run_id)


def test_crash_in_commit_loop_always_leaves_a_store_that_lists_whole(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    rng = random.Random(13)
    checked: set[str] = set()
    kills = 0
    for _ in range(60):
        pid = os.fork()
        if pid == 0:  # the writer: no pytest code runs here after the fork
            try:
                _writer(home)
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.0, 0.03))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
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

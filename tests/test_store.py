"""Run store: atomic writes, the index survives a reopen and is rebuilt from the runs."""
from __future__ import annotations

import os

import pandas as pd
import pytest

from profilers.errors import BadTable, RunNotFound
from profilers.model import SCHEMA_VERSION, RunProfile, validate_table
from profilers.store import RunStore, new_id


def make_profile(variant: str = "numpy", median: float = 1.0) -> RunProfile:
    steps = pd.DataFrame({"step": range(5), "epoch": 0, "start_us": [i * 10.0 for i in range(5)],
                          "wall_us": [median * 1e3] * 5, "warmup": [True] + [False] * 4,
                          "derived": False, "in_profile_window": False, "loss": [1.0, 0.5, 0.3, 0.2, 0.1]})
    return RunProfile(manifest={
        "schema_version": SCHEMA_VERSION, "run_id": new_id("linreg", variant), "experiment_id": "e1",
        "workload": "linreg", "variant": variant, "status": "ok", "created_at": "2026-01-01T00:00:00+00:00",
        "results": {"steps": 5, "step_ms": {"median": median}, "final_loss": 0.1,
                    "loss_matches_baseline": True}}, tables={"steps": steps})


def test_save_load_roundtrip_and_reopen(tmp_path):
    store = RunStore(tmp_path)
    p = make_profile()
    store.save(p)
    again = RunStore(tmp_path)  # a restart
    loaded = again.load(p.run_id)
    pd.testing.assert_frame_equal(loaded.table("steps"), validate_table("steps", p.tables["steps"]))
    assert again.list()["run_id"].tolist() == [p.run_id]
    assert not any((tmp_path / "_staging").iterdir())


def test_failed_write_leaves_nothing_half_written(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    keep = make_profile("numpy")
    store.save(keep)
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if "_staging" not in str(p))
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith("manifest.json"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        store.save(make_profile("tf_eager"))
    monkeypatch.setattr(os, "replace", real_replace)
    after = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if "_staging" not in str(p))
    assert after == before
    assert store.list()["run_id"].tolist() == [keep.run_id]


def test_index_is_rebuilt_from_run_directories(tmp_path):
    store = RunStore(tmp_path)
    a, b = make_profile("numpy"), make_profile("tf_eager")
    store.save(a)
    store.save(b)
    store.index_path.unlink()
    assert set(RunStore(tmp_path).list()["run_id"]) == {a.run_id, b.run_id}


def test_a_run_damaged_after_it_was_indexed_is_listed_as_damaged_and_back_once_mended(tmp_path):
    store = RunStore(tmp_path)
    keep, hurt = make_profile("numpy"), make_profile("tf_eager")
    store.save(keep)
    store.save(hurt)
    assert set(store.list()["status"]) == {"ok"}  # both indexed
    manifest = tmp_path / hurt.run_id / "manifest.json"
    good = manifest.read_bytes()
    manifest.write_bytes(good[: len(good) // 2])  # cut short after it was indexed
    runs = RunStore(tmp_path).list().set_index("run_id")
    assert runs.loc[hurt.run_id, "status"] == "damaged" and runs.loc[hurt.run_id, "damage"]
    assert runs.loc[keep.run_id, "status"] == "ok"
    manifest.write_bytes(good.replace(b'"status": "ok"', b'"status": "failed"'))  # mended, and edited
    runs = RunStore(tmp_path).list().set_index("run_id")
    assert runs.loc[hurt.run_id, "status"] == "failed" and runs.loc[hurt.run_id, "damage"] is None


def test_a_damaged_table_after_indexing_is_seen_too(tmp_path):
    store = RunStore(tmp_path)
    p = make_profile("numpy")
    store.save(p)
    assert store.list()["status"].tolist() == ["ok"]
    (tmp_path / p.run_id / "tables" / "steps.csv").write_text("not,a,steps\ntable\n")
    runs = RunStore(tmp_path).list()
    assert runs["status"].tolist() == ["damaged"] and "steps" in runs["damage"].iloc[0]


def test_an_index_without_stamps_keeps_its_rows_and_is_stamped(tmp_path):
    import sqlite3

    store = RunStore(tmp_path)
    p = make_profile("numpy")
    store.save(p)
    with sqlite3.connect(store.index_path) as conn:  # an index written before stamps existed
        conn.execute("DROP TABLE stamps")
    runs = RunStore(tmp_path).list()
    assert runs["run_id"].tolist() == [p.run_id] and runs["status"].tolist() == ["ok"]
    assert not runs.attrs["notices"], "an index without stamps is not damaged"
    with sqlite3.connect(store.index_path) as conn:
        assert [r[0] for r in conn.execute("SELECT run_id FROM stamps")] == [p.run_id]


def test_delete(tmp_path):
    store = RunStore(tmp_path)
    p = make_profile()
    store.save(p)
    store.delete(p.run_id)
    assert store.list().empty
    with pytest.raises(RunNotFound):
        store.load(p.run_id)


def test_table_validation_names_the_column():
    with pytest.raises(BadTable, match="missing column.*wall_us"):
        validate_table("steps", pd.DataFrame({"step": [1]}).assign(epoch=0, start_us=0.0, warmup=False,
                                                                     derived=False, in_profile_window=False, loss=0.0))
    with pytest.raises(BadTable, match="'wall_us'.*float64"):
        validate_table("steps", make_profile().tables["steps"].assign(wall_us="fast"))

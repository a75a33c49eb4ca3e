"""Bundles: export -> import round trips, the xplane inside a bundle, and a suite of bad
bundles (made here, never committed), each refused with its own message while the store
stays byte-for-byte as it was. Needs xprof for the profiled runs, not TensorFlow.
"""
from __future__ import annotations

import gzip
import io
import json
import stat
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from profilers import bundle, cli
from profilers.errors import BadBundle, BadInput, DependencyMissing
from profilers.store import RunStore
from tests.bundle_fixtures import profiled_run, rezip, snapshot, synthetic_run, zip_members

FINDING = {"rule": "framework_overhead", "severity": "high", "share": 0.6,
           "evidence": {"overhead_ms": 1.2}, "recommendation": "Wrap the step in tf.function."}


@pytest.fixture
def src_store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "src")


@pytest.fixture
def dst_home(tmp_path: Path) -> Path:
    return tmp_path / "dst"


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Route tempfile into a folder the test can check is left empty."""
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def assert_same_run(a_dir: Path, b_dir: Path) -> None:
    """Same manifest, findings and tables: as data and as bytes."""
    a, b = RunStore(a_dir.parent).load(a_dir.name), RunStore(b_dir.parent).load(b_dir.name)
    assert a.manifest == b.manifest
    assert a.findings == b.findings
    assert sorted(a.tables) == sorted(b.tables)
    for name in a.tables:
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name], check_exact=True)
        assert (a_dir / "tables" / f"{name}.csv").read_bytes() == (b_dir / "tables" / f"{name}.csv").read_bytes()
    assert (a_dir / "findings.json").read_bytes() == (b_dir / "findings.json").read_bytes()


# -- round trips --------------------------------------------------------------------------------
def test_round_trip_into_an_empty_home(src_store: RunStore, dst_home: Path, tmp_path: Path,
                                       private_tmp: Path) -> None:
    a = synthetic_run(src_store, "numpy", findings=[FINDING])
    b = synthetic_run(src_store, "tf_eager", step_ms=5.0, seed=1)
    out = tmp_path / "out" / "two.zip"
    doc = bundle.export_runs([a, b], out)
    assert out.is_file() and doc["bytes"] == out.stat().st_size
    assert not list(out.parent.glob(".*.tmp")), "the temporary zip was renamed, not left behind"
    names = zipfile.ZipFile(out).namelist()
    for p in (a, b):
        for member in ("manifest.json", "findings.json", "tables/steps.csv", "tables/breakdown.csv"):
            assert f"runs/{p.run_id}/{member}" in names
        entry = next(r for r in doc["runs"] if r["run_id"] == p.run_id)
        assert entry["trace_json"]["available"] is False
        assert "no TF profiler capture" in entry["trace_json"]["reason"]
    assert {"bundle.json", "report.html"} <= set(names)
    assert not any(n.endswith("trace.json.gz") for n in names), "no empty fake trace"

    dst = RunStore(dst_home)
    result = bundle.import_bundle(out, dst)
    assert [r["result"] for r in result["runs"]] == ["imported", "imported"]
    assert set(dst.list()["run_id"]) == {a.run_id, b.run_id}
    for p in (a, b):
        assert_same_run(src_store.home / p.run_id, dst_home / p.run_id)
    assert list(private_tmp.iterdir()) == [], "the extraction folder is removed"
    assert not list((dst_home / "_staging").iterdir())


def test_importing_twice_is_idempotent(src_store: RunStore, dst_home: Path, tmp_path: Path) -> None:
    a = synthetic_run(src_store)
    out = bundle.export_bundle(a, tmp_path / "a.zip")
    dst = RunStore(dst_home)
    assert bundle.import_bundle(out, dst)["runs"][0]["result"] == "imported"
    before = snapshot(dst_home)
    again = bundle.import_bundle(out, dst)
    assert again["runs"][0]["result"] == "already present"
    assert snapshot(dst_home) == before
    assert len(dst.list()) == 1


def test_upload_stream_imports_like_a_path(src_store: RunStore, dst_home: Path, tmp_path: Path) -> None:
    a = synthetic_run(src_store)
    data = bundle.bundle_bytes(a)
    result = bundle.import_bundle(io.BytesIO(data), RunStore(dst_home))
    assert result["runs"][0]["result"] == "imported"
    assert_same_run(src_store.home / a.run_id, dst_home / a.run_id)


def test_profiled_run_round_trip_and_tools_open_it(src_store: RunStore, dst_home: Path, tmp_path: Path) -> None:
    from xprof.convert.raw_to_tool_data import xspace_to_tool_data

    run = profiled_run(src_store, "tf_eager", findings=[FINDING])
    assert not run.table("ops").empty and not run.table("breakdown").empty
    out = bundle.export_bundle(run, tmp_path / "eager.zip")
    doc = json.loads(zipfile.ZipFile(out).read("bundle.json"))
    (entry,) = doc["runs"]
    (xp,) = entry["xplanes"]
    assert xp["member"] == f"trace/plugins/profile/{run.run_id}/vm.xplane.pb"
    assert xp["run_path"] == run.manifest["capture"]["xplane"]
    assert entry["trace_json"]["available"] is True

    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(out).extractall(unpacked)
    # XProf/TensorBoard: <logdir>/plugins/profile/<session>/<host>.xplane.pb under trace/.
    xplane = unpacked / xp["member"]
    assert xplane.read_bytes() == run.xplane_path().read_bytes()
    data, content_type = xspace_to_tool_data([str(xplane)], "overview_page", {})
    assert data and json.loads(data)  # gviz tables: the capture converts
    # Perfetto / chrome://tracing: gzip of Chrome trace-event JSON.
    events = json.loads(gzip.decompress((unpacked / entry["trace_json"]["member"]).read_bytes()))
    assert any(e.get("ph") == "X" for e in events["traceEvents"])

    dst = RunStore(dst_home)
    bundle.import_bundle(out, dst)
    assert_same_run(run.run_dir, dst_home / run.run_id)
    imported = dst.load(run.run_id)
    assert imported.xplane_path().read_bytes() == run.xplane_path().read_bytes()
    # Re-exporting an imported run keeps its capture.
    again = json.loads(zipfile.ZipFile(bundle.export_bundle(imported, tmp_path / "again.zip")).read("bundle.json"))
    assert again["runs"][0]["xplanes"][0]["member"] == xp["member"]


def test_trace_json_left_out_with_its_reason(src_store: RunStore, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from profilers import xprof_tools

    run = profiled_run(src_store, "tf_function")

    def broken(*args: object, **kwargs: object) -> None:
        raise DependencyMissing("xprof is not importable (test).", "Install it.")

    monkeypatch.setattr(xprof_tools, "export_trace_json", broken)
    out = bundle.export_bundle(run, tmp_path / "b.zip")
    zf = zipfile.ZipFile(out)
    entry = json.loads(zf.read("bundle.json"))["runs"][0]
    assert entry["trace_json"]["available"] is False
    assert "xprof is not importable (test)" in entry["trace_json"]["reason"]
    assert not any(n.endswith("trace.json.gz") for n in zf.namelist())
    assert entry["xplanes"], "the xplane itself is still there"


def test_a_zipped_run_directory_is_migrated(src_store: RunStore, dst_home: Path, tmp_path: Path) -> None:
    """Schema version 0: a run directory zipped as it stands (no bundle.json)."""
    run = profiled_run(src_store, "tf_function")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(run.run_dir.rglob("*")):
            rel = str(p.relative_to(run.run_dir))
            if p.is_file() and (not rel.startswith("trace/") or rel.endswith(".xplane.pb")):
                zf.write(p, rel)
    assert any(n.startswith("cache/") for n in zip_members(buf.getvalue()))
    result = bundle.import_bundle(buf.getvalue(), RunStore(dst_home))
    assert result["migrated_from"] == 0
    assert_same_run(run.run_dir, dst_home / run.run_id)
    assert RunStore(dst_home).load(run.run_id).xplane_path().is_file()


def test_multi_run_bundle_opens_one_run_by_id(src_store: RunStore, tmp_path: Path) -> None:
    a, b = synthetic_run(src_store, "numpy"), synthetic_run(src_store, "tf_eager", seed=2)
    out = bundle.export_bundle([a, b], tmp_path / "ab.zip")
    with pytest.raises(BadInput, match="holds 2 runs"):
        bundle.load_bundle(out)
    got = bundle.load_bundle(f"{out}#{b.run_id}")
    assert got.run_id == b.run_id
    pd.testing.assert_frame_equal(got.table("steps"), b.table("steps"))
    with pytest.raises(BadInput, match="has no run"):
        bundle.load_bundle(f"{out}#20260101-000000-x-y-abcdef")


def test_failed_commit_rolls_back_runs_already_added(src_store: RunStore, dst_home: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = synthetic_run(src_store, "numpy"), synthetic_run(src_store, "tf_eager", seed=3)
    out = bundle.export_bundle([a, b], tmp_path / "ab.zip")
    dst = RunStore(dst_home)
    other = synthetic_run(dst, "other")
    before = snapshot(dst_home)
    real_commit = RunStore.commit
    calls = []

    def flaky(self: RunStore, profile, staged):  # type: ignore[no-untyped-def]
        calls.append(profile.run_id)
        if len(calls) == 2:
            raise OSError("disk full (test)")
        return real_commit(self, profile, staged)

    monkeypatch.setattr(RunStore, "commit", flaky)
    with pytest.raises(OSError, match="disk full"):
        bundle.import_bundle(out, dst)
    assert len(calls) == 2
    after = [(p, h) for p, h in snapshot(dst_home) if not p.startswith("index.sqlite")]
    assert after == [(p, h) for p, h in before if not p.startswith("index.sqlite")]
    assert set(dst.list()["run_id"]) == {other.run_id}


def test_export_refuses_nothing_and_duplicates(src_store: RunStore, tmp_path: Path) -> None:
    a = synthetic_run(src_store)
    with pytest.raises(BadInput, match="no run given"):
        bundle.export_runs([], tmp_path / "x.zip")
    with pytest.raises(BadInput, match="given twice"):
        bundle.export_runs([a, a], tmp_path / "x.zip")
    assert not list(tmp_path.glob("*.zip")) and not list(tmp_path.glob(".*.tmp"))


# -- the CLI ---------------------------------------------------------------------------------------
def test_cli_export_import_and_refusal(src_store: RunStore, dst_home: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    a, b = synthetic_run(src_store, "numpy", findings=[FINDING]), synthetic_run(src_store, "tf_eager", seed=4)
    out = tmp_path / "cli.zip"
    rc = cli.main(["export", a.run_id, b.run_id, "--out", str(out), "--home", str(src_store.home), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["path"] == str(out.resolve())
    assert f"runs/{a.run_id}/manifest.json" in doc["members"]
    rc = cli.main(["import", str(out), "--home", str(dst_home), "--json"])
    assert rc == 0
    assert [r["result"] for r in json.loads(capsys.readouterr().out)["runs"]] == ["imported"] * 2
    rc = cli.main(["import", str(out), "--home", str(dst_home)])
    assert rc == 0 and capsys.readouterr().out.count("already present") == 2
    bad = tmp_path / "bad.zip"
    bad.write_text("not a zip at all")
    rc = cli.main(["import", str(bad), "--home", str(dst_home), "--json"])
    err = json.loads(capsys.readouterr().out)
    assert rc == BadBundle.exit_code and err["kind"] == "BadBundle" and "not a zip file" in err["error"]


def test_cli_analyze_reads_a_bundle(src_store: RunStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = profiled_run(src_store, "tf_eager")
    out = bundle.export_bundle(run, tmp_path / "eager.zip")
    rc = cli.main(["analyze", str(out), "--home", str(tmp_path / "empty"), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["run_id"] == run.run_id
    assert not (tmp_path / "empty").exists() or not RunStore(tmp_path / "empty").run_dirs()


# -- bad bundles ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str]:
    store = RunStore(tmp_path_factory.mktemp("good") / "home")
    run = synthetic_run(store, "numpy", findings=[FINDING])
    return bundle.bundle_bytes(run), run.run_id


def _symlink(zf: zipfile.ZipFile, name: str) -> None:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    zf.writestr(info, "/etc/passwd")


def _replace(members: dict[str, bytes], name: str, data: bytes) -> dict[str, bytes]:
    return {**members, name: data}


def _without(members: dict[str, bytes], name: str) -> dict[str, bytes]:
    return {k: v for k, v in members.items() if k != name}


def _bundle_json(members: dict[str, bytes], **changes: object) -> dict[str, bytes]:
    doc = json.loads(members["bundle.json"])
    doc.update(changes)
    return _replace(members, "bundle.json", json.dumps(doc).encode())


def _manifest(members: dict[str, bytes], rid: str, **changes: object) -> dict[str, bytes]:
    name = f"runs/{rid}/manifest.json"
    doc = json.loads(members[name])
    doc.update(changes)
    return _replace(members, name, json.dumps(doc).encode())


def _steps_without_wall(members: dict[str, bytes], rid: str) -> dict[str, bytes]:
    name = f"runs/{rid}/tables/steps.csv"
    df = pd.read_csv(io.BytesIO(members[name])).drop(columns=["wall_us"])
    return _replace(members, name, df.to_csv(index=False).encode())


def _steps_bad_value(members: dict[str, bytes], rid: str) -> dict[str, bytes]:
    name = f"runs/{rid}/tables/steps.csv"
    df = pd.read_csv(io.BytesIO(members[name]))
    df["wall_us"] = df["wall_us"].astype(object)
    df.loc[0, "wall_us"] = "fast"
    return _replace(members, name, df.to_csv(index=False).encode())


def _flip_member_bytes(data: bytes, members: dict[str, bytes], name: str) -> bytes:
    """Corrupt the compressed bytes of one member in place (CRC or inflate fails)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(name)
    raw = bytearray(data)
    header = info.header_offset
    name_len, extra_len = int.from_bytes(raw[header + 26:header + 28], "little"), \
        int.from_bytes(raw[header + 28:header + 30], "little")
    start = header + 30 + name_len + extra_len
    for i in range(start + 2, start + min(info.compress_size, 40) - 2):
        raw[i] ^= 0x5A
    return bytes(raw)


def _lie_about_size(members: dict[str, bytes], name: str, declared_bytes: int) -> bytes:
    """A zip whose central directory says ``name`` is small while its stream inflates huge."""
    data = bytearray(rezip(members))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        offset = zf.start_dir
    while data[offset:offset + 4] == b"PK\x01\x02":
        n, e, c = (int.from_bytes(data[offset + k:offset + k + 2], "little") for k in (28, 30, 32))
        if data[offset + 46:offset + 46 + n].decode() == name:
            data[offset + 24:offset + 28] = declared_bytes.to_bytes(4, "little")
            return bytes(data)
        offset += 46 + n + e + c
    raise AssertionError(f"{name} not in the central directory")


def _duplicate(members: dict[str, bytes], name: str) -> bytes:
    def add(zf: zipfile.ZipFile) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zf.writestr(name, members[name])
    return rezip(members, extra=add)


#: name -> (build(good bytes, members, run id) -> bytes, limits, substring of the message)
BAD: dict[str, tuple[Callable[[bytes, dict[str, bytes], str], bytes], bundle.Limits, str]] = {
    "not_a_zip": (lambda g, m, r: b"sgdscope? no: plain text, not a zip\n" * 4, bundle.DEFAULT_LIMITS,
                  "is not a zip file"),
    "empty_file": (lambda g, m, r: b"", bundle.DEFAULT_LIMITS, "is empty (0 bytes)"),
    "truncated": (lambda g, m, r: g[: len(g) // 2], bundle.DEFAULT_LIMITS, "is truncated or corrupt"),
    "zip_slip": (lambda g, m, r: rezip(_replace(m, f"runs/{r}/../../../evil.sh", b"rm -rf ~")),
                 bundle.DEFAULT_LIMITS, "escapes the bundle's folder with '..' (zip-slip)"),
    "absolute_path": (lambda g, m, r: rezip(_replace(m, "/tmp/sgdscope-evil.txt", b"x")),
                      bundle.DEFAULT_LIMITS, "has an absolute path"),
    "backslash_path": (lambda g, m, r: rezip(_replace(m, "runs\\..\\evil.txt", b"x")),
                       bundle.DEFAULT_LIMITS, "has a backslash or NUL"),
    "symlink": (lambda g, m, r: rezip(m, extra=lambda zf: _symlink(zf, f"runs/{r}/logs/stdout.txt")),
                bundle.DEFAULT_LIMITS, "is a symbolic link"),
    "zip_bomb": (lambda g, m, r: rezip(_replace(m, f"runs/{r}/tables/samples.csv", b"0" * (16 << 20))),
                 bundle.DEFAULT_LIMITS, "refused as a zip bomb"),
    "over_uncompressed_cap": (lambda g, m, r: g, bundle.Limits(uncompressed_bytes=4096),
                              "uncompressed bytes: refused as a zip bomb"),
    "over_compressed_cap": (lambda g, m, r: g, bundle.Limits(compressed_bytes=1024), "compressed bytes"),
    "too_many_entries": (lambda g, m, r: g, bundle.Limits(entries=3), "entries, over the cap of 3"),
    "newer_bundle_schema": (lambda g, m, r: rezip(_bundle_json(m, schema_version=99)), bundle.DEFAULT_LIMITS,
                            "schema version 99, newer than this sgdscope understands"),
    "newer_run_schema": (lambda g, m, r: rezip(_manifest(m, r, schema_version=99)), bundle.DEFAULT_LIMITS,
                         "has run schema version 99, newer"),
    "missing_manifest": (lambda g, m, r: rezip(_without(m, f"runs/{r}/manifest.json")), bundle.DEFAULT_LIMITS,
                         "has no manifest"),
    "not_a_bundle": (lambda g, m, r: rezip({"notes.txt": b"hello"}), bundle.DEFAULT_LIMITS,
                     "no bundle.json and no manifest.json"),
    "table_missing_column": (lambda g, m, r: rezip(_steps_without_wall(m, r)), bundle.DEFAULT_LIMITS,
                             "is missing column(s): wall_us"),
    "table_bad_value": (lambda g, m, r: rezip(_steps_bad_value(m, r)), bundle.DEFAULT_LIMITS,
                        "Column 'wall_us' of table 'steps'"),
    "invalid_json": (lambda g, m, r: rezip(_replace(m, f"runs/{r}/findings.json", b"[{not json")),
                     bundle.DEFAULT_LIMITS, "findings.json is not valid JSON"),
    "checksum_mismatch": (lambda g, m, r: rezip(_replace(m, f"runs/{r}/findings.json", b"[]"), fix_checksums=False),
                          bundle.DEFAULT_LIMITS, "does not match its checksum"),
    "unexpected_member": (lambda g, m, r: rezip(_replace(m, f"runs/{r}/payload.py", b"import os")),
                          bundle.DEFAULT_LIMITS, "Unexpected member"),
    "duplicate_entry": (lambda g, m, r: _duplicate(m, f"runs/{r}/findings.json"), bundle.DEFAULT_LIMITS,
                        "appears twice"),
    "lying_size_bomb": (lambda g, m, r: _lie_about_size(_replace(m, f"runs/{r}/tables/samples.csv", b"0" * (16 << 20)),
                                                        f"runs/{r}/tables/samples.csv", 1000),
                        bundle.DEFAULT_LIMITS, "Bad CRC-32"),
    "corrupt_member": (lambda g, m, r: _flip_member_bytes(g, m, f"runs/{r}/tables/steps.csv"),
                       bundle.DEFAULT_LIMITS, "is corrupt"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_bundle_is_refused_and_nothing_is_written(case: str, good: tuple[bytes, str], tmp_path: Path,
                                                      private_tmp: Path) -> None:
    data, rid = good
    build, limits, message = BAD[case]
    bad = build(data, zip_members(data), rid)
    path = tmp_path / f"{case}.zip"
    path.write_bytes(bad)
    store = RunStore(tmp_path / "home")
    synthetic_run(store, "existing")
    before = snapshot(store.home)
    with pytest.raises(BadBundle) as info:
        bundle.import_bundle(path, store, limits=limits)
    assert message in info.value.message, info.value.message
    assert info.value.hint, "every refusal says what to do"
    assert snapshot(store.home) == before
    assert list(private_tmp.iterdir()) == []


def test_each_bad_bundle_has_its_own_message(good: tuple[bytes, str]) -> None:
    data, rid = good
    messages = {}
    for case, (build, limits, _) in BAD.items():
        with pytest.raises(BadBundle) as info:
            bundle.validate_bundle(build(data, zip_members(data), rid), limits=limits)
        messages[case] = info.value.message
    assert len(set(messages.values())) == len(messages), messages


def test_the_good_bundle_passes_the_same_checks(good: tuple[bytes, str], tmp_path: Path) -> None:
    """The bad-bundle builders start from a bundle that imports (so each refusal is its own)."""
    data, rid = good
    assert bundle.import_bundle(rezip(zip_members(data)), RunStore(tmp_path / "h"))["runs"][0]["run_id"] == rid


def test_no_bundle_at_path(tmp_path: Path) -> None:
    with pytest.raises(BadBundle, match="No bundle at"):
        bundle.import_bundle(tmp_path / "missing.zip", RunStore(tmp_path / "h"))
    assert not (tmp_path / "h").exists()


def test_limits_default_cover_a_real_bundle(good: tuple[bytes, str]) -> None:
    data, _ = good
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        ratios = [i.file_size / max(i.compress_size, 1) for i in zf.infolist()]
    assert max(ratios) < bundle.DEFAULT_LIMITS.member_ratio

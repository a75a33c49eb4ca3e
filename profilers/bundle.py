"""Profile bundles: export stored runs to one zip; validate, open and import such a zip.

A bundle is evidence that opens anywhere: in sgdscope without TensorFlow (``import``,
``analyze``, ``diff``, the dashboard's uploader), in XProf/TensorBoard (its ``trace``
folder), in Perfetto or chrome://tracing (``trace.json.gz``) and in a browser
(``report.html``, offline). Layout of bundle schema version 1 (``BUNDLE_SCHEMA_VERSION``)::

    bundle.json                               format, schema_version, run list, checksums
    report.html                               one offline page for every run (charts + findings)
    trace/plugins/profile/<run_id>/<host>.xplane.pb   TF capture of each profiled run:
                                              ``xprof --logdir trace`` lists one session per run
    runs/<run_id>/manifest.json               the run's manifest (profilers.model.MANIFEST_KEYS)
    runs/<run_id>/tables/<name>.csv           the run's tables, the CSVs as stored (model.SCHEMAS)
    runs/<run_id>/findings.json               triage findings (list of objects)
    runs/<run_id>/trace.json.gz               Chrome trace events (profiled runs, when xprof could
                                              convert the capture; ``bundle.json`` says why not)
    runs/<run_id>/logs/{stdout,stderr}.txt    the worker's output, when stored and small

``bundle.json`` lists, per run, where its xplane lived in the run directory
(``xplanes[].run_path``) so an import puts it back there, and for every member its size
and SHA-256 (``files``), so a damaged member is caught before anything is written.

Import validates everything before it writes to the store: the container (not a zip,
truncated or corrupt), every entry name (zip-slip, absolute paths, backslashes, symlinks
and other special files, encryption, duplicates, members a bundle never holds), the size
caps (``Limits``: compressed bytes, uncompressed bytes, entry count, per-member
expansion ratio, so a zip bomb is refused from its central directory before it is
inflated), the schema version (newer: refused; older: migrated through ``MIGRATIONS``),
JSON members, tables (``validate_table``, naming the column) and missing members. The
members are extracted, with running byte counts and CRC checks, into a private temporary
directory outside the store; each run directory is then moved into the store's staging
directory and renamed into place by ``RunStore.commit``. A run whose id is already
stored is reported as already present and left alone, so importing twice is idempotent.

Must not import tensorflow, pynvml or streamlit (xprof is reached, lazily, only through
``profilers.xprof_tools`` when exporting a profiled run's Chrome trace).
"""
from __future__ import annotations

import atexit
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, BinaryIO, Callable, Iterator, Mapping, Sequence

import pandas as pd

from profilers import __version__
from profilers.errors import BadBundle, BadInput, BadTable, DependencyMissing, TraceUnavailable
from profilers.model import SCHEMA_VERSION, SCHEMAS, STATUSES, RunProfile, dumps, read_table_csv
from profilers.store import RUN_ID_RE, RunStore

BUNDLE_FORMAT = "sgdscope-bundle"
#: Version of the bundle layout above. The run model has its own (model.SCHEMA_VERSION).
BUNDLE_SCHEMA_VERSION = 1
BUNDLE_JSON = "bundle.json"
REPORT_NAME = "report.html"
TRACE_JSON_NAME = "trace.json.gz"
LOG_NAMES = ("stdout.txt", "stderr.txt")
#: Logs larger than this are left out of a bundle (the manifest keeps the stderr tail).
MAX_LOG_BYTES = 4 << 20
#: Manifest keys a run must have to be imported.
from profilers.model import REQUIRED_MANIFEST_KEYS  # noqa: E402  (defined once)

_SAFE = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
_RUN = r"[0-9]{8}-[0-9]{6}-[a-z0-9_]+-[a-z0-9_]+-[0-9a-f]{6}"
XPLANE_RUN_PATH_RE = re.compile(rf"^trace/plugins/profile/({_SAFE})/({_SAFE})\.xplane\.pb$")
_TABLES = "|".join(re.escape(t) for t in SCHEMAS)
_V1_FILES = re.compile(
    rf"^(?:{re.escape(BUNDLE_JSON)}|{re.escape(REPORT_NAME)}"
    rf"|trace/plugins/profile/{_SAFE}/{_SAFE}\.xplane\.pb"
    rf"|runs/{_RUN}/(?:manifest\.json|findings\.json|{re.escape(TRACE_JSON_NAME)}"
    rf"|tables/(?:{_TABLES})\.csv|logs/(?:stdout|stderr)\.txt))$")
_V1_DIRS = re.compile(rf"^(?:trace|trace/plugins|trace/plugins/profile|trace/plugins/profile/{_SAFE}"
                      rf"|runs|runs/{_RUN}|runs/{_RUN}/(?:tables|logs))/$")
# Version 0: a run directory zipped as it stands (manifest.json at the root, no bundle.json).
_V0_FILES = re.compile(
    rf"^(?:manifest\.json|findings\.json|tables/(?:{_TABLES})\.csv|logs/(?:stdout|stderr)\.txt"
    rf"|trace/plugins/profile/{_SAFE}/{_SAFE}\.xplane\.pb|cache/.+)$")
_V0_DIRS = re.compile(rf"^(?:tables|logs|cache(?:/.*)?|trace|trace/plugins|trace/plugins/profile"
                      rf"|trace/plugins/profile/{_SAFE})/$")

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Size caps an imported bundle must respect (all checked before anything is inflated)."""

    compressed_bytes: int = 1 << 30  # the zip file itself
    uncompressed_bytes: int = 4 << 30  # all members together, inflated
    entries: int = 10_000
    member_ratio: float = 200.0  # inflated/compressed of one member ...
    ratio_floor_bytes: int = 1 << 20  # ... checked for members inflating past this size
    total_ratio: float = 200.0  # inflated/compressed of all members together, past the floor

    def describe(self) -> str:
        return (f"{self.compressed_bytes} compressed bytes, {self.uncompressed_bytes} uncompressed "
                f"bytes, {self.entries} entries, {self.member_ratio:g}x expansion per member, "
                f"{self.total_ratio:g}x in total")


DEFAULT_LIMITS = Limits()


# -- schema migrations ---------------------------------------------------------------------
@dataclass
class Layout:
    """A bundle's contents in the current layout: ``bundle.json`` + logical name -> zip entry."""

    doc: dict[str, Any]
    members: dict[str, str]  # logical (version-1) member name -> name of the entry in the zip


def _v1_layout(zf: zipfile.ZipFile, files: Sequence[str]) -> Layout:
    doc = _read_json(zf, BUNDLE_JSON, "bundle.json")
    if not isinstance(doc, dict):
        raise BadBundle("bundle.json is not a JSON object.", "The bundle is damaged: export it again.")
    return Layout(doc, {name: name for name in files})


def _migrate_v0(zf: zipfile.ZipFile, files: Sequence[str]) -> Layout:
    """A zipped run directory (``cd RUN && zip -r ../run.zip .``) -> a one-run bundle."""
    manifest = _read_json(zf, "manifest.json", "manifest.json")
    run_id = manifest.get("run_id") if isinstance(manifest, dict) else None
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
        raise BadBundle(f"The zipped run's manifest.json has no valid run_id (got {run_id!r}).",
                        "Export the run with `sgdscope export RUN_ID --out X.zip` instead.")
    base = f"runs/{run_id}/"
    members: dict[str, str] = {}
    xplanes = []
    for name in files:
        if name.startswith("cache/"):
            continue  # derived data, rebuilt on demand
        m = XPLANE_RUN_PATH_RE.match(name)
        if m:
            session = run_id if not xplanes else f"{run_id}.{m.group(1)}"
            member = f"trace/plugins/profile/{session}/{m.group(2)}.xplane.pb"
            xplanes.append({"member": member, "run_path": name})
            members[member] = name
        else:
            members[base + name] = name
    doc = {"format": BUNDLE_FORMAT, "schema_version": 1, "migrated_from": 0,
           "runs": [{"run_id": run_id, "path": base, "xplanes": xplanes}]}
    return Layout(doc, members)


#: Bundle schema version -> (entry-name whitelist (files, dirs), reader into the next layout).
#: Version 0 has no bundle.json: it is a run directory zipped as it stands.
MIGRATIONS: dict[int, tuple[re.Pattern[str], re.Pattern[str], Callable[[zipfile.ZipFile, Sequence[str]], Layout]]] = {
    0: (_V0_FILES, _V0_DIRS, _migrate_v0),
    1: (_V1_FILES, _V1_DIRS, _v1_layout),
}

#: Run-model (manifest) schema version N -> function upgrading a manifest dict to N+1.
#: The run model is at its first version, so there is nothing to migrate yet.
MANIFEST_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def migrate_manifest(manifest: dict[str, Any], where: str) -> dict[str, Any]:
    version = manifest.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BadBundle(f"{where}: schema_version is {version!r}, not an integer.",
                        "The bundle is damaged: export it again.")
    if version > SCHEMA_VERSION:
        raise BadBundle(f"{where} has run schema version {version}, newer than this sgdscope "
                        f"understands ({SCHEMA_VERSION}).", "Upgrade sgdscope to import it.")
    while version < SCHEMA_VERSION:
        step = MANIFEST_MIGRATIONS.get(version)
        if step is None:
            raise BadBundle(f"{where} has run schema version {version} and no migration from it is "
                            f"known (this sgdscope reads version {SCHEMA_VERSION}).",
                            "Re-export the run with a current sgdscope.")
        manifest = step(manifest)
        version += 1
        manifest["schema_version"] = version
    return manifest


# -- export --------------------------------------------------------------------------------
class _HashingWriter(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.sha, self.nbytes = raw, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:  # type: ignore[override]
        data = bytes(b)
        self.raw.write(data)
        self.sha.update(data)
        self.nbytes += len(data)
        return len(data)


@dataclass
class _ZipWriter:
    zf: zipfile.ZipFile
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add_bytes(self, name: str, data: bytes, *, compress: bool = True) -> None:
        info = zipfile.ZipInfo(name, date_time=_zip_now())
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        info.external_attr = (stat.S_IFREG | 0o644) << 16
        self.zf.writestr(info, data)
        self.files[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    def add_file(self, name: str, path: Path) -> None:
        info = zipfile.ZipInfo(name, date_time=_zip_now())
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = (stat.S_IFREG | 0o644) << 16
        with open(path, "rb") as src, self.zf.open(info, "w", force_zip64=True) as dst:
            out = _HashingWriter(dst)
            shutil.copyfileobj(src, out, _CHUNK)
        self.files[name] = {"bytes": out.nbytes, "sha256": out.sha.hexdigest()}

    def add_gzipped_file(self, name: str, path: Path) -> None:
        info = zipfile.ZipInfo(name, date_time=_zip_now())
        info.compress_type = zipfile.ZIP_STORED  # already gzip-compressed
        info.external_attr = (stat.S_IFREG | 0o644) << 16
        with open(path, "rb") as src, self.zf.open(info, "w", force_zip64=True) as dst:
            out = _HashingWriter(dst)
            with gzip.GzipFile(filename="trace.json", fileobj=out, mode="wb", mtime=0) as gz:
                shutil.copyfileobj(src, gz, _CHUNK)
        self.files[name] = {"bytes": out.nbytes, "sha256": out.sha.hexdigest()}


def _zip_now() -> tuple[int, int, int, int, int, int]:
    now = datetime.now()
    return (max(now.year, 1980), now.month, now.day, now.hour, now.minute, now.second)


def _chrome_trace(profile: RunProfile, xplane: Path) -> tuple[Path | None, str | None]:
    """(path of Chrome trace JSON, None) or (None, why there is none)."""
    try:
        from profilers import xprof_tools
    except ImportError as exc:
        return None, f"profilers.xprof_tools cannot be imported here ({exc})"
    export = getattr(xprof_tools, "export_trace_json", None)
    if export is None:
        return None, "this sgdscope's xprof_tools has no export_trace_json"
    try:
        cache_dir = profile.run_dir / "cache" if profile.run_dir is not None else None
        return Path(export(xplane, cache_dir=cache_dir)), None
    except (TraceUnavailable, DependencyMissing) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def _run_files(profile: RunProfile) -> dict[str, Any]:
    """Bytes of a run's manifest, tables and findings: as stored, or serialised when in memory."""
    run_dir = profile.run_dir
    out: dict[str, Any] = {"tables": {}}
    mpath = run_dir / "manifest.json" if run_dir else None
    out["manifest"] = mpath.read_bytes() if mpath and mpath.is_file() else dumps(profile.manifest).encode()
    for name in SCHEMAS:
        path = run_dir / "tables" / f"{name}.csv" if run_dir else None
        if path is not None and path.is_file():
            out["tables"][name] = path.read_bytes()
        elif name in profile.tables:
            out["tables"][name] = profile.tables[name].to_csv(index=False).encode()
    fpath = run_dir / "findings.json" if run_dir else None
    out["findings"] = fpath.read_bytes() if fpath and fpath.is_file() else dumps(profile.findings).encode()
    return out


def export_runs(profiles: RunProfile | Sequence[RunProfile], dest: Path | str, *,
                trace_json: bool = True, report: bool = True) -> dict[str, Any]:
    """Write ``profiles`` as one bundle at ``dest`` (a temporary file, then a rename).

    Returns the bundle's ``bundle.json`` document plus ``path`` and ``bytes``.
    """
    runs = [profiles] if isinstance(profiles, RunProfile) else list(profiles)
    if not runs:
        raise BadInput("Nothing to export: no run given.", "Give one or more run ids.")
    ids = [p.run_id for p in runs]
    if len(set(ids)) != len(ids):
        raise BadInput(f"A run is given twice: {', '.join(sorted({i for i in ids if ids.count(i) > 1}))}.",
                       "Name each run once.")
    dest = Path(dest).expanduser().resolve()
    if dest.is_dir():
        raise BadInput(f"{dest} is a folder.", "Give the path of the .zip to write, e.g. --out run.zip.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    doc: dict[str, Any] = {
        "format": BUNDLE_FORMAT, "schema_version": BUNDLE_SCHEMA_VERSION,
        "run_schema_version": SCHEMA_VERSION, "sgdscope_version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "runs": [],
        "open_with": {
            "sgdscope": "sgdscope import BUNDLE.zip (or: sgdscope analyze / diff BUNDLE.zip)",
            "xprof": "unzip, then: xprof --logdir trace (one session per profiled run)",
            "perfetto": "open runs/<run_id>/trace.json.gz in ui.perfetto.dev or chrome://tracing",
            "browser": "open report.html (works offline)",
        },
    }
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", allowZip64=True) as zf:
            w = _ZipWriter(zf)
            for profile in runs:
                doc["runs"].append(_export_one(w, profile, trace_json))
            if report:
                doc["report"] = _export_report(w, runs)
            else:
                doc["report"] = {"available": False, "reason": "left out on request (report=False)"}
            doc["files"] = dict(sorted(w.files.items()))
            w.add_bytes(BUNDLE_JSON, dumps(doc).encode())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {**doc, "path": str(dest), "bytes": dest.stat().st_size}


def _export_one(w: _ZipWriter, profile: RunProfile, trace_json: bool) -> dict[str, Any]:
    rid = profile.run_id
    if not RUN_ID_RE.match(rid or ""):
        raise BadInput(f"{rid!r} is not a run id; only stored runs can be exported.",
                       "Run `sgdscope list` to see stored runs.")
    base = f"runs/{rid}/"
    m = profile.manifest
    files = _run_files(profile)
    w.add_bytes(base + "manifest.json", files["manifest"])
    for name, data in files["tables"].items():
        w.add_bytes(f"{base}tables/{name}.csv", data)
    w.add_bytes(base + "findings.json", files["findings"])
    entry: dict[str, Any] = {
        "run_id": rid, "workload": m.get("workload"), "variant": m.get("variant"),
        "status": m.get("status"), "path": base, "tables": sorted(files["tables"]), "xplanes": [],
        "logs": [], "notes": [],
    }
    # xplanes: the manifest's first, then any other capture in the run directory.
    run_dir = profile.run_dir
    found: list[str] = []
    main = (m.get("capture") or {}).get("xplane")
    if run_dir is not None:
        if main and (run_dir / main).is_file():
            found.append(main)
        found += sorted(str(p.relative_to(run_dir)) for p in run_dir.glob("trace/plugins/profile/*/*.xplane.pb")
                        if str(p.relative_to(run_dir)) != main)
    elif main:
        entry["notes"].append(f"the manifest names xplane {main} but the run has no directory")
    for i, rel in enumerate(found):
        mm = XPLANE_RUN_PATH_RE.match(rel)
        if mm is None:
            entry["notes"].append(f"xplane {rel} has an unexpected name and was left out")
            continue
        session = rid if i == 0 else f"{rid}.{mm.group(1)}"
        member = f"trace/plugins/profile/{session}/{mm.group(2)}.xplane.pb"
        w.add_file(member, run_dir / rel)  # type: ignore[operator]
        entry["xplanes"].append({"member": member, "run_path": rel})
    # Chrome trace events.
    if not trace_json:
        entry["trace_json"] = {"available": False, "reason": "left out on request (--no-trace-json)"}
    elif entry["xplanes"]:
        json_path, reason = _chrome_trace(profile, run_dir / entry["xplanes"][0]["run_path"])  # type: ignore[operator]
        if json_path is not None:
            w.add_gzipped_file(base + TRACE_JSON_NAME, json_path)
            entry["trace_json"] = {"available": True, "member": base + TRACE_JSON_NAME,
                                   "from": entry["xplanes"][0]["member"]}
        elif run_dir is not None and (run_dir / "cache" / TRACE_JSON_NAME).is_file():
            _add_stored(w, base + TRACE_JSON_NAME, run_dir / "cache" / TRACE_JSON_NAME)
            entry["trace_json"] = {"available": True, "member": base + TRACE_JSON_NAME,
                                   "from": "the copy imported with the run", "note": reason}
        else:
            entry["trace_json"] = {"available": False, "reason": f"the xplane could not be converted: {reason}"}
    elif run_dir is not None and (run_dir / "cache" / TRACE_JSON_NAME).is_file():
        _add_stored(w, base + TRACE_JSON_NAME, run_dir / "cache" / TRACE_JSON_NAME)
        entry["trace_json"] = {"available": True, "member": base + TRACE_JSON_NAME,
                               "from": "the copy imported with the run"}
    else:
        reason = (m.get("capture") or {}).get("unavailable_reason") or "the run was not profiled"
        entry["trace_json"] = {"available": False,
                               "reason": f"no TF profiler capture (xplane) in this run: {reason}"}
    # Logs.
    for name in LOG_NAMES:
        path = run_dir / "logs" / name if run_dir is not None else None
        if path is None or not path.is_file():
            continue
        if path.stat().st_size > MAX_LOG_BYTES:
            entry["notes"].append(f"logs/{name} is {path.stat().st_size} bytes, over {MAX_LOG_BYTES}: left out")
            continue
        w.add_bytes(f"{base}logs/{name}", path.read_bytes())
        entry["logs"].append(f"{base}logs/{name}")
    return entry


def _add_stored(w: _ZipWriter, name: str, path: Path) -> None:
    info = zipfile.ZipInfo(name, date_time=_zip_now())
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    with open(path, "rb") as src, w.zf.open(info, "w", force_zip64=True) as dst:
        out = _HashingWriter(dst)
        shutil.copyfileobj(src, out, _CHUNK)
    w.files[name] = {"bytes": out.nbytes, "sha256": out.sha.hexdigest()}


def _export_report(w: _ZipWriter, runs: Sequence[RunProfile]) -> dict[str, Any]:
    try:
        from profilers.report import render_report

        html = render_report(runs)
    except DependencyMissing as exc:
        return {"available": False, "reason": str(exc)}
    w.add_bytes(REPORT_NAME, html.encode("utf-8"))
    return {"available": True, "member": REPORT_NAME}


def export_bundle(profiles: RunProfile | Sequence[RunProfile], dest: Path | str) -> Path:
    """Export one or more runs to ``dest``; returns its path (see ``export_runs``)."""
    return Path(export_runs(profiles, dest)["path"])


def with_baselines(store: RunStore, profiles: Sequence[RunProfile]) -> list[RunProfile]:
    """``profiles`` plus, for each, its experiment's baseline run (the NumPy run its findings
    compare with) when the store has it and it is not already there: a bundle carries what
    its analysis depends on."""
    out = list(profiles)
    have = {p.run_id for p in out}
    for p in list(out):
        exp = p.manifest.get("experiment_id")
        base = (p.manifest.get("results") or {}).get("baseline_variant")
        if not exp or not base or p.manifest.get("variant") == base:
            continue
        for other in store.experiment_runs(exp):
            if other.manifest.get("variant") == base and other.run_id not in have:
                out.append(other)
                have.add(other.run_id)
    return out


def export_store_runs(store: RunStore, run_ids: Sequence[str], dest: Path | str, *,
                      baselines: bool = True, **kwargs: Any) -> dict[str, Any]:
    """Export stored runs; with ``baselines``, each one's experiment baseline comes along."""
    profiles = [store.load(r) for r in run_ids]
    return export_runs(with_baselines(store, profiles) if baselines else profiles, dest, **kwargs)


def bundle_bytes(profiles: RunProfile | Sequence[RunProfile]) -> bytes:
    """A bundle in memory (for a download button); written through a temporary file."""
    with tempfile.TemporaryDirectory(prefix="sgdscope-export-") as tmp:
        path = Path(tmp) / "bundle.zip"
        export_runs(profiles, path)
        return path.read_bytes()


# -- validation ----------------------------------------------------------------------------
def _open_source(source: Any, limits: Limits) -> tuple[BinaryIO, str, bool]:
    """(binary stream, display name, whether we own the stream)."""
    if isinstance(source, (bytes, bytearray)):
        stream: BinaryIO = io.BytesIO(bytes(source))
        name, own = "The uploaded bundle", True
    elif isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise BadBundle(f"No bundle at {path}.", "Give the path of a .zip written by `sgdscope export`.")
        stream, name, own = open(path, "rb"), str(path), True
    else:
        stream, name, own = source, getattr(source, "name", None) or "The uploaded bundle", False
    try:
        stream.seek(0, os.SEEK_END)
        size = stream.tell()
        stream.seek(0)
        if size > limits.compressed_bytes:
            raise BadBundle(f"{name} is {size} bytes, over the cap of {limits.compressed_bytes} "
                            "compressed bytes.", "Bundles that large are refused; export fewer runs.")
        head = stream.read(4)
        stream.seek(0)
    except BaseException:
        if own:
            stream.close()
        raise
    if size == 0:
        if own:
            stream.close()
        raise BadBundle(f"{name} is empty (0 bytes): not a zip file.",
                        "Copy or download the bundle again.")
    if head not in (b"PK\x03\x04", b"PK\x05\x06"):
        if own:
            stream.close()
        raise BadBundle(f"{name} is not a zip file (it starts with {head!r}).",
                        "Give a .zip written by `sgdscope export`.")
    return stream, name, own


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _special_type(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    fmt = stat.S_IFMT(mode)
    return info.create_system == 3 and fmt not in (0, stat.S_IFREG, stat.S_IFDIR)


def check_entries(zf: zipfile.ZipFile, name: str, limits: Limits) -> tuple[int, list[str]]:
    """Check every entry from the central directory; returns (schema version, file names)."""
    infos = zf.infolist()
    if len(infos) > limits.entries:
        raise BadBundle(f"{name} has {len(infos)} entries, over the cap of {limits.entries}.",
                        "A bundle holds a few files per run: this is not one.")
    seen: set[str] = set()
    total = 0
    for info in infos:
        n = info.filename
        if "\x00" in n or "\\" in n:
            raise BadBundle(f"Entry {n!r} has a backslash or NUL in its name.",
                            "The bundle was not written by sgdscope: refused.")
        if n.startswith("/") or re.match(r"^[A-Za-z]:", n):
            raise BadBundle(f"Entry {n!r} has an absolute path.",
                            "A bundle's entries are relative; this one would write outside its folder.")
        parts = n.rstrip("/").split("/")
        if ".." in parts:
            raise BadBundle(f"Entry {n!r} escapes the bundle's folder with '..' (zip-slip).",
                            "The bundle is hostile or broken: refused.")
        if _is_symlink(info):
            raise BadBundle(f"Entry {n!r} is a symbolic link.", "Bundles hold regular files only: refused.")
        if _special_type(info):
            raise BadBundle(f"Entry {n!r} is a special file (mode {oct(info.external_attr >> 16)}).",
                            "Bundles hold regular files only: refused.")
        if info.flag_bits & 0x1:
            raise BadBundle(f"Entry {n!r} is encrypted.", "sgdscope bundles are never encrypted.")
        if n in seen:
            raise BadBundle(f"Entry {n!r} appears twice.", "The bundle is damaged: export it again.")
        seen.add(n)
        if info.file_size > limits.ratio_floor_bytes and \
                info.file_size > limits.member_ratio * max(info.compress_size, 1):
            raise BadBundle(
                f"Entry {n!r} would inflate from {info.compress_size} to {info.file_size} bytes "
                f"({info.file_size / max(info.compress_size, 1):.0f}x, over the {limits.member_ratio:g}x cap): "
                "refused as a zip bomb.", "Nothing was extracted.")
        total += info.file_size
        if total > limits.uncompressed_bytes:
            raise BadBundle(f"{name} inflates to more than the cap of {limits.uncompressed_bytes} "
                            "uncompressed bytes: refused as a zip bomb.", "Nothing was extracted.")
    packed = sum(max(i.compress_size, 1) for i in infos)
    if total > limits.ratio_floor_bytes and total > limits.total_ratio * packed:
        raise BadBundle(f"{name} would inflate from {packed} to {total} bytes ({total / packed:.0f}x, "
                        f"over the {limits.total_ratio:g}x cap for a whole bundle): refused as a zip bomb.",
                        "Nothing was extracted.")
    files = [i.filename for i in infos if not i.filename.endswith("/")]
    dirs = [i.filename for i in infos if i.filename.endswith("/")]
    if BUNDLE_JSON in files:
        version = _bundle_version(zf)
    elif "manifest.json" in files:
        version = 0
    else:
        raise BadBundle(f"{name} has no bundle.json and no manifest.json: it is not a sgdscope bundle "
                        "(missing manifest).", "Give a .zip written by `sgdscope export`.")
    allowed_files, allowed_dirs, _ = MIGRATIONS[version]
    for n in files:
        if not allowed_files.match(n):
            raise BadBundle(f"Unexpected member {n!r} (not part of a version-{version} bundle).",
                            "A bundle holds bundle.json, report.html, trace/ and runs/<run_id>/... only.")
    for n in dirs:
        if not allowed_dirs.match(n):
            raise BadBundle(f"Unexpected folder {n!r} (not part of a version-{version} bundle).",
                            "A bundle holds bundle.json, report.html, trace/ and runs/<run_id>/... only.")
    return version, files


def _bundle_version(zf: zipfile.ZipFile) -> int:
    doc = _read_json(zf, BUNDLE_JSON, "bundle.json")
    if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
        fmt = doc.get("format") if isinstance(doc, dict) else None
        raise BadBundle(f"bundle.json does not describe a sgdscope bundle (format {fmt!r}, "
                        f"expected {BUNDLE_FORMAT!r}).", "Give a .zip written by `sgdscope export`.")
    version = doc.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise BadBundle(f"bundle.json's schema_version is {version!r}, not a version number.",
                        "The bundle is damaged: export it again.")
    if version > BUNDLE_SCHEMA_VERSION:
        raise BadBundle(f"The bundle has schema version {version}, newer than this sgdscope understands "
                        f"(up to {BUNDLE_SCHEMA_VERSION}).", "Upgrade sgdscope to import it.")
    if version not in MIGRATIONS:
        raise BadBundle(f"The bundle has schema version {version} and no migration from it is known.",
                        f"Known versions: {', '.join(map(str, sorted(MIGRATIONS)))}.")
    return version


def _read_member(zf: zipfile.ZipFile, entry: str) -> bytes:
    try:
        return zf.read(entry)
    except (zipfile.BadZipFile, zlib.error, EOFError, struct.error) as exc:
        raise BadBundle(f"Member {entry!r} is corrupt ({exc}).", "The bundle is damaged: export it again.") from None


def _read_json(zf: zipfile.ZipFile, entry: str, what: str) -> Any:
    data = _read_member(zf, entry)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadBundle(f"{what} ({entry}) is not valid JSON: {exc}.",
                        "The bundle is damaged: export it again.") from None


def _extract(zf: zipfile.ZipFile, entry: str, dest: Path, expect: Mapping[str, Any] | None,
             budget: list[int]) -> None:
    """Copy one member to ``dest`` with a running byte count, CRC and checksum checks."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    sha = hashlib.sha256()
    written = 0
    try:
        with zf.open(entry) as src, open(dest, "wb") as out:
            while True:
                chunk = src.read(_CHUNK)
                if not chunk:
                    break
                written += len(chunk)
                budget[0] -= len(chunk)
                if budget[0] < 0:
                    raise BadBundle(f"Member {entry!r} inflates past the uncompressed-bytes cap: "
                                    "refused as a zip bomb.", "Nothing was imported.")
                sha.update(chunk)
                out.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, struct.error) as exc:
        raise BadBundle(f"Member {entry!r} is corrupt ({exc}).", "The bundle is damaged: export it again.") from None
    if expect is not None:
        if expect.get("bytes") != written or expect.get("sha256") != sha.hexdigest():
            raise BadBundle(f"Member {entry!r} does not match its checksum in bundle.json "
                            f"({written} bytes, expected {expect.get('bytes')}).",
                            "The bundle was changed or damaged after export: export it again.")


def _check_gzip(path: Path, entry: str, budget: int) -> None:
    inflated = 0
    try:
        with gzip.open(path, "rb") as gz:
            while chunk := gz.read(_CHUNK):
                inflated += len(chunk)
                if inflated > budget:
                    raise BadBundle(f"{entry} inflates past the uncompressed-bytes cap: refused as a gzip bomb.",
                                    "Nothing was imported.")
    except (OSError, EOFError, zlib.error) as exc:
        raise BadBundle(f"{entry} is not a valid gzip file ({exc}).", "The bundle is damaged: export it again.") from None


@dataclass
class ValidatedBundle:
    """A bundle checked whole and extracted under ``root``: one complete run directory per run."""

    root: Path
    doc: dict[str, Any]
    version: int
    profiles: list[RunProfile]
    report_path: Path | None = None

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "ValidatedBundle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def validate_bundle(source: Any, *, limits: Limits = DEFAULT_LIMITS,
                    workdir: Path | str | None = None) -> ValidatedBundle:
    """Check ``source`` (path, bytes or binary file object) whole and extract it to a private
    temporary folder; raise ``BadBundle`` naming the first problem (the folder is then gone).
    """
    stream, name, own = _open_source(source, limits)
    root = Path(tempfile.mkdtemp(prefix="sgdscope-bundle-", dir=workdir))
    try:
        try:
            zf = zipfile.ZipFile(stream)
        except (zipfile.BadZipFile, EOFError, struct.error, ValueError) as exc:
            raise BadBundle(f"{name} is truncated or corrupt: {exc}.",
                            "Copy or download the bundle again; a partial file cannot be read.") from None
        with zf:
            try:
                return _validate(zf, name, limits, root)
            except NotImplementedError as exc:  # zipfile: unsupported compression method
                raise BadBundle(f"{name} uses a compression method sgdscope cannot read ({exc}).",
                                "Re-export it with `sgdscope export`.") from None
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    finally:
        if own:
            stream.close()


def _validate(zf: zipfile.ZipFile, name: str, limits: Limits, root: Path) -> ValidatedBundle:
    version, files = check_entries(zf, name, limits)
    layout = MIGRATIONS[version][2](zf, files)
    doc = layout.doc
    runs = doc.get("runs")
    if not isinstance(runs, list) or not runs:
        raise BadBundle("bundle.json lists no runs.", "The bundle is damaged: export it again.")
    checksums = doc.get("files") if version == BUNDLE_SCHEMA_VERSION and "migrated_from" not in doc else None
    if checksums is not None:
        if not isinstance(checksums, dict):
            raise BadBundle("bundle.json's files is not an object.", "The bundle is damaged: export it again.")
        listed = set(checksums) | {BUNDLE_JSON}
        unlisted = sorted(set(layout.members) - listed)
        if unlisted:
            raise BadBundle(f"Member {unlisted[0]!r} is not listed in bundle.json.",
                            "The bundle was changed after export: refused.")
        absent = sorted(set(checksums) - set(layout.members))
        if absent:
            raise BadBundle(f"Missing member {absent[0]!r} (listed in bundle.json).",
                            "The bundle is incomplete: export it again.")
    budget = [limits.uncompressed_bytes]
    used: set[str] = {BUNDLE_JSON}
    profiles: list[RunProfile] = []
    ids: set[str] = set()
    for entry in runs:
        profiles.append(_validate_run(zf, layout, entry, ids, checksums, budget, used, root, limits))
    report_path = None
    if REPORT_NAME in layout.members:
        report_path = root / REPORT_NAME
        _extract(zf, layout.members[REPORT_NAME], report_path, (checksums or {}).get(REPORT_NAME), budget)
        try:
            report_path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise BadBundle(f"{REPORT_NAME} is not UTF-8 text ({exc}).", "The bundle is damaged: export it again.") from None
        used.add(REPORT_NAME)
    stray = sorted(set(layout.members) - used)
    if stray:
        raise BadBundle(f"Member {stray[0]!r} belongs to no run listed in bundle.json.",
                        "The bundle is damaged or was changed after export: refused.")
    return ValidatedBundle(root=root, doc=doc, version=version, profiles=profiles, report_path=report_path)


def _validate_run(zf: zipfile.ZipFile, layout: Layout, entry: Any, ids: set[str],
                  checksums: Mapping[str, Any] | None, budget: list[int], used: set[str],
                  root: Path, limits: Limits) -> RunProfile:
    rid = entry.get("run_id") if isinstance(entry, dict) else None
    if not isinstance(rid, str) or not RUN_ID_RE.match(rid):
        raise BadBundle(f"bundle.json lists a run with an invalid run_id ({rid!r}).",
                        "The bundle is damaged: export it again.")
    if rid in ids:
        raise BadBundle(f"bundle.json lists run {rid} twice.", "The bundle is damaged: export it again.")
    ids.add(rid)
    base = f"runs/{rid}/"
    run_dir = root / "runs" / rid
    members = layout.members

    def take(logical: str, dest: Path) -> None:
        _extract(zf, members[logical], dest, (checksums or {}).get(logical), budget)
        used.add(logical)

    mname = base + "manifest.json"
    if mname not in members:
        raise BadBundle(f"Missing member {mname!r}: run {rid} has no manifest.",
                        "The bundle is incomplete: export it again.")
    take(mname, run_dir / "manifest.json")
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadBundle(f"{mname} is not valid JSON: {exc}.", "The bundle is damaged: export it again.") from None
    if not isinstance(manifest, dict):
        raise BadBundle(f"{mname} is not a JSON object.", "The bundle is damaged: export it again.")
    missing = [k for k in REQUIRED_MANIFEST_KEYS if k not in manifest]
    if missing:
        raise BadBundle(f"{mname} lacks key(s): {', '.join(missing)}.", "The bundle is damaged: export it again.")
    if manifest["run_id"] != rid:
        raise BadBundle(f"{mname} is for run {manifest['run_id']!r}, not {rid}.",
                        "The bundle is damaged: export it again.")
    if manifest["status"] not in STATUSES:
        raise BadBundle(f"{mname} has status {manifest['status']!r}.", f"Known statuses: {', '.join(STATUSES)}.")
    manifest = migrate_manifest(manifest, mname)

    tables: dict[str, pd.DataFrame] = {}
    for tname in SCHEMAS:
        logical = f"{base}tables/{tname}.csv"
        if logical not in members:
            continue
        path = run_dir / "tables" / f"{tname}.csv"
        take(logical, path)
        try:
            tables[tname] = read_table_csv(tname, path)
        except BadTable as exc:
            message = exc.message.replace(f" ({path})", "").replace(str(path), logical)
            raise BadBundle(f"{logical}: {message}", exc.hint) from None

    findings: list[dict[str, Any]] = []
    fname = base + "findings.json"
    if fname in members:
        take(fname, run_dir / "findings.json")
        try:
            findings = json.loads((run_dir / "findings.json").read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadBundle(f"{fname} is not valid JSON: {exc}.", "The bundle is damaged: export it again.") from None
        if not isinstance(findings, list) or not all(isinstance(f, dict) and isinstance(f.get("rule"), str)
                                                     for f in findings):
            raise BadBundle(f"{fname} is not a list of findings (objects with a 'rule').",
                            "The bundle is damaged: export it again.")

    # xplanes: back where the run directory had them.
    xplanes = entry.get("xplanes") or []
    if not isinstance(xplanes, list):
        raise BadBundle(f"bundle.json: run {rid}'s xplanes is not a list.", "The bundle is damaged: export it again.")
    placed: set[str] = set()
    for x in xplanes:
        member = x.get("member") if isinstance(x, dict) else None
        run_path = x.get("run_path") if isinstance(x, dict) else None
        if not isinstance(member, str) or member not in members:
            raise BadBundle(f"Missing member {member!r}: the xplane bundle.json lists for run {rid}.",
                            "The bundle is incomplete: export it again.")
        if not isinstance(run_path, str) or not XPLANE_RUN_PATH_RE.match(run_path) or run_path in placed:
            raise BadBundle(f"bundle.json: run {rid}'s xplane run_path {run_path!r} is not a "
                            "trace/plugins/profile/<session>/<host>.xplane.pb path.",
                            "The bundle is damaged or hostile: refused.")
        dest = run_dir / run_path
        take(member, dest)
        if dest.stat().st_size == 0:
            raise BadBundle(f"Member {member!r} (run {rid}'s xplane) is empty.", "The bundle is damaged: export it again.")
        placed.add(run_path)
    main = (manifest.get("capture") or {}).get("xplane") if isinstance(manifest.get("capture"), dict) else None
    if main and main not in placed:
        raise BadBundle(f"Missing member: run {rid}'s xplane ({main}, named in its manifest) is not in the bundle.",
                        "The bundle is incomplete: export it again.")

    tname = base + TRACE_JSON_NAME
    if tname in members:
        dest = run_dir / "cache" / TRACE_JSON_NAME
        take(tname, dest)
        _check_gzip(dest, tname, limits.uncompressed_bytes)
    for log in LOG_NAMES:
        logical = f"{base}logs/{log}"
        if logical in members:
            take(logical, run_dir / "logs" / log)
    return RunProfile(manifest=manifest, tables=tables, findings=findings, run_dir=run_dir)


# -- import --------------------------------------------------------------------------------
def import_bundle(source: Any, store: RunStore, *, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Validate ``source`` whole, then add each of its runs to ``store`` atomically.

    Returns ``{"runs": [{"run_id", "status": "imported" | "already present", ...}], ...}``.
    A run already stored (same run id) is left as it is. If anything fails, the runs this
    call added are removed again, so the store ends as it was.
    """
    with validate_bundle(source, limits=limits) as vb:
        results: list[dict[str, Any]] = []
        added: list[str] = []
        staged: Path | None = None
        try:
            for profile in vb.profiles:
                rid = profile.run_id
                row = {"run_id": rid, "workload": profile.manifest.get("workload"),
                       "variant": profile.manifest.get("variant"), "status": profile.manifest.get("status")}
                if (store.home / rid / "manifest.json").is_file():
                    results.append({**row, "result": "already present"})
                    continue
                store.staging.mkdir(parents=True, exist_ok=True)
                staged = store.staging / f"import-{rid}"
                if staged.exists():
                    shutil.rmtree(staged)
                shutil.move(str(profile.run_dir), str(staged))
                final = store.commit(profile, staged)
                staged = None
                added.append(rid)
                results.append({**row, "result": "imported", "run_dir": str(final)})
        except BaseException:
            if staged is not None:
                shutil.rmtree(staged, ignore_errors=True)
            for rid in added:
                store.delete(rid)
            raise
    return {"bundle_schema_version": vb.version, "migrated_from": vb.doc.get("migrated_from"),
            "sgdscope_version": vb.doc.get("sgdscope_version"), "runs": results}


# -- read-only opening (analyze, diff, the Diff page) --------------------------------------
_OPENED: list[ValidatedBundle] = []


def _close_opened() -> None:
    while _OPENED:
        _OPENED.pop().close()


atexit.register(_close_opened)


def open_bundle(source: Any, *, limits: Limits = DEFAULT_LIMITS) -> list[RunProfile]:
    """Every run of a bundle, validated and extracted to a temporary folder (removed at exit)."""
    vb = validate_bundle(source, limits=limits)
    _OPENED.append(vb)
    return vb.profiles


def split_target(target: str) -> tuple[Path, str | None]:
    """``X.zip`` or ``X.zip#RUN_ID`` -> (path, run id or None)."""
    path, _, rid = str(target).partition("#")
    return Path(path), (rid or None)


def load_bundle(target: Path | str, *, limits: Limits = DEFAULT_LIMITS) -> RunProfile:
    """The one run of a bundle, or run ``RUN_ID`` of ``X.zip#RUN_ID``, without importing it."""
    path, rid = split_target(str(target))
    profiles = open_bundle(path, limits=limits)
    if rid is None:
        if len(profiles) == 1:
            return profiles[0]
        raise BadInput(f"{path} holds {len(profiles)} runs.",
                       f"Pick one as {path}#RUN_ID: {', '.join(p.run_id for p in profiles)}.")
    for p in profiles:
        if p.run_id == rid:
            return p
    raise BadInput(f"{path} has no run {rid}.", f"Its runs: {', '.join(p.run_id for p in profiles)}.")


def is_bundle_target(target: str) -> bool:
    path, _ = split_target(target)
    return path.suffix.lower() == ".zip" or path.is_file()


def resolve_target(store: RunStore, target: str) -> RunProfile:
    """A stored run by id, or a run inside a bundle (``X.zip`` / ``X.zip#RUN_ID``)."""
    if is_bundle_target(target):
        return load_bundle(target)
    return store.load(target)


def iter_members(path: Path | str) -> Iterator[str]:
    """Names inside a bundle (for display; no validation)."""
    with zipfile.ZipFile(path) as zf:
        yield from zf.namelist()


__all__: Sequence[str] = (
    "BUNDLE_FORMAT", "BUNDLE_SCHEMA_VERSION", "DEFAULT_LIMITS", "Limits", "MIGRATIONS", "MANIFEST_MIGRATIONS",
    "ValidatedBundle", "bundle_bytes", "export_bundle", "export_runs", "export_store_runs", "import_bundle",
    "load_bundle", "open_bundle", "resolve_target", "split_target", "validate_bundle",
)

"""Run store: run directories under ``SGDSCOPE_HOME`` (default ``./runs``), indexed in SQLite.

Layout::

    $SGDSCOPE_HOME/index.sqlite          the index (derived; rebuilt from the directories)
    $SGDSCOPE_HOME/<run_id>/             one RunProfile each (see profilers.model)
    $SGDSCOPE_HOME/_staging/             runs being written; renamed into place when whole
    $SGDSCOPE_HOME/_experiments/<id>/    experiment spec, progress, worker logs

A run becomes visible only by an atomic rename of a complete directory (its files and
folders fsynced first, the parent folder after), so a crash never leaves a half-written
run. The index is updated after the rename and reconciled with the directories on every
listing, so it can never disagree with them for long; an index that cannot be read is
moved aside (``index.sqlite.corrupt-<time>``) and rebuilt from the directories, with one
warning. A run directory that cannot be read (manifest, tables, findings) is listed as
``damaged`` with the reason, and can still be deleted; every other run keeps working.
Trash left by a crash (``_staging/deleting-*``, staged runs older than a day) is removed
at the next listing.

Must not import tensorflow, pynvml or streamlit.
"""
from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import sqlite3
import sys
import time
import uuid
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import pandas as pd

from profilers.errors import BadInput, RunNotFound, SgdscopeError
from profilers.model import RunProfile, fsync_dir, fsync_tree

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Staged run directories older than this are leftovers of a crashed writer.
STALE_STAGING_S = 24 * 3600

from profilers.model import RUN_ID_RE  # noqa: E402  (defined once, with the manifest)

INDEX_COLUMNS = (
    "run_id", "experiment_id", "workload", "variant", "status", "created_at",
    "steps", "median_ms", "final_loss", "loss_matches_baseline", "source",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    experiment_id TEXT,
    workload TEXT,
    variant TEXT,
    status TEXT,
    created_at TEXT,
    steps INTEGER,
    median_ms REAL,
    final_loss REAL,
    loss_matches_baseline INTEGER,
    source TEXT
)
"""

#: What each indexed run's files looked like when it was indexed (``files_stamp``): a run
#: whose files changed since is read again at the next listing, so one damaged after it was
#: indexed is listed as ``damaged``, not by its old row. A table of its own, so an index
#: written before it keeps its ``runs`` table (missing stamps: read once and stamped).
_STAMPS_SCHEMA = """
CREATE TABLE IF NOT EXISTS stamps (
    run_id TEXT PRIMARY KEY,
    stamp TEXT
)
"""


def _forget(conn: sqlite3.Connection, run_ids: list[tuple[str]]) -> None:
    """Drop runs from the index (their row and their stamp)."""
    conn.executemany("DELETE FROM runs WHERE run_id = ?", run_ids)
    conn.executemany("DELETE FROM stamps WHERE run_id = ?", run_ids)


def files_stamp(run_dir: Path) -> str | None:
    """(name, mtime, size) of the files a run is read from (manifest, findings, tables),
    as one string; None if the manifest is gone."""
    parts = []
    for path in [run_dir / "manifest.json", run_dir / "findings.json",
                 *sorted((run_dir / "tables").glob("*.csv"))]:
        try:
            st = path.stat()
        except OSError:  # gone, or unreadable: the stamp says so, and reading it tells why
            if path.name == "manifest.json":
                return None
            continue
        parts.append(f"{path.name}:{st.st_mtime_ns}:{st.st_size}")
    return "|".join(parts)


class StoreUnavailable(SgdscopeError):
    """The run store's folder or index cannot be used (permissions, a file in the way,
    the index locked by another process)."""

    exit_code = 2


#: SQLite errors that say the index file is not a usable index (move it aside, rebuild).
#: Anything else (locked, busy, cannot open, read-only, I/O) is reported, never rebuilt.
_NOT_CORRUPTION = ("locked", "busy", "unable to open", "readonly", "read-only", "disk i/o",
                   "out of memory", "disk is full", "interrupted")


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    text = str(exc).lower()
    return not any(k in text for k in _NOT_CORRUPTION)


def _run_id_facts(run_id: str) -> dict[str, Any]:
    """What a run id alone says (for a run whose manifest cannot be read)."""
    parts = run_id.split("-")
    created = None
    try:
        created = datetime.strptime(f"{parts[0]}-{parts[1]}", "%Y%m%d-%H%M%S").replace(
            tzinfo=timezone.utc).isoformat(timespec="seconds")
    except (ValueError, IndexError):
        created = None
    return {"workload": parts[2] if len(parts) > 4 else None,
            "variant": parts[3] if len(parts) > 4 else None, "created_at": created}


#: The process that owns this store's writes in a worker (``claim_process``); a process
#: forked from it (a profiled script's ``fork()``) never writes as it.
_OWNER_PID: int | None = None


def claim_process() -> None:
    """Mark this process as the worker: its forked children stop at ``leave_if_forked``."""
    global _OWNER_PID
    _OWNER_PID = os.getpid()


def leave_if_forked() -> None:
    """In a child forked by a profiled script that came back into sgdscope's code (it
    returned from the script instead of exiting): end it here, before it writes
    progress or stores a run as the worker."""
    if _OWNER_PID is not None and os.getpid() != _OWNER_PID:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                log.debug("cannot flush %s in a forked child", stream)
        os._exit(0)


def default_home() -> Path:
    return Path(os.environ.get("SGDSCOPE_HOME") or "runs").resolve()


def new_id(*parts: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    clean = [re.sub(r"[^a-z0-9_]", "_", p.lower()) or "x" for p in parts]
    return "-".join([stamp, *clean, uuid.uuid4().hex[:6]])


class RunStore:
    def __init__(self, home: Path | str | None = None) -> None:
        self.home = Path(home).resolve() if home else default_home()
        self.staging = self.home / "_staging"
        self.experiments = self.home / "_experiments"
        self.index_path = self.home / "index.sqlite"
        #: Warnings given by this store object (an index rebuilt, ...), oldest first.
        self.notices: list[str] = []

    # -- folder and index --------------------------------------------------------------
    def ensure_home(self) -> None:
        """Create the store folder, or say why it cannot be used."""
        hint = "Point --home (or SGDSCOPE_HOME) at a folder you can write, or at a path that does not exist yet."
        if self.home.exists() and not self.home.is_dir():
            raise StoreUnavailable(f"The run store {self.home} is a file, not a folder.", hint)
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"Cannot create the run store folder {self.home}: "
                                   f"{exc.strerror or exc}.", hint) from None

    def _open_index(self) -> sqlite3.Connection:
        self.ensure_home()
        conn = sqlite3.connect(self.index_path, timeout=10)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)
            conn.execute(_STAMPS_SCHEMA)
            cols = tuple(r[1] for r in conn.execute("PRAGMA table_info(runs)"))
            if cols != INDEX_COLUMNS:
                raise sqlite3.DatabaseError(f"the runs table has the wrong columns ({', '.join(cols)})")
        except BaseException:
            conn.close()
            raise
        return conn

    def _with_index(self, work: Callable[[sqlite3.Connection], T], *, check: bool = False) -> T:
        """Run ``work`` in one transaction on the index. An index that cannot be read is
        moved aside and rebuilt (once); other SQLite failures become ``StoreUnavailable``."""
        for attempt in (0, 1):
            conn = None
            try:
                conn = self._open_index()
                if check:
                    bad = [r[0] for r in conn.execute("PRAGMA quick_check")]
                    if bad != ["ok"]:
                        raise sqlite3.DatabaseError(f"quick_check: {'; '.join(map(str, bad[:3]))}")
                with conn:
                    return work(conn)
            except sqlite3.DatabaseError as exc:
                if not _is_corruption(exc):
                    raise StoreUnavailable(f"The run index {self.index_path} cannot be used: {exc}.",
                                           "Another sgdscope may be writing it: try again; check the "
                                           "folder's permissions.") from None
                if attempt:
                    raise StoreUnavailable(f"The run index {self.index_path} is still unreadable after "
                                           f"a rebuild: {exc}.", "Check the disk and the folder's "
                                           "permissions.") from None
                if conn is not None:
                    conn.close()
                    conn = None
                self._set_index_aside(exc)
            finally:
                if conn is not None:
                    conn.close()
        raise AssertionError("unreachable")

    def check_index(self) -> None:
        """Check the index now (set aside and rebuilt if damaged, with the warning given
        here): before launching, so the warning reaches the launching user."""
        self._with_index(lambda conn: None, check=True)

    def _set_index_aside(self, exc: BaseException) -> None:
        """Move a damaged index (and its WAL files) aside, under a lock so that two
        processes finding it damaged set it aside once."""
        with open(self.home / ".index.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with closing(self._open_index()) as conn:  # did another process rebuild it?
                    if [r[0] for r in conn.execute("PRAGMA quick_check")] == ["ok"]:
                        return
            except sqlite3.DatabaseError as again:
                if not _is_corruption(again):
                    raise
                log.debug("index still damaged (%s); setting it aside", again)
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
            aside = self.home / f"index.sqlite.corrupt-{stamp}"
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{self.index_path}{suffix}")
                if src.exists():
                    os.replace(src, Path(f"{aside}{suffix}"))
            fsync_dir(self.home)
        msg = (f"The run index could not be read ({exc}); it was moved to {aside.name} and "
               "rebuilt from the run folders.")
        self.notices.append(msg)
        log.warning("warning: %s", msg)

    @staticmethod
    def _row(profile: RunProfile) -> tuple[Any, ...]:
        m = profile.manifest
        res = m.get("results") or {}
        match = res.get("loss_matches_baseline")
        return (
            m["run_id"], m.get("experiment_id"), m.get("workload"), m.get("variant"),
            m.get("status"), m.get("created_at"), res.get("steps"),
            (res.get("step_ms") or {}).get("median"), res.get("final_loss"),
            None if match is None else int(bool(match)), m.get("source", "workload"),
        )

    def _index(self, profiles: Iterable[RunProfile]) -> None:
        profiles = list(profiles)
        rows = [self._row(p) for p in profiles]
        stamps = [(p.run_id, files_stamp(p.run_dir)) for p in profiles if p.run_dir is not None]

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(f"INSERT OR REPLACE INTO runs VALUES ({','.join('?' * len(INDEX_COLUMNS))})", rows)
            conn.executemany("INSERT OR REPLACE INTO stamps VALUES (?, ?)", stamps)

        self._with_index(write)

    def _index_after_commit(self, profiles: list[RunProfile]) -> None:
        """Index runs that are already committed. The run directory is the truth, so an
        index failure here is reported and left to the next listing's reconcile; it never
        undoes or fails the commit."""
        try:
            self._index(profiles)
        except (SgdscopeError, sqlite3.Error, OSError) as exc:
            msg = f"The run index was not updated ({exc}); the next listing adds the run."
            self.notices.append(msg)
            log.warning("warning: %s", msg)

    def run_dirs(self) -> list[Path]:
        if not self.home.is_dir():
            return []
        return sorted(p for p in self.home.iterdir()
                      if p.is_dir() and RUN_ID_RE.match(p.name) and (p / "manifest.json").is_file())

    def reconcile(self) -> list[dict[str, Any]]:
        """Make the index agree with the run directories (add missing, drop dangling).

        Returns one row per damaged run (not indexed; read again at every listing):
        ``run_id``, ``status`` "damaged" and ``damage`` (the reason)."""
        self.ensure_home()
        self.clean_trash()
        on_disk = {p.name for p in self.run_dirs()}

        def drop_gone(conn: sqlite3.Connection) -> dict[str, str | None]:
            indexed = dict(conn.execute("SELECT runs.run_id, stamps.stamp FROM runs "
                                        "LEFT JOIN stamps ON stamps.run_id = runs.run_id"))
            _forget(conn, [(g,) for g in set(indexed) - on_disk])
            return indexed

        indexed = self._with_index(drop_gone, check=True)
        # Runs whose files changed since they were indexed are read again (and leave the
        # index if they no longer read: a damaged run is never listed by its old row).
        changed = {rid for rid, stamp in indexed.items()
                   if rid in on_disk and (stamp is None or stamp != files_stamp(self.home / rid))}
        readable: list[RunProfile] = []
        damaged: list[dict[str, Any]] = []
        for rid in sorted((on_disk - set(indexed)) | changed):
            try:
                profile = RunProfile.read(self.home / rid)
                if profile.run_id != rid:
                    raise BadInput(f"its manifest names another run ({profile.run_id!r})", "")
                self._row(profile)
                readable.append(profile)
            except (SgdscopeError, OSError, UnicodeError, ValueError) as exc:
                reason = exc.message if isinstance(exc, SgdscopeError) else f"{type(exc).__name__}: {exc}"
                damaged.append({**_run_id_facts(rid), "run_id": rid, "status": "damaged",
                                "damage": reason})
        unreadable = [(d["run_id"],) for d in damaged if d["run_id"] in changed]
        if unreadable:
            self._with_index(lambda conn: _forget(conn, unreadable))
        if readable:
            self._index(readable)
        return damaged

    def clean_trash(self) -> None:
        """Remove what a crash left in ``_staging``: deletions that did not finish, and
        staged runs older than ``STALE_STAGING_S``."""
        if not self.staging.is_dir():
            return
        now = time.time()
        for entry in self.staging.iterdir():
            try:
                stale = entry.name.startswith("deleting-") or now - entry.stat().st_mtime > STALE_STAGING_S
            except FileNotFoundError:
                continue  # removed by another process meanwhile
            if stale:
                shutil.rmtree(entry, onerror=_log_rmtree_error)

    # -- public API --------------------------------------------------------------------
    def staging_dir(self, run_id: str) -> Path:
        path = self.staging / run_id
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def commit(self, profile: RunProfile, staged: Path) -> Path:
        """Write ``profile`` into its staged directory and rename it into place.

        Every file and folder of the staged run is fsynced before the rename and the
        store folder after it, so after a crash the run is either whole or absent. The
        index is updated last, and a failure there does not fail the commit."""
        leave_if_forked()
        final = self.home / profile.run_id
        try:
            if final.exists():
                raise BadInput(f"Run {profile.run_id} already exists.", "Delete it first.")
            profile.write(staged)
            fsync_tree(staged)
            os.replace(staged, final)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)  # nothing half-written stays behind
            raise
        fsync_dir(self.home)
        fsync_dir(self.staging)
        profile.run_dir = final
        self._index_after_commit([profile])
        return final

    def save(self, profile: RunProfile) -> Path:
        """Store a profile that has no staged files of its own (e.g. a failed run)."""
        return self.commit(profile, self.staging_dir(profile.run_id))

    def update(self, profile: RunProfile) -> None:
        """Rewrite an existing run's manifest/tables/findings (each file atomically)."""
        if profile.run_dir is None:
            raise RunNotFound("That run is not stored.", "Save it first.")
        profile.write(profile.run_dir)
        self._index_after_commit([profile])

    def list(self) -> pd.DataFrame:
        """One row per stored run, newest first, damaged runs last: ``INDEX_COLUMNS`` plus
        ``damage`` (None, or why a ``damaged`` run cannot be read). ``steps`` holds ints
        (or None). ``attrs["notices"]`` carries this store's warnings (index rebuilt)."""
        damaged = self.reconcile()
        df = self._with_index(lambda conn: pd.read_sql_query(
            f"SELECT {', '.join(INDEX_COLUMNS)} FROM runs", conn))
        df["damage"] = None
        if damaged:
            extra = pd.DataFrame(damaged).reindex(columns=[*INDEX_COLUMNS, "damage"])
            df = pd.concat([df.astype(object), extra.astype(object)], ignore_index=True) if len(df) \
                else extra
        df = df.assign(_readable=df["status"] != "damaged").sort_values(
            ["_readable", "created_at", "run_id"], ascending=False, na_position="last",
            key=lambda s: s if s.name == "_readable" else s.fillna("").astype(str),
        ).drop(columns="_readable").reset_index(drop=True)
        df["loss_matches_baseline"] = df["loss_matches_baseline"].map(
            lambda v: None if pd.isna(v) else bool(v)).astype(object)
        df["steps"] = pd.Series([None if pd.isna(v) else int(v) for v in df["steps"]],
                                index=df.index, dtype=object)
        df.attrs["notices"] = list(self.notices)
        return df

    def path(self, run_id: str) -> Path:
        if self.home.exists() and not self.home.is_dir():
            self.ensure_home()  # says that the store is a file
        if not RUN_ID_RE.match(run_id or ""):
            raise RunNotFound(f"{run_id!r} is not a run id.", "Run `sgdscope list` to see stored runs.")
        path = self.home / run_id
        if not (path / "manifest.json").is_file():
            raise RunNotFound(f"No run {run_id} in {self.home}.", "Run `sgdscope list` to see stored runs.")
        return path

    def load(self, run_id: str) -> RunProfile:
        return RunProfile.read(self.path(run_id))

    def delete(self, run_id: str) -> None:
        """Delete a run (a damaged one too): it disappears by one rename, then its files
        are removed; a crash in between leaves trash that the next listing removes."""
        path = self.path(run_id)
        trash = self.staging / f"deleting-{run_id}-{uuid.uuid4().hex[:6]}"
        self.staging.mkdir(parents=True, exist_ok=True)
        os.replace(path, trash)  # the run disappears atomically, then is removed
        fsync_dir(self.home)
        try:
            self._with_index(lambda conn: _forget(conn, [(run_id,)]))
        except SgdscopeError as exc:  # the next listing's reconcile drops the row
            self.notices.append(f"The run index was not updated ({exc.message}).")
            log.warning("warning: %s", self.notices[-1])
        shutil.rmtree(trash, onerror=_log_rmtree_error)

    def experiment_runs(self, experiment_id: str) -> list[RunProfile]:
        """The readable runs of one experiment, in launch order (damaged ones left out)."""
        df = self.list()
        ids = df.loc[(df["experiment_id"] == experiment_id) & (df["status"] != "damaged"), "run_id"]
        return sorted((self.load(r) for r in ids), key=lambda p: p.manifest.get("order", 0))


def _log_rmtree_error(func: Any, path: str, exc_info: Any) -> None:
    """``shutil.rmtree`` error handler: what cannot be removed now is logged, and retried
    by the next ``clean_trash``."""
    log.warning("warning: could not remove %s: %s", path, exc_info[1])

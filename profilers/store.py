"""Run store: run directories under ``SGDSCOPE_HOME`` (default ``./runs``), indexed in SQLite.

Layout::

    $SGDSCOPE_HOME/index.sqlite          the index (derived; rebuilt from the directories)
    $SGDSCOPE_HOME/<run_id>/             one RunProfile each (see profilers.model)
    $SGDSCOPE_HOME/_staging/             runs being written; renamed into place when whole
    $SGDSCOPE_HOME/_experiments/<id>/    experiment spec, progress, worker logs

A run becomes visible only by an atomic rename of a complete directory, so a crash
never leaves a half-written run. The index is updated after the rename and reconciled
with the directories on every listing, so it can never disagree with them for long.

Must not import tensorflow, pynvml or streamlit.
"""
from __future__ import annotations

import os
import re
import shutil
import sqlite3
import uuid
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from profilers.errors import BadInput, RunNotFound
from profilers.model import RunProfile

RUN_ID_RE = re.compile(r"^[0-9]{8}-[0-9]{6}-[a-z0-9_]+-[a-z0-9_]+-[0-9a-f]{6}$")

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

    # -- index -------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        self.home.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.index_path, timeout=10)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(_SCHEMA)
        return conn

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
        with closing(self._connect()) as conn, conn:
            conn.executemany(
                f"INSERT OR REPLACE INTO runs VALUES ({','.join('?' * len(INDEX_COLUMNS))})",
                [self._row(p) for p in profiles])

    def run_dirs(self) -> list[Path]:
        if not self.home.is_dir():
            return []
        return sorted(p for p in self.home.iterdir()
                      if p.is_dir() and RUN_ID_RE.match(p.name) and (p / "manifest.json").is_file())

    def reconcile(self) -> None:
        """Make the index agree with the run directories (add missing, drop dangling)."""
        on_disk = {p.name for p in self.run_dirs()}
        with closing(self._connect()) as conn, conn:
            indexed = {r[0] for r in conn.execute("SELECT run_id FROM runs")}
            for gone in indexed - on_disk:
                conn.execute("DELETE FROM runs WHERE run_id = ?", (gone,))
        missing = on_disk - indexed
        if missing:
            self._index(RunProfile.read(self.home / rid) for rid in sorted(missing))

    # -- public API --------------------------------------------------------------------
    def staging_dir(self, run_id: str) -> Path:
        path = self.staging / run_id
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def commit(self, profile: RunProfile, staged: Path) -> Path:
        """Write ``profile`` into its staged directory and rename it into place."""
        final = self.home / profile.run_id
        try:
            if final.exists():
                raise BadInput(f"Run {profile.run_id} already exists.", "Delete it first.")
            profile.write(staged)
            os.replace(staged, final)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)  # nothing half-written stays behind
            raise
        profile.run_dir = final
        self._index([profile])
        return final

    def save(self, profile: RunProfile) -> Path:
        """Store a profile that has no staged files of its own (e.g. a failed run)."""
        return self.commit(profile, self.staging_dir(profile.run_id))

    def update(self, profile: RunProfile) -> None:
        """Rewrite an existing run's manifest/tables/findings (each file atomically)."""
        if profile.run_dir is None:
            raise RunNotFound("That run is not stored.", "Save it first.")
        profile.write(profile.run_dir)
        self._index([profile])

    def list(self) -> pd.DataFrame:
        self.reconcile()
        with closing(self._connect()) as conn:
            df = pd.read_sql_query(
                f"SELECT {', '.join(INDEX_COLUMNS)} FROM runs ORDER BY created_at DESC, run_id DESC",
                conn)
        df["loss_matches_baseline"] = df["loss_matches_baseline"].map(
            lambda v: None if pd.isna(v) else bool(v)).astype(object)
        return df

    def path(self, run_id: str) -> Path:
        if not RUN_ID_RE.match(run_id or ""):
            raise RunNotFound(f"{run_id!r} is not a run id.", "Run `sgdscope list` to see stored runs.")
        path = self.home / run_id
        if not (path / "manifest.json").is_file():
            raise RunNotFound(f"No run {run_id} in {self.home}.", "Run `sgdscope list` to see stored runs.")
        return path

    def load(self, run_id: str) -> RunProfile:
        return RunProfile.read(self.path(run_id))

    def delete(self, run_id: str) -> None:
        path = self.path(run_id)
        trash = self.staging / f"deleting-{run_id}"
        self.staging.mkdir(parents=True, exist_ok=True)
        os.replace(path, trash)  # the run disappears atomically, then is removed
        with closing(self._connect()) as conn, conn:
            conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
        shutil.rmtree(trash)

    def experiment_runs(self, experiment_id: str) -> list[RunProfile]:
        df = self.list()
        ids = df.loc[df["experiment_id"] == experiment_id, "run_id"]
        return sorted((self.load(r) for r in ids), key=lambda p: p.manifest.get("order", 0))

"""Remote capture: trace running TensorFlow jobs through their profiler servers (gRPC).

A job that called ``tf.profiler.experimental.server.start(port)`` can be traced from
outside. One call traces every address at once (TensorFlow's own distributed capture
engine, here through xprof's ``_pywrap_profiler_plugin.trace``, which needs no
TensorFlow); each server writes its own ``<host>_<port>.xplane.pb`` under
``<logdir>/plugins/profile/<timestamp>/``.

- ``parse_addresses("host:port,grpc://host:port")`` -> ``[Address]`` (``BadInput`` if malformed)
- ``free_ports(n)``: loopback ports free at call time (for worker clusters and servers)
- ``check_reachable(addresses)``: a TCP connect to each, bounded; ``CaptureFailed`` naming
  every dead one, before any trace is attempted
- ``check_profiler_servers(addresses)``: each answers the HTTP/2 (gRPC) handshake within
  ``HANDSHAKE_TIMEOUT_S``; a port that accepts but never answers, or answers in another
  protocol, is named at once ("no profiler server on that port")
- ``trace(addresses, logdir, duration_ms)`` -> ``{address: xplane path}``, bounded wait
- ``place_worker_xplanes(run_dir, xplanes)``: worker 0's capture stays the run's
  (``trace/...``); worker k's moves to ``workers/<k>/trace/...``, so each xplane has a
  directory (and an xprof cache) of its own
- ``attach(store, "host:port,...", duration_ms)``: the edge of ``sgdscope attach`` and the
  Workers page's form: trace a running job, analyse each worker's capture
  (``profilers.scaleout``, the breakdown, the triage rules) and store it as a run
  (``source: "attach"``)

Must not import tensorflow, streamlit or pynvml (xprof is imported lazily, in ``trace``).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import sys
import threading
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from profilers.errors import BadInput, CaptureFailed, DependencyMissing

if TYPE_CHECKING:
    import pandas as pd

    from profilers.model import RunProfile
    from profilers.store import RunStore

GRPC_PREFIX = "grpc://"
#: Seconds allowed for the TCP connect to one profiler server.
CONNECT_TIMEOUT_S = 2.0
#: Seconds allowed for a profiler server to answer the HTTP/2 handshake (gRPC).
HANDSHAKE_TIMEOUT_S = 3.0
#: The HTTP/2 client connection preface, then an empty SETTINGS frame.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_NO_SERVER_HINT = ("No TF profiler server listens on that port: check the port, and that the job "
                   "called tf.profiler.experimental.server.start(PORT) with it.")
#: Seconds a trace may take beyond its duration (collection, serialization, writing).
TRACE_GRACE_S = 60.0
_HOST_RE = re.compile(r"^[A-Za-z0-9._-]+$|^\[[0-9A-Fa-f:.]+\]$")


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def file_stem(self) -> str:
        """The name a profiler server gives its capture: ``<host>_<port>``."""
        return f"{self.host.strip('[]')}_{self.port}".replace(":", "_")


def parse_addresses(text: str) -> list[Address]:
    """``"host:port[,host:port...]"`` (each may start with ``grpc://``) -> addresses."""
    out: list[Address] = []
    for raw in (part.strip() for part in (text or "").split(",")):
        if not raw:
            continue
        item = raw[len(GRPC_PREFIX):] if raw.startswith(GRPC_PREFIX) else raw
        host, sep, port = item.rpartition(":")
        if not sep or not host or not _HOST_RE.match(host) or not port.isdigit() or not 0 < int(port) < 65536:
            raise BadInput(f"{raw!r} is not a HOST:PORT address.",
                           "Give the profiler server of each worker, e.g. localhost:6009,localhost:6010.")
        out.append(Address(host, int(port)))
    if not out:
        raise BadInput("No address given.", "Give HOST:PORT[,HOST:PORT...] of running profiler servers.")
    if len(set(out)) != len(out):
        raise BadInput(f"An address is listed twice: {text}.", "List each worker once.")
    return out


def free_ports(n: int, host: str = "localhost") -> list[int]:
    """``n`` distinct ports free right now on ``host`` (the OS picks them; another process
    could still take one before it is bound, so callers bind them promptly)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)  # held open until all are chosen, so the n are distinct
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _connect_error(addr: Address, timeout_s: float) -> str | None:
    try:
        with closing(socket.create_connection((addr.host.strip("[]"), addr.port), timeout=timeout_s)):
            return None
    except socket.timeout:
        return f"no answer within {timeout_s:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)


def check_reachable(addresses: Sequence[Address], timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ``CaptureFailed`` naming every address that does not accept a TCP connection."""
    dead = [(a, err) for a in addresses if (err := _connect_error(a, timeout_s)) is not None]
    if dead:
        listed = "; ".join(f"{a}: {err}" for a, err in dead)
        raise CaptureFailed(
            f"Cannot reach the profiler server at {listed}.",
            "Is the job running, and did it call tf.profiler.experimental.server.start(PORT) "
            "with that port? Check the host name and that no firewall is in between.")


def _handshake_error(addr: Address, timeout_s: float) -> str | None:
    """None if ``addr`` answers the HTTP/2 handshake as a gRPC server does (its first
    frame is SETTINGS), else what it did instead."""
    try:
        with closing(socket.create_connection((addr.host.strip("[]"), addr.port), timeout=timeout_s)) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(_H2_PREFACE)
            head = b""
            while len(head) < 9:
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    return "it closed the connection without answering"
                head += chunk
    except socket.timeout:
        return f"it accepts connections but sent nothing within {timeout_s:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)
    if head[3] != 4:  # the frame type of SETTINGS
        return f"it answered, but not as a gRPC (HTTP/2) server ({head[:9]!r})"
    return None


def check_profiler_servers(addresses: Sequence[Address], timeout_s: float = HANDSHAKE_TIMEOUT_S) -> None:
    """Raise ``CaptureFailed`` naming every address that is not a gRPC server, within
    ``timeout_s`` per address, instead of waiting for the trace's own deadline."""
    bad = [(a, err) for a in addresses if (err := _handshake_error(a, timeout_s)) is not None]
    if bad:
        listed = "; ".join(f"{a}: {err}" for a, err in bad)
        raise CaptureFailed(f"No profiler server answers at {listed}.", _NO_SERVER_HINT)


def _xprof_trace():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        from xprof.convert import _pywrap_profiler_plugin
    except ImportError as exc:
        raise DependencyMissing(f"xprof is not importable ({exc}); it runs the remote capture.",
                                "Install it: pip install xprof==2.24.2") from None
    return _pywrap_profiler_plugin.trace


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Point file descriptor 1 at stderr for the duration (C code writing to stdout)."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no stdout at all (e.g. a detached server): nothing to protect
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def trace(addresses: Sequence[Address], logdir: Path | str, duration_ms: int, *,
          attempts: int = 3, grace_s: float = TRACE_GRACE_S) -> dict[Address, Path]:
    """Trace every address for ``duration_ms`` in one call; ``{address: its xplane}``.

    Checks that each address connects first. Waits at most ``duration_ms`` + ``grace_s``;
    a capture that fails, times out or misses a worker raises ``CaptureFailed``.
    """
    if duration_ms <= 0:
        raise BadInput(f"duration_ms must be positive, got {duration_ms}.", "Pass --duration-ms 2000.")
    check_reachable(addresses)
    check_profiler_servers(addresses)
    run_trace = _xprof_trace()
    logdir = Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    before = set(logdir.glob("plugins/profile/*/*.xplane.pb"))
    outcome: dict[str, BaseException] = {}

    def call() -> None:
        try:
            run_trace(",".join(str(a) for a in addresses), str(logdir), "", True,
                      int(duration_ms), int(attempts), {})
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=call, name="sgdscope-remote-trace", daemon=True)
    wait_s = duration_ms / 1e3 + grace_s
    with _stdout_to_stderr():  # the C library prints progress on stdout: keep --json clean
        worker.start()
        worker.join(wait_s)
    if worker.is_alive():
        raise CaptureFailed(f"The trace of {', '.join(map(str, addresses))} did not finish within "
                            f"{wait_s:g} s.", "The job may be stuck or overloaded; try a shorter "
                            "--duration-ms, or attach to fewer workers.")
    if "error" in outcome:
        msg = str(outcome["error"]).strip()
        hint = ("Either that port is not a TF profiler server (another gRPC service?), or the job "
                "ran no TensorFlow work while it was traced: check the port, attach while it trains, "
                "or raise --duration-ms." if "No trace event" in msg else _NO_SERVER_HINT)
        raise CaptureFailed(f"The remote trace failed: {msg}", hint)
    found = sorted(set(logdir.glob("plugins/profile/*/*.xplane.pb")) - before)
    out: dict[Address, Path] = {}
    for addr in addresses:
        mine = [p for p in found if p.name == f"{addr.file_stem}.xplane.pb"] or \
               [p for p in found if p.name.endswith(f"_{addr.port}.xplane.pb")]
        if mine:
            out[addr] = mine[-1]
    missing = [str(a) for a in addresses if a not in out]
    if missing:
        raise CaptureFailed(f"The trace wrote no capture for {', '.join(missing)} "
                            f"(found: {', '.join(p.name for p in found) or 'none'}).",
                            "That worker may have exited during the trace; keep it running until "
                            "the capture ends.")
    return out


def place_worker_xplanes(run_dir: Path | str, xplanes: Sequence[Path]) -> list[str]:
    """Give each worker's capture its own directory; paths relative to ``run_dir``.

    Worker 0's xplane is the run's own capture and stays (or is moved) under
    ``trace/plugins/profile/<ts>/``; worker k's goes to ``workers/<k>/trace/plugins/profile/<ts>/``.
    xprof writes cache files beside an xplane keyed by host, so two captures never share
    a directory.
    """
    run_dir = Path(run_dir).resolve()
    rel: list[str] = []
    for k, src in enumerate(xplanes):
        src = Path(src).resolve()
        base = run_dir / "trace" if k == 0 else run_dir / "workers" / str(k) / "trace"
        dest = base / "plugins" / "profile" / src.parent.name / src.name
        if src != dest:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), dest)
        rel.append(str(dest.relative_to(run_dir)))
    for k, src in enumerate(xplanes):  # drop timestamp folders the moves left empty
        parent = Path(src).resolve().parent
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
    return rel


# -- attach: capture a running job and store it as a run ------------------------------------
def _worker_windows(events: "pd.DataFrame") -> tuple["pd.DataFrame", str]:
    """One worker's step windows with their collective time: from its step markers, else
    inferred from its repeated dispatches (``profilers.step_inference``)."""
    from profilers import scaleout
    from profilers import step_inference as si

    marks = scaleout.step_collectives(events)
    if not marks.empty:
        return marks, "markers"
    cut = si.infer_steps(events)
    if not cut.count:
        return marks, "none"
    return scaleout.window_collectives(events, range(cut.count), cut.start_us, cut.end_us), "inferred"


def attach(store: "RunStore", addresses: str | Sequence[Address], duration_ms: int,
           name: str = "job") -> "RunProfile":
    """Trace a running job's profiler servers and store the capture as a run.

    ``source`` is ``"attach"``, workload ``attach``, variant ``name``. The first address is
    worker 0: its capture gives the run's steps, breakdown and ops (through
    ``script_worker.analyse_tf_capture``: step markers when the job has them, else inferred
    steps); every worker's capture gives its row of ``results.per_worker`` and the
    ``workers`` table. Findings come from the triage rules, the distributed ones included.
    Nothing is stored when the capture itself fails; an analysis that fails is stored
    with the run, as ``capture.analysis_error``.
    """
    import time

    import pandas as pd

    from profilers import analysis, environment, scaleout, stored_analysis, xprof_tools
    from profilers.errors import SgdscopeError
    from profilers.model import RunProfile, empty_table, new_manifest
    from profilers.session import now_iso
    from profilers.store import new_id

    addrs = parse_addresses(addresses) if isinstance(addresses, str) else list(addresses)
    check_reachable(addrs)  # fail fast, before a staging directory exists
    run_id = new_id("attach", name)
    staged = store.staging_dir(run_id)
    started = now_iso()
    t0 = time.perf_counter()
    try:
        found = trace(addrs, staged / "trace", duration_ms)
        rel = place_worker_xplanes(staged, [found[a] for a in addrs])
        cap: dict[str, Any] = {"profiled": True, "xplane": rel[0], "source": "attach",
                               "addresses": [str(a) for a in addrs], "duration_ms": int(duration_ms),
                               "worker_xplanes": rel}
        tables: dict[str, pd.DataFrame] = {}
        results: dict[str, Any] = {}
        windows: dict[int, pd.DataFrame] = {}
        steps_from: dict[str, str] = {}
        for k, path in enumerate(rel):
            try:
                windows[k], steps_from[str(k)] = _worker_windows(xprof_tools.trace_events(staged / path))
            except SgdscopeError as exc:
                cap.setdefault("worker_errors", {})[str(k)] = f"{type(exc).__name__}: {exc.message}"
        cap["worker_steps_from"] = steps_from
        marks0 = windows.get(0)
        chief_steps = scaleout.steps_from_markers(marks0) if marks0 is not None and \
            steps_from.get("0") == "markers" else None
        try:
            from profilers.script_worker import analyse_tf_capture

            got = analyse_tf_capture(staged / rel[0], recorder_steps=chief_steps, capture_start_us=0.0,
                                     skip=0, max_steps=10**6, cache_dir=staged / "cache")
            tables.update(got["tables"])
            results.update(got["results"])
            cap.update(got["capture"])
            if cap.get("steps_from") == "markers":
                results["breakdown_source"] = ("TF trace inside the job's own step markers "
                                               "(profilers.breakdown.breakdown_from_trace)")
        except SgdscopeError as exc:  # the capture is kept; the reason is shown with the run
            cap["analysis_error"] = f"{type(exc).__name__}: {exc.message} {exc.hint}".strip()
        host = {k: scaleout.steps_from_markers(w) for k, w in windows.items() if not w.empty}
        if host:
            tables["workers"] = scaleout.workers_table(host, {k: windows[k] for k in host})
            rows = scaleout.per_worker(tables["workers"])
            for row in rows:
                row["xplane"] = rel[row["worker"]]
                row["address"] = str(addrs[row["worker"]])
            results.update(per_worker=rows, worker_spread=scaleout.spread(rows),
                           collective_share=scaleout.collective_share(rows))
        steps = tables.get("steps", empty_table("steps"))
        if chief_steps is None and "steps" not in tables and 0 in host:
            steps = tables["steps"] = host[0]
        results.update({"steps": int(len(steps)), "step_ms": analysis.step_stats(steps),
                        "final_loss": None, "baseline_loss": None, "loss_matches_baseline": None})
        cap.setdefault("cpu_contention", {"available": False, "reason": "an attached job runs in other "
                                          "processes: their run-queue wait is not read"})
        manifest = new_manifest(
            run_id=run_id, workload="attach", variant=name, status="ok", source="attach",
            params={"addresses": [str(a) for a in addrs], "duration_ms": int(duration_ms)},
            created_at=started,
            timings={"started_at": started, "finished_at": now_iso(), "wall_s": time.perf_counter() - t0},
            environment={"sgdscope_host": environment.collect()}, results=results, capture=cap)
        profile = RunProfile(manifest=manifest, tables=tables)
        profile.run_dir = staged
        stored_analysis.analyse_before_commit(profile, None)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)  # nothing half-written stays behind
        raise
    store.commit(profile, staged)
    return profile

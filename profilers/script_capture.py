"""Running a user's training script unchanged, under the TF profiler or a sampler.

Used only by the script worker (``profilers.script_worker``), inside its subprocess:

* ``scan_script``: what the script imports, read from its source (and its sibling
  modules), never by running it: TensorFlow or not, Keras ``fit`` or a custom loop.
* ``run_user_code``: runs the script as ``__main__`` (argv, ``sys.path[0]`` and
  ``__file__`` set as ``python script.py`` would), or loads it and calls ``NAME()``. An
  exception or ``sys.exit`` of the script is its outcome, recorded (exit code, traceback),
  and printed to stderr as Python would.
* ``TfCapture``: the TF profiler window. A custom loop has no markers, so the window opens
  when the script starts and closes after ``window_s`` or when the script ends; the steps
  are cut from the trace later (``profilers.step_inference``). Keras ``fit`` gets a
  step-marker callback (``keras.Model.fit`` is wrapped for the duration); the recorder then
  opens the window after ``skip_steps`` steps and closes it after ``max_steps``.
  It also keeps TensorFlow's own retracing warnings and, after the run, reads every live
  ``tf.function``'s trace count and concrete signatures (which argument changed).
* ``PyCapture``: a script without TensorFlow is sampled by ``DelaySampler`` (a SIGALRM
  timer whose delay tells native time from interpreter time, Scalene's technique), and
  its loops are marked in the compiled code (``LoopMarks``) so the training loop's
  iterations become its steps.

TensorFlow is imported lazily, inside the functions that need it.
Must not import streamlit or pynvml.
"""
from __future__ import annotations

import ast
import functools
import gc
import inspect
import logging
import os
import random
import sys
import threading
import time
import tokenize
import traceback
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from profilers.errors import BadInput
from profilers.contention import ContentionMeter
from profilers.recorder import StepRecorder

TF_MODULES = frozenset({"tensorflow", "keras", "tf_keras"})
#: Retracing warnings kept from TensorFlow's logger (the first ones are enough).
MAX_TF_WARNINGS = 20


# -- static scan --------------------------------------------------------------------------------
@dataclass
class ScriptScan:
    uses_tf: bool
    uses_keras_fit: bool
    imports: list[str]
    files: list[str]


def _imports_and_fit(tree: ast.AST) -> tuple[set[str], bool]:
    mods: set[str] = set()
    fit = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level > 0 and node.module:
            mods.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "fit"):
            fit = True
    return mods, fit


def read_source(path: Path | str) -> str:
    """A script's text, decoded the way Python decodes it (``tokenize.open``: a BOM or a
    PEP 263 coding line, else UTF-8); ``BadInput`` when it is not Python source text."""
    try:
        with tokenize.open(path) as fh:
            text = fh.read()
    except (SyntaxError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path} is not Python source text: {exc}.",
                       "Save it as UTF-8, or put its encoding in a coding line (# -*- coding: latin-1 -*-).") from None
    if "\x00" in text:
        raise BadInput(f"{path} contains NUL bytes: it is a binary file, not Python source.",
                       "Give the .py file of your training script.")
    return text


def scan_script(path: Path | str, depth: int = 2) -> ScriptScan:
    """TensorFlow/Keras use and ``.fit(`` calls, from the script and the local modules it
    imports (same folder, up to ``depth`` levels). Raises ``BadInput`` on a syntax error."""
    path = Path(path)
    seen: set[Path] = set()
    mods_all: set[str] = set()
    fit_any = False
    todo = [(path, 0)]
    while todo:
        cur, level = todo.pop()
        if cur in seen or not cur.is_file():
            continue
        seen.add(cur)
        try:
            tree = ast.parse(read_source(cur), filename=str(cur))
        except SyntaxError as exc:
            raise BadInput(f"{cur} is not valid Python: {exc}.", "Fix the script, then profile it.") from None
        mods, fit = _imports_and_fit(tree)
        mods_all |= mods
        fit_any |= fit
        if level < depth:
            todo.extend((cur.parent / f"{m}.py", level + 1) for m in mods)
    uses_tf = bool(mods_all & TF_MODULES)
    return ScriptScan(uses_tf=uses_tf, uses_keras_fit=uses_tf and fit_any,
                      imports=sorted(mods_all), files=sorted(str(p) for p in seen))


# -- running the user's code ------------------------------------------------------------------
@dataclass
class ScriptOutcome:
    exit_code: int
    exception: str | None = None
    traceback: str = ""
    wall_s: float = 0.0
    namespace: dict[str, Any] | None = None


def _user_traceback(exc: BaseException, script: Path) -> str:
    """The traceback from the script's first frame on (the harness frames left out)."""
    frames = traceback.extract_tb(exc.__traceback__)
    first = next((i for i, f in enumerate(frames) if Path(f.filename) == script), 0)
    lines = ["Traceback (most recent call last):\n"]
    lines += traceback.format_list(frames[first:])
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


def run_user_code(path: Path | str, function: str | None = None,
                  argv: list[str] | None = None, loop_marks: "LoopMarks | None" = None) -> ScriptOutcome:
    """Run the script as ``python script.py argv...`` would, or call its ``function()``.

    Whatever the script raises (``SystemExit`` included) becomes the outcome; it is
    printed to stderr the way Python prints it, and never re-raised. With ``loop_marks``
    the script's loops are marked in the compiled code (``LoopMarks.instrument``; the
    file is not changed).
    """
    script = Path(path).resolve()
    name = "__main__" if function is None else (script.stem if script.stem.isidentifier() else "user_script")
    module = types.ModuleType(name)
    module.__file__ = str(script)
    module.__dict__["__builtins__"] = __builtins__
    saved_argv, saved_path0 = sys.argv[:], sys.path[0] if sys.path else None
    saved_main = sys.modules.get(name)
    sys.argv = [str(script), *(argv or [])]
    sys.path.insert(0, str(script.parent))
    sys.modules[name] = module
    t0 = time.perf_counter()
    outcome = ScriptOutcome(exit_code=0, namespace=module.__dict__)
    try:
        source = read_source(script)
        if loop_marks is not None:
            tree = loop_marks.instrument(ast.parse(source, filename=str(script)), source)
            module.__dict__.update(loop_marks.namespace())
            code = compile(tree, str(script), "exec")
        else:
            code = compile(source, str(script), "exec")
        exec(code, module.__dict__)
        if function is not None:
            fn = module.__dict__.get(function)
            if not callable(fn):
                found = sorted(k for k, v in module.__dict__.items()
                               if callable(v) and not k.startswith("_") and getattr(v, "__module__", None) == name)
                raise BadInput(f"{script.name} has no function {function!r}.",
                               f"Functions defined there: {', '.join(found) or '(none)'}.")
            fn()
    except SystemExit as exc:  # the script's own exit: its code is the outcome
        code_ = exc.code
        if code_ is None:
            outcome.exit_code = 0
        elif isinstance(code_, int):
            outcome.exit_code = code_
        else:
            print(code_, file=sys.stderr)
            outcome.exit_code = 1
        if outcome.exit_code:
            outcome.exception = f"SystemExit: {code_}"
    except BadInput:
        raise
    except BaseException as exc:  # noqa: BLE001 - the user's failure, recorded as the run's outcome
        outcome.exit_code = 1
        outcome.exception = f"{type(exc).__name__}: {exc}"
        outcome.traceback = _user_traceback(exc, script)
        sys.stderr.write(outcome.traceback)
    finally:
        outcome.wall_s = time.perf_counter() - t0
        sys.argv = saved_argv
        if sys.path and sys.path[0] == str(script.parent):
            sys.path.pop(0)
        elif saved_path0 is not None and str(script.parent) in sys.path:
            sys.path.remove(str(script.parent))
        if saved_main is not None:
            sys.modules[name] = saved_main
        sys.stdout.flush()
        sys.stderr.flush()
    return outcome


# -- TensorFlow capture ------------------------------------------------------------------------
class _WarningTap(logging.Handler):
    """Keeps TensorFlow's retracing warnings (message text, time)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[dict[str, Any]] = []
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if "retracing" not in msg:
            return
        self.count += 1
        if len(self.records) < MAX_TF_WARNINGS:
            self.records.append({"t": time.time(), "message": msg[:600]})


#: How often ``StackSampler`` reads the TF script's stack.
STACK_INTERVAL_S = 0.003
#: Frames of these packages are the framework's own Python (Keras' fit loop and callbacks
#: machinery, TF's op wrappers, tf.function's call path, tf.data's iterator).
_FRAMEWORK_DIRS = tuple(f"{os.sep}{d}{os.sep}" for d in ("tensorflow", "keras", "tf_keras"))
#: sgdscope's own frames (the step-marker callback): the harness, not the user's.
_HARNESS_DIR = str(Path(__file__).resolve().parent) + os.sep


@functools.lru_cache(maxsize=4096)
def _file_kind(file: str) -> str | None:
    if any(d in file for d in _FRAMEWORK_DIRS):
        return "framework"
    return "harness" if file.startswith(_HARNESS_DIR) else None


def stack_class(stack: Iterable[Frame], script_files: set[str] | frozenset[str]) -> tuple[str, Frame | None]:
    """(kind, frame) of a sampled stack, read from the leaf outwards: the first frame in
    the user's files makes it ``user`` time (whatever NumPy or other library it called);
    the first frame in TF/Keras makes it ``framework``; in sgdscope, ``harness``; none of
    them, ``other``. ``frame`` is the innermost frame in the user's files, whatever the
    kind: the user's line this time is under (``model.predict(x)`` for Keras' time in it)."""
    kind = None
    for fr in stack:
        if fr[0] in script_files:
            return kind or "user", fr
        if kind is None:
            kind = _file_kind(fr[0])
    return kind or "other", None


def where_of(frame: Frame | None) -> str:
    """``Logger.on_train_batch_end (train.py:14)``; "" for no frame."""
    return "" if frame is None else f"{frame[2]} ({os.path.basename(frame[0])}:{frame[1]})"


@dataclass
class StackSampler:
    """Where a TF script's main thread is, every ``interval_s`` on average, while
    ``active()`` (the profiler window): ``stack_class`` of its stack, rows of the
    ``py_stacks`` table.

    The sampling times are a random grid drawn in advance, independent of what the script
    does: gaps uniform in 0.5-1.5 ``interval_s`` (a fixed period close to the step's would
    sample the same phase of every step). A one-shot ``ITIMER_REAL`` is armed for the next
    grid point; SIGALRM's handler runs in the main thread between bytecodes and reads the
    stack there. A handler held off by a C call (a TF op, a graph call, BLAS) runs when
    the call returns, in its caller's frame: every grid point passed meanwhile fell inside
    that call, so all of them go to that frame, each standing for the gap before it. (Time
    since the last handler would not do: handlers cluster at the end of C calls, and the
    user's Python after them was read as the next call's.) Not a sampling thread: it needs
    the GIL to read a stack, and a thread running pure Python let it in only when the burst
    ended (a 3 ms burst in every 6 ms read as 28 % of the time, even with a 0.5 ms switch
    interval). ``siginterrupt(False)``: system calls the signal interrupts are restarted,
    not failed with EINTR. Limit: ``signal.alarm`` and ``ITIMER_REAL`` are one timer per
    process, so a script that sets its own alarm while the window is open stops the
    sampling (and a handler the script installs is left alone)."""

    t0_ns: int
    script_files: frozenset[str]
    active: Callable[[], bool]
    interval_s: float = STACK_INTERVAL_S
    #: (perf_counter ns, weight ns, kind, the user's frame): formatted by ``table``, not in
    #: the handler (a handler runs cold: a ``Path`` there took 14 µs).
    records: list[tuple[int, int, str, Frame | None]] = field(default_factory=list)
    cost_ns: int = 0  # the handler's own time, on the script's thread: the harness cost
    error: str | None = None  # why it could not sample
    _grid: int = 0  # the next grid point (perf_counter ns)
    _prev: int = 0  # the grid point before it
    _old: Any = None
    _running: bool = False
    _busy: bool = False
    _gaps: list[int] = field(default_factory=list)  # drawn before the run: no RNG in the handler
    _k: int = 0

    def start(self) -> None:
        import signal

        ok, why = DelaySampler.availability()
        if not ok:
            self.error = why
            return
        self._old = signal.signal(signal.SIGALRM, self._handler)
        signal.siginterrupt(signal.SIGALRM, False)
        self._running = True
        rng = random.Random(0)
        self._gaps = [int(self.interval_s * 1e9 * rng.uniform(0.5, 1.5)) for _ in range(4096)]
        self._prev = time.perf_counter_ns()
        self._grid = self._prev + self._gap()
        self._arm(self._prev)

    def _gap(self) -> int:
        self._k = (self._k + 1) & 4095
        return self._gaps[self._k]

    def _arm(self, now: int) -> None:
        import signal

        signal.setitimer(signal.ITIMER_REAL, max(self._grid - now, 20_000) / 1e9)

    def _handler(self, signum: int, frame: types.FrameType | None) -> None:
        if self._busy or not self._running:
            return
        self._busy = True
        now = time.perf_counter_ns()
        weight = 0
        while self._grid <= now:  # the grid points passed since the last handler
            weight += self._grid - self._prev
            self._prev, self._grid = self._grid, self._grid + self._gap()
        if weight and self.active():
            self.records.append((now, weight, *stack_class(iter_frames(frame, qualified=True), self.script_files)))
        self._busy = False
        # Armed last: Python runs handlers between any bytecodes, this one's too, and a fire
        # that found it busy would have been dropped with the timer never armed again (it
        # stopped after 35 steps of a Keras predict loop).
        self._arm(time.perf_counter_ns())
        self.cost_ns += time.perf_counter_ns() - now

    def stop(self) -> None:
        import signal

        if not self._running:
            return
        self._running = False
        if signal.getsignal(signal.SIGALRM) == self._handler:  # the script did not take SIGALRM over
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old if self._old is not None else signal.SIG_DFL)

    def table(self) -> Any:
        import linecache

        import pandas as pd

        from profilers.model import validate_table

        ts, w, kind, frames = (list(c) for c in zip(*self.records)) if self.records else ([], [], [], [])
        return validate_table("py_stacks", pd.DataFrame({
            "ts_us": [(t - self.t0_ns) / 1e3 for t in ts], "weight_us": [x / 1e3 for x in w], "kind": kind,
            "where": [where_of(fr) for fr in frames],
            "code": ["" if fr is None else linecache.getline(fr[0], fr[1]).strip()[:160] for fr in frames]}))


@dataclass
class TfCapture:
    """The TF profiler window around a script (see the module docstring)."""

    logdir: Path
    t0_ns: int
    skip_steps: int = 3
    max_steps: int = 50
    window_s: float = 8.0
    keras_mode: bool = False
    started_ns: int | None = None
    stopped_ns: int | None = None
    stop_reason: str | None = None
    error: str | None = None
    recorder: StepRecorder | None = None
    fit_calls: int = 0
    #: The step number each ``fit`` call started at (Keras mode): its first step traces a
    #: new train function whenever ``compile`` ran again in between.
    fit_first_steps: list[int] = field(default_factory=list)
    callback_ns: int = 0  # time in the step-marker callback (on the step's own thread)
    _own: bool = False  # this object opened the profiler (time window), not the recorder
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _timer: threading.Timer | None = None
    _tap: _WarningTap = field(default_factory=_WarningTap)
    #: Run-queue wait of the script's thread over the time window (CPU contention).
    meter: ContentionMeter = field(default_factory=ContentionMeter)
    #: The user's files (the script and its sibling modules): ``StackSampler``'s "user".
    script_files: frozenset[str] = frozenset()
    stacks: StackSampler | None = None

    # -- window ----------------------------------------------------------------------------
    def start(self) -> None:
        import tensorflow as tf

        with self._lock:
            if self.started_ns is not None:
                return
            try:
                tf.profiler.experimental.start(str(self.logdir))
            except (tf.errors.AlreadyExistsError, tf.errors.UnavailableError) as exc:
                self.error = f"TF profiler could not start: {exc}"
                return
            self.started_ns = time.perf_counter_ns()
            self.meter.start()  # on the script's thread, which calls start()
            self._own = True
        self._timer = threading.Timer(self.window_s, self.stop, kwargs={"reason": f"window of {self.window_s:g} s"})
        self._timer.daemon = True
        self._timer.start()

    def stop(self, reason: str = "script ended") -> None:
        import tensorflow as tf

        with self._lock:
            if not self._own or self.stopped_ns is not None:
                return
            try:
                self.meter.stop()  # before stop(), whose own cost is not the steps'
                tf.profiler.experimental.stop()
            except tf.errors.UnavailableError as exc:  # the script stopped it itself
                self.error = f"TF profiler was already stopped: {exc}"
            self.stopped_ns = time.perf_counter_ns()
            self.stop_reason = reason

    @property
    def active(self) -> bool:
        return self.started_ns is not None and self.stopped_ns is None

    # -- Keras fit ---------------------------------------------------------------------------
    def _callback(self) -> Any:
        import keras

        cap = self
        rec = self.recorder
        assert rec is not None

        class SgdscopeStepMarkers(keras.callbacks.Callback):
            """Added by sgdscope: one step marker per training batch."""

            def __init__(self) -> None:
                super().__init__()
                self.epoch = 0

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self.epoch = epoch

            def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
                t = time.perf_counter_ns()
                rec.begin_step(rec.steps_done, self.epoch)
                cap.callback_ns += time.perf_counter_ns() - t

            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                t = time.perf_counter_ns()
                self._end(batch, logs)
                cap.callback_ns += time.perf_counter_ns() - t

            def _end(self, batch: int, logs: Any = None) -> None:
                step = rec.steps_done
                rec.end_step()
                if logs and "loss" in logs:
                    rec.record_loss(step, logs["loss"])
                if rec.profile_start_ns is not None and cap.started_ns is None:
                    cap.started_ns = rec.profile_start_ns
                if rec.profile_stop_ns is not None and cap.stopped_ns is None:
                    cap.stopped_ns, cap.stop_reason = rec.profile_stop_ns, f"{rec.profile_steps} steps captured"

        return SgdscopeStepMarkers()

    @contextmanager
    def keras_fit_markers(self) -> Iterator[None]:
        """``keras.Model.fit`` gets the marker callback appended while this is open."""
        import keras

        self.recorder = StepRecorder(
            t0_ns=self.t0_ns, warmup_steps=self.skip_steps,
            profile_logdir=self.logdir if self.keras_mode else None, profile_steps=self.max_steps)
        original = keras.Model.fit
        cap = self

        def fit(model: Any, *args: Any, **kwargs: Any) -> Any:
            cap.fit_calls += 1
            if cap.recorder is not None:
                cap.fit_first_steps.append(cap.recorder.steps_done)
            args_l = list(args)
            if len(args_l) >= 6:  # fit(x, y, batch_size, epochs, verbose, callbacks, ...)
                args_l[5] = [*(args_l[5] or []), cap._callback()]
            else:
                kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), cap._callback()]
            return original(model, *args_l, **kwargs)

        fit.__wrapped__ = original  # type: ignore[attr-defined]
        keras.Model.fit = fit
        try:
            yield
        finally:
            keras.Model.fit = original

    # -- the whole capture ----------------------------------------------------------------
    @contextmanager
    def around_script(self) -> Iterator[None]:
        tf_logger = logging.getLogger("tensorflow")
        tf_logger.addHandler(self._tap)
        self.stacks = StackSampler(self.t0_ns, self.script_files,
                                   lambda: self.active or (self.recorder is not None and self.recorder.profiling))
        self.stacks.start()
        try:
            with self.keras_fit_markers():
                if not self.keras_mode:
                    self.start()
                try:
                    yield
                finally:
                    if self._timer is not None:
                        self._timer.cancel()
                    self.stop()
                    if self.recorder is not None and self.recorder.profiling:
                        self.recorder.finish()  # closes a Keras window cut short
                        self.stopped_ns = self.recorder.profile_stop_ns
                        self.stop_reason = "script ended inside the Keras window"
        finally:
            self.stacks.stop()
            tf_logger.removeHandler(self._tap)

    def window(self) -> dict[str, Any]:
        def rel(ns: int | None) -> float | None:
            return None if ns is None else (ns - self.t0_ns) / 1e3

        return {"mode": "keras_markers" if self.keras_mode else "time_window",
                "start_us": rel(self.started_ns), "stop_us": rel(self.stopped_ns),
                "stop_reason": self.stop_reason, "window_s": self.window_s,
                "skip_steps": self.skip_steps, "max_steps": self.max_steps,
                "fit_calls": self.fit_calls, "fit_first_steps": list(self.fit_first_steps), "error": self.error or (
                    self.recorder.profiler_error if self.recorder is not None else None)}

    def tf_warnings(self) -> dict[str, Any]:
        return {"retracing_warnings": self._tap.count, "retracing_messages": self._tap.records}

    def harness(self, sampler_stats: dict[str, Any], wall_s: float) -> dict[str, Any]:
        """What sgdscope adds around a TF script beyond the TF profiler, as measured in this
        run (manifest ``capture.harness``). ``framework_overhead_share`` is an upper bound of
        the step time it can add outside ops (so the triage keeps it out of
        framework_overhead): the utilization sampler thread's CPU time, the stack
        sampler's handler time and the marker callback's time, over the run's wall time."""
        cpu_s = float(sampler_stats.get("tick_cpu_s_total") or 0.0)
        cb_s = self.callback_ns / 1e9
        stack_s = self.stacks.cost_ns / 1e9 if self.stacks is not None else 0.0
        share = (cpu_s + cb_s + stack_s) / wall_s if wall_s > 0 else None
        return {
            "components": {
                "stack_sampler": {"samples": len(self.stacks.records) if self.stacks is not None else 0,
                                  "interval_s": self.stacks.interval_s if self.stacks is not None else None,
                                  "cpu_s_total": round(stack_s, 4),
                                  "error": self.stacks.error if self.stacks is not None else None,
                                  "measured_as": "perf_counter around the SIGALRM handler, on the script's thread"},
                "samplers": {"ticks": sampler_stats.get("ticks"), "interval_s": sampler_stats.get("interval_s"),
                             "tick_cpu_us_median": sampler_stats.get("tick_cpu_us_median"),
                             "cpu_s_total": round(cpu_s, 4),
                             "measured_as": "thread_time of the sampler thread around each tick"},
                "keras_step_markers": {"ms_total": round(cb_s * 1e3, 3), "steps": self.recorder.steps_done
                                       if self.recorder is not None else 0,
                                       "measured_as": "perf_counter around the callback's own code"},
                "contention_meter": "reads /proc/self/task/<tid>/schedstat at start and stop only",
                "tf_capture": "one sleeping timer thread (the window) and a logging handler for "
                              "TensorFlow's retracing warnings",
            },
            "framework_overhead_share": round(share, 5) if share is not None else None,
            "bench": "bench/harness_overhead.py (bench/RESULTS.md): the whole harness against the TF "
                     "profiler alone, side by side, on a step with Python work",
        }


# -- tf.function facts, read after the run ---------------------------------------------------------
def _spec_text(value: Any) -> tuple[str, str]:
    """(kind, text) of one traced argument: a TensorSpec, a Python scalar, or an object."""
    cls = type(value).__name__
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        shape = getattr(value, "shape", None)
        dtype = getattr(getattr(value, "dtype", None), "name", str(getattr(value, "dtype", "")))
        return "tensor", f"{dtype}{list(shape) if shape is not None and shape.rank is not None else '[?]'}"
    if isinstance(value, (bool, int, float, str)) or value is None:
        return "python_scalar", repr(value)
    return "python_object", f"{cls}"


def _flat_args(sig: Any) -> dict[str, Any]:
    """Flatten a structured input signature ((args...), {kw: ...}) to {position/name: leaf}."""
    out: dict[str, Any] = {}

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, (list, tuple)) and not hasattr(v, "shape"):
            for i, x in enumerate(v):
                walk(f"{prefix}[{i}]", x)
        elif isinstance(v, dict):
            for k, x in sorted(v.items()):
                walk(f"{prefix}.{k}", x)
        else:
            out[prefix] = v

    args, kwargs = (sig if isinstance(sig, tuple) and len(sig) == 2 else (sig, {}))
    for i, a in enumerate(args or ()):
        walk(f"#{i}", a)
    for k, a in sorted((kwargs or {}).items()):
        walk(k, a)
    return out


def tf_function_report() -> list[dict[str, Any]]:
    """Every live ``tf.function``: its trace count and, when traces differ, which argument
    changed between them and how (Python scalar values, tensor shapes or dtypes)."""
    import tensorflow as tf

    cls = getattr(getattr(tf.types, "experimental", None), "PolymorphicFunction", None) \
        or getattr(getattr(tf.types, "experimental", None), "GenericFunction", None)
    if cls is None:
        return []
    report = []
    for obj in gc.get_objects():
        try:
            is_fn = isinstance(obj, cls)
        except ReferenceError:
            continue
        if not is_fn:
            continue
        count = int(obj.experimental_get_tracing_count())
        py_fn = getattr(obj, "python_function", None)
        module = getattr(py_fn, "__module__", "") or ""
        if module.startswith(("keras.", "tensorflow.", "tf_keras.")):
            continue  # the framework's own functions (Keras' train_function, ...)
        try:
            param_names = list(inspect.signature(py_fn).parameters) if py_fn else []
        except (TypeError, ValueError):
            param_names = []
        entry: dict[str, Any] = {"function": getattr(obj, "__name__", None) or getattr(py_fn, "__name__", "?"),
                                 "module": module, "tracing_count": count, "changing_args": [],
                                 "signature_reason": None}
        lister = getattr(obj, "_list_all_concrete_functions", None)
        if lister is None:
            entry["signature_reason"] = "this TensorFlow does not list concrete functions"
        else:
            sigs = [_flat_args(cf.structured_input_signature) for cf in lister()]
            entry["concrete_functions"] = len(sigs)
            keys = sorted({k for s in sigs for k in s})
            for key in keys:
                seen = [_spec_text(s[key]) if key in s else ("absent", "absent") for s in sigs]
                texts = sorted({t for _, t in seen})
                if len(texts) <= 1:
                    continue
                kinds = {k for k, _ in seen}
                if kinds == {"python_scalar"}:
                    why = "python_scalar"
                elif kinds == {"tensor"}:
                    shapes = {t.split("[", 1)[1] for _, t in seen}
                    why = "tensor_shape" if len(shapes) > 1 else "tensor_dtype"
                else:
                    why = "python_object" if "python_object" in kinds else "mixed"
                name = key
                if key.startswith("#"):
                    pos = int(key[1:].split("[", 1)[0])
                    if pos < len(param_names):
                        name = param_names[pos] + key[1 + len(str(pos)):]
                entry["changing_args"].append({"arg": name, "kind": why, "distinct": len(texts),
                                               "examples": texts[:5]})
        report.append(entry)
    return sorted(report, key=lambda e: -e["tracing_count"])


# -- loop marks: the training loop's iterations, without changing the user's file ---------------
#: Loops nested deeper than this (within one function) are not marked.
MAX_MARK_DEPTH = 2
#: A loop must run at least this many iterations to be taken for the training loop.
MIN_LOOP_ITERATIONS = 3
#: Descend into an inner loop when it holds at least this share of its outer loop's time.
INNER_LOOP_SHARE = 0.8


@dataclass
class LoopInfo:
    id: int
    line: int
    end_line: int
    depth: int
    parent: int | None
    scope: str
    text: str


class LoopMarks:
    """Marks the iterations of the script's loops, in the compiled code only.

    ``instrument`` rewrites the parsed script (the file is never touched): the first
    statement of every marked loop body appends ``perf_counter_ns()`` to that loop's list,
    and the statement after the loop appends its end. Marked: each function's outermost
    loops, and loops nested up to ``MAX_MARK_DEPTH`` whose body has two statements or more
    (a one-line inner loop such as ``for v in row: s += v`` is left alone: a mark costs
    ~0.1 µs, which would inflate exactly the interpreter time being measured). Line
    numbers are kept, so tracebacks and samples still point at the user's lines.
    """

    GLOBAL = "__sgdscope_loops__"
    CLOCK = "__sgdscope_clock__"

    def __init__(self) -> None:
        self.loops: list[LoopInfo] = []
        self.starts: dict[int, list[int]] = {}
        self.ends: dict[int, list[int]] = {}
        self.mark_cost_ns: float | None = None

    def _mark(self, key: str, loop_id: int, line: int) -> ast.stmt:
        stmt = ast.parse(f"{key}[{loop_id}].append({self.CLOCK}())").body[0]
        for node in ast.walk(stmt):
            node.lineno = node.end_lineno = line  # type: ignore[attr-defined]
            node.col_offset = node.end_col_offset = 0  # type: ignore[attr-defined]
        return stmt

    def instrument(self, tree: ast.Module, source: str) -> ast.Module:
        lines = source.splitlines()
        marks = self

        class Rewriter(ast.NodeTransformer):
            def __init__(self) -> None:
                self.depth = 0
                self.parents: list[int] = []
                self.scope = ["<module>"]

            def _scope(self, node: ast.AST) -> ast.AST:
                saved = (self.depth, self.parents)
                self.depth, self.parents = 0, []
                self.scope.append(getattr(node, "name", "?"))
                self.generic_visit(node)
                self.scope.pop()
                self.depth, self.parents = saved
                return node

            visit_FunctionDef = visit_AsyncFunctionDef = _scope  # noqa: N815

            def _loop(self, node: ast.For | ast.While) -> Any:
                marked = self.depth == 0 or (self.depth <= MAX_MARK_DEPTH and len(node.body) >= 2)
                loop_id = None
                if marked:
                    loop_id = len(marks.loops)
                    text = lines[node.lineno - 1].strip() if node.lineno - 1 < len(lines) else ""
                    marks.loops.append(LoopInfo(loop_id, node.lineno, node.end_lineno or node.lineno, self.depth,
                                                self.parents[-1] if self.parents else None,
                                                ".".join(self.scope), text[:120]))
                    self.parents.append(loop_id)
                self.depth += 1
                self.generic_visit(node)
                self.depth -= 1
                if not marked:
                    return node
                self.parents.pop()
                node.body.insert(0, marks._mark(LoopMarks.GLOBAL, loop_id, node.body[0].lineno))
                end = marks._mark(LoopMarks.GLOBAL + "_end", loop_id, node.end_lineno or node.lineno)
                return [node, end]

            visit_For = visit_While = _loop  # noqa: N815

        tree = Rewriter().visit(tree)
        ast.fix_missing_locations(tree)
        self.starts = {lp.id: [] for lp in self.loops}
        self.ends = {lp.id: [] for lp in self.loops}
        return tree

    def namespace(self) -> dict[str, Any]:
        """The names the marks use, to put in the script's module globals."""
        if self.mark_cost_ns is None:
            scratch: list[int] = []
            clock = time.perf_counter_ns
            t = clock()
            for _ in range(2000):
                scratch.append(clock())
            self.mark_cost_ns = (clock() - t) / 2000
        return {self.GLOBAL: self.starts, self.GLOBAL + "_end": self.ends, self.CLOCK: time.perf_counter_ns}

    @property
    def mark_count(self) -> int:
        return sum(len(v) for v in self.starts.values()) + sum(len(v) for v in self.ends.values())

    def iterations(self, loop_id: int) -> tuple[Any, Any]:
        """(start_ns, end_ns) of each iteration: from its mark to the loop's next mark
        (the next iteration, or the loop's end). An iteration cut short by an exception
        or a ``return`` (no mark after it) is dropped."""
        import numpy as np

        st = np.asarray(self.starts.get(loop_id, []), dtype=np.int64)
        en = np.asarray(self.ends.get(loop_id, []), dtype=np.int64)
        if len(st) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        allm = np.concatenate([st, en])
        kind = np.concatenate([np.zeros(len(st), bool), np.ones(len(en), bool)])
        order = np.argsort(allm, kind="stable")
        allm, kind = allm[order], kind[order]
        pos = np.nonzero(~kind)[0]
        has_next = pos + 1 < len(allm)
        return allm[pos[has_next]], allm[pos[has_next] + 1]

    def choose(self) -> tuple[LoopInfo | None, str]:
        """The training loop: the marked loop with the most time (the one around the
        hottest lines), then its inner loop while that holds ``INNER_LOOP_SHARE`` of it
        (``for epoch: for batch:`` steps per batch). Returns (loop, why) or (None, reason)."""
        if not self.loops:
            return None, "the script has no for/while loop at module or function level to take for the training loop"
        total = {}
        count = {}
        for lp in self.loops:
            s, e = self.iterations(lp.id)
            total[lp.id], count[lp.id] = float((e - s).sum()), int(len(s))
        ran = [lp for lp in self.loops if count[lp.id] > 0]
        if not ran:
            return None, "none of the script's loops ran"
        for top in sorted(ran, key=lambda lp: -total[lp.id]):
            cur = top
            while True:
                kids = [lp for lp in ran if lp.parent == cur.id and total[lp.id] >= INNER_LOOP_SHARE * total[cur.id]]
                if not kids:
                    break
                cur = max(kids, key=lambda lp: total[lp.id])
            if count[cur.id] >= MIN_LOOP_ITERATIONS:
                why = (f"the loop at line {cur.line} (`{cur.text}`, in {cur.scope}): the marked loop with the "
                       f"most time, {count[cur.id]} iterations")
                if cur is not top:
                    why += f", inside the loop at line {top.line}"
                return cur, why
        best = max(ran, key=lambda lp: total[lp.id])
        return None, (f"the loop with the most time (line {best.line}, `{best.text}`) ran "
                      f"{count[best.id]} iteration(s), fewer than {MIN_LOOP_ITERATIONS}")


# -- sampling capture (no TensorFlow) --------------------------------------------------------------
_NUMPY_DIRS = (f"{os.sep}numpy{os.sep}", f"{os.sep}scipy{os.sep}")
#: Frames kept per sample (leaf first).
MAX_SAMPLE_DEPTH = 48

Frame = tuple[str, int, str]  # file, line, function
Stack = tuple[Frame, ...]
#: One tick (one handler run): (ns since t0 when it ran, stack leaf first, wall ns since the
#: previous handler, the thread's CPU ns since then, timer fires since then, ns from the
#: last fire to the handler, ns from the previous handler to the first fire, ns the thread
#: waited runnable for a core since then, or -1 where the kernel does not say).
Tick = tuple[int, Stack, int, int, int, int, int, int]
#: Classes of sampled time (``split_ticks``), in the column order of ``ticks_per_step``.
#: ``off_cpu``: a late fire whose state cannot be told (no schedstat): left out of the split.
TICK_CLASSES = ("native", "numpy", "interpreter", "import", "off_cpu")
#: A handler that runs this long after its fire (beyond the timer's own latency, measured
#: at start by ``DelaySampler.calibrate``), with its thread running, was held off by a C
#: call. Measured on this machine, loaded: pure Python lets it in within 40 µs (median)
#: to 125 µs (p95) of the fire, 40 µs being the latency. A C call shorter than this reads
#: (partly) as interpreter time.
IN_C_DELAY_NS = 60_000
#: Fires spent measuring the timer's latency on a pure-Python spin, before the script.
CALIBRATION_FIRES = 25


def iter_frames(frame: types.FrameType | None, qualified: bool = False) -> Iterator[Frame]:
    """The frames from ``frame`` outwards, leaf first, at most ``MAX_SAMPLE_DEPTH``;
    ``qualified``: functions by qualified name (``Logger.on_train_batch_end``)."""
    f, n = frame, 0
    while f is not None and n < MAX_SAMPLE_DEPTH:
        code = f.f_code
        yield (code.co_filename, f.f_lineno or 0,
               getattr(code, "co_qualname", code.co_name) if qualified else code.co_name)
        f, n = f.f_back, n + 1


def stack_of(frame: types.FrameType | None) -> Stack:
    return tuple(iter_frames(frame))


class DelaySampler:
    """Samples the main thread on a fixed wall-clock grid and tells native from interpreter
    time by how late the signal handler runs (Scalene's technique).

    A periodic ``setitimer(ITIMER_REAL)`` fires SIGALRM every ``interval_s`` on a fixed
    grid, whatever the script does, so the fires land uniformly in time. Python runs a
    signal handler only between bytecodes, in the main thread: at a fire in bytecode the
    handler runs within microseconds; at a fire inside a C call (a NumPy ufunc, fancy
    indexing, BLAS, with or without the GIL) it waits until the call returns, and fires
    during the wait coalesce. So each fire's state is read from the handler's delay past
    it (more than ``IN_C_DELAY_NS``, or more than one fire since the last handler: C), and
    each fire stands for one interval of wall time: an unbiased sample whatever the line's
    text says. A thread that was descheduled at the fire (a busy machine) also lets the
    handler in late, but did not run meanwhile: its CPU clock and its run-queue wait
    (``/proc/self/task/<tid>/schedstat``) tell the two apart (see ``split_ticks``).
    Limitation: calls that Python restarts after a signal (``time.sleep``, blocking reads)
    let the handler run on time, so their wait reads as interpreter time.
    """

    def __init__(self, interval_s: float = 0.001, t0_ns: int | None = None) -> None:
        self.interval_s = interval_s
        self.interval_ns = int(interval_s * 1e9)
        self.t0_ns = t0_ns if t0_ns is not None else time.perf_counter_ns()
        self.records: list[Tick] = []
        self.cost_ns = 0  # wall time in the handler (a busy machine stretches it)
        self.cost_cpu_ns = 0  # the handler's own CPU time: what it takes from the script
        self._grid0 = 0
        self._fire = 0  # index of the last fire seen
        self._last = 0
        self._last_cpu = 0
        self._last_q = 0
        self._sched_fd: int | None = None
        self._old: Any = None
        self._busy = False
        self.running = False
        self.latency_ns: float | None = None

    @staticmethod
    def availability() -> tuple[bool, str | None]:
        import signal

        if not hasattr(signal, "setitimer"):
            return False, "this platform has no setitimer (signal-delay sampling needs it)"
        if threading.current_thread() is not threading.main_thread():
            return False, "not in the main thread (signal handlers run only there)"
        if signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, None):
            return False, "SIGALRM already has a handler in this process"
        return True, None

    def _runq_ns(self) -> int:
        """The thread's run-queue wait so far (``/proc/self/task/<tid>/schedstat``), or -1."""
        if self._sched_fd is None:
            return -1
        try:
            return int(os.pread(self._sched_fd, 128, 0).split()[1])
        except (OSError, IndexError, ValueError):
            return -1

    def _handler(self, signum: int, frame: types.FrameType | None) -> None:
        if self._busy:  # a fire during the handler itself: its time is the handler's cost
            return
        self._busy = True
        now = time.perf_counter_ns()
        cpu = time.thread_time_ns()
        q = self._runq_ns()
        fire = (now - self._grid0) // self.interval_ns
        fire_ns = self._grid0 + fire * self.interval_ns
        stack = stack_of(frame)
        first_ns = self._grid0 + (self._fire + 1) * self.interval_ns  # the first fire since the last handler
        self.records.append((now - self.t0_ns, tuple(stack), now - self._last, cpu - self._last_cpu,
                             int(fire - self._fire), now - fire_ns, first_ns - self._last,
                             q - self._last_q if q >= 0 and self._last_q >= 0 else -1))
        # The handler's own time is left out of the next tick and kept as the harness cost.
        self._last_q = self._runq_ns()
        self._last, self._last_cpu = time.perf_counter_ns(), time.thread_time_ns()
        self.cost_ns += self._last - now
        self.cost_cpu_ns += self._last_cpu - cpu
        # Fires while the handler ran (a busy machine can deschedule it) are its own cost.
        self._fire = (self._last - self._grid0) // self.interval_ns
        self._busy = False

    def start(self) -> None:
        import signal

        ok, why = self.availability()
        if not ok:
            raise RuntimeError(why)
        self._old = signal.signal(signal.SIGALRM, self._handler)
        self.running = True
        try:
            self._sched_fd = os.open(f"/proc/self/task/{threading.get_native_id()}/schedstat", os.O_RDONLY)
        except OSError:
            self._sched_fd = None  # no schedstat: contention is not told from blocking
        self._last_q = self._runq_ns()
        self._last, self._last_cpu = time.perf_counter_ns(), time.thread_time_ns()
        self._grid0, self._fire = self._last, 0
        signal.setitimer(signal.ITIMER_REAL, self.interval_s, self.interval_s)
        self.calibrate()

    def calibrate(self) -> None:
        """The timer's own latency: the median delay of ``CALIBRATION_FIRES`` fires on a
        pure-Python spin (no C call to hold the handler off). Those ticks are dropped."""
        deadline = time.perf_counter_ns() + 50 * CALIBRATION_FIRES * self.interval_ns
        n = 0
        while len(self.records) < CALIBRATION_FIRES and time.perf_counter_ns() < deadline:
            n += 1  # bytecode only
        delays = sorted(r[5] for r in self.records if r[4] == 1)
        self.latency_ns = float(delays[len(delays) // 2]) if delays else None
        self.records.clear()

    def stop(self) -> None:
        import signal

        if not self.running:
            return
        self.running = False
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, self._old if self._old is not None else signal.SIG_DFL)
        if self._sched_fd is not None:
            os.close(self._sched_fd)
            self._sched_fd = None


@dataclass
class PyCapture:
    """A script without TensorFlow: ``DelaySampler`` (native vs interpreter, per line)
    and ``LoopMarks`` (the training loop's iterations: the steps)."""

    interval_s: float = 0.001
    t0_ns: int = field(default_factory=time.perf_counter_ns)
    sampler: DelaySampler | None = None
    loop_marks: LoopMarks = field(default_factory=LoopMarks)
    sampler_error: str | None = None
    wall_ns: int = 0

    @contextmanager
    def around_script(self) -> Iterator[None]:
        self.sampler = DelaySampler(self.interval_s, self.t0_ns)
        ok, why = self.sampler.availability()
        if ok:
            self.sampler.start()
        else:
            self.sampler_error, self.sampler = why, None
        t = time.perf_counter_ns()
        try:
            yield
        finally:
            self.wall_ns = time.perf_counter_ns() - t
            if self.sampler is not None:
                self.sampler.stop()

    @property
    def records(self) -> list[Tick]:
        return self.sampler.records if self.sampler is not None else []


def _tick_class(stack: Stack, script_files: set[str]) -> tuple[str, str | None, str | None] | None:
    """(where, user line key, user function) of a tick's stack: ``where`` is ``numpy``
    (in NumPy/SciPy's own Python), ``import``, ``library`` (other Python the user's line
    called) or ``user`` (on the user's line itself). None outside the script."""
    user = next((i for i, fr in enumerate(stack) if fr[0] in script_files), None)
    if user is None:
        return None
    inner = stack[:user]
    u_file, u_line, u_fn = stack[user]
    key = f"{Path(u_file).name}:{u_line}"
    if any(fr[0].startswith("<frozen importlib") for fr in inner):
        return "import", key, u_fn
    if any(d in fr[0] for fr in inner for d in _NUMPY_DIRS):
        return "numpy", key, u_fn
    return ("library" if inner else "user"), key, u_fn


def split_ticks(records: list[Tick], script_files: set[str], interval_ns: float,
                latency_ns: float | None = None) -> dict[str, Any]:
    """Seconds by class, in total and per tick (pure).

    Each timer fire stands for one interval of wall time, classed by the thread's state
    at the fire (see ``DelaySampler``): ``interpreter`` if the handler got in at once;
    else ``native`` if the thread was in a C call: it kept running past the fire (more
    than ``IN_C_DELAY_NS``) or it was blocked off the CPU by its own choice (a C call
    waiting for BLAS workers, I/O or a sleep: the wall time that is neither its CPU time
    nor its run-queue wait from ``/proc/self/task/<tid>/schedstat``); else it was
    descheduled in bytecode (it ran the handler as soon as it had a core again), so
    ``interpreter``. Each fire stands for its interval of wall time, so waiting for a core
    is shared between the two in proportion to the time each was running. ``off_cpu``:
    late fires whose state cannot be told (no schedstat on this system). Stacks inside NumPy/SciPy's own Python wrappers count
    as ``numpy`` and module loading as ``import``. Returns ``{"seconds", "top_lines",
    "top_functions", "ticks"}`` where ``ticks`` is ``[(end_ns, wall_ns, class->ns, line)]``
    for the per-step split."""
    totals = {c: 0.0 for c in TICK_CLASSES}
    by_line: dict[str, list[float]] = {}
    by_fn: dict[str, float] = {}
    ticks: list[tuple[int, int, dict[str, float], str | None]] = []
    # The timer's own latency (and the grid's offset): calibrated, else the smallest delay.
    base_ns = latency_ns if latency_ns is not None else min((r[5] for r in records if r[4] == 1), default=0)
    for t_ns, stack, wall_ns, cpu_ns, fires, delay_ns, pre_ns, runq_ns in records:
        cls = _tick_class(stack, script_files)
        if cls is None or wall_ns <= 0 or fires <= 0:
            continue
        where, key, fn = cls
        delay_ns -= base_ns
        run = float(min(max(cpu_ns, 0), wall_ns))
        queued = float(min(max(runq_ns, 0), wall_ns - run)) if runq_ns >= 0 else 0.0
        blocked = wall_ns - run - queued  # off the CPU by its own choice: only C code blocks
        # CPU time past the first fire (at least); the fires come ``base_ns`` after the grid.
        ran_after_fire = cpu_ns - max(pre_ns + base_ns, 0)
        if fires >= 2 or delay_ns > IN_C_DELAY_NS:
            # The handler was held off: in a C call (running, or blocked waiting in it), or
            # descheduled in bytecode (waiting in the run queue: then it ran the handler as
            # soon as it got a core back, so it was in bytecode at the fire).
            if ran_after_fire > IN_C_DELAY_NS or blocked > max(queued, IN_C_DELAY_NS):
                state = "native"
            elif runq_ns >= 0:
                state = "interpreter"
            elif fires >= 2 and run >= 0.5 * wall_ns:
                state = "native"
            else:
                state = "off_cpu"  # no schedstat: descheduled and blocked look alike
        else:
            state = "interpreter"
        if where in ("import", "numpy") and state != "off_cpu":
            state = where
        part = {state: float(fires * interval_ns)}
        totals[state] += fires * interval_ns / 1e9
        row = by_line.setdefault(key, [0.0, 0.0, 0.0])
        if state == "interpreter":
            row[0] += fires * interval_ns / 1e9
        elif state != "off_cpu":
            row[1] += fires * interval_ns / 1e9
        row[2] += fires * interval_ns / 1e9
        by_fn[fn] = by_fn.get(fn, 0.0) + fires * interval_ns / 1e9
        ticks.append((t_ns, wall_ns, part, key))
    top = sorted(by_line.items(), key=lambda kv: -kv[1][2])[:8]
    return {"seconds": totals,
            "top_lines": [{"line": k, "s": round(w, 4), "interpreter_s": round(a, 4),
                           "native_s": round(b, 4)} for k, (a, b, w) in top],
            "top_functions": [{"function": k, "s": round(v, 4)}
                              for k, v in sorted(by_fn.items(), key=lambda kv: -kv[1])[:8]],
            "ticks": ticks}


def ticks_per_step(ticks: list[Any], start_ns: Any, end_ns: Any) -> Any:
    """ns per class inside each [start, end) window, each tick spread evenly over the
    wall time it covers ([end - wall, end]); an (n_steps, len(TICK_CLASSES)) array. Pure."""
    import numpy as np

    out = np.zeros((len(start_ns), len(TICK_CLASSES)))
    if not ticks or not len(start_ns):
        return out
    t_end = np.asarray([t[0] for t in ticks], dtype=float)
    t_beg = t_end - np.asarray([t[1] for t in ticks], dtype=float)
    frac = np.asarray([[t[2].get(c, 0.0) / max(t[1], 1) for c in TICK_CLASSES] for t in ticks])
    for i, (a, b) in enumerate(zip(np.asarray(start_ns, float).tolist(), np.asarray(end_ns, float).tolist())):
        lo = np.searchsorted(t_end, a, side="right")
        hi = np.searchsorted(t_beg, b, side="left")
        if hi <= lo:
            continue
        ov = np.clip(np.minimum(t_end[lo:hi], b) - np.maximum(t_beg[lo:hi], a), 0, None)
        out[i] = ov @ frac[lo:hi]
    return out


def lines_in(ticks: list[Any], start_ns: float, end_ns: float, n: int = 3) -> list[dict[str, Any]]:
    """The user's lines with the most sampled time inside [start, end) (``split_ticks``
    ticks), for describing one step. Pure."""
    by: dict[str, float] = {}
    for t_end, wall, _part, key in ticks:
        ov = min(t_end, end_ns) - max(t_end - wall, start_ns)
        if ov > 0 and key:
            by[key] = by.get(key, 0.0) + ov
    return [{"line": k, "ms": round(v / 1e6, 3)} for k, v in sorted(by.items(), key=lambda kv: -kv[1])[:n]]

"""Running a user's training script unchanged, under the TF profiler or pyinstrument.

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
* ``PyCapture``: a script without TensorFlow is profiled with pyinstrument (its call
  tree: the script's top functions) and a wall-clock line sampler (``LineSampler``)
  whose samples are classed as NumPy/BLAS compute, interpreter, or import time.

TensorFlow and pyinstrument are imported lazily, inside the functions that need them.
Must not import streamlit or pynvml.
"""
from __future__ import annotations

import ast
import gc
import inspect
import logging
import os
import sys
import threading
import time
import tokenize
import traceback
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from profilers.errors import BadInput
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
                  argv: list[str] | None = None) -> ScriptOutcome:
    """Run the script as ``python script.py argv...`` would, or call its ``function()``.

    Whatever the script raises (``SystemExit`` included) becomes the outcome; it is
    printed to stderr the way Python prints it, and never re-raised.
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
        code = compile(read_source(script), str(script), "exec")
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
    _own: bool = False  # this object opened the profiler (time window), not the recorder
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _timer: threading.Timer | None = None
    _tap: _WarningTap = field(default_factory=_WarningTap)

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
                rec.begin_step(rec.steps_done, self.epoch)

            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
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
            tf_logger.removeHandler(self._tap)

    def window(self) -> dict[str, Any]:
        def rel(ns: int | None) -> float | None:
            return None if ns is None else (ns - self.t0_ns) / 1e3

        return {"mode": "keras_markers" if self.keras_mode else "time_window",
                "start_us": rel(self.started_ns), "stop_us": rel(self.stopped_ns),
                "stop_reason": self.stop_reason, "window_s": self.window_s,
                "skip_steps": self.skip_steps, "max_steps": self.max_steps,
                "fit_calls": self.fit_calls, "error": self.error or (
                    self.recorder.profiler_error if self.recorder is not None else None)}

    def tf_warnings(self) -> dict[str, Any]:
        return {"retracing_warnings": self._tap.count, "retracing_messages": self._tap.records}


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


# -- sampling capture (no TensorFlow) --------------------------------------------------------------
_NUMPY_DIRS = (f"{os.sep}numpy{os.sep}", f"{os.sep}scipy{os.sep}")
_ARRAY_EXPR = ("@", "np.", "numpy.", ".dot(", ".sum(", ".mean(", ".T", "einsum", "matmul")
#: Frames kept per sample (leaf first).
MAX_SAMPLE_DEPTH = 48

Stack = tuple[tuple[str, int], ...]


class LineSampler:
    """Wall-clock samples of one thread's Python stack (file, line), every ``interval_s``.

    pyinstrument samples at Python call events, so the time of a long C call (``X.T @ r``)
    or of a loop that makes no calls is charged to whatever call comes next; this thread
    reads the stack as it is at each instant (``sys._current_frames``), which is what a
    NumPy-vs-interpreter split needs. The switch interval is lowered while it runs so the
    sampler gets the GIL between the script's bytecodes.
    """

    def __init__(self, interval_s: float = 0.001, thread_id: int | None = None) -> None:
        self.interval_s = interval_s
        self.thread_id = thread_id if thread_id is not None else threading.get_ident()
        self.records: list[tuple[Stack, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._switch: float | None = None

    def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.wait(self.interval_s):
            frame = sys._current_frames().get(self.thread_id)
            now = time.perf_counter()
            stack: list[tuple[str, int]] = []
            while frame is not None and len(stack) < MAX_SAMPLE_DEPTH:
                stack.append((frame.f_code.co_filename, frame.f_lineno or 0))
                frame = frame.f_back
            self.records.append((tuple(stack), now - last))
            last = now

    def start(self) -> None:
        self._switch = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch, self.interval_s / 2))
        self._thread = threading.Thread(target=self._run, name="sgdscope-line-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if self._switch is not None:
            sys.setswitchinterval(self._switch)


@dataclass
class PyCapture:
    """A script without TensorFlow: pyinstrument (call tree) + ``LineSampler`` (split)."""

    interval_s: float = 0.001
    session: Any = None
    lines: LineSampler | None = None

    @contextmanager
    def around_script(self) -> Iterator[None]:
        from pyinstrument import Profiler

        profiler = Profiler(interval=self.interval_s)
        self.lines = LineSampler(self.interval_s)
        profiler.start()
        self.lines.start()
        try:
            yield
        finally:
            self.lines.stop()
            self.session = profiler.stop()


def top_functions(session: Any, script_files: set[str], n: int = 8) -> list[dict[str, Any]]:
    """The script's own functions with the most time in pyinstrument's call tree."""
    found: dict[str, float] = {}
    todo = [session.root_frame()] if session is not None and session.root_frame() is not None else []
    while todo:
        fr = todo.pop()
        if fr.file_path in script_files and not fr.is_synthetic:
            key = f"{fr.function} ({Path(fr.file_path).name}:{fr.line_no})"
            found[key] = max(found.get(key, 0.0), float(fr.time))
        todo.extend(fr.children)
    return [{"function": k, "s": v} for k, v in sorted(found.items(), key=lambda kv: -kv[1])[:n]]


def classify_samples(records: list[tuple[Stack, float]], script_files: set[str],
                     read_line: Callable[[str, int], str]) -> dict[str, Any]:
    """Seconds of sampled time by class: ``numpy`` (in NumPy/SciPy code, or on a line of
    the user's own code that is an array expression such as ``X.T @ r``: that time runs
    in BLAS/ufuncs), ``interpreter`` (any other Python), ``import`` (module loading); and
    the user's lines with the most time. Stacks are leaf first. Pure apart from
    ``read_line`` (source lookup)."""
    totals = {"numpy": 0.0, "interpreter": 0.0, "import": 0.0}
    by_line: dict[str, float] = {}
    seen = False
    for stack, dt in records:
        files = [f for f, _ in stack]
        user = next((i for i, f in enumerate(files) if f in script_files), None)
        if user is None:
            continue  # harness frames only (before/after the script)
        seen = True
        inner = files[:user]  # frames the user's line called into
        if any(f.startswith("<frozen importlib") for f in inner):
            totals["import"] += dt
            continue
        u_file, u_line = stack[user]
        key = f"{Path(u_file).name}:{u_line}"
        by_line[key] = by_line.get(key, 0.0) + dt
        if any(d in f for f in inner for d in _NUMPY_DIRS):
            cls = "numpy"
        elif inner:
            cls = "interpreter"  # pure-Python library code
        else:
            text = read_line(u_file, u_line) if u_line else ""
            cls = "numpy" if any(tok in text for tok in _ARRAY_EXPR) else "interpreter"
        totals[cls] += dt
    top = sorted(by_line.items(), key=lambda kv: -kv[1])[:8]
    return {"seconds": totals, "top_lines": [{"line": k, "s": v} for k, v in top], "saw_script": seen}

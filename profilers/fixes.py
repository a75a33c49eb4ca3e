"""Fixes applied to a user's training script from outside it (``sgdscope whatif``).

Each ``Fix`` in ``FIXES`` patches TensorFlow/Keras inside the script worker, before the
script runs (``apply(names, user_files)``, a context manager the worker opens around the
run), and records whether the script ever reached what it patches: a fix that found
nothing to change says why ("no tf.data dataset was iterated by the script"). Only calls
made directly from the user's own files are changed; Keras' and TF's internal calls are
left alone.

Each fix also knows the code edit that does the same by hand: ``code_diff`` turns the
call sites recorded in the worker into a unified diff of the user's script, where one
can be written.

Imports TensorFlow (and Keras, when the script uses it) only inside ``apply`` with a
fix chosen, i.e. only in the worker. Must not import pynvml or streamlit.
"""
from __future__ import annotations

import ast
import difflib
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from profilers.registry import lookup

#: Multiplier of ``steps_per_execution`` and of the Keras batch (``larger_batch``).
STEPS_PER_EXECUTION = 8
BATCH_FACTOR = 4
_OWN_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
#: tf.data optimizations ``data_options`` turns back on when the script turned them off.
DATA_OPTIONS = (("experimental_optimization", "inject_prefetch"),
                ("experimental_optimization", "map_parallelization"),
                ("experimental_optimization", "parallel_batch"),
                ("autotune", "enabled"))


# -- what happened in the worker ------------------------------------------------------------
@dataclass
class FixState:
    """What one fix did during a run: the call sites it changed and notes on the ones it
    left alone (the reason when it changed nothing)."""

    name: str
    user_files: frozenset[str]
    sites: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    always: bool = False  # a global setting: applied as soon as it is installed
    error: str | None = None

    def user_site(self, depth: int = 2) -> dict[str, Any] | None:
        """``{"file", "line"}`` of the caller ``depth`` frames up when it is in the user's
        files, else None (Keras or TF calling the patched function itself)."""
        frame = sys._getframe(depth)
        while frame is not None and frame.f_code.co_filename.startswith(_OWN_DIR):
            frame = frame.f_back  # our own wrappers (another fix, the capture's Keras callback)
        if frame is None:
            return None
        path = os.path.realpath(frame.f_code.co_filename)
        return {"file": path, "line": frame.f_lineno} if path in self.user_files else None

    def hit(self, site: dict[str, Any], kind: str, **extra: Any) -> None:
        entry = {**site, "kind": kind, **extra}
        if entry not in self.sites:
            self.sites.append(entry)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    @property
    def applied(self) -> bool:
        return self.error is None and (self.always or bool(self.sites))


@dataclass
class Fix:
    name: str
    changes: str  # what it changes, in words
    changes_maths: bool
    needs: tuple[str, ...]  # source text one of which must appear for the fix to have a target
    needs_reason: str  # why it cannot apply when none does
    unused_reason: str  # why it changed nothing when it was installed but never reached
    install: Callable[[Any, FixState], Callable[[], None]]  # (tf, state) -> undo
    edits: Callable[[ast.AST, str, list[dict[str, Any]], dict[str, Any]], list["Edit"]]

    def static_reason(self, source_text: str) -> str | None:
        """Why the fix cannot apply, from the source alone (no run needed), or None."""
        if self.needs and not any(n in source_text for n in self.needs):
            return self.needs_reason
        return None


class Applied:
    """The fixes installed for one run; ``report()`` goes in ``manifest["script"]["fixes"]``."""

    def __init__(self, names: list[str], user_files: list[str]) -> None:
        self.names = list(names)
        self.user_files = frozenset(os.path.realpath(f) for f in user_files)
        self.states = {n: FixState(n, self.user_files) for n in self.names}

    def report(self) -> dict[str, Any]:
        fixes: dict[str, Any] = {}
        scale = 1.0
        for name in self.names:
            st = self.states[name]
            fix = ALL[name]
            reason = None
            if not st.applied:
                reason = st.error or "; ".join(st.notes) or fix.unused_reason
            elif st.details.get("step_scale"):
                scale *= float(st.details["step_scale"])
            fixes[name] = {"applied": st.applied, "reason": reason, "sites": st.sites, "notes": st.notes,
                           "details": st.details, "changes_maths": fix.changes_maths}
        return {"requested": self.names, "fixes": fixes, "step_scale": scale}


@contextmanager
def apply(names: list[str], user_files: list[str]) -> Iterator[Applied]:
    """Install the named fixes for the duration of the script's run (no-op for none)."""
    for name in names:
        lookup(ALL, name, "fix")
    applied = Applied(names, user_files)
    if not names:
        yield applied
        return
    import tensorflow as tf

    undo: list[Callable[[], None]] = []
    try:
        for name in names:
            undo.append(ALL[name].install(tf, applied.states[name]))
        yield applied
    finally:
        for fn in reversed(undo):
            fn()


# -- patch helpers ---------------------------------------------------------------------------
def _patch(owner: Any, attr: str, new: Callable[..., Any]) -> Callable[[], None]:
    original = getattr(owner, attr)
    own = attr in vars(owner)
    new.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(owner, attr, new)

    def undo() -> None:
        if own:
            setattr(owner, attr, original)
        else:
            delattr(owner, attr)  # it was inherited: inherit it again
    return undo


def _chain(*undos: Callable[[], None]) -> Callable[[], None]:
    def undo() -> None:
        for fn in reversed(undos):
            fn()
    return undo


def _keras() -> Any | None:
    """Keras, when the script uses it (imported then anyway), else None."""
    if "keras" not in sys.modules and "tensorflow.keras" not in sys.modules:
        try:
            import keras  # noqa: F401  (the script imports it too: paid once)
        except ImportError:
            return None
    return sys.modules.get("keras")


def _bind(fn: Callable[..., Any], model: Any, args: tuple, kwargs: dict) -> Any:
    import inspect

    bound = inspect.signature(fn).bind(model, *args, **kwargs)
    return bound


def _dataset_class(tf: Any) -> Any:
    return tf.data.Dataset


def _is_prefetched(ds: Any) -> bool:
    return type(ds).__name__ == "_PrefetchDataset"


def _keras_method_patch(state: FixState, method: str,
                        change: Callable[[Any, dict[str, Any]], bool]) -> Callable[[], None]:
    """Patch ``keras.Model.<method>`` (``compile`` or ``fit``): ``change(bound_args, site)``
    edits the arguments of a call from the user's files and says whether it changed something."""
    keras = _keras()
    if keras is None:
        state.error = "Keras is not installed"
        return lambda: None
    original = getattr(keras.Model, method)

    def patched(model: Any, *args: Any, **kwargs: Any) -> Any:
        site = state.user_site()
        if site is None:
            return original(model, *args, **kwargs)
        bound = _bind(original, model, args, kwargs)
        if change(bound.arguments, site):
            return original(*bound.args, **bound.kwargs)
        return original(model, *args, **kwargs)

    patched.__name__ = method
    return _patch(keras.Model, method, patched)


def _compile_patch(state: FixState, change: Callable[[Any, dict[str, Any]], bool]) -> Callable[[], None]:
    return _keras_method_patch(state, "compile", change)


def _fit_patch(state: FixState, change: Callable[[Any, dict[str, Any]], bool]) -> Callable[[], None]:
    return _keras_method_patch(state, "fit", change)


def _tf_function_patch(tf: Any, state: FixState, key: str) -> Callable[[], None]:
    """``tf.function`` called from the user's files gets ``key=True`` unless it says otherwise."""
    original = tf.function

    def function(func: Any = None, *args: Any, **kwargs: Any) -> Any:
        site = state.user_site()
        if site is not None and not args:
            if kwargs.get(key) is None:
                kwargs[key] = True
                state.hit(site, "tf.function", decorated=getattr(func, "__name__", None))
            else:
                state.note(f"tf.function at line {site['line']} already sets {key}={kwargs[key]!r}")
        return original(func, *args, **kwargs)

    return _patch(tf, "function", function)


# -- the fixes' installers --------------------------------------------------------------------------
def _install_prefetch(tf: Any, state: FixState) -> Callable[[], None]:
    ds_cls = _dataset_class(tf)
    original_iter = ds_cls.__iter__

    def __iter__(ds: Any) -> Any:
        site = state.user_site()
        if site is not None and tf.executing_eagerly():
            if _is_prefetched(ds):
                state.note(f"the dataset iterated at line {site['line']} already ends with prefetch")
            else:
                state.hit(site, "iter")
                ds = ds.prefetch(tf.data.AUTOTUNE)
        return original_iter(ds)

    undos = [_patch(ds_cls, "__iter__", __iter__)]
    if _keras_used(state):
        def change(a: dict[str, Any], site: dict[str, Any]) -> bool:
            x = a.get("x")
            if not isinstance(x, ds_cls):
                state.note("Keras fit was given arrays, not a tf.data dataset: Keras builds and "
                           "prefetches its own pipeline")
                return False
            if _is_prefetched(x):
                state.note(f"the dataset given to fit at line {site['line']} already ends with prefetch")
                return False
            a["x"] = x.prefetch(tf.data.AUTOTUNE)
            state.hit(site, "fit")
            return True
        undos.append(_fit_patch(state, change))
    return _chain(*undos)


def _install_parallel_map(tf: Any, state: FixState) -> Callable[[], None]:
    ds_cls = _dataset_class(tf)
    original = ds_cls.map

    def map(ds: Any, map_func: Any, *args: Any, **kwargs: Any) -> Any:
        site = state.user_site()
        if site is not None:
            if args or kwargs.get("num_parallel_calls") is not None:
                state.note(f"the map at line {site['line']} already sets num_parallel_calls")
            else:
                kwargs["num_parallel_calls"] = tf.data.AUTOTUNE
                state.hit(site, "map")
        return original(ds, map_func, *args, **kwargs)

    return _patch(ds_cls, "map", map)


def _install_data_options(tf: Any, state: FixState) -> Callable[[], None]:
    ds_cls = _dataset_class(tf)
    original = ds_cls.with_options

    def with_options(ds: Any, options: Any, *args: Any, **kwargs: Any) -> Any:
        site = state.user_site()
        if site is not None:
            from tensorflow.python.data.util import options as options_lib

            options = options_lib.merge_options(options)  # a copy: the script's object is left alone
            turned_on = []
            for group, name in DATA_OPTIONS:
                sub = getattr(options, group)
                if getattr(sub, name) is False:
                    setattr(sub, name, True)
                    turned_on.append(f"{group}.{name}")
            if turned_on:
                state.hit(site, "with_options", turned_on=turned_on)
            else:
                state.note(f"the options set at line {site['line']} turn no optimization off")
        return original(ds, options, *args, **kwargs)

    return _patch(ds_cls, "with_options", with_options)


def _install_run_eagerly(tf: Any, state: FixState) -> Callable[[], None]:
    original_rfe = tf.config.run_functions_eagerly

    def run_functions_eagerly(run_eagerly: bool) -> Any:
        site = state.user_site()
        if site is not None and run_eagerly:
            state.hit(site, "run_functions_eagerly")
            return original_rfe(False)
        return original_rfe(run_eagerly)

    undos = [_patch(tf.config, "run_functions_eagerly", run_functions_eagerly)]
    if _keras_used(state):
        def change(a: dict[str, Any], site: dict[str, Any]) -> bool:
            if a.get("run_eagerly"):
                a["run_eagerly"] = False
                state.hit(site, "compile", keyword="run_eagerly")
                return True
            return False
        undos.append(_compile_patch(state, change))
    return _chain(*undos)


def _install_jit(tf: Any, state: FixState) -> Callable[[], None]:
    undos = [_tf_function_patch(tf, state, "jit_compile")]
    if _keras_used(state):
        def change(a: dict[str, Any], site: dict[str, Any]) -> bool:
            if a.get("jit_compile") is True:
                state.note(f"compile at line {site['line']} already sets jit_compile=True")
                return False
            state.details["jit_compile_before"] = a.get("jit_compile", "auto")
            a["jit_compile"] = True
            state.hit(site, "compile", keyword="jit_compile")
            return True
        undos.append(_compile_patch(state, change))
    return _chain(*undos)


def _install_steps_per_execution(tf: Any, state: FixState) -> Callable[[], None]:
    def change(a: dict[str, Any], site: dict[str, Any]) -> bool:
        before = a.get("steps_per_execution", 1)
        if before not in (None, 1):
            state.note(f"compile at line {site['line']} already sets steps_per_execution={before}")
            return False
        a["steps_per_execution"] = STEPS_PER_EXECUTION
        state.details.update(steps_per_execution=STEPS_PER_EXECUTION, step_scale=STEPS_PER_EXECUTION,
                             step_unit=f"one recorded step is {STEPS_PER_EXECUTION} batches")
        state.hit(site, "compile", keyword="steps_per_execution")
        return True
    return _compile_patch(state, change)


def _install_reduce_retracing(tf: Any, state: FixState) -> Callable[[], None]:
    return _tf_function_patch(tf, state, "reduce_retracing")


def _install_xla_auto_jit(tf: Any, state: FixState) -> Callable[[], None]:
    before = tf.config.optimizer.get_jit()
    if not tf.config.list_physical_devices("GPU"):
        flags = os.environ.get("TF_XLA_FLAGS", "")
        if "--tf_xla_cpu_global_jit" not in flags:
            os.environ["TF_XLA_FLAGS"] = f"{flags} --tf_xla_cpu_global_jit".strip()
            state.details["TF_XLA_FLAGS"] = os.environ["TF_XLA_FLAGS"]
            state.note("no GPU: auto-clustering on CPU also needs TF_XLA_FLAGS=--tf_xla_cpu_global_jit")
    tf.config.optimizer.set_jit("autoclustering")
    state.always = True
    state.details["jit_before"] = before
    return lambda: tf.config.optimizer.set_jit(before or False)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _install_threads(tf: Any, state: FixState) -> Callable[[], None]:
    cores = usable_cores()
    intra, inter = cores, min(2, cores)
    th = tf.config.threading
    try:
        th.set_intra_op_parallelism_threads(intra)
        th.set_inter_op_parallelism_threads(inter)
    except RuntimeError as exc:  # TF's runtime is already initialised
        state.error = f"TensorFlow's thread pools were already created: {exc}"
        return lambda: None
    state.always = True
    state.details.update(intra_op_threads=intra, inter_op_threads=inter, usable_cores=cores)

    def keep(setter_name: str) -> Callable[[int], Any]:
        original = getattr(th, setter_name)

        def setter(num_threads: int) -> Any:
            site = state.user_site()
            if site is None:
                return original(num_threads)
            state.hit(site, setter_name, ignored=num_threads)
            return None
        return setter

    return _chain(_patch(th, "set_intra_op_parallelism_threads", keep("set_intra_op_parallelism_threads")),
                  _patch(th, "set_inter_op_parallelism_threads", keep("set_inter_op_parallelism_threads")))


def _install_observe_loss(tf: Any, state: FixState) -> Callable[[], None]:
    """Not a fix: keeps the scalar float results of the script's own ``tf.function`` calls
    (a custom loop's step returns its loss), as tensors (no sync inside the loop), and at
    the end reports the last one of the function called most often."""
    from tensorflow.python.eager.polymorphic_function import polymorphic_function as pf

    seen: dict[str, list[Any]] = {}
    original = pf.Function.__call__

    def __call__(fn: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(fn, *args, **kwargs)
        if (isinstance(result, tf.Tensor) and hasattr(result, "numpy") and result.shape.rank == 0
                and result.dtype.is_floating and state.user_site() is not None):
            kept = seen.setdefault(getattr(fn, "__name__", "tf.function"), [])
            kept.append(result)
            del kept[:-5]  # the last few are enough
            state.details["calls"] = state.details.get("calls", 0) + 1
        return result

    undo_patch = _patch(pf.Function, "__call__", __call__)
    state.always = True

    def undo() -> None:
        undo_patch()
        if seen:
            name = max(seen, key=lambda k: len(seen[k]))
            state.details.update(function=name, final_loss=float(seen[name][-1].numpy()),
                                 last_losses=[float(t.numpy()) for t in seen[name]])
        else:
            state.note("no tf.function of the script returned a scalar float")
    return undo


def _install_larger_batch(tf: Any, state: FixState) -> Callable[[], None]:
    ds_cls = _dataset_class(tf)

    def change(a: dict[str, Any], site: dict[str, Any]) -> bool:
        x = a.get("x")
        if isinstance(x, ds_cls) or x is None or callable(getattr(x, "__next__", None)):
            state.note("Keras fit was given a dataset or generator: its batch is set where the data "
                       "is batched (change .batch(N) by hand)")
            return False
        before = a.get("batch_size") or 32
        a["batch_size"] = before * BATCH_FACTOR
        state.details.update(batch_before=before, batch_after=before * BATCH_FACTOR, step_scale=BATCH_FACTOR,
                             step_unit=f"one step is {BATCH_FACTOR}x the samples")
        state.hit(site, "fit", keyword="batch_size", value=before * BATCH_FACTOR)
        return True

    return _fit_patch(state, change)


def _keras_used(state: FixState) -> bool:
    return any("keras" in _read(f) for f in state.user_files)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


# -- code edits -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Edit:
    """Replace ``source[start:end]`` by ``text`` (character offsets)."""

    start: int
    end: int
    text: str


def _offsets(source: str) -> list[int]:
    starts, pos = [0], 0
    for line in source.splitlines(keepends=True):
        pos += len(line)
        starts.append(pos)
    return starts


def _pos(starts: list[int], source: str, lineno: int, col: int) -> int:
    # ast columns are UTF-8 byte offsets
    line = source[starts[lineno - 1]:starts[lineno]]
    return starts[lineno - 1] + len(line.encode("utf-8")[:col].decode("utf-8", errors="ignore"))


def _span(node: ast.AST, source: str, starts: list[int]) -> tuple[int, int]:
    return (_pos(starts, source, node.lineno, node.col_offset),  # type: ignore[attr-defined]
            _pos(starts, source, node.end_lineno, node.end_col_offset))  # type: ignore[attr-defined]


def _calls_at(tree: ast.AST, line: int, attr: str) -> list[ast.Call]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.lineno <= line <= node.end_lineno:  # type: ignore[operator]
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
            if name == attr:
                out.append(node)
    return out


def _set_keyword(call: ast.Call, key: str, value: str, source: str, starts: list[int]) -> Edit:
    for kw in call.keywords:
        if kw.arg == key:
            s, e = _span(kw.value, source, starts)
            return Edit(s, e, value)
    _, end = _span(call, source, starts)
    close = end - 1  # the call's ")"
    inner = source[:close].rstrip()
    sep = "" if inner.endswith("(") or inner.endswith(",") else ", "
    if inner.endswith(","):
        sep = " "
    return Edit(close, close, f"{sep}{key}={value}")


def _suffix(node: ast.AST, suffix: str, source: str, starts: list[int]) -> list[Edit]:
    s, e = _span(node, source, starts)
    if isinstance(node, (ast.Name, ast.Attribute, ast.Call, ast.Subscript)):
        return [Edit(e, e, suffix)]
    return [Edit(s, s, "("), Edit(e, e, ")" + suffix)]


def _iterated(tree: ast.AST, line: int) -> list[ast.AST]:
    """The expressions iterated at ``line``: ``iter(X)``, ``for _ in X``, ``fit(X, ...)``."""
    out: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.comprehension)) and getattr(node.iter, "lineno", None) == line:
            out.append(node.iter)
        elif isinstance(node, ast.Call) and node.lineno <= line <= node.end_lineno:  # type: ignore[operator]
            f = node.func
            if isinstance(f, ast.Name) and f.id == "iter" and node.args:
                out.append(node.args[0])
            elif isinstance(f, ast.Attribute) and f.attr == "fit":
                x = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "x"), None)
                if x is not None:
                    out.append(x)
    return out


def _decorator_edits(tree: ast.AST, sites: list[dict[str, Any]], key: str, source: str,
                     starts: list[int]) -> list[Edit]:
    edits: list[Edit] = []
    lines = {s["line"] for s in sites if s["kind"] == "tf.function"}
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for dec in node.decorator_list:
            if dec.lineno not in lines and node.lineno not in lines:
                continue
            if isinstance(dec, ast.Call):
                edits.append(_set_keyword(dec, key, "True", source, starts))
            elif isinstance(dec, (ast.Attribute, ast.Name)) and ast.unparse(dec).endswith("function"):
                _, e = _span(dec, source, starts)
                edits.append(Edit(e, e, f"({key}=True)"))
    for line in lines:  # f = tf.function(g) written as a call
        for call in _calls_at(tree, line, "function"):
            edits.append(_set_keyword(call, key, "True", source, starts))
    return edits


def _after_tf_import(tree: ast.AST, lines: list[str], source: str, starts: list[int]) -> list[Edit]:
    for node in getattr(tree, "body", []):
        if isinstance(node, ast.Import) and any(a.name == "tensorflow" for a in node.names):
            alias = next(a.asname or a.name for a in node.names if a.name == "tensorflow")
            pos = starts[node.end_lineno]  # type: ignore[index]
            return [Edit(pos, pos, "".join(f"{ln.format(tf=alias)}\n" for ln in lines))]
    return []


def _edits_prefetch(tree, source, sites, details):
    starts = _offsets(source)
    out: list[Edit] = []
    for site in sites:
        for node in _iterated(tree, site["line"])[:1]:
            out += _suffix(node, ".prefetch(tf.data.AUTOTUNE)", source, starts)
    return out


def _edits_parallel_map(tree, source, sites, details):
    starts = _offsets(source)
    return [_set_keyword(c, "num_parallel_calls", "tf.data.AUTOTUNE", source, starts)
            for s in sites for c in _calls_at(tree, s["line"], "map")[:1] if not c.args[1:]]


def _edits_data_options(tree, source, sites, details):
    starts = _offsets(source)
    names = {n for _, n in DATA_OPTIONS}
    out = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Attribute)
                and node.targets[0].attr in names and isinstance(node.value, ast.Constant)
                and node.value.value is False):
            s, e = _span(node.value, source, starts)
            out.append(Edit(s, e, "True"))
    return out


def _keyword_edits(key: str, value: str, kind: str) -> Callable[..., list[Edit]]:
    def edits(tree, source, sites, details):
        starts = _offsets(source)
        return [_set_keyword(c, key, value, source, starts)
                for s in sites if s["kind"] == kind for c in _calls_at(tree, s["line"], kind)[:1]]
    return edits


def _edits_run_eagerly(tree, source, sites, details):
    starts = _offsets(source)
    out = _keyword_edits("run_eagerly", "False", "compile")(tree, source, sites, details)
    for s in sites:
        if s["kind"] == "run_functions_eagerly":
            for c in _calls_at(tree, s["line"], "run_functions_eagerly")[:1]:
                if c.args:
                    a, b = _span(c.args[0], source, starts)
                    out.append(Edit(a, b, "False"))
    return out


def _edits_jit(tree, source, sites, details):
    starts = _offsets(source)
    return (_keyword_edits("jit_compile", "True", "compile")(tree, source, sites, details)
            + _decorator_edits(tree, sites, "jit_compile", source, starts))


def _edits_reduce_retracing(tree, source, sites, details):
    return _decorator_edits(tree, sites, "reduce_retracing", source, _offsets(source))


def _edits_xla(tree, source, sites, details):
    lines = ['{tf}.config.optimizer.set_jit("autoclustering")']
    if details.get("TF_XLA_FLAGS"):
        lines.insert(0, "# on CPU, also run with TF_XLA_FLAGS=--tf_xla_cpu_global_jit")
    return _after_tf_import(tree, lines, source, _offsets(source))


def _edits_threads(tree, source, sites, details):
    if "intra_op_threads" not in details:
        return []
    return _after_tf_import(tree, [f"{{tf}}.config.threading.set_intra_op_parallelism_threads({details['intra_op_threads']})",
                                   f"{{tf}}.config.threading.set_inter_op_parallelism_threads({details['inter_op_threads']})"],
                            source, _offsets(source))


def _edits_larger_batch(tree, source, sites, details):
    starts = _offsets(source)
    return [_set_keyword(c, "batch_size", str(s["value"]), source, starts)
            for s in sites if s["kind"] == "fit" for c in _calls_at(tree, s["line"], "fit")[:1]]


def code_diff(name: str, report: dict[str, Any], script: str | Path) -> str | None:
    """The unified diff that makes fix ``name`` by hand, from the sites a run recorded
    (``report`` is one entry of ``Applied.report()["fixes"]``); None when none can be written."""
    fix = lookup(FIXES, name, "fix")
    sites = report.get("sites") or []
    files = sorted({s["file"] for s in sites} or {str(Path(script).resolve())})
    chunks = []
    for path in files:
        source = _read(path)
        if not source:
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        edits = sorted(set(fix.edits(tree, source, [s for s in sites if s.get("file", path) == path],
                                     report.get("details") or {})), key=lambda e: (e.start, e.end))
        if not edits:
            continue
        new, last = [], 0
        for e in edits:
            if e.start < last:
                continue  # overlapping edits: keep the first
            new.append(source[last:e.start] + e.text)
            last = e.end
        new.append(source[last:])
        rel = os.path.basename(path)
        chunks.append("".join(difflib.unified_diff(source.splitlines(keepends=True),
                                                   "".join(new).splitlines(keepends=True),
                                                   f"a/{rel}", f"b/{rel}")))
    text = "".join(chunks)
    return text or None


# -- the registry ---------------------------------------------------------------------------
FIXES: dict[str, Fix] = dict(sorted({
    "prefetch": Fix(
        "prefetch", "appends .prefetch(tf.data.AUTOTUNE) to the dataset the script iterates "
        "(or gives Keras fit)", False, ("tf.data", "Dataset"),
        "the script builds no tf.data dataset", "no tf.data dataset was iterated by the script",
        _install_prefetch, _edits_prefetch),
    "parallel_map": Fix(
        "parallel_map", "runs the script's tf.data map calls in parallel (num_parallel_calls=AUTOTUNE, "
        "order kept)", False, (".map(",), "the script calls no tf.data map",
        "no tf.data map without num_parallel_calls was built by the script",
        _install_parallel_map, _edits_parallel_map),
    "data_options": Fix(
        "data_options", "turns tf.data's autotune, injected prefetch, map and batch parallelization "
        "back on where the script's tf.data.Options turned them off", False, ("with_options",),
        "the script sets no tf.data.Options", "the script's tf.data.Options turn no optimization off",
        _install_data_options, _edits_data_options),
    "run_eagerly_false": Fix(
        "run_eagerly_false", "compiles Keras' train step into a graph (compile(run_eagerly=False); "
        "tf.config.run_functions_eagerly(True) ignored)", False, ("run_eagerly", "run_functions_eagerly"),
        "the script does not ask Keras or tf.function to run eagerly; a custom eager loop needs "
        "@tf.function on its step, by hand (sgdscope cannot add it from outside)",
        "no compile(run_eagerly=True) or run_functions_eagerly(True) call was reached",
        _install_run_eagerly, _edits_run_eagerly),
    "jit_compile": Fix(
        "jit_compile", "compiles the step with XLA (Keras compile(jit_compile=True), "
        "tf.function(jit_compile=True))", False, ("compile(", "function"),
        "the script has no Keras compile and no tf.function", "no Keras compile or tf.function was reached",
        _install_jit, _edits_jit),
    "steps_per_execution": Fix(
        "steps_per_execution", f"runs {STEPS_PER_EXECUTION} Keras train steps per call "
        f"(compile(steps_per_execution={STEPS_PER_EXECUTION}))", False, ("compile(",),
        "the script has no Keras compile (a custom loop can loop inside its tf.function by hand)",
        "no Keras compile was reached", _install_steps_per_execution,
        _keyword_edits("steps_per_execution", str(STEPS_PER_EXECUTION), "compile")),
    "reduce_retracing": Fix(
        "reduce_retracing", "traces the script's tf.functions with generalized shapes "
        "(tf.function(reduce_retracing=True))", False, ("function",),
        "the script defines no tf.function", "no tf.function without reduce_retracing was created",
        _install_reduce_retracing, _edits_reduce_retracing),
    "xla_auto_jit": Fix(
        "xla_auto_jit", "turns on XLA auto-clustering (tf.config.optimizer.set_jit('autoclustering'))",
        False, (), "", "", _install_xla_auto_jit, _edits_xla),
    "threads": Fix(
        "threads", "sets TF's thread pools to this machine's usable cores (intra-op) and 2 (inter-op); "
        "the script's own thread settings are ignored", False, (), "",
        "", _install_threads, _edits_threads),
    "larger_batch": Fix(
        "larger_batch", f"trains Keras fit on {BATCH_FACTOR}x larger batches (fewer, larger steps: "
        "changes the maths)", True, (".fit(",), "the script calls no Keras fit",
        "no Keras fit on arrays was reached", _install_larger_batch, _edits_larger_batch),
}.items()))

#: Observers: installed like fixes, change nothing (``whatif`` adds them to every run).
OBSERVE_LOSS = "observe_loss"
OBSERVERS: dict[str, Fix] = {
    OBSERVE_LOSS: Fix(OBSERVE_LOSS, "records the loss a custom loop's tf.function step returns", False, (), "",
                      "no tf.function of the script returned a scalar float", _install_observe_loss,
                      lambda tree, source, sites, details: []),
}
ALL: dict[str, Fix] = {**FIXES, **OBSERVERS}

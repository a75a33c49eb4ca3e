"""Step recorder: per-step wall time, phase spans, losses, and the TF profiler window.

Workloads call it from their own loop::

    for i in range(n):
        with rec.step(i, epoch):
            with rec.phase("input_wait"):
                batch = next(it)
            with rec.phase("forward"):
                ...
        rec.record_loss(i, loss)          # a float, NumPy or TF scalar; converted at finish

Keras ``fit`` uses ``rec.begin_step``/``rec.end_step`` from a callback. A loop that runs
many steps in one call (the in-graph loop) reports ``rec.record_block``, or runs the call
inside ``with rec.block(first, n):``, which also opens the profiler window for it.

When profiling is on, the recorder opens the TF profiler just before the first step
after warm-up and closes it after ``profile_steps`` steps; every step inside the window
is wrapped in ``tf.profiler.experimental.Trace("train", step_num=i, _r=1)``, which covers
the batch fetch and the step together. TensorFlow is imported here lazily and only when
a TF variant is profiled. Must not import pynvml or streamlit.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from profilers.contention import ContentionMeter
from profilers.model import validate_table


class StepRecorder:
    def __init__(
        self,
        *,
        t0_ns: int,
        warmup_steps: int,
        profile_logdir: Path | None = None,
        profile_steps: int = 10,
        on_step: Callable[[int], None] | None = None,
    ) -> None:
        self.t0_ns = t0_ns
        self.warmup_steps = warmup_steps
        self.profile_logdir = Path(profile_logdir) if profile_logdir else None
        self.profile_steps = profile_steps
        self._on_step = on_step
        self._steps: list[dict[str, Any]] = []
        self._phases: list[tuple[int, str, int, int]] = []
        self._losses: dict[int, Any] = {}
        self._cur: tuple[int, int, int] | None = None  # (step, epoch, start_ns)
        self._marker: Any = None
        self._profiling = False
        self._profiled_steps = 0
        self.profile_start_ns: int | None = None
        self.profile_stop_ns: int | None = None
        self.profiler_error: str | None = None
        self.steps_done = 0
        # Run-queue wait of the step thread over the measured span (the profiler window
        # when there is one): CPU contention, kept out of framework overhead.
        self._meter = ContentionMeter()
        self._meter_on = False

    # -- profiler window -------------------------------------------------------------
    def _maybe_start_meter(self) -> None:
        if not self._meter_on and self._meter.result is None and self.steps_done >= self.warmup_steps:
            self._meter.start()
            self._meter_on = True

    def _stop_meter(self) -> None:
        if self._meter_on:
            self._meter.stop()
            self._meter_on = False

    @property
    def contention(self) -> dict[str, Any]:
        """The meter's result (``available`` False with the reason when not measured)."""
        return self._meter.result or {"available": False,
                                      "reason": "no measured step ran (all were warm-up)"}

    def _maybe_start_profiler(self, step: int) -> None:
        self._maybe_start_meter()
        if (self.profile_logdir is None or self._profiling or self._profiled_steps
                or self.profiler_error or self.steps_done < self.warmup_steps):
            return
        import tensorflow as tf  # deferred: only profiled TF variants pay for it

        try:
            tf.profiler.experimental.start(str(self.profile_logdir))
        except (tf.errors.AlreadyExistsError, tf.errors.UnavailableError) as exc:
            self.profiler_error = f"TF profiler could not start: {exc}"
            return
        self._profiling = True
        self.profile_start_ns = time.perf_counter_ns()

    def _maybe_stop_profiler(self, force: bool = False) -> None:
        if not self._profiling:
            return
        if force or self._profiled_steps >= self.profile_steps:
            import tensorflow as tf

            self._stop_meter()  # before stop(), whose own 30-70 ms is not the steps'
            tf.profiler.experimental.stop()
            self._profiling = False
            self.profile_stop_ns = time.perf_counter_ns()

    # -- steps -----------------------------------------------------------------------
    def begin_step(self, step: int, epoch: int = 0) -> None:
        self._maybe_start_profiler(step)
        if self._profiling:
            import tensorflow as tf

            self._marker = tf.profiler.experimental.Trace("train", step_num=step, _r=1)
            self._marker.__enter__()
        self._cur = (step, epoch, time.perf_counter_ns())

    def end_step(self) -> None:
        end = time.perf_counter_ns()
        if self._cur is None:
            raise RuntimeError("end_step() without begin_step()")
        step, epoch, start = self._cur
        self._cur = None
        in_window = self._marker is not None
        if self._marker is not None:
            self._marker.__exit__(None, None, None)
            self._marker = None
            self._profiled_steps += 1
        self._steps.append({
            "step": step, "epoch": epoch,
            "start_us": (start - self.t0_ns) / 1e3, "wall_us": (end - start) / 1e3,
            "warmup": self.steps_done < self.warmup_steps, "derived": False,
            "in_profile_window": in_window,
        })
        self.steps_done += 1
        self._maybe_stop_profiler()
        if self._on_step is not None:
            self._on_step(self.steps_done)

    @contextmanager
    def step(self, step: int, epoch: int = 0) -> Iterator[None]:
        self.begin_step(step, epoch)
        try:
            yield
        finally:
            if self._cur is not None:
                self.end_step()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """A host-side span named by a breakdown category, inside the current step."""
        start = time.perf_counter_ns()
        try:
            yield
        finally:
            step = self._cur[0] if self._cur is not None else -1
            self._phases.append((step, name, start, time.perf_counter_ns()))

    def record_block(self, first_step: int, n_steps: int, start_ns: int, end_ns: int,
                     epoch: int = 0) -> None:
        """Steps that ran inside one call: each gets the block's mean wall (derived)."""
        if n_steps <= 0:
            return
        per = (end_ns - start_ns) / n_steps
        for k in range(n_steps):
            self._steps.append({
                "step": first_step + k, "epoch": epoch,
                "start_us": (start_ns + k * per - self.t0_ns) / 1e3, "wall_us": per / 1e3,
                "warmup": self.steps_done < self.warmup_steps, "derived": True,
                "in_profile_window": self._profiling,
            })
            self.steps_done += 1
        if self._on_step is not None:
            self._on_step(self.steps_done)

    @contextmanager
    def block(self, first_step: int, n_steps: int, epoch: int = 0) -> Iterator[None]:
        """``record_block`` for a call run inside this context, with the profiler window.

        Like ``step``, it opens the TF profiler when the window is due (the first block
        after warm-up) and wraps the call in one ``Trace("train", step_num=first_step)``
        marker; the window then counts all ``n_steps`` and closes after the block.
        """
        self._maybe_start_profiler(first_step)
        marker = None
        if self._profiling:
            import tensorflow as tf

            marker = tf.profiler.experimental.Trace("train", step_num=first_step, _r=1)
            marker.__enter__()
        start = time.perf_counter_ns()
        try:
            yield
        finally:
            end = time.perf_counter_ns()
            if marker is not None:
                marker.__exit__(None, None, None)
                self._profiled_steps += n_steps
            self.record_block(first_step, n_steps, start, end, epoch)
            self._maybe_stop_profiler()

    def record_loss(self, step: int, loss: Any) -> None:
        self._losses[step] = loss

    @property
    def profiling(self) -> bool:
        return self._profiling

    # -- results ---------------------------------------------------------------------
    def finish(self) -> dict[str, pd.DataFrame]:
        """Stop the profiler if still open; return the ``steps`` and ``phases`` tables."""
        self._maybe_stop_profiler(force=True)
        self._stop_meter()
        losses = {k: _to_float(v) for k, v in self._losses.items()}
        steps = pd.DataFrame(self._steps, columns=[
            "step", "epoch", "start_us", "wall_us", "warmup", "derived", "in_profile_window"])
        steps["loss"] = steps["step"].map(losses).astype("float64")
        phases = pd.DataFrame(
            [(s, n, (a - self.t0_ns) / 1e3, (b - a) / 1e3) for s, n, a, b in self._phases],
            columns=["step", "phase", "start_us", "dur_us"])
        return {"steps": validate_table("steps", steps), "phases": validate_table("phases", phases)}


def _to_float(value: Any) -> float:
    if hasattr(value, "numpy"):
        value = value.numpy()
    return float(np.asarray(value, dtype=np.float64).reshape(-1)[0])

"""The attach worker: ``python -m profilers.attach_worker <exp_dir>``.

Runs one ``attach`` experiment: a gRPC trace of a running job's profiler servers
(``profilers.remote_capture.attach``), stored as a run. It is an experiment kind like
``workload`` and ``script`` (``profilers.session.WORKERS``), so the trace runs in a
supervised process with the experiment's timeout and cancel, never inside a Streamlit
script; a failure is stored by the supervisor as a failed run with the stderr tail.
The spec: workload ``attach``, one variant (the run's name), params ``addresses``
(``HOST:PORT,...``, worker 0 first) and ``duration_ms``. Does not import tensorflow.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from profilers.session import emit
from profilers.spec import ExperimentSpec
from profilers.store import RunStore


def main(exp_dir: Path) -> int:
    from profilers.remote_capture import attach

    spec = ExperimentSpec.load(exp_dir / "spec.json")
    store = RunStore(os.environ.get("SGDSCOPE_HOME"))
    name = spec.variants[0]
    emit(exp_dir, "phase", text=f"tracing {spec.params['addresses']} for {int(spec.params['duration_ms'])} ms")
    emit(exp_dir, "variant_start", variant=name, run_id=None, total_steps=None)
    profile = attach(store, str(spec.params["addresses"]), int(spec.params["duration_ms"]), name=name)
    emit(exp_dir, "variant_end", variant=name, run_id=profile.run_id, status=profile.manifest.get("status"))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))

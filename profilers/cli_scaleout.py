"""``sgdscope attach HOST:PORT[,HOST:PORT...] --duration-ms N [--json]``.

Captures a running TensorFlow job that already runs a profiler server
(``tf.profiler.experimental.server.start(port)``) on each address, and stores it as a run
(``source: "attach"``) with its breakdown, per-worker step times and findings
(``profilers.remote_capture.attach``). A dead address fails at once with a message naming
it (a TCP connect, bounded by a 2 s timeout, before any trace).

Registered through ``profilers.cli.COMMAND_MODULES``; it also runs on its own:
``python -m profilers.cli_scaleout attach ...``. Must not import tensorflow, pynvml or
streamlit.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from profilers.cli import command, emit_json, fmt_ms, run_summary
from profilers.store import RunStore


def _attach_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("addresses", metavar="HOST:PORT[,HOST:PORT...]",
                   help="profiler server of each worker (worker 0 first); grpc:// is optional")
    p.add_argument("--duration-ms", type=int, default=2000, help="how long to trace (default 2000)")
    p.add_argument("--name", default="job", help="label stored as the run's variant (default: job)")


@command("attach", "capture a running TF job through its profiler server(s) and store it as a run",
         _attach_args)
def cmd_attach(args: argparse.Namespace, store: RunStore) -> int:
    from profilers.remote_capture import attach

    profile = attach(store, args.addresses, args.duration_ms, name=args.name)
    summary = run_summary(profile)
    if args.json:
        emit_json({"run": summary, "findings": profile.findings,
                   "capture": profile.manifest.get("capture")})
        return 0
    print(f"Stored run {profile.run_id} ({summary['steps']} steps, median "
          f"{fmt_ms(summary['step_ms']['median'])} ms).")
    rows: list[dict[str, Any]] = summary.get("per_worker") or []
    for r in rows:
        share = r.get("collective_share")
        print(f"  worker {r['worker']} ({r.get('address', '')}): median step "
              f"{fmt_ms(r['step_ms']['median'])} ms, collectives "
              f"{'n/a' if share is None else f'{100 * share:.1f}%'} of the step")
    for f in profile.findings:
        print(f"  [{f['severity']}] {f['rule']}")
    err = (profile.manifest.get("capture") or {}).get("analysis_error")
    if err:
        print(f"analysis: {err}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from profilers import cli

    sys.exit(cli.main())

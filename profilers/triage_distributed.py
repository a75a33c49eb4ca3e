"""Triage rules for distributed runs: ``straggler`` and ``collective_bound``.

Same contract as ``profilers.triage`` (``rule(facts) -> finding | None``; a finding is
``{"rule", "severity", "share", "evidence", "recommendation"}``); they read
``facts["results"]["per_worker"]`` (``profilers.scaleout.per_worker``), which
distributed workload runs and ``sgdscope attach`` store. A run without it, or with no
collective time measured, fires neither rule.

- ``straggler``: a worker's median step is more than 20 % over the median of all workers
  (``scaleout.stragglers``: the step minus its collective time when every worker was
  traced, since in synchronous training the others wait for the straggler inside the
  all-reduce; else the wall step). Names the worker. High when 50 % over.
- ``collective_bound``: collectives take >= 15 % of the step (high) or >= 6 % (moderate),
  the run's share being the median over workers of each one's share.

``register(rules)`` adds them to a rule registry (``profilers.triage.RULES``), keeping it
sorted. Pure: no I/O, no streamlit, no tensorflow, no xprof.
"""
from __future__ import annotations

import math
from typing import Any, Callable, MutableMapping

from profilers import scaleout

Finding = dict[str, Any]
Facts = dict[str, Any]

COLLECTIVE_MODERATE, COLLECTIVE_HIGH = 0.06, 0.15  # as XProf's collective thresholds
STRAGGLER_HIGH_OVER = 0.50

_METRIC_TEXT = {
    "non_collective_ms": "median step time minus time inside collective ops (traced steps): the "
                         "worker's own work; in synchronous training the others spend the difference "
                         "waiting for it in the all-reduce",
    "step_ms": "median wall time of the worker's own steps (no trace: collective time unknown)",
}


_LABEL = {"non_collective_ms": "step time outside collectives", "step_ms": "wall step time"}


def _r(x: Any, nd: int = 4) -> Any:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else round(float(x), nd)


def _finding(rule: str, severity: str, share: float | None, evidence: dict[str, Any],
             recommendation: str) -> Finding:
    return {"rule": rule, "severity": severity,
            "share": None if share is None or not math.isfinite(share) else round(float(share), 4),
            "evidence": evidence, "recommendation": recommendation}


def _rows(f: Facts) -> list[dict[str, Any]]:
    return list((f.get("results") or {}).get("per_worker") or [])


def rule_straggler(f: Facts) -> Finding | None:
    rows = _rows(f)
    if len(rows) < 2:
        return None
    found = scaleout.stragglers(rows)
    if not found["workers"]:
        return None
    worst = found["workers"][0]
    values = found["values_ms"]
    others = [v for w, v in values.items() if w != worst["worker"]]
    ref = sorted(others)[len(others) // 2] if others else found["median_ms"]
    walls = [(r.get("step_ms") or {}).get("median") for r in rows]
    wall = max((w for w in walls if w), default=None)
    # The share of the step the other workers lose waiting for it.
    share = min(1.0, max(0.0, (worst["median_ms"] - ref) / wall)) if wall else None
    names = ", ".join(f"worker {d['worker']}" for d in found["workers"])
    ev = {
        "stragglers": [{"worker": d["worker"], "median_ms": _r(d["median_ms"]), "over_median": _r(d["over"])}
                       for d in found["workers"]],
        "metric": found["metric"], "measured_as": _METRIC_TEXT[found["metric"]],
        "per_worker_median_ms": {str(w): _r(v) for w, v in sorted(values.items())},
        "median_of_all_workers_ms": _r(found["median_ms"]),
        "wall_step_ms": {str(r["worker"]): _r((r.get("step_ms") or {}).get("median")) for r in rows},
        "threshold": scaleout.STRAGGLER_THRESHOLD,
        "source": "results.per_worker (profilers.scaleout): each worker's own host-timed steps and "
                  "its trace's collective ops",
    }
    rec = (f"Worker {worst['worker']} is the straggler: its median {_LABEL[found['metric']]} is "
           f"{worst['median_ms']:.1f} ms, {100 * worst['over']:.0f}% over the median of all workers "
           f"({found['median_ms']:.1f} ms). Synchronous training runs at the pace of the slowest "
           "worker, so every other worker waits for it in the all-reduce. Look at that worker's "
           "host (other processes on its cores, a slower or throttled CPU), its input pipeline "
           "and its data shard; give it the same resources as the others.\n"
           "```python\n# the same threads per worker, sized to the cores it really has:\n"
           "tf.config.threading.set_intra_op_parallelism_threads(len(os.sched_getaffinity(0)))\n```")
    if len(found["workers"]) > 1:
        rec = f"Stragglers: {names}. " + rec
    sev = "high" if worst["over"] >= STRAGGLER_HIGH_OVER else "moderate"
    return _finding("straggler", sev, share, ev, rec)


def rule_collective_bound(f: Facts) -> Finding | None:
    rows = _rows(f)
    share = scaleout.collective_share(rows)
    if share is None:
        return None
    sev = "high" if share >= COLLECTIVE_HIGH else "moderate" if share >= COLLECTIVE_MODERATE else None
    if sev is None:
        return None
    lagging = scaleout.stragglers(rows)["workers"] if len(rows) >= 2 else []
    ev = {
        "collective_share": _r(share),
        "per_worker_share": {str(r["worker"]): _r(r.get("collective_share")) for r in rows},
        "collective_ms_per_step": {str(r["worker"]): _r((r.get("collective_ms") or {}).get("median"))
                                   for r in rows},
        "measured_as": "time inside collective ops (CollectiveReduceV2, NcclAllReduce, all-reduce...) "
                       "over step wall time, traced measured steps; the run's share is the median "
                       "over workers. A collective's time includes waiting for its peers",
        "thresholds": {"moderate": COLLECTIVE_MODERATE, "high": COLLECTIVE_HIGH,
                       "from": "XProf's collective/all-reduce bound thresholds (6 % / 15 %)"},
    }
    if lagging:
        w = lagging[0]["worker"]
        ev["waiting_for_straggler"] = w
        rec = (f"Most of this collective time is the other workers waiting for worker {w} (see the "
               "straggler finding): make that worker as fast as the others first; the "
               "all-reduce itself is then short.")
    else:
        rec = ("The step spends this time exchanging gradients. Do more work per exchange: a larger "
               "per-replica batch, fewer replicas for a small model, gradients packed into fewer "
               "all-reduces; on GPUs use NCCL.\n"
               "```python\noptions = tf.distribute.experimental.CommunicationOptions(\n"
               "    bytes_per_pack=32 * 1024 * 1024,\n"
               "    implementation=tf.distribute.experimental.CommunicationImplementation.NCCL)\n"
               "strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)\n```")
    return _finding("collective_bound", sev, share, ev, rec)


#: This module's rules (sorted by id).
RULES: dict[str, Callable[[Facts], "Finding | None"]] = {
    "collective_bound": rule_collective_bound,
    "straggler": rule_straggler,
}


def register(rules: MutableMapping[str, Callable[[Facts], "Finding | None"]]) -> None:
    """Add ``RULES`` to ``rules`` (e.g. ``profilers.triage.RULES``), keeping it sorted by id."""
    merged = sorted({**rules, **RULES}.items())
    rules.clear()
    rules.update(merged)

"""What-if against the hand edit: is the gain ``sgdscope whatif`` measures the gain you get?

1. ``sgdscope whatif tests/scripts/slow_input_loop.py --repeat 3`` (fixes chosen from the
   findings), in a fresh store: its top fix and the gain it measured (median step, baseline
   over fix, with its interval; the script run under the profiler in sgdscope's worker).
2. The same change made by hand: a copy of the script with the top fix's edit written out
   here as text (``HAND_EDITS``, not the tool's diff), and the original, each run as plain
   ``python`` (no sgdscope, no profiler), interleaved, ``--repeat`` times. The loop's time
   comes from the script's own clock (its ``total``: steps 3-59 around ``next`` and the
   step), so the hand gain is original / edited mean step.
3. Prints both and whether the what-if gain is within 30% of the hand gain.

    .venv/bin/python bench/record.py whatif_truth "What-if gain vs the hand edit" -- bench/whatif_truth.py
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "scripts" / "slow_input_loop.py"
MEASURED_STEPS = 57  # the script times steps 3..59 into `total`
#: fix -> (text in the script, replacement): the edit a user would make by hand.
HAND_EDITS: dict[str, list[tuple[str, str]]] = {
    "parallel_map": [("(None, 16)))\n", "(None, 16)), num_parallel_calls=tf.data.AUTOTUNE)\n")],
    "prefetch": [("it = iter(ds)\n", "it = iter(ds.prefetch(tf.data.AUTOTUNE))\n")],
    "data_options": [("inject_prefetch = False", "inject_prefetch = True")],
}
RUN = ("import runpy, sys; g = runpy.run_path(sys.argv[1], run_name='__main__'); "
       "print('LOOP_S=%r' % g['total'])")


def edited(fixes: list[str]) -> str:
    text = SCRIPT.read_text(encoding="utf-8")
    for name in fixes:
        for old, new in HAND_EDITS[name]:
            assert text.count(old) == 1, (name, old)
            text = text.replace(old, new)
    return text


def plain_step_ms(path: Path) -> float:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", RUN, str(path)], cwd=path.parent, env=env,
                         capture_output=True, text=True, timeout=300, check=True)
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("LOOP_S="))
    return float(line.split("=", 1)[1]) / MEASURED_STEPS * 1e3


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    home = Path(tempfile.mkdtemp(prefix="sgdscope-whatif-truth-"))
    env = dict(os.environ, SGDSCOPE_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "profilers.cli", "whatif", str(SCRIPT), "--repeat",
                          str(args.repeat), "--json"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=3600)
    if out.returncode != 0:
        print(out.stderr[-3000:], file=sys.stderr)
        return 1
    doc = json.loads(out.stdout)
    top = doc["fixes"][0]
    lines = ["Script: `tests/scripts/slow_input_loop.py` (a custom loop; its tf.data map sleeps 6 ms "
             "per batch in a `numpy_function`, no prefetch).", "",
             f"`sgdscope whatif --repeat {args.repeat}` (fixes chosen from the findings: "
             f"{', '.join(r['fix'] for r in doc['fixes'])}):", "",
             "| rank | fix | median step ms | gain [95% interval] | verdict | loss check |",
             "|---|---|---|---|---|---|",
             f"| | baseline | {doc['baseline']['median_ms']:.2f} | | | |"]
    for r in doc["fixes"] + ([doc["combination"]] if doc.get("combination") else []):
        if r.get("gain") is None:
            lines.append(f"| {r.get('rank', '')} | {r['fix']} | | not applied | {r.get('reason')} | |")
            continue
        name = r["fix"] if r["fix"] != "combination" else "+".join(r["fixes"])
        lines.append(f"| {r.get('rank', '-')} | {name} | {r['median_ms']:.2f} | {r['gain']:.2f}x "
                     f"[{r['interval'][0]:.2f}-{r['interval'][1]:.2f}] | {r['verdict']} | "
                     f"{(r.get('loss_check') or {}).get('status', '')} |")
    if top["fix"] not in HAND_EDITS:
        lines += ["", f"Top fix {top['fix']} is not a tf.data fix: the Done-when does NOT hold."]
        print("\n".join(lines))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="sgdscope-hand-"))
    orig, fixed = tmp / "original.py", tmp / "hand_edited.py"
    orig.write_text(SCRIPT.read_text(encoding="utf-8"), encoding="utf-8")
    fixed.write_text(edited([top["fix"]]), encoding="utf-8")
    base_ms, fix_ms = [], []
    for _ in range(args.repeat):  # interleaved
        base_ms.append(plain_step_ms(orig))
        fix_ms.append(plain_step_ms(fixed))
    hand = float(np.median(base_ms) / np.median(fix_ms))
    ratio = top["gain"] / hand
    lines += ["", f"Hand edit of the top fix ({top['fix']}: " + "; ".join(
        f"`{o.strip()}` -> `{n.strip()}`" for o, n in HAND_EDITS[top["fix"]]) + "), both scripts run as plain "
        f"`python` ({args.repeat} times each, interleaved), timed by the script's own clock:", "",
        "| script | mean step ms per run | median |", "|---|---|---|",
        f"| original | {', '.join(f'{v:.2f}' for v in base_ms)} | {np.median(base_ms):.2f} |",
        f"| hand-edited | {', '.join(f'{v:.2f}' for v in fix_ms)} | {np.median(fix_ms):.2f} |", "",
        f"Hand gain {hand:.2f}x; what-if gain {top['gain']:.2f}x "
        f"[{top['interval'][0]:.2f}-{top['interval'][1]:.2f}]; what-if / hand = {ratio:.2f} "
        f"(goal within ±30%: {'met' if abs(ratio - 1) <= 0.30 else 'NOT met'}).", "",
        f"Machine load average (1 min) {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, "
        f"on {os.cpu_count()} logical cores (shared with other jobs)."]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

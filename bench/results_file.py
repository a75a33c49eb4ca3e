"""Write one bench's section of bench/RESULTS.md in place (between its own markers).

Each bench owns a section ``<!-- NAME:start --> ... <!-- NAME:end -->``; rerunning a bench
replaces only its section. The file is rewritten through a temp file and a rename.
"""
from __future__ import annotations

import re
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from profilers.model import atomic_write_text  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = ("# Benchmark results\n\nEvery figure below was printed by the script named in its "
          "section, with ratios taken side by side in one run on the machine described there. "
          "The machines are shared and noisy (2 cores): read ratios, not absolute times.\n")


def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def write_section(name: str, title: str, body: str, command: str | None = None) -> None:
    from profilers.environment import collect

    env = collect()
    blas = ", ".join(f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture')}, "
                     f"{b.get('num_threads')} threads)" for b in env["blas"])
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (f"<!-- {name}:start -->\n## {title}\n\nCommand: `{command or command_line()}`  \n"
               f"Run: {stamp} on {env['cpu_model']}, {env['cpu_logical']} logical cores, "
               f"BLAS: {blas}, TF {env['versions'].get('tensorflow-cpu') or env['versions'].get('tensorflow')}\n\n"
               f"{body.strip()}\n<!-- {name}:end -->\n")
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else HEADER
    pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->\n?", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    atomic_write_text(RESULTS, text)

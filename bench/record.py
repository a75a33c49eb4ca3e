"""Run a bench script and record what it printed as its section of bench/RESULTS.md.

    .venv/bin/python bench/record.py NAME "TITLE" [--pre] -- bench/SCRIPT.py [ARGS...]

The script's stdout is echoed and stored verbatim (``--pre``: inside a code fence, for
plain-text output), with the command that produced it and the machine it ran on.
"""
from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results_file import write_section  # noqa: E402


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") < 2:
        print(__doc__, file=sys.stderr)
        return 2
    sep = argv.index("--")
    name, title, *flags = argv[:sep]
    script = argv[sep + 1:]
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, *script], cwd=root, stdout=subprocess.PIPE, text=True)
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        print(f"bench failed with exit code {proc.returncode}; RESULTS.md left as it was", file=sys.stderr)
        return proc.returncode
    body = f"```\n{proc.stdout.strip()}\n```" if "--pre" in flags else proc.stdout
    write_section(name, title, body, command="python " + " ".join(shlex.quote(a) for a in script))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""What analysing a capture costs, on the committed capture fixtures (tests/data).

Kept as a name for the fixture-sized run of ``bench/analysis_scale.py``, which measures
the same things side by side (xprof's own conversions, our cold analysis, the reopen
from the cache, peak RSS, cache size), each in its own process, on captures of any
size. Equivalent to::

    python bench/analysis_scale.py --fixtures --no-run-page [--repeat N] [RUN_DIR ...]

Must not import tensorflow or streamlit.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import analysis_scale  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    runs = [a for a in args if not a.startswith("-") and Path(a).is_dir()]
    flags = [a for a in args if a not in runs]
    print(f"command: python bench/analysis_cost.py {' '.join(args)}".rstrip())
    return analysis_scale.main([*flags, "--no-run-page", *(runs or ["--fixtures"])])


if __name__ == "__main__":
    raise SystemExit(main())

"""``export``, ``import``, ``diff``, ``analyze`` and the Diff page work where TensorFlow is
not installed.

Building a second venv from requirements.txt minus tensorflow-cpu costs minutes and
~1 GB, so this test takes the cheap, documented route: every command runs in a
subprocess whose ``sitecustomize.py`` (first on PYTHONPATH) wraps the path-based import
finders so that ``tensorflow``, ``keras`` and ``tf_keras`` are *not found*, exactly as on
a machine without them (``import tensorflow`` raises ModuleNotFoundError and
``importlib.util.find_spec("tensorflow")`` is None). At exit the hook writes which of
those modules got loaded (none may) and which imports were attempted (for the record).
A control run proves the hook blocks TensorFlow in this venv.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from profilers.store import RunStore
from tests.bundle_fixtures import profiled_run, synthetic_run

ROOT = Path(__file__).resolve().parent.parent

HOOK = textwrap.dedent('''
    """Test hook: hide TensorFlow/Keras from this interpreter (see tests/test_no_tf_venv.py)."""
    import atexit
    import json
    import os
    import sys

    BLOCKED = ("tensorflow", "keras", "tf_keras")
    ATTEMPTS = []


    class _Hide:
        def __init__(self, finder):
            self._finder = finder

        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                ATTEMPTS.append(name)
                return None
            find = getattr(self._finder, "find_spec", None)
            return None if find is None else find(name, path, target)

        def invalidate_caches(self):
            inv = getattr(self._finder, "invalidate_caches", None)
            if inv is not None:
                inv()

        def __getattr__(self, attr):
            return getattr(self._finder, attr)


    sys.meta_path[:] = [f if getattr(f, "__name__", "") in ("BuiltinImporter", "FrozenImporter") else _Hide(f)
                        for f in sys.meta_path]


    def _report():
        log = os.environ.get("SGDSCOPE_NO_TF_LOG")
        if log:
            loaded = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
            with open(log, "w", encoding="utf-8") as fh:
                json.dump({"loaded": loaded, "attempts": sorted(set(ATTEMPTS))}, fh)


    atexit.register(_report)
''')


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("notf")
    hook = tmp / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    store = RunStore(tmp / "src")
    runs = {"numpy": synthetic_run(store, "numpy"), "python": synthetic_run(store, "python", step_ms=9.0, seed=7),
            "eager": profiled_run(store, "tf_eager")}
    return {"tmp": tmp, "hook": hook, "store": store, "ids": {k: v.run_id for k, v in runs.items()}}


def run_no_tf(env: dict[str, Any], args: list[str], name: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    log = env["tmp"] / f"{name}.notf.json"
    e = {**os.environ, "PYTHONPATH": os.pathsep.join([str(env["hook"]), str(ROOT)]),
         "SGDSCOPE_NO_TF_LOG": str(log), "TF_CPP_MIN_LOG_LEVEL": "3", "SGDSCOPE_HOME": str(env["store"].home)}
    proc = subprocess.run([sys.executable, *args], cwd=env["tmp"], env=e, capture_output=True, text=True,
                          timeout=300)
    report = json.loads(log.read_text()) if log.exists() else {"loaded": ["<no report>"], "attempts": []}
    return proc, report


def cli(env: dict[str, Any], name: str, *args: str) -> Any:
    proc, report = run_no_tf(env, ["-m", "profilers.cli", *args, "--json"], name)
    assert proc.returncode == 0, f"{name}: {proc.stdout}\n{proc.stderr}"
    assert report["loaded"] == [], f"{name} loaded {report['loaded']}"
    return json.loads(proc.stdout)


def test_the_hook_hides_tensorflow(env: dict[str, Any]) -> None:
    code = ("import importlib.util, sys\n"
            "assert importlib.util.find_spec('tensorflow') is None\n"
            "import numpy, pandas\n"
            "import tensorflow\n")
    proc, report = run_no_tf(env, ["-c", code], "control")
    assert proc.returncode != 0 and "ModuleNotFoundError: No module named 'tensorflow'" in proc.stderr
    assert report == {"loaded": [], "attempts": ["tensorflow"]}


def test_export_import_diff_analyze_without_tensorflow(env: dict[str, Any]) -> None:
    ids, tmp = env["ids"], env["tmp"]
    out = tmp / "all.zip"
    doc = cli(env, "export", "export", ids["numpy"], ids["python"], ids["eager"], "--out", str(out))
    eager = next(r for r in doc["runs"] if r["run_id"] == ids["eager"])
    assert eager["trace_json"]["available"] is True, "xprof converts the capture without TensorFlow"
    assert doc["report"]["available"] is True

    dst = tmp / "dst"
    imported = cli(env, "import", "import", str(out), "--home", str(dst))
    assert [r["result"] for r in imported["runs"]] == ["imported"] * 3

    by_id = cli(env, "diff-ids", "diff", ids["numpy"], ids["python"], "--home", str(dst))
    assert by_id["categories"]["source"] == "breakdown"
    by_bundle = cli(env, "diff-bundle", "diff", f"{out}#{ids['numpy']}", f"{out}#{ids['eager']}")
    assert by_bundle["b"]["run_id"] == ids["eager"] and by_bundle["ops"]["rows"]

    analyzed = cli(env, "analyze", "analyze", ids["eager"], "--home", str(dst))
    assert analyzed["run_id"] == ids["eager"]
    one = tmp / "one.zip"
    cli(env, "export-one", "export", ids["eager"], "--out", str(one))
    from_bundle = cli(env, "analyze-bundle", "analyze", str(one))
    assert from_bundle["run_id"] == ids["eager"]


def test_diff_page_without_tensorflow(env: dict[str, Any]) -> None:
    code = textwrap.dedent(f"""
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file({str(ROOT / 'dashboard' / 'pages' / 'diff.py')!r}, default_timeout=60).run()
        assert not at.exception, at.exception
        assert not at.error, [e.value for e in at.error]
        print(len(at.get("vega_lite_chart")))
    """)
    proc, report = run_no_tf(env, ["-c", code], "page")
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip().splitlines()[-1]) >= 2, "category delta and distributions at least"
    assert report["loaded"] == []

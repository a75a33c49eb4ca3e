"""The Triage page, run in-process with Streamlit's AppTest over a synthetic stored run."""
from __future__ import annotations

from pathlib import Path

import pytest

from profilers import triage
from profilers.store import RunStore
from tests.test_triage_rules import make_run

PAGE = str(Path(__file__).resolve().parent.parent / "dashboard" / "pages" / "triage.py")


@pytest.fixture()
def store(tmp_path, monkeypatch) -> RunStore:
    monkeypatch.setenv("SGDSCOPE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SGDSCOPE_ALLOW_SCRIPTS", raising=False)
    s = RunStore(tmp_path / "home")
    run = make_run({"input_wait": 0.3, "framework_overhead": 0.1, "backward": 0.6},
                   results={"input_stages": [{"stage": "Iterator::Root::Map", "self_ms": 5.0,
                                              "self_pct": 90.0, "count": 20}]})
    run.findings = triage.evaluate(run)  # as the analysis stores them with the run
    s.save(run)
    return s


def test_findings_are_shown_by_severity_with_a_share_chart(store):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(PAGE, default_timeout=30).run()
    assert not at.exception
    heads = [h.value for h in at.subheader]
    assert heads[0].startswith(":red[HIGH] input_bound")
    assert any("framework_overhead" in h for h in heads[1:])
    assert any("prefetch" in m.value for m in at.markdown)
    charts = at.get("vega_lite_chart")
    assert len(charts) >= 2  # the breakdown and one share chart per finding with a share


def test_profiling_a_script_is_off_without_the_opt_in(store):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(PAGE, default_timeout=30).run()
    at.radio[0].set_value("Profile a script").run()
    assert not at.exception
    assert any("SGDSCOPE_ALLOW_SCRIPTS=1" in i.value for i in at.info)
    assert not at.text_input  # no path field: nothing can be launched


def test_the_form_appears_with_the_opt_in(store, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SGDSCOPE_ALLOW_SCRIPTS", "1")
    at = AppTest.from_file(PAGE, default_timeout=30).run()
    at.radio[0].set_value("Profile a script").run()
    assert not at.exception
    assert at.text_input[0].label == "Script path"


def test_an_empty_store_says_what_to_do(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SGDSCOPE_HOME", str(tmp_path / "empty"))
    at = AppTest.from_file(PAGE, default_timeout=30).run()
    assert not at.exception
    assert any("sgdscope profile" in i.value for i in at.info)

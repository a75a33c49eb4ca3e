"""Shared pytest fixtures.

Dashboard: ``dash_home`` (an empty store in a temp ``SGDSCOPE_HOME``), ``filled_store``
(the same, filled by ``tests.fixtures.populate``) and ``open_page`` (an ``AppTest`` of
``app.py`` switched to one page). Streamlit's caches are cleared around each of them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app.py"


@pytest.fixture()
def dash_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty run store as ``SGDSCOPE_HOME``, with Streamlit's caches cleared."""
    import streamlit as st

    home = tmp_path / "home"
    monkeypatch.setenv("SGDSCOPE_HOME", str(home))
    monkeypatch.setenv("SGDSCOPE_WARM", "0")  # no warm TF worker per test (tests that want one opt in)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield home
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture()
def filled_store(dash_home: Path):
    """``dash_home`` filled with the synthetic experiments of ``tests.fixtures``."""
    from profilers.store import RunStore
    from tests.fixtures import populate

    return populate(RunStore(dash_home))


@pytest.fixture()
def open_page(dash_home: Path) -> Callable[..., object]:
    """``open_page("compare", exp=...)``: AppTest of app.py, switched to that page (query
    params optional), run, and checked to have raised nothing."""
    from streamlit.testing.v1 import AppTest

    from dashboard import nav

    def _open(name: str, **query: str) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=30)
        at.run()
        assert not at.exception, at.exception
        for k, v in query.items():
            at.query_params[k] = v
        at.switch_page(str(Path(nav.path(name)).relative_to(ROOT)))
        at.run()
        assert not at.exception, at.exception
        return at

    return _open


@pytest.fixture(autouse=True)
def every_stored_run_holds_up(tmp_path: Path) -> Iterator[None]:
    """After each test, the invariant checker over every analysed run the test stored under
    its ``tmp_path`` (one fact, one producer: its numbers must be able to be true). Runs a
    test damaged on purpose are the store tests' business and are passed over here."""
    yield
    import json

    from profilers import invariants
    from profilers.errors import SgdscopeError
    from profilers.model import RunProfile

    violations = {}
    for manifest in tmp_path.rglob("manifest.json"):
        if "_staging" in manifest.parts:
            continue
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or "analysis" not in data or data.get("status") != "ok":
                continue
            profile = RunProfile.read(manifest.parent)
        except (OSError, ValueError, SgdscopeError):
            continue  # damaged on purpose by the test
        bad = invariants.check(profile)
        if bad:
            violations[manifest.parent.name] = bad
    assert not violations, f"stored runs whose numbers cannot be true: {violations}"

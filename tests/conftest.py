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

"""The page registry: name -> (file, title, icon), and the ``st.Page`` list ``app.py`` shows.

Pages link to each other through ``path(name)`` (with query params such as ``exp`` and
``run``), so a page never spells another's file name. Builds ``st.Page`` objects only
when asked; nothing runs at import. Must not import tensorflow or pynvml.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGE_DIR = Path(__file__).resolve().parent / "pages"

#: Pages in menu order; the first is the default page, served at the root URL (Streamlit
#: ignores a default page's url_path, so the default is a start page of its own and every
#: other page, Launch included, keeps a URL that works when opened directly). A page whose
#: file is absent (one still being written on another branch) is left out of the menu.
PAGES: dict[str, tuple[str, str, str]] = {
    "home": ("home.py", "Start", ":material/home:"),
    "launch": ("launch.py", "Launch", ":material/rocket_launch:"),
    "compare": ("compare.py", "Compare", ":material/compare_arrows:"),
    "run": ("run.py", "Run", ":material/timeline:"),
    "runs": ("runs.py", "Runs", ":material/history:"),
    "triage": ("triage.py", "Triage", ":material/troubleshoot:"),
    "diff": ("diff.py", "Diff", ":material/difference:"),
    "workers": ("workers.py", "Workers", ":material/hub:"),
    "sweep": ("sweep.py", "Sweep", ":material/show_chart:"),
    "pipeline": ("pipeline.py", "Input pipeline", ":material/input:"),
}


def path(name: str) -> str:
    """The file of page ``name`` (for ``st.page_link`` / ``st.switch_page``)."""
    return str(PAGE_DIR / PAGES[name][0])


def available(name: str) -> bool:
    return name in PAGES and (PAGE_DIR / PAGES[name][0]).is_file()


def pages() -> list[st.Page]:
    """``st.Page`` for every registered page whose file exists."""
    out = []
    for i, (name, (file, title, icon)) in enumerate(PAGES.items()):
        if available(name):
            out.append(st.Page(PAGE_DIR / file, title=title, icon=icon, url_path=name, default=i == 0))
    return out

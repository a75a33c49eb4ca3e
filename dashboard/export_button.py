"""Bundle widgets for any page: a download button that exports runs as one bundle, and an
uploader that imports a bundle into the store.

``export_button(store, run_ids, key=...)`` draws a download button; the bundle is built
only when it is clicked (Streamlit's deferred ``data`` callable), in a temporary folder,
so drawing the page stays cheap. ``import_uploader(store, key=...)`` draws a file
uploader and an Import button; the upload is validated whole by ``profilers.bundle``
before anything is written, and a refusal is shown with its reason.

Thin: widgets -> ``profilers.bundle``. Never imports tensorflow or pynvml.
"""
from __future__ import annotations

from typing import Any, Sequence

import streamlit as st

from profilers import bundle
from profilers.errors import SgdscopeError
from profilers.store import RunStore


def bundle_file_name(run_ids: Sequence[str]) -> str:
    if len(run_ids) == 1:
        return f"sgdscope-{run_ids[0]}.zip"
    return f"sgdscope-{len(run_ids)}-runs-{run_ids[0][:15]}.zip"


def export_button(store: RunStore, run_ids: Sequence[str], *, key: str,
                  label: str = "Download bundle (.zip)", help: str | None = None) -> None:
    """A download button for ``run_ids`` as one bundle (manifest, tables, findings, trace,
    trace.json.gz, report.html). Shows an error instead when a run is not stored."""
    ids = list(dict.fromkeys(run_ids))
    if not ids:
        st.caption("No run to export.")
        return
    try:
        for rid in ids:
            store.path(rid)
    except SgdscopeError as exc:
        st.error(f"{exc.message} {exc.hint}")
        return

    def build() -> bytes:
        return bundle.bundle_bytes([store.load(rid) for rid in ids])

    st.download_button(
        label, data=build, file_name=bundle_file_name(ids), mime="application/zip", key=key,
        on_click="ignore", icon=":material/download:",
        help=help or "A zip that opens in sgdscope (Import), XProf/TensorBoard (trace/), "
                     "Perfetto (trace.json.gz) and any browser (report.html).")


def import_uploader(store: RunStore, *, key: str) -> list[dict[str, Any]] | None:
    """A bundle uploader with an Import button; returns the import's per-run results."""
    upload = st.file_uploader("Import a bundle (.zip)", type=["zip"], key=f"{key}-file",
                              help="Validated whole before anything is written; a bad bundle is refused "
                                   "with its reason and the store is left as it was.")
    if upload is None:
        return None
    if not st.button("Import into the store", key=f"{key}-go"):
        return None
    try:
        result = bundle.import_bundle(upload, store)
    except SgdscopeError as exc:
        st.error(f"Bundle refused: {exc.message} {exc.hint}")
        return None
    for r in result["runs"]:
        if r["result"] == "imported":
            st.success(f"Imported {r['run_id']} ({r['workload']} {r['variant']}).")
        else:
            st.info(f"{r['run_id']} is already present: left as it is.")
    return result["runs"]

"""Start page (the root URL): which page answers which question, and the verdict on the
latest experiment. Every other page keeps its own URL (``/launch``, ``/compare``...), so
a link to any of them works when opened directly.
Thin: loaders -> verdict -> Streamlit. Must not import tensorflow or pynvml.
"""
from __future__ import annotations

import streamlit as st

from dashboard import frames, loaders, nav, ui
from profilers import verdict

QUESTIONS: tuple[tuple[str, str, str], ...] = (
    ("launch", "Why is my TensorFlow slower than NumPy?",
     "Launch runs NumPy and TF variants side by side; the verdict says how much slower, why, and what fix measured best."),
    ("compare", "Where does a step's time go in each implementation?",
     "Compare splits every variant's step into the same categories, next to the NumPy baseline."),
    ("sweep", "At what size does TensorFlow win?",
     "Sweep runs the variants over growing sizes and marks the crossover."),
    ("triage", "What should I change in my own script?", "Triage profiles a script and ranks the findings."),
    ("pipeline", "Is my tf.data input pipeline the bottleneck?",
     "Input pipeline measures each tf.data fix on its own against the naive pipeline."),
)


def latest_verdict() -> None:
    exps = frames.experiments_frame(loaders.runs())
    if exps.empty:
        st.caption("No experiment stored yet: start with Launch (linreg, numpy vs tf_eager vs tf_function).")
        return
    exp = exps.iloc[0]
    profiles = loaders.experiment_profiles(str(exp["experiment_id"]))
    st.markdown(f"**Latest experiment**: {ui.escape(frames.experiment_label(exp.to_dict()))}")
    ui.verdict_box(verdict.for_profiles(profiles), str(exp["workload"]))
    st.page_link(nav.path("compare"), label="Compare it", icon=":material/compare_arrows:",
                 query_params={"exp": str(exp["experiment_id"])})


def main() -> None:
    st.title("sgdscope")
    st.markdown("**Why is my TensorFlow SGD slower than my NumPy loop, and what speeds it up?** "
                "Start on **Launch**: press Run, and the verdict appears beside the form within seconds.")
    latest_verdict()
    st.subheader("Which page answers what")
    for name, question, answer in QUESTIONS:
        if nav.available(name):
            st.page_link(nav.path(name), label=f"{question} → {nav.PAGES[name][1]}", icon=nav.PAGES[name][2])
            st.caption(answer)


ui.run_page(main)

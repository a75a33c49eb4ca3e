"""The Launch page, in-process (AppTest through app.py): widgets generated from the
registry's Param/Variant declarations, presets, the error funnel, and a real launch of
the toy workload (a supervisor subprocess) watched to the end, and one cancelled.
"""
from __future__ import annotations

import importlib
import time

import pytest

from tests.test_dashboard_pages import page_text, texts

POLL_TIMEOUT_S = 60.0


@pytest.fixture()
def toy(monkeypatch):
    """The toy workload registered here and in the worker processes."""
    monkeypatch.setenv("SGDSCOPE_WORKLOAD_MODULES", "tests.toy_workload")
    from workloads import WORKLOADS

    importlib.import_module("tests.toy_workload")  # registers "toy" in this process's registry

    return WORKLOADS["toy"]


def pick_workload(at, name: str):
    box = next(s for s in at.selectbox if s.label == "Workload")
    box.set_value(name).run()
    assert not at.exception, at.exception
    return at


def widget(at, kind: str, label: str):
    return next(w for w in getattr(at, kind) if w.label == label)


def run_until(at, done, timeout_s: float = POLL_TIMEOUT_S):
    """Rerun the page (as the fragment's timer would) until ``done(at)``."""
    deadline = time.monotonic() + timeout_s
    while not done(at):
        assert time.monotonic() < deadline, f"gave up waiting; page says:\n{page_text(at)}"
        time.sleep(0.3)
        at.run()
        assert not at.exception, at.exception
    return at


def test_widgets_come_from_the_param_declarations(dash_home, open_page, toy):
    at = pick_workload(open_page("launch"), "toy")
    ms = widget(at, "multiselect", "Variants")
    assert ms.value == ["ok", "ok2"]                       # the baseline, then the next
    assert set(ms.options) == set(toy.variants)
    numbers = {n.label: n.value for n in at.number_input}
    for p in toy.params.values():
        assert numbers[p.name] == p.default
    assert numbers["Timeout (s)"] == 600
    assert any(t.label == "profile (TF trace)" for t in at.toggle)
    assert "A counter that takes" in texts(at, "caption")


def test_presets_choices_and_optional_floats(dash_home, open_page):
    from workloads import WORKLOADS

    if "linreg" not in WORKLOADS or "mlp" not in WORKLOADS:
        pytest.skip("the linreg/mlp workloads are not on this branch")
    at = open_page("launch")
    assert widget(at, "selectbox", "Workload").value == "linreg"
    widget(at, "selectbox", "Preset").set_value("seed001").run()
    numbers = {n.label: n.value for n in at.number_input}
    for k, v in WORKLOADS["linreg"].presets["seed001"].items():
        assert numbers[k] == v
    pick_workload(at, "mlp")
    opt = widget(at, "selectbox", "optimizer")
    assert list(opt.options) == ["sgd", "adam"] and opt.value == "sgd"
    assert widget(at, "number_input", "clip_norm").value is None   # "none": off, not 0


def test_unavailable_variants_are_listed_with_their_reason(dash_home, open_page, monkeypatch, toy):
    from workloads import WORKLOADS, Variant

    class Moon(type(toy)):
        name = "moon"
        variants = {**toy.variants,
                    "lunar": Variant("lunar", "runs on the moon", availability=lambda: (False, "no moon here"))}

    monkeypatch.setitem(WORKLOADS, "moon", Moon())
    at = pick_workload(open_page("launch"), "moon")
    assert "lunar" not in widget(at, "multiselect", "Variants").options
    assert "no moon here" in texts(at, "caption")


def test_no_variant_is_an_error_message_not_a_traceback(dash_home, open_page, toy):
    at = pick_workload(open_page("launch"), "toy")
    widget(at, "multiselect", "Variants").set_value([])  # a form: values go with the submit
    next(b for b in at.button if b.label == "Run").click().run()
    assert not at.exception
    assert "launch_experiment" not in at.session_state
    assert "No variants chosen." in texts(at, "error")
    assert "Valid toy variants" in texts(at, "error")


def test_launch_watch_and_link_to_compare(dash_home, open_page, toy):
    from profilers.store import RunStore

    at = pick_workload(open_page("launch"), "toy")
    widget(at, "number_input", "steps").set_value(6)
    widget(at, "number_input", "warmup_steps").set_value(1)
    next(b for b in at.button if b.label == "Run").click().run()
    assert not at.exception, at.exception
    exp_id = at.session_state["launch_experiment"]
    run_until(at, lambda a: "Finished" in texts(a, "subheader"))
    assert f"Experiment {exp_id} finished: 2 run(s) stored." in texts(at, "success")
    runs = RunStore(dash_home).list()
    assert sorted(runs["variant"]) == ["ok", "ok2"] and set(runs["experiment_id"]) == {exp_id}
    assert set(runs["steps"]) == {6}                      # the params reached the worker
    links = [pl for pl in at.get("page_link") if pl.proto.label == "Compare these runs"]
    assert links and links[0].proto.query_string == f"exp={exp_id}"


def test_cancel_stops_a_hanging_variant(dash_home, open_page, toy):
    from profilers.store import RunStore

    at = pick_workload(open_page("launch"), "toy")
    widget(at, "multiselect", "Variants").set_value(["hang"])
    next(b for b in at.button if b.label == "Run").click().run()
    run_until(at, lambda a: any(b.label == "Cancel" for b in a.button)
              and "running" in texts(a, "markdown") + str([p.proto.text for p in a.get("progress")]))
    next(b for b in at.button if b.label == "Cancel").click().run()
    run_until(at, lambda a: "Finished" in texts(a, "subheader"))
    assert "cancelled" in texts(at, "error")
    runs = RunStore(dash_home).list()
    assert list(runs["status"]) == ["cancelled"] and list(runs["variant"]) == ["hang"]
